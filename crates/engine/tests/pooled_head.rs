//! A head directory (as `nlpd train` writes it) loads as a sequence classifier on both backends,
//! computes exactly encoder → pooling → normalize → head → softmax, and bad directories give
//! clear errors.

mod common;

use nlpd_engine::heads::{softmax, Pooling};
use nlpd_engine::pooled::{Dense, HeadConfig, HeadType, PooledHead};
use nlpd_engine::{
    l2_normalize, BackendKind, EmbedOptions, EncoderModel, LoadOptions, Result, TextInput,
};
use std::path::{Path, PathBuf};

const TEXTS: [&str; 3] = [
    "hello world",
    "a somewhat longer sentence about nothing",
    "x",
];

fn encoder() -> PathBuf {
    common::golden_dir().join("tiny/bert-base")
}

fn labels() -> Vec<String> {
    ["negative", "neutral", "positive"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A fixed MLP head on the tiny 32-d BERT.
fn head() -> PooledHead {
    let (d, h, n) = (32, 5, 3);
    let val = |i: usize, scale: f32| (i as f32 * 0.37).sin() * scale;
    PooledHead {
        dense: Some(Dense {
            w: (0..d * h).map(|i| val(i, 1.0)).collect(),
            b: (0..h).map(|i| val(i + 100, 0.1)).collect(),
            n_in: d,
            n_out: h,
        }),
        classifier: Dense {
            w: (0..h * n).map(|i| val(i + 200, 1.0)).collect(),
            b: vec![0.1, 0.0, -0.1],
            n_in: h,
            n_out: n,
        },
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("nlpd-pooled-{}-{name}", std::process::id()));
        std::fs::remove_dir_all(&p).ok();
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn write_head(dir: &Path, config: &HeadConfig, head: &PooledHead) -> Result<()> {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).expect("config json"),
    )
    .expect("write config");
    head.save(&dir.join("model.safetensors"))
}

fn config(encoder: &str, input: usize) -> HeadConfig {
    HeadConfig::new(
        encoder.to_string(),
        Pooling::Mean,
        true,
        HeadType::Mlp,
        input,
        Some(5),
        &labels(),
    )
}

#[test]
fn loads_and_classifies_on_both_backends() -> Result<()> {
    let tmp = TempDir::new("ok");
    let enc = encoder();
    write_head(&tmp.0, &config(enc.to_str().unwrap_or(""), 32), &head())?;
    let inputs: Vec<TextInput> = TEXTS.iter().map(|t| TextInput::Single(t)).collect();
    let mut by_backend = Vec::new();
    for backend in [BackendKind::Fast, BackendKind::Candle] {
        let opts = LoadOptions {
            backend,
            ..LoadOptions::default()
        };
        let model = EncoderModel::load_opts(&tmp.0, &opts)?;
        assert_eq!(model.labels(), labels().as_slice());
        let got = model.classify(&inputs, true)?;
        // The same computation by hand: the bare encoder's pooled embedding, normalized, the head.
        let bare = EncoderModel::load_opts(&enc, &opts)?;
        let emb = bare.embed(&TEXTS, &EmbedOptions::new())?;
        for (c, e) in got.iter().zip(emb) {
            let mut v = e;
            l2_normalize(&mut v);
            let logits = head().logits(&v);
            assert_eq!(c.logits, logits, "{backend:?}");
            assert_eq!(c.scores, softmax(&logits));
            assert!((c.scores.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // Embeddings from the head's model are the encoder's own.
        let e1 = model.embed(&TEXTS[..1], &EmbedOptions::new())?;
        let e2 = bare.embed(&TEXTS[..1], &EmbedOptions::new())?;
        assert_eq!(e1, e2);
        by_backend.push(got);
    }
    for (f, c) in by_backend[0].iter().zip(&by_backend[1]) {
        for (a, b) in f.scores.iter().zip(&c.scores) {
            assert!((a - b).abs() < 1e-4, "fast {a} vs candle {b}");
        }
    }
    Ok(())
}

#[test]
fn relative_encoder_references_resolve_from_the_head_directory() -> Result<()> {
    let tmp = TempDir::new("rel");
    let models = tmp.0.join("models");
    std::fs::create_dir_all(models.join("head")).expect("mkdir");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(encoder().join(f), {
            std::fs::create_dir_all(models.join("enc")).expect("mkdir");
            models.join("enc").join(f)
        })
        .expect("copy");
    }
    write_head(&models.join("head"), &config("../enc", 32), &head())?;
    let model = EncoderModel::load(&models.join("head"))?;
    assert_eq!(model.classify(&[TextInput::Single("hi")], true)?.len(), 1);
    Ok(())
}

fn load_err(dir: &Path) -> String {
    match EncoderModel::load(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_head_directories_are_refused_clearly() -> Result<()> {
    let enc = encoder();
    let enc_s = enc.to_str().unwrap_or("");

    let missing = TempDir::new("missing-encoder");
    write_head(&missing.0, &config("../no-such-encoder", 32), &head())?;
    let e = load_err(&missing.0);
    assert!(
        e.contains("names the encoder `../no-such-encoder`") && e.contains("make models"),
        "{e}"
    );

    let wide = TempDir::new("dim");
    write_head(&wide.0, &config(enc_s, 64), &head())?;
    let e = load_err(&wide.0);
    assert!(
        e.contains("dimension mismatch") && e.contains("hidden size 32"),
        "{e}"
    );

    let no_weights = TempDir::new("no-weights");
    write_head(&no_weights.0, &config(enc_s, 32), &head())?;
    std::fs::remove_file(no_weights.0.join("model.safetensors")).expect("rm");
    let e = load_err(&no_weights.0);
    assert!(e.contains("the head's weights) is missing"), "{e}");

    let shape = TempDir::new("shape");
    let mut narrow = config(enc_s, 32);
    narrow.mlp_hidden_size = Some(7);
    write_head(&shape.0, &narrow, &head())?;
    let e = load_err(&shape.0);
    assert!(
        e.contains("`dense.weight` has shape [5, 32]") && e.contains("dimension mismatch"),
        "{e}"
    );

    let nested = TempDir::new("nested");
    let inner = missing.0.clone();
    write_head(&inner, &config(enc_s, 32), &head())?;
    write_head(
        &nested.0,
        &config(inner.to_str().unwrap_or(""), 32),
        &head(),
    )?;
    let e = load_err(&nested.0);
    assert!(e.contains("is itself a trained head"), "{e}");
    Ok(())
}
