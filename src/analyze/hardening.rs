//! Entry points for hostile input, shared by the fuzz targets (`fuzz/`) and
//! the tests that replay their corpus: arbitrary bytes as a recording, and
//! arbitrary event sequences through the engine. Both must end in a result
//! or an error, never a panic, and the engine's output must stay physically
//! possible (a flow cannot spend more time in states than a window lasts).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};

use super::engine::{Accounting, Engine, EngineConfig, Unit};
use crate::error::Result;
use crate::event::{CaState, Change, FlowAddr, FlowKey, Span, TcpState};
use crate::record::format::reader::{Columns, Dataset, Item, RowFilter};

/// Reads `bytes` as a recording file (through a temporary file, as the
/// reader needs a path) and runs every row through the engine.
pub fn read_recording(bytes: &[u8]) -> Result<u64> {
    let named = std::env::temp_dir().join("tcpcong-hardening.parquet");
    let (path, mut f) =
        crate::files::create_temp_beside(&named).map_err(|e| crate::error::Error::io(&named, e))?;
    let res = (|| {
        f.write_all(bytes)
            .map_err(|e| crate::error::Error::io(&path, e))?;
        drop(f);
        let data = Dataset::open(std::slice::from_ref(&path))?;
        let cfg = config(
            data.start_ns,
            Accounting::Full,
            data.lifecycle,
            Some(1_000_000_000),
        );
        let end = data.end_ns.max(data.start_ns);
        let mut engine = Engine::new(cfg);
        let mut rows = 0u64;
        data.scan(&RowFilter::default(), Columns::All, &mut |item| {
            match item {
                Item::Span(boot, span) => engine.set_span(boot, span),
                Item::Row(r) => {
                    rows += 1;
                    let addr = r.ev.addr.clone();
                    engine.push(r.t_ns, r.key, r.ev.change, move || addr);
                }
            }
            Ok(())
        })?;
        check(engine, end);
        Ok(rows)
    })();
    let _ = std::fs::remove_file(&path);
    res
}

fn config(
    start_ns: u64,
    accounting: Accounting,
    lifecycle: bool,
    interval_ns: Option<u64>,
) -> EngineConfig {
    EngineConfig {
        accounting,
        lifecycle,
        start_ns,
        until_ns: None,
        interval_ns,
        align: false,
        hist_unit: Unit::Micros,
    }
}

/// Finishes `engine` and asserts what must hold whatever the input.
fn check(engine: Engine, end_ns: u64) {
    let summary = engine.finish(end_ns);
    for w in &summary.windows {
        let length = w.end_ns.saturating_sub(w.start_ns);
        for r in &w.rows {
            let total: u64 = r.ns.iter().sum();
            assert!(
                total <= length,
                "flow {:?} has {total} ns of states in window {} [{}, {}) of {length} ns ({} windows)",
                r.key, w.index, w.start_ns, w.end_ns, summary.windows.len()
            );
        }
    }
}

/// Decodes `bytes` into engine settings and an event sequence (8 bytes per
/// event: time step, flow, kind and states), runs it, and checks it.
pub fn engine_sequence(bytes: &[u8]) {
    let Some((&head, body)) = bytes.split_first() else {
        return;
    };
    let accounting = if head & 1 == 0 {
        Accounting::Full
    } else {
        Accounting::Between
    };
    let interval = (head & 2 != 0).then_some(1_000_000 * u64::from(head >> 2).max(1));
    let start = 1_000_000_000u64;
    let mut engine = Engine::new(config(start, accounting, head & 4 != 0, interval));
    // The engine's contract, which the reader upholds: each flow's events
    // in time order (ties allowed), captures of a boot not overlapping.
    let mut t = start - 5_000_000;
    let mut latest = t;
    for (i, chunk) in body.chunks_exact(8).enumerate() {
        if head & 8 != 0 && i % 64 == 0 {
            // A new capture every 64 events, sometimes after a gap.
            let span_start = latest + u64::from(chunk[0]) * 1_000;
            let span_end = span_start + 50_000_000;
            latest = span_end;
            t = t.max(span_start);
            engine.set_span(
                0,
                Span {
                    start_ns: span_start,
                    end_ns: span_end,
                    lifecycle: chunk[1] & 1 == 0,
                },
            );
        }
        t += u64::from(u32::from_le_bytes([chunk[0], chunk[1], chunk[2], 0]));
        latest = latest.max(t);
        let cookie = u64::from(chunk[4] % 8);
        let (old, new) = (chunk[5] % 5, chunk[6] % 5);
        let change = match chunk[7] % 8 {
            0 | 4 => Change::Tcp {
                old: TcpState(chunk[5] % 13),
                new: TcpState(chunk[6] % 13),
            },
            1 | 5 => Change::Tcp {
                old: TcpState(3),
                new: TcpState::ESTABLISHED,
            },
            6 => Change::Snapshot {
                tcp: TcpState(chunk[5] % 13),
                ca: CaState::from_kernel(new).unwrap_or(CaState::Open),
            },
            _ => Change::Ca {
                old: CaState::from_kernel(old).unwrap_or(CaState::Open),
                new: CaState::from_kernel(new).unwrap_or(CaState::Open),
            },
        };
        engine.push(t, FlowKey { boot: 0, cookie }, change, || FlowAddr {
            family: 4,
            saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sport: cookie as u16,
            daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dport: 5201,
            owner: Default::default(),
            netns: 0,
            cc: Default::default(),
        });
        if interval.is_some() && chunk[3] & 0x40 != 0 {
            // Live mode drains as it goes.
            drop(engine.drain_until(t));
        }
    }
    check(engine, latest.max(start) + 1_000_000);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic sample of what the fuzzer explores, run with every
    /// `cargo test` (xorshift, so no dependency and the same inputs always).
    #[test]
    fn random_event_sequences_keep_the_engine_sound() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..500 {
            let len = (next() % 2000) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            engine_sequence(&bytes);
        }
    }

    #[test]
    fn garbage_files_are_errors_not_panics() {
        assert!(read_recording(b"").is_err());
        assert!(read_recording(b"PAR1").is_err());
        assert!(read_recording(b"PAR1\0\0\0\0PAR1").is_err());
        assert!(read_recording(&[0xff; 4096]).is_err());
    }
}
