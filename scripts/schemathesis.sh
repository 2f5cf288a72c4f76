#!/usr/bin/env bash
# `make chaos`: fuzz the API from its own OpenAPI document with schemathesis
# (installed by `make chaos` into target/chaos-venv). Starts the debug app on
# a free loopback port with its own QUEUE_NAME and runs a bounded number of
# examples per operation with the token, every check, in positive and negative
# mode (two exceptions, each explained below). It fails on any 5xx, an answer
# the document does not describe (status, content type, headers, body), a
# request the document calls valid that is refused or one it calls invalid
# that is accepted, a 405 without `Allow`, or a panic in the app's log.
# No worker runs, so accepted jobs are never delivered anywhere; their keys
# are deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

st=target/chaos-venv/bin/schemathesis
app="${CARGO_TARGET_DIR:-target}/debug/hook-slinger-app"
examples="${SCHEMATHESIS_EXAMPLES:-60}"
[[ -x $st ]] || { echo "schemathesis is missing: run 'make chaos'" >&2; exit 1; }
[[ -x $app ]] || cargo build --bin hook-slinger-app
app=$(realpath "$app")

redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
queue="schemathesis-$$-$RANDOM"
token="schemathesis-$RANDOM$RANDOM$RANDOM"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
workdir=$(mktemp -d)
log="target/chaos/schemathesis-app.log"
mkdir -p target/chaos

cleanup() {
  [[ -n ${app_pid:-} ]] && kill -TERM "$app_pid" 2>/dev/null && wait "$app_pid" 2>/dev/null
  redis-cli -u "$redis_url" --scan --pattern "$queue*" | xargs -r -d '\n' -n 500 redis-cli -u "$redis_url" unlink >/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

# An empty working directory and a clean environment: no developer .env.
(cd "$workdir" && exec env -i PATH="$PATH" API_TOKEN="$token" APP_HOST=127.0.0.1 APP_PORT="$port" \
  REDIS_URL="$redis_url" QUEUE_NAME="$queue" MAX_PAYLOAD_BYTES=65536 LOG_LEVEL=warn LOG_COLOR=never \
  "$app") >"$log" 2>&1 &
app_pid=$!

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/ready" >/dev/null || { echo "app did not start:" >&2; cat "$log" >&2; exit 1; }

url="http://127.0.0.1:$port/openapi.json"
common=(
  --header "Authorization: Token $token"
  --checks all
  --mode all
  --phases examples,coverage,fuzzing
  --max-examples "$examples"
  --seed 20261125
  --generation-database none
  --request-timeout 10
  --max-response-time 10
  # One worker: two threads trip a CPython 3.11 race in its AST validator
  # ("SystemError: AST constructor recursion depth mismatch"), and one
  # keeps the run's order, and so its outcome, the same every time.
  --workers 1
  --no-color
)
# From target/chaos, where schemathesis keeps its .schemathesis/ cache.
# The hooks keep `deliver_at` within MAX_DELAY in valid cases (the one rule
# that moves with the clock; see the file).
hooks="$PWD/scripts/schemathesis_hooks.py"
st_run() { (cd target/chaos && SCHEMATHESIS_HOOKS="$hooks" "$OLDPWD/$st" run "$url" "${common[@]}" "$@"); }

out="$workdir/schemathesis.out"
started=$(date +%s)
set +e
endpoint_bodies=(--include-operation-id create_endpoint --include-operation-id update_endpoint
  --include-operation-id create_source --include-operation-id update_source)
st_run --exclude-operation-id create_jobs_batch --exclude-operation-id create_endpoint \
  --exclude-operation-id update_endpoint --exclude-operation-id create_source \
  --exclude-operation-id update_source --report junit --report-junit-path schemathesis-junit.xml \
  | tee "$out"
rc=${PIPESTATUS[0]}
# An endpoint's `headers` runs every check but one: the document states
# which header names are refused (`propertyNames`: HTTP tokens, not ours),
# but schemathesis does not generate by `propertyNames`, so it takes a
# refused name for a valid case (positive_data_acceptance). The refusals are
# checked in src/endpoints/input.rs and tests/it/fanout.rs instead. A
# source's `verify` is the same: which of its fields are required or allowed
# depends on `scheme` (a secret for every scheme but `none`; `header`,
# `encoding`, `prefix` only for `hmac-sha256`), which the document states in
# words; src/sources/input.rs and tests/it/sources.rs check those refusals.
st_run "${endpoint_bodies[@]}" --exclude-checks positive_data_acceptance \
  --report junit --report-junit-path schemathesis-junit-endpoints.xml | tee -a "$out"
rc=$(( rc | PIPESTATUS[0] ))
# The batch runs every check but one: it answers 202 with one result per
# item, so a batch whose items break the schema is refused item by item
# inside a 202, which negative_data_rejection cannot see (it reads only the
# status). tests/it/openapi.rs checks those per-item refusals instead.
st_run --include-operation-id create_jobs_batch --exclude-checks negative_data_rejection \
  --report junit --report-junit-path schemathesis-junit-batch.xml | tee -a "$out"
rc=$(( rc | PIPESTATUS[0] ))
set -e
took=$(( $(date +%s) - started ))
if grep -q 'panicked' "$log"; then
  echo "the app panicked during the run (the client saw a dropped connection):" >&2
  grep -m 5 -A 1 'panicked' "$log" >&2 || true
  rc=1
fi
cases=$(grep -Eo '^ *[0-9]+ generated' "$out" | awk '{n += $1} END {print n + 0}')
echo "{\"scenario\":\"schemathesis\",\"examples_per_operation\":$examples,\"cases\":$cases,\"exit\":$rc,\"seconds\":$took}" \
  >>target/chaos/results.jsonl
echo "scenario=schemathesis examples_per_operation=$examples cases=$cases exit=$rc seconds=$took"
exit $rc
