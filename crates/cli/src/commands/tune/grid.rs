//! The settings `nlpd tune` sweeps: `--max-batch-tokens`, `--max-batch-size` (lists or
//! doubling ranges) and `--max-wait-us` (a list), and their cartesian product.

use serde::Serialize;

/// Largest accepted values: far beyond any useful setting, low enough that a typo is caught.
const MAX_TOKENS: u64 = 1 << 24;
const MAX_SIZE: u64 = 1 << 16;
const MAX_WAIT_US: u64 = 10_000_000;

/// The values of one swept flag, in the order given (duplicates dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sweep(pub Vec<u64>);

/// `A,B,C` or `MIN..MAX` (MIN, 2·MIN, 4·MIN, ... up to MAX; MAX itself is included when the
/// doubling reaches it exactly): values from `lo` to `hi`.
fn parse_sweep(s: &str, lo: u64, hi: u64, ranges: bool) -> Result<Sweep, String> {
    let num = |t: &str| -> Result<u64, String> {
        let t = t.trim().replace('_', "");
        let v: u64 = t
            .parse()
            .map_err(|_| format!("`{t}` is not a whole number"))?;
        if v < lo || v > hi {
            return Err(format!("{v} is outside {lo}..={hi}"));
        }
        Ok(v)
    };
    let mut out = Vec::new();
    if let Some((a, b)) = s.split_once("..") {
        if !ranges {
            return Err(format!("`{s}`: give a list (e.g. 0,500,2000), not a range"));
        }
        let (a, b) = (num(a)?, num(b.trim_start_matches('='))?);
        if a == 0 || a > b {
            return Err(format!(
                "`{s}`: a range MIN..MAX needs 1 <= MIN <= MAX (it doubles from MIN)"
            ));
        }
        let mut v = a;
        while v <= b {
            out.push(v);
            v = v.saturating_mul(2);
        }
    } else {
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let v = num(part)?;
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    if out.is_empty() {
        return Err("give at least one value".into());
    }
    Ok(Sweep(out))
}

pub fn parse_tokens(s: &str) -> Result<Sweep, String> {
    parse_sweep(s, 1, MAX_TOKENS, true)
}

pub fn parse_sizes(s: &str) -> Result<Sweep, String> {
    parse_sweep(s, 1, MAX_SIZE, true)
}

pub fn parse_waits(s: &str) -> Result<Sweep, String> {
    parse_sweep(s, 0, MAX_WAIT_US, false)
}

/// One point of the sweep: the server's batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub max_batch_tokens: u64,
    pub max_batch_size: u64,
    pub max_wait_us: u64,
}

impl Setting {
    /// The `nlpd serve` flags that apply it.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            format!("--max-batch-tokens={}", self.max_batch_tokens),
            format!("--max-batch-size={}", self.max_batch_size),
            format!("--max-wait-us={}", self.max_wait_us),
        ]
    }

    /// `tokens=16384 size=32 wait=0us`
    pub fn label(&self) -> String {
        format!(
            "tokens={} size={} wait={}us",
            self.max_batch_tokens, self.max_batch_size, self.max_wait_us
        )
    }
}

/// Every combination, token budget outermost, then batch size, then wait.
pub fn grid(tokens: &Sweep, sizes: &Sweep, waits: &Sweep) -> Vec<Setting> {
    let mut out = Vec::with_capacity(tokens.0.len() * sizes.0.len() * waits.0.len());
    for &t in &tokens.0 {
        for &s in &sizes.0 {
            for &w in &waits.0 {
                out.push(Setting {
                    max_batch_tokens: t,
                    max_batch_size: s,
                    max_wait_us: w,
                });
            }
        }
    }
    out
}

/// `nlpd serve` flags tune sets itself (per setting, or for the server it starts): a
/// `--serve-arg` may not set them.
const OWN_FLAGS: &[&str] = &[
    "--max-batch-tokens",
    "--max-batch-size",
    "--max-wait-us",
    "--host",
    "--port",
    "--models-dir",
];

/// Refuses `--serve-arg`s that would override the swept settings or tune's own server flags
/// (`--model` too when tune's `--model` names the model).
pub fn check_serve_args(args: &[String], has_model: bool) -> Result<(), String> {
    for a in args {
        let flag = a.split('=').next().unwrap_or(a);
        if OWN_FLAGS.contains(&flag) || (has_model && flag == "--model") {
            return Err(format!(
                "--serve-arg {a}: tune sets {flag} itself (sweep it with tune's own flags)"
            ));
        }
        if flag == "--config" {
            return Err(format!(
                "--serve-arg {a}: a config file could set the swept keys; pass its other settings as --serve-arg flags"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_double_and_lists_keep_their_order() {
        assert_eq!(parse_sizes("4..64").unwrap().0, vec![4, 8, 16, 32, 64]);
        assert_eq!(parse_sizes("4..=64").unwrap().0, vec![4, 8, 16, 32, 64]);
        assert_eq!(parse_sizes("3..20").unwrap().0, vec![3, 6, 12]);
        assert_eq!(parse_sizes("8").unwrap().0, vec![8]);
        assert_eq!(parse_tokens("4096, 1024,4096").unwrap().0, vec![4096, 1024]);
        assert_eq!(parse_waits("0,500,2000").unwrap().0, vec![0, 500, 2000]);
        assert_eq!(parse_tokens("16_384").unwrap().0, vec![16384]);
    }

    #[test]
    fn bad_sweeps_say_why() {
        for (bad, why) in [
            ("0", "outside"),
            ("x", "not a whole number"),
            ("64..4", "MIN <= MAX"),
            ("4..x", "not a whole number"),
            ("", "at least one"),
            (",", "at least one"),
            ("99999999", "outside"),
        ] {
            let e = parse_sizes(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(parse_waits("0..100").unwrap_err().contains("list"));
        assert!(parse_waits("20000000").unwrap_err().contains("outside"));
    }

    #[test]
    fn the_grid_is_the_product_in_a_fixed_order() {
        let g = grid(
            &Sweep(vec![1024, 2048]),
            &Sweep(vec![8, 16]),
            &Sweep(vec![0, 100]),
        );
        assert_eq!(g.len(), 8);
        assert_eq!(
            g[0],
            Setting {
                max_batch_tokens: 1024,
                max_batch_size: 8,
                max_wait_us: 0
            }
        );
        assert_eq!(g[1].max_wait_us, 100);
        assert_eq!(g[2].max_batch_size, 16);
        assert_eq!(g[4].max_batch_tokens, 2048);
        assert_eq!(
            g[7].serve_args(),
            vec![
                "--max-batch-tokens=2048",
                "--max-batch-size=16",
                "--max-wait-us=100"
            ]
        );
    }

    #[test]
    fn serve_args_may_not_override_the_sweep() {
        assert!(check_serve_args(&["--quantize=int8".into()], true).is_ok());
        assert!(check_serve_args(&["--model=x=/m".into()], false).is_ok());
        for bad in ["--max-batch-size=8", "--port=1", "--config=a.toml"] {
            assert!(check_serve_args(&[bad.into()], false).is_err(), "{bad}");
        }
        assert!(check_serve_args(&["--model=x=/m".into()], true).is_err());
    }
}
