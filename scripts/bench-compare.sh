#!/usr/bin/env bash
# nlpd's encoder against sentence-transformers and ONNX Runtime, in one run, on one corpus and one
# thread count; prints a table with ratios and writes an SVG plot of throughput vs batch size.
#
#   scripts/bench-compare.sh [--model DIR] [--corpus FILE] [--batch 1,8,32,128] [--threads N]
#                            [--repeat 3] [--out DIR] [--cargo-profile bench|tuning]
#
# Python peers come from PyPI into the git-ignored venv .venv-ref (tests/golden/requirements.txt,
# the same pins the golden outputs were made with); nothing is fetched from a model hub: the ONNX
# model is exported from the local checkpoint by torch.onnx inside scripts/bench_peers.py.
# Results: $OUT/results.jsonl, $OUT/table.md, $OUT/throughput.svg (default OUT=target/bench-compare).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/all-MiniLM-L6-v2
CORPUS=tests/data/bench_corpus.txt
BATCH=1,8,32,128
THREADS=$(nproc)
REPEAT=3
OUT=target/bench-compare
PROFILE=bench
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --corpus) CORPUS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --cargo-profile) PROFILE=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench-compare: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$MODEL/config.json" ] || { echo "bench-compare: $MODEL missing: run 'make models'" >&2; exit 1; }
[ -f "$CORPUS" ] || { echo "bench-compare: corpus $CORPUS missing" >&2; exit 1; }
# cargo runs benchmarks from the package's folder: hand them absolute paths.
MODEL=$(realpath "$MODEL")
CORPUS=$(realpath "$CORPUS")

if [ ! -x .venv-ref/bin/python ]; then
  echo "bench-compare: creating .venv-ref from tests/golden/requirements.txt (PyPI, ~4.5 GB)" >&2
  python3.11 -m venv .venv-ref
  .venv-ref/bin/pip install -q -r tests/golden/requirements.txt
fi

mkdir -p "$OUT"
RES="$OUT/results.jsonl"
: > "$RES"
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
echo "bench-compare: building the engine benchmark (profile $PROFILE)" >&2
cargo bench --profile "$PROFILE" -p nlpd-engine --bench encoder --no-run 2>&1 | tail -1 >&2
# bf16 twice where the CPU has AMX: its tile kernel, then AVX512-BF16 with AMX off (NLPD_AMX=off).
for variant in "fast none packed on" "fast none gemm on" "fast int8 packed on" "fast bf16 packed on" \
               "fast bf16 packed off" "candle none packed on"; do
  set -- $variant
  if [ "$4" = off ] && ! grep -q amx_bf16 /proc/cpuinfo; then continue; fi
  echo "bench-compare: nlpd (backend $1, quantize $2, f32 kernel $3, AMX $4)" >&2
  NLPD_AMX=$4 NLPD_F32_KERNEL=$3 cargo bench -q --profile "$PROFILE" -p nlpd-engine --bench encoder -- --model "$MODEL" \
    --corpus "$CORPUS" --backend "$1" --quantize "$2" --batch "$BATCH" --repeat "$REPEAT" --json >> "$RES"
done
echo "bench-compare: Python peers" >&2
.venv-ref/bin/python scripts/bench_peers.py --model "$MODEL" --corpus "$CORPUS" --batch "$BATCH" \
  --threads "$THREADS" --repeat "$REPEAT" 2> >(grep -E '^  ' >&2) >> "$RES"
.venv-ref/bin/python scripts/bench_report.py "$RES" --svg "$OUT/throughput.svg" | tee "$OUT/table.md"
echo "bench-compare: CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $THREADS threads, $(date -u +%F)" | tee -a "$OUT/table.md"
