#!/usr/bin/env bash
# `make chaos`: fuzz the API from its own OpenAPI document with schemathesis
# (installed by `make chaos` into target/chaos-venv). Starts the debug app on
# a free loopback port with its own QUEUE_NAME, runs a bounded number of
# examples per operation with the token, and fails on any 5xx or any answer
# that the document does not describe (status, content type, body schema).
# No worker runs, so accepted jobs are never delivered anywhere; their keys
# are deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

st=target/chaos-venv/bin/schemathesis
app=target/debug/hook-slinger-app
examples="${SCHEMATHESIS_EXAMPLES:-60}"
[[ -x $st ]] || { echo "schemathesis is missing: run 'make chaos'" >&2; exit 1; }
[[ -x $app ]] || cargo build --bin hook-slinger-app

redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
queue="schemathesis-$$-$RANDOM"
token="schemathesis-$RANDOM$RANDOM$RANDOM"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
workdir=$(mktemp -d)
log="target/chaos/schemathesis-app.log"
mkdir -p target/chaos

cleanup() {
  [[ -n ${app_pid:-} ]] && kill -TERM "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null
  redis-cli -u "$redis_url" --scan --pattern "$queue*" | xargs -r -n 500 redis-cli -u "$redis_url" unlink >/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

# An empty working directory and a clean environment: no developer .env.
(cd "$workdir" && exec env -i PATH="$PATH" API_TOKEN="$token" APP_HOST=127.0.0.1 APP_PORT="$port" \
  REDIS_URL="$redis_url" QUEUE_NAME="$queue" MAX_PAYLOAD_BYTES=65536 LOG_LEVEL=warn LOG_COLOR=never \
  "$OLDPWD/$app") >"$log" 2>&1 &
app_pid=$!

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { echo "app did not start:" >&2; cat "$log" >&2; exit 1; }

started=$(date +%s)
set +e
# From target/chaos, where schemathesis keeps its .schemathesis/ cache.
(cd target/chaos && "$OLDPWD/$st" run "http://127.0.0.1:$port/openapi.json" \
  --header "Authorization: Token $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$examples" \
  --seed 20261125 \
  --generation-database none \
  --request-timeout 10 \
  --max-response-time 10 \
  --workers 2 \
  --no-color \
  --report junit --report-junit-path schemathesis-junit.xml)
rc=$?
set -e
took=$(( $(date +%s) - started ))
if grep -q 'panicked' "$log"; then
  echo "the app panicked during the run (the client saw a dropped connection):" >&2
  grep -m 5 -A 1 'panicked' "$log" >&2 || true
  rc=1
fi
echo "{\"scenario\":\"schemathesis\",\"examples_per_operation\":$examples,\"exit\":$rc,\"seconds\":$took}" >>target/chaos/results.jsonl
echo "scenario=schemathesis examples_per_operation=$examples exit=$rc seconds=$took"
exit $rc
