//! JSONL in, JSONL out, with per-line errors that name the line number.

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// One input line: its 1-based number and the parsed object, or why it is unusable.
pub struct Record {
    pub line: usize,
    pub value: std::result::Result<Map<String, Value>, String>,
}

/// A progress bar on stderr for `--input FILE` (hidden when stderr is not a terminal or for stdin).
pub fn progress(input: Option<&Path>) -> indicatif::ProgressBar {
    let Some(path) = input else {
        return indicatif::ProgressBar::hidden();
    };
    let lines = std::fs::File::open(path)
        .map(|f| BufReader::new(f).lines().count() as u64)
        .unwrap_or(0);
    let bar = indicatif::ProgressBar::new(lines);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} lines [{elapsed_precise} < {eta}] {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Reads records from `--input FILE` or stdin. JSON objects are taken as they are; a line that does
/// not start with `{` is plain text, taken as `{"text": line}`.
pub fn records(input: Option<&Path>) -> Result<Box<dyn Iterator<Item = Record>>> {
    let reader: Box<dyn BufRead> = match input {
        Some(p) => Box::new(BufReader::new(
            std::fs::File::open(p)
                .with_context(|| format!("cannot open input file {}", p.display()))?,
        )),
        None => Box::new(BufReader::new(std::io::stdin())),
    };
    Ok(Box::new(reader.lines().enumerate().map(|(i, line)| {
        Record {
            line: i + 1,
            value: match line {
                Err(e) => Err(format!("cannot read line: {e}")),
                Ok(l) => parse_line(&l),
            },
        }
    })))
}

fn parse_line(line: &str) -> std::result::Result<Map<String, Value>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Err("empty line".into());
    }
    if trimmed.starts_with('{') {
        match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err("not a JSON object".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        }
    } else {
        let mut m = Map::new();
        m.insert("text".into(), Value::String(line.to_string()));
        Ok(m)
    }
}

/// A required non-empty string field of a record.
pub fn text_field<'a>(
    m: &'a Map<String, Value>,
    field: &str,
) -> std::result::Result<&'a str, String> {
    match m.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(format!("`{field}` is empty")),
        Some(_) => Err(format!("`{field}` must be a string")),
        None => Err(format!("missing field `{field}`")),
    }
}

/// An optional string field.
pub fn opt_text_field<'a>(
    m: &'a Map<String, Value>,
    field: &str,
) -> std::result::Result<Option<&'a str>, String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => text_field(m, field).map(Some),
    }
}

/// Writes results and error lines, counting failures.
pub struct Output {
    out: std::io::StdoutLock<'static>,
    pub failed: usize,
}

impl Output {
    pub fn new() -> Self {
        Output {
            out: std::io::stdout().lock(),
            failed: 0,
        }
    }

    pub fn value(&mut self, v: &Value) -> Result<()> {
        serde_json::to_writer(&mut self.out, v)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    pub fn error(&mut self, line: usize, message: &str) -> Result<()> {
        self.failed += 1;
        eprintln!("nlpd: line {line}: {message}");
        self.value(&json!({"line": line, "error": message}))
    }

    pub fn raw(&mut self) -> &mut std::io::StdoutLock<'static> {
        &mut self.out
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Runs `per_batch` over chunks of valid inputs, keeping output in input order. When a whole batch
/// fails, each of its items is retried alone so the error lands on the right line.
pub fn process_batched<T, R>(
    records: Box<dyn Iterator<Item = Record>>,
    bar: &indicatif::ProgressBar,
    chunk: usize,
    extract: impl Fn(&Map<String, Value>) -> std::result::Result<T, String>,
    mut per_batch: impl FnMut(&[T]) -> std::result::Result<Vec<R>, String>,
    render: impl Fn(R) -> Value,
) -> Result<usize> {
    let mut out = Output::new();
    // Per input line: `None` when its item is in `items`, else the line's error.
    let mut lines: Vec<(usize, Option<String>)> = Vec::new();
    let mut items: Vec<T> = Vec::new();
    for rec in records {
        match rec.value.and_then(|m| extract(&m)) {
            Ok(item) => {
                lines.push((rec.line, None));
                items.push(item);
            }
            Err(e) => lines.push((rec.line, Some(e))),
        }
        if lines.len() >= chunk {
            let n = lines.len() as u64;
            emit(&mut lines, &mut items, &mut per_batch, &render, &mut out)?;
            bar.inc(n);
        }
    }
    let n = lines.len() as u64;
    emit(&mut lines, &mut items, &mut per_batch, &render, &mut out)?;
    bar.inc(n);
    bar.finish_and_clear();
    Ok(out.failed)
}

fn emit<T, R>(
    lines: &mut Vec<(usize, Option<String>)>,
    items: &mut Vec<T>,
    per_batch: &mut impl FnMut(&[T]) -> std::result::Result<Vec<R>, String>,
    render: &impl Fn(R) -> Value,
    out: &mut Output,
) -> Result<()> {
    let results: Vec<std::result::Result<R, String>> = if items.is_empty() {
        Vec::new()
    } else {
        match per_batch(items) {
            Ok(v) if v.len() == items.len() => v.into_iter().map(Ok).collect(),
            _ => items
                .chunks(1)
                .map(|one| {
                    per_batch(one).and_then(|mut v| v.pop().ok_or_else(|| "no result".to_string()))
                })
                .collect(),
        }
    };
    let mut results = results.into_iter();
    for (line, err) in lines.drain(..) {
        match err {
            Some(e) => out.error(line, &e)?,
            None => match results.next() {
                Some(Ok(v)) => out.value(&render(v))?,
                Some(Err(e)) => out.error(line, &e)?,
                None => out.error(line, "internal error: missing result")?,
            },
        }
    }
    items.clear();
    out.flush()
}
