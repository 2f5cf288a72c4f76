#!/usr/bin/env bash
# `make run`: app, worker and monitor in the foreground, logs interleaved;
# Ctrl-C stops them all.
set -uo pipefail
bin=target/debug
pids=()
stop() { trap - INT TERM; kill -TERM "${pids[@]}" 2>/dev/null; wait; exit 0; }
trap stop INT TERM
# A setting from the environment, else the last value in .env, else a default.
setting() { local v; v=$(sed -n "s/^$1=//p" .env 2>/dev/null | tail -n 1); echo "${!1:-${v:-$2}}"; }
"$bin/hook-slinger-app" & pids+=($!)
"$bin/hook-slinger-worker" & pids+=($!)
"$bin/hook-slinger-monitor" serve & pids+=($!)
port=$(setting APP_PORT 5000)
mport=$(setting MONITOR_PORT 8899)
muser=$(setting MONITOR_USER "")
sleep 1
printf '\n  app:      http://127.0.0.1:%s  (Swagger UI: http://127.0.0.1:%s/docs)\n' "$port" "$port"
if [ -n "$muser" ]; then
  printf '  monitor:  http://127.0.0.1:%s  (log in as %s, password MONITOR_PASSWORD in .env)\n' "$mport" "$muser"
else
  printf '  monitor:  http://127.0.0.1:%s\n' "$mport"
fi
printf '  Ctrl-C stops everything.\n\n'
# If any process dies, stop the others too.
wait -n
stop
