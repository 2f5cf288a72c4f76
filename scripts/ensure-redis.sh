#!/usr/bin/env bash
# Makes sure a Redis answers at REDIS_URL (default redis://127.0.0.1:6379).
# Starts a local redis-server when one is installed and none answers;
# otherwise says how to get one. Used by `make run`, `make test` and CI.
set -euo pipefail
url="${REDIS_URL:-}"
if [[ -z "$url" && -f .env ]]; then
  url=$(sed -n 's/^REDIS_URL=//p' .env | tail -n 1)
fi
url="${url:-redis://127.0.0.1:6379}"
hostport="${url#*://}"; hostport="${hostport##*@}"; hostport="${hostport%%/*}"
host="${hostport%:*}"; port="${hostport##*:}"
[[ "$host" == "$hostport" ]] && port=6379

answers() { (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

if answers; then exit 0; fi
case "$host" in
  127.0.0.1|localhost|::1) ;;
  *) echo "Redis at $host:$port does not answer; start it or fix REDIS_URL." >&2; exit 1 ;;
esac
if ! command -v redis-server >/dev/null; then
  echo "No Redis answers at $host:$port and redis-server is not installed." >&2
  echo "Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis)" >&2
  echo "or run one in Docker: docker run -d -p $port:6379 redis:7" >&2
  exit 1
fi
echo "Starting redis-server on $host:$port (no persistence; for development)"
mkdir -p target
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$PWD/target" --logfile "$PWD/target/redis-$port.log"
for _ in $(seq 1 50); do answers && exit 0; sleep 0.1; done
echo "redis-server did not come up; see target/redis-$port.log" >&2
exit 1
