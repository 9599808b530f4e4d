//! What a capture is asked to do, as the command line resolves it: plain
//! data, without libbpf, so that the command line can build it.

use super::attach::AttachMode;
use super::buffer::BufferKind;
use crate::event::Filters;

/// Everything the kernel side needs to know before load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Applied in the kernel (netns and cgroup as their ids).
    pub filters: Filters,
    pub buffer: BufferKind,
    /// `None`: the best mode this kernel offers (see [`attach::plan`]).
    pub attach: Option<AttachMode>,
    /// Emit `tcp_state` events.
    pub lifecycle: bool,
    /// The evidence recorded beside the transitions.
    pub evidence: Evidence,
    /// Where to pin the ring buffer for a benchmark's producer.
    pub pin_buffer: Option<std::path::PathBuf>,
}

/// The kinds of evidence a capture records beside the transitions, each
/// with its own program (so what is off costs nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Evidence {
    /// `retransmit` events.
    pub retransmits: bool,
    /// `drop` events, and the drops of no traced flow counted by reason.
    pub drops: bool,
    /// `reset` events, sent and received.
    pub resets: bool,
}

impl Evidence {
    pub const ALL: Evidence = Evidence {
        retransmits: true,
        drops: true,
        resets: true,
    };

    /// The kinds on, by their rows' `kind`, as a file's metadata lists them.
    pub fn kinds(&self) -> Vec<String> {
        [
            (self.retransmits, "retransmit"),
            (self.drops, "drop"),
            (self.resets, "reset"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, kind)| kind.to_string())
        .collect()
    }
}
