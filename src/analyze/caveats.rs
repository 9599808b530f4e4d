//! What a duration table cannot show, in words: the lines `analyze`,
//! `report` and live mode print on stderr beside their numbers, and the
//! warnings the Python package raises with its table. One text for both,
//! so that the two say the same.

use std::path::Path;

use super::engine::Accounting;
use crate::record::format::writer::is_being_written;

/// An unfinished file in an input folder, passed over.
pub fn ignoring(path: &Path) -> String {
    let what = if is_being_written(path) {
        "a capture that is still running"
    } else {
        "a capture that was killed before it finished"
    };
    format!("ignoring {}: {what}", path.display())
}

/// Overlapping captures (two recorders at once) recorded some events twice.
pub fn duplicates(n: u64) -> Option<String> {
    (n > 0).then(|| {
        format!("{n} events were recorded by two overlapping captures and are counted once")
    })
}

/// Full accounting without lifecycle events cannot bound a flow's
/// timeline by its birth and its close: say so rather than over-count.
pub fn without_lifecycle(accounting: Accounting, lifecycle: bool) -> Option<String> {
    (accounting == Accounting::Full && !lifecycle).then(|| {
        "no lifecycle events (recorded without them): full accounting times each flow from the capture's start to its last event, so flows born or closed during the capture are credited time they did not have or miss time they had; between accounting needs no lifecycle events".to_string()
    })
}

/// Lost events and the mismatches they leave, in terms of what is known.
/// `gaps`: the recordings' own count of transitions that came without an
/// event (None live, where the capture reports them itself).
pub fn losses(lost_events: u64, gaps: Option<u64>, mismatches: u64) -> Vec<String> {
    let mut out = Vec::new();
    if lost_events > 0 {
        out.push(format!(
            "the capture lost {lost_events} events (not handed over, or runs the kernel skipped; which sockets they were of is not known): a flow that lost one of its own shows a mismatch ({mismatches} here)"
        ));
    }
    if mismatches > 0 {
        let gaps = gaps.map_or(String::new(), |g| {
            format!("; the recordings counted {g} such gaps")
        });
        out.push(format!(
            "{mismatches} transitions did not start from the state their flow was last in (a transition happened without an event){gaps}; the time since each flow's previous event is not counted"
        ));
    }
    out
}
