//! The OpenAPI part of the verification pipeline: `/v1/evidence` and `/v1/verify`.

use super::{
    cache_field, float, get, json_body, json_ok, op, responses, sref, timeout_field, Errs,
    NON_BLANK,
};
use serde_json::{json, Value};

pub(super) fn paths() -> Value {
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "The document's id (as given, or as `POST /v1/evidence` made it)."}]);
    let mut get_doc = op("verify", "getEvidence", "An evidence document and its passages",
        "The stored document with its passages in order (text, character offsets, word pieces, embedding model). \
         404 naming `id` when there is none.",
        None, responses(json_ok("The document.", sref("EvidenceDocument")), Errs::Store), true);
    get_doc["parameters"] = id.clone();
    let mut delete = op("verify", "deleteEvidence", "Delete an evidence document",
        "Deletes the document and its passages from the store and the index. 404 naming `id` when there is none.",
        None, responses(json_ok("Deleted.", json!({"type": "object", "required": ["id", "deleted"],
            "properties": {"id": {"type": "string"}, "deleted": {"type": "boolean"}}})), Errs::Store), true);
    delete["parameters"] = id;
    let mut evidence = json!({
        "post": op("verify", "putEvidence", "Add evidence documents",
            "Splits each document into passages (sentence-aware, at most `passage_tokens` word pieces), embeds them in \
             batches with the default `embed` model, stores document and passages in the store (one transaction per \
             document; a document with the same id is replaced) and adds them to the vector index. Needs the store \
             (503 without one).",
            Some(json_body(sref("EvidenceRequest"))), responses(json_ok("What was stored.", sref("EvidenceResponse")), Errs::Encoder), true),
    });
    evidence["get"] = get(op("verify", "corpusStats", "The evidence corpus",
        "The index's state (`loading` while it is rebuilt from the store at start, `ready`, `failed` with the error), \
         documents, passages, dimensions and embedding model.",
        None, responses(json_ok("The corpus.", sref("CorpusStats")), Errs::Store), true))["get"].clone();
    let mut doc = get(get_doc);
    doc["delete"] = delete;
    json!({
        "/v1/evidence": evidence,
        "/v1/evidence/{id}": doc,
        "/v1/verify": {"post": op("verify", "verify", "Verify claims against the evidence",
            "Embeds the claims (one batch), retrieves each claim's `top_k` most similar passages with cosine ≥ `min_score`, \
             judges every (passage, claim) pair by NLI (a cross-encoder, or the generative judge: as `/v1/nli` chooses, or \
             `nli_model`) and aggregates: with S the best entailment and R the best contradiction probability, SUPPORTED \
             scores S(1−R), REFUTED R(1−S), NOT_ENOUGH_INFO (1−S)(1−R); the largest, renormalized, is the verdict and its \
             `confidence` (ties: NOT_ENOUGH_INFO). No passage retrieved: NOT_ENOUGH_INFO with confidence 1.",
            Some(json_body(sref("VerifyRequest"))), responses(json_ok("One result per claim.", sref("VerifyResponse")), Errs::Encoder), true)},
    })
}

pub(super) fn schemas() -> Value {
    json!({
        "EvidenceRequest": {
            "type": "object", "required": ["documents"], "additionalProperties": false,
            "properties": {
                "documents": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["text"], "additionalProperties": false,
                    "properties": {
                        "id": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^/]*[^/\\s][^/]*$", "description": "Not blank, no `/`. Default: `doc-` and 24 hex digits of the text's blake3 hash, so the same text gets the same id."},
                        "text": {"type": "string", "pattern": NON_BLANK},
                        "source": {"type": "string", "description": "Where the document comes from (kept, not used)."}
                    }
                }},
                "passage_tokens": {"type": "integer", "minimum": 8, "default": 64, "description": "Most word pieces per passage (at most the embedding model's limit)."},
                "timeout_ms": timeout_field(),
            }
        },
        "EvidenceResponse": {
            "type": "object", "required": ["documents", "passages", "corpus"],
            "properties": {
                "documents": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "passages": {"type": "integer"}, "tokens": {"type": "integer"},
                    "replaced": {"type": "boolean", "description": "A document with this id existed and was replaced."}
                }}},
                "passages": {"type": "integer", "description": "Passages stored by this request."},
                "corpus": sref("CorpusStats"),
            }
        },
        "CorpusStats": {
            "type": "object", "required": ["state", "documents", "passages", "dimensions"],
            "properties": {
                "state": {"type": "string", "enum": ["loading", "ready", "failed"]},
                "error": {"type": "string", "description": "With `failed`: why."},
                "documents": {"type": "integer"}, "passages": {"type": "integer"}, "dimensions": {"type": "integer"},
                "model": {"type": ["string", "null"], "description": "The embedding model of the index."}
            }
        },
        "EvidenceDocument": {
            "type": "object", "required": ["id", "text", "passages"],
            "properties": {
                "id": {"type": "string"}, "source": {"type": ["string", "null"]}, "text": {"type": "string"},
                "created_at_ms": {"type": "integer"},
                "passages": {"type": "array", "items": {"type": "object", "properties": {
                    "position": {"type": "integer"}, "text": {"type": "string"},
                    "start_char": {"type": "integer"}, "end_char": {"type": "integer", "description": "Character (not byte) offsets into `text`."},
                    "tokens": {"type": "integer"}, "model": {"type": "string"}
                }}}
            }
        },
        "VerifyRequest": {
            "type": "object", "required": ["claims"], "additionalProperties": false,
            "properties": {
                "claims": {"oneOf": [{"type": "string", "pattern": NON_BLANK}, {"type": "array", "items": {"type": "string", "pattern": NON_BLANK}, "minItems": 1}]},
                "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                "min_score": {"type": "number", "minimum": -1, "maximum": 1, "default": 0.25, "description": "Least cosine similarity of a passage to the claim."},
                "nli_model": {"type": "string", "description": "An NLI cross-encoder or a generative model (the judge); default as `/v1/nli` chooses."},
                "timeout_ms": timeout_field(),
                "cache": cache_field(),
            }
        },
        "VerifyEvidence": {
            "type": "object",
            "properties": {
                "document_id": {"type": "string"}, "position": {"type": "integer"}, "text": {"type": "string"},
                "start_char": {"type": "integer"}, "end_char": {"type": "integer"},
                "similarity": float(),
                "nli": sref("NliResult"),
                "decisive": {"type": "boolean", "description": "The passage whose entailment (SUPPORTED) or contradiction (REFUTED) decided."}
            }
        },
        "VerifyResult": {
            "type": "object", "required": ["claim", "verdict", "confidence", "evidence"],
            "properties": {
                "claim": {"type": "string"},
                "verdict": {"type": "string", "enum": ["SUPPORTED", "REFUTED", "NOT_ENOUGH_INFO"]},
                "confidence": float(),
                "support": {"type": "number", "description": "S: the best entailment probability."},
                "refute": {"type": "number", "description": "R: the best contradiction probability."},
                "evidence": {"type": "array", "items": sref("VerifyEvidence"), "description": "Most similar first."},
                "timings_ms": {"type": "object", "properties": {"retrieve": float(), "nli": float(), "aggregate": float()}}
            }
        },
        "VerifyResponse": {
            "type": "object", "required": ["results", "models", "timings_ms"],
            "properties": {
                "results": {"type": "array", "items": sref("VerifyResult")},
                "models": {"type": "object", "properties": {"embedding": {"type": "string"}, "nli": {"type": ["string", "null"]}}},
                "timings_ms": {"type": "object", "description": "`embed` is the claims' batch; `retrieve`, `nli` and `aggregate` are sums over the claims, which run concurrently (they can exceed `total`).",
                    "properties": {"embed": float(), "retrieve": float(), "nli": float(), "aggregate": float(), "total": float()}}
            }
        },
    })
}
