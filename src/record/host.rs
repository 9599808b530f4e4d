//! Facts about this host and its clocks that go into every recording's
//! metadata, so that a file explains itself long after the capture.

use std::fs;

/// `bpf_ktime_get_ns()` reads CLOCK_MONOTONIC.
pub fn ktime_now() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
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

fn proc_line(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn hostname() -> String {
    proc_line("/proc/sys/kernel/hostname")
}

pub fn kernel_release() -> String {
    proc_line("/proc/sys/kernel/osrelease")
}

pub fn boot_id() -> String {
    proc_line("/proc/sys/kernel/random/boot_id")
}

/// RFC 3339 with nanoseconds, UTC.
pub fn rfc3339(wall_ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(wall_ns)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_maps_ktime_to_wall_time() {
        let off = clock_offset_ns();
        let err = (ktime_now() as i64 + off) - wall_now();
        assert!(err.abs() < 50_000_000, "clock offset off by {err} ns");
    }

    #[test]
    fn rfc3339_is_utc_with_nanoseconds() {
        assert_eq!(rfc3339(1_000_000_001), "1970-01-01T00:00:01.000000001Z");
    }
}
