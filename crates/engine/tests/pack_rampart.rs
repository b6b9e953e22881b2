//! Rampart PII NER on nlpd's dequantized weights against the original 4-bit ONNX model run by
//! onnxruntime: identical token labels and entity spans on 30 sentences.

mod common;

use common::*;
use nlpd_engine::aggregate::aggregate_simple;
use nlpd_engine::{Aggregation, EncoderModel, EntityOutput};

#[test]
fn rampart_matches_onnxruntime() {
    let Some(dir) = pack_model("rampart-pii-ner") else {
        return;
    };
    let g = read_json(&golden_dir().join("rampart/golden.json"));
    let model = EncoderModel::load(&dir).unwrap();
    let labels = model.labels().to_vec();
    let texts = strings(&g["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let preds = model.token_predictions(&refs, true).unwrap();
    for (i, p) in preds.iter().enumerate() {
        assert_eq!(
            p.encoded.ids,
            u32s(&g["token_ids"][i]),
            "token ids of text {i}"
        );
        let ids = p.label_ids();
        let got: Vec<String> = ids.iter().map(|&l| labels[l].clone()).collect();
        assert_eq!(
            got,
            strings(&g["labels"][i]),
            "token labels of text {i}: {}",
            texts[i]
        );
        let views = p.views(&labels);
        let spans = aggregate_simple(&texts[i], &views);
        let want = g["entities"][i].as_array().unwrap();
        assert_eq!(
            spans.len(),
            want.len(),
            "entity count of text {i}: {spans:?}"
        );
        for (s, w) in spans.iter().zip(want) {
            assert_eq!(s.label, w["label"].as_str().unwrap(), "text {i}");
            assert_eq!(
                (s.start, s.end),
                (
                    w["start"].as_u64().unwrap() as usize,
                    w["end"].as_u64().unwrap() as usize
                ),
                "text {i}"
            );
            assert_eq!(s.text, w["text"].as_str().unwrap());
            let ws = w["score"].as_f64().unwrap() as f32;
            assert!(
                (s.score - ws).abs() < 1e-3,
                "text {i} score {} vs {ws}",
                s.score
            );
        }
    }
}

#[test]
fn rampart_finds_the_readme_example() {
    let Some(dir) = pack_model("rampart-pii-ner") else {
        return;
    };
    let model = EncoderModel::load(&dir).unwrap();
    let text = "My name is Alex Rivera, I live at 42 Elm Street, Springfield, reach me at alex@example.com";
    let EntityOutput::Spans(spans) = model
        .entities(&[text], Aggregation::Simple, true)
        .unwrap()
        .remove(0)
    else {
        panic!("spans expected")
    };
    let found: Vec<(String, String)> = spans
        .iter()
        .map(|e| (e.label.clone(), e.text.clone()))
        .collect();
    for (label, want) in [
        ("GIVEN_NAME", "Alex"),
        ("SURNAME", "Rivera"),
        ("STREET_NAME", "Elm Street"),
        ("CITY", "Springfield"),
        ("EMAIL", "alex@example.com"),
    ] {
        assert!(
            found.contains(&(label.to_string(), want.to_string())),
            "{label} {want} not in {found:?}"
        );
    }
    for e in &spans {
        assert_eq!(
            nlpd_engine::aggregate::char_slice(text, e.start, e.end),
            e.text
        );
    }
}

/// int8 on a token classifier: the share of token labels equal to onnxruntime's on the 30 golden
/// sentences is printed (for docs/PERFORMANCE.md) and must stay at or above 97%.
#[test]
fn rampart_int8_keeps_the_labels() {
    use nlpd_engine::{LoadOptions, Quantize};
    let Some(dir) = pack_model("rampart-pii-ner") else {
        return;
    };
    let g = read_json(&golden_dir().join("rampart/golden.json"));
    let model = EncoderModel::load_opts(
        &dir,
        &LoadOptions {
            quantize: Quantize::Int8,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let labels = model.labels().to_vec();
    let texts = strings(&g["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let preds = model.token_predictions(&refs, true).unwrap();
    let (mut same, mut total) = (0usize, 0usize);
    for (i, p) in preds.iter().enumerate() {
        let want = strings(&g["labels"][i]);
        for (l, w) in p.label_ids().iter().zip(&want) {
            total += 1;
            same += usize::from(&labels[*l] == w);
        }
    }
    let share = same as f64 / total as f64;
    eprintln!(
        "Rampart int8: {same}/{total} token labels equal onnxruntime's ({:.2}%)",
        share * 100.0
    );
    assert!(share >= 0.97, "{same}/{total}");
}

/// bf16 on a token classifier: the share of token labels equal to f32's on the 30 golden
/// sentences (f32's labels are onnxruntime's exactly: `rampart_matches_onnxruntime`) must be at
/// least 99%, and the entity spans are printed; both for docs/PERFORMANCE.md.
#[test]
fn rampart_bf16_keeps_the_labels() {
    use nlpd_engine::{LoadOptions, Quantize};
    let Some(dir) = pack_model("rampart-pii-ner") else {
        return;
    };
    let g = read_json(&golden_dir().join("rampart/golden.json"));
    let model = EncoderModel::load_opts(
        &dir,
        &LoadOptions {
            quantize: Quantize::Bf16,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(model.backend_name(), "fast-bert-bf16");
    let labels = model.labels().to_vec();
    let texts = strings(&g["texts"]);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let preds = model.token_predictions(&refs, true).unwrap();
    let (mut same, mut total, mut spans_same) = (0usize, 0usize, 0usize);
    for (i, p) in preds.iter().enumerate() {
        let want = strings(&g["labels"][i]);
        assert_eq!(p.label_ids().len(), want.len(), "tokens of text {i}");
        for (l, w) in p.label_ids().iter().zip(&want) {
            total += 1;
            same += usize::from(&labels[*l] == w);
        }
        let spans = aggregate_simple(&texts[i], &p.views(&labels));
        let want = g["entities"][i].as_array().unwrap();
        let equal = spans.len() == want.len()
            && spans.iter().zip(want).all(|(s, w)| {
                s.label == w["label"].as_str().unwrap()
                    && s.start == w["start"].as_u64().unwrap() as usize
                    && s.end == w["end"].as_u64().unwrap() as usize
            });
        spans_same += usize::from(equal);
    }
    let share = same as f64 / total as f64;
    eprintln!(
        "Rampart bf16 ({}): {same}/{total} token labels equal f32's ({:.2}%); entity spans \
         identical in {spans_same}/{} texts",
        model.kernel(),
        share * 100.0,
        texts.len()
    );
    assert!(share >= 0.99, "{same}/{total}");
}
