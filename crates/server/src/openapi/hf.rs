//! The OpenAPI part of the Hugging Face Inference API routes (`POST /`, `POST /models/{name}`)
//! and of TEI's `/similarity` and `/decode`.

use super::{float, json_body, json_ok, op, post, responses, sref, stream_ok, uint, Errs};
use serde_json::{json, Value};

pub(super) fn paths() -> Value {
    let mut by_model = op("hf", "hfModel", "Any model (Hugging Face Inference API)",
        "What `huggingface_hub.InferenceClient(model=\"http://HOST/models/NAME\")` posts to: the named model, by its task. \
         An `embed` model answers feature-extraction, or sentence-similarity when `inputs` is `{source_sentence, sentences}`; \
         a `classify` model (and an `nli` or `rerank` cross-encoder) text-classification; an `entities` model \
         token-classification; a generative model text-generation in TGI's shapes (`stream: true`: server-sent events). \
         A payload of another task than the model's is a 422 naming the field (`inputs`, `parameters`); an unknown name \
         a 404 naming `model`. Unknown top-level fields are ignored.",
        Some(json_body(json!({"oneOf": [
            sref("HfFeatureExtractionRequest"), sref("HfSentenceSimilarityRequest"),
            sref("HfTextClassificationRequest"), sref("HfTokenClassificationRequest"),
            sref("HfTextGenerationRequest"),
        ]}))),
        responses(stream_ok("The task's answer (see the response schemas), or (text-generation with `stream: true`) TGI events.",
            json!({"oneOf": [
                sref("HfFeatureExtractionResponse"), sref("HfSentenceSimilarityResponse"),
                sref("HfTextClassificationResponse"), sref("HfTokenClassificationResponse"),
                sref("HfTextGenerationResponse"),
            ]}),
            sref("HfTextGenerationStreamEvent"),
            "`data: <HfTextGenerationStreamEvent JSON>` events, one per text piece, then a last one (`token.special: true`, \
             empty `token.text`) with `generated_text` and `details`. No `[DONE]` marker (as TGI). A failure after the stream \
             started arrives as `data: <ErrorBody JSON>`."), Errs::Generate), true);
    by_model["parameters"] = json!([{"$ref": "#/components/parameters/ModelName"}]);
    json!({
        "/": post(op("hf", "hfRoot", "Default embedding model (Hugging Face Inference API / TEI)",
            "What `huggingface_hub.InferenceClient(model=\"http://HOST\")` posts to for `feature_extraction` and \
             `sentence_similarity`: the default `embed` model, like a text-embeddings-inference server serving it. \
             Feature-extraction answers one vector per input (also for a single string); sentence-similarity \
             (`inputs: {source_sentence, sentences}`) one cosine similarity per sentence. Other tasks go to \
             `POST /models/{name}`: a non-empty `parameters` object here is a 422 naming `parameters`. 404 when no \
             embedding model is configured. `GET /` stays the dashboard.",
            Some(json_body(json!({"oneOf": [sref("HfFeatureExtractionRequest"), sref("HfSentenceSimilarityRequest")]}))),
            responses(json_ok("Vectors, or similarity scores.",
                json!({"oneOf": [sref("HfFeatureExtractionResponse"), sref("HfSentenceSimilarityResponse")]})), Errs::Encoder), true)),
        "/models/{name}": post(by_model),
        "/similarity": post(op("tei", "teiSimilarity", "Sentence similarity (TEI shape)",
            "text-embeddings-inference `POST /similarity` on the default `embed` model: the cosine similarity of \
             `source_sentence` with each of `sentences` (normalized embeddings), in `sentences` order.",
            Some(json_body(sref("HfSentenceSimilarityRequest"))),
            responses(json_ok("One score in [-1, 1] per sentence.", sref("HfSentenceSimilarityResponse")), Errs::Encoder), true)),
        "/decode": post(op("tei", "teiDecode", "Decode token ids (TEI shape)",
            "text-embeddings-inference `POST /decode`: token ids back to text with the default `embed` model's tokenizer. \
             `ids` is one list of ids or a list of lists; the answer is always a list of strings. An id outside the \
             vocabulary is a 422 naming it (`ids[j]` or `ids[i][j]`).",
            Some(json_body(sref("TeiDecodeRequest"))),
            responses(json_ok("One text per list of ids.", json!({"type": "array", "items": {"type": "string"}})), Errs::Tokenize), true)),
    })
}

fn nlpd_extensions() -> Value {
    json!({
        "timeout_ms": super::timeout_field(),
        "cache": {"type": "boolean", "default": true, "description": "nlpd extension: `false` neither reads nor fills the result cache."},
    })
}

fn with_extensions(mut schema: Value) -> Value {
    if let (Some(p), Value::Object(ext)) = (schema["properties"].as_object_mut(), nlpd_extensions())
    {
        p.extend(ext);
    }
    schema
}

fn truncate() -> Value {
    json!({"type": "boolean", "default": true,
        "description": "Cut inputs longer than the model's limit (default, unlike TEI); `false`: 422 naming `inputs[i]`."})
}

fn truncation_direction() -> Value {
    json!({"type": "string", "enum": ["right", "left", "Right", "Left"], "default": "right",
        "description": "Which end of an over-long input is cut: `right` keeps the start, `left` the end (cut at a word start)."})
}

fn prompt_name(at: &str) -> Value {
    json!({"type": "string",
        "description": format!("One of the model's prompts (config_sentence_transformers.json), put before each input; without it the model's default prompt. A name the model lacks is a 422 naming `{at}prompt_name`.")})
}

pub(super) fn schemas() -> Value {
    json!({
        "HfFeatureExtractionRequest": with_extensions(json!({
            "type": "object", "required": ["inputs"],
            "description": "feature-extraction as huggingface_hub sends it (TEI's `/embed` options at the top level).",
            "properties": {
                "inputs": sref("Texts"),
                "normalize": {"type": "boolean", "default": true},
                "truncate": truncate(),
                "truncation_direction": truncation_direction(),
                "prompt_name": prompt_name(""),
                "dimensions": {"type": "integer", "minimum": 1, "description": "Keep the first `dimensions` values (then normalize)."},
                "encoding_format": {"type": "string", "enum": ["float"], "description": "`base64` is a 422: use `POST /v1/embeddings` for it."},
                "parameters": {"type": "object", "maxProperties": 0, "description": "Must be empty or absent: other tasks' parameters are a 422."},
            }
        })),
        "HfFeatureExtractionResponse": {"type": "array", "items": {"type": "array", "items": float()},
            "description": "One vector per input, in input order (a list of one for a single string)."},
        "HfSentenceSimilarityRequest": with_extensions(json!({
            "type": "object", "required": ["inputs"],
            "properties": {
                "inputs": {"type": "object", "required": ["source_sentence", "sentences"], "properties": {
                    "source_sentence": {"type": "string", "pattern": super::NON_BLANK},
                    "sentences": {"type": "array", "items": {"type": "string", "pattern": super::NON_BLANK}, "minItems": 1},
                }},
                "parameters": {"type": "object", "properties": {
                    "truncate": truncate(),
                    "truncation_direction": truncation_direction(),
                    "prompt_name": prompt_name("parameters."),
                }},
            }
        })),
        "HfSentenceSimilarityResponse": {"type": "array", "items": float(),
            "description": "The cosine similarity (in [-1, 1]) of `source_sentence` with each sentence, in order."},
        "HfTextClassificationRequest": with_extensions(json!({
            "type": "object", "required": ["inputs"],
            "properties": {
                "inputs": {"oneOf": [
                    {"type": "string"},
                    sref("HfTextPair"),
                    {"type": "array", "items": {"oneOf": [{"type": "string"}, sref("HfTextPair")]}, "minItems": 1},
                ]},
                "parameters": {"type": "object", "properties": {
                    "top_k": {"type": "integer", "minimum": 1, "description": "Only the `top_k` best labels (default: every label)."},
                    "function_to_apply": {"type": "string", "enum": ["softmax", "sigmoid", "none"],
                        "description": "How logits become scores (`none`: the logits). Default: the model's own (softmax; sigmoid for multi-label models)."},
                }},
                "truncate": truncate(),
            }
        })),
        "HfTextPair": {"type": "object", "required": ["text"], "properties": {
            "text": {"type": "string"}, "text_pair": {"type": "string"}}},
        "HfTextClassificationResponse": {"type": "array", "items": {"type": "array", "items": sref("LabelScore")},
            "description": "Per input (also for a single one), its labels sorted by score, highest first."},
        "HfTokenClassificationRequest": with_extensions(json!({
            "type": "object", "required": ["inputs"],
            "properties": {
                "inputs": sref("Texts"),
                "parameters": {"type": "object", "properties": {
                    "aggregation_strategy": {"type": "string", "enum": ["simple", "first", "average", "max", "none"], "default": "simple",
                        "description": "`none`: every token with its raw label (`entity`). The others: entity spans (`entity_group`), \
                            nlpd's one word-level BIO grouping for all four."},
                    "ignore_labels": {"type": "array", "items": {"type": "string"}, "default": ["O"],
                        "description": "Labels left out (`entity_group`, or the raw `entity` with `none`)."},
                    "stride": {"type": "integer", "minimum": 0, "maximum": 0, "description": "Not supported (above 0 a 422): long texts are cut at the model's limit."},
                }},
                "truncate": truncate(),
            }
        })),
        "HfEntityGroup": {"type": "object", "required": ["entity_group", "score", "word", "start", "end"], "properties": {
            "entity_group": {"type": "string"}, "score": float(), "word": {"type": "string", "description": "The text of the span."},
            "start": {"allOf": [uint()], "description": "Character (not byte) offset."}, "end": uint()}},
        "HfTokenEntity": {"type": "object", "required": ["entity", "score", "word", "start", "end"], "properties": {
            "entity": {"type": "string"}, "score": float(), "word": {"type": "string"}, "start": uint(), "end": uint()}},
        "HfTokenClassificationResponse": {"oneOf": [
            {"type": "array", "items": {"oneOf": [sref("HfEntityGroup"), sref("HfTokenEntity")]}, "description": "For a single text."},
            {"type": "array", "items": {"type": "array", "items": {"oneOf": [sref("HfEntityGroup"), sref("HfTokenEntity")]}}, "description": "For a list of texts."},
        ]},
        "HfTextGenerationRequest": with_extensions(json!({
            "type": "object", "required": ["inputs"],
            "properties": {
                "inputs": {"type": "string", "minLength": 1, "description": "The prompt, continued as it is (no chat template)."},
                "stream": {"type": "boolean", "default": false},
                "parameters": {"type": "object", "description": "TGI's parameters. Greedy unless `do_sample`, a `temperature` other \
                    than 1 or a `top_p` below 1 (as TGI). Set to a value that changes the output, `adapter_id`, `best_of` > 1, \
                    `decoder_input_details`, `grammar`, `top_k`, `top_n_tokens`, `truncate`, `typical_p` < 1 and `watermark` are a 400 \
                    `The following \\`model_kwargs\\` are not used by the model: [...]`, on which huggingface_hub's client drops them \
                    (with a warning) and retries.",
                    "properties": {
                        "max_new_tokens": {"type": "integer", "minimum": 1, "default": 100},
                        "do_sample": {"type": "boolean", "default": false},
                        "temperature": {"type": "number", "exclusiveMinimum": 0},
                        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                        "seed": {"type": "integer", "minimum": 0},
                        "stop": {"type": "array", "items": {"type": "string"}},
                        "repetition_penalty": {"type": "number", "exclusiveMinimum": 0, "description": "Multiplicative; 1 is off."},
                        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
                        "return_full_text": {"type": "boolean", "default": false, "description": "Put the prompt before the generated text."},
                        "details": {"type": "boolean", "default": false,
                            "description": "Add `details`: finish reason, generated tokens, seed (empty `prefill` and `tokens` lists)."},
                    }},
            }
        })),
        "HfTextGenerationResponse": {"type": "array", "items": {"type": "object", "required": ["generated_text"], "properties": {
            "generated_text": {"type": "string"},
            "details": {"type": "object", "properties": {
                "finish_reason": {"type": "string", "enum": ["length", "eos_token"], "description": "An end-of-sequence token and a stop string are both `eos_token`."},
                "generated_tokens": uint(),
                "seed": {"type": ["integer", "null"], "description": "The seed sampled with; null when greedy."},
                "prefill": {"type": "array", "maxItems": 0},
                "tokens": {"type": "array", "maxItems": 0},
            }},
        }}, "description": "A list of one result (as TGI's and the Inference API's `/`)."},
        "HfTextGenerationStreamEvent": {"type": "object", "required": ["index", "token"], "properties": {
            "index": uint(),
            "token": {"type": "object", "properties": {
                "id": {"allOf": [uint()], "description": "0 for the text pieces (the generator streams text, not token ids); the last token's id on the last event."},
                "text": {"type": "string"}, "logprob": {"type": "null"}, "special": {"type": "boolean"}}},
            "generated_text": {"type": ["string", "null"], "description": "The whole text, on the last event only."},
            "details": {"type": ["object", "null"], "description": "On the last event: `finish_reason`, `generated_tokens`, `seed`, `input_length`."},
        }},
        "TeiDecodeRequest": {"type": "object", "required": ["ids"], "properties": {
            "ids": {"oneOf": [
                {"type": "array", "items": uint(), "minItems": 1},
                {"type": "array", "items": {"type": "array", "items": uint()}, "minItems": 1},
            ]},
            "skip_special_tokens": {"type": "boolean", "default": true},
        }},
    })
}
