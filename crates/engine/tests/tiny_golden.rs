//! Every supported architecture × head, on tiny random-weight models made by Hugging Face
//! transformers (tests/golden/make_golden.py): tokens equal, outputs within 1e-4.

mod common;

use common::*;
use nlpd_engine::heads::normalize;
use nlpd_engine::{BackendKind, EmbedOptions, EncoderModel, LoadOptions, TextInput};
use serde_json::Value;
use std::path::PathBuf;

const TOL: f32 = 1e-4;

fn tiny(name: &str) -> (EncoderModel, Value) {
    tiny_on(name, BackendKind::Auto)
}

fn tiny_on(name: &str, backend: BackendKind) -> (EncoderModel, Value) {
    let dir: PathBuf = golden_dir().join("tiny").join(name);
    let golden = read_json(&dir.join("golden.json"));
    let opts = LoadOptions {
        backend,
        ..LoadOptions::default()
    };
    let model = EncoderModel::load_with(&dir, &candle_core::Device::Cpu, &opts)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (model, golden)
}

fn texts(g: &Value) -> Vec<String> {
    strings(&g["texts"])
}

fn pairs(g: &Value) -> Vec<(String, String)> {
    g["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn check_rows(name: &str, what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{name} {what}: row count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let d = max_abs_diff(g, w);
        assert!(
            d <= TOL,
            "{name} {what}[{i}]: max abs diff {d} > {TOL}\n got {g:?}\nwant {w:?}"
        );
    }
}

fn check_tokens(name: &str, model: &EncoderModel, inputs: &[TextInput], want: &Value) {
    let encs = model.encode(inputs, true).unwrap();
    for (i, (e, w)) in encs.iter().zip(want.as_array().unwrap()).enumerate() {
        assert_eq!(e.ids, u32s(w), "{name}: token ids of input {i}");
    }
}

fn base(arch: &str, backend: BackendKind) {
    let name = format!("{arch}-base");
    let (model, g) = tiny_on(&name, backend);
    let t = texts(&g);
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let inputs: Vec<TextInput> = refs.iter().map(|s| TextInput::Single(s)).collect();
    check_tokens(&name, &model, &inputs, &g["token_ids"]);
    // Mean pooling (the default without sentence-transformers files), unnormalized.
    let got = model.embed(&refs, &EmbedOptions::new()).unwrap();
    check_rows(&name, "mean", &got, &f32_rows(&g["mean"]));
    // Normalization on request equals the normalized reference.
    let opts = EmbedOptions {
        normalize: Some(true),
        ..EmbedOptions::new()
    };
    let got = model.embed(&refs, &opts).unwrap();
    let dev = candle_core::Device::Cpu;
    let want: Vec<Vec<f32>> = f32_rows(&g["mean"])
        .into_iter()
        .map(|r| {
            let n = r.len();
            normalize(&candle_core::Tensor::from_vec(r, (1, n), &dev).unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap()
                .remove(0)
        })
        .collect();
    check_rows(&name, "mean normalized", &got, &want);
}

fn seqcls(arch: &str, backend: BackendKind) {
    let name = format!("{arch}-seqcls");
    let (model, g) = tiny_on(&name, backend);
    assert_eq!(
        model.labels(),
        strings(&serde_json::json!(["negative", "neutral", "positive"])).as_slice()
    );
    let t = texts(&g);
    let inputs: Vec<TextInput> = t.iter().map(|s| TextInput::Single(s)).collect();
    check_tokens(&name, &model, &inputs, &g["token_ids"]);
    let out = model.classify(&inputs, true).unwrap();
    check_rows(
        &name,
        "logits",
        &out.iter().map(|c| c.logits.clone()).collect::<Vec<_>>(),
        &f32_rows(&g["logits"]),
    );
    check_rows(
        &name,
        "probs",
        &out.iter().map(|c| c.scores.clone()).collect::<Vec<_>>(),
        &f32_rows(&g["probs"]),
    );

    let p = pairs(&g);
    let inputs: Vec<TextInput> = p.iter().map(|(a, b)| TextInput::Pair(a, b)).collect();
    check_tokens(&name, &model, &inputs, &g["pair_token_ids"]);
    let encs = model.encode(&inputs, true).unwrap();
    for (i, (e, w)) in encs
        .iter()
        .zip(g["pair_type_ids"].as_array().unwrap())
        .enumerate()
    {
        assert_eq!(e.type_ids, u32s(w), "{name}: pair type ids {i}");
    }
    let out = model.classify(&inputs, true).unwrap();
    check_rows(
        &name,
        "pair_probs",
        &out.iter().map(|c| c.scores.clone()).collect::<Vec<_>>(),
        &f32_rows(&g["pair_probs"]),
    );
}

fn crossenc(arch: &str, backend: BackendKind) {
    let name = format!("{arch}-crossenc");
    let (model, g) = tiny_on(&name, backend);
    let p = pairs(&g);
    let inputs: Vec<TextInput> = p.iter().map(|(a, b)| TextInput::Pair(a, b)).collect();
    check_tokens(&name, &model, &inputs, &g["pair_token_ids"]);
    let out = model.classify(&inputs, true).unwrap();
    for c in &out {
        assert_eq!(c.scores, c.logits, "{name}: one label means the raw score");
    }
    check_rows(
        &name,
        "pair_logits",
        &out.iter().map(|c| c.logits.clone()).collect::<Vec<_>>(),
        &f32_rows(&g["pair_logits"]),
    );
}

fn tokcls(arch: &str, backend: BackendKind) {
    let name = format!("{arch}-tokcls");
    let (model, g) = tiny_on(&name, backend);
    let t = texts(&g);
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let preds = model.token_predictions(&refs, true).unwrap();
    let labels = model.labels().to_vec();
    for (i, p) in preds.iter().enumerate() {
        assert_eq!(
            p.encoded.ids,
            u32s(&g["token_ids"][i]),
            "{name}: token ids {i}"
        );
        let offsets: Vec<(usize, usize)> = g["offsets"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o[0].as_u64().unwrap() as usize,
                    o[1].as_u64().unwrap() as usize,
                )
            })
            .collect();
        assert_eq!(p.encoded.offsets, offsets, "{name}: offsets {i}");
        let got: Vec<String> = p.label_ids().iter().map(|&l| labels[l].clone()).collect();
        assert_eq!(got, strings(&g["labels"][i]), "{name}: token labels {i}");
        check_rows(
            &name,
            &format!("probs[{i}]"),
            &p.probs,
            &f32_rows(&g["probs"][i]),
        );
    }
}

macro_rules! arch_tests {
    ($($module:ident => $arch:literal [$($backend:ident => $kind:ident),*]),* $(,)?) => {$(
        mod $module {$(
            mod $backend {
                use nlpd_engine::BackendKind::$kind as B;
                #[test] fn base() { super::super::base($arch, B) }
                #[test] fn seqcls() { super::super::seqcls($arch, B) }
                #[test] fn crossenc() { super::super::crossenc($arch, B) }
                #[test] fn tokcls() { super::super::tokcls($arch, B) }
            }
        )*}
    )*};
}

// Every BERT-style architecture runs on both encoder backends; DeBERTa-v2 has only candle's.
arch_tests! {
    bert => "bert" [candle => Candle, fast => Fast],
    roberta => "roberta" [candle => Candle, fast => Fast],
    xlm_roberta => "xlm-roberta" [candle => Candle, fast => Fast],
    distilbert => "distilbert" [candle => Candle, fast => Fast],
    deberta_v2 => "deberta-v2" [candle => Candle],
}

#[test]
fn fast_backend_refuses_deberta_clearly() {
    let dir = golden_dir().join("tiny/deberta-v2-base");
    let opts = LoadOptions {
        backend: BackendKind::Fast,
        ..LoadOptions::default()
    };
    let err = EncoderModel::load_with(&dir, &candle_core::Device::Cpu, &opts)
        .err()
        .expect("fast refuses DeBERTa");
    assert!(err.to_string().contains("DeBERTa"), "{err}");
    // auto picks candle for it
    let (model, _) = tiny("deberta-v2-base");
    assert_eq!(model.backend_name(), "candle-deberta-v2");
    let (model, _) = tiny("bert-base");
    assert_eq!(model.backend_name(), "fast-bert");
}

#[test]
fn strict_mode_names_the_limit() {
    let (model, g) = tiny("bert-base");
    let long = texts(&g).into_iter().max_by_key(|t| t.len()).unwrap();
    let err = model
        .embed(
            &[long.as_str()],
            &EmbedOptions {
                truncate: false,
                ..EmbedOptions::new()
            },
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("limit of {}", model.tokenizer().max_len())),
        "{msg}"
    );
    assert!(err.is_input_error());
}

#[test]
fn empty_input_is_refused() {
    let (model, _) = tiny("bert-base");
    let err = model
        .embed(&["ok", "  "], &EmbedOptions::new())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "empty input: inputs[1] must be a non-empty string"
    );
}

#[test]
fn wrong_head_is_a_clear_error() {
    let (model, _) = tiny("bert-base");
    let err = model.classify(&[TextInput::Single("x")], true).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not support sequence classification"),
        "{err}"
    );
}

#[test]
fn batch_results_equal_single_results() {
    let (model, g) = tiny("roberta-base");
    let t = texts(&g);
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let together = model.embed(&refs, &EmbedOptions::new()).unwrap();
    for (i, r) in refs.iter().enumerate() {
        let alone = model.embed(&[r], &EmbedOptions::new()).unwrap();
        let d = max_abs_diff(&alone[0], &together[i]);
        assert!(d < 1e-5, "input {i}: batched differs from alone by {d}");
    }
}

#[test]
fn limit_tokens_caps_inputs_below_the_model_limit() {
    let (mut model, g) = tiny("bert-base");
    let long = texts(&g).into_iter().max_by_key(|t| t.len()).unwrap();
    model.limit_tokens(10).unwrap();
    assert_eq!(model.tokenizer().max_len(), 10);
    let enc = model.encode(&[TextInput::Single(&long)], true).unwrap();
    assert_eq!(enc[0].len(), 10);
    assert!(enc[0].special[9], "the last token is still [SEP]");
    let err = model
        .encode(&[TextInput::Single(&long)], false)
        .unwrap_err();
    assert!(err.to_string().contains("limit of 10"), "{err}");
    // A cap above the model's own limit changes nothing.
    model.limit_tokens(100_000).unwrap();
    assert_eq!(model.tokenizer().max_len(), 10);
}

/// Every output of a bf16 model (weights rounded at load, GEMM inputs rounded per row, f32
/// sums) within this of transformers' f32 outputs: class probabilities of single texts and
/// pairs, cross-encoder scores, token probabilities (absolute), and embeddings (mean pooling,
/// unnormalized: relative to the row's largest value).
const BF16_TOL: f32 = 2e-2;

/// One BERT-style architecture's four tiny models in bf16 against the f32 goldens.
fn bf16_all(arch: &str) {
    use nlpd_engine::Quantize;
    let load = |head: &str| {
        let name = format!("{arch}-{head}");
        let dir: PathBuf = golden_dir().join("tiny").join(&name);
        let opts = LoadOptions {
            quantize: Quantize::Bf16,
            ..LoadOptions::default()
        };
        let model = EncoderModel::load_with(&dir, &candle_core::Device::Cpu, &opts)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.backend_name(), "fast-bert-bf16", "{name}");
        (name, model, read_json(&dir.join("golden.json")))
    };
    let worst = |got: &[Vec<f32>], want: &[Vec<f32>]| {
        assert_eq!(got.len(), want.len());
        got.iter()
            .zip(want)
            .map(|(g, w)| max_abs_diff(g, w))
            .fold(0f32, f32::max)
    };
    let mut report = Vec::new();
    let (name, model, g) = load("base");
    let t = texts(&g);
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let got = model.embed(&refs, &EmbedOptions::new()).unwrap();
    let want = f32_rows(&g["mean"]);
    let relative = got
        .iter()
        .zip(&want)
        .map(|(g, w)| max_abs_diff(g, w) / w.iter().fold(0f32, |m, v| m.max(v.abs())))
        .fold(0f32, f32::max);
    report.push((name, "mean (relative)", relative));

    let (name, model, g) = load("seqcls");
    let t = texts(&g);
    let inputs: Vec<TextInput> = t.iter().map(|s| TextInput::Single(s)).collect();
    let out = model.classify(&inputs, true).unwrap();
    let probs: Vec<Vec<f32>> = out.iter().map(|c| c.scores.clone()).collect();
    report.push((name.clone(), "probs", worst(&probs, &f32_rows(&g["probs"]))));
    let p = pairs(&g);
    let inputs: Vec<TextInput> = p.iter().map(|(a, b)| TextInput::Pair(a, b)).collect();
    let out = model.classify(&inputs, true).unwrap();
    let probs: Vec<Vec<f32>> = out.iter().map(|c| c.scores.clone()).collect();
    report.push((
        name,
        "pair_probs",
        worst(&probs, &f32_rows(&g["pair_probs"])),
    ));

    let (name, model, g) = load("crossenc");
    let p = pairs(&g);
    let inputs: Vec<TextInput> = p.iter().map(|(a, b)| TextInput::Pair(a, b)).collect();
    let out = model.classify(&inputs, true).unwrap();
    let logits: Vec<Vec<f32>> = out.iter().map(|c| c.logits.clone()).collect();
    report.push((
        name,
        "pair_logits",
        worst(&logits, &f32_rows(&g["pair_logits"])),
    ));

    let (name, model, g) = load("tokcls");
    let t = texts(&g);
    let refs: Vec<&str> = t.iter().map(String::as_str).collect();
    let preds = model.token_predictions(&refs, true).unwrap();
    let mut w = 0f32;
    for (i, p) in preds.iter().enumerate() {
        w = w.max(worst(&p.probs, &f32_rows(&g["probs"][i])));
    }
    report.push((name, "token probs", w));

    for (name, what, diff) in &report {
        eprintln!("{name} bf16 {what}: max abs diff {diff:.2e} to f32");
    }
    for (name, what, diff) in report {
        assert!(diff <= BF16_TOL, "{name} bf16 {what}: {diff} > {BF16_TOL}");
    }
}

mod bf16 {
    #[test]
    fn bert() {
        super::bf16_all("bert")
    }
    #[test]
    fn roberta() {
        super::bf16_all("roberta")
    }
    #[test]
    fn xlm_roberta() {
        super::bf16_all("xlm-roberta")
    }
    #[test]
    fn distilbert() {
        super::bf16_all("distilbert")
    }
}

#[test]
fn bf16_is_refused_where_the_fast_encoder_does_not_run() {
    use nlpd_engine::Quantize;
    for (model, backend) in [
        ("deberta-v2-base", BackendKind::Auto),
        ("bert-base", BackendKind::Candle),
    ] {
        let opts = LoadOptions {
            backend,
            quantize: Quantize::Bf16,
        };
        let dir = golden_dir().join("tiny").join(model);
        let err = EncoderModel::load_with(&dir, &candle_core::Device::Cpu, &opts)
            .err()
            .expect("bf16 needs the fast encoder");
        assert!(
            err.to_string().contains("bf16 runs on the fast encoder"),
            "{err}"
        );
    }
}
