//! What the congestion states and the table's columns mean, for the man
//! pages (`tcpcong man`, `tcpcong man analyze`): what the kernel saw when
//! it put a flow in each state. The README says the same in its own words.

/// (state, what it means), in the tables' column order.
pub const STATES: [(&str, &str); 5] = [
    (
        "open",
        "Normal sending, no sign of loss: the congestion window grows as the algorithm (cubic, bbr, ...) allows. Column Open_ms.",
    ),
    (
        "disorder",
        "Duplicate or selective ACKs (SACKs) came in: segments arrived out of order, or one may be lost, but there is not yet the evidence to retransmit. The window is not reduced; usually a flow is back in open within a round trip. Column Dod_ms.",
    ),
    (
        "recovery",
        "Fast recovery: duplicate ACKs, SACKs or RACK's timing showed a loss, and the lost segments are retransmitted while the window is reduced (to the slow start threshold the algorithm sets: cubic cuts it by 30 %; bbr keeps sending near its estimate of the path, so a bbr flow can spend more of its time in recovery, at a higher throughput, than a cubic flow on the same path). It ends when everything sent before it is acknowledged. Column Rcov_ms.",
    ),
    (
        "cwr",
        "Congestion Window Reduced without a loss: the receiver echoed an ECN congestion mark, or this host's own queue refused a segment (local congestion). The window is lowered once; nothing is retransmitted. Column Cwr_ms.",
    ),
    (
        "loss",
        "The retransmission timer (RTO) fired: nothing was acknowledged for too long. The window drops to one segment (or the algorithm's loss window) and slow start begins again: the costliest state. Column Los_ms.",
    ),
];

/// What the rest of the tables and the events' columns say.
pub const NOTES: [(&str, &str); 3] = [
    (
        "Chgs",
        "State changes a flow made (a repeated RTO, loss to loss, is not one). With -u the columns are in microseconds (Open_us ...).",
    ),
    (
        "ssthresh 2147483647",
        "The slow start threshold's \"infinite\" value: none set yet, so the flow is in slow start until its first reduction.",
    ),
    (
        "chain breaks",
        "An event whose old state is not the state its flow was in: a transition came without an event. It is counted (mismatches) and the unknown span is not credited.",
    ),
];

/// The section as roff, for a man page.
pub fn roff() -> String {
    let mut out = String::from(".SH \"CONGESTION STATES\"\n");
    out.push_str(
        "What the kernel saw when it put a flow in each state (tcp_set_ca_state), and the table column that times it.\n",
    );
    for (name, text) in STATES.iter().chain(&NOTES) {
        out.push_str(&format!(".TP\n\\fB{name}\\fR\n{}\n", roff_text(text)));
    }
    out
}

/// Text for roff: a backslash escaped, and no line starting with a
/// control character.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e");
    match s.chars().next() {
        Some('.' | '\'') => format!("\\&{s}"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CaState;

    #[test]
    fn every_state_is_explained_in_the_tables_order() {
        let names: Vec<&str> = STATES.iter().map(|(n, _)| *n).collect();
        let mut kernel: Vec<&str> = CaState::ALL.iter().map(|s| s.name()).collect();
        kernel.sort();
        let mut ours = names.clone();
        ours.sort();
        assert_eq!(ours, kernel);
        let page = roff();
        for n in names {
            assert!(page.contains(&format!("\\fB{n}\\fR")), "{page}");
        }
    }
}
