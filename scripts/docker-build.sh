#!/usr/bin/env bash
# `docker build "$@"` with BuildKit, which the Dockerfile needs (cache mounts,
# COPY --chmod). Docker 23 and later build with BuildKit through the buildx
# plugin; clients before 23 have BuildKit built in (DOCKER_BUILDKIT=1). A
# machine can have a new client without buildx next to Debian's 20.10 one
# (docker.io), so take the first client on PATH that can do it.
set -euo pipefail

for client in $(type -ap docker | xargs -r realpath | awk '!seen[$0]++'); do
    if "$client" buildx version >/dev/null 2>&1; then
        exec "$client" build "$@"
    fi
    version=$("$client" version --format '{{.Client.Version}}' 2>/dev/null || true)
    if [[ ${version%%.*} =~ ^[0-9]+$ ]] && ((${version%%.*} < 23)); then
        DOCKER_BUILDKIT=1 exec "$client" build "$@"
    fi
done
echo "docker-build: no docker client here builds with BuildKit; install the buildx plugin" \
    "(Debian: docker-buildx, Docker's packages: docker-buildx-plugin)" >&2
exit 1
