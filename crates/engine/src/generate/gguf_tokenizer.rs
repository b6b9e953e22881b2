//! Rebuilds a Hugging Face tokenizer from the BPE vocabulary, merges and special tokens stored in a
//! GGUF file's metadata (`tokenizer.ggml.*`), for models shipped without `tokenizer.json`.

use crate::error::{EngineError, Result};
use candle_core::quantized::gguf_file::{Content, Value as GgufValue};
use serde_json::{json, Value};
use std::path::Path;
use tokenizers::Tokenizer;

const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

pub(crate) fn meta<'a>(ct: &'a Content, key: &str) -> Option<&'a GgufValue> {
    ct.metadata.get(key)
}

pub(crate) fn meta_str(ct: &Content, key: &str) -> Option<String> {
    meta(ct, key).and_then(|v| v.to_string().ok()).cloned()
}

pub(crate) fn meta_u32(ct: &Content, key: &str) -> Option<u32> {
    meta(ct, key).and_then(|v| {
        v.to_u32()
            .ok()
            .or_else(|| v.to_i32().ok().map(|x| x as u32))
    })
}

fn as_i64(v: &GgufValue) -> Option<i64> {
    v.to_i32()
        .map(i64::from)
        .or_else(|_| v.to_u32().map(i64::from))
        .or_else(|_| v.to_i64())
        .ok()
}

fn pre_tokenizer(pre: &str) -> Option<(Value, Value)> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    Some(match pre {
        "qwen2" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_PATTERN), byte_level(false)]}),
        ),
        "llama-bpe" | "llama3" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_PATTERN), byte_level(false)]}),
        ),
        "smollm" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        "gpt2" | "default" => (Value::Null, byte_level(true)),
        _ => return None,
    })
}

/// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.model == "gpt2"`, i.e. byte-level BPE).
pub fn tokenizer_from_gguf(ct: &Content, path: &Path) -> Result<Tokenizer> {
    let bad = |m: String| EngineError::invalid_model(path, m);
    let model = meta_str(ct, "tokenizer.ggml.model").unwrap_or_default();
    if model != "gpt2" {
        return Err(bad(format!(
            "tokenizer.ggml.model `{model}` is not supported without a tokenizer.json (only byte-level BPE, `gpt2`)"
        )));
    }
    let pre = meta_str(ct, "tokenizer.ggml.pre").unwrap_or_else(|| "default".into());
    let (normalizer, pre_tok) = pre_tokenizer(&pre).ok_or_else(|| {
        bad(format!(
            "unsupported pre-tokenizer `{pre}` (supported: qwen2, smollm, llama-bpe, gpt2)"
        ))
    })?;
    let tokens: Vec<String> = meta(ct, "tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .ok_or_else(|| bad("no tokenizer.ggml.tokens".into()))?
        .iter()
        .map(|t| t.to_string().cloned())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(format!("tokenizer.ggml.tokens: {e}")))?;
    let merges: Vec<Value> = meta(ct, "tokenizer.ggml.merges")
        .and_then(|v| v.to_vec().ok())
        .ok_or_else(|| bad("no tokenizer.ggml.merges".into()))?
        .iter()
        .map(|m| {
            let s = m.to_string().map_err(|e| bad(format!("merge: {e}")))?;
            let (a, b) = s
                .split_once(' ')
                .ok_or_else(|| bad(format!("malformed merge `{s}`")))?;
            Ok(json!([a, b]))
        })
        .collect::<Result<_>>()?;
    let types: Vec<i64> = meta(ct, "tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().map(|t| as_i64(t).unwrap_or(1)).collect())
        .unwrap_or_default();

    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.clone(), json!(i));
    }
    let added: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            matches!(
                types.get(*i),
                Some(&TOKEN_TYPE_CONTROL) | Some(&TOKEN_TYPE_USER_DEFINED)
            )
        })
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types[i] == TOKEN_TYPE_CONTROL})
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tok,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges}
    });
    let text = serde_json::to_string(&spec).map_err(|e| bad(e.to_string()))?;
    text.parse::<Tokenizer>()
        .map_err(|e| bad(format!("cannot build tokenizer from GGUF metadata: {e}")))
}
