//! What the client process costs and may use: its CPU time (from /proc) and the open-files
//! limit (one file descriptor per connection).

use std::time::Duration;

/// User + system CPU time of this process (all threads), from `/proc/self/stat`; `None` where
/// there is no procfs.
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat_cpu(&stat)
}

/// Fields 14 and 15 (utime, stime) in clock ticks, counted after the `(comm)` field, which may
/// hold spaces. Linux reports them in USER_HZ, 100 per second on every architecture.
fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14 → index 11, stime → 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A `kB` field of `/proc/PID/status` (`/proc/self/status` for `None`) in bytes, e.g. `VmHWM`
/// (peak resident memory) or `VmRSS`; `None` where there is no procfs or no such field.
pub fn status_bytes(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    parse_status_kb(&std::fs::read_to_string(path).ok()?, field)
}

fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// CPU use over a wall-clock interval, in % of one core.
pub fn cpu_percent(
    before: Option<Duration>,
    after: Option<Duration>,
    wall: Duration,
) -> Option<f64> {
    let (b, a) = (before?, after?);
    if wall.is_zero() {
        return None;
    }
    Some(a.saturating_sub(b).as_secs_f64() / wall.as_secs_f64() * 100.0)
}

/// The open-files limit before and after [`raise_nofile`].
#[derive(Debug, Clone, Copy)]
pub struct NofileLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod rlimit {
    // std has no rlimit API and the libc crate would be a new direct dependency for two calls:
    // these are the glibc/musl signatures on 64-bit Linux (rlim_t = unsigned long).
    #[repr(C)]
    pub struct Rlimit {
        pub cur: u64,
        pub max: u64,
    }
    pub const RLIMIT_NOFILE: i32 = 7;
    extern "C" {
        pub fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        pub fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }
}

/// Raises the soft open-files limit to at least `needed` (up to the hard limit) when it is
/// lower. `None` where the limit cannot be read (not 64-bit Linux).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn raise_nofile(needed: u64) -> Option<NofileLimit> {
    let mut lim = rlimit::Rlimit { cur: 0, max: 0 };
    // SAFETY: getrlimit writes one `struct rlimit` (two rlim_t) into a valid, owned value.
    if unsafe { rlimit::getrlimit(rlimit::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let before = lim.cur;
    if lim.cur < needed {
        let want = rlimit::Rlimit {
            cur: needed.min(lim.max),
            max: lim.max,
        };
        // SAFETY: setrlimit reads one valid `struct rlimit`; failure leaves the limit as it was.
        if unsafe { rlimit::setrlimit(rlimit::RLIMIT_NOFILE, &want) } == 0 {
            lim.cur = want.cur;
        }
    }
    Some(NofileLimit {
        soft_before: before,
        soft: lim.cur,
        hard: lim.max,
    })
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub fn raise_nofile(_needed: u64) -> Option<NofileLimit> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 4 0 5 0 0";
        assert_eq!(parse_stat_cpu(line), Some(Duration::from_secs(3)));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn status_fields_parse_in_bytes() {
        let status = "Name:\tnlpd\nVmPeak:\t  900 kB\nVmHWM:\t   2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(parse_status_kb("VmHWM: lots", "VmHWM"), None);
    }

    #[test]
    fn cpu_percent_is_per_core() {
        let p = cpu_percent(
            Some(Duration::from_secs(1)),
            Some(Duration::from_secs(3)),
            Duration::from_secs(4),
        );
        assert_eq!(p, Some(50.0));
        assert_eq!(
            cpu_percent(None, Some(Duration::ZERO), Duration::from_secs(1)),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_cpu_time_and_a_limit() {
        assert!(cpu_time().is_some());
        assert!(status_bytes(None, "VmHWM").is_some_and(|b| b > 0));
        let l = raise_nofile(0).expect("getrlimit");
        assert!(l.soft <= l.hard && l.soft == l.soft_before);
    }
}
