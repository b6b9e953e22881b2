//! all-MiniLM-L6-v2 against sentence-transformers: ~100 texts incl. inputs past 128 and 256 word
//! pieces; cosine >= 0.9999 each.

mod common;

use common::*;
use nlpd_engine::{EmbedOptions, EncoderModel, TextInput};

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(dir) = pack_model("all-MiniLM-L6-v2") else {
        return;
    };
    let g = read_json(&golden_dir().join("minilm/golden.json"));
    let model = EncoderModel::load(&dir).unwrap();
    // sentence_bert_config.json's max_seq_length (256) wins over the tokenizer's 128/512.
    assert_eq!(model.tokenizer().max_len(), 256);
    let texts = strings(&g["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // Token counts before truncation equal the reference's (the tokenizer's own 128-padding is gone).
    let counts = u32s(&g["token_counts"]);
    let inputs: Vec<TextInput> = refs.iter().map(|t| TextInput::Single(t)).collect();
    let encs = model.encode(&inputs, true).unwrap();
    for (i, (e, &c)) in encs.iter().zip(&counts).enumerate() {
        assert_eq!(e.len(), (c as usize).min(256), "token count of text {i}");
    }
    assert!(
        counts.iter().filter(|&&c| c > 256).count() >= 3,
        "golden set must cover > 256 tokens"
    );
    let got = model.embed(&refs, &EmbedOptions::new()).unwrap();
    let want = f32_rows(&g["embeddings"]);
    let mut worst = (1.0f32, 0usize);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.len(), 384);
        let c = cosine(a, b);
        if c < worst.0 {
            worst = (c, i);
        }
    }
    eprintln!("MiniLM: worst cosine {:.7} (text {})", worst.0, worst.1);
    assert!(
        worst.0 >= 0.9999,
        "text {}: cosine {} < 0.9999",
        worst.1,
        worst.0
    );
    // The model ends in a Normalize module: outputs are unit length whatever the option says.
    let opts = EmbedOptions {
        normalize: Some(false),
        ..EmbedOptions::new()
    };
    let v = model
        .embed(&["The movie was great"], &opts)
        .unwrap()
        .remove(0);
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
}

#[test]
fn minilm_matryoshka_dimensions() {
    let Some(dir) = pack_model("all-MiniLM-L6-v2") else {
        return;
    };
    let model = EncoderModel::load(&dir).unwrap();
    let opts = EmbedOptions {
        dimensions: Some(64),
        ..EmbedOptions::new()
    };
    let v = model.embed(&["hello world"], &opts).unwrap().remove(0);
    assert_eq!(v.len(), 64);
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    let bad = EmbedOptions {
        dimensions: Some(385),
        ..EmbedOptions::new()
    };
    assert!(model
        .embed(&["x"], &bad)
        .unwrap_err()
        .to_string()
        .contains("between 1 and 384"));
}
