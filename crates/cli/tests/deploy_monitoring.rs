//! The monitoring assets of `deploy/`: the Prometheus recording and alert rules, their promtool
//! unit tests, the Grafana dashboard and its provisioning, held against a real `nlpd serve`.
//!
//! - `promtool check rules` passes on both rule files (and `check config` on the example
//!   prometheus.yml), `promtool test rules` passes on `deploy/prometheus/tests/*.yml`, every alert
//!   has `for:`, a severity and summary/description annotations and is exercised by a unit test;
//! - the dashboard JSON is well formed (ids, grid positions, datasources, targets, variables),
//!   its queries are valid PromQL (promtool) and the provisioning files point where compose mounts;
//! - every `nlpd_*` metric the rules and the dashboard read is exported by a real server on
//!   `/metrics` (with Redis configured, so the L2 series exist), and every recording rule they
//!   read is defined.
//!
//! promtool comes from `scripts/deploy-deps.sh` (Debian's `prometheus` package); the models from
//! `make models`; Redis is expected on 127.0.0.1:6379 (database 15, a per-run key prefix). Under
//! `CI=true` a missing prerequisite is a failure; otherwise the test is skipped, loudly.

mod common;

use common::{missing, wait_timeout, KillOnDrop};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{repo, Tmp};
use serde_json::Value;

const LISTEN_TIMEOUT: Duration = Duration::from_secs(180);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const METRICS_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const PROMTOOL_TIMEOUT: Duration = Duration::from_secs(120);

const RECORDING: &str = "deploy/prometheus/rules/nlpd-recording.yml";
const ALERTS: &str = "deploy/prometheus/rules/nlpd-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/tests";
const PROMETHEUS_YML: &str = "deploy/prometheus/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/dashboards/nlpd.json";
const DATASOURCES: &str = "deploy/grafana/provisioning/datasources/prometheus.yml";
const DASHBOARD_PROVIDER: &str = "deploy/grafana/provisioning/dashboards/nlpd.yml";

/// The models the server of the metrics check serves: one embedding and one classification model
/// (so encoder batching, the cache and the prediction log all record something).
const MODELS: &[&str] = &["all-MiniLM-L6-v2", "sentiment"];

/// Where Redis runs on the development machines and in CI.
const REDIS: &str = "127.0.0.1:6379";

/// Series nlpd only creates at their first failure: the dashboard shows them, but a healthy
/// server does not export them. Each must still be one of nlpd's metric names (metrics.rs).
const ONLY_AFTER_A_FAILURE: &[(&str, &str)] = &[
    (
        "nlpd_cache_l2_errors_total",
        "counted from the first failed Redis call",
    ),
    (
        "nlpd_cache_l2_writes_dropped_total",
        "counted from the first L2 write not made",
    ),
];

/// Series that exist only with Redis configured (`--redis-url`).
const NEEDS_REDIS: &[&str] = &[
    "nlpd_redis_breaker_state",
    "nlpd_cache_l2_writes_total",
    "nlpd_cache_l2_errors_total",
    "nlpd_cache_l2_writes_dropped_total",
];

/// Grafana's own variables, allowed in dashboard queries beside the dashboard's.
const GRAFANA_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range"];

fn path(rel: &str) -> PathBuf {
    repo().join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Processes

fn read_all(r: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = BufReader::new(r).read_to_end(&mut v);
        v
    })
}

/// promtool on PATH (Debian installs it in /usr/bin); `None` (loudly, or a failure under CI) when
/// it is not installed.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("promtool"))
        .find(|p| p.is_file());
    if found.is_none() {
        missing(
            "deploy_monitoring",
            "promtool (Debian package prometheus)",
            "scripts/deploy-deps.sh",
        );
    }
    found
}

/// Runs promtool in the repository root, bounded by [`PROMTOOL_TIMEOUT`].
fn run_promtool(promtool: &Path, args: &[&str]) -> Output {
    let mut child = KillOnDrop(
        Command::new(promtool)
            .args(args)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn promtool: {e}")),
    );
    let out = read_all(child.0.stdout.take().unwrap());
    let err = read_all(child.0.stderr.take().unwrap());
    let status = wait_timeout(&mut child.0, PROMTOOL_TIMEOUT)
        .unwrap_or_else(|| panic!("promtool {args:?} ran past {PROMTOOL_TIMEOUT:?}"));
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn assert_promtool_ok(promtool: &Path, args: &[&str]) -> String {
    let out = run_promtool(promtool, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("$ promtool {}\n{text}", args.join(" "));
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

// ---------------------------------------------------------------------------------------------
// Rules, read line by line (the files are block-style YAML written for this repository)

/// One rule of a rule file: `record:` or `alert:` name, its expression, its `for:`, its labels
/// and annotation keys.
#[derive(Debug, Default)]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
    r#for: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeSet<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// The rules of a Prometheus rule file: each starts at `- record:` / `- alert:`; `expr:` may be a
/// plain scalar or a block (`|`, `>`) of the lines indented deeper than the key.
fn parse_rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules: Vec<Rule> = Vec::new();
    let mut section = "";
    let mut section_indent = 0;
    // The indentation of a section's keys (the first line under it); deeper lines continue a value.
    let mut key_indent = usize::MAX;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        i += 1;
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = indent(line);
        if let Some(name) = t.strip_prefix("- record:") {
            rules.push(Rule {
                record: Some(unquote(name)),
                ..Rule::default()
            });
            section = "";
            continue;
        }
        if let Some(name) = t.strip_prefix("- alert:") {
            rules.push(Rule {
                alert: Some(unquote(name)),
                ..Rule::default()
            });
            section = "";
            continue;
        }
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        if !section.is_empty() && ind > section_indent {
            key_indent = key_indent.min(ind);
            if ind > key_indent {
                continue;
            }
            if let Some((k, v)) = t.split_once(':') {
                match section {
                    "labels" => {
                        rule.labels.insert(k.trim().to_string(), unquote(v));
                    }
                    _ => {
                        rule.annotations.insert(k.trim().to_string());
                    }
                }
            }
            continue;
        }
        section = "";
        if let Some(v) = t.strip_prefix("expr:") {
            let v = v.trim();
            if v.starts_with('|') || v.starts_with('>') {
                let mut block = Vec::new();
                while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > ind) {
                    block.push(lines[i].trim());
                    i += 1;
                }
                rule.expr = block.join("\n");
            } else {
                rule.expr = unquote(v);
            }
        } else if let Some(v) = t.strip_prefix("for:") {
            rule.r#for = Some(unquote(v));
        } else if t.starts_with("labels:") {
            (section, section_indent, key_indent) = ("labels", ind, usize::MAX);
        } else if t.starts_with("annotations:") {
            (section, section_indent, key_indent) = ("annotations", ind, usize::MAX);
        }
    }
    rules
}

/// PromQL without its string literals (label values, regexes).
fn strip_strings(expr: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(' ');
                }
            }
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => out.push(c),
        }
    }
    out
}

/// The identifiers of a PromQL expression that name nlpd series: `nlpd_*` metric names (with a
/// histogram's `_bucket`/`_sum`/`_count` taken off) and recording rule names (`level:metric:ops`,
/// which contain a colon).
fn series_names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut metrics, mut recorded) = (BTreeSet::new(), BTreeSet::new());
    let code = strip_strings(expr);
    let mut prev = ' ';
    let mut word = String::new();
    for c in code.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            if word.is_empty() && prev == '$' {
                word.push('$');
            }
            word.push(c);
        } else if !word.is_empty() {
            if word.contains(':') && word.contains("nlpd") {
                recorded.insert(word.clone());
            } else if word.starts_with("nlpd_") {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(&word);
                metrics.insert(base.to_string());
            }
            word.clear();
        }
        prev = c;
    }
    (metrics, recorded)
}

/// Every expression the dashboard runs: panel targets and variable queries.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        let nested = p["panels"].as_array().into_iter().flatten();
        for p in std::iter::once(p).chain(nested) {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .or_else(|| v["definition"].as_str());
            if let Some(q) = q {
                out.push(q.to_string());
            }
        }
    }
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Names the rule files and the dashboard read, and the recording rules they define.
struct Needed {
    /// metric name -> where it is read (for the failure message)
    metrics: BTreeMap<String, BTreeSet<String>>,
    recorded_used: BTreeMap<String, BTreeSet<String>>,
    recorded_defined: BTreeSet<String>,
}

fn needed() -> Needed {
    let mut n = Needed {
        metrics: BTreeMap::new(),
        recorded_used: BTreeMap::new(),
        recorded_defined: BTreeSet::new(),
    };
    fn add(expr: &str, from: &str, n: &mut Needed) {
        let (m, r) = series_names(expr);
        for name in m {
            n.metrics.entry(name).or_default().insert(from.to_string());
        }
        for name in r {
            n.recorded_used
                .entry(name)
                .or_default()
                .insert(from.to_string());
        }
    }
    for file in [RECORDING, ALERTS] {
        for rule in parse_rules(&read(file)) {
            if let Some(r) = &rule.record {
                n.recorded_defined.insert(r.clone());
            }
            add(&rule.expr, file, &mut n);
        }
    }
    for e in dashboard_exprs(&dashboard()) {
        add(&e, DASHBOARD, &mut n);
    }
    // A recording rule's own name is no exported metric.
    let defined = n.recorded_defined.clone();
    n.metrics.retain(|m, _| !defined.contains(m));
    n
}

// ---------------------------------------------------------------------------------------------
// (a) promtool

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let Some(promtool) = promtool() else { return };
    assert_promtool_ok(&promtool, &["check", "rules", RECORDING, ALERTS]);
    // The example configuration loads both rule files.
    assert_promtool_ok(&promtool, &["check", "config", PROMETHEUS_YML]);

    let mut tests: Vec<String> = std::fs::read_dir(path(RULE_TESTS))
        .unwrap_or_else(|e| panic!("{RULE_TESTS}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .map(|p| format!("{RULE_TESTS}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    tests.sort();
    assert!(
        !tests.is_empty(),
        "no promtool unit tests under {RULE_TESTS}"
    );
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = assert_promtool_ok(&promtool, &args);
    assert!(
        !out.contains("FAILED"),
        "promtool test rules reported a failure:\n{out}"
    );

    // Every alert is complete and unit-tested; the recording rules are checked by value.
    let tests_text: String = tests.iter().map(|t| read(t)).collect();
    let alerts: Vec<Rule> = parse_rules(&read(ALERTS));
    assert!(alerts.len() >= 8, "expected the guide's alerts and more");
    let mut problems = Vec::new();
    for a in &alerts {
        let name = a
            .alert
            .clone()
            .unwrap_or_else(|| format!("recording rule {:?} in {ALERTS}", a.record));
        if a.r#for.is_none() {
            problems.push(format!("{name}: no `for:`"));
        }
        match a.labels.get("severity").map(String::as_str) {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!("{name}: severity {other:?}")),
        }
        for key in ["summary", "description"] {
            if !a.annotations.contains(key) {
                problems.push(format!("{name}: no {key} annotation"));
            }
        }
        if !tests_text.contains(&format!("alertname: {name}\n")) {
            problems.push(format!("{name}: no alert_rule_test in {RULE_TESTS}"));
        }
        // An alert that fires must have been seen firing in a test: an exp_alerts that is not
        // empty follows its name.
        let fires = tests_text
            .split("- alertname: ")
            .filter(|s| s.starts_with(&format!("{name}\n")))
            .any(|s| s.contains("exp_labels:"));
        if !fires {
            problems.push(format!("{name}: no test expects it to fire"));
        }
    }
    assert!(problems.is_empty(), "alert rules:\n{}", problems.join("\n"));
    for name in [
        "NlpdHighLatency",
        "NlpdMemoryHigh",
        "NlpdCacheHitRateLow",
        "NlpdHighErrorRate",
        "NlpdQueueBacklog",
        "NlpdRedisBreakerOpen",
        "NlpdStoreRowsDropped",
        "NlpdModelLoadFailed",
    ] {
        assert!(
            alerts.iter().any(|a| a.alert.as_deref() == Some(name)),
            "{ALERTS} lacks {name}"
        );
    }
    assert!(
        tests_text.contains("promql_expr_test:"),
        "no recording rule is checked by value (promql_expr_test)"
    );
    let recording = parse_rules(&read(RECORDING));
    assert!(
        recording.iter().all(|r| r.record.is_some()),
        "{RECORDING} holds only recording rules"
    );
}

/// The dashboard's queries, with its variables replaced by what "All" selects, are valid PromQL:
/// promtool checks them as recording rules of a temporary file.
#[test]
fn dashboard_queries_are_valid_promql() {
    let Some(promtool) = promtool() else { return };
    let d = dashboard();
    let tmp = Tmp::new("deploy-monitoring", "promql");
    let mut rules = String::from("groups:\n  - name: nlpd-dashboard\n    rules:\n");
    let exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 15, "only {} queries", exprs.len());
    for (i, e) in exprs.iter().enumerate() {
        if e.trim_start().starts_with("label_values(") {
            continue; // Grafana's variable query syntax, not PromQL
        }
        let e = e
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("$job", ".*")
            .replace("$instance", ".*")
            .replace("$model", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let file = tmp.path("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("write rules");
    assert_promtool_ok(&promtool, &["check", "rules", &file.display().to_string()]);
}

// ---------------------------------------------------------------------------------------------
// (b) dashboard and provisioning structure

#[test]
fn dashboard_and_provisioning_are_well_formed() {
    let d = dashboard();
    assert_eq!(d["uid"], "nlpd", "dashboard uid");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(
        schema >= 36,
        "schemaVersion {schema} is old (Grafana 9+ is 36+)"
    );

    // Variables: datasource (Prometheus), instance and model; the queries use only those.
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"))
    };
    let ds = var("datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    assert_eq!(
        ds["current"]["value"], "prometheus",
        "defaults to the provisioned datasource uid"
    );
    for name in ["instance", "model"] {
        let v = var(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        assert_eq!(v["includeAll"], true, "{name}");
    }
    let var_names: BTreeSet<String> = vars
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .chain(GRAFANA_VARIABLES.iter().map(|s| s.to_string()))
        .collect();

    // Panels: unique ids, a grid position inside the 24 columns, no two overlapping; every
    // panel but a row has the datasource variable and at least one target with a query.
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 12, "only {} panels", panels.len());
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    let mut problems = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("").to_string();
        if title.is_empty() {
            problems.push(format!("panel {} has no title", p["id"]));
        }
        match p["id"].as_u64() {
            Some(id) if id > 0 => {
                if !ids.insert(id) {
                    problems.push(format!("{title}: duplicate id {id}"));
                }
            }
            _ => problems.push(format!("{title}: id {}", p["id"])),
        }
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64(),
            g["y"].as_u64(),
            g["w"].as_u64(),
            g["h"].as_u64(),
        );
        let (Some(x), Some(y), Some(w), Some(h)) = (x, y, w, h) else {
            problems.push(format!("{title}: gridPos {g}"));
            continue;
        };
        if w == 0 || h == 0 || x + w > 24 {
            problems.push(format!("{title}: gridPos {g} outside the 24-column grid"));
        }
        for (other, ox, oy, ow, oh) in &boxes {
            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                problems.push(format!("{title}: overlaps {other}"));
            }
        }
        boxes.push((title.clone(), x, y, w, h));
        if p["type"] == "row" {
            continue;
        }
        if p["type"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{title}: no type"));
        }
        if p["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{title}: datasource {}", p["datasource"]));
        }
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("{title}: no targets"));
        }
        let mut refs = BTreeSet::new();
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            if expr.trim().is_empty() {
                problems.push(format!("{title}: a target without expr"));
            }
            if t["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{title}: target datasource {}", t["datasource"]));
            }
            match t["refId"].as_str() {
                Some(r) if refs.insert(r.to_string()) => {}
                r => problems.push(format!("{title}: refId {r:?} missing or repeated")),
            }
            for v in expr.split('$').skip(1) {
                let name: String = v
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !var_names.contains(&name) {
                    problems.push(format!("{title}: unknown variable ${name}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "dashboard:\n{}", problems.join("\n"));

    // Every recording rule the alerts and the dashboard read is defined.
    let n = needed();
    let undefined: Vec<String> = n
        .recorded_used
        .iter()
        .filter(|(r, _)| !n.recorded_defined.contains(*r))
        .map(|(r, from)| format!("{r} (read by {from:?})"))
        .collect();
    assert!(
        undefined.is_empty(),
        "recording rules read but not defined in {RECORDING}:\n{}",
        undefined.join("\n")
    );
    assert!(
        n.recorded_used.keys().any(|r| r.starts_with("instance")),
        "the dashboard uses the recording rules"
    );

    // Provisioning (YAML, checked line by line): the datasource the dashboard defaults to, and a
    // file provider reading the directory compose mounts the dashboards into.
    let ds = read(DATASOURCES);
    let dp = read(DASHBOARD_PROVIDER);
    for (file, text) in [(DATASOURCES, &ds), (DASHBOARD_PROVIDER, &dp)] {
        assert!(!text.contains('\t'), "{file}: tabs in YAML");
        let keys: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(
            keys.iter()
                .all(|l| l.starts_with("- ") || l.contains(": ") || l.ends_with(':')),
            "{file}: a line is neither `key: value`, `key:` nor a list item:\n{text}"
        );
        assert!(keys.contains(&"apiVersion: 1"), "{file}: apiVersion: 1");
    }
    let has = |text: &str, line: &str| text.lines().any(|l| l.trim() == line);
    for line in [
        "datasources:",
        "- name: Prometheus",
        "uid: prometheus",
        "type: prometheus",
        "url: http://prometheus:9090",
    ] {
        assert!(has(&ds, line), "{DATASOURCES} lacks `{line}`");
    }
    for line in [
        "providers:",
        "type: file",
        "path: /var/lib/grafana/dashboards",
    ] {
        assert!(has(&dp, line), "{DASHBOARD_PROVIDER} lacks `{line}`");
    }
}

/// The name extraction the metrics check relies on.
#[test]
fn series_names_are_extracted_from_promql() {
    let (m, r) = series_names(
        r#"histogram_quantile(0.95, sum by (le) (rate(nlpd_queue_duration_seconds_bucket{job=~"nlpd_x", route!~"/health.*"}[5m])))
           / on (job) job:nlpd_requests:rate5m + nlpd_batch_size_count - $__rate_interval"#,
    );
    assert_eq!(
        m.into_iter().collect::<Vec<_>>(),
        ["nlpd_batch_size", "nlpd_queue_duration_seconds"]
    );
    assert_eq!(
        r.into_iter().collect::<Vec<_>>(),
        ["job:nlpd_requests:rate5m"]
    );
    let rules = parse_rules(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          x\n            > 1\n        for: 5m\n        labels:\n          severity: warning\n        annotations:\n          summary: s\n          description: >-\n            d: not a key\n      - record: b:c\n        expr: sum(y)\n",
    );
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].alert.as_deref(), Some("A"));
    assert_eq!(rules[0].expr, "x\n> 1");
    assert_eq!(rules[0].r#for.as_deref(), Some("5m"));
    assert_eq!(rules[0].labels["severity"], "warning");
    assert_eq!(
        rules[0].annotations.iter().collect::<Vec<_>>(),
        ["description", "summary"]
    );
    assert_eq!(rules[1].record.as_deref(), Some("b:c"));
    assert_eq!(rules[1].expr, "sum(y)");
}

// ---------------------------------------------------------------------------------------------
// (c) the metric names against a real server

/// A minimal HTTP/1.1 exchange (`Connection: close`): the status and the body (chunked or not).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: write: {e}"));
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: read: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no header end in {} bytes", raw.len()));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut payload = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line: {head}"));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &payload[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size_line = String::from_utf8_lossy(&rest[..eol]).to_string();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("{method} {path}: bad chunk size {size_line:?}"));
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[(size + 2).min(rest.len())..];
        }
        payload = out;
    }
    (status, String::from_utf8_lossy(&payload).to_string())
}

fn redis_reachable() -> bool {
    TcpStream::connect_timeout(&REDIS.parse().unwrap(), Duration::from_secs(2)).is_ok()
}

/// The metric families of a Prometheus text exposition: `# TYPE` names and sample names.
fn exported(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                out.insert(name.to_string());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            for s in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(s) {
                    out.insert(base.to_string());
                }
            }
            out.insert(name);
        }
    }
    out
}

/// Starts `nlpd serve` and returns it with its address once it prints `listening on http://ADDR`.
/// Its stderr goes to the test's; stdout is drained (and echoed) by a thread.
fn start_server(models: &Path, data: &Tmp, redis: bool) -> (KillOnDrop, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nlpd"));
    cmd.args(["serve", "--port", "0", "--host", "127.0.0.1", "--preload"]);
    for m in MODELS {
        cmd.arg("--model")
            .arg(format!("{m}={}", models.join(m).display()));
    }
    if redis {
        cmd.args(["--redis-url", &format!("redis://{REDIS}/15")])
            // Keys of this run only: nothing read from (or left for) other runs.
            .args([
                "--cache-prefix",
                &format!("nlpd-deploy-monitoring-test-{}:", std::process::id()),
            ])
            .args(["--cache-ttl", "2m"]);
    }
    let child = cmd
        .env("NLPD_MODELS_DIR", models)
        .env("NLPD_DATA_DIR", &data.0)
        .env("NLPD_SHUTDOWN_DELAY", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nlpd serve");
    let mut server = KillOnDrop(child);
    let stdout = server.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("[nlpd stdout] {line}");
            if !sent {
                if let Some(url) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                    sent = true;
                }
            }
        }
    });
    match rx.recv_timeout(LISTEN_TIMEOUT) {
        Ok(addr) => {
            let addr = addr
                .parse()
                .unwrap_or_else(|e| panic!("listening address {addr:?}: {e}"));
            (server, addr)
        }
        Err(_) => {
            let status = server.0.try_wait().ok().flatten();
            panic!(
                "nlpd serve did not print `listening on ...` within {LISTEN_TIMEOUT:?} (exited: {status:?}; see its stderr above)"
            );
        }
    }
}

#[test]
fn every_metric_the_rules_and_dashboard_read_is_exported() {
    let Some(models) = MODELS
        .iter()
        .map(|m| common::pack(m))
        .collect::<Option<Vec<_>>>()
        .and_then(|dirs| dirs[0].parent().map(Path::to_path_buf))
    else {
        return;
    };
    let redis = redis_reachable();
    if !redis {
        // The L2 series need a configured Redis; without one the rest is still checked.
        missing(
            "deploy_monitoring",
            &format!("Redis on {REDIS}"),
            "apt-get install redis-server",
        );
    }
    let n = needed();
    assert!(
        n.metrics.len() >= 20,
        "only {} metric names found in the rules and the dashboard: {:?}",
        n.metrics.len(),
        n.metrics.keys()
    );
    println!(
        "checking {} metric names read by the rules and the dashboard: {}",
        n.metrics.len(),
        n.metrics.keys().cloned().collect::<Vec<_>>().join(" ")
    );
    let failure_only: BTreeMap<&str, &str> = ONLY_AFTER_A_FAILURE.iter().copied().collect();
    // Failure-only names are checked against nlpd's own list of metric names instead.
    let names_src = std::fs::read_to_string(repo().join("crates/runtime/src/metrics.rs"))
        .expect("read crates/runtime/src/metrics.rs");
    for name in failure_only.keys() {
        assert!(
            names_src.contains(&format!("\"{name}\"")),
            "{name} is not one of nlpd's metric names (crates/runtime/src/metrics.rs)"
        );
    }

    let data = Tmp::new("deploy-monitoring", "data");
    let (mut server, addr) = start_server(&models, &data, redis);
    eprintln!("nlpd serve is up at {addr}");

    // Traffic for every histogram: embeddings and classifications, twice (a cache hit), and a
    // request for an unknown model (a 4xx).
    let requests = [
        (
            "/v1/embed",
            r#"{"model": "all-MiniLM-L6-v2", "inputs": ["the monitoring test", "a second input"]}"#,
        ),
        (
            "/v1/classify",
            r#"{"model": "sentiment", "inputs": ["what a great film"]}"#,
        ),
    ];
    for round in 0..2 {
        for (route, body) in requests {
            let (status, text) = http(addr, "POST", route, Some(body));
            assert_eq!(status, 200, "round {round} POST {route}: {text}");
        }
    }
    let (status, _) = http(
        addr,
        "POST",
        "/v1/embed",
        Some(r#"{"model": "no-such-model", "inputs": ["x"]}"#),
    );
    assert!((400..500).contains(&status), "unknown model: {status}");

    // Some series appear a moment after the requests (the L2 writer, the store's flush): poll.
    let deadline = Instant::now() + METRICS_TIMEOUT;
    let (absent, text) = loop {
        let (status, text) = http(addr, "GET", "/metrics", None);
        assert_eq!(status, 200, "GET /metrics: {text}");
        let have = exported(&text);
        let absent: Vec<(String, BTreeSet<String>)> = n
            .metrics
            .iter()
            .filter(|(name, _)| !have.contains(*name))
            .filter(|(name, _)| !failure_only.contains_key(name.as_str()))
            .filter(|(name, _)| redis || !NEEDS_REDIS.contains(&name.as_str()))
            .map(|(name, from)| (name.clone(), from.clone()))
            .collect();
        if absent.is_empty() || Instant::now() >= deadline {
            break (absent, text);
        }
        thread::sleep(Duration::from_millis(500));
    };
    let exported_names = exported(&text);
    for (name, why) in &failure_only {
        if !exported_names.contains(*name) {
            eprintln!("note: {name} not exported yet ({why}); checked against metrics.rs instead");
        }
    }

    // Graceful shutdown: SIGTERM, exit 0 (bounded).
    let pid = server.0.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM {pid} failed: {kill}");
    let status = wait_timeout(&mut server.0, SHUTDOWN_TIMEOUT).unwrap_or_else(|| {
        panic!("nlpd serve did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM")
    });

    assert!(
        absent.is_empty(),
        "metrics read by the rules or the dashboard but not exported by nlpd serve:\n{}\n\n--- /metrics ---\n{text}",
        absent
            .iter()
            .map(|(name, from)| format!("  {name} (read by {})", from.iter().cloned().collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        status.success(),
        "nlpd serve exited with {status} after SIGTERM, expected 0"
    );
}
