#!/usr/bin/env python3
"""Times all-MiniLM-L6-v2 embeddings of the same texts with sentence-transformers (PyTorch) and with
`nlpd embed`, in one run, and prints the ratio. A developer tool (needs the reference venv of
tests/golden/README.md and a release build): .venv-ref/bin/python scripts/compare_embed.py

The texts are the 100 golden texts of tests/golden/minilm (short queries to >256-piece paragraphs),
repeated --repeat times. Model loading is excluded on both sides: PyTorch times encode() after a
warm-up; nlpd's time is a run over the texts minus a run over one line (load + one input).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="how many times the 100 texts are repeated")
    ap.add_argument("--batch-size", type=int, default=32, help="sentence-transformers batch size")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per engine (best is kept)")
    ap.add_argument("--nlpd", default=str(ROOT / "target/release/nlpd"))
    a = ap.parse_args()
    models = Path(os.environ.get("NLPD_MODELS_DIR", ROOT / "models"))
    model_dir = models / "all-MiniLM-L6-v2"
    texts = json.loads((ROOT / "tests/golden/minilm/golden.json").read_text())["texts"] * a.repeat
    if not Path(a.nlpd).exists():
        sys.exit(f"{a.nlpd} not found: run `make release`")

    import torch
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(model_dir), device="cpu")
    st.encode(texts[:64], batch_size=a.batch_size)
    best_st = min(timed(lambda: st.encode(texts, batch_size=a.batch_size)) for _ in range(a.runs))

    with tempfile.TemporaryDirectory() as d:
        full, one = Path(d, "all.jsonl"), Path(d, "one.jsonl")
        full.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        one.write_text(json.dumps({"text": texts[0]}) + "\n")
        run = lambda p: subprocess.run([a.nlpd, "embed", "--model", str(model_dir), "--input", str(p)],
                                       check=True, stdout=subprocess.DEVNULL)
        run(one)
        best_load = min(timed(lambda: run(one)) for _ in range(a.runs))
        best_all = min(timed(lambda: run(full)) for _ in range(a.runs))
    best_nlpd = max(1e-9, best_all - best_load)

    n = len(texts)
    print(f"texts: {n} (mean {sum(len(t) for t in texts) / n:.0f} chars), torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")
    print(f"sentence-transformers {__import__('sentence_transformers').__version__} (torch {torch.__version__}), batch {a.batch_size}: "
          f"{best_st:.3f} s = {n / best_st:.1f} texts/s")
    print(f"nlpd embed (release): {best_nlpd:.3f} s = {n / best_nlpd:.1f} texts/s (load {best_load:.3f} s excluded)")
    print(f"ratio nlpd / sentence-transformers throughput: {best_st / best_nlpd:.2f}x")


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
