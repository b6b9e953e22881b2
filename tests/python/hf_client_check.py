"""Hugging Face's `huggingface_hub.InferenceClient`, unchanged, against a running nlpd.

Usage: .venv-test/bin/python tests/python/hf_client_check.py http://127.0.0.1:PORT

The client is pointed at nlpd the two ways its users do: `InferenceClient(model=URL)` (it posts to
the URL itself, `POST /`) and `InferenceClient(model=URL + "/models/NAME")`. Every task it offers
that nlpd serves is called and its parsed result checked: feature-extraction, sentence-similarity,
text-classification (top_k, function_to_apply), token-classification (aggregation_strategy) and
text-generation (plain, details, streamed, and the retry without unsupported parameters); its
chat_completion (which posts to the OpenAI route under the URL); then TEI's /similarity and
/decode, the errors, and the timing headers of the raw answers (urllib: the client hides
headers). Prints one line per check and exits non-zero with a
clear message on the first failure. Run by crates/cli/tests/hf_client.rs; the venv comes from
scripts/test-venv.sh.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import traceback
import urllib.request
import warnings

import huggingface_hub
import numpy as np
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import HfHubHTTPError

EMBED = "all-MiniLM-L6-v2"
SENTIMENT = "sentiment"
NER = "rampart-pii-ner"
GENERATOR = "smollm2-135m-instruct"
DIM = 384


class CheckFailed(Exception):
    pass


def ensure(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def unit_norm(v: np.ndarray) -> float:
    return float(np.linalg.norm(v))


def check_feature_extraction(url: str) -> str:
    root = InferenceClient(model=url)
    one = root.feature_extraction("The movie was great", normalize=True)
    ensure(isinstance(one, np.ndarray) and one.dtype == np.float32, f"not a float32 array: {type(one)}")
    ensure(one.shape == (1, DIM), f"one text: shape {one.shape}, expected (1, {DIM})")
    ensure(abs(unit_norm(one[0]) - 1.0) < 1e-3, f"normalize=True: norm {unit_norm(one[0])}")
    many = root.feature_extraction(["first text", "second text", "third text"], truncate=True)
    ensure(many.shape == (3, DIM), f"three texts: shape {many.shape}")
    ensure(all(abs(unit_norm(v) - 1.0) < 1e-3 for v in many), "default is normalized")
    ensure(not np.allclose(many[0], many[1]), "different texts, same vector")
    # truncation_direction="left" keeps the end of an over-long input (the model takes 256 pieces).
    long = " ".join(f"word{i}" for i in range(600))
    left = root.feature_extraction(long, truncation_direction="left")
    right = root.feature_extraction(long, truncation_direction="right")
    ensure(left.shape == right.shape == (1, DIM), f"long text: shapes {left.shape}, {right.shape}")
    ensure(float(np.dot(left[0], right[0])) < 0.999, "left and right truncation gave the same vector")
    raw = InferenceClient(model=f"{url}/models/{EMBED}").feature_extraction("The movie was great", normalize=False)
    ensure(raw.shape == (1, DIM), f"/models/{EMBED}: shape {raw.shape}")
    # all-MiniLM-L6-v2 ends in a Normalize module (modules.json): its vectors are unit length
    # whatever `normalize` says; unnormalized or not, the direction is the same.
    cos = float(np.dot(raw[0], one[0]) / unit_norm(raw[0]))
    ensure(cos > 0.9999, f"normalize=False points elsewhere (cosine {cos})")
    short = InferenceClient(base_url=url).feature_extraction("x", dimensions=64)
    ensure(short.shape == (1, 64), f"dimensions=64 through base_url=: shape {short.shape}")
    return f"shapes (1, {DIM}) and (3, {DIM}), unit norm; dimensions=64 through base_url="


def check_feature_extraction_async(url: str) -> str:
    async def run():
        async with AsyncInferenceClient(model=url) as client:
            return await client.feature_extraction(["async one", "async two"])

    out = asyncio.run(run())
    ensure(out.shape == (2, DIM), f"AsyncInferenceClient: shape {out.shape}")
    return f"AsyncInferenceClient shape {out.shape}"


def check_sentence_similarity(url: str) -> str:
    source = "A man is playing a guitar."
    others = ["Someone is playing an instrument.", "The stock market fell sharply today."]
    lines = []
    for where, client in (("/", InferenceClient(model=url)), (f"/models/{EMBED}", InferenceClient(model=f"{url}/models/{EMBED}"))):
        scores = client.sentence_similarity(source, other_sentences=others)
        ensure(isinstance(scores, list) and len(scores) == 2, f"{where}: {scores!r}")
        ensure(all(isinstance(s, float) and -1.0 <= s <= 1.0 for s in scores), f"{where}: out of [-1, 1]: {scores}")
        ensure(scores[0] > scores[1] + 0.1, f"{where}: the paraphrase does not score higher: {scores}")
        lines.append(f"{where} {scores[0]:.3f} > {scores[1]:.3f}")
    same = InferenceClient(model=url).sentence_similarity(source, other_sentences=[source])
    ensure(abs(same[0] - 1.0) < 1e-4, f"a sentence with itself: {same}")
    return "; ".join(lines)


def check_text_classification(url: str) -> str:
    client = InferenceClient(model=f"{url}/models/{SENTIMENT}")
    text = "I absolutely love this, it is wonderful and the best day ever!"
    everything = client.text_classification(text)
    labels = [e.label for e in everything]
    ensure(sorted(labels) == ["negative", "neutral", "positive"], f"labels {labels}")
    ensure(everything[0].label == "positive", f"an obviously positive text: {everything}")
    scores = [e.score for e in everything]
    ensure(scores == sorted(scores, reverse=True), f"not sorted: {scores}")
    ensure(abs(sum(scores) - 1.0) < 1e-3, f"softmax scores sum to {sum(scores)}")
    top1 = client.text_classification(text, top_k=1)
    ensure(len(top1) == 1 and top1[0].label == "positive", f"top_k=1: {top1}")
    top2 = client.text_classification("This was terrible, I hated every minute.", top_k=2)
    ensure(len(top2) == 2 and top2[0].label == "negative", f"top_k=2 on a negative text: {top2}")
    sig = client.text_classification(text, function_to_apply="sigmoid")
    ensure(all(0.0 < e.score < 1.0 for e in sig) and sig[0].label == "positive", f"sigmoid: {sig}")
    logits = client.text_classification(text, function_to_apply="none")
    ensure(any(e.score < 0 or e.score > 1 for e in logits), f"function_to_apply=none gives logits: {logits}")
    ensure(logits[0].label == "positive", f"logits order: {logits}")
    return f"positive {everything[0].score:.3f}; top_k 1 and 2 honoured; sigmoid and logits"


def check_token_classification(url: str) -> str:
    client = InferenceClient(model=f"{url}/models/{NER}")
    text = "Please email John Smith at john.smith@example.com before Friday."
    spans = client.token_classification(text, aggregation_strategy="simple")
    ensure(len(spans) > 0, "no entities")
    for s in spans:
        ensure(s.entity_group is not None and s.entity_group != "O", f"span without a group: {s}")
        ensure(text[s.start : s.end] == s.word, f"offsets {s.start}..{s.end} give {text[s.start:s.end]!r}, word {s.word!r}")
    emails = [s for s in spans if s.entity_group == "EMAIL"]
    ensure(len(emails) == 1, f"one EMAIL span expected: {spans}")
    e = emails[0]
    want = text.index("john.smith@example.com")
    ensure((e.start, e.end) == (want, want + len("john.smith@example.com")), f"EMAIL offsets {e.start}..{e.end}, expected {want}..")
    ensure(0.0 < e.score <= 1.0, f"EMAIL score {e.score}")
    default = client.token_classification(text)
    ensure([(s.entity_group, s.start, s.end) for s in default] == [(s.entity_group, s.start, s.end) for s in spans], "default strategy is simple")
    tokens = client.token_classification(text, aggregation_strategy="none")
    ensure(len(tokens) > 0 and all(t.entity and t.entity != "O" and t.entity_group is None for t in tokens), f"none: {tokens}")
    ensure(any(t.entity.endswith("EMAIL") for t in tokens), f"no EMAIL token: {tokens}")
    no_email = client.token_classification(text, aggregation_strategy="simple", ignore_labels=["O", "EMAIL"])
    ensure(all(s.entity_group != "EMAIL" for s in no_email), f"ignore_labels: {no_email}")
    groups = sorted({s.entity_group for s in spans})
    return f"EMAIL at {e.start}..{e.end} ({e.score:.3f}); groups {groups}; {len(tokens)} tokens with `none`"


def check_text_generation(url: str) -> str:
    client = InferenceClient(model=f"{url}/models/{GENERATOR}")
    prompt = "The capital of France is"
    text = client.text_generation(prompt, max_new_tokens=8)
    ensure(isinstance(text, str) and text.strip(), f"empty generation: {text!r}")
    again = client.text_generation(prompt, max_new_tokens=8)
    ensure(again == text, f"greedy by default, so repeatable: {text!r} then {again!r}")
    out = client.text_generation(prompt, max_new_tokens=4, details=True, return_full_text=True)
    ensure(out.generated_text.startswith(prompt) and len(out.generated_text) > len(prompt), f"return_full_text: {out.generated_text!r}")
    ensure(out.details is not None and out.details.finish_reason in ("length", "eos_token"), f"details: {out.details}")
    ensure(out.details.generated_tokens <= 4, f"generated_tokens {out.details.generated_tokens}")
    sampled = client.text_generation(prompt, max_new_tokens=6, do_sample=True, temperature=0.8, top_p=0.9, seed=11, details=True)
    ensure(sampled.details.seed == 11, f"seed in details: {sampled.details}")
    return f"{text!r}; details {out.details.finish_reason}/{out.details.generated_tokens}"


def check_text_generation_stream(url: str) -> str:
    client = InferenceClient(model=f"{url}/models/{GENERATOR}")
    pieces = list(client.text_generation("Once upon a time", max_new_tokens=10, stream=True))
    ensure(all(isinstance(p, str) for p in pieces), f"stream yields strings: {pieces}")
    ensure(sum(1 for p in pieces if p) >= 2, f"too few tokens streamed: {pieces}")
    joined = "".join(pieces)
    whole = client.text_generation("Once upon a time", max_new_tokens=10)
    ensure(joined == whole, f"streamed {joined!r}, whole {whole!r}")
    events = list(client.text_generation("Once upon a time", max_new_tokens=5, stream=True, details=True))
    last = events[-1]
    ensure(last.generated_text == "".join(e.token.text for e in events), f"last event's generated_text: {last}")
    ensure(last.details is not None and last.details.generated_tokens >= 1, f"last event's details: {last.details}")
    ensure(all(e.generated_text is None for e in events[:-1]), "generated_text only on the last event")
    return f"{len(pieces)} events: {joined!r}"


def check_unsupported_parameters_retry(url: str) -> str:
    client = InferenceClient(model=f"{url}/models/{GENERATOR}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = client.text_generation("Hello, my name is", max_new_tokens=5, top_k=20, typical_p=0.95, watermark=True)
    ensure(isinstance(text, str) and text.strip(), f"after the retry: {text!r}")
    msgs = [str(w.message) for w in caught]
    ensure(any("top_k" in m and "typical_p" in m and "watermark" in m for m in msgs), f"the client warns what it dropped: {msgs}")
    return "the client dropped top_k, typical_p, watermark (warning) and retried"


def check_chat_completion(url: str) -> str:
    # Given a URL, the client's chat_completion posts to `<URL>/v1/chat/completions`: the OpenAI route.
    out = InferenceClient(model=url).chat_completion(messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, temperature=0)
    text = out.choices[0].message.content
    ensure(isinstance(text, str) and text.strip(), f"empty chat answer: {out}")
    return f"{text!r}"


def post_json(url: str, body) -> tuple[int, object]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check_tei_similarity_and_decode(url: str) -> str:
    status, scores = post_json(f"{url}/similarity", {"inputs": {"source_sentence": "A cat sits", "sentences": ["A cat is sitting", "Taxes rose"]}})
    ensure(status == 200 and len(scores) == 2 and scores[0] > scores[1], f"/similarity: {status} {scores}")
    status, tokens = post_json(f"{url}/tokenize", {"inputs": "Hello world"})
    ensure(status == 200, f"/tokenize: {status} {tokens}")
    ids = [t["id"] for t in tokens[0]]
    status, texts = post_json(f"{url}/decode", {"ids": ids})
    ensure(status == 200 and texts == ["hello world"], f"/decode: {status} {texts}")
    status, texts = post_json(f"{url}/decode", {"ids": [ids, ids[1:2]], "skip_special_tokens": False})
    ensure(status == 200 and len(texts) == 2 and "[CLS]" in texts[0], f"/decode batch: {status} {texts}")
    return f"/similarity {scores[0]:.3f} > {scores[1]:.3f}; /decode {texts[1]!r}"


def expect_http_error(fn, status: int, param: str) -> str:
    try:
        fn()
    except HfHubHTTPError as e:
        ensure(e.response.status_code == status, f"status {e.response.status_code}, expected {status}: {e}")
        body = e.response.json()
        ensure(body["error"]["param"] == param, f"param {body['error']['param']!r}, expected {param!r}")
        return f"{status} {param}"
    raise CheckFailed(f"no error, expected {status}")


def check_errors(url: str) -> str:
    out = [
        expect_http_error(lambda: InferenceClient(model=f"{url}/models/nope").feature_extraction("x"), 404, "model"),
        expect_http_error(lambda: InferenceClient(model=url).text_classification("x", top_k=2), 422, "parameters"),
        expect_http_error(lambda: InferenceClient(model=f"{url}/models/{SENTIMENT}").sentence_similarity("a", ["b"]), 422, "inputs"),
        expect_http_error(lambda: InferenceClient(model=f"{url}/models/{SENTIMENT}").text_classification("x", top_k=0), 400, "parameters.top_k"),
        expect_http_error(lambda: InferenceClient(model=f"{url}/models/{NER}").token_classification("x", stride=8), 422, "parameters.stride"),
        expect_http_error(lambda: InferenceClient(model=url).feature_extraction("x", prompt_name="query"), 422, "prompt_name"),
        expect_http_error(lambda: InferenceClient(model=f"{url}/models/{GENERATOR}").text_generation("x", max_new_tokens=0), 400, "parameters.max_new_tokens"),
    ]
    return ", ".join(out)


def check_timing_headers(url: str) -> str:
    """The raw answers of what InferenceClient posts carry the timing headers (whole ms)."""
    out = []
    for path, body in [
        ("/", {"inputs": ["timing headers, feature extraction"]}),
        (f"/models/{SENTIMENT}", {"inputs": "timing headers, text classification"}),
        (f"/models/{GENERATOR}", {"inputs": "Hello", "parameters": {"max_new_tokens": 3, "seed": 11}}),
    ]:
        req = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            ensure(r.status == 200, f"{path}: {r.status}")
            ms = {h: r.headers.get(h) for h in ("x-queue-time", "x-tokenize-time", "x-inference-time", "x-total-time")}
        ensure(all(v is not None and v.isdigit() for v in ms.values()), f"{path}: {ms}")
        ensure(int(ms["x-inference-time"]) <= int(ms["x-total-time"]), f"{path}: {ms}")
        out.append(f"{path} {ms['x-total-time']} ms")
    return ", ".join(out)


CHECKS = [
    check_feature_extraction,
    check_feature_extraction_async,
    check_sentence_similarity,
    check_text_classification,
    check_token_classification,
    check_text_generation,
    check_text_generation_stream,
    check_unsupported_parameters_retry,
    check_chat_completion,
    check_tei_similarity_and_decode,
    check_errors,
    check_timing_headers,
]


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    url = sys.argv[1].rstrip("/")
    print(f"huggingface_hub {huggingface_hub.__version__} against {url}")
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        try:
            detail = check(url)
        except CheckFailed as e:
            print(f"FAIL {name}: {e}")
            return 1
        except Exception as e:  # the client raised: a shape it could not parse, an HTTP error
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc()
            return 1
        print(f"ok   {name}: {detail}")
    print(f"all {len(CHECKS)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
