//! The per-flow row and the per-group row (`--by`), each defined once as a
//! list of columns: the JSON objects and CSV lines of analyze and live
//! mode, and the Arrow table (analyze's Parquet, the Python package's
//! table and its Spark schema) all follow these lists. A new column is one
//! line in [`FLOW`] (or [`GROUP`]).

use std::borrow::Cow;
use std::io::{self, Write};

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::flows::{Group, GroupKey};
use crate::analyze::engine::FlowRow;
use crate::escape;
use crate::event::CaState;
use crate::event::{Boot, Container};
use crate::time::rfc3339;

/// A column's type, as the Arrow table holds it (JSON and CSV write
/// numbers as numbers, times as RFC 3339 text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A wall-clock time: microseconds since the epoch in UTC in Arrow.
    Time,
    Text,
    U8,
    U16,
    U32,
    U64,
    /// Numbers that a row may not have (null; empty in CSV).
    OptU64,
    OptF64,
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Nanoseconds since the epoch, and the same as RFC 3339 text.
    Time(u64, &'a str),
    Text(Cow<'a, str>),
    Uint(u64),
    Float(f64),
    Null,
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Time(_, text) => s.serialize_str(text),
            Value::Text(text) => s.serialize_str(text),
            Value::Uint(n) => s.serialize_u64(*n),
            Value::Float(x) => s.serialize_f64(*x),
            Value::Null => s.serialize_none(),
        }
    }
}

/// A cell of line `L`, read from it.
pub type Get<L> = for<'x> fn(&'x L) -> Value<'x>;

pub struct Column<G> {
    pub name: &'static str,
    pub kind: Kind,
    pub get: G,
}

/// What the rows of one window share.
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
    start: String,
    end: String,
    /// The recordings' lost events, the same on every row (stderr says it
    /// too).
    pub lost_events: u64,
}

impl Window {
    pub fn new(start_ns: u64, end_ns: u64, lost_events: u64) -> Window {
        Window {
            start_ns,
            end_ns,
            start: rfc3339(start_ns),
            end: rfc3339(end_ns),
            lost_events,
        }
    }

    fn start(&self) -> Value<'_> {
        Value::Time(self.start_ns, &self.start)
    }

    fn end(&self) -> Value<'_> {
        Value::Time(self.end_ns, &self.end)
    }
}

/// A flow's row in a window, with the boot it lived on.
pub struct FlowLine<'a> {
    pub window: &'a Window,
    pub boot: &'a Boot,
    pub row: &'a FlowRow,
}

impl FlowLine<'_> {
    fn container(&self, field: fn(&Container) -> &str) -> Value<'_> {
        text(self.boot.container_field(self.row.addr.owner.cgroup, field))
    }
}

pub type FlowGet = for<'x, 'y> fn(&'x FlowLine<'y>) -> Value<'x>;

const fn flow(name: &'static str, kind: Kind, get: FlowGet) -> Column<FlowGet> {
    Column { name, kind, get }
}

pub fn text<'a>(s: &'a str) -> Value<'a> {
    Value::Text(Cow::Borrowed(s))
}

/// The per-flow row, in its columns' order.
pub static FLOW: &[Column<FlowGet>] = &[
    flow("window_start", Kind::Time, |l| l.window.start()),
    flow("window_end", Kind::Time, |l| l.window.end()),
    flow("host", Kind::Text, |l| text(&l.boot.host)),
    flow("boot_id", Kind::Text, |l| text(&l.boot.boot_id)),
    flow("flow", Kind::U64, |l| Value::Uint(l.row.key.cookie)),
    flow("family", Kind::U8, |l| {
        Value::Uint(l.row.addr.family.into())
    }),
    flow("saddr", Kind::Text, |l| {
        Value::Text(l.row.addr.saddr.to_string().into())
    }),
    flow("sport", Kind::U16, |l| Value::Uint(l.row.addr.sport.into())),
    flow("daddr", Kind::Text, |l| {
        Value::Text(l.row.addr.daddr.to_string().into())
    }),
    flow("dport", Kind::U16, |l| Value::Uint(l.row.addr.dport.into())),
    // The owning process (0 and "" where not known).
    flow("pid", Kind::U32, |l| {
        Value::Uint(l.row.addr.owner.pid.into())
    }),
    flow("comm", Kind::Text, |l| text(l.row.addr.owner.comm.as_str())),
    flow("cgroup", Kind::U64, |l| {
        Value::Uint(l.row.addr.owner.cgroup)
    }),
    // "" where the recording did not name it.
    flow("cgroup_path", Kind::Text, |l| {
        text(
            l.boot
                .cgroup_paths
                .get(&l.row.addr.owner.cgroup)
                .map_or("", String::as_str),
        )
    }),
    // The container its cgroup was made for ("" where none, or not said).
    flow("container", Kind::Text, |l| l.container(|c| &c.name)),
    flow("container_id", Kind::Text, |l| l.container(|c| &c.id)),
    flow("pod", Kind::Text, |l| l.container(|c| &c.pod)),
    flow("k8s_namespace", Kind::Text, |l| {
        l.container(|c| &c.namespace)
    }),
    flow("netns", Kind::U32, |l| Value::Uint(l.row.addr.netns.into())),
    flow("cong_algo", Kind::Text, |l| text(l.row.addr.cc.as_str())),
    flow("open_ns", Kind::U64, |l| {
        Value::Uint(l.row.ns[CaState::Open.index()])
    }),
    flow("disorder_ns", Kind::U64, |l| {
        Value::Uint(l.row.ns[CaState::Disorder.index()])
    }),
    flow("cwr_ns", Kind::U64, |l| {
        Value::Uint(l.row.ns[CaState::Cwr.index()])
    }),
    flow("recovery_ns", Kind::U64, |l| {
        Value::Uint(l.row.ns[CaState::Recovery.index()])
    }),
    flow("loss_ns", Kind::U64, |l| {
        Value::Uint(l.row.ns[CaState::Loss.index()])
    }),
    flow("changes", Kind::U64, |l| Value::Uint(l.row.changes)),
    // Events of this flow that did not start from its state: a transition
    // happened unseen (lost, or not reported by the kernel).
    flow("mismatches", Kind::U64, |l| Value::Uint(l.row.mismatches)),
    flow("lost_events", Kind::U64, |l| {
        Value::Uint(l.window.lost_events)
    }),
];

/// A `--by` group's row in a window.
pub struct GroupLine<'a> {
    pub window: &'a Window,
    pub by: GroupKey,
    pub group: &'a Group,
}

pub type GroupGet = for<'x, 'y> fn(&'x GroupLine<'y>) -> Value<'x>;

const fn group(name: &'static str, kind: Kind, get: GroupGet) -> Column<GroupGet> {
    Column { name, kind, get }
}

/// The per-group row, in its columns' order.
pub static GROUP: &[Column<GroupGet>] = &[
    group("window_start", Kind::Time, |l| l.window.start()),
    group("window_end", Kind::Time, |l| l.window.end()),
    group("by", Kind::Text, |l| text(l.by.name())),
    group("key", Kind::Text, |l| text(&l.group.key)),
    group("flows", Kind::U64, |l| Value::Uint(l.group.flows)),
    group("open_ns", Kind::U64, |l| {
        Value::Uint(l.group.ns[CaState::Open.index()])
    }),
    group("disorder_ns", Kind::U64, |l| {
        Value::Uint(l.group.ns[CaState::Disorder.index()])
    }),
    group("cwr_ns", Kind::U64, |l| {
        Value::Uint(l.group.ns[CaState::Cwr.index()])
    }),
    group("recovery_ns", Kind::U64, |l| {
        Value::Uint(l.group.ns[CaState::Recovery.index()])
    }),
    group("loss_ns", Kind::U64, |l| {
        Value::Uint(l.group.ns[CaState::Loss.index()])
    }),
    group("changes", Kind::U64, |l| Value::Uint(l.group.changes)),
    group("mismatches", Kind::U64, |l| Value::Uint(l.group.mismatches)),
    group("lost_events", Kind::U64, |l| {
        Value::Uint(l.window.lost_events)
    }),
];

/// The CSV header of a list of columns.
pub fn csv_header<G>(columns: &[Column<G>]) -> String {
    columns.iter().map(|c| c.name).collect::<Vec<_>>().join(",")
}

/// One CSV line of cells. Text is anyone's to choose (a process's name, a
/// cgroup's path, a host name in a file): every text cell goes through
/// [`escape::csv`].
pub fn csv_line<'a>(out: &mut dyn Write, cells: impl Iterator<Item = Value<'a>>) -> io::Result<()> {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        match cell {
            Value::Time(_, t) => out.write_all(t.as_bytes())?,
            Value::Text(t) => out.write_all(escape::csv(&t).as_bytes())?,
            Value::Uint(n) => write!(out, "{n}")?,
            Value::Float(x) => write!(out, "{x}")?,
            Value::Null => {}
        }
    }
    out.write_all(b"\n")
}

/// One JSON object of named cells, on a line of its own.
pub fn json_line<'a>(
    out: &mut dyn Write,
    cells: impl Iterator<Item = (&'static str, Value<'a>)>,
) -> io::Result<()> {
    struct Object<I>(std::cell::Cell<Option<I>>);
    impl<'a, I: Iterator<Item = (&'static str, Value<'a>)>> Serialize for Object<I> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut map = s.serialize_map(None)?;
            for (name, v) in self.0.take().into_iter().flatten() {
                map.serialize_entry(name, &v)?;
            }
            map.end()
        }
    }
    serde_json::to_writer(&mut *out, &Object(std::cell::Cell::new(Some(cells))))?;
    out.write_all(b"\n")
}
