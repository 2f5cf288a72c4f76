#!/usr/bin/env python3
"""Check the deployment files without a Docker engine or a Kubernetes cluster.

Run through `make lint-deploy` (mk/docker.mk), which installs the pinned tools
from deploy/checks/requirements.txt into a virtualenv first.

What is checked:
  Dockerfile          hadolint (every rule, down to style level), plus the
                      project's own rules: cached dependency layer, slim
                      non-root runtime with CA certificates, all three
                      binaries, a HEALTHCHECK; .dockerignore keeps target/
                      and .env out of the build context.
  docker-compose.yml  the Compose Specification schema (as vendored by
                      check-jsonschema), then the services and properties
                      that docs/DEPLOY.md promises; `docker compose config`
                      as well where Compose is installed (the v2 plugin, else
                      v1 `docker-compose`: the Makefile supports both).
  deploy/kubernetes   Kubernetes' OpenAPI schemas in strict mode (unknown
                      fields are errors) for the oldest and newest versions
                      we support, hand-written schemas for the two KEDA kinds,
                      and cross-references (names, labels, ports, probes,
                      timeouts, the queue name KEDA watches).
  mk/docker.mk        no host-wide `docker ... prune`.

Every YAML file is parsed with duplicate keys as errors (PyYAML would keep
the last one silently). Exit status: 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "kubernetes"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
VENV_BIN = Path(sys.executable).parent

# Oldest and newest Kubernetes minor versions the manifests must satisfy.
K8S_VERSIONS = ("1.29.0", "1.37.0")

# Files in deploy/kubernetes that kustomization.yaml leaves out on purpose.
NOT_IN_KUSTOMIZATION = {"secret.example.yaml", "redis-dev.yaml", "keda-scaledobject.yaml"}

# Service defaults (docs/DEPLOY.md); .env.example overrides them when present.
DEFAULTS = {"HTTP_TIMEOUT": "30", "SHUTDOWN_TIMEOUT": "35", "QUEUE_NAME": "webhook_queue"}

APP_PORT, MONITOR_PORT = 5000, 8899
BINARIES = ("hook-slinger-app", "hook-slinger-worker", "hook-slinger-monitor")
COMPOSE_REDIS_URL = "redis://redis:6379"


class Failed(Exception):
    """A check found a problem; the message says what and where."""


class Unparsable(Failed):
    """A file does not parse. Reported by the check that owns the file; the
    checks that only read it are skipped instead of failing again."""


class Skipped(Exception):
    """A check cannot run on this machine; the message says why."""


# --------------------------------------------------------------------------
# helpers


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys first
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_docs(path: Path) -> list[Any]:
    try:
        return [d for d in yaml.load_all(path.read_text(), Loader=_StrictLoader) if d is not None]
    except yaml.YAMLError as e:
        raise Unparsable(f"{rel(path)}: {e}") from None


def load_yaml(path: Path) -> Any:
    docs = load_yaml_docs(path)
    if len(docs) != 1:
        raise Unparsable(f"{rel(path)}: expected one YAML document, found {len(docs)}")
    return docs[0]


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def settings() -> dict[str, str]:
    """Service defaults, overridden by .env.example when it exists."""
    values = dict(DEFAULTS)
    example = ROOT / ".env.example"
    if example.exists():
        for line in example.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            key = key.strip().removeprefix("export ").strip()
            value = value.split(" #", 1)[0].strip().strip("'\"")
            if key in values and value:
                values[key] = value
    return values


def seconds(value: Any) -> float:
    """Compose durations ("45s", "1m30s", "500ms") or bare numbers, in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise Failed(f"cannot read duration {value!r}")
    return sum(float(n) * units[u] for n, u in parts)


def tool(name: str) -> str:
    """A command from this virtualenv, else from PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise Failed(f"`{name}` not found: run through `make lint-deploy`, which installs it")
    return found


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def expect(condition: bool, message: str, problems: list[str]) -> None:
    if not condition:
        problems.append(message)


def finish(problems: list[str]) -> None:
    if problems:
        raise Failed("; ".join(problems))


# --------------------------------------------------------------------------
# Dockerfile


def check_hadolint() -> str:
    hadolint = tool("hadolint")
    version = run([hadolint, "--version"]).stdout.strip().split()[-1]
    result = run([hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile"], cwd=ROOT)
    if result.returncode != 0:
        raise Failed("\n" + (result.stdout + result.stderr).strip())
    return f"hadolint {version}, failure threshold: style"


def dockerfile_stages() -> list[tuple[str, str, list[str]]]:
    """(base image, stage name, instructions) per stage; continuation lines
    joined, global ARG defaults substituted in FROM."""
    text = (ROOT / "Dockerfile").read_text()
    # Heredoc bodies are file content, not instructions.
    text = re.sub(r"<<-?'?(\w+)'?(.*?)\n.*?\n\1\n", r"<<\1\2\n", text, flags=re.S)
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not current and not line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append((current + line).strip())
        current = ""
    args: dict[str, str] = {}
    stages: list[tuple[str, str, list[str]]] = []
    for instr in logical:
        arg = re.match(r"ARG\s+(\w+)=(\S+)", instr, re.I)
        if arg and not stages:
            args[arg.group(1)] = arg.group(2).strip("'\"")
        m = re.match(r"FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", instr, re.I)
        if m:
            base = re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            stages.append((base, (m.group(2) or "").lower(), []))
        elif stages:
            stages[-1][2].append(instr)
    return stages


def check_dockerfile_rules() -> str:
    stages = dockerfile_stages()
    problems: list[str] = []
    if len(stages) < 2:
        raise Failed("not a multi-stage build")
    builds = [instr for _, _, body in stages[:-1] for instr in body]
    cook = next((i for i, s in enumerate(builds) if "cargo chef cook" in s), None)
    build = next((i for i, s in enumerate(builds) if "cargo build" in s), None)
    expect(cook is not None, "no `cargo chef cook` dependency layer", problems)
    expect(build is not None, "no `cargo build`", problems)
    if build is not None:
        expect("--release" in builds[build] and "--locked" in builds[build],
               "`cargo build` without --release --locked", problems)
        for binary in BINARIES:
            expect(f"target/release/{binary}" in builds[build], f"{binary} is not collected", problems)
    if cook is not None and build is not None:
        source_copy = [i for i, s in enumerate(builds) if re.match(r"COPY\s+\.\s", s)]
        expect(any(cook < i < build for i in source_copy),
               "the sources must be copied after `cargo chef cook`, or dependencies are rebuilt on every change",
               problems)
    base, _, body = stages[-1]
    expect(bool(re.match(r"(docker\.io/)?(library/)?debian:[\w.-]*slim|gcr\.io/distroless/", base)),
           f"runtime base {base} is neither Debian slim nor distroless", problems)
    users = [s.split(None, 1)[1] for s in body if s.upper().startswith("USER ")]
    expect(bool(users) and users[-1].split(":")[0] not in ("root", "0"), "runtime stage runs as root", problems)
    expect(base.startswith("gcr.io/distroless/") or any("ca-certificates" in s for s in body),
           "runtime stage does not install ca-certificates", problems)
    expect(any(s.upper().startswith("HEALTHCHECK ") for s in body), "runtime stage has no HEALTHCHECK", problems)
    expect(any(s.upper().startswith("COPY ") and "--from=" in s for s in body),
           "runtime stage copies nothing from the build stage", problems)
    finish(problems)
    return f"{len(stages)} stages, runtime {base}"


def check_dockerignore() -> None:
    path = ROOT / ".dockerignore"
    if not path.exists():
        raise Failed(".dockerignore is missing: target/ and .env would be sent to the builder")
    patterns = {line.strip().strip("/") for line in path.read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    problems: list[str] = []
    expect(bool({"target", "**/target"} & patterns), "target/ is not ignored", problems)
    expect(".env" in patterns or ".env*" in patterns, ".env (secrets) is not ignored", problems)
    expect(".git" in patterns, ".git is not ignored", problems)
    finish(problems)


# --------------------------------------------------------------------------
# docker-compose.yml

COMPOSE = ROOT / "docker-compose.yml"


def compose() -> dict:
    data = load_yaml(COMPOSE)
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise Unparsable("docker-compose.yml has no `services` mapping")
    return data


def service(name: str) -> dict:
    services = compose()["services"]
    if name not in services:
        raise Failed(f"no `{name}` service")
    return services[name]


def check_compose_schema() -> str:
    compose()  # YAML syntax and duplicate keys first, with a clear message
    result = run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    if result.returncode != 0:
        raise Failed("\n" + (result.stdout + result.stderr).strip())
    return "Compose Specification schema"


def env_files(service: dict) -> list[str]:
    value = service.get("env_file", [])
    items = value if isinstance(value, list) else [value]
    return [i["path"] if isinstance(i, dict) else i for i in items]


def environment(service: dict) -> dict[str, str]:
    value = service.get("environment", {})
    if isinstance(value, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in value)
    return {k: "" if v is None else str(v) for k, v in value.items()}


def container_ports(service: dict) -> list[int]:
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append(int(port["target"]))
        else:
            ports.append(int(str(port).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def check_common(svc: dict, problems: list[str]) -> None:
    expect(svc.get("restart") in ("always", "unless-stopped", "on-failure"), "no restart policy", problems)
    expect(".env" in env_files(svc), "settings are not read from .env (env_file)", problems)
    expect(environment(svc).get("REDIS_URL") == COMPOSE_REDIS_URL,
           f"REDIS_URL must be {COMPOSE_REDIS_URL} inside compose", problems)
    deps = svc.get("depends_on", {})
    condition = deps.get("redis", {}).get("condition") if isinstance(deps, dict) else None
    expect(condition == "service_healthy", "must depend on redis with condition service_healthy", problems)
    expect("container_name" not in svc, "container_name prevents scaling and parallel projects", problems)


def check_compose_services() -> str:
    services = compose()["services"]
    missing = {"redis", "app", "worker", "monitor"} - set(services)
    if missing:
        raise Failed(f"missing services: {', '.join(sorted(missing))}")
    return ", ".join(services)


def check_compose_redis() -> None:
    data = compose()
    redis = service("redis")
    problems: list[str] = []
    image = str(redis.get("image", ""))
    expect(bool(re.fullmatch(r"(docker\.io/)?(library/)?redis:[\w.-]+", image)),
           f"image {image!r} is not the official image with a tag", problems)
    command = redis.get("command", [])
    command = command.split() if isinstance(command, str) else [str(c) for c in command]
    expect("--appendonly" in command and command[command.index("--appendonly") + 1:][:1] == ["yes"],
           "AOF persistence is off (--appendonly yes)", problems)
    mounts = [str(v) if not isinstance(v, dict) else f"{v.get('source')}:{v.get('target')}"
              for v in redis.get("volumes", [])]
    named = set(data.get("volumes") or {})
    expect(any(m.split(":")[0] in named and m.split(":")[1] == "/data" for m in mounts),
           "/data is not on a named volume", problems)
    health = redis.get("healthcheck", {})
    expect(bool(health.get("test")) and not health.get("disable"), "no healthcheck", problems)
    expect(redis.get("restart") in ("always", "unless-stopped"), "no restart policy", problems)
    for port in redis.get("ports", []):
        expect(str(port).startswith("127.0.0.1:"), f"port {port} is published beyond loopback", problems)
    finish(problems)


def check_compose_app() -> None:
    app = service("app")
    problems: list[str] = []
    check_common(app, problems)
    expect(APP_PORT in container_ports(app), f"container port {APP_PORT} is not published", problems)
    health = app.get("healthcheck", {})
    expect(not health.get("disable"), "healthcheck disabled", problems)
    expect("hook-slinger-app" in str(app.get("command", "")), "command is not hook-slinger-app", problems)
    finish(problems)


def check_compose_worker() -> str:
    worker = service("worker")
    problems: list[str] = []
    check_common(worker, problems)
    expect(not worker.get("ports"), "must publish no ports (it is scaled)", problems)
    expect("hook-slinger-worker" in str(worker.get("command", "")), "command is not hook-slinger-worker",
           problems)
    limits = settings()
    grace = seconds(worker.get("stop_grace_period", "10s"))
    for key in ("HTTP_TIMEOUT", "SHUTDOWN_TIMEOUT"):
        limit = seconds(limits[key])
        expect(grace > limit, f"stop_grace_period {grace:g}s is not longer than {key} {limit:g}s", problems)
    finish(problems)
    return (f"stop_grace_period {grace:g}s > HTTP_TIMEOUT {limits['HTTP_TIMEOUT']}s, "
            f"SHUTDOWN_TIMEOUT {limits['SHUTDOWN_TIMEOUT']}s")


def check_compose_monitor() -> None:
    monitor = service("monitor")
    problems: list[str] = []
    check_common(monitor, problems)
    expect(MONITOR_PORT in container_ports(monitor), f"container port {MONITOR_PORT} is not published",
           problems)
    expect("hook-slinger-monitor" in str(monitor.get("command", "")), "command is not hook-slinger-monitor",
           problems)
    finish(problems)


def compose_command() -> list[str] | None:
    """The Compose the Makefile would use: the v2 plugin, else v1."""
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"]).returncode == 0:
        return [docker, "compose"]
    v1 = shutil.which("docker-compose")
    return [v1] if v1 else None


def check_docker_compose_config() -> str:
    command = compose_command()
    if command is None:
        raise Skipped("neither the compose plugin nor docker-compose is installed")
    with tempfile.TemporaryDirectory() as tmp:
        # env_file: .env must exist; use the example (or nothing) for the check.
        example = ROOT / ".env.example"
        Path(tmp, ".env").write_text(example.read_text() if example.exists() else "")
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
        result = run([*command, "--project-directory", tmp, "-f", str(COMPOSE), "config", "--quiet"],
                     env=env)
    if result.returncode != 0:
        raise Failed("\n" + (result.stdout + result.stderr).strip())
    version = run([*command, "version", "--short"]).stdout.strip()
    return f"{'docker compose' if len(command) > 1 else 'docker-compose'} {version}"


# --------------------------------------------------------------------------
# deploy/kubernetes


def manifests() -> dict[Path, list[dict]]:
    files = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    if not files:
        raise Failed(f"no manifests in {rel(K8S_DIR)}")
    return {p: load_yaml_docs(p) for p in files}


def resources() -> list[dict]:
    return [doc for docs in manifests().values() for doc in docs]


def find(kind: str, name: str) -> dict:
    for doc in resources():
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return doc
    raise Failed(f"no {kind} {name}")


CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-scaledobject.schema.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-triggerauthentication.schema.json",
}


def validate_custom(doc: dict, schema_file: str) -> None:
    schema = json.loads((SCHEMA_DIR / schema_file).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    if errors:
        raise Failed("; ".join(f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors))


def make_schema_check(path: Path) -> Callable[[], str]:
    def check() -> str:
        problems: list[str] = []
        kinds: list[str] = []
        against: list[str] = []
        for doc in load_yaml_docs(path):
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                problems.append("a document without apiVersion/kind")
                continue
            label = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
            custom = CUSTOM_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
            try:
                if custom:
                    validate_custom(doc, custom)
                    kinds.append(doc["kind"])
                    against.append(f"schemas/{custom}")
                    continue
                for version in K8S_VERSIONS:
                    kubernetes_validate.validate(doc, version, strict=True)
                kinds.append(doc["kind"])
                against.append(f"Kubernetes {' + '.join(v[:-2] for v in K8S_VERSIONS)} strict")
            except Failed as e:
                problems.append(f"{label}: {e}")
            except kubernetes_validate.ValidationError as e:
                where = ".".join(map(str, e.path)) or "(root)"
                problems.append(f"{label} (Kubernetes {e.version}): {where}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{label}: {e.message}, and deploy/checks/schemas has none either")
        finish(problems)
        return f"{', '.join(kinds)}: {', '.join(dict.fromkeys(against))}"

    return check


def check_kustomization() -> str:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    listed = kustomization.get("resources", [])
    problems: list[str] = []
    for entry in listed:
        expect((K8S_DIR / entry).exists(), f"resource {entry} does not exist", problems)
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml" or path.name in NOT_IN_KUSTOMIZATION:
            continue
        expect(path.name in listed, f"{path.name} is not listed in resources", problems)
    for name in NOT_IN_KUSTOMIZATION:
        expect(name not in listed, f"{name} must stay out of kustomization.yaml", problems)
    expect(bool(kustomization.get("namespace")), "no namespace", problems)
    finish(problems)
    return f"{len(listed)} resources, namespace {kustomization.get('namespace')}"


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s_workloads() -> str:
    config = find("ConfigMap", "hook-slinger-config")["data"]
    secret = find("Secret", "hook-slinger-secrets")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    problems: list[str] = []
    expect("API_TOKEN" in secret_keys and "REDIS_URL" in secret_keys,
           "secret.example.yaml must show API_TOKEN and REDIS_URL", problems)
    for key in ("API_TOKEN", "REDIS_URL", "MONITOR_PASSWORD"):
        expect(key not in config, f"{key} is a secret, not ConfigMap data", problems)
    ports = {"app": APP_PORT, "monitor": MONITOR_PORT}
    for component, binary in zip(("app", "worker", "monitor"), BINARIES):
        deployment = find("Deployment", f"hook-slinger-{component}")
        spec = pod_spec(deployment)
        container = spec["containers"][0]
        where = f"Deployment hook-slinger-{component}"
        expect(container.get("command") == [binary], f"{where}: command is not [{binary}]", problems)
        refs = {(list(r)[0], list(r.values())[0]["name"]) for r in container.get("envFrom", [])}
        expect(("configMapRef", "hook-slinger-config") in refs, f"{where}: no envFrom ConfigMap", problems)
        expect(("secretRef", "hook-slinger-secrets") in refs, f"{where}: no envFrom Secret", problems)
        expect(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{where}: not runAsNonRoot", problems)
        expect(labels_match(deployment["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"]),
               f"{where}: selector does not match the pod labels", problems)
        if component in ports:
            named = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            expect(named.get("http") == ports[component], f"{where}: no port `http` = {ports[component]}", problems)
            for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
                get = container.get(probe, {}).get("httpGet", {})
                expect(get.get("path") == path and get.get("port") in ("http", ports[component]),
                       f"{where}: {probe} is not GET {path} on the http port", problems)
            service = find("Service", f"hook-slinger-{component}")
            expect(labels_match(service["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]),
                   f"Service hook-slinger-{component}: selector matches no {component} pod", problems)
            expect(all(p.get("targetPort") in ("http", ports[component]) for p in service["spec"]["ports"]),
                   f"Service hook-slinger-{component}: targetPort is not the http port", problems)
    worker = find("Deployment", "hook-slinger-worker")
    grace = pod_spec(worker).get("terminationGracePeriodSeconds", 30)
    for key in ("HTTP_TIMEOUT", "SHUTDOWN_TIMEOUT"):
        limit = seconds(config.get(key, DEFAULTS[key]))
        expect(grace > limit, f"worker terminationGracePeriodSeconds {grace} is not longer than {key} {limit:g}",
               problems)
    expect("replicas" not in worker["spec"], "worker Deployment sets replicas: every apply would undo KEDA", problems)
    pdb = find("PodDisruptionBudget", "hook-slinger-worker")
    expect(labels_match(pdb["spec"]["selector"]["matchLabels"], worker["spec"]["template"]["metadata"]["labels"]),
           "PodDisruptionBudget selects no worker pod", problems)
    finish(problems)
    return f"app, worker, monitor; worker grace {grace}s > SHUTDOWN_TIMEOUT {config.get('SHUTDOWN_TIMEOUT')}s"


def check_keda() -> str:
    config = find("ConfigMap", "hook-slinger-config")["data"]
    secret = find("Secret", "hook-slinger-secrets")
    secret_keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    scaled = find("ScaledObject", "hook-slinger-worker")
    spec = scaled["spec"]
    problems: list[str] = []
    target = spec["scaleTargetRef"]
    expect(target["name"] == "hook-slinger-worker" and target.get("kind", "Deployment") == "Deployment",
           "scaleTargetRef is not the worker Deployment", problems)
    find("Deployment", target["name"])
    expect(spec.get("minReplicaCount", 0) >= 1,
           "minReplicaCount must be >= 1: only workers move due retries back to the ready list", problems)
    triggers = [t for t in spec["triggers"] if t["type"] == "redis"]
    expect(len(triggers) == 1, "expected one `redis` trigger", problems)
    list_name = f"{config.get('QUEUE_NAME', DEFAULTS['QUEUE_NAME'])}:active"
    for trigger in triggers:
        meta = trigger["metadata"]
        expect(meta.get("listName") == list_name,
               f"listName {meta.get('listName')!r} is not {list_name!r} (QUEUE_NAME + ':active')", problems)
        expect(int(meta.get("listLength", "0")) > 0, "listLength must be a positive number", problems)
        auth_name = trigger.get("authenticationRef", {}).get("name")
        if auth_name:
            auth = find("TriggerAuthentication", auth_name)
            params = set()
            for ref in auth["spec"].get("secretTargetRef", []):
                params.add(ref["parameter"])
                expect(ref["name"] == secret["metadata"]["name"] and ref["key"] in secret_keys,
                       f"TriggerAuthentication reads {ref['name']}/{ref['key']}, which secret.example.yaml lacks",
                       problems)
            expect("address" in params or "address" in meta or "host" in meta,
                   "the redis trigger has no address", problems)
    finish(problems)
    return f"redis trigger on {list_name}, {spec.get('minReplicaCount')}..{spec.get('maxReplicaCount')} workers"


# --------------------------------------------------------------------------
# mk/docker.mk


def check_makefile() -> None:
    path = ROOT / "mk" / "docker.mk"
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    problems: list[str] = []
    expect(not re.search(r"\bprune\b", text), "mk/docker.mk must not prune anything host-wide", problems)
    expect(bool(re.search(r"-p\s+\$\(COMPOSE_PROJECT\)|-p\s+hook-slinger", text)),
           "docker compose calls are not scoped with -p", problems)
    targets: set[str] = set()
    for line in text.splitlines():
        rule = re.match(r"([^\s:=#][^:=]*?)\s*::?(?!=)", line)
        if rule:
            targets.update(rule.group(1).split())
    wanted = ("start_servers", "stop_servers", "worker_scale", "app_logs", "worker_logs", "monitor_logs",
              "base_images", "compose_test")
    for target in wanted + ("lint-deploy",):
        for spelling in dict.fromkeys((target, target.replace("_", "-"))):
            expect(spelling in targets, f"target {spelling} is missing", problems)
    # The top-level Makefile owns these names.
    for reserved in ("run", "test", "build", "app", "worker", "monitor", "bench", "lint", "clean"):
        expect(reserved not in targets, f"target {reserved} belongs to the top-level Makefile", problems)
    finish(problems)


# --------------------------------------------------------------------------


def checks() -> list[tuple[str, Callable[[], Any]]]:
    listed: list[tuple[str, Callable[[], Any]]] = [
        ("Dockerfile: hadolint", check_hadolint),
        ("Dockerfile: build and runtime stages", check_dockerfile_rules),
        ("Dockerfile: .dockerignore", check_dockerignore),
        ("compose: schema", check_compose_schema),
        ("compose: services", check_compose_services),
        ("compose: redis", check_compose_redis),
        ("compose: app", check_compose_app),
        ("compose: worker", check_compose_worker),
        ("compose: monitor", check_compose_monitor),
        ("compose: docker compose config", check_docker_compose_config),
    ]
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            listed.append((f"kubernetes: {path.name} schema", make_schema_check(path)))
    listed += [
        ("kubernetes: kustomization.yaml", check_kustomization),
        ("kubernetes: workloads, probes, services, PDB", check_k8s_workloads),
        ("kubernetes: KEDA ScaledObject", check_keda),
        ("make: mk/docker.mk", check_makefile),
    ]
    return listed


# Checks that own a file and report it when it does not parse.
PARSE_OWNERS = ("compose: schema", "kubernetes: ")


def main() -> int:
    passed = failed = skipped = 0
    for name, check in checks():
        try:
            try:
                detail = check()
            except Unparsable as e:
                owner = name == PARSE_OWNERS[0] or (name.startswith(PARSE_OWNERS[1]) and name.endswith(" schema"))
                if owner or name == "kubernetes: kustomization.yaml":
                    raise
                raise Skipped(f"needs a file that does not parse ({str(e).splitlines()[0]})") from None
        except Skipped as e:
            skipped += 1
            print(f"skip  {name}: {e}")
        except Failed as e:
            failed += 1
            print(f"FAIL  {name}: {e}")
        except Exception as e:  # a broken file can break a check in unforeseen ways
            failed += 1
            print(f"FAIL  {name}: {type(e).__name__}: {e}")
        else:
            passed += 1
            print(f"ok    {name}" + (f" ({detail})" if detail else ""))
    print(f"lint-deploy: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
