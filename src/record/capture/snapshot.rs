//! Socket snapshots: every TCP socket's TCP and congestion states at an
//! instant, from the `iter/tcp` program, as rows of kind `snapshot`.
//!
//! An iterator sees the sockets of the network namespace it is created
//! in, so a snapshot creates one per namespace in use (one a process is
//! in, or one bound under /run/netns, as `ip netns` does), entering each
//! for the creation with setns(2), which needs CAP_SYS_ADMIN. Namespaces
//! that cannot be entered are counted; the capture's own is always seen.

use std::cell::RefCell;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::inbox::Inbox;
use super::raw::RAW_EVENT_SIZE;
use super::skel::TcpcongSkel;
use super::{CaptureStats, Sink};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::host::{network_namespaces, OWN_NETNS};
use crate::time::ktime_now;

pub struct Snapshots {
    /// This thread's namespace, to come back to.
    own: File,
    own_ino: u64,
    /// `--netns`: the only namespace whose sockets the programs keep.
    only: Option<u32>,
}

impl Snapshots {
    pub fn new(only: Option<u32>) -> Result<Snapshots> {
        let own = File::open(OWN_NETNS).map_err(|e| Error::io(Path::new(OWN_NETNS), e))?;
        let own_ino = own
            .metadata()
            .map_err(|e| Error::io(Path::new(OWN_NETNS), e))?
            .ino();
        Ok(Snapshots { own, own_ino, only })
    }

    /// Every socket's states now (none where the iterator did not attach).
    /// Records that do not decode are counted as lost.
    pub fn take(
        &mut self,
        skel: &TcpcongSkel<'_>,
        inbox: &RefCell<Inbox>,
        stats: &mut CaptureStats,
        sink: &mut dyn Sink,
    ) -> Result<Vec<Event>> {
        let Some(link) = skel.links.snapshot_tcp.as_ref() else {
            sink.snapshot_taken(ktime_now());
            return Ok(Vec::new());
        };
        let started = ktime_now();
        let mut unreachable = 0;
        let mut bytes = Vec::new();
        for (ino, path) in network_namespaces() {
            if self.only.is_some_and(|only| u64::from(only) != ino) {
                continue;
            }
            let iter = if ino == self.own_ino {
                libbpf_rs::Iter::new(link)
            } else {
                if File::open(&path).and_then(|ns| enter(&ns)).is_err() {
                    unreachable += 1;
                    continue;
                }
                let iter = libbpf_rs::Iter::new(link);
                enter(&self.own).map_err(|e| Error::io(Path::new(OWN_NETNS), e))?;
                iter
            };
            iter.and_then(|mut it| it.read_to_end(&mut bytes).map_err(Into::into))
                .map_err(|source| Error::Bpf {
                    what: "reading the socket snapshot",
                    source,
                })?;
        }
        let done = ktime_now();
        sink.snapshot_taken(done);
        stats.snapshots += 1;
        stats.snapshot_max_ns = stats.snapshot_max_ns.max(done - started);
        stats.snapshot_unreachable = stats.snapshot_unreachable.max(unreachable);
        let mut inbox = inbox.borrow_mut();
        let mut rows = Vec::with_capacity(bytes.len() / RAW_EVENT_SIZE);
        for record in bytes.chunks(RAW_EVENT_SIZE) {
            if inbox.decoder.decode(record, &mut rows).is_err() {
                inbox.malformed += 1;
            }
        }
        stats.snapshot_rows += rows.len() as u64;
        Ok(rows)
    }
}

/// Moves this thread into the network namespace `ns` is a handle of.
fn enter(ns: &File) -> std::io::Result<()> {
    // SAFETY: a valid descriptor; setns changes only this thread's namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
