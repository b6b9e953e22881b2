//! SmolLM2 (and Qwen2.5-Coder when the full pack is installed) from GGUF: the tokenizer rebuilt from
//! GGUF metadata equals transformers' on every case; the chat template renders the reference
//! prompt; greedy decoding follows the reference while the reference is confident, and equals the
//! sequence nlpd recorded (tests/golden/<model>/nlpd_greedy.json).

mod common;

use common::*;
use nlpd_engine::generate::{ChatMessage, GenModel, GenerateOptions};
use serde_json::Value;

/// Reference positions whose top-1 logit beats the runner-up by at least this much must match
/// (q4 weights with q8 activations in candle vs. fp32 dequantized weights in transformers).
const CONFIDENT_MARGIN: f64 = 1.0;

fn check_model(dir_name: &str, golden: &str) {
    let Some(dir) = pack_model(dir_name) else {
        return;
    };
    let g = read_json(&golden_dir().join(golden).join("golden.json"));
    let mut model = GenModel::load(&dir).unwrap();
    for case in g["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            model.encode(text).unwrap(),
            u32s(&case["ids"]),
            "{dir_name}: tokens of {text:?}"
        );
        assert_eq!(
            model
                .tokenizer()
                .decode(&u32s(&case["ids"]), false)
                .unwrap(),
            text,
            "{dir_name}: round trip"
        );
    }
    let recorded_path = golden_dir().join(golden).join("nlpd_greedy.json");
    let recorded: Option<Value> = recorded_path.is_file().then(|| read_json(&recorded_path));
    let mut ours = Vec::new();
    for (pi, p) in g["prompts"].as_array().unwrap().iter().enumerate() {
        let messages: Vec<ChatMessage> = serde_json::from_value(p["messages"].clone()).unwrap();
        let prompt = model.render_chat(&messages).unwrap();
        assert_eq!(
            prompt,
            p["prompt_text"].as_str().unwrap(),
            "{dir_name}: chat template of prompt {pi}"
        );
        let ids = model.encode(&prompt).unwrap();
        assert_eq!(ids, u32s(&p["prompt_ids"]), "{dir_name}: prompt ids {pi}");
        let want = u32s(&p["greedy_ids"]);
        let opts = GenerateOptions {
            max_tokens: want.len(),
            ..GenerateOptions::default()
        };
        let gen = model.generate(&ids, &opts, &mut |_| true).unwrap();
        let margins: Vec<f64> = p["greedy_logit_margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        // Follow the reference token by token; a divergence is allowed only where the reference
        // itself hesitated (top-1 beat top-2 by less than CONFIDENT_MARGIN), and never before
        // a few tokens have matched.
        let same = gen
            .token_ids
            .iter()
            .zip(&want)
            .take_while(|(a, b)| a == b)
            .count();
        eprintln!(
            "{dir_name}: prompt {pi}: {same}/{} greedy tokens equal the reference",
            want.len()
        );
        if same < want.len().min(gen.token_ids.len()) {
            assert!(
                margins[same] < CONFIDENT_MARGIN && same >= 3,
                "{dir_name}: prompt {pi}: diverged at token {same} where the reference margin is {}\nours: {:?}\nref:  {:?}",
                margins[same], gen.text, p["greedy_text"]
            );
        }
        if let Some(r) = &recorded {
            assert_eq!(
                gen.token_ids,
                u32s(&r["prompts"][pi]["greedy_ids"]),
                "{dir_name}: prompt {pi}: nlpd's recorded greedy sequence"
            );
        }
        ours.push(serde_json::json!({"greedy_ids": gen.token_ids, "greedy_text": gen.text}));
    }
    if recorded.is_none() {
        eprintln!("recording {}", recorded_path.display());
        std::fs::write(
            &recorded_path,
            serde_json::to_string_pretty(&serde_json::json!({"prompts": ours})).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn smollm2_matches_reference() {
    check_model("smollm2-135m-instruct", "smollm2");
}

#[test]
fn qwen2_coder_matches_reference() {
    // Full pack only: skipped (loudly) unless `scripts/fetch-models.sh full` ran.
    let dir = models_dir().join("qwen2.5-coder-0.5b-instruct");
    if !dir.join(".nlpd-pack.json").is_file() {
        eprintln!("\n!!! SKIPPING: Qwen2.5-Coder is in the full pack only (scripts/fetch-models.sh full) !!!\n");
        return;
    }
    check_model("qwen2.5-coder-0.5b-instruct", "qwen2");
}

#[test]
fn stop_strings_and_sampling() {
    let Some(dir) = pack_model("smollm2-135m-instruct") else {
        return;
    };
    let mut model = GenModel::load(&dir).unwrap();
    let prompt = model
        .render_chat(&[ChatMessage::new(
            "user",
            "Count from 1 to 20, separated by commas.",
        )])
        .unwrap();
    let ids = model.encode(&prompt).unwrap();
    let mut streamed = String::new();
    let opts = GenerateOptions {
        max_tokens: 60,
        stop: vec!["5".into()],
        ..GenerateOptions::default()
    };
    let gen = model
        .generate(&ids, &opts, &mut |s| {
            streamed.push_str(s);
            true
        })
        .unwrap();
    assert_eq!(streamed, gen.text, "streamed pieces add up to the result");
    assert!(
        !gen.text.contains('5'),
        "stop string must cut the text: {:?}",
        gen.text
    );
    assert_eq!(gen.finish_reason.as_str(), "stop");
    // A fixed seed reproduces a sampled generation; max_tokens bounds it.
    let opts = GenerateOptions {
        max_tokens: 12,
        temperature: 0.8,
        top_p: Some(0.9),
        seed: 7,
        ..GenerateOptions::default()
    };
    let a = model.generate(&ids, &opts, &mut |_| true).unwrap();
    let b = model.generate(&ids, &opts, &mut |_| true).unwrap();
    assert_eq!(a.token_ids, b.token_ids);
    assert!(a.token_ids.len() <= 12);
    // Degenerate settings sample the most probable token instead of failing: a nucleus that
    // rounds to 0 in f32, and a temperature so small that logits / temperature overflows.
    let greedy = GenerateOptions {
        max_tokens: 6,
        ..GenerateOptions::default()
    };
    let want = model.generate(&ids, &greedy, &mut |_| true).unwrap();
    for (temperature, top_p) in [(1.0, Some(5e-324)), (1e-300, None), (5e-5, Some(0.5))] {
        let opts = GenerateOptions {
            temperature,
            top_p,
            ..greedy.clone()
        };
        let got = model.generate(&ids, &opts, &mut |_| true).unwrap();
        assert_eq!(
            got.token_ids, want.token_ids,
            "temperature {temperature}, top_p {top_p:?}"
        );
    }
    // Bad settings are input errors.
    let bad = GenerateOptions {
        top_p: Some(1.5),
        temperature: 1.0,
        ..GenerateOptions::default()
    };
    assert!(model
        .generate(&ids, &bad, &mut |_| true)
        .unwrap_err()
        .is_input_error());
}

/// The judge continues from the cached state after the prompt part all pairs share: the same
/// next-token logits as one pass over the whole prompt (float rounding aside), so the same scores.
#[test]
fn a_cached_prompt_prefix_gives_the_logits_of_a_full_pass() {
    use nlpd_engine::generate::{JudgePrompt, NliJudge};
    let Some(dir) = pack_model("smollm2-135m-instruct") else {
        return;
    };
    let mut model = GenModel::load(&dir).unwrap();
    let ids = model
        .encode("The quick brown fox jumps over the lazy dog because it wants to")
        .unwrap();
    let state = model
        .prefix_state(&ids[..6])
        .unwrap()
        .expect("llama snapshots");
    assert_eq!(state.len(), 6);
    let full = model.next_token_logits(&ids).unwrap();
    let cached = model.next_token_logits_after(&state, &ids).unwrap();
    let worst = full
        .iter()
        .zip(&cached)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-2, "largest logit difference {worst}");
    // A prompt that does not start with the prefix is computed from scratch.
    let other = model.encode("Something else entirely, and longer").unwrap();
    assert_eq!(
        model.next_token_logits_after(&state, &other).unwrap(),
        model.next_token_logits(&other).unwrap()
    );

    let mut judge = NliJudge::new(&model, JudgePrompt::TrueFalse).unwrap();
    for (p, h) in [
        ("A man is playing a guitar on stage.", "A man plays music."),
        ("The shop closes at 9 pm.", "The shop is open all night."),
    ] {
        let a = judge.scores(&mut model, p, h).unwrap();
        let b = judge.scores_uncached(&mut model, p, h).unwrap();
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-3, "{p} / {h}: {a:?} vs {b:?}");
        }
    }
    assert!(format!("{judge:?}").contains("prefix_tokens: Some("));
}
