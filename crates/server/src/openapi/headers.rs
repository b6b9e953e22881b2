//! The headers of every operation, added to the finished document: W3C trace context
//! (`traceparent` / `tracestate` in and out, see `crate::trace_context`) on every operation and
//! response, and the timing headers (see `crate::timing`) on the 200 of the operations that
//! serve a model.

use serde_json::{json, Map, Value};

/// The operations whose answers carry the timing headers: the ones that run (or tokenize with)
/// a model. Evidence reads, model management, health, metrics and statistics do not.
pub(super) const TIMED: &[&str] = &[
    "embed",
    "openaiEmbeddings",
    "classify",
    "entities",
    "nli",
    "rerank",
    "analyze",
    "tokenize",
    "chatCompletions",
    "completions",
    "explain",
    "teiEmbed",
    "teiRerank",
    "teiPredict",
    "teiTokenize",
    "teiSimilarity",
    "teiDecode",
    "hfRoot",
    "hfModel",
    "cohereEmbed",
    "cohereRerank",
    "putEvidence",
    "verify",
];

const TIMING: [&str; 5] = [
    "X-Queue-Time",
    "X-Tokenize-Time",
    "X-Tokenization-Time",
    "X-Inference-Time",
    "X-Total-Time",
];

fn components() -> Value {
    let ms = |d: &str| json!({"description": d, "schema": {"type": "integer", "minimum": 0}});
    json!({
        "X-Queue-Time": ms("Milliseconds the request waited in model queues: per model run, from queueing its inputs \
            until the first forward pass carrying one of them began; summed over the request's runs (analyze and \
            verify make several, some at once). 0 when every input came from the result cache."),
        "X-Tokenize-Time": ms("Milliseconds spent tokenizing the request's inputs (those not found in the cache). \
            For generation: the prompt, in the model's worker."),
        "X-Tokenization-Time": ms("The same value as `X-Tokenize-Time`, under text-embeddings-inference's name."),
        "X-Inference-Time": ms("Milliseconds on the model: per run, from the first forward pass carrying one of its \
            inputs until the last one ended (a list split over several batches includes any pass in between), summed \
            over runs; for generation the whole generation after the prompt's tokenization. 0 for a cache hit. Absent \
            on streamed answers (their headers leave before the generation)."),
        "X-Total-Time": ms("Milliseconds from the request's arrival to its answer's headers (for a stream: until \
            the model took the request and the stream began)."),
        "Traceparent": {
            "description": "W3C trace context of this server's span: `00-<trace id>-<span id>-<flags>`. The trace id \
                is the caller's when its `traceparent` was valid, else a new one; the span id is new. Every log line \
                of the request carries the same `trace_id`.",
            "schema": {"type": "string", "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"}
        },
        "Tracestate": {
            "description": "The caller's `tracestate`, echoed when its `traceparent` was valid.",
            "schema": {"type": "string"}
        },
    })
}

fn parameters() -> Value {
    json!({
        "Traceparent": {
            "name": "traceparent",
            "in": "header",
            "required": false,
            "description": "W3C trace context (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase, ids \
                not all zeros). An invalid value is ignored and a new trace starts (never an error).",
            "schema": {"type": "string"}
        },
        "Tracestate": {
            "name": "tracestate",
            "in": "header",
            "required": false,
            "description": "W3C vendor trace state: echoed in the answer when `traceparent` is valid.",
            "schema": {"type": "string"}
        },
    })
}

fn header_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/headers/{name}")})
}

fn add_headers(response: &mut Value, names: &[&str]) {
    if response.get("$ref").is_some() {
        return;
    }
    let Some(r) = response.as_object_mut() else {
        return;
    };
    let headers = r.entry("headers").or_insert_with(|| json!({}));
    if let Some(h) = headers.as_object_mut() {
        for n in names {
            h.insert((*n).to_string(), header_ref(n));
        }
    }
}

/// Adds the trace and timing headers to `spec` (the whole document).
pub(super) fn apply(spec: &mut Value) {
    let trace = ["Traceparent", "Tracestate"];
    if let Some(paths) = spec.get_mut("paths").and_then(Value::as_object_mut) {
        for op in paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(Map::values_mut)
        {
            let timed = op["operationId"]
                .as_str()
                .is_some_and(|id| TIMED.contains(&id));
            let params = op
                .as_object_mut()
                .map(|o| o.entry("parameters").or_insert_with(|| json!([])));
            if let Some(Value::Array(p)) = params {
                for n in trace {
                    p.push(json!({"$ref": format!("#/components/parameters/{n}")}));
                }
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                for (code, r) in responses.iter_mut() {
                    add_headers(r, &trace);
                    if timed && code == "200" {
                        add_headers(r, &TIMING);
                    }
                }
            }
        }
    }
    let c = &mut spec["components"];
    if let Some(rs) = c["responses"].as_object_mut() {
        rs.values_mut().for_each(|r| add_headers(r, &trace));
    }
    for (section, more) in [("headers", components()), ("parameters", parameters())] {
        if let (Some(have), Value::Object(more)) = (c[section].as_object_mut(), more) {
            have.extend(more);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_operations_document_timing_and_every_operation_trace_context() {
        let s = super::super::spec();
        let mut timed = 0;
        for (path, item) in s["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap();
                let ok = &op["responses"]["200"]["headers"];
                assert!(ok["Traceparent"].is_object(), "{method} {path}");
                let params = op["parameters"].as_array().unwrap();
                assert!(
                    params
                        .iter()
                        .any(|p| p["$ref"] == "#/components/parameters/Traceparent"),
                    "{method} {path}"
                );
                if TIMED.contains(&id) {
                    timed += 1;
                    for h in TIMING {
                        assert!(ok[h].is_object(), "{method} {path}: {h}");
                    }
                } else {
                    assert!(ok["X-Total-Time"].is_null(), "{method} {path}");
                }
            }
        }
        assert_eq!(timed, TIMED.len(), "every timed operation exists");
        assert!(
            s["components"]["responses"]["TooManyRequests"]["headers"]["Traceparent"].is_object()
        );
        assert!(s["components"]["headers"]["X-Inference-Time"].is_object());
        assert!(s["components"]["parameters"]["Tracestate"].is_object());
    }
}
