#!/usr/bin/env bash
# Install the Debian tools the deployment tests run (`make deploy-deps`; `make test` runs it):
#   podman, runc, debootstrap  build and run the container image offline (crates/cli/tests/deploy_container.rs)
#   haproxy                    the real load balancer of the scale-out test (deploy_scaleout.rs)
#   prometheus (promtool)      checks and unit-tests the recording and alert rules (deploy_monitoring.rs)
# Python tools (kubernetes-validate) come with the test venv (scripts/test-venv.sh).
#
# Idempotent: a tool already on PATH is not installed again, so a prepared machine needs neither
# network nor root (well under a second). Installing needs root (or sudo) and Debian's apt.
set -euo pipefail

PROG=deploy-deps
die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*"; }

case "${1:-}" in
    "") ;;
    -h|--help)
        echo "Usage: scripts/deploy-deps.sh   (apt-get installs podman runc debootstrap haproxy prometheus when missing)"
        exit 0 ;;
    *) die "unexpected argument '$1' (see --help)" ;;
esac

# command -> Debian package
declare -A NEEDED=(
    [podman]=podman
    [runc]=runc
    [debootstrap]=debootstrap
    [haproxy]=haproxy
    [promtool]=prometheus
)
# podman's rootful storage and networking helpers, installed beside it.
EXTRA=(uidmap fuse-overlayfs slirp4netns)

missing=()
for cmd in "${!NEEDED[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || [[ -x "/usr/sbin/$cmd" ]] || missing+=("${NEEDED[$cmd]}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    log "podman runc debootstrap haproxy promtool present"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get: install them with your package manager"
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]}: run as root (apt-get install) or install them yourself"
    SUDO=(sudo)
fi
# Serialise concurrent runs (apt holds its own lock, but two updates at once fail rather than wait).
if command -v flock >/dev/null 2>&1; then
    exec 9>/tmp/nlpd-deploy-deps.lock
    flock 9
fi
log "installing ${missing[*]} ${EXTRA[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >/tmp/nlpd-deploy-deps.log 2>&1 \
    || die "apt-get update failed (log: /tmp/nlpd-deploy-deps.log)"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" "${EXTRA[@]}" >>/tmp/nlpd-deploy-deps.log 2>&1 \
    || die "apt-get install ${missing[*]} failed (log: /tmp/nlpd-deploy-deps.log)"
# Debian's haproxy and prometheus packages start system services; the tests start their own.
for svc in haproxy prometheus; do
    if command -v systemctl >/dev/null 2>&1; then "${SUDO[@]}" systemctl stop "$svc" >/dev/null 2>&1 || true; fi
    "${SUDO[@]}" pkill -x "$svc" >/dev/null 2>&1 || true
done
log "installed: $(podman --version), $(haproxy -v 2>&1 | head -1), $(promtool --version 2>&1 | head -1)"
