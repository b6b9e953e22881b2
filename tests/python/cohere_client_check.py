"""The official `cohere` Python SDK, unchanged, against a running nlpd.

Usage: .venv-test/bin/python tests/python/cohere_client_check.py http://127.0.0.1:PORT

The server must serve (as crates/cli/tests/cohere_client.rs starts it):
  all-MiniLM-L6-v2  the default embedding model (the pack's),
  e5                a tiny BERT with prompts {"query": "query: ", "document": "passage: "} and
                    `--default-prompt e5=query`,
  cross             a tiny cross-encoder, the default rerank model.

Every call of `ClientV2` (`embed`, `rerank`) and `Client.rerank` (Cohere's v1 form of
`/v1/rerank`) is checked on its parsed result: vectors against nlpd's native `/v1/embed`
(quantized types against the float vectors: int8 = round(127 x), uint8 = int8 + 128, ubinary =
sign bits packed MSB first, binary = ubinary - 128, base64 = little-endian f32), prompts chosen by
`input_type`, truncation sides, `meta.billed_units`, rerank order and `relevance_score`, and the
errors. Prints one line per check and exits non-zero on the first failure. Each response is also
re-validated against the SDK's pydantic type (not only the SDK's lenient construction).
"""

from __future__ import annotations

import base64
import math
import struct
import sys
import traceback

import cohere
import cohere.errors
import httpx

DIM = 384  # all-MiniLM-L6-v2
MINILM = "all-MiniLM-L6-v2"
MINILM_LIMIT = 256  # its sentence_bert_config.json max_seq_length


class CheckFailed(Exception):
    pass


def ensure(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def strict(obj):
    """Re-validate an SDK response strictly against its own pydantic model."""
    try:
        type(obj).model_validate(obj.model_dump(by_alias=True, exclude_unset=True))
    except Exception as e:  # pydantic.ValidationError
        raise CheckFailed(f"{type(obj).__name__} does not validate against the SDK's schema: {e}") from e
    return obj


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def norm(v) -> float:
    return math.sqrt(dot(v, v))


def cosine(a, b) -> float:
    return dot(a, b) / (norm(a) * norm(b))


def unit(v):
    n = norm(v)
    return [x / n for x in v]


def close(a, b, tol=1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


class Native:
    """nlpd's own routes, for reference values."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=300, trust_env=False)

    def post(self, path: str, body: dict) -> dict:
        r = self.http.post(path, json=body)
        ensure(r.status_code == 200, f"{path} {body}: {r.status_code} {r.text}")
        return r.json()

    def embed(self, texts, **kw):
        return self.post("/v1/embed", {"inputs": texts, **kw})["embeddings"]

    def tokens(self, text: str, model: str = MINILM) -> int:
        return len(self.post("/v1/tokenize", {"model": model, "inputs": text})["tokens"][0])


TEXTS = [
    "The movie was great",
    "Paris is the capital of France.",
    "Stocks fell sharply on Monday.",
]


def check_embed_float(co: cohere.ClientV2, native: Native) -> str:
    raw = co.with_raw_response.embed(
        model="embed-english-v3.0", texts=TEXTS, input_type="search_document", embedding_types=["float"]
    )
    resp = strict(raw.data)
    ensure(isinstance(resp, cohere.EmbedByTypeResponse), f"got {type(resp).__name__}")
    ensure(resp.response_type == "embeddings_by_type", f"response_type {resp.response_type!r}")
    ensure(resp.id == raw.headers.get("x-request-id"), f"id {resp.id!r} is not the X-Request-Id")
    ensure(resp.texts == TEXTS, f"texts {resp.texts!r}")
    floats = resp.embeddings.float_
    ensure(floats is not None and len(floats) == 3, "three float vectors")
    ensure(resp.embeddings.int8 is None and resp.embeddings.base64 is None, "only the requested type")
    ref = native.embed(TEXTS, model=MINILM)
    for i, (v, r) in enumerate(zip(floats, ref)):
        ensure(len(v) == DIM, f"vector {i}: {len(v)} dims")
        ensure(abs(norm(v) - 1) < 1e-4, f"vector {i} is not unit length")
        ensure(cosine(v, r) > 0.99999, f"vector {i}: cosine {cosine(v, r)} to /v1/embed (unknown model = MiniLM)")
    meta = resp.meta
    ensure(meta.api_version.version == "2", f"api_version {meta.api_version}")
    want = sum(native.tokens(t) for t in TEXTS)
    ensure(meta.billed_units.input_tokens == want, f"billed input_tokens {meta.billed_units.input_tokens} != {want}")
    ensure(meta.tokens.input_tokens == want, f"tokens.input_tokens {meta.tokens.input_tokens}")
    return f"3 x {DIM} floats = /v1/embed, billed {want} input tokens, id = X-Request-Id"


def check_embedding_types(co: cohere.ClientV2, native: Native) -> str:
    resp = strict(
        co.embed(
            model=MINILM,
            texts=TEXTS,
            input_type="search_query",
            embedding_types=["float", "int8", "uint8", "binary", "ubinary", "base64"],
        )
    )
    e = resp.embeddings
    for name in ["float_", "int8", "uint8", "binary", "ubinary", "base64"]:
        ensure(getattr(e, name) is not None and len(getattr(e, name)) == 3, f"{name}: three entries")
    for i, v in enumerate(e.float_):
        q = e.int8[i]
        ensure(len(q) == DIM and all(-128 <= x <= 127 for x in q), f"int8[{i}] range/length")
        ensure(all(abs(x * 127 - y) <= 0.5 + 1e-4 for x, y in zip(v, q)), f"int8[{i}] != round(127 x)")
        ensure(e.uint8[i] == [x + 128 for x in q], f"uint8[{i}] != int8 + 128")
        ub = e.ubinary[i]
        ensure(len(ub) == DIM // 8, f"ubinary[{i}] has {len(ub)} bytes")
        for k, byte in enumerate(ub):
            bits = sum(0x80 >> j for j in range(8) if v[8 * k + j] > 0)
            ensure(byte == bits, f"ubinary[{i}][{k}] = {byte}, sign bits give {bits}")
        ensure(e.binary[i] == [b - 128 for b in ub], f"binary[{i}] != ubinary - 128")
        raw = base64.b64decode(e.base64[i])
        decoded = list(struct.unpack(f"<{DIM}f", raw))
        ensure(decoded == [f32(x) for x in v], f"base64[{i}] is not the float vector's little-endian f32 bytes")
    # The fixed int8 scale keeps dot products: cosine of int8 vectors ~ the float cosine.
    for a, b in [(0, 1), (1, 2)]:
        cf = cosine(e.float_[a], e.float_[b])
        ci = cosine(e.int8[a], e.int8[b])
        ensure(abs(cf - ci) < 0.01, f"int8 cosine {ci} vs float {cf}")
        hamming = sum(bin(x ^ y).count("1") for x, y in zip(e.ubinary[a], e.ubinary[b]))
        ensure(0 < hamming < DIM, f"hamming distance {hamming}")
    return "int8 = round(127x), uint8 = int8+128, ubinary = sign bits, binary = ubinary-128, base64 = f32 bytes"


def check_output_dimension(co: cohere.ClientV2, native: Native) -> str:
    resp = strict(
        co.embed(
            model=MINILM, texts=TEXTS[:1], input_type="clustering", output_dimension=128,
            embedding_types=["float", "ubinary"],
        )
    )
    v = resp.embeddings.float_[0]
    ensure(len(v) == 128 and abs(norm(v) - 1) < 1e-4, f"output_dimension 128: {len(v)} dims, norm {norm(v)}")
    ensure(close(v, native.embed(TEXTS[:1], model=MINILM, dimensions=128)[0]), "= /v1/embed dimensions 128")
    ensure(len(resp.embeddings.ubinary[0]) == 16, "16 ubinary bytes")
    return "128 dims, re-normalized, 16 ubinary bytes"


def check_truncate(co: cohere.ClientV2, native: Native) -> str:
    long = " ".join(["alpha"] * 300 + ["omega"] * 300)
    keep = MINILM_LIMIT - 2  # [CLS] and [SEP]
    got = {}
    for side in ["START", "END"]:
        resp = strict(co.embed(model=MINILM, texts=[long], input_type="search_document", truncate=side))
        got[side] = resp.embeddings.float_[0]
        ensure(resp.meta.billed_units.input_tokens == MINILM_LIMIT, f"{side}: billed {resp.meta.billed_units}")
    end_ref = native.embed([" ".join(["alpha"] * keep)], model=MINILM)[0]
    start_ref = native.embed([" ".join(["omega"] * keep)], model=MINILM)[0]
    ensure(cosine(got["END"], end_ref) > 0.99999, "END keeps the first 254 tokens")
    ensure(cosine(got["START"], start_ref) > 0.99999, "START keeps the last 254 tokens")
    ensure(cosine(got["START"], got["END"]) < 0.99, "START and END differ")
    try:
        co.embed(model=MINILM, texts=["fine", long], input_type="search_document", truncate="NONE")
    except cohere.errors.UnprocessableEntityError as e:
        ensure(e.status_code == 422, f"status {e.status_code}")
        ensure(e.body["error"]["param"] == "texts[1]", f"NONE: {e.body}")
    else:
        raise CheckFailed("truncate NONE with an over-long text did not fail")
    return "END = first 254 tokens, START = last 254, NONE = 422 naming texts[1]"


def check_input_type_prompts(co: cohere.ClientV2, native: Native) -> str:
    text = ["a cat sat on the mat"]
    doc = strict(co.embed(model="e5", texts=text, input_type="search_document")).embeddings.float_[0]
    query = strict(co.embed(model="e5", texts=text, input_type="search_query")).embeddings.float_[0]
    # No `classification` prompt: the model's default (`--default-prompt e5=query`).
    cls = strict(co.embed(model="e5", texts=text, input_type="classification")).embeddings.float_[0]
    ref_doc = unit(native.embed(["passage: " + text[0]], model="e5", prompt="")[0])
    ref_query = unit(native.embed(["query: " + text[0]], model="e5", prompt="")[0])
    ensure(close(doc, ref_doc), "search_document = the `document` prompt (`passage: `)")
    ensure(close(query, ref_query), "search_query = the `query` prompt")
    ensure(close(cls, ref_query), "classification = the default prompt (query)")
    ensure(not close(doc, query), "the prompts change the vectors")
    # The native route agrees: the default prompt applies there too, prompt_name picks another.
    ensure(close(unit(native.embed(text, model="e5")[0]), ref_query), "/v1/embed: default prompt")
    ensure(close(unit(native.embed(text, model="e5", prompt_name="document")[0]), ref_doc), "/v1/embed prompt_name")
    return "search_document -> `passage: `, search_query -> `query: `, classification -> the default prompt"


QUERY = "What is the capital of France?"
DOCS = [
    "The stock market fell sharply on Monday.",
    "Paris is the capital and largest city of France.",
    "Bananas are rich in potassium.",
    "France's capital city is Paris.",
]


def check_rerank_v2(co: cohere.ClientV2, native: Native) -> str:
    resp = strict(co.rerank(model=MINILM, query=QUERY, documents=DOCS, top_n=2))
    ensure(isinstance(resp, cohere.V2RerankResponse), f"got {type(resp).__name__}")
    ensure(len(resp.results) == 2, f"top_n 2: {len(resp.results)} results")
    ensure({r.index for r in resp.results} == {1, 3}, f"the Paris documents first: {resp.results}")
    scores = [r.relevance_score for r in resp.results]
    ensure(scores == sorted(scores, reverse=True), f"not sorted: {scores}")
    vecs = native.embed([QUERY] + DOCS, model=MINILM)
    for r in resp.results:
        want = (1 + cosine(vecs[0], vecs[1 + r.index])) / 2
        ensure(abs(r.relevance_score - want) < 1e-4, f"relevance {r.relevance_score} != (1 + cos) / 2 = {want}")
        ensure(0 <= r.relevance_score <= 1, "in [0, 1]")
    ensure(resp.meta.api_version.version == "2", f"{resp.meta}")
    ensure(resp.meta.billed_units.search_units == 1, f"{resp.meta.billed_units}")
    # return_documents (Cohere v1's field, accepted by /v2/rerank) through the SDK's extra body.
    with_docs = co.rerank(
        model=MINILM, query=QUERY, documents=DOCS,
        request_options={"additional_body_parameters": {"return_documents": True}},
    )
    for r in with_docs.results:
        d = getattr(r, "document", None)
        text = d.get("text") if isinstance(d, dict) else getattr(d, "text", None)
        ensure(text == DOCS[r.index], f"document of {r.index}: {d!r}")
    return f"top 2 = the Paris documents, relevance = (1 + cosine) / 2 {[round(s, 3) for s in scores]}"


def check_rerank_cross_encoder(co: cohere.ClientV2, native: Native) -> str:
    # A Cohere model name: the default rerank model (the tiny cross-encoder): sigmoid of its logit.
    resp = strict(co.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS))
    ensure(len(resp.results) == len(DOCS), "every document")
    ref = {r["index"]: r["score"] for r in native.post("/v1/rerank", {"model": "cross", "query": QUERY, "documents": DOCS})["results"]}
    for r in resp.results:
        want = 1 / (1 + math.exp(-ref[r.index]))
        ensure(abs(r.relevance_score - want) < 1e-5, f"{r.relevance_score} != sigmoid({ref[r.index]})")
    return "relevance = sigmoid(cross-encoder logit)"


def check_rerank_v1_client(co1: cohere.Client, native: Native) -> str:
    resp = strict(co1.rerank(model=MINILM, query=QUERY, documents=DOCS, top_n=3, return_documents=True))
    ensure(isinstance(resp, cohere.RerankResponse), f"got {type(resp).__name__}")
    ensure(len(resp.results) == 3, f"{len(resp.results)} results")
    ensure(resp.results[0].index in (1, 3), f"first {resp.results[0]}")
    for r in resp.results:
        ensure(r.document is not None and r.document.text == DOCS[r.index], f"document {r.document}")
    ensure(resp.meta.api_version.version == "1", f"{resp.meta}")
    # Documents as objects, no model (the default rerank model), no documents back (Cohere's default).
    objs = strict(co1.rerank(query=QUERY, documents=[{"text": d} for d in DOCS]))
    ensure(len(objs.results) == len(DOCS), "every document")
    ensure(all(r.document is None for r in objs.results), "no documents unless asked")
    ensure(all(0 <= r.relevance_score <= 1 for r in objs.results), "relevance in [0, 1]")
    # The native form of /v1/rerank keeps its shape (score, document text), plus relevance_score.
    nat = native.post("/v1/rerank", {"model": MINILM, "query": QUERY, "documents": DOCS, "top_n": 1})
    r0 = nat["results"][0]
    ensure(isinstance(r0["document"], str) and "score" in r0 and "relevance_score" in r0, f"native shape {r0}")
    return "Client.rerank on /v1/rerank: Cohere shape with documents; the native form unchanged"


def check_errors(co: cohere.ClientV2, native: Native) -> str:
    cases = [
        (lambda: co.embed(model=MINILM, texts=["x"], input_type="search_query", embedding_types=["int4"]),
         cohere.errors.BadRequestError, "embedding_types[0]"),
        (lambda: co.embed(model=MINILM, input_type="image", images=["data:image/png;base64,AAAA"]),
         cohere.errors.UnprocessableEntityError, "images"),
        (lambda: co.embed(model=MINILM, texts=["x", " "], input_type="search_query"),
         cohere.errors.UnprocessableEntityError, "texts[1]"),
        (lambda: co.rerank(model=MINILM, query="q", documents=["a"], top_n=0),
         cohere.errors.UnprocessableEntityError, "top_n"),
        (lambda: co.rerank(model=MINILM, query="", documents=["a"]),
         cohere.errors.UnprocessableEntityError, "query"),
    ]
    for call, err, param in cases:
        try:
            call()
        except err as e:
            ensure(e.body["error"]["param"] == param, f"{err.__name__}: param {e.body}")
            ensure(e.body["error"]["message"], "a message")
        else:
            raise CheckFailed(f"no {err.__name__} for {param}")
    return f"{len(cases)} bad requests: 400/422 naming the field"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    url = sys.argv[1].rstrip("/")
    co = cohere.ClientV2(api_key="unused", base_url=url, timeout=300)
    co1 = cohere.Client(api_key="unused", base_url=url, timeout=300)
    native = Native(url)
    print(f"cohere {cohere.__version__} against {url}")
    checks = [
        (check_embed_float, co),
        (check_embedding_types, co),
        (check_output_dimension, co),
        (check_truncate, co),
        (check_input_type_prompts, co),
        (check_rerank_v2, co),
        (check_rerank_cross_encoder, co),
        (check_rerank_v1_client, co1),
        (check_errors, co),
    ]
    for check, client in checks:
        try:
            detail = check(client, native)
        except CheckFailed as e:
            print(f"FAIL {check.__name__}: {e}")
            return 1
        except Exception:
            print(f"FAIL {check.__name__}: unexpected exception")
            traceback.print_exc()
            return 1
        print(f"ok   {check.__name__}: {detail}")
    print(f"all {len(checks)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
