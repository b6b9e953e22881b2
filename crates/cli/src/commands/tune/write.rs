//! `--write FILE`: the recommended settings as `nlpd serve --config` reads them (top-level keys
//! named as the flags), merged into an existing file line by line so its other keys, tables and
//! comments stay as they were.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// The serve keys tune writes and their values.
pub type Keys<'a> = &'a [(&'a str, i64)];

/// `max-batch-size` and `max_batch_size` are the same key to `nlpd serve --config`.
fn same_key(a: &str, b: &str) -> bool {
    a.replace('_', "-") == b.replace('_', "-")
}

/// The bare key a `key = value` line sets (`None` for comments, blank lines and headers).
fn line_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    let (k, _) = t.split_once('=')?;
    let k = k.trim().trim_matches('"');
    (!k.is_empty()).then_some(k)
}

/// A table header line (`[name]`, `[[name]]`), not a line of a multi-line array.
fn is_header(line: &str) -> bool {
    let t = line.trim();
    let t = t.split(" #").next().unwrap_or(t).trim_end();
    t.starts_with('[') && t.ends_with(']') && !t.ends_with("],") && !t.contains('=')
}

/// `text` with each key set at the top level: an existing line for it (either spelling) is
/// replaced, a second spelling removed, a missing key added after the last top-level line.
/// Fails if `text` is not valid TOML or the result would not read back as intended.
pub fn merge(text: &str, keys: Keys, comment: &str) -> Result<String> {
    let before: toml::Table = text.parse().context("it is not valid TOML")?;
    let lines: Vec<&str> = text.lines().collect();
    let top_end = lines
        .iter()
        .position(|l| is_header(l))
        .unwrap_or(lines.len());
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + keys.len() + 2);
    let mut done = vec![false; keys.len()];
    for (i, line) in lines.iter().enumerate() {
        let hit = (i < top_end)
            .then(|| line_key(line))
            .flatten()
            .and_then(|k| keys.iter().position(|(name, _)| same_key(k, name)));
        match hit {
            Some(j) if done[j] => {}
            Some(j) => {
                out.push(format!("{} = {}", keys[j].0, keys[j].1));
                done[j] = true;
            }
            None => out.push(line.to_string()),
        }
    }
    let missing: Vec<String> = keys
        .iter()
        .zip(&done)
        .filter(|(_, d)| !**d)
        .map(|((k, v), _)| format!("{k} = {v}"))
        .collect();
    if !missing.is_empty() {
        // After the last non-blank top-level line (before the first table, if any).
        let shift = out.len() as isize - lines.len() as isize;
        let top_end_out = (top_end as isize + shift).max(0) as usize;
        let at = out[..top_end_out]
            .iter()
            .rposition(|l| !l.trim().is_empty())
            .map(|i| i + 1)
            .unwrap_or(0);
        let mut block = vec![format!("# {comment}")];
        block.extend(missing);
        if at < out.len() {
            block.push(String::new());
        }
        out.splice(at..at, block);
    }
    let mut merged = out.join("\n");
    merged.push('\n');

    // Read it back: our keys hold our values, everything else is unchanged.
    let after: toml::Table = merged
        .parse()
        .context("the merged file would not be valid TOML (not written)")?;
    for (k, v) in keys {
        let got: Vec<_> = after.iter().filter(|(a, _)| same_key(a, k)).collect();
        if got.len() != 1 || got[0].1.as_integer() != Some(*v) {
            bail!("the merged file would not set {k} = {v} (not written)");
        }
    }
    let others = |t: &toml::Table| -> toml::Table {
        t.iter()
            .filter(|(a, _)| !keys.iter().any(|(k, _)| same_key(a, k)))
            .map(|(a, v)| (a.clone(), v.clone()))
            .collect()
    };
    if others(&before) != others(&after) {
        bail!("merging would change other keys of the file (not written)");
    }
    Ok(merged)
}

/// Writes `keys` into `path` (created if missing), through a temporary file and a rename.
pub fn write(path: &Path, keys: Keys, comment: &str) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(e).with_context(|| format!("--write: cannot read {}", path.display()))
        }
    };
    let merged =
        merge(&existing, keys, comment).with_context(|| format!("--write {}", path.display()))?;
    let name = path
        .file_name()
        .with_context(|| format!("--write {}: not a file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.nlpd-tune.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, merged)
        .with_context(|| format!("--write: cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("--write: cannot replace {}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: Keys = &[("max-batch-size", 32), ("max-wait-us", 500)];

    #[test]
    fn a_new_file_gets_the_keys() {
        let m = merge("", KEYS, "by tune").unwrap();
        assert_eq!(m, "# by tune\nmax-batch-size = 32\nmax-wait-us = 500\n");
    }

    #[test]
    fn existing_keys_are_replaced_and_others_kept() {
        let text =
            "# my server\nport = 9000\nmax_batch_size = 8 # old\n\n[extra]\nmax-wait-us = 1\n";
        let m = merge(text, KEYS, "by tune").unwrap();
        let t: toml::Table = m.parse().unwrap();
        assert_eq!(t["port"].as_integer(), Some(9000));
        assert_eq!(t["max-batch-size"].as_integer(), Some(32));
        assert!(t.get("max_batch_size").is_none());
        assert_eq!(t["max-wait-us"].as_integer(), Some(500));
        // The table's own key is not the top-level one and stays.
        assert_eq!(t["extra"]["max-wait-us"].as_integer(), Some(1));
        assert!(m.starts_with("# my server\nport = 9000\n"), "{m}");
        // The new key goes before the table.
        assert!(
            m.find("max-wait-us = 500").unwrap() < m.find("[extra]").unwrap(),
            "{m}"
        );
    }

    #[test]
    fn both_spellings_collapse_into_one_line() {
        let text = "max-batch-size = 4\nmax_batch_size = 8\nhost = \"127.0.0.1\"\n";
        let m = merge(text, KEYS, "c").unwrap();
        assert_eq!(m.matches("batch").count(), 1, "{m}");
        assert!(m.contains("host = \"127.0.0.1\""));
    }

    #[test]
    fn multi_line_arrays_are_not_mistaken_for_tables() {
        let text = "model = [\n  \"a=/m\",\n]\n";
        let m = merge(text, KEYS, "c").unwrap();
        let t: toml::Table = m.parse().unwrap();
        assert_eq!(t["model"].as_array().map(|a| a.len()), Some(1));
        assert_eq!(t["max-batch-size"].as_integer(), Some(32));
    }

    #[test]
    fn invalid_toml_is_refused() {
        let e = merge("port = = 1", KEYS, "c").unwrap_err();
        assert!(format!("{e:#}").contains("not valid TOML"), "{e:#}");
    }
}
