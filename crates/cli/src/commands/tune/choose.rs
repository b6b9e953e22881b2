//! Which setting `nlpd tune` recommends, and why: the highest throughput among the settings that
//! meet the constraints (p99 target, memory limit, no failed requests); when none does, the one
//! closest to meeting them.

/// Settings whose throughput is within this fraction of the best count as tied; the lowest p99
/// among them wins (a 1% throughput difference is noise on a busy machine, a 2x p99 is not).
pub const TIE: f64 = 0.02;

/// `--p99-target` and `--memory-limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Constraints {
    pub p99_ms: Option<f64>,
    pub memory_bytes: Option<u64>,
}

/// What the choice needs of one measured setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    pub inputs_per_s: f64,
    /// `None` without a single successful reply.
    pub p99_ms: Option<f64>,
    /// Peak RSS of the server; `None` where it could not be read.
    pub peak_rss_bytes: Option<u64>,
    pub ok: u64,
    pub errors: u64,
}

/// Why a setting does not meet the constraints.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    NoReplies,
    Errors { errors: u64, total: u64 },
    P99 { ms: f64, target: f64 },
    Memory { bytes: u64, limit: u64 },
    MemoryUnknown,
}

impl Violation {
    /// How far from meeting it, as a fraction over (the "closest" ranking sums these).
    fn excess(&self) -> f64 {
        match self {
            Violation::NoReplies => f64::INFINITY,
            Violation::Errors { errors, total } => *errors as f64 / (*total).max(1) as f64,
            Violation::P99 { ms, target } => ms / target - 1.0,
            Violation::Memory { bytes, limit } => *bytes as f64 / *limit as f64 - 1.0,
            Violation::MemoryUnknown => 1.0,
        }
    }

    /// A short tag for the table's last column.
    pub fn tag(&self) -> String {
        match self {
            Violation::NoReplies => "no replies".into(),
            Violation::Errors { errors, .. } => format!("{errors} errors"),
            Violation::P99 { target, .. } => format!("p99>{}ms", trim(*target)),
            Violation::Memory { limit, .. } => format!("rss>{}", bytes(*limit)),
            Violation::MemoryUnknown => "rss unknown".into(),
        }
    }

    /// In words, for the recommendation's reason.
    pub fn describe(&self) -> String {
        match self {
            Violation::NoReplies => "no request succeeded".into(),
            Violation::Errors { errors, total } => format!("{errors} of {total} requests failed"),
            Violation::P99 { ms, target } => format!(
                "p99 {ms:.1} ms is {:.0}% over the {} ms target",
                (ms / target - 1.0) * 100.0,
                trim(*target)
            ),
            Violation::Memory { bytes: b, limit } => format!(
                "peak RSS {} is {:.0}% over the {} limit",
                bytes(*b),
                (*b as f64 / *limit as f64 - 1.0) * 100.0,
                bytes(*limit)
            ),
            Violation::MemoryUnknown => "its peak RSS could not be read".into(),
        }
    }
}

/// `2.0 GiB`, `512 MiB`
pub fn bytes(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let b = b as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / (1024.0 * 1024.0))
    }
}

/// `50`, `12.5`
fn trim(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// Every constraint `m` breaks (empty: it meets them all).
pub fn violations(m: &Measure, c: &Constraints) -> Vec<Violation> {
    let mut v = Vec::new();
    if m.ok == 0 {
        v.push(Violation::NoReplies);
    } else if m.errors > 0 {
        v.push(Violation::Errors {
            errors: m.errors,
            total: m.ok + m.errors,
        });
    }
    if let (Some(target), Some(ms)) = (c.p99_ms, m.p99_ms) {
        if ms > target {
            v.push(Violation::P99 { ms, target });
        }
    }
    if let Some(limit) = c.memory_bytes {
        match m.peak_rss_bytes {
            Some(b) if b > limit => v.push(Violation::Memory { bytes: b, limit }),
            Some(_) => {}
            None => v.push(Violation::MemoryUnknown),
        }
    }
    v
}

/// The recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Index into the measured settings.
    pub index: usize,
    pub meets_constraints: bool,
    pub reason: String,
}

/// What the constraints say in words: "p99 ≤ 50 ms, peak RSS ≤ 2.0 GiB and no failed requests".
pub fn constraint_words(c: &Constraints) -> String {
    let mut parts = Vec::new();
    if let Some(t) = c.p99_ms {
        parts.push(format!("p99 <= {} ms", trim(t)));
    }
    if let Some(l) = c.memory_bytes {
        parts.push(format!("peak RSS <= {}", bytes(l)));
    }
    parts.push("no failed requests".into());
    match parts.len() {
        1 => parts.remove(0),
        _ => {
            let last = parts.pop().unwrap_or_default();
            format!("{} and {last}", parts.join(", "))
        }
    }
}

/// The recommended setting; `None` only for an empty sweep.
pub fn choose(ms: &[Measure], c: &Constraints) -> Option<Choice> {
    let checked: Vec<Vec<Violation>> = ms.iter().map(|m| violations(m, c)).collect();
    let eligible: Vec<usize> = (0..ms.len()).filter(|&i| checked[i].is_empty()).collect();
    let words = constraint_words(c);
    if !eligible.is_empty() {
        let best = eligible
            .iter()
            .map(|&i| ms[i].inputs_per_s)
            .fold(f64::NEG_INFINITY, f64::max);
        let tied: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|&i| ms[i].inputs_per_s >= best * (1.0 - TIE))
            .collect();
        // Lowest p99, then least memory, then the earlier setting.
        let index = tied.iter().copied().min_by(|&a, &b| {
            let p = |i: usize| ms[i].p99_ms.unwrap_or(f64::INFINITY);
            let r = |i: usize| ms[i].peak_rss_bytes.unwrap_or(u64::MAX);
            p(a).total_cmp(&p(b)).then(r(a).cmp(&r(b))).then(a.cmp(&b))
        })?;
        let of = format!("{} of {}", eligible.len(), ms.len());
        let mut reason = format!(
            "highest throughput ({:.1} inputs/s) among the {of} settings with {words}",
            ms[index].inputs_per_s
        );
        if tied.len() > 1 {
            reason.push_str(&format!(
                "; {} settings are within {:.0}% of the best ({best:.1} inputs/s) and count as tied: this one has the lowest p99 ({})",
                tied.len(),
                TIE * 100.0,
                ms[index]
                    .p99_ms
                    .map(|p| format!("{p:.1} ms"))
                    .unwrap_or_else(|| "n/a".into())
            ));
        }
        return Some(Choice {
            index,
            meets_constraints: true,
            reason,
        });
    }
    // None meets them: the smallest total excess, then the highest throughput.
    let score = |i: usize| checked[i].iter().map(Violation::excess).sum::<f64>();
    let index = (0..ms.len()).min_by(|&a, &b| {
        score(a)
            .total_cmp(&score(b))
            .then(ms[b].inputs_per_s.total_cmp(&ms[a].inputs_per_s))
            .then(a.cmp(&b))
    })?;
    let why = checked[index]
        .iter()
        .map(Violation::describe)
        .collect::<Vec<_>>()
        .join("; ");
    Some(Choice {
        index,
        meets_constraints: false,
        reason: format!(
            "no setting meets {words}; the closest ({:.1} inputs/s): {why}",
            ms[index].inputs_per_s
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn m(ips: f64, p99: f64, rss_mib: u64) -> Measure {
        Measure {
            inputs_per_s: ips,
            p99_ms: Some(p99),
            peak_rss_bytes: Some(rss_mib * MIB),
            ok: 100,
            errors: 0,
        }
    }

    #[test]
    fn without_constraints_the_fastest_wins() {
        let ms = [
            m(100.0, 10.0, 300),
            m(200.0, 40.0, 400),
            m(150.0, 20.0, 350),
        ];
        let c = choose(&ms, &Constraints::default()).unwrap();
        assert_eq!(c.index, 1);
        assert!(c.meets_constraints);
        assert!(c.reason.contains("200.0 inputs/s"), "{}", c.reason);
        assert!(c.reason.contains("3 of 3"), "{}", c.reason);
    }

    #[test]
    fn the_p99_target_and_memory_limit_exclude_settings() {
        let ms = [
            m(100.0, 10.0, 300),
            m(200.0, 40.0, 400),
            m(150.0, 20.0, 350),
        ];
        let p99 = Constraints {
            p99_ms: Some(30.0),
            memory_bytes: None,
        };
        assert_eq!(choose(&ms, &p99).unwrap().index, 2);
        let mem = Constraints {
            p99_ms: None,
            memory_bytes: Some(320 * MIB),
        };
        let c = choose(&ms, &mem).unwrap();
        assert_eq!(c.index, 0);
        assert!(c.reason.contains("1 of 3") && c.reason.contains("peak RSS <= 320 MiB"));
        assert_eq!(
            violations(&ms[1], &mem),
            vec![Violation::Memory {
                bytes: 400 * MIB,
                limit: 320 * MIB
            }]
        );
    }

    #[test]
    fn failed_requests_disqualify() {
        let mut bad = m(500.0, 5.0, 300);
        bad.errors = 3;
        let ms = [bad, m(100.0, 10.0, 300)];
        assert_eq!(choose(&ms, &Constraints::default()).unwrap().index, 1);
    }

    #[test]
    fn near_ties_go_to_the_lower_p99() {
        let ms = [m(200.0, 40.0, 300), m(199.0, 20.0, 300), m(150.0, 5.0, 300)];
        let c = choose(&ms, &Constraints::default()).unwrap();
        assert_eq!(c.index, 1);
        assert!(c.reason.contains("count as tied"), "{}", c.reason);
    }

    #[test]
    fn when_none_meets_the_constraints_the_closest_is_named() {
        // p99 target 10 ms: 12 ms is 20% over, 30 ms is 200% over.
        let ms = [m(300.0, 30.0, 300), m(100.0, 12.0, 300)];
        let c = choose(
            &ms,
            &Constraints {
                p99_ms: Some(10.0),
                memory_bytes: None,
            },
        )
        .unwrap();
        assert_eq!(c.index, 1);
        assert!(!c.meets_constraints);
        assert!(
            c.reason.starts_with("no setting meets p99 <= 10 ms"),
            "{}",
            c.reason
        );
        assert!(c.reason.contains("20% over"), "{}", c.reason);

        // A setting without any reply is never the closest while another has replies.
        let none = Measure {
            inputs_per_s: 0.0,
            p99_ms: None,
            peak_rss_bytes: Some(MIB),
            ok: 0,
            errors: 10,
        };
        let mut slow = m(10.0, 500.0, 300);
        slow.errors = 1;
        let c = choose(
            &[none, slow],
            &Constraints {
                p99_ms: Some(10.0),
                memory_bytes: None,
            },
        )
        .unwrap();
        assert_eq!(c.index, 1);
    }

    #[test]
    fn an_unknown_peak_fails_a_memory_limit() {
        let mut x = m(100.0, 10.0, 0);
        x.peak_rss_bytes = None;
        let c = Constraints {
            p99_ms: None,
            memory_bytes: Some(MIB),
        };
        assert_eq!(violations(&x, &c), vec![Violation::MemoryUnknown]);
        assert!(violations(&x, &Constraints::default()).is_empty());
        assert!(choose(&[], &c).is_none());
    }

    #[test]
    fn constraints_read_as_words() {
        assert_eq!(
            constraint_words(&Constraints::default()),
            "no failed requests"
        );
        assert_eq!(
            constraint_words(&Constraints {
                p99_ms: Some(50.0),
                memory_bytes: Some(2 << 30)
            }),
            "p99 <= 50 ms, peak RSS <= 2.0 GiB and no failed requests"
        );
    }
}
