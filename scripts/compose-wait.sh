#!/usr/bin/env bash
# compose-wait.sh PROJECT [SECONDS]: wait until every container of the compose
# project PROJECT runs and is healthy (containers without a health check:
# running). What `docker compose up --wait` does, for Compose v1 as well.
# On timeout, prints each container's state and the end of the unhealthy
# ones' logs, and exits 1.
set -euo pipefail
project=${1:?usage: compose-wait.sh PROJECT [SECONDS]}
timeout=${2:-180}

states() {
    docker ps --all --quiet --filter "label=com.docker.compose.project=$project" |
        xargs -r docker inspect --format \
            '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' |
        sed 's|^/||'
}

deadline=$((SECONDS + timeout))
while :; do
    current=$(states)
    [[ -n $current ]] || { echo "compose-wait: project $project has no containers" >&2; exit 1; }
    waiting=$(awk '!($2 == "running" && ($3 == "healthy" || $3 == "none"))' <<<"$current")
    if [[ -z $waiting ]]; then
        echo "compose-wait: $(wc -l <<<"$current") containers of $project healthy"
        exit 0
    fi
    if ((SECONDS >= deadline)); then
        echo "compose-wait: not healthy after ${timeout}s:" >&2
        sed 's/^/  /' <<<"$current" >&2
        while read -r name _; do
            echo "--- last log lines of $name" >&2
            docker logs --tail 20 "$name" 2>&1 | sed 's/^/  /' >&2
        done <<<"$waiting"
        exit 1
    fi
    sleep 2
done
