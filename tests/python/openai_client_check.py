"""The official `openai` Python client, unchanged, against a running nlpd.

Usage: .venv-test/bin/python tests/python/openai_client_check.py http://127.0.0.1:PORT

Prints one line per check and exits non-zero with a clear message on the first failure.
Run by crates/cli/tests/openai_client.rs; the venv comes from scripts/test-venv.sh.

Besides the client's own (lenient) parsing, every response is re-validated strictly against the
client's pydantic types, so a missing required field fails here and not in some user's code.
"""

from __future__ import annotations

import base64
import json
import math
import sys
import traceback

import openai

DIM = 384  # all-MiniLM-L6-v2, the pack's default embedding model


class CheckFailed(Exception):
    pass


def ensure(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def strict(obj):
    """Re-validate a client response object strictly against its own pydantic model."""
    try:
        type(obj).model_validate(obj.to_dict())
    except Exception as e:  # pydantic.ValidationError
        raise CheckFailed(f"{type(obj).__name__} does not validate against the client's schema: {e}") from e
    return obj


def norm(v) -> float:
    return math.sqrt(sum(x * x for x in v))


def cosine(a, b) -> float:
    return sum(x * y for x, y in zip(a, b)) / (norm(a) * norm(b))


def floats(v, n: int, what: str) -> list:
    ensure(isinstance(v, list), f"{what}: embedding is {type(v).__name__}, expected a list of floats")
    ensure(len(v) == n, f"{what}: embedding has {len(v)} values, expected {n}")
    ensure(all(isinstance(x, float) and math.isfinite(x) for x in v), f"{what}: embedding has non-finite or non-float values")
    return v


def check_embeddings_default_base64(client: openai.OpenAI) -> str:
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="The movie was great")
    sent = json.loads(raw.http_request.content)
    ensure(sent.get("encoding_format") == "base64", f"client did not send encoding_format=base64 (sent {sent})")
    body = json.loads(raw.text)
    wire = body["data"][0]["embedding"]
    ensure(isinstance(wire, str), f"server answered encoding_format=base64 with {type(wire).__name__}, expected a base64 string")
    ensure(len(base64.b64decode(wire)) == DIM * 4, f"base64 embedding decodes to {len(base64.b64decode(wire))} bytes, expected {DIM * 4} (f32 LE)")
    resp = raw.parse()
    ensure(resp.object == "list", f"object={resp.object!r}, expected 'list'")
    ensure(len(resp.data) == 1, f"{len(resp.data)} items, expected 1")
    v = floats(resp.data[0].embedding, DIM, "base64 (decoded by the client)")
    n = norm(v)
    ensure(abs(n - 1.0) < 1e-3, f"norm {n}, expected 1 (normalised)")
    ensure(resp.usage is not None and resp.usage.prompt_tokens > 0, f"usage={resp.usage}")
    strict(resp)
    return f"{DIM} floats via base64, norm {n:.6f}, model {resp.model}"


def check_embeddings_batch_float(client: openai.OpenAI) -> str:
    texts = ["The movie was great", "The film was excellent", "The stock market fell sharply today"]
    resp = strict(client.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float"))
    ensure(len(resp.data) == 3, f"{len(resp.data)} items, expected 3")
    ensure(sorted(d.index for d in resp.data) == [0, 1, 2], f"indices {[d.index for d in resp.data]}, expected 0..2")
    by_index = {d.index: floats(d.embedding, DIM, f"input {d.index}") for d in resp.data}
    ensure(all(d.object == "embedding" for d in resp.data), "item object is not 'embedding'")
    ensure(resp.usage.prompt_tokens > 0, f"usage.prompt_tokens={resp.usage.prompt_tokens}, expected > 0")
    para, unrel = cosine(by_index[0], by_index[1]), cosine(by_index[0], by_index[2])
    ensure(para > unrel, f"cos(paraphrase)={para:.4f} not above cos(unrelated)={unrel:.4f}")
    return f"3 items, indices 0..2, prompt_tokens {resp.usage.prompt_tokens}, cos paraphrase {para:.3f} > unrelated {unrel:.3f}"


def check_embeddings_dimensions(client: openai.OpenAI) -> str:
    resp = strict(client.embeddings.create(model="text-embedding-3-small", input="The movie was great", dimensions=64, encoding_format="float"))
    v = floats(resp.data[0].embedding, 64, "dimensions=64")
    # The default (base64) path with dimensions too.
    b = client.embeddings.create(model="text-embedding-3-small", input="The movie was great", dimensions=64)
    floats(b.data[0].embedding, 64, "dimensions=64, base64")
    return f"64 floats (norm {norm(v):.4f}), base64 too"


CHAT = dict(
    model="anything",
    messages=[{"role": "user", "content": "Explain: def add(a, b): return a + b"}],
    max_tokens=24,
    temperature=0,
)


def check_chat(client: openai.OpenAI, state: dict) -> str:
    resp = strict(client.chat.completions.create(**CHAT))
    ensure(resp.object == "chat.completion", f"object={resp.object!r}")
    ensure(len(resp.choices) == 1, f"{len(resp.choices)} choices, expected 1")
    c = resp.choices[0]
    ensure(c.message.role == "assistant", f"role={c.message.role!r}")
    ensure(isinstance(c.message.content, str) and c.message.content.strip() != "", f"empty content: {c.message.content!r}")
    ensure(c.finish_reason in ("stop", "length"), f"finish_reason={c.finish_reason!r}")
    u = resp.usage
    ensure(u is not None and u.prompt_tokens > 0 and u.completion_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage={u}")
    ensure(u.completion_tokens <= 24, f"completion_tokens={u.completion_tokens} > max_tokens=24")
    state["content"] = c.message.content
    return f"{u.completion_tokens} tokens, finish {c.finish_reason}, model {resp.model}: {c.message.content[:60]!r}"


def check_chat_stream(client: openai.OpenAI, state: dict) -> str:
    chunks = []
    with client.chat.completions.create(**CHAT, stream=True) as stream:
        for chunk in stream:
            chunks.append(strict(chunk))
    ensure(len(chunks) >= 2, f"{len(chunks)} chunks, expected at least 2")
    ensure(all(ch.object == "chat.completion.chunk" for ch in chunks), "a chunk's object is not 'chat.completion.chunk'")
    ensure(len({ch.id for ch in chunks}) == 1, f"chunks carry different ids: {sorted({ch.id for ch in chunks})}")
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    ensure(text != "", "concatenated delta contents are empty")
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    ensure(finishes and finishes[-1] in ("stop", "length"), f"finish_reason of the stream: {finishes}")
    ensure(text == state["content"], f"stream differs from the non-stream greedy call:\n  stream:     {text!r}\n  non-stream: {state['content']!r}")
    return f"{len(chunks)} chunks, finish {finishes[-1]}, content equals the non-stream call"


def check_completions(client: openai.OpenAI) -> str:
    resp = strict(client.completions.create(model="x", prompt="def fib(n):", max_tokens=8, temperature=0))
    ensure(resp.object == "text_completion", f"object={resp.object!r}")
    ensure(len(resp.choices) == 1, f"{len(resp.choices)} choices")
    c = resp.choices[0]
    ensure(isinstance(c.text, str) and c.text != "", f"empty text: {c.text!r}")
    ensure(c.finish_reason in ("stop", "length"), f"finish_reason={c.finish_reason!r}")
    return f"finish {c.finish_reason}: {c.text!r}"


def check_models(client: openai.OpenAI) -> str:
    models = list(client.models.list())
    ensure(len(models) > 0, "no models listed")
    for m in models:
        strict(m)
        ensure(isinstance(m.id, str) and m.id != "", f"model without id: {m}")
        ensure(m.object == "model", f"object={m.object!r} for {m.id}")
    return "ids " + ", ".join(m.id for m in models)


def check_invalid(client: openai.OpenAI) -> str:
    try:
        client.chat.completions.create(model="anything", messages=[], max_tokens=4)
    except (openai.UnprocessableEntityError, openai.BadRequestError) as e:
        body = e.response.json()
        ensure(isinstance(body, dict) and isinstance(body.get("error"), dict), f"error body has no `error` object: {body}")
        msg = body["error"].get("message")
        ensure(isinstance(msg, str) and msg != "", f"error body has no error.message: {body}")
        ensure(isinstance(e.body, dict) and e.body.get("message") == msg, f"client did not pick up error.message: e.body={e.body}")
        return f"{type(e).__name__} ({e.status_code}): {msg}"
    except openai.APIStatusError as e:
        raise CheckFailed(f"messages=[] gave {type(e).__name__} (HTTP {e.status_code}), expected 400/422: {e.response.text}") from e
    raise CheckFailed("messages=[] was accepted, expected a 400/422 error")


TIMING = ("x-queue-time", "x-tokenize-time", "x-inference-time", "x-total-time")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def timing_ms(headers, names=TIMING) -> dict:
    """The timing headers (whole milliseconds) of a raw response, each required."""
    out = {}
    for h in names:
        v = headers.get(h)
        ensure(v is not None and v.isdigit(), f"{h}={v!r}, expected whole milliseconds")
        out[h] = int(v)
    return out


def check_timing_and_trace_headers(client: openai.OpenAI) -> str:
    trace = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="timing headers", extra_headers=trace)
    strict(raw.parse())
    emb = timing_ms(raw.headers)
    tp = raw.headers.get("traceparent", "")
    ensure(tp.startswith(f"00-{TRACE_ID}-") and not tp.endswith("-00f067aa0ba902b7-01"), f"traceparent={tp!r}")
    # CHAT ran in check d: from the result cache, no model time; computed again without it.
    raw = client.chat.completions.with_raw_response.create(**CHAT)
    strict(raw.parse())
    hit = timing_ms(raw.headers)
    ensure(hit["x-inference-time"] == 0 and hit["x-queue-time"] == 0, f"a cached chat completion: {hit}")
    raw = client.chat.completions.with_raw_response.create(**CHAT, extra_body={"cache": False})
    strict(raw.parse())
    chat = timing_ms(raw.headers)
    ensure(chat["x-inference-time"] >= 1, f"a chat completion took {chat['x-inference-time']} ms of inference")
    # A stream's headers leave when the model takes the request: no inference time yet.
    with client.chat.completions.with_streaming_response.create(**CHAT, stream=True) as raw:
        streamed = timing_ms(raw.headers, ("x-queue-time", "x-tokenize-time", "x-total-time"))
        ensure("x-inference-time" not in raw.headers, "a stream carries x-inference-time")
        ensure(sum(1 for _ in raw.iter_lines()) > 0, "empty stream")
    return f"embeddings {emb}, chat {chat}, stream {streamed}, traceparent {tp}"


PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "role": {"type": "string", "enum": ["admin", "editor", "viewer"]},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 24}, "minItems": 1, "maxItems": 3},
        "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                    "required": ["city"], "additionalProperties": False},
    },
    "required": ["name", "role", "skills", "address"],
    "additionalProperties": False,
}


def check_structured_output(client: openai.OpenAI) -> str:
    import jsonschema  # pinned in tests/python/requirements.txt (kubernetes-validate's closure)

    resp = strict(client.chat.completions.create(
        model="anything",
        messages=[{"role": "user", "content": "Describe a fictional software engineer as JSON."}],
        max_tokens=200,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}},
    ))
    c = resp.choices[0]
    ensure(c.finish_reason == "stop", f"finish_reason={c.finish_reason!r}: {c.message.content!r}")
    value = json.loads(c.message.content)
    jsonschema.validate(value, PERSON)
    try:
        client.chat.completions.create(
            model="anything", messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "nonsense"}}},
        )
        raise CheckFailed("an invalid schema was accepted")
    except openai.BadRequestError as e:
        param = e.body.get("param") if isinstance(e.body, dict) else None
        ensure(param == "response_format.json_schema.schema", f"param={param!r}: {e.body}")
    return f"{resp.usage.completion_tokens} tokens validate against the schema: {c.message.content[:60]!r}"


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: openai_client_check.py BASE_URL   (e.g. http://127.0.0.1:8080)", file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    # Retries off: a 5xx or dropped connection must fail the check, not be retried away.
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120.0)
    print(f"openai {openai.__version__} -> {base}/v1", flush=True)
    state: dict = {}
    checks = [
        ("a embeddings (default base64)", lambda: check_embeddings_default_base64(client)),
        ("b embeddings batch float", lambda: check_embeddings_batch_float(client)),
        ("c embeddings dimensions=64", lambda: check_embeddings_dimensions(client)),
        ("d chat completion", lambda: check_chat(client, state)),
        ("e chat completion stream", lambda: check_chat_stream(client, state)),
        ("f completion", lambda: check_completions(client)),
        ("g models.list", lambda: check_models(client)),
        ("h invalid request", lambda: check_invalid(client)),
        ("i timing and trace headers", lambda: check_timing_and_trace_headers(client)),
        ("j structured output (response_format json_schema)", lambda: check_structured_output(client)),
    ]
    for name, fn in checks:
        try:
            detail = fn()
        except CheckFailed as e:
            print(f"FAIL {name}: {e}", flush=True)
            return 1
        except openai.APIStatusError as e:
            print(f"FAIL {name}: HTTP {e.status_code} {type(e).__name__}: {e.response.text}", flush=True)
            return 1
        except Exception as e:  # client-side parse errors, connection errors, ...
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
            return 1
        print(f"ok   {name}: {detail}", flush=True)
    print("all openai client checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
