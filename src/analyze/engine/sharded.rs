//! The engine on several threads: flows are dealt out to engines on
//! worker threads by their key, so that every event of a flow reaches the
//! same engine in the order it was pushed, and the engines' summaries are
//! merged into the one a single engine would give ([`Summary::merge`]).
//! Exact by construction: a flow's arithmetic never depends on another
//! flow, and the capture spans, which every flow depends on, reach every
//! engine at the same place in its stream.
//!
//! The thread that pushes (the reader, decoding) is one of the threads:
//! with `threads = 1` the engine runs on it, with `threads = n` it feeds
//! `n - 1` engines. Memory stays O(flows): each worker's queue holds a few
//! batches.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::{Engine, EngineConfig, Summary};
use crate::event::{Change, FlowAddr, FlowKey, Span};

/// Events handed to a worker at a time: large enough that the channel's
/// cost per event vanishes, small enough to keep the workers busy.
const BATCH: usize = 4096;
/// Batches queued per worker before the pushing thread waits.
const QUEUED: usize = 4;

enum Msg {
    Span(u32, Span),
    Push(u64, FlowKey, Change, FlowAddr),
}

struct Worker {
    batch: Vec<Msg>,
    queue: SyncSender<Vec<Msg>>,
    thread: JoinHandle<Engine>,
}

/// An [`Engine`] with the same `push`/`set_span`/`finish`, over threads.
pub struct Sharded(Inner);

enum Inner {
    One(Box<Engine>),
    Many(Vec<Worker>),
}

impl Sharded {
    /// `threads` counts the pushing thread; 0 is taken as 1. The engines
    /// share `budget` (see [`Engine::with_budget`]).
    pub fn new(cfg: EngineConfig, threads: usize, budget: u64) -> Sharded {
        if threads <= 1 {
            return Sharded(Inner::One(Box::new(Engine::new(cfg).with_budget(budget))));
        }
        let share = budget / threads as u64;
        let workers = (1..threads)
            .map(|_| {
                let (queue, rx) = sync_channel(QUEUED);
                let cfg = cfg.clone();
                Worker {
                    batch: Vec::with_capacity(BATCH),
                    queue,
                    thread: std::thread::Builder::new()
                        .name("engine".into())
                        .spawn(move || work(Engine::new(cfg).with_budget(share), rx))
                        .expect("spawning an engine thread"),
                }
            })
            .collect();
        Sharded(Inner::Many(workers))
    }

    pub fn set_span(&mut self, boot: u32, span: Span) {
        match &mut self.0 {
            Inner::One(e) => e.set_span(boot, span),
            Inner::Many(workers) => {
                for w in workers {
                    w.send(Msg::Span(boot, span));
                }
            }
        }
    }

    pub fn push(&mut self, t_ns: u64, key: FlowKey, change: Change, addr: &FlowAddr) {
        match &mut self.0 {
            Inner::One(e) => e.push(t_ns, key, change, || addr.clone()),
            Inner::Many(workers) => {
                let n = workers.len() as u64;
                // Socket cookies count up: mixed, so that the low bits
                // deal flows out evenly whatever the numbering.
                let mixed = (key.cookie ^ u64::from(key.boot)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let w = &mut workers[((mixed >> 32) % n) as usize];
                w.send(Msg::Push(t_ns, key, change, addr.clone()));
            }
        }
    }

    pub fn finish(self, end_ns: u64) -> Summary {
        match self.0 {
            Inner::One(e) => e.finish(end_ns),
            Inner::Many(workers) => {
                let engines: Vec<Engine> = workers
                    .into_iter()
                    .map(|mut w| {
                        w.flush();
                        drop(w.queue);
                        w.thread
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect();
                Summary::merge(engines.into_iter().map(|e| e.finish(end_ns)).collect())
            }
        }
    }
}

impl Worker {
    fn send(&mut self, m: Msg) {
        self.batch.push(m);
        if self.batch.len() == BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        // A worker stops receiving only by panicking, which `finish`
        // passes on when it joins it.
        let _ = self.queue.send(batch);
    }
}

fn work(mut engine: Engine, rx: Receiver<Vec<Msg>>) -> Engine {
    for batch in rx {
        for m in batch {
            match m {
                Msg::Span(boot, span) => engine.set_span(boot, span),
                Msg::Push(t, key, change, addr) => engine.push(t, key, change, move || addr),
            }
        }
    }
    engine
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::engine::{Accounting, Unit, WINDOWS_BUDGET};
    use crate::event::{CaState, TcpState};
    use std::net::{IpAddr, Ipv4Addr};

    const S: u64 = 1_700_000_000_000_000_000;
    const MS: u64 = 1_000_000;

    /// Two boots, two captures of the first, 60 flows with births, closes,
    /// reused cookies and lost events (a change whose `old` is not the
    /// flow's state), interleaved by time.
    type Pushed = (u64, FlowKey, Change);

    fn events() -> (Vec<Pushed>, [(u32, Span); 3]) {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut out = Vec::new();
        for cookie in 0..60u64 {
            let key = FlowKey {
                boot: (cookie % 2) as u32,
                cookie,
            };
            let mut t = S + next(2_000) * MS;
            if cookie % 3 == 0 {
                out.push((t, key, tcp(7, TcpState::SYN_SENT.0)));
                t += next(50) * MS;
                out.push((t, key, tcp(2, TcpState::ESTABLISHED.0)));
            }
            let mut state = CaState::Open;
            for _ in 0..next(40) {
                t += next(300) * MS;
                let new = CaState::ALL[next(5) as usize];
                // Now and then an event is missing: `old` is not `state`.
                let old = if next(10) == 0 { CaState::Loss } else { state };
                out.push((t, key, Change::Ca { old, new }));
                state = new;
            }
            if cookie % 4 == 0 {
                out.push((t + MS, key, tcp(1, TcpState::CLOSE.0)));
            }
        }
        out.sort_by_key(|e| e.0);
        let span = |start_ms: u64, end_ms: u64| Span {
            start_ns: S + start_ms * MS,
            end_ns: S + end_ms * MS,
            lifecycle: true,
        };
        (
            out,
            [
                (0, span(0, 9_000)),
                (1, span(0, 20_000)),
                (0, span(9_000, 20_000)),
            ],
        )
    }

    fn tcp(old: u8, new: u8) -> Change {
        Change::Tcp {
            old: TcpState(old),
            new: TcpState(new),
        }
    }

    fn summary(threads: usize, accounting: Accounting, interval_ns: Option<u64>) -> Summary {
        let (events, spans) = events();
        let cfg = EngineConfig {
            accounting,
            lifecycle: true,
            start_ns: S,
            until_ns: Some(S + 18_000 * MS),
            interval_ns,
            align: false,
            hist_unit: Unit::Millis,
        };
        let mut e = Sharded::new(cfg, threads, WINDOWS_BUDGET);
        e.set_span(spans[0].0, spans[0].1);
        e.set_span(spans[1].0, spans[1].1);
        let mut second = false;
        for (t, key, change) in events {
            // The first boot's second capture starts at 9 s.
            if !second && t >= spans[2].1.start_ns {
                e.set_span(spans[2].0, spans[2].1);
                second = true;
            }
            let addr = FlowAddr {
                family: 4,
                saddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                sport: 1000 + (key.cookie % 7) as u16,
                daddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                dport: 443,
                owner: Default::default(),
                netns: 0,
                cc: Default::default(),
            };
            e.push(t, key, change, &addr);
        }
        e.finish(S + 20_000 * MS)
    }

    #[test]
    fn any_number_of_threads_gives_one_engines_summary() {
        for accounting in [Accounting::Full, Accounting::Between] {
            for interval in [None, Some(1_000 * MS)] {
                let one = summary(1, accounting, interval);
                // Enough of every kind of event to mean something.
                let rows: usize = one.windows.iter().map(|w| w.rows.len()).sum();
                assert!(
                    rows >= 50 && one.flows >= 50 && one.mismatches > 10,
                    "{rows} {one:?}"
                );
                for threads in [2, 3, 5] {
                    assert_eq!(
                        summary(threads, accounting, interval),
                        one,
                        "{threads} threads, {accounting:?}, interval {interval:?}"
                    );
                }
            }
        }
    }
}
