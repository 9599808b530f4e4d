//! Where the transports (`buffer`, the perf reader in `ffi`) and the
//! socket iterator (`snapshot`) put what they read: decoded events, and
//! the counts of what could not be decoded or was lost on the way. A
//! module of its own so that the transports and libbpf's callbacks can all
//! reach it without reaching each other.

use super::raw::Decoder;
use crate::event::Event;
use crate::time::ktime_now;

/// How long a lean record may wait for its full record: longer than the
/// end's settling, which waits for preempted programs.
const PARKED_NS: u64 = 2_000_000_000;

/// Where decoded events and the transports' loss counts accumulate.
#[derive(Default)]
pub struct Inbox {
    pub events: Vec<Event>,
    /// Records that did not decode (never seen; counted so it cannot
    /// hide), and lean records whose full record never came.
    pub malformed: u64,
    /// Samples the perf buffer reported as lost.
    pub perf_lost: u64,
    pub(super) decoder: Decoder,
}

impl Inbox {
    pub(super) fn take(&mut self, data: &[u8]) {
        // A lean record may be parked until its full record comes.
        if self.decoder.decode(data, &mut self.events).is_err() {
            self.malformed += 1;
        }
    }

    /// After a round's reads: the parked lean records that can be decoded
    /// now. One parked for longer than PARKED_NS is given up (its full
    /// record comes first, so it is never that late): counted.
    pub(super) fn retry(&mut self) {
        let give_up = ktime_now().saturating_sub(PARKED_NS);
        self.malformed += self.decoder.retry(&mut self.events, give_up);
    }
}
