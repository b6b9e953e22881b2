#!/usr/bin/env bash
# Build the nlpd container image (the Dockerfile's `runtime` stage) from an already-built binary,
# offline, with podman: no registry, no rust image, no crates.io.
#
#   1. Base: if no `debian:bookworm-slim` image exists locally, make one once: debootstrap a
#      minbase bookworm root file system (from the Debian mirror apt uses), trim its docs, keep it
#      as a tarball in $NLPD_CACHE_DIR/container-base/ and `podman import` it with that tag.
#      With the image (or the tarball) present this step takes well under a second.
#   2. Image: stage a tiny build context (the Dockerfile, a stripped copy of the binary, optionally
#      a models dir) and run
#        podman build --pull=never --target runtime --build-arg NLPD_BINARY_FROM=prebuilt \
#          --build-arg NLPD_BINARY=nlpd -t nlpd:TAG CONTEXT
#      The binary itself (e.g. target/release/nlpd) is never modified.
#
# podman runs build steps with runc (crun, Debian's default, fails in some sandboxes; override
# with NLPD_OCI_RUNTIME=crun or NLPD_OCI_RUNTIME= for podman's own default).
set -euo pipefail

PROG=container-image
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$SCRIPT_DIR")"

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*" >&2; }

usage() {
    cat <<EOF
Usage: scripts/container-image.sh [options]

Builds the image nlpd:TAG (Dockerfile target \`runtime\`) from a prebuilt nlpd binary with podman,
offline. Makes a local debian:bookworm-slim base with debootstrap first if there is none.

Options:
  --binary PATH    nlpd binary to package (env NLPD_BINARY; default target/release/nlpd)
  --tag TAG        image tag (env NLPD_IMAGE_TAG; default latest); the image is NAME:TAG
  --name NAME      image name (env NLPD_IMAGE_NAME; default nlpd)
  --models DIR     bake DIR into the image at /models (default: none; mount models at run time)
  --no-strip       package the binary as it is (default: a stripped copy, much smaller)
  --base-only      only make sure the debian:bookworm-slim base exists
  --rebuild-base   debootstrap the base again even if the image or cached tarball exists
  -h, --help       this help

Environment:
  NLPD_CACHE_DIR      cache dir (default ~/.cache/nlpd); the base tarball goes to container-base/
  NLPD_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the one in /etc/apt/sources.list*)
  NLPD_OCI_RUNTIME    OCI runtime for the build's RUN steps (default runc; empty: podman's default)
  NLPD_BUILD_ULIMITS  --ulimit values for the build (default "nofile=1024:1024 nproc=1024:1024")
  PODMAN              podman command (default podman)

Prints the image name (NAME:TAG) on stdout as the last line; everything else goes to stderr.
EOF
}

BINARY="${NLPD_BINARY:-$REPO_ROOT/target/release/nlpd}"
TAG="${NLPD_IMAGE_TAG:-latest}"
NAME="${NLPD_IMAGE_NAME:-nlpd}"
MODELS=""
STRIP=1
BASE_ONLY=0
REBUILD_BASE=0
CACHE_DIR="${NLPD_CACHE_DIR:-$HOME/.cache/nlpd}"
OCI_RUNTIME="${NLPD_OCI_RUNTIME-runc}"
PODMAN="${PODMAN:-podman}"
BASE_IMAGE="debian:bookworm-slim"

need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) need_arg "$@"; BINARY="$2"; shift 2 ;;
        --binary=*) BINARY="${1#*=}"; shift ;;
        --tag) need_arg "$@"; TAG="$2"; shift 2 ;;
        --tag=*) TAG="${1#*=}"; shift ;;
        --name) need_arg "$@"; NAME="$2"; shift 2 ;;
        --name=*) NAME="${1#*=}"; shift ;;
        --models) need_arg "$@"; MODELS="$2"; shift 2 ;;
        --models=*) MODELS="${1#*=}"; shift ;;
        --no-strip) STRIP=0; shift ;;
        --base-only) BASE_ONLY=1; shift ;;
        --rebuild-base) REBUILD_BASE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unexpected argument '$1' (see --help)" ;;
    esac
done

[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag '$TAG' (letters, digits, _ . -)"
[[ "$NAME" =~ ^[a-z0-9]+([._/-][a-z0-9]+)*$ ]] || die "invalid image name '$NAME' (lower case, digits, . _ / -)"
command -v "$PODMAN" >/dev/null 2>&1 || die "$PODMAN not found: install podman (scripts/deploy-deps.sh)"
if [[ -n "$OCI_RUNTIME" ]]; then
    command -v "$OCI_RUNTIME" >/dev/null 2>&1 || [[ -x "/usr/sbin/$OCI_RUNTIME" ]] \
        || die "OCI runtime $OCI_RUNTIME not found: install it (scripts/deploy-deps.sh) or set NLPD_OCI_RUNTIME"
fi

# Check the inputs before a base build that may take a minute.
if [[ $BASE_ONLY -eq 0 ]]; then
    [[ -f "$BINARY" ]] || die "binary $BINARY not found: build it (cargo build --release --bin nlpd) or pass --binary"
    [[ "$(head -c 4 "$BINARY" | od -An -c | tr -d ' ')" == '177ELF' ]] || die "$BINARY is not an ELF executable"
    if [[ -n "$MODELS" ]]; then
        [[ -d "$MODELS" ]] || die "models dir $MODELS not found"
    fi
fi

# ---------------------------------------------------------------------------------------------
# 1. The base image
# ---------------------------------------------------------------------------------------------
BASE_DIR="$CACHE_DIR/container-base"
BASE_TAR="$BASE_DIR/debian-bookworm-minbase.tar"

debian_mirror() {
    if [[ -n "${NLPD_DEBIAN_MIRROR:-}" ]]; then
        echo "$NLPD_DEBIAN_MIRROR"; return
    fi
    local f uri
    # deb822 (.sources) first, then one-line format; skip the security archive.
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" | grep -v -- '-security' | head -1 || true)
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):/) { print $i; break } }' "$f" \
            | grep -v -- '-security' | head -1 || true)
        [[ -n "$uri" ]] && { echo "$uri"; return; }
    done
    echo "http://deb.debian.org/debian"
}

make_base_tarball() {
    command -v debootstrap >/dev/null 2>&1 || [[ -x /usr/sbin/debootstrap ]] \
        || die "no $BASE_IMAGE image and no debootstrap to make one: install it (scripts/deploy-deps.sh) or podman pull docker.io/library/$BASE_IMAGE"
    [[ $(id -u) -eq 0 ]] \
        || die "no $BASE_IMAGE image; making one with debootstrap needs root (or: podman pull docker.io/library/$BASE_IMAGE)"
    local mirror rootfs
    mirror="$(debian_mirror)"
    rootfs="$(mktemp -d "$BASE_DIR/rootfs.XXXXXX")"
    log "debootstrap --variant=minbase bookworm from $mirror (about a minute; log: $BASE_DIR/debootstrap.log)"
    if ! PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
            >"$BASE_DIR/debootstrap.log" 2>&1; then
        rm -rf "$rootfs"
        die "debootstrap from $mirror failed (last lines: $(tail -3 "$BASE_DIR/debootstrap.log" | tr '\n' ' '); set NLPD_DEBIAN_MIRROR?)"
    fi
    # Trim like debian:bookworm-slim: no docs (copyright files stay), man pages, locales, apt
    # lists or caches, logs.
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/{man,info,locale}/* "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/log/* "$rootfs"/tmp/* 2>/dev/null || true
    # The container's resolver comes from the engine; none of the host's.
    : >"$rootfs/etc/resolv.conf"
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$BASE_TAR.tmp" . || { rm -rf "$rootfs" "$BASE_TAR.tmp"; die "tar of the base rootfs failed"; }
    rm -rf "$rootfs"
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    log "base rootfs: $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
}

ensure_base() {
    if [[ $REBUILD_BASE -eq 0 ]] && "$PODMAN" image exists "$BASE_IMAGE"; then
        log "base $BASE_IMAGE present"
        return
    fi
    mkdir -p "$BASE_DIR"
    # Serialise concurrent runs (two test processes): one debootstrap, one import.
    if command -v flock >/dev/null 2>&1; then
        exec 8>"$BASE_DIR/.lock"
        flock 8
        if [[ $REBUILD_BASE -eq 0 ]] && "$PODMAN" image exists "$BASE_IMAGE"; then
            log "base $BASE_IMAGE present"
            return
        fi
    fi
    if [[ $REBUILD_BASE -eq 1 || ! -s "$BASE_TAR" ]]; then
        make_base_tarball
    else
        log "importing the cached base $BASE_TAR"
    fi
    "$PODMAN" import --quiet \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'LABEL org.nlpd.base="debootstrap --variant=minbase bookworm (scripts/container-image.sh)"' \
        --message "debootstrap minbase bookworm, made by nlpd scripts/container-image.sh" \
        "$BASE_TAR" "$BASE_IMAGE" >/dev/null \
        || die "podman import $BASE_TAR as $BASE_IMAGE failed (delete the tarball to debootstrap again)"
    log "base $BASE_IMAGE imported"
}

ensure_base
[[ $BASE_ONLY -eq 1 ]] && exit 0

# ---------------------------------------------------------------------------------------------
# 2. The image
# ---------------------------------------------------------------------------------------------

TMP_PARENT="${TMPDIR:-/tmp}"
CONTEXT="$(mktemp -d "$TMP_PARENT/nlpd-image-context.XXXXXX")"
trap 'rm -rf "$CONTEXT"' EXIT
cp "$REPO_ROOT/Dockerfile" "$CONTEXT/Dockerfile"
if [[ $STRIP -eq 1 ]] && command -v strip >/dev/null 2>&1; then
    strip -o "$CONTEXT/nlpd" "$BINARY" || die "strip $BINARY failed (use --no-strip)"
else
    [[ $STRIP -eq 1 ]] && log "strip not found (binutils): packaging the binary unstripped"
    cp "$BINARY" "$CONTEXT/nlpd"
fi
chmod 0755 "$CONTEXT/nlpd"
log "binary: $BINARY ($(du -h "$BINARY" | cut -f1)) -> $(du -h "$CONTEXT/nlpd" | cut -f1) in the image"

BUILD_ARGS=(--build-arg NLPD_BINARY_FROM=prebuilt --build-arg NLPD_BINARY=nlpd)
if [[ -n "$MODELS" ]]; then
    # Hard links where the file system allows (no copy of hundreds of MB), else a copy.
    mkdir "$CONTEXT/models"
    cp -rl "$MODELS/." "$CONTEXT/models" 2>/dev/null \
        || { rm -rf "$CONTEXT/models" && mkdir "$CONTEXT/models" && cp -r "$MODELS/." "$CONTEXT/models"; } \
        || die "copying $MODELS into the build context failed"
fi
RUNTIME_ARGS=()
[[ -n "$OCI_RUNTIME" ]] && RUNTIME_ARGS=(--runtime "$OCI_RUNTIME")
# podman's default RLIMIT_NOFILE/NPROC for build steps can exceed what an unprivileged sandbox may
# set ("error setting rlimit"); the build's one RUN step (useradd) needs little.
for u in ${NLPD_BUILD_ULIMITS-nofile=1024:1024 nproc=1024:1024}; do RUNTIME_ARGS+=(--ulimit "$u"); done

IMAGE="$NAME:$TAG"
# One build at a time: the prune below must not remove a concurrent build's stage image.
mkdir -p "$CACHE_DIR"
if command -v flock >/dev/null 2>&1; then
    exec 7>"$CACHE_DIR/container-image.lock"
    flock 7
fi
log "podman build --pull=never --target runtime -t $IMAGE"
if [[ -z "$MODELS" ]]; then
    "$PODMAN" build --pull=never "${RUNTIME_ARGS[@]}" --target runtime "${BUILD_ARGS[@]}" \
        -t "$IMAGE" -f "$CONTEXT/Dockerfile" "$CONTEXT" >&2 \
        || die "podman build of $IMAGE failed (output above)"
else
    # The runtime image (untagged), then one layer on top with the models (owned by root,
    # read-only for the nlpd user), tagged.
    "$PODMAN" build --pull=never "${RUNTIME_ARGS[@]}" --target runtime "${BUILD_ARGS[@]}" \
        --iidfile "$CONTEXT/runtime.iid" -f "$CONTEXT/Dockerfile" "$CONTEXT" >&2 \
        || die "podman build of the runtime stage failed (output above)"
    printf 'FROM %s\nCOPY models/ /models/\n' "$(cat "$CONTEXT/runtime.iid")" >"$CONTEXT/Containerfile.models"
    log "baking $MODELS into /models"
    "$PODMAN" build --pull=never "${RUNTIME_ARGS[@]}" -t "$IMAGE" -f "$CONTEXT/Containerfile.models" "$CONTEXT" >&2 \
        || die "podman build of $IMAGE (models layer) failed (output above)"
fi
# The `prebuilt` stage leaves untagged images holding a copy of the binary (tens of MB per
# build); nothing uses them once the image is built.
"$PODMAN" image prune -f --filter label=org.nlpd.stage=prebuilt >/dev/null 2>&1 \
    || log "warning: could not prune the prebuilt stage's intermediate images"
log "built $IMAGE ($("$PODMAN" image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
echo "$IMAGE"
