# One image, three binaries: hook-slinger-app (default command),
# hook-slinger-worker and hook-slinger-monitor. docker-compose.yml and the
# Kubernetes manifests pick the binary with `command`.
#
#   docker build -t hook-slinger:local .
#
# Needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1 on
# Docker 20.10): the build uses cache mounts and COPY --chmod. Both are in
# the Dockerfile frontend built into every BuildKit, so there is no
# `# syntax=` line: building needs no frontend image from a registry.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- chef: toolchain + cargo-chef, cached until one of the ARGs changes ------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION=0.1.77
# aws-lc-sys (rustls' crypto provider) compiles its C with the `cc` crate, so a
# C toolchain is all it needs: no cmake, no Go, no Perl.
# Versions are not pinned: the Debian release is, and the toolchain only
# builds the binaries, it is not shipped.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /build

# --- planner: reduce the sources to a recipe (manifests + lockfile) ----------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- builder: dependencies first (cached while Cargo.lock is unchanged) ------
FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo chef cook --release --locked --bins --recipe-path recipe.json
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked --bins \
    && install -D -m 0755 -t /out \
        target/release/hook-slinger-app \
        target/release/hook-slinger-worker \
        target/release/hook-slinger-monitor

# --- runtime: Debian slim, CA certificates, non-root --------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: outbound webhooks and rediss:// verify TLS against the
# system roots. Nothing else is installed: the health probe below is bash.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hookslinger \
    && useradd --system --uid 10001 --gid hookslinger \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin hookslinger

# Health probe without curl (bash's /dev/tcp): it asks whichever hook-slinger
# binary runs in the container, so one HEALTHCHECK fits all three commands.
COPY --chmod=0755 deploy/docker/hs-healthcheck /usr/local/bin/hs-healthcheck

COPY --from=builder /out/ /usr/local/bin/

# Listen on all interfaces inside the container; the defaults of the binaries
# are for running on a host. Everything else comes from the environment.
ENV APP_HOST=0.0.0.0 \
    APP_PORT=5000 \
    MONITOR_HOST=0.0.0.0 \
    MONITOR_PORT=8899

USER 10001:10001
EXPOSE 5000 8899
# SIGTERM starts the graceful shutdown of every binary (the worker finishes
# in-flight deliveries for up to SHUTDOWN_TIMEOUT seconds).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["hs-healthcheck"]
CMD ["hook-slinger-app"]
