#!/usr/bin/env bash
# Result cache latency over HTTP (docs/PERFORMANCE.md): starts two release servers with
# all-MiniLM-L6-v2 (A: L1 + Redis at 127.0.0.1:6379 under a fresh key prefix; B: no cache), runs
# crates/server/examples/cache_latency.rs against them, stops them and deletes A's Redis keys.
# Needs `cargo build --release -p nlpd -p nlpd-server --bin nlpd --example cache_latency`, the pack
# (NLPD_MODELS_DIR) and a Redis. Usage: scripts/cache-latency.sh [ROUND-LABEL]
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="perf-$(date +%s%N):"
target/release/nlpd serve --host 127.0.0.1 --port 18080 --model minilm=all-MiniLM-L6-v2 --preload \
  --redis-url redis://127.0.0.1:6379 --cache-prefix "$PREFIX" > /tmp/perf-a.log 2>&1 &
A=$!
target/release/nlpd serve --host 127.0.0.1 --port 18081 --model minilm=all-MiniLM-L6-v2 --preload \
  --cache-l1-bytes 0 > /tmp/perf-b.log 2>&1 &
B=$!
for p in 18080 18081; do
  for i in $(seq 1 300); do curl -sf localhost:$p/health/ready >/dev/null && break; sleep 0.2; done
done
L=target/release/examples/cache_latency
echo "round ${1:-1} $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
$L 127.0.0.1:18080 l1 5000
$L 127.0.0.1:18080 l2 1000
$L 127.0.0.1:18080 miss 500
$L 127.0.0.1:18080 off 500
printf 'no-cache server: '; $L 127.0.0.1:18081 off 500
kill $A $B; wait $A $B 2>/dev/null || true
redis-cli --scan --pattern "$PREFIX*" | xargs -r redis-cli unlink >/dev/null
