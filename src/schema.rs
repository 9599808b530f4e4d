//! Event schema v1: the Arrow schema every recording has, and the `tcpcong`
//! metadata object stored with it.
//!
//! This is the file format's single source of truth in code; `schemas/`
//! describes the same thing for people and other tools, and a test holds
//! the two together. Columns may be added in later versions, never renamed
//! or re-typed.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

/// The key of the metadata object, in the Parquet footer and in the Arrow
/// schema metadata alike.
pub const METADATA_KEY: &str = "tcpcong";

/// Column names and types in file order.
pub fn columns() -> Vec<(&'static str, DataType)> {
    use DataType::*;
    vec![
        ("time", Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))),
        ("ktime_ns", UInt64),
        ("kind", Utf8),
        ("flow", UInt64),
        ("family", UInt8),
        ("saddr", Utf8),
        ("daddr", Utf8),
        ("sport", UInt16),
        ("dport", UInt16),
        ("old_state", Utf8),
        ("new_state", Utf8),
        ("cpu", UInt16),
        ("netns", UInt32),
        ("cgroup", UInt64),
        ("cong_algo", Utf8),
        ("snd_cwnd", UInt32),
        ("snd_ssthresh", UInt32),
        ("srtt_us", UInt32),
        ("mss", UInt32),
        ("packets_out", UInt32),
        ("retrans_out", UInt32),
        ("lost_out", UInt32),
        ("sacked_out", UInt32),
        ("total_retrans", UInt32),
    ]
}

/// The Arrow schema of a recording, without metadata.
pub fn arrow_schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        columns()
            .into_iter()
            .map(|(name, ty)| Field::new(name, ty, false))
            .collect::<Vec<_>>(),
    ))
}

/// Port filters as the user gave them, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// The capture filters in force, as stored in the metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    pub localport: Option<PortRange>,
    pub remoteport: Option<PortRange>,
    pub family: Option<u8>,
    pub netns: Option<u32>,
    pub cgroup: Option<u64>,
}

/// The `tcpcong` metadata object (product.md §2). Unknown keys written by
/// later versions are ignored on read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub schema_version: u32,
    pub tool_version: String,
    pub hostname: String,
    pub kernel: String,
    pub boot_id: String,
    pub start: String,
    pub end: String,
    pub start_ktime_ns: u64,
    pub end_ktime_ns: u64,
    pub clock_offset_ns: i64,
    pub attach: String,
    pub buffer: String,
    pub filters: Filters,
    pub lifecycle: bool,
    pub lost_events: u64,
    pub command: String,
    /// Rows in the file.
    #[serde(default)]
    pub events: u64,
    /// Distinct `flow` values in the file.
    #[serde(default)]
    pub flows: u64,
    /// Whether rows are in `ktime_ns` order (true for every file this
    /// version writes, unless an event arrived implausibly late).
    #[serde(default)]
    pub sorted: bool,
    /// `ca_state` events that did not start where their flow's previous
    /// one ended: a transition happened without an event.
    #[serde(default)]
    pub gaps: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_ignores_unknown_keys() {
        let m = Metadata {
            schema_version: 1,
            tool_version: "0".into(),
            hostname: "h".into(),
            kernel: "k".into(),
            boot_id: "b".into(),
            start: "s".into(),
            end: "e".into(),
            start_ktime_ns: 1,
            end_ktime_ns: 2,
            clock_offset_ns: -3,
            attach: "a".into(),
            buffer: "ring".into(),
            filters: Filters::default(),
            lifecycle: true,
            lost_events: 0,
            command: "c".into(),
            events: 0,
            flows: 0,
            sorted: true,
            gaps: 0,
        };
        let mut v = serde_json::to_value(&m).unwrap();
        v["from_the_future"] = serde_json::json!(42);
        let back: Metadata = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn port_ranges_print_as_given() {
        assert_eq!(PortRange { lo: 80, hi: 80 }.to_string(), "80");
        assert_eq!(PortRange { lo: 1, hi: 9 }.to_string(), "1-9");
    }
}
