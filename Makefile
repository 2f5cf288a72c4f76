# Hook Slinger. `make run` to try it, `make test` to check it.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run app worker build test lint fmt redis env clean pyenv chaos chaos-venv bench

## run: build, make sure Redis answers, run app + worker + monitor in the foreground (Ctrl-C stops)
run: env build redis
	@scripts/run.sh

## app / worker: run one process in the foreground
app: env build redis
	@target/debug/hook-slinger-app
worker: env build redis
	@target/debug/hook-slinger-worker
## monitor: the monitor's web UI (http://127.0.0.1:$MONITOR_PORT, default 8899); `target/debug/hook-slinger-monitor --help` for the CLI
.PHONY: monitor
monitor: env build redis
	@target/debug/hook-slinger-monitor serve

build:
	$(CARGO) build --bins

## test: formatting, lints, then every test against the local Redis
test: redis lint pyenv
	@# The chaos binary is `make chaos`'s: here it would only run no-ops.
	@# Then the integration tests again on a keyspace split into 4 shards
	@# (QUEUE_SHARDS), as a cluster splits it, on the one local Redis.
	@if command -v cargo-nextest >/dev/null; then $(CARGO) nextest run --no-fail-fast -E 'not binary(chaos)' && \
	  TEST_QUEUE_SHARDS=4 $(CARGO) nextest run --no-fail-fast -E 'binary(it) & not test(cluster::)'; \
	else $(CARGO) test --lib --bins --test it && TEST_QUEUE_SHARDS=4 $(CARGO) test --test it; fi

## chaos: fault, load and hostile-input scenarios with numbers (minutes;
## results in target/chaos/results.jsonl), then schemathesis against the API
chaos: redis chaos-venv
	$(CARGO) build --bins
	$(CARGO) nextest run --test chaos --run-ignored ignored-only --no-fail-fast --success-output immediate
	scripts/schemathesis.sh

chaos-venv: target/chaos-venv/.ok
target/chaos-venv/.ok:
	python3 -m venv target/chaos-venv
	target/chaos-venv/bin/pip install --quiet --disable-pip-version-check schemathesis==4.32.5
	touch $@

# The signing test checks signatures with an independent implementation,
# the `standardwebhooks` package from PyPI, in a venv under target/.
pyenv: target/pyenv/.ok
target/pyenv/.ok:
	python3 -m venv target/pyenv
	target/pyenv/bin/pip install --quiet --disable-pip-version-check standardwebhooks==1.0.0
	touch $@

## bench: release build, then the benchmark (app, workers, Redis and a receiver on this machine);
## BENCH_ONLY=latency runs only the latency at 50/200/500 jobs/s (BENCH_LATENCY_SECS each, default 60),
## BENCH_ONLY=e2e only end to end with Redis CPU and commands per job (BENCH_VERBOSE=1: per command),
## BENCH_ONLY=cluster only the Redis Cluster capacity (1, 2 and 3 masters),
## BENCH_ONLY=fanout only events fanned out to 1, 10 and 1,000 endpoints,
## BENCH_ONLY=ingest only signed GitHub requests to a source, delivered to one endpoint
bench:
	$(CARGO) build --release --bins
	@scripts/ensure-redis.sh >/dev/null
	target/release/hook-slinger-bench

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

redis:
	@scripts/ensure-redis.sh

# A first `make run` gets a .env from the example; change its API_TOKEN.
env:
	@if [ ! -f .env ]; then cp .env.example .env; echo "Created .env from .env.example: change API_TOKEN in it."; fi

clean:
	$(CARGO) clean

-include mk/*.mk
