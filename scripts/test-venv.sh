#!/usr/bin/env bash
# Create or update <repo>/.venv-test: the Python packages the test suite drives nlpd with or checks
# its files with (the official `openai` client, kubernetes-validate, ...), pinned in
# tests/python/requirements.txt (its header says which test uses which).
#
# Idempotent: the venv holds a stamp with the sha256 of the requirements file; when it matches,
# the script does nothing (well under a second). The venv never sees the system site-packages.
#
# Environment: PYTHON  interpreter to build the venv with (default: python3, needs >= 3.11)
set -euo pipefail

PROG=test-venv
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$SCRIPT_DIR")"
VENV="$REPO_ROOT/.venv-test"
REQS="$REPO_ROOT/tests/python/requirements.txt"
STAMP="$VENV/.nlpd-requirements.sha256"
PY="${PYTHON:-python3}"

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*"; }

case "${1:-}" in
    "") ;;
    -h|--help)
        echo "Usage: scripts/test-venv.sh   (creates/updates $VENV from $REQS)"
        exit 0 ;;
    *) die "unexpected argument '$1' (see --help)" ;;
esac

[[ -f "$REQS" ]] || die "$REQS not found"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum -- "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 -- "$1" | cut -d' ' -f1
    else
        "$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
    fi
}

up_to_date() {
    [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]
}

WANT="$(sha256_of "$REQS")"
if up_to_date; then
    log "$VENV up to date"
    exit 0
fi

# Serialise concurrent runs (two test processes, two shells) where flock exists.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$REPO_ROOT/.venv-test.lock"
    flock 9
    if up_to_date; then
        log "$VENV up to date"
        exit 0
    fi
fi

command -v "$PY" >/dev/null 2>&1 || die "$PY not found on PATH (install Python >= 3.11, or set PYTHON)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
    || die "$PY is $("$PY" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?'); the pinned test packages need Python >= 3.11 (set PYTHON)"
"$PY" -c 'import venv, ensurepip' 2>/dev/null \
    || die "$PY lacks the venv/ensurepip modules (on Debian/Ubuntu: apt-get install python3-venv)"

# Reuse an existing venv only if its interpreter works and it is isolated from the system
# site-packages; anything else is rebuilt from scratch.
if [[ -d "$VENV" ]]; then
    if ! "$VENV/bin/python" -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' >/dev/null 2>&1 \
        || ! grep -Eiq '^include-system-site-packages *= *false' "$VENV/pyvenv.cfg" 2>/dev/null \
        || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        log "removing broken or non-isolated $VENV"
        rm -rf -- "$VENV"
    fi
fi

if [[ ! -d "$VENV" ]]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV" >/dev/null 2>&1 \
        || { rm -rf -- "$VENV"; die "'$PY -m venv $VENV' failed (on Debian/Ubuntu: apt-get install python3-venv)"; }
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 \
        || { rm -rf -- "$VENV"; die "pip is missing from the new venv (ensurepip failed; on Debian/Ubuntu: apt-get install python3-pip python3-venv)"; }
fi

rm -f -- "$STAMP"
log "installing $(grep -Eo '^openai==[^ ;]+' "$REQS" || echo openai) and pinned deps into $VENV"
# PYTHONNOUSERSITE / PIP_USER=0: never look at or write to ~/.local either.
PYTHONNOUSERSITE=1 PIP_USER=0 "$VENV/bin/python" -m pip install \
    --disable-pip-version-check --no-input -q --only-binary=:all: -r "$REQS" \
    >"$VENV/pip-install.log" 2>&1 \
    || die "installing $REQS into $VENV failed (network? log: $VENV/pip-install.log)"
"$VENV/bin/python" -c 'import openai' >/dev/null 2>&1 \
    || die "openai does not import in $VENV after install (log: $VENV/pip-install.log)"
printf '%s\n' "$WANT" >"$STAMP.tmp" && mv -f -- "$STAMP.tmp" "$STAMP"
log "ready: $VENV/bin/python ($("$VENV/bin/python" -c 'import openai; print("openai", openai.__version__)'))"
