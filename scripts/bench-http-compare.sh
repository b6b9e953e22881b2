#!/usr/bin/env bash
# nlpd's server against the users' stack over HTTP, in one run: FastAPI + sentence-transformers
# with a dynamic batcher (scripts/peer_server.py) and `nlpd serve`, each loaded in turn by the
# same `nlpd bench --scenario openai-embed` (real sentences, closed loop, POST /v1/embeddings), on
# the same cores, one server at a time. Result caches are off on both sides (every request runs
# the model) and nlpd's prediction log is off (the peer keeps none).
#
#   scripts/bench-http-compare.sh [--model DIR] [--concurrency 1,8,32] [--batch 1] [--duration 10s]
#                                 [--threads N] [--quantize none|int8] [--out DIR]
#                                 [--cargo-profile release|tuning]
#
# The peer's packages come from PyPI into the git-ignored .venv-ref (tests/golden/requirements.txt
# plus scripts/peer-requirements.txt). Results: $OUT/nlpd.csv, $OUT/peer.csv, $OUT/table.md
# (default OUT=target/bench-http-compare).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/all-MiniLM-L6-v2
CONC=1,8,32
BATCH=1
DURATION=10s
THREADS=$(nproc)
QUANTIZE=none
OUT=target/bench-http-compare
PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --quantize) QUANTIZE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --cargo-profile) PROFILE=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench-http-compare: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -f "$MODEL/config.json" ] || { echo "bench-http-compare: $MODEL missing: run 'make models'" >&2; exit 1; }

if [ ! -x .venv-ref/bin/python ]; then
  echo "bench-http-compare: creating .venv-ref from tests/golden/requirements.txt (PyPI, ~4.5 GB)" >&2
  python3.11 -m venv .venv-ref
  .venv-ref/bin/pip install -q -r tests/golden/requirements.txt
fi
if ! .venv-ref/bin/python -c 'import fastapi, uvicorn' 2>/dev/null; then
  echo "bench-http-compare: installing FastAPI and uvicorn into .venv-ref" >&2
  .venv-ref/bin/pip install -q -r scripts/peer-requirements.txt
fi

echo "bench-http-compare: building nlpd (profile $PROFILE)" >&2
cargo build -q --profile "$PROFILE" --bin nlpd
DIR=$PROFILE
[ "$PROFILE" = dev ] && DIR=debug
NLPD=target/$DIR/nlpd
mkdir -p "$OUT"
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SERVER=
stop() {
  if [ -n "$SERVER" ]; then
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
  fi
  SERVER=
}
trap stop EXIT
wait_ready() {
  for _ in $(seq 1 240); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER" 2>/dev/null || { echo "bench-http-compare: the server exited" >&2; exit 1; }
    sleep 0.5
  done
  echo "bench-http-compare: no answer from $1 after 120 s" >&2
  exit 1
}
load() { # URL CSV
  "$NLPD" bench --url "$1" --scenario openai-embed --model embed --concurrency "$CONC" \
    --batch "$BATCH" --duration "$DURATION" --csv "$2" >&2
}

PORT=$(free_port)
echo "bench-http-compare: nlpd serve (quantize $QUANTIZE) on port $PORT" >&2
"$NLPD" serve --host 127.0.0.1 --port "$PORT" --model "embed=$MODEL" --preload --quantize "$QUANTIZE" \
  --cache-l1-bytes 0 --log-predictions=false --data-dir "$OUT/nlpd-data" >"$OUT/nlpd.log" 2>&1 &
SERVER=$!
wait_ready "http://127.0.0.1:$PORT/health/ready"
load "http://127.0.0.1:$PORT" "$OUT/nlpd.csv"
stop

PORT=$(free_port)
echo "bench-http-compare: FastAPI + sentence-transformers on port $PORT" >&2
.venv-ref/bin/python scripts/peer_server.py --model "$MODEL" --port "$PORT" --threads "$THREADS" \
  >"$OUT/peer.log" 2>&1 &
SERVER=$!
wait_ready "http://127.0.0.1:$PORT/health"
load "http://127.0.0.1:$PORT" "$OUT/peer.csv"
stop

PEER=$(.venv-ref/bin/python -c 'import fastapi, sentence_transformers, torch, uvicorn as u; print(f"FastAPI {fastapi.__version__} + uvicorn {u.__version__} + sentence-transformers {sentence_transformers.__version__} (PyTorch {torch.__version__})")')
python3 - "$OUT" "$PEER" "$QUANTIZE" "$BATCH" "$THREADS" <<'PY' | tee "$OUT/table.md"
import csv, sys
out, peer, quantize, batch, threads = sys.argv[1:]
rows = {name: list(csv.DictReader(open(f"{out}/{name}.csv"))) for name in ("nlpd", "peer")}
label = "nlpd serve" + (" (int8)" if quantize == "int8" else " (f32)")
print(f"| concurrency | {label} req/s | p50 / p99 ms | {peer} req/s | p50 / p99 ms | throughput ratio |")
print("|---|---|---|---|---|---|")
for a, b in zip(rows["nlpd"], rows["peer"]):
    f = lambda r, k: float(r[k] or "nan")
    ratio = f(a, "requests_per_s") / f(b, "requests_per_s")
    errs = "" if a["errors"] == b["errors"] == "0" else f" (errors: nlpd {a['errors']}, peer {b['errors']})"
    print(f"| {a['concurrency']} | {f(a,'requests_per_s'):.1f} | {f(a,'p50_ms'):.2f} / {f(a,'p99_ms'):.2f} "
          f"| {f(b,'requests_per_s'):.1f} | {f(b,'p50_ms'):.2f} / {f(b,'p99_ms'):.2f} | {ratio:.2f}×{errs} |")
print(f"\n{batch} input(s) per request, {threads} threads each, POST /v1/embeddings, closed loop.")
PY
echo "bench-http-compare: CPU: $(lscpu | sed -n 's/^Model name: *//p'), $THREADS threads, $(date -u +%F)" >&2
