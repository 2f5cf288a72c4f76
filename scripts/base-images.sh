#!/usr/bin/env bash
# `make base_images`: local stand-ins for the images that Dockerfile and
# docker-compose.yml name, for a Docker engine that cannot pull from a
# registry. With registry access you never need this: Docker pulls the real
# images.
#
# Each stand-in is a Debian root filesystem made by debootstrap from Debian's
# packages and loaded with `docker import`, tagged with exactly the name the
# Dockerfile or compose file uses, and labelled org.hook-slinger.stand-in so
# that `docker images --filter label=org.hook-slinger.stand-in` lists them.
#
#   debian:<release>-slim             debootstrap minbase, docs and apt lists removed
#   rust:<version>-slim-<release>     + gcc, libc6-dev, ca-certificates, and this
#                                     machine's Rust toolchain under /usr/local,
#                                     laid out as the official image does, and
#                                     crates.io replaced by a snapshot (below)
#   redis:<version>-<release>         + Debian's redis-server and redis-cli, with an
#                                     entrypoint that behaves like the official one
#
# Crates: builds on this kind of machine cannot reach crates.io (containers
# do not trust the TLS of the way out, while apt's plain-HTTP mirror works).
# So the Rust stand-in answers crates.io from a snapshot made here with
# `cargo vendor`: exactly the crates of Cargo.lock plus cargo-chef at the
# version the Dockerfile installs, with cargo-chef's own Cargo.lock, so the
# Dockerfile's `cargo install cargo-chef --locked`, `cargo chef cook --locked`
# and `cargo build --locked` run unchanged, offline. Its label
# org.hook-slinger.crates records what it holds; when Cargo.lock or the
# cargo-chef version change, the next run makes the stand-in again.
#
# A tag that exists already is left alone (the Rust stand-in: while its
# snapshot is current), so a second run takes seconds; `docker rmi <tag>`
# rebuilds one. Downloaded .deb files are kept in target/base-images/debs.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=target/base-images
LABEL=org.hook-slinger.stand-in
say() { echo "base_images: $*"; }
die() { echo "base_images: $*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

# --- which images: read them off the files that use them --------------------

# FROM lines of the Dockerfile with the global ARG defaults substituted;
# stage names (FROM chef AS builder) are not images.
dockerfile_images() {
    awk '
        /^ARG [A-Za-z_]+=/ && !seen_from { split(substr($0, 5), kv, "="); arg[kv[1]] = kv[2] }
        /^FROM / {
            seen_from = 1
            image = $2
            for (name in arg) { gsub("\\$\\{" name "\\}", arg[name], image); gsub("\\$" name, arg[name], image) }
            if (!(image in stage)) print image
            if (toupper($3) == "AS") stage[$4] = 1
        }' Dockerfile
}

compose_images() {
    # Images with a variable in their name are ours, built from the Dockerfile.
    sed -n 's/^[[:space:]]*image:[[:space:]]*\([^[:space:]]*\)[[:space:]]*$/\1/p' docker-compose.yml | grep -v '\$' || true
}

# --- building blocks ----------------------------------------------------------

# host_mirror SUFFIX: the URI this machine's apt uses for its Debian release
# (SUFFIX '') or its security updates (SUFFIX -security), read from apt's
# sources in either format; the stand-ins use the same mirrors.
host_mirror() {
    local codename
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    {
        sed -E 's/\[[^]]*\]//' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk '$1 == "deb" {print $2, $3}'
        awk '/^URIs:/ {uri = $2} /^Suites:/ {for (i = 2; i <= NF; i++) print uri, $i} /^$/ {uri = ""}' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null
    } | awk -v suite="$codename$1" '$2 == suite {print $1; exit}'
}

mirrors() {
    MIRROR=${DEBIAN_MIRROR:-$(host_mirror '')}
    SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(host_mirror -security)}
    [[ -n $MIRROR ]] || die "no Debian mirror in apt's sources here: set DEBIAN_MIRROR"
    [[ -n $SECURITY_MIRROR ]] || SECURITY_MIRROR=$MIRROR-security
}

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return
    say "installing debootstrap from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

# Removes a root filesystem, after unmounting whatever an interrupted
# debootstrap left mounted inside it (/proc, /sys).
remove_rootfs() {
    local dir=$1 mount
    [[ -d $dir ]] || return 0
    while read -r mount; do
        [[ -n $mount ]] && umount -l "$mount" 2>/dev/null || true
    done < <(findmnt -rno TARGET | grep -F "$(realpath "$dir")/" | sort -r)
    rm -rf --one-file-system "$dir"
}

# bootstrap DIR RELEASE [PACKAGE,...]: a minimal Debian in DIR, made to look
# like the official slim images (no docs, man pages or apt lists; daemons
# never started by package installs).
bootstrap() {
    local dir=$1 release=$2 include=${3:-}
    remove_rootfs "$dir"
    mkdir -p "$WORK/debs"
    say "debootstrap $release${include:+ + $include} (log: $dir.log)"
    if ! debootstrap --variant=minbase --cache-dir="$(realpath "$WORK/debs")" \
            ${include:+--include="$include"} "$release" "$dir" "$MIRROR" >"$dir.log" 2>&1; then
        tail -20 "$dir.log" >&2
        die "debootstrap failed"
    fi
    # As in the official images: later package installs skip docs, daemons
    # are never started, and apt keeps no lists or archives in a layer.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 0755 "$dir/usr/sbin/policy-rc.d"
    cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$dir"/usr/share/{man,groff,info,lintian,locale}/*
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
    rm -rf "$dir"/var/log/* "$dir"/tmp/* "$dir"/root/.bash_history
    : >"$dir/etc/hostname"
    : >"$dir/etc/resolv.conf"
}

# load_image DIR TAG [--change ...]: load the root filesystem as image TAG.
load_image() {
    local dir=$1 tag=$2
    shift 2
    tar --numeric-owner --xattrs -C "$dir" -c . |
        docker import --message "hook-slinger base_images stand-in for $tag" \
            --change "LABEL $LABEL=$tag" "$@" - "$tag" >/dev/null
    remove_rootfs "$dir"
    say "$tag: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1 / 1e6}')"
}

# --- the stand-ins ------------------------------------------------------------

debian_slim() { # debian:bookworm-slim
    local tag=$1 release=${1#debian:}
    release=${release%-slim}
    local dir=$WORK/debian-$release
    bootstrap "$dir" "$release"
    load_image "$dir" "$tag" --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
}

rust_slim() { # rust:1.95-slim-bookworm
    local tag=$1 version release
    version=${tag#rust:}
    release=${version##*-slim-}
    version=${version%%-slim-*}
    # The toolchain copied in is this machine's: it must be the version the
    # tag promises, or the image would lie about what it builds with.
    local have sysroot
    have=$(rustc --version | awk '{print $2}')
    [[ $have == "$version" || $have == "$version".* ]] ||
        die "$tag needs Rust $version, but this machine's rustc is $have"
    sysroot=$(rustc --print sysroot)
    local dir=$WORK/rust-$release toolchain=$have-x86_64-unknown-linux-gnu
    bootstrap "$dir" "$release" ca-certificates,gcc,libc6-dev
    # The layout of the official image: RUSTUP_HOME=/usr/local/rustup,
    # CARGO_HOME=/usr/local/cargo, rustup's proxies in /usr/local/cargo/bin.
    # The docs component (~800 MB) is left out; the official image uses the
    # minimal profile, which has none either.
    say "copying Rust $have from $sysroot"
    mkdir -p "$dir/usr/local/rustup/toolchains/$toolchain" "$dir/usr/local/cargo/bin"
    tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$dir/usr/local/rustup/toolchains/$toolchain" -x
    sed -i '/^rust-docs-/d' "$dir/usr/local/rustup/toolchains/$toolchain/lib/rustlib/components"
    cat >"$dir/usr/local/rustup/settings.toml" <<EOF
version = "12"
default_toolchain = "$toolchain"
profile = "minimal"
EOF
    install -m 0755 "$(command -v rustup)" "$dir/usr/local/cargo/bin/rustup"
    local proxy
    for proxy in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-lldb; do
        ln "$dir/usr/local/cargo/bin/rustup" "$dir/usr/local/cargo/bin/$proxy"
    done
    crates_snapshot "$dir/usr/local/cargo/crates-snapshot"
    cat >"$dir/usr/local/cargo/config.toml" <<'EOF'
# hook-slinger base_images: crates.io is answered from a snapshot of the
# crates that Cargo.lock and cargo-chef need (no crates.io from inside builds).
[source.crates-io]
replace-with = "hook-slinger-snapshot"

[source.hook-slinger-snapshot]
directory = "/usr/local/cargo/crates-snapshot"
EOF
    chmod -R a+w "$dir/usr/local/rustup" "$dir/usr/local/cargo"
    load_image "$dir" "$tag" --change 'CMD ["bash"]' \
        --change "LABEL org.hook-slinger.crates=$(crates_id)" \
        --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' \
        --change "ENV RUST_VERSION=$have" \
        --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
}

chef_version() {
    sed -n 's/^ARG CARGO_CHEF_VERSION=\([^[:space:]]*\).*/\1/p' Dockerfile | head -1
}

# What the snapshot must hold: Cargo.lock and the cargo-chef version.
crates_id() {
    { cat Cargo.lock; echo "cargo-chef $(chef_version)"; } | sha256sum | cut -c1-16
}

# crates_snapshot DIR: a cargo directory source with the crates of Cargo.lock
# and cargo-chef (its package and the crates of its own Cargo.lock).
crates_snapshot() {
    local out=$1 chef tmp=$WORK/crates
    chef=$(chef_version)
    [[ -n $chef ]] || die "no ARG CARGO_CHEF_VERSION in Dockerfile"
    say "crates snapshot: Cargo.lock + cargo-chef $chef (cargo vendor, log: $tmp.log)"
    rm -rf "$tmp"
    mkdir -p "$tmp/fetch/src"
    cat >"$tmp/fetch/Cargo.toml" <<EOF
[package]
name = "hs-fetch-cargo-chef"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
cargo-chef = "=$chef"
EOF
    : >"$tmp/fetch/src/lib.rs"
    {
        # The cargo-chef package itself, checksummed as cargo vendor does...
        cargo vendor --manifest-path "$tmp/fetch/Cargo.toml" --versioned-dirs "$tmp/chef" &&
            cp -r "$tmp/chef/cargo-chef-$chef" "$tmp/cargo-chef" &&
            rm "$tmp/cargo-chef/.cargo-checksum.json" &&
            # ...then what its Cargo.lock (for `cargo install --locked`) and
            # ours name, at exactly those versions.
            cargo vendor --locked --manifest-path "$tmp/cargo-chef/Cargo.toml" \
                --sync Cargo.toml --versioned-dirs "$out" &&
            cp -r "$tmp/chef/cargo-chef-$chef" "$out/"
    } >"$tmp.log" 2>&1 || { tail -20 "$tmp.log" >&2; die "cargo vendor failed"; }
    rm -rf "$tmp"
    say "crates snapshot: $(find "$out" -mindepth 1 -maxdepth 1 -type d | wc -l) crates, $(du -sh "$out" | cut -f1)"
}

redis_image() { # redis:7.4-bookworm
    local tag=$1 release=${1##*-}
    case $release in bookworm | trixie | bullseye) ;; *) release=bookworm ;; esac
    local dir=$WORK/redis-$release
    bootstrap "$dir" "$release" redis-server,redis-tools
    # The official entrypoint: options alone mean redis-server, the server
    # drops to the redis user and owns /data. Its redis-server is built with
    # protected mode off (it is reached over the container network, and
    # publishing the port is the user's choice); Debian's is not, so say it
    # on the command line unless the user did or gave a config file.
    cat >"$dir/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
    case " $* " in
        *" --protected-mode "* | *.conf" "*) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis '{}' +
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
EOF
    chmod 0755 "$dir/usr/local/bin/docker-entrypoint.sh"
    mkdir -p "$dir/data"
    chroot "$dir" chown redis:redis /data
    local version
    version=$(chroot "$dir" redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
    say "$tag stands in with Debian's redis-server $version"
    load_image "$dir" "$tag" \
        --change 'ENTRYPOINT ["docker-entrypoint.sh"]' --change 'CMD ["redis-server"]' \
        --change 'WORKDIR /data' --change 'VOLUME /data' --change 'EXPOSE 6379'
}

# --- main ---------------------------------------------------------------------

mapfile -t images < <({ dockerfile_images; compose_images; } | awk '!seen[$0]++')
[[ ${#images[@]} -gt 0 ]] || die "found no image names in Dockerfile or docker-compose.yml"
mkdir -p "$WORK"
for image in "${images[@]}"; do
    if docker image inspect "$image" >/dev/null 2>&1; then
        snapshot=$(docker image inspect --format '{{index .Config.Labels "org.hook-slinger.crates"}}' "$image")
        if [[ -z $snapshot || $snapshot == "$(crates_id)" ]]; then
            say "$image: present, skipped"
            continue
        fi
        say "$image: its crates snapshot is not for this Cargo.lock, making it again"
        docker rmi "$image" >/dev/null
    fi
    ensure_debootstrap
    [[ -n ${MIRROR:-} ]] || mirrors
    case $image in
        debian:*-slim) debian_slim "$image" ;;
        rust:*-slim-*) rust_slim "$image" ;;
        redis:*) redis_image "$image" ;;
        *) die "no recipe for a stand-in of $image (named in Dockerfile or docker-compose.yml)" ;;
    esac
done
