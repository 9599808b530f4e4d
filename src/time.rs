//! Time, in one place. Events carry the kernel's monotonic clock
//! (`ktime_ns`, what `bpf_ktime_get_ns()` reads); reports and the `time`
//! column use wall-clock nanoseconds since the epoch. A recording's clock
//! offset (wall − ktime, measured once at the start of a capture) maps one
//! onto the other, and every conversion goes through [`Clock`] so that it
//! saturates the same way everywhere instead of overflowing in one place
//! and clamping in another.

use chrono::{DateTime, Local, SecondsFormat, Utc};

/// Maps kernel time to wall time with a fixed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clock {
    /// Wall clock minus the monotonic clock, in nanoseconds.
    pub offset_ns: i64,
}

impl Clock {
    pub fn new(offset_ns: i64) -> Clock {
        Clock { offset_ns }
    }

    /// This host's clocks, now.
    pub fn of_host() -> Clock {
        Clock::new(clock_offset_ns())
    }

    /// Wall-clock ns since the epoch of a kernel time; before the epoch
    /// reads as the epoch.
    pub fn wall(self, ktime_ns: u64) -> u64 {
        let w = i128::from(ktime_ns) + i128::from(self.offset_ns);
        w.clamp(0, i128::from(u64::MAX)) as u64
    }

    /// The same as a signed nanosecond timestamp (Arrow's `time` column).
    pub fn wall_i64(self, ktime_ns: u64) -> i64 {
        i64::try_from(self.wall(ktime_ns)).unwrap_or(i64::MAX)
    }
}

/// `bpf_ktime_get_ns()` reads CLOCK_MONOTONIC.
pub fn ktime_now() -> u64 {
    u64::try_from(clock_ns(libc::CLOCK_MONOTONIC)).unwrap_or(0)
}

/// The kernel's jiffy (1/HZ s) in nanoseconds, as it rounds it (TICK_NSEC):
/// the resolution of its coarse clocks, which advance once a jiffy.
pub fn jiffy_ns() -> u32 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into; the clock always exists.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    u32::try_from(ts.tv_nsec).unwrap_or(0)
}

pub fn wall_now() -> i64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into; both clocks always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Wall clock minus the monotonic clock, read as a tight bracket so that
/// the error is the few tens of nanoseconds between the reads.
pub fn clock_offset_ns() -> i64 {
    (0..5)
        .map(|_| {
            let a = ktime_now() as i64;
            let w = wall_now();
            let b = ktime_now() as i64;
            (b - a, w - (a + (b - a) / 2))
        })
        .min_by_key(|&(width, _)| width)
        .map(|(_, off)| off)
        .unwrap_or(0)
}

fn utc(wall_ns: u64) -> DateTime<Utc> {
    // u64 nanoseconds end in 2554, well inside chrono's range.
    let secs = i64::try_from(wall_ns / 1_000_000_000).unwrap_or(i64::MAX);
    DateTime::from_timestamp(secs, (wall_ns % 1_000_000_000) as u32).unwrap_or_default()
}

/// RFC 3339 with nanoseconds, UTC: `2026-11-26T08:03:58.123456789Z`.
pub fn rfc3339(wall_ns: u64) -> String {
    utc(wall_ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `HH:MM:SS` in local time, as BCC's `-T` prints it.
pub fn local_hms(wall_ns: u64) -> String {
    utc(wall_ns)
        .with_timezone(&Local)
        .format("%H:%M:%S")
        .to_string()
}

/// How far local time is ahead of UTC at `wall_ns`, in ns.
pub fn local_offset_ns(wall_ns: u64) -> i64 {
    i64::from(
        utc(wall_ns)
            .with_timezone(&Local)
            .offset()
            .local_minus_utc(),
    ) * 1_000_000_000
}

/// `HH:MM:SS.mmm` in local time: instants closer than `-T`'s seconds.
pub fn local_hms_ms(wall_ns: u64) -> String {
    utc(wall_ns)
        .with_timezone(&Local)
        .format("%H:%M:%S%.3f")
        .to_string()
}

/// The wall-clock ns of local clock time `ns_of_day` (ns since midnight)
/// on the local day of `wall_ns`, `days` later (or earlier), in this
/// process's time zone (`TZ`, or the system's). The clock time is the
/// C library's `mktime`'s, so that a day with a daylight-saving change
/// keeps it (09:00 is 09:00, not nine hours after midnight), and a time
/// such a change skips or repeats is taken as `mktime` takes it.
pub fn local_clock_time(wall_ns: u64, days: i32, ns_of_day: u64) -> u64 {
    let secs = libc::time_t::try_from(wall_ns / 1_000_000_000).unwrap_or(libc::time_t::MAX);
    let of_day = ns_of_day / 1_000_000_000;
    // SAFETY: a zeroed tm is a valid value; localtime_r writes into it and
    // mktime reads and normalizes it, both on this thread's own memory.
    let at = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return wall_ns;
        }
        tm.tm_mday += days;
        // Below a day: each fits an int.
        tm.tm_hour = (of_day / 3600) as libc::c_int;
        tm.tm_min = (of_day / 60 % 60) as libc::c_int;
        tm.tm_sec = (of_day % 60) as libc::c_int;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    u64::try_from(at)
        .map_or(0, |s| s.saturating_mul(1_000_000_000))
        .saturating_add(ns_of_day % 1_000_000_000)
}

pub fn parse_rfc3339(s: &str) -> Option<u64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|d| d.timestamp_nanos_opt())
        .and_then(|n| u64::try_from(n).ok())
}

/// A date and time for file names: `20261126T080358.123Z` and `2026-11-26`.
pub fn file_stamp(wall_ns: u64) -> (String, String) {
    let t = utc(wall_ns);
    (
        t.format("%Y%m%dT%H%M%S%.3fZ").to_string(),
        t.format("%Y-%m-%d").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_maps_ktime_to_wall_time() {
        let c = Clock::of_host();
        let err = c.wall_i64(ktime_now()) - wall_now();
        assert!(err.abs() < 50_000_000, "clock offset off by {err} ns");
    }

    #[test]
    fn conversions_saturate_instead_of_overflowing() {
        assert_eq!(Clock::new(-10).wall(3), 0);
        assert_eq!(Clock::new(i64::MAX).wall(u64::MAX), u64::MAX);
        assert_eq!(Clock::new(i64::MAX).wall_i64(u64::MAX), i64::MAX);
        assert_eq!(Clock::new(5).wall(7), 12);
    }

    #[test]
    fn formats_are_utc_with_nanoseconds() {
        assert_eq!(rfc3339(1_000_000_001), "1970-01-01T00:00:01.000000001Z");
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:01.000000001Z"),
            Some(1_000_000_001)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        // Zones differ from UTC by whole quarters of an hour at most.
        let hms = local_hms(1_795_680_238_123_456_789);
        assert_eq!((hms.len(), &hms[2..3], &hms[5..]), (8, ":", ":58"));
        assert_eq!(
            file_stamp(86_400_000_000_000 + 1_500_000_000),
            ("19700102T000001.500Z".into(), "1970-01-02".into())
        );
    }
}
