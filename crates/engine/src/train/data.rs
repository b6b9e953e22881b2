//! Labelled examples from JSONL: one object per line with a text field and a label field.
//! Blank lines are skipped; every other problem is an error naming the file and line.

use super::error::{Result, TrainError};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Which fields hold the text, the label and (when cross-domain validation needs it) the
/// source each example comes from.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    pub text: &'a str,
    pub label: &'a str,
    pub source: Option<&'a str>,
}

/// Examples of one file: texts, label ids, the line each came from and, when
/// [`Fields::source`] is set, each one's source (empty otherwise).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Examples {
    pub texts: Vec<String>,
    pub labels: Vec<usize>,
    pub lines: Vec<usize>,
    pub sources: Vec<String>,
}

impl Examples {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Rows per label id.
    pub fn counts(&self, n_labels: usize) -> Vec<usize> {
        let mut c = vec![0; n_labels];
        for &l in &self.labels {
            if let Some(n) = c.get_mut(l) {
                *n += 1;
            }
        }
        c
    }
}

struct Row {
    line: usize,
    text: String,
    label: String,
    source: Option<String>,
}

fn read_rows(path: &Path, fields: &Fields) -> Result<Vec<Row>> {
    let file = std::fs::File::open(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|source| TrainError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|source| TrainError::Json {
            path: path.to_path_buf(),
            line: n,
            source,
        })?;
        let bad = |message: String| TrainError::BadLine {
            path: path.to_path_buf(),
            line: n,
            message,
        };
        let Value::Object(obj) = value else {
            return Err(bad(format!(
                "expected a JSON object with `{}` and `{}`",
                fields.text, fields.label
            )));
        };
        let get = |field: &str| {
            obj.get(field).ok_or_else(|| TrainError::MissingField {
                path: path.to_path_buf(),
                line: n,
                field: field.to_string(),
            })
        };
        let text = match get(fields.text)? {
            Value::String(s) if !s.trim().is_empty() => s.clone(),
            Value::String(_) => return Err(bad(format!("field `{}` is empty", fields.text))),
            other => {
                return Err(bad(format!(
                    "field `{}` must be a string, got {}",
                    fields.text,
                    kind(other)
                )))
            }
        };
        let label = match get(fields.label)? {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Number(x) if x.is_i64() || x.is_u64() => x.to_string(),
            Value::String(_) => return Err(bad(format!("field `{}` is empty", fields.label))),
            other => {
                return Err(bad(format!(
                    "field `{}` must be a string or an integer, got {}",
                    fields.label,
                    kind(other)
                )))
            }
        };
        let source = match fields.source {
            None => None,
            Some(field) => match get(field)? {
                Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                other => {
                    return Err(bad(format!(
                        "field `{field}` must be a non-empty string, got {}",
                        kind(other)
                    )))
                }
            },
        };
        rows.push(Row {
            line: n,
            text,
            label,
            source,
        });
    }
    if rows.is_empty() {
        return Err(TrainError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn to_examples(path: &Path, rows: Vec<Row>, labels: &[String]) -> Result<Examples> {
    let ids: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut ex = Examples::default();
    for r in rows {
        let Some(&id) = ids.get(r.label.as_str()) else {
            return Err(TrainError::UnknownLabel {
                path: path.to_path_buf(),
                line: r.line,
                label: r.label,
                known: labels.join(", "),
            });
        };
        ex.texts.push(r.text);
        ex.labels.push(id);
        ex.lines.push(r.line);
        ex.sources.extend(r.source);
    }
    Ok(ex)
}

/// Reads training data. `labels`: the label set in id order (`--labels`); `None` takes the
/// labels found in the file, sorted. Every label must have at least one example, and there must
/// be at least two labels.
pub fn read_training(
    path: &Path,
    fields: &Fields,
    labels: Option<&[String]>,
) -> Result<(Examples, Vec<String>)> {
    let rows = read_rows(path, fields)?;
    let labels: Vec<String> = match labels {
        Some(l) => {
            let unique: BTreeSet<&String> = l.iter().collect();
            if unique.len() != l.len() || l.iter().any(|x| x.is_empty()) {
                return Err(TrainError::InvalidOption {
                    option: "labels",
                    message: "labels must be distinct and non-empty".into(),
                });
            }
            l.to_vec()
        }
        None => rows
            .iter()
            .map(|r| r.label.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    if labels.len() < 2 {
        return Err(TrainError::BadData {
            path: path.to_path_buf(),
            message: format!(
                "a classifier needs at least two labels, found {}",
                labels.join(", ")
            ),
        });
    }
    let ex = to_examples(path, rows, &labels)?;
    if let Some((l, _)) = labels
        .iter()
        .zip(ex.counts(labels.len()))
        .find(|(_, n)| *n == 0)
    {
        return Err(TrainError::BadData {
            path: path.to_path_buf(),
            message: format!("label `{l}` has no examples"),
        });
    }
    Ok((ex, labels))
}

/// Reads evaluation data whose labels must all be among `labels` (not all need to occur).
pub fn read_eval(path: &Path, fields: &Fields, labels: &[String]) -> Result<Examples> {
    to_examples(path, read_rows(path, fields)?, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    const FIELDS: Fields = Fields {
        text: "text",
        label: "label",
        source: None,
    };

    fn file(name: &str, body: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("nlpd-data-{}-{name}", std::process::id()));
        let mut f = std::fs::File::create(&p).unwrap_or_else(|e| panic!("{e}"));
        f.write_all(body.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    fn err(name: &str, body: &str) -> String {
        let p = file(name, body);
        let e = read_training(&p, &FIELDS, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        std::fs::remove_file(&p).ok();
        e
    }

    #[test]
    fn reads_labels_sorted_and_skips_blank_lines() -> Result<()> {
        let p = file(
            "ok",
            "{\"text\":\"good\",\"label\":\"pos\"}\n\n{\"text\":\"bad\",\"label\":\"neg\",\"x\":1}\n",
        );
        let (ex, labels) = read_training(&p, &FIELDS, None)?;
        assert_eq!(labels, vec!["neg", "pos"]);
        assert_eq!(ex.labels, vec![1, 0]);
        assert_eq!(ex.lines, vec![1, 3]);
        let fixed = ["pos".to_string(), "neg".to_string()];
        let (ex, _) = read_training(&p, &FIELDS, Some(&fixed))?;
        assert_eq!(ex.labels, vec![0, 1]);
        std::fs::remove_file(&p).ok();
        Ok(())
    }

    #[test]
    fn sources_are_read_when_asked_and_required_then() -> Result<()> {
        let p = file(
            "src",
            "{\"text\":\"a\",\"label\":\"x\",\"source\":\"s1\"}\n{\"text\":\"b\",\"label\":\"y\",\"source\":\"s2\"}\n",
        );
        let with = Fields {
            source: Some("source"),
            ..FIELDS
        };
        let (ex, _) = read_training(&p, &with, None)?;
        assert_eq!(ex.sources, vec!["s1", "s2"]);
        assert!(read_training(&p, &FIELDS, None)?.0.sources.is_empty());
        let other = Fields {
            source: Some("domain"),
            ..FIELDS
        };
        let e = read_training(&p, &other, None).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains(":1: missing field `domain`")),
            "{e:?}"
        );
        std::fs::remove_file(&p).ok();
        Ok(())
    }

    #[test]
    fn bad_lines_are_named() {
        let ok = "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"y\"}\n";
        assert!(err("e1", "").contains("no examples"));
        assert!(err("e2", "\n  \n").contains("no examples"));
        assert!(
            err("e3", &format!("{ok}{{\"label\":\"x\"}}\n")).contains(":3: missing field `text`")
        );
        assert!(
            err("e4", &format!("{ok}{{\"text\":\"c\"}}\n")).contains(":3: missing field `label`")
        );
        assert!(err("e5", &format!("{ok}not json\n")).contains(":3: not valid JSON"));
        assert!(err("e6", &format!("{ok}[1]\n")).contains(":3: expected a JSON object"));
        assert!(
            err("e7", &format!("{{\"text\":\" \",\"label\":\"x\"}}\n{ok}"))
                .contains(":1: field `text` is empty")
        );
        assert!(
            err("e8", &format!("{ok}{{\"text\":\"c\",\"label\":[1]}}\n"))
                .contains("must be a string or an integer, got an array")
        );
        assert!(err("e9", "{\"text\":\"a\",\"label\":\"x\"}\n").contains("at least two labels"));
    }

    #[test]
    fn unknown_and_missing_labels_are_refused() {
        let p = file(
            "lab",
            "{\"text\":\"a\",\"label\":\"x\"}\n{\"text\":\"b\",\"label\":\"z\"}\n",
        );
        let fixed = ["x".to_string(), "y".to_string()];
        let e = read_training(&p, &FIELDS, Some(&fixed))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains(":2: label `z` is not one of the labels (x, y)"),
            "{e}"
        );
        let e = read_eval(&p, &FIELDS, &fixed)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(":2: label `z`"), "{e}");
        let with_z = ["x".to_string(), "y".to_string(), "z".to_string()];
        let e = read_training(&p, &FIELDS, Some(&with_z))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("label `y` has no examples"), "{e}");
        assert!(read_eval(&p, &FIELDS, &with_z).is_ok());
        std::fs::remove_file(&p).ok();
    }
}
