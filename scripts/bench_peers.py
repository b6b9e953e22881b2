#!/usr/bin/env python3
"""The Python peers of `nlpd`'s encoder benchmark, measured the same way (scripts/bench-compare.sh).

Engines: sentence-transformers (PyTorch, fp32), ONNX Runtime fp32 and ONNX Runtime int8 (dynamic,
per-channel; `onnxruntime.quantization.quantize_dynamic`). The ONNX model is exported from the
same checkpoint by `torch.onnx` into a scratch folder. Each engine gets the same corpus, the same
thread count and the same protocol as `cargo bench -p nlpd-engine --bench encoder`:
tokenization done beforehand (compute only), batches in corpus order and length-sorted, best of
`--repeat` runs, then the median latency of one ~28-word-piece sentence alone over 200 runs.
Prints one JSON object per engine per line.
"""
import argparse
import json
import os
import sys
import tempfile
import time


def chunks(order, n):
    return [order[i : i + n] for i in range(0, len(order), n)]


def measure(name, batches, order_plain, order_sorted, repeat, make_batch, forward, one, extra):
    rows = []
    for b in batches:
        res = {"batch": b}
        for key, order in (("corpus_order", order_plain), ("sorted", order_sorted)):
            prepared = [make_batch(c) for c in chunks(order, b)]
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                for p in prepared:
                    forward(p)
                best = min(best, time.perf_counter() - t0)
            res[key] = round(len(order) / best, 2)
        rows.append(res)
        print(f"  {name}: batch {b}: {res['corpus_order']} / {res['sorted']} sent/s", file=sys.stderr)
    p = make_batch([one])
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        forward(p)
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    out = {"engine": name, "rows": rows, "latency_ms": round(times[len(times) // 2], 3)}
    out.update(extra)
    print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="sentence-transformers model directory")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--batch", default="1,8,32,128")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engines", default="st,st-bf16,ort,ort-int8",
                    help="st (fp32), st-bf16 (torch.autocast bf16: oneDNN runs AMX or AVX512-BF16 where "
                         "the CPU has them), ort, ort-int8")
    a = ap.parse_args()
    batches = [int(x) for x in a.batch.split(",")]
    engines = a.engines.split(",")

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    texts = [l.strip() for l in open(a.corpus, encoding="utf-8") if l.strip()]
    st = SentenceTransformer(a.model, device="cpu")
    tok = st.tokenizer
    max_len = st.max_seq_length
    lens = [len(tok(t, truncation=True, max_length=max_len)["input_ids"]) for t in texts]
    plain = list(range(len(texts)))
    by_len = sorted(plain, key=lambda i: lens[i])
    one = min(plain, key=lambda i: abs(lens[i] - 28))
    common = {"threads": a.threads, "sentences": len(texts), "avg_tokens": round(sum(lens) / len(lens), 2)}

    if "st" in engines:
        def make(idx):
            return st.tokenize([texts[i] for i in idx])

        def fwd(features):
            with torch.inference_mode():
                return st(features)["sentence_embedding"]

        measure(f"sentence-transformers {__import__('sentence_transformers').__version__} (PyTorch {torch.__version__.split('+')[0]}, fp32)",
                batches, plain, by_len, a.repeat, make, fwd, one, common)

    if "st-bf16" in engines:
        def make(idx):
            return st.tokenize([texts[i] for i in idx])

        def fwd(features):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return st(features)["sentence_embedding"].float()

        measure(f"sentence-transformers {__import__('sentence_transformers').__version__} (PyTorch {torch.__version__.split('+')[0]}, bf16 autocast)",
                batches, plain, by_len, a.repeat, make, fwd, one, common)

    if "ort" in engines or "ort-int8" in engines:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        work = tempfile.mkdtemp(prefix="nlpd-bench-")
        fp32 = os.path.join(work, "model.onnx")
        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

        hf = Wrapped(st[0].auto_model.eval())
        names = ["input_ids", "attention_mask", "token_type_ids"]
        dummy = tok(["hello world", "a longer second sentence"], padding=True, return_tensors="pt")
        axes = {n: {0: "batch", 1: "seq"} for n in names}
        axes["last_hidden_state"] = {0: "batch", 1: "seq"}
        with torch.inference_mode():
            torch.onnx.export(hf, (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]),
                              fp32, input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        models = []
        if "ort" in engines:
            models.append(("fp32", fp32))
        if "ort-int8" in engines:
            int8 = os.path.join(work, "model.int8.onnx")
            quantize_dynamic(fp32, int8, per_channel=True, weight_type=QuantType.QInt8)
            models.append(("int8 dynamic, per-channel", int8))
        for label, path in models:
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

            def make(idx):
                enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len, return_tensors="np")
                return {n: enc[n].astype(np.int64) for n in names}

            def fwd(feed, sess=sess):
                h = sess.run(None, feed)[0]
                m = feed["attention_mask"][..., None].astype(np.float32)
                v = (h * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
                return v / np.linalg.norm(v, axis=1, keepdims=True)

            measure(f"ONNX Runtime {ort.__version__} ({label})", batches, plain, by_len, a.repeat, make, fwd, one, common)


if __name__ == "__main__":
    main()
