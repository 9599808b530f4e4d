//! Facts about this host that go into every recording's metadata, so that a
//! file explains itself long after the capture.

use std::fs;

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
