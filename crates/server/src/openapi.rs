//! The OpenAPI 3.1 document served at `/openapi.json`: every route, its request and response
//! shapes and the errors it can answer with. Built by hand with `serde_json::json!` (no macro
//! crate), one small function per group of routes or schemas. `docs/API.md` is the prose version.

use crate::routes::generate as gen;
use nlpd_runtime::prompts::Detail;
use serde_json::{json, Map, Value};

mod cohere;
mod headers;
mod hf;
mod verify;

/// What the served document depends on: the server's own settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// API keys are configured: the key-protected operations declare bearer security and 401.
    pub secured: bool,
    /// `--max-new-tokens`: the most tokens a generation request may ask for.
    pub max_new_tokens: usize,
}

impl Settings {
    pub fn of(config: &crate::state::ServerConfig) -> Self {
        Settings {
            secured: !config.api_keys.is_empty(),
            max_new_tokens: config.max_new_tokens,
        }
    }
}

impl Default for Settings {
    /// The document of `ServerConfig::default()` with keys: every section present.
    fn default() -> Self {
        Settings {
            secured: true,
            max_new_tokens: crate::state::ServerConfig::default().max_new_tokens,
        }
    }
}

/// The document of a server with API keys and default limits.
pub fn spec() -> Value {
    spec_for(Settings::default())
}

/// The document as a server with these settings serves it. Without keys no route asks for one,
/// so it declares no security scheme and no 401 answers (a client or a contract tester reading
/// it must not expect a key the server never checks); the generation limits are the server's.
pub fn spec_for(settings: Settings) -> Value {
    let mut spec = full();
    if !settings.secured {
        open_access(&mut spec);
    }
    apply_limits(&mut spec, settings);
    spec
}

/// The fields bounded by `--max-new-tokens`, as JSON pointers into the document.
const NEW_TOKEN_FIELDS: &[&str] = &[
    "/components/schemas/ChatCompletionRequest/properties/max_tokens",
    "/components/schemas/ChatCompletionRequest/properties/max_completion_tokens",
    "/components/schemas/CompletionRequest/properties/max_tokens",
    "/components/schemas/CompletionRequest/properties/max_completion_tokens",
    "/components/schemas/ExplainRequest/properties/max_tokens",
    "/components/schemas/ExplainRequest/properties/max_completion_tokens",
    "/components/schemas/HfTextGenerationRequest/properties/parameters/properties/max_new_tokens",
];

/// Writes the server's limits into the fields they bound (a default above a limit is cut to it,
/// as the handlers do).
fn apply_limits(spec: &mut Value, settings: Settings) {
    for pointer in NEW_TOKEN_FIELDS {
        if let Some(Value::Object(field)) = spec.pointer_mut(pointer) {
            field.insert("maximum".into(), json!(settings.max_new_tokens));
            if let Some(d) = field.get("default").and_then(Value::as_u64) {
                let cut = d.min(settings.max_new_tokens as u64);
                field.insert("default".into(), json!(cut));
            }
        }
    }
}

/// Drops the bearer scheme, every operation's `security` and its 401 answer.
fn open_access(spec: &mut Value) {
    if let Some(c) = spec["components"].as_object_mut() {
        c.remove("securitySchemes");
    }
    if let Some(rs) = spec["components"]["responses"].as_object_mut() {
        rs.remove("Unauthorized");
    }
    if let Some(paths) = spec["paths"].as_object_mut() {
        for op in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(Map::values_mut)
            .filter_map(Value::as_object_mut)
        {
            op.remove("security");
            if let Some(r) = op.get_mut("responses").and_then(Value::as_object_mut) {
                r.remove("401");
            }
        }
    }
}

fn full() -> Value {
    let mut spec = json!({
        "openapi": "3.1.0",
        "info": info(),
        "tags": tags(),
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Enforced only when the server runs with `--api-key` / `--api-key-file` \
                        (NLPD_API_KEYS): then every `/v1/*` route, the TEI routes and the Hugging Face \
                        routes (`POST /`, `POST /models/{name}`) need `Authorization: Bearer <key>`. `/health*`, `/metrics` and `/openapi.json` stay open."
                }
            },
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying (1 for encoder queues, 2 for generation queues).",
                    "schema": {"type": "integer", "minimum": 0}
                },
                "X-Request-Id": {
                    "description": "The request's id: the client's `x-request-id` when sent, else a new UUID.",
                    "schema": {"type": "string"}
                }
            },
            "parameters": {
                "ModelName": {
                    "name": "name",
                    "in": "path",
                    "required": true,
                    "description": "A configured model name, as listed by `GET /v1/models`.",
                    "schema": {"type": "string"}
                }
            },
            "responses": error_responses(),
            "schemas": schemas(),
        }
    });
    headers::apply(&mut spec);
    spec
}

fn info() -> Value {
    json!({
        "title": "nlpd",
        "version": env!("CARGO_PKG_VERSION"),
        "summary": "NLP inference server: embeddings, classification, entities, NLI, rerank, generation.",
        "description": "Every task route takes one input or a list (the server batches across requests). \
            Errors share one body, `{\"error\": {\"message\", \"type\", \"param\"}}`. \
            OpenAI-compatible routes: `/v1/embeddings`, `/v1/chat/completions`, `/v1/completions`, `/v1/models`. \
            text-embeddings-inference (TEI) compatible routes: `/embed`, `/rerank`, `/predict`, `/similarity`, `/tokenize`, \
            `/decode`, `/info`. Hugging Face Inference API (huggingface_hub's InferenceClient): `POST /` and `POST /models/{name}`. \
            Cohere-compatible routes: `/v2/embed`, `/v2/rerank`, and the Cohere form of `/v1/rerank`. \
            See docs/API.md for the prose reference.",
        "license": {"name": "see the repository"}
    })
}

fn tags() -> Value {
    json!([
        {"name": "encode", "description": "Encoder tasks (native nlpd API)."},
        {"name": "generate", "description": "Text generation (OpenAI shapes and code explanation); `stream: true` answers with server-sent events."},
        {"name": "openai", "description": "OpenAI-compatible routes."},
        {"name": "tei", "description": "text-embeddings-inference compatible routes (always the task's default model)."},
        {"name": "cohere", "description": "Cohere-compatible routes (the `cohere` SDK's `ClientV2`)."},
        {"name": "hf", "description": "Hugging Face Inference API compatible routes (what huggingface_hub's InferenceClient posts)."},
        {"name": "models", "description": "Model registry."},
        {"name": "verify", "description": "Claim verification: the evidence corpus and verdicts."},
        {"name": "ops", "description": "Health, metrics, statistics, this document."}
    ])
}

// ---------------------------------------------------------------------------------------------
// Small builders
// ---------------------------------------------------------------------------------------------

/// `{"$ref": "#/components/schemas/NAME"}`.
fn sref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        "content": {"application/json": {"schema": schema}}
    })
}

/// A 200 that is JSON, or server-sent events when the request sets `stream: true`.
fn stream_ok(description: &str, schema: Value, event_schema: Value, events: &str) -> Value {
    json!({
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        "content": {
            "application/json": {"schema": schema},
            // Before OpenAPI 3.2 an event stream's `schema` describes one event: its fields.
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "description": events,
                    "properties": {
                        "data": {"type": "string", "description": "JSON text (or the `[DONE]` marker).",
                            "x-event-data": event_schema},
                        "event": {"type": "string"},
                        "id": {"type": "string"},
                    }
                }
            }
        }
    })
}

/// The status codes a route can answer with besides 200, as references to shared responses.
#[derive(Clone, Copy)]
enum Errs {
    /// Encoder tasks: validation, auth, model lookup, limits, queue, load, deadline.
    Encoder,
    /// Tokenization: no queue and no deadline.
    Tokenize,
    /// Generation (400 for bad sampling values).
    Generate,
    /// Only the API key.
    AuthOnly,
    /// `POST /v1/models/{name}/load`.
    Load,
    /// `POST /v1/models/{name}/unload`.
    Unload,
    /// Evidence reads and deletes: the store (503 without one or while the index loads).
    Store,
}

impl Errs {
    fn codes(self) -> &'static [u16] {
        match self {
            Errs::Encoder | Errs::Generate => &[400, 401, 404, 413, 422, 429, 500, 503, 504],
            Errs::Tokenize => &[400, 401, 404, 413, 422, 500, 503],
            Errs::AuthOnly => &[401],
            Errs::Load => &[401, 404, 422, 503],
            Errs::Unload => &[401, 404],
            Errs::Store => &[401, 404, 500, 503],
        }
    }
}

fn error_response_name(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        404 => "NotFound",
        413 => "PayloadTooLarge",
        422 => "Unprocessable",
        429 => "TooManyRequests",
        500 => "Internal",
        503 => "Unavailable",
        504 => "Timeout",
        _ => unreachable!("no shared response for {code}"),
    }
}

fn responses(ok: Value, errs: Errs) -> Value {
    let mut m = Map::new();
    m.insert("200".into(), ok);
    for &code in errs.codes() {
        m.insert(
            code.to_string(),
            json!({"$ref": format!("#/components/responses/{}", error_response_name(code))}),
        );
    }
    Value::Object(m)
}

/// One operation. `secured`: behind the bearer key (when keys are configured).
fn op(
    tag: &str,
    id: &str,
    summary: &str,
    description: &str,
    body: Option<Value>,
    responses: Value,
    secured: bool,
) -> Value {
    let mut o = json!({
        "tags": [tag],
        "operationId": id,
        "summary": summary,
        "description": description,
        "responses": responses,
        "security": if secured { json!([{"bearerAuth": []}]) } else { json!([]) },
    });
    if let Some(b) = body {
        o["requestBody"] = b;
    }
    o
}

fn post(o: Value) -> Value {
    json!({"post": o})
}

fn get(o: Value) -> Value {
    json!({"get": o})
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

fn paths() -> Value {
    let mut m = Map::new();
    for group in [
        encoder_paths(),
        generation_paths(),
        model_paths(),
        verify::paths(),
        tei_paths(),
        hf::paths(),
        cohere::paths(),
        ops_paths(),
    ] {
        if let Value::Object(g) = group {
            // One path can have operations from two groups (`GET /` and `POST /`).
            for (path, item) in g {
                match (m.get_mut(&path), item) {
                    (Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
                    (_, item) => {
                        m.insert(path, item);
                    }
                }
            }
        }
    }
    Value::Object(m)
}

fn encoder_paths() -> Value {
    json!({
        "/v1/embed": post(op("encode", "embed", "Sentence embeddings",
            "Embeds one text or a list with the named (or default `embed`) model. The result is always a list, \
             one vector per input, in input order.",
            Some(json_body(sref("EmbedRequest"))), responses(json_ok("The embeddings.", sref("EmbedResponse")), Errs::Encoder), true)),
        "/v1/embeddings": post(op("openai", "openaiEmbeddings", "Embeddings (OpenAI shape)",
            "OpenAI `POST /v1/embeddings`. A `model` this server does not know falls back to the default `embed` model; \
             vectors are always L2-normalized and inputs always truncated to the model's limit. \
             `encoding_format: base64` returns each vector as base64 of little-endian f32.",
            Some(json_body(sref("OpenAIEmbeddingsRequest"))), responses(json_ok("The embeddings.", sref("OpenAIEmbeddingsResponse")), Errs::Encoder), true)),
        "/v1/classify": post(op("encode", "classify", "Sequence classification",
            "Classifies texts or `[text, text_pair]` pairs with the named (or default `classify`) model. \
             Each result lists every label (or the `top_k` best) sorted by score, highest first.",
            Some(json_body(sref("ClassifyRequest"))), responses(json_ok("Label scores per input.", sref("ClassifyResponse")), Errs::Encoder), true)),
        "/v1/entities": post(op("encode", "entities", "Entity extraction (token classification)",
            "Extracts entity spans with character offsets. `aggregation: simple` merges BIO word pieces into spans \
             (touching spans of the same type are joined); `none` returns every non-special token with its raw label, `O` included.",
            Some(json_body(sref("EntitiesRequest"))), responses(json_ok("Entities per input.", sref("EntitiesResponse")), Errs::Encoder), true)),
        "/v1/nli": post(op("encode", "nli", "Natural language inference",
            "Scores (premise, hypothesis) pairs with an NLI cross-encoder whose labels include entailment, neutral and \
             contradiction (422 when a named model's labels are not NLI labels), or with the generative judge: when the \
             request names a generative model, when the `nli` default is one, or when no `nli` model is configured. The \
             judge puts each pair in a chat prompt and reads the next-token probabilities of true / unknown / false (one \
             forward pass per pair, not cached); it is weak with the pack's small models (see docs/MODELS.md).",
            Some(json_body(sref("NliRequest"))), responses(json_ok("A label and per-label probabilities per pair.", sref("NliResponse")), Errs::Encoder), true)),
        "/v1/rerank": post(op("encode", "rerank", "Rerank documents for a query",
            "With a cross-encoder configured for `rerank` (or a `model` whose task is `rerank`/`classify`): its raw relevance \
             logit. Otherwise the cosine similarity of the embedding model's normalized vectors. Results are sorted by score; \
             `relevance_score` is the score mapped to [0, 1] (sigmoid of the logit, or (1 + cosine) / 2). \
             The Cohere form (as Cohere's v1 SDK, Jina and vLLM send it) is answered in Cohere's shape (`CohereRerankResponse`, \
             like `/v2/rerank` with `api_version` 1) when the body has a field only that form has (`rank_fields`, \
             `max_chunks_per_doc`, `max_tokens_per_doc`, `relevant_spans`, `priority`), a document that is an object, a \
             `model` this server does not have (the default models then serve), or the header `X-Fern-SDK-Name: cohere`.",
            Some(json_body(json!({"anyOf": [sref("RerankRequest"), sref("CohereRerankRequest")]}))),
            responses(json_ok("Documents by descending score.", json!({"anyOf": [sref("RerankResponse"), sref("CohereRerankResponse")]})), Errs::Encoder), true)),
        "/v1/analyze": post(op("encode", "analyze", "Sentiment, entities and an embedding in one call",
            "Runs the default `classify` model (as sentiment), the default `entities` model and the default `embed` model \
             concurrently on every input. `tasks` picks some of them (404 naming `tasks` when one has no model); by default \
             every task that has a model runs. Each result holds `sentiment` (labels by score), `entities` (spans) and \
             `embedding` (normalized), as requested.",
            Some(json_body(sref("AnalyzeRequest"))), responses(json_ok("One object per input.", sref("AnalyzeResponse")), Errs::Encoder), true)),
        "/v1/tokenize": post(op("encode", "tokenize", "Tokenize",
            "Tokens of each input with the named (or default `embed`) encoder model's tokenizer, special tokens included, \
             truncated to the model's limit. Offsets count characters, not bytes.",
            Some(json_body(sref("TokenizeRequest"))), responses(json_ok("Tokens per input.", sref("TokenizeResponse")), Errs::Tokenize), true)),
    })
}

fn generation_paths() -> Value {
    json!({
        "/v1/chat/completions": post(op("openai", "chatCompletions", "Chat completion (OpenAI shape)",
            "OpenAI `POST /v1/chat/completions` on the generative model. A `model` this server does not know falls back to the \
             default `generate` model. Only `n = 1`. With `stream: true` the answer is server-sent events.",
            Some(json_body(sref("ChatCompletionRequest"))),
            responses(stream_ok("The completion, or (stream) `chat.completion.chunk` events.", sref("ChatCompletion"), sref("ChatCompletionChunk"),
                "`data: <ChatCompletionChunk JSON>` events: first a chunk with `delta.role = assistant`, then one per text piece, \
                 then one with `finish_reason` and `usage`, then `data: [DONE]`. A failure after the stream started arrives \
                 as `data: <ErrorBody JSON>` followed by `data: [DONE]`."), Errs::Generate), true)),
        "/v1/completions": post(op("openai", "completions", "Text completion (OpenAI shape)",
            "OpenAI legacy `POST /v1/completions`: continues `prompt` (a single string). Unknown `model` names fall back to the \
             default `generate` model. With `stream: true` the answer is server-sent events.",
            Some(json_body(sref("CompletionRequest"))),
            responses(stream_ok("The completion, or (stream) `text_completion` events.", sref("Completion"), sref("CompletionChunk"),
                "`data: <CompletionChunk JSON>` events, one per text piece, then one with empty `text` and the `finish_reason`, \
                 then `data: [DONE]`. A failure after the stream started arrives as `data: <ErrorBody JSON>` then `data: [DONE]`."), Errs::Generate), true)),
        "/v1/explain": post(op("generate", "explain", "Explain code",
            "Explains a code snippet with the generative model (greedy by default). With `stream: true` the answer is \
             server-sent events.",
            Some(json_body(sref("ExplainRequest"))),
            responses(stream_ok("The explanation, or (stream) text events.", sref("ExplainResponse"), sref("ExplainEvent"),
                "`data: {\"text\": \"...\"}` events, one per text piece, then `data: {\"done\": true, \"model\", \"finish_reason\", \"usage\"}`. \
                 No `[DONE]` marker. A failure after the stream started arrives as `data: <ErrorBody JSON>`."), Errs::Generate), true)),
    })
}

fn model_paths() -> Value {
    let name = json!([{"$ref": "#/components/parameters/ModelName"}]);
    let mut load = op("models", "loadModel", "Load a model",
        "Loads and warms up the model now (a no-op when loaded). Under `--memory-budget`, least recently used idle models \
         are unloaded to make room: 422 when the model can never fit, 503 when the budget is held by models in use or the \
         load fails.",
        None, responses(json_ok("Loaded.", sref("LoadResponse")), Errs::Load), true);
    load["parameters"] = name.clone();
    let mut unload = op("models", "unloadModel", "Unload a model",
        "Unloads the model (queued work finishes first). The next request that needs it loads it again.",
        None, responses(json_ok("Unloaded.", sref("UnloadResponse")), Errs::Unload), true);
    unload["parameters"] = name;
    json!({
        "/v1/models": get(op("models", "listModels", "List models",
            "Every configured model with its state. The list is OpenAI-shaped (`object: list`, `data[].id`) so OpenAI clients' \
             `models.list()` works.",
            None, responses(json_ok("The models.", sref("ModelList")), Errs::AuthOnly), true)),
        "/v1/models/{name}": get({
            let mut o = op("models", "getModel", "One model",
                "The model's state (OpenAI's `models.retrieve`).",
                None, responses(json_ok("The model.", sref("ModelStatus")), Errs::Unload), true);
            o["parameters"] = json!([{"$ref": "#/components/parameters/ModelName"}]);
            o
        }),
        "/v1/models/{name}/load": post(load),
        "/v1/models/{name}/unload": post(unload),
    })
}

fn tei_paths() -> Value {
    json!({
        "/embed": post(op("tei", "teiEmbed", "Embeddings (TEI shape)",
            "text-embeddings-inference `POST /embed` on the default `embed` model. Answers a bare list of vectors.",
            Some(json_body(sref("TeiEmbedRequest"))), responses(json_ok("One vector per input.", sref("TeiEmbedResponse")), Errs::Encoder), true)),
        "/rerank": post(op("tei", "teiRerank", "Rerank (TEI shape)",
            "text-embeddings-inference `POST /rerank`, scored like `/v1/rerank` with the default models.",
            Some(json_body(sref("TeiRerankRequest"))), responses(json_ok("Texts by descending score.", sref("TeiRerankResponse")), Errs::Encoder), true)),
        "/predict": post(op("tei", "teiPredict", "Classification (TEI shape)",
            "text-embeddings-inference `POST /predict` on the default `classify` model. A single string input answers one \
             list of label scores; a list input answers a list of lists.",
            Some(json_body(sref("TeiPredictRequest"))), responses(json_ok("Label scores, sorted by score.", sref("TeiPredictResponse")), Errs::Encoder), true)),
        "/tokenize": post(op("tei", "teiTokenize", "Tokenize (TEI shape)",
            "text-embeddings-inference `POST /tokenize` with the default `embed` model's tokenizer. Token ends are `stop`.",
            Some(json_body(sref("TeiTokenizeRequest"))), responses(json_ok("Tokens per input.", sref("TeiTokenizeResponse")), Errs::Tokenize), true)),
        "/info": get(op("tei", "teiInfo", "Server info (TEI shape)",
            "text-embeddings-inference `GET /info`, describing the default `embed` model.",
            None, responses(json_ok("Info.", sref("TeiInfo")), Errs::AuthOnly), true)),
    })
}

fn ops_paths() -> Value {
    let ready = || {
        json!({
            "200": json_ok("Ready.", sref("HealthStatus")),
            "503": {"description": "Not ready: a preloaded model is not loaded yet or failed to load.",
                    "content": {"application/json": {"schema": sref("HealthStatus")}}}
        })
    };
    let ready_desc = "Ready when every model loaded at start (`--preload`) is loaded; without `--preload` always ready.";
    json!({
        "/": get(op("ops", "dashboard", "Dashboard",
            "A single static HTML page (no external assets) plotting throughput, latency percentiles, batch sizes and memory \
             from `/v1/stats`, listing the models, with a playground for every task. The page is open; its API calls send the \
             key typed into it.",
            None, json!({"200": {"description": "The page.", "content": {"text/html": {"schema": {"type": "string"}}}}}), false)),
        "/health": get(op("ops", "health", "Readiness (alias of /health/ready)", ready_desc, None, ready(), false)),
        "/health/ready": get(op("ops", "healthReady", "Readiness", ready_desc, None, ready(), false)),
        "/health/live": get(op("ops", "healthLive", "Liveness", "Answers while the process serves HTTP.", None,
            json!({"200": json_ok("Live.", sref("HealthStatus"))}), false)),
        "/metrics": get(op("ops", "metrics", "Prometheus metrics", "Prometheus text exposition format 0.0.4.", None,
            json!({"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}}), false)),
        "/v1/stats": get(op("ops", "stats", "Performance statistics",
            "Request counts, latency percentiles per stage, throughput windows and batching, per (task, model), since start.",
            None, responses(json_ok("The report.", sref("StatsResponse")), Errs::AuthOnly), true)),
        "/v1/cache": get(op("ops", "cacheStats", "Result cache statistics",
            "Settings and counters of the result cache: L1 bytes, entries, hits, misses and evictions; L2 (Redis) hits, misses, \
             errors, writes and the circuit breaker state; per model hit rates. `{\"enabled\": false}` when the cache is off.",
            None, responses(json_ok("The cache report.", sref("CacheStats")), Errs::AuthOnly), true)),
        "/v1/cache/clear": post({
            let mut o = op("ops", "cacheClear", "Clear the result cache",
                "Empties L1 and/or deletes this deployment's keys (its `--cache-prefix`) from Redis. An admin route: \
                 behind the API key when keys are configured. A Redis error is reported in `l2_error`, not as a failure.",
                None, responses(json_ok("What was cleared.", sref("CacheClearResponse")), Errs::AuthOnly), true);
            o["parameters"] = json!([{"name": "level", "in": "query", "required": false,
                "description": "Which level to clear.", "schema": {"type": "string", "enum": ["l1", "l2", "all"], "default": "all"}}]);
            o["responses"]["400"] = json!({"$ref": "#/components/responses/BadRequest"});
            o
        }),
        "/openapi.json": get(op("ops", "openapi", "This document", "The OpenAPI 3.1 description of the API.", None,
            json!({"200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}}}), false)),
    })
}

// ---------------------------------------------------------------------------------------------
// Error responses
// ---------------------------------------------------------------------------------------------

fn error_responses() -> Value {
    let e = |desc: &str| json!({"description": desc, "content": {"application/json": {"schema": sref("ErrorBody")}}});
    let mut too_many = e("A model's queue is full (`--max-queue`); retry after `Retry-After` seconds. Type `overloaded_error`.");
    too_many["headers"] = json!({"Retry-After": {"$ref": "#/components/headers/Retry-After"}});
    json!({
        "BadRequest": e("Malformed JSON, an unknown field, a wrong type or a bad value; `param` names the field \
            (e.g. `inputs[1]`, `messages[0].role`). Type `invalid_request_error`."),
        "Unauthorized": e("API keys are configured and the request has no valid `Authorization: Bearer <key>`. Type `authentication_error`."),
        "NotFound": e("Unknown model (`param: model`), or no model configured for the task. Type `not_found_error`."),
        "PayloadTooLarge": e("The body is larger than `--max-request-bytes`, or the list has more items than \
            `--max-inputs-per-request` (`param` names the list). Type `request_too_large`."),
        "Unprocessable": e("Well-formed but unprocessable: an empty list or empty input, an input longer than the model's \
            limit with `truncate: false` (`param: inputs[i]`), a model that cannot do the task (`param: model`). Type `invalid_input_error`."),
        "TooManyRequests": too_many,
        "Internal": e("A server bug. Type `internal_error`."),
        "Unavailable": e("The model failed to load, the memory budget is held by models in use, or the server is shutting down. \
            Type `unavailable_error`."),
        "Timeout": e("The deadline (`timeout_ms` or `--request-timeout`) passed before the result was computed. Type `timeout_error`."),
    })
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

fn schemas() -> Value {
    let mut m = Map::new();
    for group in [
        common_schemas(),
        encoder_schemas(),
        generation_schemas(),
        model_schemas(),
        verify::schemas(),
        stats_schemas(),
        tei_schemas(),
        hf::schemas(),
        cohere::schemas(),
    ] {
        if let Value::Object(g) = group {
            m.extend(g);
        }
    }
    Value::Object(m)
}

fn model_field(task: &str) -> Value {
    json!({"type": ["string", "null"], "description": format!("A configured model name (see `GET /v1/models`); default: the `{task}` task's default model.")})
}

fn truncate_field() -> Value {
    json!({"type": "boolean", "default": true,
        "description": "Cut inputs longer than the model's limit (or `--max-input-tokens`). `false`: refuse them with 422 naming `inputs[i]`."})
}

fn prompt_name_field() -> Value {
    json!({"type": "string", "description": "One of the model's prompts (`prompts` in its config_sentence_transformers.json, e.g. \
        `query`), put before each input; its tokens count toward the limit. Default: the model's default prompt \
        (`default_prompt_name`, or `--default-prompt`). Unknown name: 422; with `prompt`: 400."})
}

fn prompt_field() -> Value {
    json!({"type": "string", "description": "A prompt's text (e.g. `query: `), put before each input; `\"\"` turns the model's default prompt off."})
}

fn timeout_field() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": crate::types::TimeoutMs::MAX,
        "description": "Deadline for this request in ms (queue + compute), 1 ms to a day; default `--request-timeout` (30 s). Past it: 504."})
}

fn cache_field() -> Value {
    json!({"type": "boolean", "default": true,
        "description": "`false`: neither read nor fill the result cache (both levels) for this request. Cached results \
            are the model's outputs keyed by model, revision, operation, output-affecting parameters and input; a hit \
            returns exactly what the model returned for that input."})
}

/// The pattern of a text the handlers refuse when blank (empty or only whitespace): it must hold
/// a character that is not whitespace.
pub(crate) const NON_BLANK: &str = "\\S";

/// A text that must not be blank (422 naming the field when it is).
fn text() -> Value {
    json!({"type": "string", "pattern": NON_BLANK})
}

fn float() -> Value {
    json!({"type": "number", "format": "float"})
}

fn uint() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn common_schemas() -> Value {
    json!({
        "ErrorBody": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["message", "type", "param"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string", "enum": ["invalid_request_error", "authentication_error", "not_found_error",
                        "request_too_large", "invalid_input_error", "overloaded_error", "unavailable_error", "timeout_error", "internal_error"]},
                    "param": {"type": ["string", "null"], "description": "The offending field, e.g. `inputs[2]`; null when none."}
                }
            }}
        },
        "Texts": {
            "description": "One text or a non-empty list of texts; none may be blank (422 naming `inputs[i]`).",
            "oneOf": [text(), {"type": "array", "items": text(), "minItems": 1}]
        },
        "TextOrPair": {
            "description": "A text, or a `[text, text_pair]` pair; not blank.",
            "oneOf": [text(), {"type": "array", "prefixItems": [text(), text()], "items": false, "minItems": 2, "maxItems": 2}]
        },
        "ClassifyInputs": {
            "description": "One text, or a non-empty list of texts and/or `[text, text_pair]` pairs.",
            "oneOf": [text(), {"type": "array", "items": sref("TextOrPair"), "minItems": 1}]
        },
        "LabelScore": {
            "type": "object", "required": ["label", "score"],
            "properties": {"label": {"type": "string"}, "score": float()}
        },
        "Entity": {
            "type": "object", "required": ["label", "start", "end", "text", "score"],
            "description": "An entity span (aggregation `simple`, label without the B-/I- prefix) or one labelled token \
                (aggregation `none`, the raw label, `O` included). `start`/`end` are character offsets into the input, end exclusive.",
            "properties": {"label": {"type": "string"}, "start": uint(), "end": uint(), "text": {"type": "string"}, "score": float()}
        },
        "Usage": {
            "type": "object", "required": ["prompt_tokens", "total_tokens"],
            "properties": {"prompt_tokens": uint(), "total_tokens": uint()}
        },
        "GenerationUsage": {
            "type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
            "properties": {"prompt_tokens": uint(), "completion_tokens": uint(), "total_tokens": uint()}
        },
        "HealthStatus": {
            "type": "object", "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready", "live"]},
                "reasons": {"type": "array", "items": {"type": "string"}, "description": "Only when not ready."}
            }
        },
    })
}

fn encoder_schemas() -> Value {
    json!({
        "EmbedRequest": {
            "type": "object", "required": ["inputs"], "additionalProperties": false,
            "not": {"required": ["prompt", "prompt_name"]},
            "properties": {
                "model": model_field("embed"),
                "inputs": sref("Texts"),
                "normalize": {"type": "boolean", "default": true, "description": "L2-normalize each vector."},
                "truncate": truncate_field(),
                "truncation_direction": {"type": "string", "enum": ["right", "left", "Right", "Left"], "default": "right",
                    "description": "Which end of an over-long input is cut: `right` keeps the start, `left` keeps the end (the cut falls on a word start)."},
                "dimensions": {"type": "integer", "minimum": 1, "description": "Keep the first N values (Matryoshka), re-normalized when normalizing; 1..=hidden size."},
                "prompt_name": prompt_name_field(),
                "prompt": prompt_field(),
                "timeout_ms": timeout_field(),
                "cache": cache_field(),
            }
        },
        "AnalyzeRequest": {
            "type": "object", "required": ["inputs"], "additionalProperties": false,
            "properties": {
                "inputs": sref("Texts"),
                "tasks": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": ["sentiment", "entities", "embedding"]},
                    "description": "Default: every task that has a model."},
                "truncate": truncate_field(),
                "timeout_ms": timeout_field(),
                "cache": cache_field(),
            }
        },
        "AnalyzeResponse": {
            "type": "object", "required": ["results"],
            "properties": {"results": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "sentiment": {"type": "array", "items": sref("LabelScore")},
                    "entities": {"type": "array", "items": sref("Entity")},
                    "embedding": {"type": "array", "items": float()},
                }
            }}}
        },
        "EmbedResponse": {
            "type": "object", "required": ["embeddings"],
            "properties": {"embeddings": {"type": "array", "items": {"type": "array", "items": float()}}}
        },
        "OpenAIEmbeddingsRequest": {
            "type": "object", "required": ["input"],
            "not": {"required": ["prompt", "prompt_name"]},
            "description": "Unknown fields are ignored.",
            "properties": {
                "model": {"type": "string", "description": "A configured model name; any other name (e.g. `text-embedding-3-small`) means the default `embed` model."},
                "input": {"description": "A text or a non-empty list of texts, none blank. Token-id arrays are refused (400).",
                    "oneOf": [text(), {"type": "array", "items": text(), "minItems": 1}]},
                "encoding_format": {"type": "string", "enum": ["float", "base64"], "default": "float",
                    "description": "`base64`: each vector as base64 of its little-endian f32 bytes."},
                "dimensions": {"type": "integer", "minimum": 1},
                "user": {"type": "string", "description": "Accepted and ignored."},
                "prompt_name": prompt_name_field(),
                "prompt": prompt_field(),
                "cache": cache_field(),
            }
        },
        "OpenAIEmbedding": {
            "type": "object", "required": ["object", "index", "embedding"],
            "properties": {
                "object": {"const": "embedding"},
                "index": uint(),
                "embedding": {"oneOf": [{"type": "array", "items": float()}, {"type": "string", "contentEncoding": "base64"}]}
            }
        },
        "OpenAIEmbeddingsResponse": {
            "type": "object", "required": ["object", "data", "model", "usage"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": sref("OpenAIEmbedding")},
                "model": {"type": "string", "description": "The model that served the request."},
                "usage": sref("Usage"),
            }
        },
        "ClassifyRequest": {
            "type": "object", "required": ["inputs"], "additionalProperties": false,
            "properties": {
                "model": model_field("classify"),
                "inputs": sref("ClassifyInputs"),
                "top_k": {"type": "integer", "minimum": 1, "description": "Keep the k best labels; default all."},
                "raw_scores": {"type": "boolean", "default": false, "description": "Logits instead of softmax probabilities."},
                "truncate": truncate_field(),
                "timeout_ms": timeout_field(),
                "cache": cache_field(),
            }
        },
        "ClassifyResponse": {
            "type": "object", "required": ["results"],
            "properties": {"results": {"type": "array", "items": {"type": "array", "items": sref("LabelScore")}}}
        },
        "EntitiesRequest": {
            "type": "object", "required": ["inputs"], "additionalProperties": false,
            "properties": {
                "model": model_field("entities"),
                "inputs": sref("Texts"),
                "aggregation": {"type": "string", "enum": ["simple", "none"], "default": "simple"},
                "truncate": truncate_field(),
                "timeout_ms": timeout_field(),
                "cache": cache_field(),
            }
        },
        "EntitiesResponse": {
            "type": "object", "required": ["results"],
            "properties": {"results": {"type": "array", "items": {"type": "array", "items": sref("Entity")}}}
        },
        "NliPair": {
            "type": "object", "required": ["premise", "hypothesis"], "additionalProperties": false,
            "properties": {"premise": text(), "hypothesis": text()}
        },
        "NliRequest": {
            "type": "object", "required": ["pairs"], "additionalProperties": false,
            "properties": {
                "model": model_field("nli"),
                "pairs": {"type": "array", "items": sref("NliPair"), "minItems": 1},
                "timeout_ms": timeout_field(),
                "cache": cache_field(),
            }
        },
        "NliResult": {
            "type": "object", "required": ["label", "scores"],
            "properties": {
                "label": {"type": "string", "description": "The most probable label, lower-cased."},
                "scores": {"type": "object", "additionalProperties": float(), "description": "Probability per (lower-cased) label."}
            }
        },
        "NliResponse": {
            "type": "object", "required": ["results"],
            "properties": {"results": {"type": "array", "items": sref("NliResult")}}
        },
        "RerankRequest": {
            "type": "object", "required": ["query", "documents"], "additionalProperties": false,
            "properties": {
                "model": {"type": "string", "description": "A cross-encoder (task `rerank`/`classify`) or an embedding model; default: the `rerank` default, else the `embed` default."},
                "query": text(),
                "documents": {"type": "array", "items": text(), "minItems": 1},
                "top_n": {"type": "integer", "minimum": 1, "description": "Keep the n best; default all."},
                "return_documents": {"type": "boolean", "default": true, "description": "Include each document's text."},
                "timeout_ms": timeout_field(),
                "cache": cache_field(),
            }
        },
        "RerankResult": {
            "type": "object", "required": ["index", "score", "relevance_score"],
            "properties": {"index": uint(), "score": float(),
                "relevance_score": {"type": "number", "minimum": 0, "maximum": 1, "description": "`score` mapped to [0, 1]: sigmoid of a cross-encoder's logit, (1 + cosine) / 2 for the embedding model."},
                "document": {"type": "string"}}
        },
        "RerankResponse": {
            "type": "object", "required": ["results"],
            "properties": {"results": {"type": "array", "items": sref("RerankResult")}}
        },
        "TokenizeRequest": {
            "type": "object", "required": ["inputs"], "additionalProperties": false,
            "properties": {"model": model_field("embed"), "inputs": sref("Texts")}
        },
        "Token": {
            "type": "object", "required": ["id", "text", "start", "end", "special"],
            "properties": {"id": uint(), "text": {"type": "string"}, "start": uint(), "end": uint(), "special": {"type": "boolean"}}
        },
        "TokenizeResponse": {
            "type": "object", "required": ["tokens"],
            "properties": {"tokens": {"type": "array", "items": {"type": "array", "items": sref("Token")}}}
        },
    })
}

/// Sampling fields shared by the generation requests.
fn sampling_properties(default_max: usize, default_temperature: f64) -> Map<String, Value> {
    let v = json!({
        "max_tokens": {"type": "integer", "minimum": 1, "default": default_max, "description": "Most new tokens."},
        "max_completion_tokens": {"type": "integer", "minimum": 1, "description": "Wins over `max_tokens`."},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": default_temperature, "description": "0: greedy."},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": "integer", "minimum": 0, "default": nlpd_engine::generate::DEFAULT_SEED},
        "stop": {"description": "Stop sequences.", "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "frequency_penalty": {"type": "number", "description": "Positive values become a repeat penalty of 1 + p/2; negative values count as 0."},
        "n": {"type": "integer", "const": 1, "description": "Only 1 is supported."},
        "timeout_ms": timeout_field(),
        "cache": {"type": "boolean", "default": true, "description": "`false`: neither read nor fill the result cache. \
            Only deterministic requests are cached (temperature 0, or an explicit `seed`), and only when not streamed."},
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// OpenAI's `stream_options` (the OpenAI routes only; `/v1/explain` has its own event shape).
fn stream_options() -> Value {
    json!({"type": "object", "properties": {"include_usage": {"type": "boolean", "default": false,
        "description": "Streams end with a chunk holding `choices: []` and the usage before `[DONE]`."}}})
}

fn generation_request(
    required: &[&str],
    own: Value,
    default_max: usize,
    default_temperature: f64,
    description: &str,
) -> Value {
    let mut props = sampling_properties(default_max, default_temperature);
    if let Value::Object(o) = own {
        props.extend(o);
    }
    props.insert("stream".into(), json!({"type": "boolean", "default": false, "description": "Answer with server-sent events."}));
    json!({"type": "object", "required": required, "description": description, "properties": props})
}

fn generation_schemas() -> Value {
    let model = json!({"type": "string", "description": "A configured generative model; any other name means the default `generate` model."});
    let finish = json!({"type": "string", "enum": ["stop", "length", "cancelled"],
        "description": "`cancelled`: the deadline passed or the client left during generation."});
    json!({
        "ChatMessage": {
            "type": "object", "required": ["role", "content"],
            "properties": {"role": {"type": "string", "description": "system, user or assistant."}, "content": {"type": "string"}}
        },
        "ChatCompletionRequest": generation_request(&["messages"], json!({
            "model": model,
            "messages": {"type": "array", "items": sref("ChatMessage"), "minItems": 1},
            "response_format": sref("ResponseFormat"),
            "stream_options": stream_options(),
        }), gen::CHAT_MAX_TOKENS, gen::OPENAI_TEMPERATURE, "Other OpenAI fields are accepted and ignored."),
        "ResponseFormat": {
            "type": "object", "required": ["type"],
            "description": "Structured output, enforced during decoding: `text` (free text), `json_object` (any JSON object) or \
                `json_schema` (a value valid against `json_schema.schema`). An invalid or unsupported schema is a 400 naming \
                `response_format.json_schema.schema`. With `finish_reason: length` the JSON is incomplete.",
            "properties": {
                "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
                "json_schema": {
                    "type": "object", "required": ["schema"],
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "schema": {"type": ["object", "boolean"], "description": "A JSON Schema (local `$ref`s only)."},
                        "strict": {"type": "boolean", "description": "Accepted; the schema is always enforced."},
                    }
                },
            }
        },
        "ChatCompletion": {
            "type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {
                "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": uint(), "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object", "properties": {
                    "index": uint(), "message": sref("ChatMessage"), "finish_reason": finish}}},
                "usage": sref("GenerationUsage"),
            }
        },
        "ChatCompletionChunk": {
            "type": "object", "required": ["id", "object", "created", "model", "choices"],
            "properties": {
                "id": {"type": "string"}, "object": {"const": "chat.completion.chunk"}, "created": uint(), "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object", "properties": {
                    "index": uint(),
                    "delta": {"type": "object", "properties": {"role": {"type": "string"}, "content": {"type": "string"}}},
                    "finish_reason": {"type": ["string", "null"], "enum": ["stop", "length", "cancelled", null]}}}},
                "usage": sref("GenerationUsage"),
            }
        },
        "CompletionRequest": generation_request(&["prompt"], json!({
            "model": model,
            "prompt": {"type": "string", "minLength": 1, "description": "A single string (arrays are refused)."},
            "response_format": sref("ResponseFormat"),
            "stream_options": stream_options(),
        }), gen::COMPLETION_MAX_TOKENS, gen::OPENAI_TEMPERATURE, "Other OpenAI fields are accepted and ignored."),
        "Completion": {
            "type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {
                "id": {"type": "string"}, "object": {"const": "text_completion"}, "created": uint(), "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object", "properties": {
                    "index": uint(), "text": {"type": "string"}, "finish_reason": finish}}},
                "usage": sref("GenerationUsage"),
            }
        },
        "CompletionChunk": {
            "type": "object", "required": ["id", "object", "created", "model", "choices"],
            "properties": {
                "id": {"type": "string"}, "object": {"const": "text_completion"}, "created": uint(), "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object", "properties": {
                    "index": uint(), "text": {"type": "string"},
                    "finish_reason": {"type": ["string", "null"], "enum": ["stop", "length", "cancelled", null]}}}},
            }
        },
        "ExplainRequest": generation_request(&["code"], json!({
            "model": {"type": "string", "description": "A configured generative model; any other name means the default `generate` model."},
            "code": {"type": "string", "pattern": NON_BLANK, "description": "The code to explain (not blank)."},
            "language": {"type": "string", "description": "The code's language, e.g. `rust` (helps the prompt)."},
            "detail": {"type": "string", "enum": ["brief", "detailed"], "default": "brief", "description": format!("How much to explain: what the code does, or its purpose, inputs and outputs, steps and edge cases (default max_tokens {}).", Detail::Detailed.default_max_tokens())},
        }), Detail::Brief.default_max_tokens(), gen::EXPLAIN_TEMPERATURE, "`frequency_penalty` defaults to 0.2 here. `response_format` is refused (400) unless `text`. \
            Other fields are accepted and ignored."),
        "ExplainResponse": {
            "type": "object", "required": ["explanation", "model", "finish_reason", "usage"],
            "properties": {"explanation": {"type": "string"}, "model": {"type": "string"}, "finish_reason": finish, "usage": sref("GenerationUsage")}
        },
        "ExplainEvent": {
            "oneOf": [
                {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
                {"type": "object", "required": ["done", "model", "finish_reason", "usage"], "properties": {
                    "done": {"const": true}, "model": {"type": "string"}, "finish_reason": {"type": "string"}, "usage": sref("GenerationUsage")}}
            ]
        },
    })
}

fn model_schemas() -> Value {
    json!({
        "ModelStatus": {
            "type": "object",
            "required": ["id", "object", "owned_by", "name", "task", "kind", "architecture", "path", "dtype", "precision", "device", "loaded",
                "bytes", "error", "last_used_ms", "requests", "queue_depth", "default_for"],
            "properties": {
                "id": {"type": "string", "description": "Same as `name` (OpenAI shape)."},
                "object": {"const": "model"},
                "owned_by": {"const": "nlpd"},
                "name": {"type": "string"},
                "task": {"type": "string", "enum": ["embed", "classify", "entities", "generate", "nli", "rerank"]},
                "kind": {"type": "string", "enum": ["encoder", "generator"]},
                "architecture": {"type": "string"},
                "path": {"type": "string"},
                "dtype": {"type": "string", "enum": ["f32", "int8", "bf16", "gguf-quantized"], "description": "Same as `precision` (kept for existing clients)."},
                "precision": {"type": "string", "enum": ["f32", "int8", "bf16", "gguf-quantized"], "description": "Precision of an encoder's linear layers: the loaded model's, else what --quantize asks for."},
                "backend": {"type": ["string", "null"], "description": "implementation running the loaded model (fast-bert, fast-bert-int8, fast-bert-bf16, candle-bert, candle-deberta-v2, candle-gguf); null until loaded"},
                "kernel": {"type": ["string", "null"], "description": "kernel running a loaded encoder's linear layers (amx-bf16, avx512-bf16, avx2-fma (bf16 widened), portable bf16 (scalar), amx-int8, avx512-vnni, portable int8 (no VNNI), avx512-f32 (packed), gemm crate (avx2-fma), candle) or candle-gguf; null until loaded"},
                "device": {"type": "string", "enum": ["cpu"]},
                "loaded": {"type": "boolean"},
                "bytes": {"type": "integer", "minimum": 0, "description": "Weight bytes while loaded, else 0."},
                "error": {"type": ["string", "null"], "description": "Why the last load failed."},
                "last_used_ms": {"type": "integer", "minimum": 0, "description": "Unix time in ms of the last request (0: never)."},
                "requests": uint(),
                "queue_depth": uint(),
                "default_for": {"type": "array", "items": {"type": "string"}, "description": "Tasks this model is the default for."}
            }
        },
        "ModelList": {
            "type": "object", "required": ["object", "data"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": sref("ModelStatus")}}
        },
        "LoadResponse": {
            "type": "object", "required": ["name", "loaded"],
            "properties": {"name": {"type": "string"}, "loaded": {"const": true}}
        },
        "UnloadResponse": {
            "type": "object", "required": ["name", "loaded", "was_loaded"],
            "properties": {"name": {"type": "string"}, "loaded": {"const": false}, "was_loaded": {"type": "boolean"}}
        },
    })
}

fn stats_schemas() -> Value {
    let ms = json!({"type": "number"});
    json!({
        "LatencySummary": {
            "type": "object", "required": ["count", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms"],
            "properties": {"count": uint(), "mean_ms": ms, "p50_ms": ms, "p90_ms": ms, "p95_ms": ms, "p99_ms": ms, "max_ms": ms}
        },
        "SeriesReport": {
            "type": "object",
            "description": "One (task, model). `latency`: whole requests (successful ones). `queue` and `inference`: per input item \
                (inference = its batch's forward pass). `tokenize` and `postprocess`: per request. A stage is null when never recorded.",
            "required": ["task", "model", "requests", "errors", "inputs", "latency", "queue", "tokenize", "inference", "postprocess",
                "inputs_per_s_1m", "inputs_per_s_5m", "inputs_per_s_15m"],
            "properties": {
                "task": {"type": "string"}, "model": {"type": "string"},
                "requests": uint(), "errors": uint(), "inputs": uint(),
                "latency": sref("LatencySummary"),
                "queue": {"oneOf": [sref("LatencySummary"), {"type": "null"}]},
                "tokenize": {"oneOf": [sref("LatencySummary"), {"type": "null"}]},
                "inference": {"oneOf": [sref("LatencySummary"), {"type": "null"}]},
                "postprocess": {"oneOf": [sref("LatencySummary"), {"type": "null"}]},
                "inputs_per_s_1m": ms, "inputs_per_s_5m": ms, "inputs_per_s_15m": ms,
            }
        },
        "BatchReport": {
            "type": "object", "required": ["model", "forward_passes", "inferences", "avg_batch_size", "avg_batch_tokens"],
            "properties": {"model": {"type": "string"}, "forward_passes": uint(), "inferences": uint(),
                "avg_batch_size": {"type": "number"}, "avg_batch_tokens": {"type": "number"}}
        },
        "StatsResponse": {
            "type": "object", "required": ["uptime_s", "process_resident_bytes", "models_bytes", "requests", "batching"],
            "properties": {
                "uptime_s": {"type": "number"},
                "process_resident_bytes": uint(),
                "models_bytes": {"type": "array", "items": {"type": "object", "required": ["model", "bytes"],
                    "properties": {"model": {"type": "string"}, "bytes": uint()}}},
                "requests": {"type": "array", "items": sref("SeriesReport")},
                "batching": {"type": "array", "items": sref("BatchReport")},
                "cache": {"description": "The result cache (as `GET /v1/cache`, without `enabled`); null when off.",
                    "oneOf": [sref("CacheStats"), {"type": "null"}]},
                "store": {"description": "The prediction store; null when off.",
                    "oneOf": [sref("StoreStats"), {"type": "null"}]},
                "evidence": {"description": "The evidence corpus of `/v1/verify` (as `GET /v1/evidence`); null without the store.",
                    "oneOf": [sref("CorpusStats"), {"type": "null"}]},
            }
        },
        "StoreStats": {
            "type": "object",
            "properties": {
                "backend": {"type": "string", "enum": ["sqlite", "postgres"]},
                "url": {"type": "string", "description": "Password redacted."},
                "migrated": {"type": "boolean", "description": "Whether the schema is in place (false while PostgreSQL has been unreachable since start)."},
                "log_predictions": {"type": "boolean"},
                "log_inputs": {"type": "boolean"},
                "rows_written": {"type": "integer", "minimum": 0, "description": "Prediction log rows (served inputs) written."},
                "rows_dropped": {"type": "integer", "minimum": 0, "description": "Prediction log rows dropped, all reasons."},
                "dropped": {"type": "object", "properties": {"queue_full": uint(), "db_error": uint(), "shutdown": uint()}},
                "queue_depth": {"type": "integer", "minimum": 0, "description": "Rows waiting to be written."},
                "queue_capacity": uint(),
                "flushes": uint(),
                "failed_flushes": uint(),
                "last_error": {"oneOf": [{"type": "string"}, {"type": "null"}]},
                "warm": {"type": "object", "description": "Cache warming (`--warm-cache`).", "properties": {
                    "per_model": uint(),
                    "state": {"type": "string", "enum": ["off", "waiting", "running", "done", "failed"]},
                    "planned": uint(), "warmed": uint(), "already_cached": uint(), "failed": uint()}},
            }
        },
        "ModelCacheStats": {
            "type": "object",
            "properties": {
                "model": {"type": "string"},
                "l1_hits": uint(), "l1_misses": uint(), "l1_hit_rate": ms,
                "l2_hits": uint(), "l2_misses": uint(), "l2_hit_rate": ms,
                "coalesced": {"type": "integer", "minimum": 0, "description": "Inputs answered by waiting for an identical computation in flight."},
                "computed": {"type": "integer", "minimum": 0, "description": "Inputs the model computed."},
                "bypassed": {"type": "integer", "minimum": 0, "description": "Inputs of requests with `cache: false`."},
                "warmed": {"type": "integer", "minimum": 0, "description": "Entries filled by cache warming (`--warm-cache`)."},
            }
        },
        "CacheStats": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "ttl_s": ms,
                "in_flight": {"type": "integer", "minimum": 0, "description": "Keys being computed now."},
                "waiting": {"type": "integer", "minimum": 0, "description": "Requests waiting for one of those."},
                "l1": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
                    "policy": {"type": "string", "enum": ["tinylfu", "lru"]},
                    "capacity_bytes": uint(), "bytes": uint(), "entries": uint(),
                    "hits": uint(), "misses": uint(), "hit_rate": ms,
                    "evictions_size": uint(), "evictions_expired": uint()}}]},
                "l2": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
                    "url": {"type": "string", "description": "Password redacted."}, "prefix": {"type": "string"}, "timeout_ms": uint(),
                    "breaker": {"type": "string", "enum": ["closed", "open", "half_open"]},
                    "breaker_opened_total": uint(),
                    "hits": uint(), "misses": uint(), "hit_rate": ms,
                    "errors": {"type": "integer", "minimum": 0, "description": "Failed Redis calls (refused, timed out, undecodable value)."},
                    "skipped": {"type": "integer", "minimum": 0, "description": "Lookups not sent while the breaker was open."},
                    "writes": uint(), "write_bytes": uint(),
                    "writes_dropped": {"type": "integer", "minimum": 0, "description": "Values not written (queue full, breaker open, write failed)."}}}]},
                "models": {"type": "array", "items": sref("ModelCacheStats")},
            }
        },
        "CacheClearResponse": {
            "type": "object",
            "properties": {
                "enabled": {"type": "boolean"},
                "l1_entries": {"oneOf": [uint(), {"type": "null"}], "description": "Entries removed from L1."},
                "l2_keys": {"oneOf": [uint(), {"type": "null"}], "description": "Keys deleted from Redis under this deployment's prefix."},
                "l2_error": {"oneOf": [{"type": "string"}, {"type": "null"}]},
            }
        },
    })
}

fn tei_schemas() -> Value {
    json!({
        "TeiEmbedRequest": {
            "type": "object", "required": ["inputs"], "description": "Unknown fields are ignored.",
            "properties": {
                "inputs": sref("Texts"),
                "normalize": {"type": "boolean", "default": true},
                "truncate": {"type": "boolean", "default": true, "description": "Unlike TEI, defaults to true. `false`: 422 for too-long inputs."},
                "truncation_direction": {"type": "string", "enum": ["right", "left", "Right", "Left"], "default": "right",
                    "description": "`left` keeps the end of an over-long input."},
                "prompt_name": {"type": "string", "description": "One of the model's prompts, put before each input (else its default prompt); a name it lacks is a 422."},
                "dimensions": {"type": "integer", "minimum": 1},
            }
        },
        "TeiEmbedResponse": {"type": "array", "items": {"type": "array", "items": float()}},
        "TeiRerankRequest": {
            "type": "object", "required": ["query", "texts"], "description": "Unknown fields (e.g. `raw_scores`, `truncate`) are ignored.",
            "properties": {
                "query": text(),
                "texts": {"type": "array", "items": text(), "minItems": 1},
                "return_text": {"type": "boolean", "default": false},
            }
        },
        "TeiRerankResponse": {"type": "array", "items": {"type": "object", "required": ["index", "score"],
            "properties": {"index": uint(), "score": float(), "text": {"type": "string"}}}},
        "TeiPredictRequest": {
            "type": "object", "required": ["inputs"], "description": "Unknown fields are ignored.",
            "properties": {
                "inputs": sref("ClassifyInputs"),
                "raw_scores": {"type": "boolean", "default": false},
            }
        },
        "TeiPredictResponse": {
            "oneOf": [
                {"type": "array", "items": sref("LabelScore"), "description": "For a single string input."},
                {"type": "array", "items": {"type": "array", "items": sref("LabelScore")}, "description": "For a list input."}
            ]
        },
        "TeiTokenizeRequest": {
            "type": "object", "required": ["inputs"], "description": "Unknown fields are ignored.",
            "properties": {"inputs": sref("Texts")}
        },
        "TeiToken": {
            "type": "object", "required": ["id", "text", "special", "start", "stop"],
            "properties": {"id": uint(), "text": {"type": "string"}, "special": {"type": "boolean"}, "start": uint(), "stop": uint()}
        },
        "TeiTokenizeResponse": {"type": "array", "items": {"type": "array", "items": sref("TeiToken")}},
        "TeiInfo": {
            "type": "object",
            "required": ["model_id", "model_sha", "model_dtype", "model_type", "max_concurrent_requests", "max_client_batch_size",
                "tokenization_workers", "version", "router"],
            "properties": {
                "model_id": {"type": "string"},
                "model_sha": {"type": "null"},
                "model_dtype": {"type": "string"},
                "model_type": {"type": "object", "description": "`{\"embedding\": {\"pooling\": \"mean\"}}`, `{\"classifier\": {}}` or `{\"reranker\": {}}`."},
                "max_concurrent_requests": uint(),
                "max_client_batch_size": uint(),
                "tokenization_workers": uint(),
                "version": {"type": "string"},
                "router": {"const": "nlpd"},
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[(&str, &str)] = &[
        ("post", "/v1/embed"),
        ("post", "/v1/embeddings"),
        ("post", "/v1/classify"),
        ("post", "/v1/entities"),
        ("post", "/v1/nli"),
        ("post", "/v1/analyze"),
        ("get", "/v1/models/{name}"),
        ("post", "/v1/rerank"),
        ("post", "/v1/tokenize"),
        ("post", "/v1/chat/completions"),
        ("post", "/v1/completions"),
        ("post", "/v1/explain"),
        ("post", "/v1/models/{name}/load"),
        ("post", "/v1/models/{name}/unload"),
        ("post", "/embed"),
        ("post", "/rerank"),
        ("post", "/predict"),
        ("post", "/tokenize"),
        ("get", "/v1/models"),
        ("get", "/v1/stats"),
        ("get", "/v1/cache"),
        ("post", "/v1/cache/clear"),
        ("get", "/health"),
        ("get", "/health/ready"),
        ("get", "/health/live"),
        ("get", "/metrics"),
        ("get", "/info"),
        ("get", "/openapi.json"),
        ("get", "/"),
        ("post", "/v1/evidence"),
        ("get", "/v1/evidence"),
        ("get", "/v1/evidence/{id}"),
        ("delete", "/v1/evidence/{id}"),
        ("post", "/v1/verify"),
        ("post", "/"),
        ("post", "/models/{name}"),
        ("post", "/similarity"),
        ("post", "/decode"),
        ("post", "/v2/embed"),
        ("post", "/v2/rerank"),
    ];

    #[test]
    fn spec_is_openapi_3_1_json() {
        let s = spec();
        let text = serde_json::to_string(&s).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["openapi"], "3.1.0");
        assert_eq!(back["info"]["title"], "nlpd");
        assert_eq!(back["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            back["components"]["securitySchemes"]["bearerAuth"]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn every_route_is_documented_with_its_method() {
        let s = spec();
        let paths = s["paths"].as_object().unwrap();
        for (method, path) in ROUTES {
            let item = paths.get(*path).unwrap_or_else(|| panic!("{path} missing"));
            let o = item
                .get(*method)
                .unwrap_or_else(|| panic!("{method} {path} missing"));
            assert!(o["summary"].is_string(), "{method} {path}: no summary");
            assert!(o["responses"]["200"].is_object(), "{method} {path}: no 200");
            if *method == "post" && !path.contains("{name}") && *path != "/v1/cache/clear" {
                assert!(
                    o["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{method} {path}: no request body"
                );
            }
        }
        let distinct: std::collections::BTreeSet<&str> = ROUTES.iter().map(|r| r.1).collect();
        assert_eq!(
            paths.len(),
            distinct.len(),
            "documented paths: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn security_matches_the_router() {
        let s = spec();
        for (method, path) in ROUTES {
            let sec = &s["paths"][*path][*method]["security"];
            let open = path.starts_with("/health")
                || *path == "/metrics"
                || *path == "/openapi.json"
                || (*path == "/" && *method == "get");
            assert_eq!(
                sec.as_array().unwrap().is_empty(),
                open,
                "{method} {path}: security {sec}"
            );
            if !open {
                assert!(
                    s["paths"][*path][*method]["responses"]["401"].is_object(),
                    "{method} {path}: no 401"
                );
            }
        }
    }

    #[test]
    fn streaming_routes_document_event_streams_and_429_has_retry_after() {
        let s = spec();
        for path in ["/v1/chat/completions", "/v1/completions", "/v1/explain"] {
            let ok = &s["paths"][path]["post"]["responses"]["200"]["content"];
            assert!(ok["text/event-stream"].is_object(), "{path}");
            assert!(ok["application/json"].is_object(), "{path}");
            for code in ["400", "413", "422", "429", "503", "504"] {
                assert!(
                    s["paths"][path]["post"]["responses"][code].is_object(),
                    "{path} {code}"
                );
            }
        }
        assert!(
            s["components"]["responses"]["TooManyRequests"]["headers"]["Retry-After"].is_object()
        );
    }

    #[test]
    fn generation_limits_are_the_servers() {
        let s = spec_for(Settings {
            secured: true,
            max_new_tokens: 8,
        });
        for pointer in NEW_TOKEN_FIELDS {
            let field = s
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{pointer} missing"));
            assert_eq!(field["maximum"], 8, "{pointer}");
            if let Some(d) = field["default"].as_u64() {
                assert!(d <= 8, "{pointer}: default {d} above the limit");
            }
        }
    }

    #[test]
    fn without_keys_the_document_asks_for_none() {
        let s = spec_for(Settings {
            secured: false,
            ..Settings::default()
        });
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            !text.contains("bearerAuth"),
            "security left in the open document"
        );
        assert!(
            !text.contains("\"security\""),
            "an operation still declares security"
        );
        for (method, path) in ROUTES {
            let o = &s["paths"][*path][*method];
            assert!(o["responses"]["200"].is_object(), "{method} {path}");
            assert!(
                o["responses"]["401"].is_null(),
                "{method} {path}: 401 without keys"
            );
        }
        let mut all = Vec::new();
        refs(&s, &mut all);
        for r in all {
            assert!(s.pointer(&r[1..]).is_some(), "unresolved ref {r}");
        }
    }

    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves() {
        let s = spec();
        let mut all = Vec::new();
        refs(&s, &mut all);
        assert!(all.len() > 50, "only {} refs", all.len());
        for r in all {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local ref {r}"));
            assert!(
                s.pointer(pointer).is_some_and(Value::is_object),
                "unresolved ref {r}"
            );
        }
    }
}
