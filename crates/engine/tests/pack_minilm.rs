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

/// The fast encoder against candle's graph on the same golden texts (both f32): cosine >= 0.99999.
#[test]
fn minilm_fast_path_equals_candle_path() {
    use nlpd_engine::{BackendKind, LoadOptions};
    let Some(dir) = pack_model("all-MiniLM-L6-v2") else {
        return;
    };
    let g = read_json(&golden_dir().join("minilm/golden.json"));
    let texts = strings(&g["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let load = |backend| {
        EncoderModel::load_with(
            &dir,
            &candle_core::Device::Cpu,
            &LoadOptions {
                backend,
                ..LoadOptions::default()
            },
        )
        .unwrap()
    };
    let fast = load(BackendKind::Fast);
    let slow = load(BackendKind::Candle);
    assert_eq!(fast.backend_name(), "fast-bert");
    assert_eq!(slow.backend_name(), "candle-bert");
    let a = fast.embed(&refs, &EmbedOptions::new()).unwrap();
    let b = slow.embed(&refs, &EmbedOptions::new()).unwrap();
    let mut worst = 1.0f32;
    let mut diff = 0.0f32;
    for (x, y) in a.iter().zip(&b) {
        worst = worst.min(cosine(x, y));
        diff = diff.max(max_abs_diff(x, y));
    }
    eprintln!("MiniLM fast vs candle: worst cosine {worst:.8}, max abs diff {diff:.2e}");
    assert!(worst >= 0.99999, "worst cosine {worst}");
    // One text alone (the batch-of-one path spreads GEMMs and heads over threads) equals batched.
    let alone = fast.embed(&refs[..1], &EmbedOptions::new()).unwrap();
    assert!(max_abs_diff(&alone[0], &a[0]) < 1e-5);
}

/// int8 (per-channel weights, per-token activations) against f32 on the golden texts: cosine >= 0.99
/// each; the mean is printed for docs/PERFORMANCE.md.
#[test]
fn minilm_int8_stays_close_to_f32() {
    use nlpd_engine::{LoadOptions, Quantize};
    let Some(dir) = pack_model("all-MiniLM-L6-v2") else {
        return;
    };
    let g = read_json(&golden_dir().join("minilm/golden.json"));
    let texts = strings(&g["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let q = EncoderModel::load_opts(
        &dir,
        &LoadOptions {
            quantize: Quantize::Int8,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(q.backend_name(), "fast-bert-int8");
    let got = q.embed(&refs, &EmbedOptions::new()).unwrap();
    let want = f32_rows(&g["embeddings"]);
    let cos: Vec<f32> = got.iter().zip(&want).map(|(a, b)| cosine(a, b)).collect();
    let worst = cos.iter().copied().fold(1.0f32, f32::min);
    let mean = cos.iter().sum::<f32>() / cos.len() as f32;
    eprintln!("MiniLM int8 vs sentence-transformers: mean cosine {mean:.5}, worst {worst:.5}");
    assert!(worst >= 0.99, "worst cosine {worst}");
    // Rankings survive: the nearest neighbour of each of the first 20 texts is unchanged.
    let nearest = |rows: &[Vec<f32>], i: usize| {
        (0..rows.len())
            .filter(|&j| j != i)
            .max_by(|&a, &b| cosine(&rows[i], &rows[a]).total_cmp(&cosine(&rows[i], &rows[b])))
            .unwrap()
    };
    let same = (0..20)
        .filter(|&i| nearest(&got, i) == nearest(&want, i))
        .count();
    eprintln!("MiniLM int8: nearest neighbour unchanged for {same}/20 texts");
    assert!(
        same >= 18,
        "nearest neighbour changed for {} of 20",
        20 - same
    );
}

/// bf16 (weights rounded at load, GEMM inputs rounded per row, f32 sums; LayerNorm, softmax,
/// GELU and attention in f32) against the sentence-transformers f32 goldens: cosine >= 0.999 on
/// every golden text; the mean and worst are printed for docs/PERFORMANCE.md.
#[test]
fn minilm_bf16_stays_close_to_f32() {
    use nlpd_engine::{Kernel, LoadOptions, Quantize};
    let Some(dir) = pack_model("all-MiniLM-L6-v2") else {
        return;
    };
    let g = read_json(&golden_dir().join("minilm/golden.json"));
    let texts = strings(&g["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let m = EncoderModel::load_opts(
        &dir,
        &LoadOptions {
            quantize: Quantize::Bf16,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(m.backend_name(), "fast-bert-bf16");
    let kernel = m.kernel();
    assert_eq!(kernel.precision(), Quantize::Bf16);
    assert_eq!(
        kernel,
        Kernel::fast(Quantize::Bf16),
        "the CPU's best bf16 kernel"
    );
    let got = m.embed(&refs, &EmbedOptions::new()).unwrap();
    let want = f32_rows(&g["embeddings"]);
    assert_eq!(got.len(), want.len());
    let cos: Vec<f32> = got.iter().zip(&want).map(|(a, b)| cosine(a, b)).collect();
    let (worst, at) =
        cos.iter().enumerate().fold(
            (1.0f32, 0),
            |(w, wi), (i, &c)| if c < w { (c, i) } else { (w, wi) },
        );
    let mean = cos.iter().sum::<f32>() / cos.len() as f32;
    eprintln!(
        "MiniLM bf16 ({kernel}) vs sentence-transformers on {} texts: mean cosine {mean:.6}, \
         worst {worst:.6} (text {at})",
        cos.len()
    );
    assert!(worst >= 0.999, "text {at}: cosine {worst} < 0.999");
    // One text alone (each GEMM split over the cores by columns) equals it in a batch.
    let alone = m.embed(&refs[..1], &EmbedOptions::new()).unwrap();
    assert!(max_abs_diff(&alone[0], &got[0]) < 1e-5);
}
