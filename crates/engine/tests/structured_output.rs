//! Structured output with the pack's SmolLM2: generations constrained to a JSON schema (nested
//! objects, enums, arrays, a `$ref`) parse and validate, greedy and sampled, streamed pieces
//! included; `max_tokens` and stop strings cut a constrained answer short the documented way; the
//! token trie maps the GGUF vocabulary to the right bytes; the mask's cost per token.

mod common;
#[path = "support/json_schema.rs"]
mod json_schema;

use common::pack_model;
use json_schema::{check, inventory_schema, person_schema};
use nlpd_engine::generate::{
    ChatMessage, FinishReason, GenModel, GenerateOptions, Generation, OutputConstraint,
};
use serde_json::Value;
use std::time::Instant;

fn load() -> Option<GenModel> {
    let dir = pack_model("smollm2-135m-instruct")?;
    Some(GenModel::load(&dir).unwrap())
}

fn chat_ids(model: &GenModel, text: &str) -> Vec<u32> {
    let prompt = model
        .render_chat(&[ChatMessage::new("user", text)])
        .unwrap();
    model.encode(&prompt).unwrap()
}

/// Generates, checking that the streamed pieces add up to the result.
fn run(model: &mut GenModel, ids: &[u32], opts: &GenerateOptions) -> Generation {
    let mut streamed = String::new();
    let g = model
        .generate(ids, opts, &mut |s| {
            streamed.push_str(s);
            true
        })
        .unwrap();
    assert_eq!(streamed, g.text, "streamed pieces add up to the result");
    eprintln!(
        "{} tokens, {:?}: {}",
        g.token_ids.len(),
        g.finish_reason,
        g.text
    );
    g
}

fn constrained(schema: &Value, temperature: f64, seed: u64, max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        temperature,
        seed,
        constraint: Some(OutputConstraint::json_schema(schema).unwrap()),
        ..GenerateOptions::default()
    }
}

#[test]
fn token_trie_maps_the_gguf_vocabulary_to_bytes() {
    let Some(mut model) = load() else {
        return;
    };
    let vocab = model.constraint_vocab().unwrap();
    assert_eq!(vocab.vocab_size(), 49152);
    // Byte-level BPE: "Ġ" is a space, "Ċ" a newline; every id decodes to the bytes it encodes.
    for text in [" hello", "{\"", "\n", " world", "é"] {
        let ids = model.encode(text).unwrap();
        let bytes: Vec<u8> = ids.iter().flat_map(|&i| vocab.token_bytes(i)).collect();
        assert_eq!(bytes, text.as_bytes(), "{text:?} -> {ids:?}");
    }
    // Special tokens are marked (0xff) so that the grammar never emits them as text.
    let im_end = model.tokenizer().token_to_id("<|im_end|>").unwrap();
    assert_eq!(vocab.token_bytes(im_end), b"\xff<|im_end|>");
    // Built once per model: the second call is the same trie.
    assert!(std::sync::Arc::ptr_eq(
        &vocab,
        &model.constraint_vocab().unwrap()
    ));
}

#[test]
fn greedy_and_sampled_outputs_validate_against_the_schema() {
    let Some(mut model) = load() else {
        return;
    };
    let person = person_schema();
    let ids = chat_ids(
        &model,
        "Describe a fictional software engineer as JSON: name, age, role, skills, address.",
    );
    // Unconstrained, this model answers in prose: the constraint is what makes it JSON.
    let free = run(
        &mut model,
        &ids,
        &GenerateOptions {
            max_tokens: 40,
            ..GenerateOptions::default()
        },
    );
    assert!(
        serde_json::from_str::<Value>(&free.text).is_err(),
        "{:?}",
        free.text
    );

    let g = run(&mut model, &ids, &constrained(&person, 0.0, 0, 200));
    assert_eq!(g.finish_reason, FinishReason::Stop, "{:?}", g.text);
    let v = check(&person, &g.text);
    assert!(["admin", "editor", "viewer"].contains(&v["role"].as_str().unwrap()));
    // Greedy is reproducible.
    let again = run(&mut model, &ids, &constrained(&person, 0.0, 0, 200));
    assert_eq!(again.token_ids, g.token_ids);

    // Sampled at temperature 1 with a seed: valid, and the seed reproduces it.
    let inventory = inventory_schema();
    let ids = chat_ids(
        &model,
        "List the fruit in my basket as JSON: fruit name, count and whether it is ripe.",
    );
    for seed in [7, 42] {
        let opts = constrained(&inventory, 1.0, seed, 200);
        let g = run(&mut model, &ids, &opts);
        assert_eq!(g.finish_reason, FinishReason::Stop, "{:?}", g.text);
        let v = check(&inventory, &g.text);
        assert!(!v["items"].as_array().unwrap().is_empty());
        let again = run(&mut model, &ids, &opts);
        assert_eq!(again.text, g.text, "seed {seed} reproduces");
    }
    // top_p goes through the same mask.
    let opts = GenerateOptions {
        top_p: Some(0.9),
        ..constrained(&person, 0.8, 3, 200)
    };
    let ids = chat_ids(&model, "Invent a person.");
    let g = run(&mut model, &ids, &opts);
    check(&person, &g.text);

    // Any JSON object (`json_object`).
    let opts = GenerateOptions {
        max_tokens: 120,
        constraint: Some(OutputConstraint::json_object().unwrap()),
        ..GenerateOptions::default()
    };
    let ids = chat_ids(&model, "Describe a cat.");
    let g = run(&mut model, &ids, &opts);
    if g.finish_reason == FinishReason::Stop {
        let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{e}: {g:?}"));
        assert!(v.is_object(), "{v}");
    } else {
        assert!(g.text.trim_start().starts_with('{'), "{:?}", g.text);
    }
}

#[test]
fn max_tokens_and_stop_strings_cut_a_constrained_answer() {
    let Some(mut model) = load() else {
        return;
    };
    let person = person_schema();
    let ids = chat_ids(&model, "Describe a fictional person as JSON.");
    // Out of tokens before the JSON is complete: "length", and the text is an unfinished prefix.
    let g = run(&mut model, &ids, &constrained(&person, 0.0, 0, 6));
    assert_eq!(g.finish_reason, FinishReason::Length);
    assert_eq!(g.token_ids.len(), 6);
    assert!(g.text.trim_start().starts_with('{'), "{:?}", g.text);
    assert!(
        serde_json::from_str::<Value>(&g.text).is_err(),
        "{:?}",
        g.text
    );
    // The full answer starts with the same tokens (the constraint does not depend on max_tokens).
    let full = run(&mut model, &ids, &constrained(&person, 0.0, 0, 200));
    assert_eq!(full.token_ids[..6], g.token_ids[..]);
    // Stop strings still apply, inside the JSON too: the text ends before the first match.
    let opts = GenerateOptions {
        stop: vec![",".into()],
        ..constrained(&person, 0.0, 0, 200)
    };
    let g = run(&mut model, &ids, &opts);
    assert_eq!(g.finish_reason, FinishReason::Stop);
    let cut = full.text.find(',').unwrap();
    assert_eq!(g.text, full.text[..cut], "{:?} vs {:?}", g.text, full.text);
}

/// The mask's cost: llguidance's mask plus applying it to the logits, per token, along a
/// constrained answer (printed; the figure in docs/API.md comes from this test).
#[test]
fn mask_cost_per_token() {
    let Some(mut model) = load() else {
        return;
    };
    let person = person_schema();
    let ids = chat_ids(&model, "Describe a fictional person as JSON.");
    let opts = constrained(&person, 0.0, 0, 200);
    let g = run(&mut model, &ids, &opts);
    check(&person, &g.text);
    let constraint = opts.constraint.clone().unwrap();

    // Replay the answer's tokens through a fresh decoder, timing mask + commit only.
    let rounds = 5;
    let mut masked = 0usize;
    let start = Instant::now();
    for _ in 0..rounds {
        let mut d = model.constrained_decoder(&constraint).unwrap();
        let mut logits = vec![0.0f32; 49152];
        for &t in &g.token_ids {
            logits.fill(0.0);
            d.mask_logits(&mut logits).unwrap();
            assert!(logits[t as usize].is_finite(), "token {t} was allowed");
            d.commit(t).unwrap();
            masked += 1;
        }
        assert!(d.is_accepting() || d.is_complete());
    }
    let mask_us = start.elapsed().as_secs_f64() * 1e6 / masked as f64;

    // A decode step of the model, for scale.
    let timing = model.time_greedy(&ids, 32).unwrap();
    let step_us = timing.decode.as_secs_f64() * 1e6 / timing.decode_tokens as f64;
    eprintln!(
        "structured output: mask {mask_us:.0} us/token over {} tokens; decode step {step_us:.0} us/token ({:.1}% overhead)",
        g.token_ids.len(),
        100.0 * mask_us / step_us
    );
    // A generous bound: the mask must stay well under a decode step.
    assert!(mask_us < step_us, "mask {mask_us} us vs step {step_us} us");
}
