//! Arrow batches decoded into the rows the engine and `events` take.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt16Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};

use super::super::schema::{DetailArrays, CAPTURE_KIND};
use super::conform::NEEDED;
use super::filter::RowFilter;
use crate::error::{Error, Result};
use crate::event::{
    CaState, CgroupNames, Change, Detail, Event, FlowAddr, FlowKey, Owner, Resend, Span,
    SymbolName, TcpState,
};
use crate::time::Clock;

/// Which columns to decode: analysis needs ten, episodes those and the
/// counters their costs and causes come from, `events` shows them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    Analysis,
    Episodes,
    All,
}

/// One event placed on the dataset's timeline. With [`Columns::Analysis`]
/// the columns analysis does not read are left at their defaults.
#[derive(Debug, Clone)]
pub struct Row {
    pub t_ns: u64,
    pub key: FlowKey,
    pub ev: Event,
}

/// What a scan hands out: rows, and before each run of files the capture
/// span their flows are timed in.
pub enum Item<'a> {
    Span(u32, Span),
    Row(&'a Row),
}

pub(super) fn column<'a>(b: &'a RecordBatch, path: &Path, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name)
        .ok_or_else(|| Error::bad_input(path, format!("column {name} is missing")))
}

/// A string column as decoded: a dictionary (what [`dictionary_hint`] asks
/// for, with `Int32` keys), or what another tool's layout gave.
pub(super) enum Strings<'a> {
    Plain(&'a StringArray),
    Dict(&'a [i32], &'a StringArray),
    OtherDict(Vec<usize>, &'a StringArray),
}

impl<'a> Strings<'a> {
    pub(super) fn of(path: &Path, b: &'a RecordBatch, name: &str) -> Result<Strings<'a>> {
        let a = column(b, path, name)?;
        if let Some(d) = a.as_dictionary_opt::<Int32Type>() {
            if let Some(values) = d.values().as_string_opt::<i32>() {
                return Ok(Strings::Dict(d.keys().values(), values));
            }
        }
        if let Some(d) = a.as_any_dictionary_opt() {
            if let Some(values) = d.values().as_string_opt::<i32>() {
                return Ok(Strings::OtherDict(d.normalized_keys(), values));
            }
        }
        a.as_string_opt::<i32>()
            .map(Strings::Plain)
            .ok_or_else(|| Error::bad_input(path, format!("column {name} does not hold strings")))
    }

    /// Every row's value through `f`, which sees each distinct value of a
    /// dictionary once; `None` if a key is outside its dictionary.
    pub(super) fn map<T: Copy>(&self, f: impl Fn(&str) -> T) -> Option<Vec<T>> {
        let distinct = |values: &StringArray| -> Vec<T> {
            (0..values.len()).map(|i| f(values.value(i))).collect()
        };
        match self {
            Strings::Plain(a) => Some((0..a.len()).map(|i| f(a.value(i))).collect()),
            Strings::Dict(keys, values) => {
                let mapped = distinct(values);
                let at = |k: i32| usize::try_from(k).ok().and_then(|k| mapped.get(k).copied());
                keys.iter().map(|&k| at(k)).collect()
            }
            Strings::OtherDict(keys, values) => {
                let mapped = distinct(values);
                keys.iter().map(|&k| mapped.get(k).copied()).collect()
            }
        }
    }
}

/// A string column's values per row, through `f` (see [`Strings::map`]).
pub(super) fn per_row<T: Copy>(
    path: &Path,
    b: &RecordBatch,
    name: &str,
    f: impl Fn(&str) -> T,
) -> Result<Vec<T>> {
    Strings::of(path, b, name)?.map(f).ok_or_else(|| {
        Error::bad_input(path, format!("column {name}: a key outside its dictionary"))
    })
}

/// The kinds of row: those that carry a flow's states, and the capture's
/// own.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Capture,
    Ca,
    Tcp,
    Snapshot,
    Retransmit,
    Drop,
    Reset,
}

/// A state column's value read both ways; the row's kind says which holds.
#[derive(Clone, Copy)]
pub(super) struct StateName {
    ca: Option<CaState>,
    tcp: TcpState,
    resend: Option<Resend>,
    /// As a drop's direction (`rx`) or reason: a name as the kernel writes
    /// them (lower case, digits, `_`), which no output needs to escape.
    name: Option<SymbolName>,
}

impl StateName {
    pub(super) fn parse(s: &str) -> StateName {
        StateName {
            ca: CaState::from_name(s),
            tcp: TcpState::from_name(s).unwrap_or(TcpState(0)),
            resend: Resend::from_name(s),
            name: (!s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')))
            .then(|| SymbolName::from_str_lossy(s)),
        }
    }
}

/// Whether an evidence row's direction (`old_state`) is `rx`; None for
/// neither `rx` nor `tx`.
fn received(direction: StateName) -> Option<bool> {
    match direction.name.as_ref().map(SymbolName::as_str) {
        Some("rx") => Some(true),
        Some("tx") => Some(false),
        _ => None,
    }
}

pub(super) fn decode_batch(
    path: &Path,
    b: &RecordBatch,
    (boot, clock, cgroup_names, later): (u32, Clock, &CgroupNames, bool),
    (filter, columns): (&RowFilter, Columns),
    f: &mut dyn FnMut(&Row) -> Result<()>,
) -> Result<()> {
    let c = |name| column(b, path, name);
    let ktime = c("ktime_ns")?.as_primitive::<UInt64Type>();
    let flow = c("flow")?.as_primitive::<UInt64Type>();
    let family = c("family")?.as_primitive::<UInt8Type>();
    let sport = c("sport")?.as_primitive::<UInt16Type>();
    let dport = c("dport")?.as_primitive::<UInt16Type>();

    // Parsing an address is the costly part of a row: once per distinct
    // address in a batch.
    let address = |s: &str| s.parse::<std::net::IpAddr>().ok();
    let saddrs = per_row(path, b, "saddr", address)?;
    let daddrs = per_row(path, b, "daddr", address)?;
    let kinds = per_row(path, b, "kind", |s| match s {
        CAPTURE_KIND => Some(Kind::Capture),
        "ca_state" => Some(Kind::Ca),
        "tcp_state" => Some(Kind::Tcp),
        "snapshot" => Some(Kind::Snapshot),
        "retransmit" => Some(Kind::Retransmit),
        "drop" => Some(Kind::Drop),
        "reset" => Some(Kind::Reset),
        // Kinds added by later schema versions (`later`: the file is of
        // one) are not ours to judge; in another file, one is an error.
        _ => None,
    })?;
    let olds = per_row(path, b, "old_state", StateName::parse)?;
    let news = per_row(path, b, "new_state", StateName::parse)?;
    let detail = DetailArrays::of(b);
    let with_detail = b.num_columns() > NEEDED.len();
    let schema = b.schema();
    if let Some((f, _)) = schema
        .fields()
        .iter()
        .zip(b.columns())
        .find(|(_, a)| a.null_count() > 0)
    {
        return Err(Error::bad_input(
            path,
            format!(
                "null values in column {}, which has none in schema v1",
                f.name()
            ),
        ));
    }

    for i in 0..b.num_rows() {
        let (fl, sp, dp) = (flow.value(i), sport.value(i), dport.value(i));
        if !filter.keeps(fl, sp, dp) || filter.family.is_some_and(|f| f != family.value(i)) {
            continue;
        }
        let detail = match (with_detail, columns) {
            (false, _) => Detail::default(),
            (true, Columns::All) => detail.at(i),
            (true, Columns::Analysis) => detail.analysis_at(i),
            (true, Columns::Episodes) => detail.episodes_at(i),
        };
        if !filter.keeps_socket(&detail, cgroup_names) {
            continue;
        }
        let bad = |what: &str| Error::bad_input(path, format!("row with {what}"));
        let ca = |s: StateName| s.ca.ok_or_else(|| bad("an unknown ca state"));
        let change = match kinds[i] {
            Some(Kind::Ca) => Change::Ca {
                old: ca(olds[i])?,
                new: ca(news[i])?,
            },
            Some(Kind::Tcp) => Change::Tcp {
                old: olds[i].tcp,
                new: news[i].tcp,
            },
            Some(Kind::Snapshot) => Change::Snapshot {
                tcp: olds[i].tcp,
                ca: ca(news[i])?,
            },
            Some(Kind::Retransmit) => Change::Retransmit {
                ca: ca(olds[i])?,
                why: news[i]
                    .resend
                    .ok_or_else(|| bad("an unknown retransmission kind"))?,
            },
            Some(Kind::Drop) => Change::Drop {
                rx: received(olds[i]).ok_or_else(|| bad("a drop's direction neither rx nor tx"))?,
                reason: news[i]
                    .name
                    .ok_or_else(|| bad("a drop without its reason"))?,
            },
            Some(Kind::Reset) => Change::Reset {
                rx: received(olds[i])
                    .ok_or_else(|| bad("a reset's direction neither rx nor tx"))?,
                reason: news[i]
                    .name
                    .ok_or_else(|| bad("a reset without its reason"))?,
            },
            Some(Kind::Capture) => continue,
            None if later => continue,
            None => return Err(bad("a kind its schema version does not have")),
        };
        let addr = FlowAddr {
            family: family.value(i),
            saddr: saddrs[i].ok_or_else(|| bad("a bad saddr"))?,
            sport: sp,
            daddr: daddrs[i].ok_or_else(|| bad("a bad daddr"))?,
            dport: dp,
            owner: Owner::of(&detail),
            netns: detail.netns,
            cc: detail.cong_algo,
        };
        f(&Row {
            t_ns: clock.wall(ktime.value(i)),
            key: FlowKey { boot, cookie: fl },
            ev: Event {
                ktime_ns: ktime.value(i),
                flow: fl,
                addr,
                change,
                detail,
            },
        })?;
    }
    Ok(())
}
