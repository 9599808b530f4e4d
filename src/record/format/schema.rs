//! Event schema v1: the Arrow schema every recording has, how an event's
//! values become Arrow columns and back, and the `tcpcong` metadata object
//! stored with it.
//!
//! This is the file format's single source of truth in code; `schemas/`
//! describes the same thing for people and other tools, and a test holds
//! the two together. The first columns (time, identity, states) are the
//! core every reader needs and are spelled out here; the rest are expanded
//! from [`crate::event::detail_columns!`]. Columns may be added in later
//! versions, never renamed or re-typed.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{ArrayRef, ArrowPrimitiveType, PrimitiveArray, RecordBatch, StringArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

use crate::event::{
    detail_columns, Container, Detail, Event, Filters, KernelName, Name, SymbolName,
};
use crate::host;
use crate::time::{rfc3339, Clock};

pub const SCHEMA_VERSION: u32 = 1;

/// The key of the metadata object, in the Parquet footer and in the Arrow
/// schema metadata alike.
pub const METADATA_KEY: &str = "tcpcong";

/// The core columns, in file order: what identifies an event and its change.
pub const CORE: [&str; 11] = [
    "time",
    "ktime_ns",
    "kind",
    "flow",
    "family",
    "saddr",
    "daddr",
    "sport",
    "dport",
    "old_state",
    "new_state",
];

fn core_type(name: &str) -> DataType {
    use DataType::*;
    match name {
        // Microseconds: what Spark reads by default (it refuses
        // TIMESTAMP(NANOS) unless told to read it as a number);
        // nanoseconds stay exact in ktime_ns.
        "time" => Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "ktime_ns" | "flow" => UInt64,
        "family" => UInt8,
        "sport" | "dport" => UInt16,
        _ => Utf8,
    }
}

/// A Rust type a detail column holds, and how it is built into and read
/// out of Arrow arrays.
pub trait ColumnValue: Copy + Default {
    fn data_type() -> DataType;
    type Builder: Default;
    type Array: 'static;
    fn append(b: &mut Self::Builder, v: Self);
    /// Appends many: a column of a block of rows at a time, which for
    /// numbers is a copy loop without a check per row.
    fn extend(b: &mut Self::Builder, values: impl Iterator<Item = Self>);
    /// The column built so far; the builder starts over.
    fn finish(b: &mut Self::Builder) -> ArrayRef;
    fn array(a: &ArrayRef) -> Option<&Self::Array>;
    fn at(a: &Self::Array, i: usize) -> Self;
}

/// A column of numbers being built: a vector, handed to Arrow without a
/// copy, the next batch's made as large as this one's was. (Arrow's
/// builders check for nulls on every value and start each batch empty,
/// growing by doubling: the recorder's largest cost on the drain, measured
/// at 1,000,000 events/s.)
pub struct Numbers<T: ArrowPrimitiveType>(Vec<T::Native>);

impl<T: ArrowPrimitiveType> Default for Numbers<T> {
    fn default() -> Self {
        Numbers(Vec::new())
    }
}

impl<T: ArrowPrimitiveType> Numbers<T> {
    pub fn append_value(&mut self, v: T::Native) {
        self.0.push(v);
    }

    pub fn extend(&mut self, values: impl Iterator<Item = T::Native>) {
        self.0.extend(values);
    }

    pub fn finish(&mut self) -> PrimitiveArray<T> {
        let next = Vec::with_capacity(self.0.len());
        PrimitiveArray::new(std::mem::replace(&mut self.0, next).into(), None)
    }
}

/// A column of strings being built, as [`Numbers`] are: the bytes and
/// their offsets in vectors handed to Arrow without a copy, the next
/// batch's made as large as this one's were.
pub struct Strings {
    values: Vec<u8>,
    offsets: Vec<i32>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings {
            values: Vec::new(),
            offsets: vec![0],
        }
    }
}

impl Strings {
    pub fn append_value(&mut self, v: &str) {
        self.values.extend_from_slice(v.as_bytes());
        // A batch is at most 65,536 rows of short strings (the longest,
        // a capture row's metadata, two per file): never near 2 GiB.
        self.offsets
            .push(i32::try_from(self.values.len()).unwrap_or(i32::MAX));
    }

    pub fn finish(&mut self) -> StringArray {
        let mut offsets = Vec::with_capacity(self.offsets.len());
        offsets.push(0);
        let offsets = std::mem::replace(&mut self.offsets, offsets);
        let next = Vec::with_capacity(self.values.len());
        let values = std::mem::replace(&mut self.values, next);
        // SAFETY: the values are whole `&str`s one after the other (valid
        // UTF-8 each, so at each offset a character starts), and the
        // offsets start at 0 and grow to the values' length.
        unsafe {
            StringArray::new_unchecked(
                OffsetBuffer::new_unchecked(offsets.into()),
                values.into(),
                None,
            )
        }
    }
}

macro_rules! primitive_value {
    ($($ty:ty => $arrow:ty, $dt:ident;)*) => {$(
        impl ColumnValue for $ty {
            fn data_type() -> DataType {
                DataType::$dt
            }
            type Builder = Numbers<$arrow>;
            type Array = PrimitiveArray<$arrow>;
            fn append(b: &mut Self::Builder, v: Self) {
                b.append_value(v);
            }
            fn extend(b: &mut Self::Builder, values: impl Iterator<Item = Self>) {
                b.extend(values);
            }
            fn finish(b: &mut Self::Builder) -> ArrayRef {
                Arc::new(b.finish())
            }
            fn array(a: &ArrayRef) -> Option<&Self::Array> {
                a.as_primitive_opt::<$arrow>()
            }
            fn at(a: &Self::Array, i: usize) -> Self {
                a.value(i)
            }
        }
    )*};
}
primitive_value! {
    u8 => UInt8Type, UInt8;
    u16 => UInt16Type, UInt16;
    u32 => UInt32Type, UInt32;
    u64 => UInt64Type, UInt64;
    i32 => Int32Type, Int32;
}

impl<const N: usize> ColumnValue for Name<N> {
    fn data_type() -> DataType {
        DataType::Utf8
    }
    type Builder = Strings;
    type Array = StringArray;
    fn append(b: &mut Self::Builder, v: Self) {
        b.append_value(v.as_str());
    }
    fn extend(b: &mut Self::Builder, values: impl Iterator<Item = Self>) {
        for v in values {
            b.append_value(v.as_str());
        }
    }
    fn finish(b: &mut Self::Builder) -> ArrayRef {
        Arc::new(b.finish())
    }
    fn array(a: &ArrayRef) -> Option<&Self::Array> {
        a.as_string_opt::<i32>()
    }
    fn at(a: &Self::Array, i: usize) -> Self {
        Name::from_str_lossy(a.value(i))
    }
}

macro_rules! detail_arrow {
    ($($name:ident: $ty:ty,)*) => {
        fn detail_types() -> Vec<(&'static str, DataType)> {
            vec![$((stringify!($name), <$ty as ColumnValue>::data_type()),)*]
        }

        /// One Arrow builder per detail column.
        #[derive(Default)]
        pub struct DetailBuilders {
            $($name: <$ty as ColumnValue>::Builder,)*
        }

        impl DetailBuilders {
            pub fn push(&mut self, d: &Detail) {
                $(<$ty as ColumnValue>::append(&mut self.$name, d.$name);)*
            }

            /// The details of a block of events, a column at a time (a
            /// block small enough to stay in the CPU's cache while each of
            /// its columns is read from it).
            pub fn push_all(&mut self, events: &[Event]) {
                $(<$ty as ColumnValue>::extend(&mut self.$name, events.iter().map(|e| e.detail.$name));)*
            }

            /// The columns built so far, in file order; the builders start over.
            pub fn finish(&mut self, out: &mut Vec<ArrayRef>) {
                $(out.push(<$ty as ColumnValue>::finish(&mut self.$name));)*
            }
        }

        /// A batch's detail columns; one a file lacks (or a projection left
        /// out) reads as 0 or empty.
        pub struct DetailArrays<'a> {
            $($name: Option<&'a <$ty as ColumnValue>::Array>,)*
        }

        impl<'a> DetailArrays<'a> {
            pub fn of(b: &'a RecordBatch) -> DetailArrays<'a> {
                DetailArrays {
                    $($name: b.column_by_name(stringify!($name)).and_then(<$ty as ColumnValue>::array),)*
                }
            }

            pub fn at(&self, i: usize) -> Detail {
                Detail {
                    $($name: self.$name.map_or_else(Default::default, |a| <$ty as ColumnValue>::at(a, i)),)*
                }
            }
        }
    };
}
detail_columns!(detail_arrow);

fn get<T: ColumnValue>(a: Option<&T::Array>, i: usize) -> T {
    a.map_or_else(T::default, |a| T::at(a, i))
}

impl DetailArrays<'_> {
    /// What analysis reads of a row's detail: its owner, and what the
    /// socket filters compare; the rest stays 0 (half the work of `at`).
    pub fn analysis_at(&self, i: usize) -> Detail {
        Detail {
            netns: get::<u32>(self.netns, i),
            cgroup: get::<u64>(self.cgroup, i),
            pid: get::<u32>(self.pid, i),
            comm: get::<KernelName>(self.comm, i),
            cong_algo: get::<KernelName>(self.cong_algo, i),
            ..Detail::default()
        }
    }
}

/// Detail columns read by name and copied into a `Detail`, the others as
/// `base` reads them: one list for the reader's projection and the copy.
macro_rules! picked {
    ($names:ident, $at:ident, $base:ident, $($f:ident: $t:ty,)*) => {
        pub const $names: &[&str] = &[$(stringify!($f)),*];

        impl DetailArrays<'_> {
            pub fn $at(&self, i: usize) -> Detail {
                Detail {
                    $($f: get::<$t>(self.$f, i),)*
                    ..self.$base(i)
                }
            }
        }
    };
}

// What episodes read beside analysis' columns: the counters their costs
// and causes come from.
picked!(
    EPISODE_COUNTERS,
    episodes_at,
    analysis_at,
    snd_cwnd: u32,
    snd_ssthresh: u32,
    srtt_us: u32,
    segs: u32,
    kernel_gap: u8,
    backoff: u8,
    delivered_ce: u32,
    dsack_dups: u32,
    undo: u8,
);

/// Columns whose value is the file's, repeated on every row (stored once
/// per page by the dictionary): what keys a flow beside `flow`, in the
/// rows themselves, so that SQL over many hosts' files needs no footer.
pub const PER_FILE: [&str; 3] = ["host", "boot_id", "capture"];

/// The kind of the rows that open and close each file's capture: their
/// `new_state` is `start` or `end`, their `capture` the file's metadata
/// object as JSON (the end row's is the footer's), so that a file an
/// engine rewrote without the footer still describes itself.
pub const CAPTURE_KIND: &str = "capture";

/// Column names and types in file order.
pub fn columns() -> Vec<(&'static str, DataType)> {
    let mut all: Vec<(&'static str, DataType)> = CORE.iter().map(|&n| (n, core_type(n))).collect();
    all.extend(detail_types());
    all.extend(PER_FILE.iter().map(|&n| (n, DataType::Utf8)));
    all
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

/// The `tcpcong` metadata object (schemas/events-v1.md, *File metadata*). Unknown keys written by
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
    /// Of those rows, how many the kernel side flagged (`kernel_gap`): the
    /// socket's previous tracepoint call set another state.
    #[serde(default)]
    pub kernel_gaps: u64,
    /// Events carry per-socket numbers (`seq`) and the kernel-side check
    /// (`kernel_gap`); otherwise both columns are 0.
    #[serde(default)]
    pub numbered: bool,
    /// The cgroup v2 path of each `cgroup` id in the file that could be
    /// resolved at record time ("/system.slice/nginx.service").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cgroup_paths: BTreeMap<u64, String>,
    /// The container each of those cgroups was made for, where the host's
    /// runtimes said so at record time (a cgroup of no container is not
    /// here). Added later (`schema_minor` 4).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<u64, Container>,
    /// Rows of kind `snapshot` in the file (not counted in `events`).
    #[serde(default)]
    pub snapshots: u64,
    /// Additions to v1 since its first files: 1 for the per-row `host`,
    /// `boot_id` and the capture rows; 2 for the snapshot rows; 3 for the
    /// evidence rows and columns.
    #[serde(default)]
    pub schema_minor: u32,
    /// The kinds of evidence the capture recorded (`retransmit`, `drop`,
    /// `reset`): a kind not listed has no rows because it was not asked
    /// for.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// TCP segments this host dropped while the file was written that
    /// were no traced flow's, in the traced namespace (all of them without
    /// a namespace filter), by the kernel's reason: the host's context of
    /// the flows' `drop` rows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub untraced_drops: BTreeMap<String, u64>,
}

/// The `schema_minor` this version writes.
pub const SCHEMA_MINOR: u32 = 4;

/// What every file of a capture says about how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureInfo {
    /// The kernel hook (`tp_btf/tcp_cong_state_set`, ...).
    pub attach: String,
    /// `ring` or `perf`.
    pub buffer: String,
    pub filters: Filters,
    pub lifecycle: bool,
    /// The kinds of evidence recorded (see [`Metadata::evidence`]).
    pub evidence: Vec<String>,
    /// Since the capture started (see [`Metadata::untraced_drops`]).
    pub untraced_drops: BTreeMap<String, u64>,
    /// The command line that recorded it.
    pub command: String,
    pub clock: Clock,
    /// Paths of the cgroups named so far (each file keeps its own).
    pub cgroup_paths: BTreeMap<u64, String>,
    /// The containers of those cgroups that were made for one.
    pub containers: BTreeMap<u64, Container>,
}

#[cfg(test)]
impl CaptureInfo {
    /// A ring-buffer capture on the tracepoint, with lifecycle events and a
    /// clock offset of 0: what unit tests write files as.
    pub fn example() -> CaptureInfo {
        CaptureInfo {
            attach: "tp_btf/tcp_cong_state_set".into(),
            buffer: "ring".into(),
            filters: Default::default(),
            lifecycle: true,
            evidence: Vec::new(),
            untraced_drops: Default::default(),
            command: "tcpcong record".into(),
            clock: Clock::new(0),
            cgroup_paths: Default::default(),
            containers: Default::default(),
        }
    }
}

impl Metadata {
    /// The metadata of a file covering `[start, end)` of a capture on this
    /// host, which lost `lost_events` in that span. What only the writer
    /// knows (events, flows, order, gaps) it fills in when it finishes.
    pub fn new(
        info: &CaptureInfo,
        start_ktime_ns: u64,
        end_ktime_ns: u64,
        lost_events: u64,
    ) -> Metadata {
        Metadata {
            schema_version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            hostname: host::hostname(),
            kernel: host::kernel_release(),
            boot_id: host::boot_id(),
            start: rfc3339(info.clock.wall(start_ktime_ns)),
            end: rfc3339(info.clock.wall(end_ktime_ns)),
            start_ktime_ns,
            end_ktime_ns,
            clock_offset_ns: info.clock.offset_ns,
            attach: info.attach.clone(),
            buffer: info.buffer.clone(),
            filters: info.filters.clone(),
            lifecycle: info.lifecycle,
            lost_events,
            command: info.command.clone(),
            events: 0,
            snapshots: 0,
            flows: 0,
            sorted: true,
            gaps: 0,
            kernel_gaps: 0,
            numbered: false,
            cgroup_paths: info.cgroup_paths.clone(),
            containers: info.containers.clone(),
            schema_minor: SCHEMA_MINOR,
            evidence: info.evidence.clone(),
            untraced_drops: info.untraced_drops.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_build_batch_after_batch_as_arrow_would() {
        let mut b = Strings::default();
        for batch in [
            vec!["", "é", "ca_state", ""],
            vec![],
            vec!["10.0.0.1", "\u{1b}[31m"],
        ] {
            for v in &batch {
                b.append_value(v);
            }
            let got = b.finish();
            arrow_array::Array::to_data(&got).validate_full().unwrap();
            assert_eq!(got, StringArray::from(batch));
        }
    }

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
            snapshots: 4,
            flows: 0,
            sorted: true,
            gaps: 0,
            kernel_gaps: 0,
            numbered: true,
            cgroup_paths: BTreeMap::from([(7, "/a.slice".into())]),
            containers: BTreeMap::new(),
            schema_minor: SCHEMA_MINOR,
            evidence: vec!["retransmit".into()],
            untraced_drops: BTreeMap::from([("netfilter_drop".into(), 3)]),
        };
        let mut v = serde_json::to_value(&m).unwrap();
        v["from_the_future"] = serde_json::json!(42);
        let back: Metadata = serde_json::from_value(v).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn columns_follow_schema_v1_order() {
        let names: Vec<&str> = columns().iter().map(|(n, _)| *n).collect();
        // The three lists in file order, whatever their lengths: a new
        // per-event column changes none of these lines.
        let (core, detail) = (CORE.len(), CORE.len() + Detail::NAMES.len());
        assert_eq!(core, 11);
        assert_eq!(names.len(), detail + PER_FILE.len());
        assert_eq!(&names[..core], &CORE);
        assert_eq!(&names[core..detail], Detail::NAMES);
        assert_eq!(&names[detail..], PER_FILE);
        assert_eq!(
            columns()[0].1,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(names[14], "cong_algo");
        assert_eq!(columns()[14].1, DataType::Utf8);
        assert_eq!(columns()[23], ("total_retrans", DataType::UInt32));
        assert_eq!(columns()[24], ("seq", DataType::UInt32));
        assert_eq!(columns()[25], ("kernel_gap", DataType::UInt8));
        assert_eq!(columns()[26], ("pid", DataType::UInt32));
        assert_eq!(columns()[27], ("comm", DataType::Utf8));
    }
}
