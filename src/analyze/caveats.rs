//! What a duration table cannot show, in words: the lines `analyze`,
//! `report` and live mode print on stderr beside their numbers, and the
//! warnings the Python package raises with its table. One text for both,
//! so that the two say the same.

use super::engine::{Accounting, Summary};
use crate::record::format::reader::{finished_of, Dataset, Discovered};
use crate::record::format::schema::SCHEMA_MINOR;
use crate::record::format::writer::is_being_written;

/// What the inputs' discovery read besides finished recordings, and what
/// it passed over.
pub fn discovered(found: &Discovered) -> Vec<String> {
    let reading = found.unfinished.iter().map(|p| {
        if let (false, Some(done)) = (p.exists(), finished_of(p)) {
            return format!(
                "reading {}: its capture finished it as this began, so its unfinished file {} is read no more",
                done.display(),
                p.display()
            );
        }
        let what = if is_being_written(p) {
            "the unfinished file of a capture that is still running"
        } else {
            "what a capture that was killed before it finished left"
        };
        format!(
            "reading {}: {what}, up to about a second before it was last written; the events the capture lost and its cgroups' paths are known only when a capture ends",
            p.display()
        )
    });
    let passed = found
        .passed_over
        .iter()
        .map(|(p, why)| format!("ignoring {}: {why}", p.display()));
    reading.chain(passed).collect()
}

/// Overlapping captures (two recorders at once) recorded some events twice.
pub fn duplicates(n: u64) -> Option<String> {
    (n > 0).then(|| {
        format!("{n} events were recorded by more than one of the overlapping captures and are counted once")
    })
}

/// Full accounting without lifecycle events cannot bound a flow's
/// timeline by its birth and its close: say so rather than over-count.
pub fn without_lifecycle(accounting: Accounting, lifecycle: bool) -> Option<String> {
    (accounting == Accounting::Full && !lifecycle).then(|| {
        "no lifecycle events (recorded without them): full accounting times each flow from the capture's start to its last event, so flows born or closed during the capture are credited time they did not have or miss time they had; between accounting needs no lifecycle events".to_string()
    })
}

/// Lost events and the mismatches they leave, in terms of what is known,
/// with the time the breaks left uncounted. `gaps`: the recordings' own
/// count of transitions that came without an event (None live, where the
/// capture reports them itself).
pub fn losses(lost_events: u64, gaps: Option<u64>, s: &Summary) -> Vec<String> {
    let mismatches = s.mismatches;
    let mut out = Vec::new();
    if lost_events > 0 {
        out.push(lost(
            lost_events,
            &format!("a flow that lost one of its own shows a mismatch ({mismatches} here)"),
        ));
    }
    if mismatches > 0 {
        let gaps = gaps.map_or(String::new(), |g| {
            format!("; the recordings counted {g} such gaps")
        });
        let transitions = if mismatches == 1 {
            "1 transition".to_string()
        } else {
            format!("{mismatches} transitions")
        };
        out.push(format!(
            "{transitions} did not start from the state their flow was last in (a transition happened without an event){gaps}; the time since each flow's previous event is not counted: {}",
            uncounted(s)
        ));
    }
    out
}

/// Events lost, and what that does to what is shown.
fn lost(lost_events: u64, missing: &str) -> String {
    format!(
        "the capture lost {lost_events} events (not handed over, or runs the kernel skipped; which sockets they were of is not known): {missing}"
    )
}

/// Notes on recordings just opened: those a later version wrote (a
/// higher `schema_minor`), whose rows of kinds it added are left out, as
/// this version cannot read them.
pub fn opened(data: &Dataset) -> Vec<String> {
    data.recordings()
        .filter(|(_, m)| m.schema_minor > SCHEMA_MINOR)
        .map(|(path, m)| {
            format!(
                "note: {} was written by a later tcpcong (schema 1.{}, this one reads 1.{SCHEMA_MINOR}): rows of kinds it added are left out",
                path.display(),
                m.schema_minor
            )
        })
        .collect()
}

/// What a listing of events misses for each lost one.
pub const EVENTS_MISSING: &str = "they are not among these rows";
/// What a listing of episodes misses for each lost event.
pub const EPISODES_MISSING: &str =
    "a flow that lost one of its own may have an episode cut short or joined to the next";

/// What the recordings say they miss, for the listings that compute no
/// summary of their own (events, episodes): `missing` says what a lost
/// event does to the listing.
pub fn recorded_losses(data: &Dataset, missing: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (lost_events, gaps) = (data.lost_events, data.gaps);
    if lost_events > 0 {
        out.push(lost(lost_events, missing));
    }
    if gaps > 0 {
        out.push(format!(
            "the recordings counted {gaps} transitions that did not start from the state their flow was last in (a transition happened without an event)"
        ));
    }
    out
}

/// The time chain breaks left uncounted, and its share of the flows' time:
/// `12.3 ms, 0.004 % of the flows' time`.
pub fn uncounted(s: &Summary) -> String {
    let all = s.credited_ns.saturating_add(s.uncredited_ns);
    let share = if all == 0 {
        0.0
    } else {
        s.uncredited_ns as f64 * 100.0 / all as f64
    };
    format!(
        "{:.1} ms, {} % of the flows' time",
        s.uncredited_ns as f64 / 1e6,
        significant(share)
    )
}

/// Whether the uncounted time is worth alarm: at least a percent of the
/// flows' time.
pub fn uncounted_matters(s: &Summary) -> bool {
    s.uncredited_ns.saturating_mul(100) >= s.credited_ns.saturating_add(s.uncredited_ns)
        && s.uncredited_ns > 0
}

/// A share with two significant digits, however small (0.0042, 1.3, 25).
fn significant(pct: f64) -> String {
    if pct == 0.0 || pct >= 10.0 {
        return format!("{pct:.0}");
    }
    let decimals = (1 - pct.log10().floor() as i32).max(0) as usize;
    format!("{pct:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(credited_ns: u64, uncredited_ns: u64) -> Summary {
        Summary {
            windows: Vec::new(),
            mismatches: 2,
            late_ns: 0,
            late_events: 0,
            credited_ns,
            uncredited_ns,
            over_budget: false,
            flows: 1,
        }
    }

    #[test]
    fn uncounted_time_is_said_with_its_share() {
        // 2 breaks hiding 4.2 ms of 100 s: a note, not an alarm.
        let few = summary(99_995_800_000, 4_200_000);
        assert_eq!(uncounted(&few), "4.2 ms, 0.0042 % of the flows' time");
        assert!(!uncounted_matters(&few));
        let many = summary(3_000_000_000, 1_000_000_000);
        assert_eq!(uncounted(&many), "1000.0 ms, 25 % of the flows' time");
        assert!(uncounted_matters(&many));
        assert_eq!(uncounted(&summary(0, 0)), "0.0 ms, 0 % of the flows' time");
        assert!(!uncounted_matters(&summary(0, 0)));
        assert_eq!(significant(1.25), "1.2");
        assert_eq!(significant(0.5), "0.50");
    }
}
