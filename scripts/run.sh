#!/usr/bin/env bash
# `make run`: app and worker in the foreground, logs interleaved; Ctrl-C stops both.
set -uo pipefail
bin=target/debug
pids=()
stop() { trap - INT TERM; kill -TERM "${pids[@]}" 2>/dev/null; wait; exit 0; }
trap stop INT TERM
"$bin/hook-slinger-app" & pids+=($!)
"$bin/hook-slinger-worker" & pids+=($!)
port=$(sed -n 's/^APP_PORT=//p' .env 2>/dev/null | tail -n 1)
port="${APP_PORT:-${port:-5000}}"
sleep 1
printf '\n  app:   http://127.0.0.1:%s  (Swagger UI: http://127.0.0.1:%s/docs)\n  Ctrl-C stops everything.\n\n' "$port" "$port"
# If either process dies, stop the other too.
wait -n
stop
