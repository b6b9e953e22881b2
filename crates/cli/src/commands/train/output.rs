//! Writing the trained model directory: config.json, model.safetensors, train.json, made in a
//! temporary directory beside --out and renamed into place.

use super::cache::hash_file;
use anyhow::{bail, Context, Result};
use nlpd_engine::heads::Pooling;
use nlpd_engine::pooled::{HeadConfig, PooledHead};
use std::path::{Component, Path, PathBuf};

/// What config.json says about the head.
pub struct HeadSpec<'a> {
    pub head: &'a PooledHead,
    pub encoder_dir: &'a Path,
    pub encoder_ref: Option<&'a str>,
    pub pooling: Pooling,
    pub normalize: bool,
    pub labels: &'a [String],
}

pub struct Written {
    pub head_blake3: String,
}

fn is_head_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| HeadConfig::is_head(&v))
}

/// Refuses an --out that exists (a non-empty directory) unless --overwrite, and never replaces
/// a directory that is not a head written by `nlpd train`.
pub fn check_out_dir(out: &Path, overwrite: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!("--out {} exists and is not a directory", out.display());
    }
    let empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot read {}", out.display()))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "--out {} exists: pass --overwrite to replace it",
            out.display()
        );
    }
    if !is_head_dir(out) {
        bail!(
            "refusing to replace {}: it is not a model directory written by `nlpd train`",
            out.display()
        );
    }
    Ok(())
}

/// The command line as typed, with the program named `nlpd`.
pub fn command_line() -> String {
    let quote = |a: String| {
        if !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@+".contains(c))
        {
            a
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    std::iter::once("nlpd".to_string())
        .chain(std::env::args().skip(1).map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `p` made absolute against the working directory, `.` and `..` resolved lexically (symbolic
/// links are kept, so a models dir reached through a link stays that path).
fn absolute(p: &Path) -> Result<PathBuf> {
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("cannot read the working directory")?
            .join(p)
    };
    let mut out = PathBuf::new();
    for c in full.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The path of `to` relative to the directory `from` (both absolute, lexically normalized).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<Component> = from.components().collect();
    let t: Vec<Component> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c);
    }
    if rel.as_os_str().is_empty() {
        rel.push(".");
    }
    rel
}

/// How config.json names the encoder: `--encoder-ref`, else the encoder relative to `out`.
fn encoder_reference(out: &Path, spec: &HeadSpec) -> Result<String> {
    if let Some(r) = spec.encoder_ref {
        return Ok(r.to_string());
    }
    let (from, to) = (absolute(out)?, absolute(spec.encoder_dir)?);
    // Only the root in common: the absolute path says more than a climb to `/`.
    let shared = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    let rel = if shared <= 1 {
        to
    } else {
        relative(&from, &to)
    };
    rel.to_str().map(str::to_string).with_context(|| {
        format!(
            "the encoder path {} is not UTF-8: pass --encoder-ref",
            rel.display()
        )
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn pretty(v: &impl serde::Serialize) -> Result<Vec<u8>> {
    let mut s = serde_json::to_vec_pretty(v)?;
    s.push(b'\n');
    Ok(s)
}

/// Writes the model directory `out` (replacing it when `overwrite`, checked before training).
pub fn write_model_dir(
    out: &Path,
    overwrite: bool,
    spec: &HeadSpec,
    mut record: serde_json::Value,
) -> Result<Written> {
    check_out_dir(out, overwrite)?;
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("--out {} has no usable directory name", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ok();
    }
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = (|| -> Result<Written> {
        let encoder = encoder_reference(out, spec)?;
        let config = HeadConfig::new(
            encoder,
            spec.pooling,
            spec.normalize,
            spec.head.head_type(),
            spec.head.input_size(),
            spec.head.dense.as_ref().map(|d| d.n_out),
            spec.labels,
        );
        write(&tmp.join("config.json"), &pretty(&config)?)?;
        let weights = tmp.join("model.safetensors");
        spec.head.save(&weights)?;
        // Readable like the other files (the safetensors writer creates it owner-only).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&weights, std::fs::Permissions::from_mode(0o644))
                .with_context(|| format!("cannot set the mode of {}", weights.display()))?;
        }
        let head_blake3 = hash_file(&weights)?;
        record["head_blake3"] = head_blake3.clone().into();
        write(&tmp.join("train.json"), &pretty(&record)?)?;
        Ok(Written { head_blake3 })
    })();
    let written = match result {
        Ok(w) => w,
        Err(e) => {
            std::fs::remove_dir_all(&tmp).ok();
            return Err(e);
        }
    };
    if out.exists() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("cannot replace {}", out.display()))?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), out.display()))?;
    if nlpd_engine::modeldir::EncoderDir::open(out).is_err() {
        eprintln!(
            "nlpd train: note: config.json's encoder reference does not resolve from {} yet; \
             the model loads once the encoder is there",
            out.display()
        );
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_prefix() {
        assert_eq!(
            relative(Path::new("/m/sentiment"), Path::new("/m/all-MiniLM-L6-v2")),
            PathBuf::from("../all-MiniLM-L6-v2")
        );
        assert_eq!(
            relative(Path::new("/r/pack/sentiment"), Path::new("/r/models/enc")),
            PathBuf::from("../../models/enc")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a")),
            PathBuf::from(".")
        );
    }

    #[test]
    fn absolute_resolves_dots_lexically() -> Result<()> {
        assert_eq!(absolute(Path::new("/a/./b/../c"))?, PathBuf::from("/a/c"));
        Ok(())
    }

    #[test]
    fn out_dir_rules() -> Result<()> {
        let base = std::env::temp_dir().join(format!("nlpd-out-test-{}", std::process::id()));
        let dir = base.join("x");
        std::fs::create_dir_all(&dir)?;
        check_out_dir(&dir, false)?; // empty is fine
        std::fs::write(dir.join("config.json"), "{}")?;
        let e = check_out_dir(&dir, false).unwrap_err().to_string();
        assert!(e.contains("pass --overwrite"), "{e}");
        let e = check_out_dir(&dir, true).unwrap_err().to_string();
        assert!(e.contains("refusing to replace"), "{e}");
        std::fs::write(
            dir.join("config.json"),
            r#"{"model_type":"nlpd-pooled-classifier"}"#,
        )?;
        check_out_dir(&dir, true)?;
        std::fs::remove_dir_all(&base).ok();
        Ok(())
    }
}
