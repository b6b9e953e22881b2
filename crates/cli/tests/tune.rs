//! `nlpd tune` through the real binary against the real servers it starts (no mocks): a
//! two-point sweep with JSON out and --write merged into an existing config that `nlpd serve
//! --config` then runs with; constraints nothing can meet (said in words, nothing written); bad
//! flags. No timing assertions: only shapes, counts and the choice rule.

mod common;

use common::{models, text, Tmp};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const MODEL: &str = "all-MiniLM-L6-v2";

fn have_model() -> bool {
    common::pack(MODEL).is_some()
}

fn tune(args: &[&str]) -> Output {
    common::nlpd("tune", args)
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

/// Two settings, 4 clients, ~1.3 s each.
const SHORT: &[&str] = &[
    "--model",
    MODEL,
    "--max-batch-size",
    "2,8",
    "--max-wait-us",
    "0",
    "--max-batch-tokens",
    "4096",
    "--concurrency",
    "4",
    "--duration",
    "1s",
    "--warmup",
    "300ms",
];

#[test]
fn a_two_point_sweep_recommends_within_the_constraints_and_writes_a_config_serve_reads() {
    if !have_model() {
        return;
    }
    let tmp = Tmp::new("tune", "sweep");
    let config = tmp.path("nlpd.toml");
    std::fs::write(
        &config,
        "# my settings\nhost = \"127.0.0.1\"\nport = 0\nmax-batch-size = 999\n\n# a typed value\ncache-ttl = \"10m\"\n",
    )
    .unwrap();
    let mut args = SHORT.to_vec();
    let cfg = config.to_str().unwrap();
    args.extend([
        "--p99-target",
        "60000",
        "--memory-limit",
        "64GiB",
        "--json",
        "--write",
        cfg,
    ]);
    let out = tune(&args);
    let doc = common::json_stdout(&out);
    assert_eq!(doc["settings"]["model"], MODEL, "{doc}");
    assert_eq!(doc["settings"]["max_batch_size"], serde_json::json!([2, 8]));
    let rows = doc["results"].as_array().expect("results");
    assert_eq!(rows.len(), 2, "one row per setting: {doc}");
    for (r, size) in rows.iter().zip([2, 8]) {
        assert_eq!(r["max_batch_size"], size, "{r}");
        assert_eq!(r["max_batch_tokens"], 4096, "{r}");
        assert_eq!(r["max_wait_us"], 0, "{r}");
        assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
        assert!(f(r, "inputs_per_s") > 0.0, "{r}");
        let lat = &r["latency"];
        assert!(
            0.0 < f(lat, "p50_ms") && f(lat, "p50_ms") <= f(lat, "p99_ms"),
            "{r}"
        );
        // The child's peak RSS holds at least the model's 90 MB of weights.
        let peak = r["peak_rss_bytes"].as_u64().expect("peak RSS on Linux");
        assert!(peak > 90_000_000 && peak < 64 << 30, "{r}");
        // The server batched no more than the setting allows.
        let batch = f(&r["server"], "avg_batch_size");
        assert!((1.0..=size as f64).contains(&batch), "{r}");
        assert_eq!(r["meets_constraints"], true, "{r}");
    }
    let rec = &doc["recommendation"];
    assert_eq!(rec["meets_constraints"], true, "{rec}");
    let i = rec["index"].as_u64().unwrap() as usize;
    let chosen = &rows[i];
    assert_eq!(rec["max_batch_size"], chosen["max_batch_size"]);
    assert!(f(&chosen["latency"], "p99_ms") <= 60000.0);
    // Highest throughput, with a 2% tie band.
    let best = rows
        .iter()
        .map(|r| f(r, "inputs_per_s"))
        .fold(0.0, f64::max);
    assert!(f(chosen, "inputs_per_s") >= best * 0.98, "{doc}");
    assert!(
        rec["reason"]
            .as_str()
            .unwrap()
            .contains("highest throughput"),
        "{rec}"
    );

    // --write replaced max-batch-size, added the other two, kept the rest.
    let written = std::fs::read_to_string(&config).unwrap();
    let t: toml::Table = written.parse().expect("valid TOML");
    assert_eq!(
        t["max-batch-size"].as_integer(),
        rec["max_batch_size"].as_i64()
    );
    assert_eq!(t["max-batch-tokens"].as_integer(), Some(4096));
    assert_eq!(t["max-wait-us"].as_integer(), Some(0));
    assert_eq!(t["host"].as_str(), Some("127.0.0.1"));
    // (`nlpd serve --config` refuses keys it does not know, tables included.)
    assert_eq!(t["cache-ttl"].as_str(), Some("10m"));
    assert!(written.starts_with("# my settings\n"), "{written}");

    // `nlpd serve --config` runs with it: its host and port, the tuned batch settings.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nlpd"))
        .args(["serve", "--config", cfg, "--model"])
        .arg(format!("{MODEL}={}", models().join(MODEL).display()))
        .env("NLPD_DATA_DIR", tmp.path("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nlpd serve");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    let mut seen = Vec::new();
    let listening = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l.starts_with("listening on ") => break Some(l),
            Ok(l) => seen.push(l),
            Err(_) => break None,
        }
    };
    // stdout and stderr come through two threads: the configuration line (stderr) may still be
    // on its way when the listening line (stdout) arrives.
    let is_conf = |l: &String| l.starts_with("nlpd: configuration:");
    while listening.is_some() && !seen.iter().any(is_conf) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let listening =
        listening.unwrap_or_else(|| panic!("serve --config did not start:\n{}", seen.join("\n")));
    assert!(listening.contains("127.0.0.1:"), "{listening}");
    let conf = seen
        .iter()
        .find(|l| is_conf(l))
        .expect("the effective configuration line");
    for want in [
        format!("max_batch_size={}", rec["max_batch_size"]),
        "max_batch_tokens=4096".to_string(),
        "max_wait_us=0".to_string(),
    ] {
        assert!(conf.contains(&want), "{want} in {conf}");
    }
}

#[test]
fn constraints_nothing_meets_are_reported_and_nothing_is_written() {
    if !have_model() {
        return;
    }
    let tmp = Tmp::new("tune", "unmet");
    let config = tmp.path("keep.toml");
    std::fs::write(&config, "port = 9999\n").unwrap();
    let mut args = SHORT.to_vec();
    args.extend([
        "--memory-limit",
        "1MiB",
        "--write",
        config.to_str().unwrap(),
    ]);
    let out = tune(&args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    // The table: a header, one row per setting, each marked, and the recommendation in words.
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains("rss>1 MiB")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(
        stdout.contains("p99 ms") && stdout.contains("peak MiB"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no setting meets peak RSS <= 1 MiB and no failed requests; the closest"),
        "{stdout}"
    );
    assert!(stdout.contains("over the 1 MiB limit"), "{stdout}");
    assert!(stderr.contains("not written"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "port = 9999\n");
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let tmp = Tmp::new("tune", "flags");
    let bad_toml = tmp.path("bad.toml");
    std::fs::write(&bad_toml, "port = = 1\n").unwrap();
    let bad_toml = bad_toml.to_str().unwrap();
    common::assert_refused(
        "tune",
        &[
            (vec!["--max-batch-size", "0"], "--max-batch-size"),
            (vec!["--max-batch-size", "64..4"], "--max-batch-size"),
            (vec!["--max-batch-tokens", "lots"], "--max-batch-tokens"),
            (vec!["--max-wait-us", "0..100"], "--max-wait-us"),
            (vec!["--p99-target", "soon"], "--p99-target"),
            (vec!["--p99-target", "0"], "--p99-target"),
            (vec!["--memory-limit", "2XB"], "--memory-limit"),
            (vec!["--concurrency", "0"], "--concurrency"),
            (vec!["--scenario", "mixed"], "--scenario"),
            (vec!["--serve-arg=--max-batch-size=8"], "--serve-arg"),
            (vec!["--model", "/nonexistent/model"], "--model"),
            (vec!["--corpus", "/nonexistent/corpus.txt"], "--corpus"),
            (vec!["--write", bad_toml], "--write"),
        ],
    );
    common::assert_help(
        "tune",
        &[
            "--max-batch-size",
            "[default: 4..64]",
            "--p99-target",
            "--memory-limit",
            "--write",
            "NLPD_TUNE_CONCURRENCY",
            "Examples:",
            "VmHWM",
        ],
    );
}
