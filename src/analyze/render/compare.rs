//! A comparison of two sets of recordings (see [`crate::analyze::compare`])
//! as a table for people and as one JSON object for programs.

use std::io::{self, Write};

use serde_json::{json, Map, Value};

use super::printer::slot_range;
use crate::analyze::compare::{
    called_out, percent, trouble, Change, Side, DWELL_SLOTS, RATE_FACTOR, SHARE_POINTS,
};
use crate::analyze::engine::FlowRow;
use crate::escape;
use crate::event::CaState;

/// The two sides, named as the user gave them, and the dwell histograms'
/// unit in ns (the engine's `hist_unit`).
pub struct Comparison<'a> {
    pub before: (&'a str, &'a Side),
    pub after: (&'a str, &'a Side),
    pub unit_ns: u64,
}

impl Comparison<'_> {
    /// A median stay's slot as a range of time, in the unit that reads
    /// best.
    fn stay(&self, slot: Option<usize>) -> String {
        let Some(slot) = slot else {
            return "-".into();
        };
        let (lo, hi) = slot_range(slot);
        let (lo, hi) = (
            lo.saturating_mul(self.unit_ns),
            hi.saturating_mul(self.unit_ns),
        );
        if hi >= 10_000_000 {
            format!("{}-{} ms", lo / 1_000_000, hi / 1_000_000)
        } else {
            format!("{}-{} us", lo / 1_000, hi / 1_000)
        }
    }

    /// A stay's slot in ns: the stays were cut to whole units before they
    /// were counted, so the slot holds up to its last unit's last ns.
    fn stay_json(&self, slot: Option<usize>) -> Value {
        slot.map_or(Value::Null, |s| {
            let (lo, hi) = slot_range(s);
            json!({
                "low_ns": lo.saturating_mul(self.unit_ns),
                "high_ns": hi.saturating_add(1).saturating_mul(self.unit_ns).saturating_sub(1),
            })
        })
    }

    /// What a called-out change reads as.
    fn say(&self, c: &Change) -> String {
        match c {
            Change::Share(s, d) => format!("{} {d:+.1} points of the flows' time", s.name()),
            Change::Rate { before, after } => {
                format!("state changes per flow-second from {before:.1} to {after:.1}")
            }
            Change::Dwell {
                state,
                before,
                after,
            } => format!(
                "a typical stay in {} from {} to {}",
                state.name(),
                self.stay(Some(*before)),
                self.stay(Some(*after))
            ),
        }
    }

    /// A called-out change for programs: what moved, and by how much.
    fn change_json(&self, c: &Change) -> Value {
        let mut v = match c {
            Change::Share(s, d) => json!({"kind": "share", "state": s.name(), "points": d}),
            Change::Rate { before, after } => {
                json!({"kind": "rate", "before": before, "after": after})
            }
            Change::Dwell {
                state,
                before,
                after,
            } => json!({
                "kind": "stay",
                "state": state.name(),
                "before": self.stay_json(Some(*before)),
                "after": self.stay_json(Some(*after)),
            }),
        };
        v["text"] = json!(self.say(c));
        v
    }

    pub fn write_table(&self, out: &mut dyn Write) -> io::Result<()> {
        let (b, a) = (self.before.1, self.after.1);
        for (label, (name, side)) in [("Before", self.before), ("After", self.after)] {
            writeln!(
                out,
                "{label:<7} {} ({} flows, {:.3} s of flow time)",
                escape::terminal(name),
                side.flows,
                side.total_ns() as f64 / 1e9
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<24} {:>14} {:>14} {:>12}",
            "", "before", "after", "change"
        )?;
        // A side without flow time has no shares: "-", not 0 %.
        let share = |side: &Side, s: CaState| (side.total_ns() > 0).then(|| side.share(s));
        for s in CaState::ALL {
            let cell = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1} %"));
            let (x, y) = (share(b, s), share(a, s));
            // Rounded first, so that a move too small to show reads 0.0,
            // not -0.0.
            let d = x.zip(y).map_or("-".to_string(), |(x, y)| {
                format!("{:+.1} pts", ((y - x) * 10.0).round() / 10.0 + 0.0)
            });
            writeln!(
                out,
                "{:<24} {:>14} {:>14} {:>12}",
                s.name(),
                cell(x),
                cell(y),
                d
            )?;
        }
        let (x, y) = (b.changes_per_flow_second(), a.changes_per_flow_second());
        let ratio = if x > 0.0 {
            format!("x{:.2}", y / x)
        } else {
            "-".into()
        };
        let rate = |side: &Side, v: f64| {
            if side.total_ns() > 0 {
                format!("{v:.1}")
            } else {
                "-".into()
            }
        };
        writeln!(
            out,
            "{:<24} {:>14} {:>14} {ratio:>12}",
            "changes per flow-second",
            rate(b, x),
            rate(a, y)
        )?;
        for s in CaState::ALL {
            let (x, y) = (b.median_slot(s), a.median_slot(s));
            if x.is_some() || y.is_some() {
                writeln!(
                    out,
                    "{:<24} {:>14} {:>14}",
                    format!("typical stay, {}", s.name()),
                    self.stay(x),
                    self.stay(y)
                )?;
            }
        }
        let calls: Vec<String> = called_out(b, a).iter().map(|c| self.say(c)).collect();
        writeln!(out)?;
        if calls.is_empty() && (b.total_ns() == 0 || a.total_ns() == 0) {
            writeln!(out, "Nothing to compare: a side has no flow time.")?;
        } else if calls.is_empty() {
            writeln!(
                out,
                "No difference worth calling out (shares within {SHARE_POINTS} point, the change rate within x{RATE_FACTOR}, typical stays within {DWELL_SLOTS} powers of two)."
            )?;
        } else {
            writeln!(out, "Called out: {}.", calls.join("; "))?;
        }
        writeln!(out)?;
        writeln!(out, "Flows most in loss + recovery")?;
        for (label, side) in [("before", b), ("after", a)] {
            if side.worst.is_empty() {
                writeln!(out, "  {label:<6} none")?;
            }
            for r in &side.worst {
                writeln!(out, "  {label:<6} {}", worst_line(r))?;
            }
        }
        Ok(())
    }

    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        let side = |(name, s): (&str, &Side)| {
            let mut share = Map::new();
            let mut stay = Map::new();
            for st in CaState::ALL {
                let v = (s.total_ns() > 0).then(|| s.share(st));
                share.insert(st.name().into(), json!(v));
                stay.insert(st.name().into(), self.stay_json(s.median_slot(st)));
            }
            json!({
                "inputs": name,
                "flows": s.flows,
                "flow_time_ns": s.total_ns(),
                "state_ns": by_state(&s.ns),
                "share_percent": share,
                "changes": s.changes,
                "mismatches": s.mismatches,
                "changes_per_flow_second": s.changes_per_flow_second(),
                "typical_stay": stay,
                "worst": s.worst.iter().map(worst_json).collect::<Vec<_>>(),
            })
        };
        let v = json!({
            "before": side(self.before),
            "after": side(self.after),
            "called_out": called_out(self.before.1, self.after.1).iter().map(|c| self.change_json(c)).collect::<Vec<_>>(),
        });
        serde_json::to_writer(&mut *out, &v)?;
        writeln!(out)
    }
}

fn worst_line(r: &FlowRow) -> String {
    let total = r.ns.iter().fold(0u64, |a, &n| a.saturating_add(n));
    format!(
        "{}/{} > {}/{}  {} ms of {} ms ({:.1} %)  flow {}  {}",
        r.addr.saddr,
        r.addr.sport,
        r.addr.daddr,
        r.addr.dport,
        trouble(&r.ns) / 1_000_000,
        total / 1_000_000,
        percent(trouble(&r.ns), total),
        r.key.cookie,
        escape::terminal(r.addr.owner.comm.as_str())
    )
}

fn worst_json(r: &FlowRow) -> Value {
    json!({
        "flow": r.key.cookie,
        "saddr": r.addr.saddr.to_string(),
        "sport": r.addr.sport,
        "daddr": r.addr.daddr.to_string(),
        "dport": r.addr.dport,
        "comm": r.addr.owner.comm.as_str(),
        "trouble_ns": trouble(&r.ns),
        "state_ns": by_state(&r.ns),
        "changes": r.changes,
    })
}

/// Per-state nanoseconds as an object keyed by the states' names.
fn by_state(ns: &[u64; 5]) -> Map<String, Value> {
    CaState::ALL
        .iter()
        .map(|s| (s.name().to_string(), json!(ns[s.index()])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::engine::{Summary, WindowReport};
    use crate::event::{FlowAddr, FlowKey, KernelName, Owner};
    use std::net::{IpAddr, Ipv4Addr};

    /// A worst flow's command name, and the names the user gave the sides,
    /// reach the terminal escaped; JSON carries them as data.
    #[test]
    fn names_are_escaped_for_the_terminal() {
        let row = FlowRow {
            key: FlowKey { boot: 0, cookie: 1 },
            addr: FlowAddr {
                family: 4,
                saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                sport: 1,
                daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                dport: 2,
                owner: Owner {
                    pid: 7,
                    comm: KernelName::from_str_lossy("\x1b]0;pwn\x07\n"),
                    cgroup: 0,
                },
                netns: 0,
                cc: Default::default(),
            },
            ns: [1, 0, 0, 5, 0],
            changes: 1,
            mismatches: 0,
            trouble: None,
        };
        let s = Summary {
            windows: vec![WindowReport {
                index: 0,
                start_ns: 0,
                end_ns: 0,
                rows: vec![row],
                hist: Default::default(),
            }],
            flows: 1,
            ..Summary::default()
        };
        let side = Side::of(&s, 3);
        let c = Comparison {
            before: ("a\x1b[31m\nb", &side),
            after: ("c", &side),
            unit_ns: 1_000,
        };
        let mut table = Vec::new();
        c.write_table(&mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(!table.contains(['\x1b', '\x07']), "{table:?}");
        assert!(table.contains(r"a\x1b[31m\x0ab"), "{table}");
        assert!(table.contains(r"\x1b]0;pwn\x07\x0a"), "{table}");
        let mut json = Vec::new();
        c.write_json(&mut json).unwrap();
        let v: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["before"]["worst"][0]["comm"], "\x1b]0;pwn\x07\n");
    }
}
