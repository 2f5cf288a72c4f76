#!/usr/bin/env python3
"""compose-test: the compose stack end to end, on a real Docker engine.

Run through `make compose-test`. Without a Docker engine it prints
`compose-test: skipped (no Docker engine)` and exits 0.

It starts docker-compose.yml plus tests/compose/docker-compose.test.yml (a
receiver service and fixed test settings) under its own project name,
`hook-slinger-compose-test`, through the Makefile's own targets
(`make start_servers`, `make worker_scale n=3`), so a developer's
`hook-slinger` stack is never touched. Jobs are POSTed to the app's
published port on loopback and delivered to the receiver container, which
counts deliveries per X-Hook-Slinger-Job-Id. Scenarios:

  stack           redis, app, worker, monitor and receiver healthy; one job delivered
  three workers   `make worker_scale n=3`: the attempt logs name three workers
  worker killed   `docker kill` one of three workers mid-run: every accepted
                  job is delivered (lost 0; duplicates counted, not failed)
  redis restarted `docker restart` Redis while jobs are being POSTed: AOF
                  keeps the accepted jobs, app and workers reconnect on
                  their own, lost 0

Each prints sent/accepted/delivered/lost/duplicates; the last line is
`compose-test: N passed, N failed`. The project's containers, network and
volume are removed at the end, also on failure or Ctrl-C. Python 3.11
standard library only.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = os.environ.get("COMPOSE_TEST_PROJECT", "hook-slinger-compose-test")
FILES = [ROOT / "docker-compose.yml", ROOT / "tests" / "compose" / "docker-compose.test.yml"]
TAG = "local"
RECEIVER_IMAGE = "hook-slinger-compose-receiver:local"
TOKEN = "compose-test-token"  # set in docker-compose.test.yml
RECEIVER = "http://receiver:8080/hook"  # as the workers see it


def say(message: str) -> None:
    print(f"compose-test: {message}", flush=True)


# --------------------------------------------------------------------------
# Docker and Compose


def engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


def compose_command() -> list[str]:
    """The Compose mk/docker.mk would pick: the v2 plugin, else v1."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The test's compose project: its commands, ports and clean-up."""

    def __init__(self) -> None:
        self.compose = compose_command()
        self.app_port = free_port()
        # Compose substitutes these into docker-compose.yml's published ports,
        # so the test never collides with a developer's stack on 5000/8899/6380.
        self.env = dict(os.environ, HOOK_SLINGER_TAG=TAG, APP_PORT=str(self.app_port),
                        MONITOR_PORT=str(free_port()), REDIS_HOST_PORT=str(free_port()))
        self.make_vars = [f"COMPOSE_PROJECT={PROJECT}", f"COMPOSE_FILES={' '.join(map(str, FILES))}",
                          f"HOOK_SLINGER_TAG={TAG}", f"DOCKER_COMPOSE={' '.join(self.compose)}"]
        self.receiver_port = 0

    def run(self, *args: str, check: bool = True, capture: bool = True) -> str:
        cmd = [*self.compose, "-p", PROJECT, "--project-directory", str(ROOT)]
        for f in FILES:
            cmd += ["-f", str(f)]
        result = subprocess.run([*cmd, *args], env=self.env, text=True, timeout=600,
                                capture_output=capture)
        if check and result.returncode != 0:
            raise Failure(f"{' '.join(args)}: {(result.stderr or '').strip()[-800:]}")
        return result.stdout or ""

    def make(self, *args: str) -> float:
        started = time.monotonic()
        result = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args, *self.make_vars],
                                env=self.env, text=True, capture_output=True, timeout=3600)
        if result.returncode != 0:
            raise Failure(f"make {' '.join(args)} failed:\n{(result.stdout + result.stderr).strip()[-2000:]}")
        return time.monotonic() - started

    def containers(self, service: str) -> list[str]:
        return self.run("ps", "-q", service).split()

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)

    def dump_logs(self) -> None:
        print(self.run("ps", check=False), flush=True)
        for service in ("redis", "app", "worker", "monitor", "receiver"):
            print(f"--- last log lines of {service}", flush=True)
            print(self.run("logs", "--no-color", "--tail=30", service, check=False), flush=True)

    # ---- HTTP, on loopback only

    def request(self, method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Token {TOKEN}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, {}
        except (OSError, ValueError):
            return 0, {}

    def post_job(self, delay_ms: int, label: str) -> str | None:
        """One POST /hook_slinger/; the job id when it was accepted (202)."""
        status, body = self.request("POST", f"http://127.0.0.1:{self.app_port}/hook_slinger/", {
            "to_url": f"{RECEIVER}?delay_ms={delay_ms}", "group": "composetest", "tag": label,
            "payload": {"scenario": label}})
        return body.get("job_id") if status == 202 else None

    def job(self, job_id: str) -> dict:
        return self.request("GET", f"http://127.0.0.1:{self.app_port}/hook_slinger/{job_id}")[1]

    def ready(self) -> bool:
        return self.request("GET", f"http://127.0.0.1:{self.app_port}/ready")[0] == 200

    def counts(self) -> dict[str, int]:
        return self.request("GET", f"http://127.0.0.1:{self.receiver_port}/counts")[1]


class Failure(Exception):
    """A step or a check failed; the message says which and why."""


# --------------------------------------------------------------------------
# Scenarios


@dataclass
class Tally:
    """What one scenario sent, and what became of it.

    delivered: accepted jobs that the receiver saw and whose record says
    `succeeded`; lost: the other accepted ones; duplicates: deliveries the
    receiver saw beyond the first of each job (at-least-once delivery).
    """

    sent: int = 0
    accepted: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    succeeded: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, stack: Stack, delay_ms: int, label: str) -> None:
        job_id = stack.post_job(delay_ms, label)
        with self.lock:
            self.sent += 1
            if job_id:
                self.accepted.append(job_id)

    def seen(self) -> int:
        return sum(1 for j in self.accepted if self.counts.get(j, 0) > 0)

    def delivered(self) -> int:
        return sum(1 for j in self.accepted if self.counts.get(j, 0) > 0 and j in self.succeeded)

    def lost(self) -> int:
        return len(self.accepted) - self.delivered()

    def duplicates(self) -> int:
        return sum(max(self.counts.get(j, 0) - 1, 0) for j in self.accepted)

    def wait_seen(self, stack: Stack, at_least: int, timeout: float) -> None:
        """Until the receiver has seen `at_least` of the accepted jobs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.counts = stack.counts() or self.counts
            if self.seen() >= at_least:
                return
            time.sleep(0.5)

    def settle(self, stack: Stack, timeout: float) -> None:
        """Until every accepted job is recorded as succeeded (or the time is
        up), then the receiver's final counts. A delivery cut off by a killed
        worker was seen by the receiver but is not recorded: it counts once
        its lease runs out and another worker delivers it again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job_id in self.accepted:
                if job_id not in self.succeeded and stack.job(job_id).get("state") == "succeeded":
                    self.succeeded.add(job_id)
            if len(self.succeeded) == len(self.accepted):
                break
            time.sleep(1)
        self.counts = stack.counts() or self.counts

    def line(self) -> str:
        return (f"sent={self.sent} accepted={len(self.accepted)} delivered={self.delivered()} "
                f"lost={self.lost()} duplicates={self.duplicates()}")


def post_many(stack: Stack, tally: Tally, n: int, delay_ms: int, label: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(n):
            pool.submit(tally.post, stack, delay_ms, label)


def scenario_stack(stack: Stack) -> str:
    tally = Tally()
    tally.post(stack, 0, "stack")
    tally.settle(stack, 60)
    if tally.lost() or not tally.accepted:
        raise Failure(f"the first job was not delivered: {tally.line()}")
    return tally.line()


def scenario_three_workers(stack: Stack) -> str:
    seconds = stack.make("worker_scale", "n=3")
    workers = stack.containers("worker")
    if len(workers) != 3:
        raise Failure(f"{len(workers)} worker containers after make worker_scale n=3")
    tally = Tally()
    post_many(stack, tally, 90, 200, "scale")
    tally.settle(stack, 120)
    names = attempt_workers(stack, tally.accepted)
    # A worker's name starts with its host name, which is its container's id.
    used = [c for c in workers if any(n.startswith(f"hook-slinger-worker-{c[:12]}-") for n in names)]
    summary = (f"{tally.line()}; the attempt logs name {len(set(names))} workers, "
               f"in {len(used)} of the 3 containers (scaled in {seconds:.0f}s)")
    if tally.lost() or len(tally.accepted) != tally.sent:
        raise Failure(summary)
    if len(used) < 3:
        raise Failure(f"{summary}: {', '.join(sorted(names))}")
    return summary


def attempt_workers(stack: Stack, job_ids: list[str]) -> list[str]:
    """Every worker name in these jobs' attempt logs, once per attempt."""
    return [a["worker"] for j in job_ids for a in stack.job(j).get("attempt_log", []) if a.get("worker")]


def scenario_worker_killed(stack: Stack) -> str:
    workers = stack.containers("worker")
    if len(workers) < 3:
        raise Failure(f"expected 3 workers, found {len(workers)}")
    tally = Tally()
    # 1 s per delivery and 3 x 8 in flight: about 10 s of work, long enough
    # to kill a worker that holds deliveries in flight.
    post_many(stack, tally, 240, 1000, "kill")
    tally.wait_seen(stack, len(tally.accepted) // 4, 60)
    victim = workers[0]
    subprocess.run(["docker", "kill", victim], capture_output=True, check=True)
    killed_at = tally.seen()
    tally.settle(stack, 180)
    by_victim = sum(1 for n in attempt_workers(stack, tally.accepted)
                    if n.startswith(f"hook-slinger-worker-{victim[:12]}-"))
    summary = (f"{tally.line()}; killed {victim[:12]} once the receiver had seen {killed_at} jobs; "
               f"it had recorded {by_victim} attempts")
    if tally.lost() or len(tally.accepted) != tally.sent:
        raise Failure(summary)
    stack.make("worker_scale", "n=3")  # back to three for what follows
    return summary


def scenario_redis_restarted(stack: Stack) -> str:
    redis = stack.containers("redis")
    if len(redis) != 1:
        raise Failure(f"expected one redis container, found {len(redis)}")
    appendonly = subprocess.run(["docker", "exec", redis[0], "redis-cli", "config", "get", "appendonly"],
                                capture_output=True, text=True).stdout.split()
    tally = Tally()
    stop = threading.Event()

    def sender() -> None:  # ~20 POSTs a second until stopped
        while not stop.is_set():
            tally.post(stack, 100, "redis")
            time.sleep(0.05)

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        time.sleep(4)
        restarted = time.monotonic()
        subprocess.run(["docker", "restart", "--time", "10", redis[0]], capture_output=True, check=True)
        time.sleep(6)
    finally:
        stop.set()
        thread.join()
    deadline = time.monotonic() + 60
    while not stack.ready() and time.monotonic() < deadline:
        time.sleep(0.5)
    ready_after = time.monotonic() - restarted
    tally.settle(stack, 180)
    summary = (f"{tally.line()}; appendonly={appendonly[-1] if appendonly else '?'}, "
               f"app ready again {ready_after:.0f}s after the restart began")
    if not stack.ready():
        raise Failure(f"{summary}: the app's /ready is not 200")
    if tally.lost() or not tally.accepted:
        raise Failure(summary)
    # Every container healthy again, with no one restarting it by hand.
    subprocess.run([str(ROOT / "scripts" / "compose-wait.sh"), PROJECT, "120"], check=True,
                   capture_output=True)
    return summary


# --------------------------------------------------------------------------


def main() -> int:
    if not engine_answers():
        say("skipped (no Docker engine)")
        return 0
    if not (ROOT / ".env").exists():
        shutil.copy(ROOT / ".env.example", ROOT / ".env")
        say("created .env from .env.example (compose reads it; the test's own settings override it)")

    stack = Stack()
    # `docker kill` or Ctrl-C of this script still removes the stack.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_, s=sig: sys.exit(128 + s))
    passed = failed = 0
    say(f"project {PROJECT}, {' '.join(stack.compose)}, app on 127.0.0.1:{stack.app_port}")
    stack.down()  # what an interrupted earlier run may have left
    try:
        started = time.monotonic()
        build = subprocess.run([str(ROOT / "scripts" / "docker-build.sh"), "--quiet", "-t", RECEIVER_IMAGE,
                                str(ROOT / "tests" / "compose" / "receiver")], capture_output=True, text=True)
        if build.returncode != 0:
            raise Failure(f"building {RECEIVER_IMAGE}: {build.stderr.strip()[-2000:]}")
        seconds = stack.make("start_servers")
        stack.receiver_port = int(stack.run("port", "receiver", "8080").strip().rsplit(":", 1)[1])
        say(f"make start_servers (image build included) took {seconds:.0f}s; "
            f"set-up {time.monotonic() - started:.0f}s in all")
        scenarios = [("stack", scenario_stack), ("three workers", scenario_three_workers),
                     ("worker killed", scenario_worker_killed), ("redis restarted", scenario_redis_restarted)]
    except (Failure, subprocess.CalledProcessError) as e:
        print(f"FAIL  set-up: {e}", flush=True)
        failed += 1
        scenarios = []
        stack.dump_logs()
    try:
        for name, scenario in scenarios:
            began = time.monotonic()
            try:
                detail = scenario(stack)
            except (Failure, subprocess.CalledProcessError) as e:
                failed += 1
                print(f"FAIL  {name}: {e} ({time.monotonic() - began:.0f}s)", flush=True)
            else:
                passed += 1
                print(f"ok    {name}: {detail} ({time.monotonic() - began:.0f}s)", flush=True)
        if failed and scenarios:
            stack.dump_logs()
    finally:
        stack.down()
    print(f"compose-test: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
