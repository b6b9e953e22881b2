//! Runtime settings: batching knobs, the memory budget, and size and duration parsing.

use std::time::Duration;

/// Dynamic batching per model.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most padded tokens (longest item × items) in one forward pass.
    pub max_batch_tokens: usize,
    /// Most items in one forward pass.
    pub max_batch_size: usize,
    /// How long a worker may wait for a batch to fill when it is not full (0: never wait).
    pub max_wait: Duration,
    /// Most items waiting per model; beyond that requests get 429.
    pub max_queue: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_tokens: 16_384,
            max_batch_size: 64,
            max_wait: Duration::ZERO,
            max_queue: 4096,
        }
    }
}

/// Splits `1.5GiB` into `(1.5, "gib")`: the leading number and the lower-cased unit after it.
fn number_and_unit(s: &str, what: &str) -> Result<(f64, String), String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("`{s}` is not {what}"))?;
    Ok((value, unit.trim().to_ascii_lowercase()))
}

/// Parses a byte size: `123`, `512KiB`, `2GiB`, `1.5GB`, `300MB` (case-insensitive).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let (value, unit) = number_and_unit(s, "a size (e.g. 2GiB, 512MB, 1000000)")?;
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    Ok((value * mult).round() as u64)
}

/// Parses a duration: `500ms`, `30s`, `10m`, `1h`, `1d`, or a plain number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (value, unit) = number_and_unit(s, "a duration (e.g. 500ms, 30s, 10m, 1h)")?;
    let secs = match unit.as_str() {
        "ms" => value / 1000.0,
        "" | "s" | "sec" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => return Err(format!("unknown duration unit `{other}` in `{s}`")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 weeks").unwrap_err().contains("unknown"));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("300 mb"), Ok(300_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("3 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
    }
}
