//! The OpenAPI part of the Cohere-compatible routes: `/v2/embed`, `/v2/rerank` (and the Cohere
//! form of `/v1/rerank`, whose schemas are here).

use super::{float, json_body, json_ok, op, post, responses, sref, timeout_field, Errs};
use serde_json::{json, Value};

pub(super) fn paths() -> Value {
    json!({
        "/v2/embed": post(op("cohere", "cohereEmbed", "Embeddings (Cohere v2 shape)",
            "Cohere `POST /v2/embed` (`ClientV2.embed`). A `model` this server does not have means the default `embed` \
             model. `input_type` picks the model's prompt (see `CohereEmbedRequest`); vectors are L2-normalized, then \
             encoded as each of `embedding_types` asks: `int8` = round(127·x), `uint8` = int8 + 128, `ubinary` = sign \
             bits (x > 0) packed 8 per byte, most significant bit first, `binary` = ubinary − 128, `base64` = the \
             little-endian f32 bytes. `truncate`: `END` (default) cuts the end of an over-long text, `START` its start \
             (at a word start), `NONE` refuses it (422 naming `texts[i]`). `meta.billed_units.input_tokens` counts the \
             tokens embedded (special tokens and prompt included); nothing is billed.",
            Some(json_body(sref("CohereEmbedRequest"))), responses(json_ok("Embeddings by type.", sref("CohereEmbedResponse")), Errs::Encoder), true)),
        "/v2/rerank": post(op("cohere", "cohereRerank", "Rerank (Cohere v2 shape)",
            "Cohere `POST /v2/rerank` (`ClientV2.rerank`), scored like `/v1/rerank`. A `model` this server does not have \
             means the default models. `relevance_score` is in [0, 1]: the sigmoid of a cross-encoder's logit, or \
             (1 + cosine) / 2 for the embedding model. `return_documents: true` adds each `document` as `{\"text\"}`.",
            Some(json_body(sref("CohereRerankRequest"))), responses(json_ok("Documents by descending relevance.", sref("CohereRerankResponse")), Errs::Encoder), true)),
    })
}

fn meta() -> Value {
    json!({
        "type": "object", "required": ["api_version", "billed_units"],
        "properties": {
            "api_version": {"type": "object", "required": ["version"], "properties": {"version": {"type": "string", "enum": ["1", "2"]}}},
            "billed_units": {"type": "object", "description": "What the request used (nothing is billed): `input_tokens` for embeddings, \
                `search_units` (one per 100 documents) for rerank.",
                "properties": {"input_tokens": {"type": "integer", "minimum": 0}, "search_units": {"type": "integer", "minimum": 1}}},
            "tokens": {"type": "object", "properties": {"input_tokens": {"type": "integer", "minimum": 0}}},
        }
    })
}

fn int_vectors(min: i64, max: i64) -> Value {
    json!({"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": min, "maximum": max}}})
}

pub(super) fn schemas() -> Value {
    json!({
        "CohereEmbedRequest": {
            "type": "object", "required": ["texts"],
            "description": "Unknown fields are ignored; `priority` is accepted and ignored. `images` and `inputs` are refused (422): nlpd embeds text.",
            "properties": {
                "model": {"type": "string", "description": "A configured model name; any other (e.g. `embed-v4.0`) means the default `embed` model."},
                "texts": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
                "input_type": {"type": "string",
                    "description": "Picks the model's prompt (config_sentence_transformers.json): `search_query` → its prompt \
                        `search_query`, `query` or `retrieval.query`; `search_document` → `search_document`, `document`, `passage`, \
                        `corpus` or `retrieval.passage`; `classification` → `classification`; `clustering` → `clustering` or \
                        `separation`; any of the model's own prompt names → that prompt. No such prompt: the model's default \
                        prompt, if any. Other values (e.g. `image`): 400. Absent: the default prompt."},
                "embedding_types": {"type": "array", "minItems": 1, "default": ["float"],
                    "items": {"type": "string", "enum": ["float", "int8", "uint8", "binary", "ubinary", "base64"]}},
                "truncate": {"type": "string", "enum": ["NONE", "START", "END"], "default": "END"},
                "output_dimension": {"type": "integer", "minimum": 1, "description": "Keep the first N values (Matryoshka), re-normalized."},
                "max_tokens": {"type": "integer", "minimum": 1, "description": "Accepted when at least the model's limit; a lower value is refused (422)."},
                "cache": {"type": "boolean", "default": true, "description": "nlpd: `false` neither reads nor fills the result cache."},
            }
        },
        "CohereEmbedResponse": {
            "type": "object", "required": ["id", "embeddings", "texts", "response_type", "meta"],
            "properties": {
                "id": {"type": "string", "description": "The request's `X-Request-Id`."},
                "embeddings": {"type": "object", "description": "One key per requested type, each with one entry per text.",
                    "properties": {
                        "float": {"type": "array", "items": {"type": "array", "items": float()}},
                        "int8": int_vectors(-127, 127),
                        "uint8": int_vectors(1, 255),
                        "binary": int_vectors(-128, 127),
                        "ubinary": int_vectors(0, 255),
                        "base64": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
                    }},
                "texts": {"type": "array", "items": {"type": "string"}, "description": "The texts as sent (without the prompt)."},
                "response_type": {"const": "embeddings_by_type"},
                "meta": meta(),
            }
        },
        "CohereDocument": {
            "description": "A text, or (Cohere v1) an object whose string `text` is ranked.",
            "oneOf": [{"type": "string"}, {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}]
        },
        "CohereRerankRequest": {
            "type": "object", "required": ["query", "documents"],
            "description": "Unknown fields are ignored; `relevant_spans`, `priority` and `max_chunks_per_doc` are accepted and ignored.",
            "properties": {
                "model": {"type": "string", "description": "A configured model name; any other means the default models."},
                "query": {"type": "string", "minLength": 1},
                "documents": {"type": "array", "items": sref("CohereDocument"), "minItems": 1},
                "top_n": {"type": "integer", "minimum": 1, "description": "Keep the n best; default all."},
                "return_documents": {"type": "boolean", "default": false, "description": "Add each `document` as `{\"text\"}`."},
                "rank_fields": {"type": "array", "items": {"const": "text"}, "description": "Only `[\"text\"]`."},
                "max_tokens_per_doc": {"type": "integer", "minimum": 1, "description": "Accepted when at least the model's limit; a lower value is refused (422)."},
                "timeout_ms": timeout_field(),
                "cache": {"type": "boolean", "default": true, "description": "nlpd: `false` neither reads nor fills the result cache."},
            }
        },
        "CohereRerankResponse": {
            "type": "object", "required": ["id", "results", "meta"],
            "properties": {
                "id": {"type": "string", "description": "The request's `X-Request-Id`."},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["index", "relevance_score"],
                    "properties": {
                        "index": {"type": "integer", "minimum": 0},
                        "relevance_score": {"type": "number", "minimum": 0, "maximum": 1},
                        "document": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
                    }
                }},
                "model": {"type": "string", "description": "The model that served the request."},
                "meta": meta(),
            }
        },
    })
}
