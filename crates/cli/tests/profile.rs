//! `nlpd profile` through the real binary with the pack's MiniLM (and Rampart for entities):
//! the JSON parses, every stage took time, the stages add up to the total, memory and
//! allocations are there; the table; bad flags. No timing thresholds beyond those identities.

mod common;

use common::{text, Tmp};
use serde_json::Value;
use std::process::Output;

fn profile(args: &[&str]) -> Output {
    common::nlpd("profile", args)
}

fn json(out: &Output) -> Value {
    common::json_stdout(out)
}

fn stage(doc: &Value, name: &str) -> f64 {
    doc["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["name"] == name)
        .and_then(|s| s["ms"].as_f64())
        .unwrap_or_else(|| panic!("no stage {name}: {doc}"))
}

/// The checks every report passes: positive stages, a sum within 10% of the total, memory.
fn check(doc: &Value, inputs: u64, batch: u64) {
    assert_eq!(doc["inputs"], inputs, "{doc}");
    let total = doc["total_ms"].as_f64().unwrap();
    let stages = doc["stages"].as_array().unwrap();
    let names: Vec<&str> = stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "load",
            "tokenize",
            "batch",
            "embeddings",
            "attention",
            "feed_forward",
            "encoder_other",
            "pooling_head",
            "postprocess"
        ]
    );
    for s in stages {
        let ms = s["ms"].as_f64().unwrap();
        // The encoder's remainder may round to nothing; every measured stage took time.
        if s["name"] == "encoder_other" {
            assert!(ms >= 0.0, "{s}");
        } else {
            assert!(ms > 0.0, "stage {s} took no time: {doc}");
        }
    }
    let sum: f64 = stages.iter().map(|s| s["ms"].as_f64().unwrap()).sum();
    assert!(
        sum <= total * 1.001 && sum >= total * 0.9,
        "stages sum to {sum} ms of {total} ms: {doc}"
    );
    let unattributed = doc["unattributed_ms"].as_f64().unwrap();
    assert!((sum + unattributed - total).abs() < 0.01 * total, "{doc}");
    // The encoder's parts add up to the encoder (the remainder is `encoder_other`).
    let enc: f64 = ["embeddings", "attention", "feed_forward", "encoder_other"]
        .iter()
        .map(|n| stage(doc, n))
        .sum();
    let encoder_ms = doc["encoder_ms"].as_f64().unwrap();
    assert!(
        (enc - encoder_ms).abs() <= 0.01 * encoder_ms + 0.01,
        "{doc}"
    );
    // Most of a forward pass is the layers, not the embeddings.
    assert!(stage(doc, "attention") + stage(doc, "feed_forward") > stage(doc, "embeddings"));
    assert_eq!(
        doc["forward_passes"].as_u64(),
        Some(inputs.div_ceil(batch)),
        "{doc}"
    );
    // Memory: the peak holds at least the loaded RSS, which holds the weights.
    let m = &doc["memory"];
    let (before, after, peak) = (
        m["rss_before_load_bytes"].as_u64().unwrap(),
        m["rss_after_load_bytes"].as_u64().unwrap(),
        m["peak_rss_bytes"].as_u64().unwrap(),
    );
    assert!(before < after && after <= peak, "{m}");
    let a = &doc["allocations"];
    assert!(a["load"]["count"].as_u64().unwrap() > 0, "{a}");
    assert!(a["run"]["count"].as_u64().unwrap() >= inputs, "{a}");
    assert!(a["run"]["bytes"].as_u64().unwrap() > 0, "{a}");
}

#[test]
fn minilm_embed_json_adds_up() {
    if common::pack("all-MiniLM-L6-v2").is_none() {
        return;
    }
    let out = profile(&["--limit", "96", "--batch", "16", "--json"]);
    let doc = json(&out);
    assert_eq!(doc["task"], "embed", "{doc}");
    assert_eq!(doc["backend"], "fast-bert", "{doc}");
    assert_eq!(doc["precision"], "f32", "{doc}");
    assert!(doc["kernel"].as_str().is_some(), "{doc}");
    check(&doc, 96, 16);
    // The model's 90 MB of weights are resident after the load.
    let m = &doc["memory"];
    let loaded =
        m["rss_after_load_bytes"].as_u64().unwrap() - m["rss_before_load_bytes"].as_u64().unwrap();
    assert!(loaded > 50_000_000, "{m}");
}

#[test]
fn bf16_names_its_precision_and_kernel() {
    if common::pack("all-MiniLM-L6-v2").is_none() {
        return;
    }
    let doc = json(&profile(&[
        "--quantize",
        "bf16",
        "--limit",
        "32",
        "--batch",
        "16",
        "--json",
    ]));
    assert_eq!(doc["backend"], "fast-bert-bf16", "{doc}");
    assert_eq!(doc["precision"], "bf16", "{doc}");
    let kernel = doc["kernel"].as_str().unwrap_or_default();
    assert!(
        [
            "amx-bf16",
            "avx512-bf16",
            "avx2-fma (bf16 widened)",
            "portable bf16 (scalar)"
        ]
        .contains(&kernel),
        "{doc}"
    );
    check(&doc, 32, 16);
}

#[test]
fn the_candle_path_is_split_by_layer_too() {
    if common::pack("all-MiniLM-L6-v2").is_none() {
        return;
    }
    let tmp = Tmp::new("profile", "candle");
    let corpus = tmp.path("c.txt");
    std::fs::write(
        &corpus,
        "The service was quick.\n\nI would not go back.\nA fine, quiet hotel near the station.\n",
    )
    .unwrap();
    let doc = json(&profile(&[
        "--backend",
        "candle",
        "--corpus",
        corpus.to_str().unwrap(),
        "--batch",
        "2",
        "--json",
    ]));
    assert_eq!(doc["backend"], "candle-bert", "{doc}");
    assert_eq!(
        (&doc["precision"], &doc["kernel"]),
        (&"f32".into(), &"candle".into())
    );
    check(&doc, 3, 2);
}

#[test]
fn entities_count_aggregation_as_postprocessing_and_the_table_reads() {
    if common::pack("rampart-pii-ner").is_none() {
        return;
    }
    let out = profile(&["--model", "rampart", "--limit", "40", "--batch", "8"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(", entities: 40 inputs"), "{stdout}");
    for row in [
        "load",
        "tokenize",
        "batch assembly",
        "encoder",
        "  embeddings",
        "  attention",
        "  feed-forward",
        "  other",
        "pooling / head",
        "postprocess",
        "unattributed",
        "total",
        "memory: RSS",
        "allocations: load",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(row)),
            "no `{row}` row:\n{stdout}"
        );
    }
    let doc = json(&profile(&[
        "--model", "rampart", "--limit", "40", "--batch", "8", "--json",
    ]));
    assert_eq!(doc["task"], "entities");
    check(&doc, 40, 8);
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let tmp = Tmp::new("profile", "flags");
    let empty = tmp.path("empty.txt");
    std::fs::write(&empty, "\n \n").unwrap();
    let have = common::pack("all-MiniLM-L6-v2").is_some();
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--batch", "0"], "--batch"),
        (vec!["--limit", "0"], "--limit"),
        (vec!["--task", "nope"], "--task"),
        (vec!["--model", "/nonexistent/model"], "/nonexistent/model"),
        (vec!["--corpus", "/nonexistent/c.txt"], "--corpus"),
        (vec!["--corpus", empty.to_str().unwrap()], "--corpus"),
    ];
    if have {
        // MiniLM has no classification head.
        cases.push((
            vec!["--task", "entities", "--limit", "2"],
            "--task entities",
        ));
    }
    common::assert_refused("profile", &cases);
    common::assert_help(
        "profile",
        &[
            "--corpus",
            "--batch",
            "[default: 32]",
            "NLPD_PROFILE_JSON",
            "VmHWM",
            "Examples:",
        ],
    );
}
