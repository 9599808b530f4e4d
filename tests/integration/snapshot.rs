//! Socket snapshots, end to end: idle connections opened before the
//! capture and bulk flows under loss, recorded as a series rotated every
//! second, so that many files start and end while flows change state.
//!
//! Checked against what the kernel says independently: the idle sockets'
//! cookies as `ss -e` lists them, and, for every snapshot row of a busy
//! flow, the flow's own events around it in the files (the event numbers
//! the kernel gave, and the states those events name).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::util::*;

const IDLE_PORT: u16 = 7100;
const IDLE_PAIRS: usize = 8;

/// Connected pairs in the lab's namespace that send nothing, held open
/// until dropped.
struct Idle(Child);

impl Idle {
    fn open(lab: &Lab) -> Idle {
        let script = format!(
            "import socket, sys\n\
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('127.0.0.1', {IDLE_PORT})); s.listen(64)\n\
             keep = []\n\
             for _ in range({IDLE_PAIRS}):\n\
             \x20   c = socket.create_connection(('127.0.0.1', {IDLE_PORT})); a, _ = s.accept(); keep += [c, a]\n\
             print('ready', flush=True)\n\
             sys.stdin.read()\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &lab.ns, "python3", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("the idle pairs report");
        assert_eq!(line.trim(), "ready");
        Idle(child)
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The cookies of the established sockets to or from `port` in the lab, as
/// `ss -e` prints them (`sk:HEX`).
fn ss_cookies(lab: &Lab, port: u16) -> BTreeSet<u64> {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns,
            "ss",
            "-tanHe",
            "state",
            "established",
        ])
        .output()
        .expect("ss runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let port = format!(":{port}");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.split_whitespace().take(4).any(|f| f.ends_with(&port)))
        .map(|l| {
            let hex = l
                .split_whitespace()
                .find_map(|f| f.strip_prefix("sk:"))
                .unwrap_or_else(|| panic!("no sk: in {l}"));
            u64::from_str_radix(hex, 16).expect("a hex cookie")
        })
        .collect()
}

#[test]
fn every_file_snapshots_every_socket_in_order_with_its_events() {
    let lab = Lab::new("snap", &["--loss", "2"]);
    let idle = Idle::open(&lab);
    let cookies = ss_cookies(&lab, IDLE_PORT);
    assert_eq!(cookies.len(), 2 * IDLE_PAIRS, "{cookies:?}");

    let dir = TempDir::new("snap");
    let out = dir.join("series");
    let rec = Recorder::start(
        &out.join(""),
        &["--netns", &lab.netns_path(), "--rotate-seconds", "1"],
    );
    lab.traffic(4, &["--parallel", "4"]);
    lab.await_closed();
    let done = rec.stop();
    let files = files_below(&out, |n| n.ends_with(".parquet"));
    let metas: Vec<serde_json::Value> = files.iter().map(|f| read_meta(f)).collect();
    // The placement checked below needs every event the kernel numbered.
    // A call the kernel skipped (a program re-entered on one CPU: rare,
    // counted, said on stderr) took no number, so it leaves no hole in
    // them, and a state it missed shows as kernel_gap on the flow's next
    // event, which the check allows; any other loss would leave a hole.
    let lost: u64 = metas
        .iter()
        .map(|m| m["lost_events"].as_u64().unwrap())
        .sum();
    assert_only_kernel_skips(&stderr(&done), lost);
    assert_eq!(
        ss_cookies(&lab, IDLE_PORT),
        cookies,
        "the idle pairs stayed"
    );
    drop(idle);

    assert!(files.len() >= 4, "{files:?}");
    let mut rows = Vec::new();
    for (f, m) in files.iter().zip(&metas) {
        assert_eq!(m["schema_minor"], 4);
        let snaps = read_snapshots(f);
        assert_eq!(m["snapshots"], snaps.len() as u64, "{}", f.display());
        // Every file has the idle sockets, at its start and at its end.
        let seen: BTreeMap<u64, usize> = snaps.iter().fold(BTreeMap::new(), |mut n, s| {
            *n.entry(s.flow).or_default() += 1;
            n
        });
        for c in &cookies {
            assert!(
                seen.get(c).is_some_and(|&n| n >= 2),
                "{}: {c} {seen:?}",
                f.display()
            );
        }
        for s in snaps.iter().filter(|s| cookies.contains(&s.flow)) {
            assert_eq!((s.old.as_str(), s.new.as_str()), ("established", "open"));
            assert!(s.sport == IDLE_PORT || s.dport == IDLE_PORT, "{s:?}");
        }
        // All rows of the file, in file order: snapshots among events.
        let mut all = read_events(f);
        all.extend(snaps);
        all.sort_by_key(|e| (e.ktime, e.seq, e.kind == "snapshot"));
        rows.extend(all);
    }

    // Every snapshot of a numbered flow sits between the flow's events its
    // number names: the one numbered as the snapshot says, before it in
    // time, and the next one after it, in the state the snapshot found.
    let mut per_flow: BTreeMap<u64, Vec<&Ev>> = BTreeMap::new();
    for r in &rows {
        per_flow.entry(r.flow).or_default().push(r);
    }
    let (mut checked, mut excused) = (0, 0);
    for (flow, rows) in &per_flow {
        for (i, s) in rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == "snapshot")
        {
            let numbered = |r: &&&Ev| r.kind == "ca_state" || r.kind == "tcp_state";
            let before = rows[..i].iter().rev().find(numbered);
            // The next event with a number of its own (evidence takes none).
            let after = rows[i + 1..].iter().find(numbered);
            if s.seq == 0 {
                assert!(before.is_none(), "flow {flow}: {s:?} after {before:?}");
                continue;
            }
            let b = before.unwrap_or_else(|| panic!("flow {flow}: nothing before {s:?}"));
            assert_eq!(b.seq, s.seq, "flow {flow}: {b:?} then {s:?}");
            assert!(b.ktime <= s.ktime);
            let prev_ca = rows[..i].iter().rev().find(|r| r.kind == "ca_state");
            let next_ca = rows[i + 1..].iter().find(|r| r.kind == "ca_state");
            if let Some(a) = after {
                assert_eq!(a.seq, s.seq + 1, "flow {flow}: {s:?} then {a:?}");
                assert!(a.ktime >= s.ktime);
            }
            // A state the kernel changed without an event shows as
            // kernel_gap on the next call: only then may they differ.
            if next_ca.is_some_and(|n| n.kernel_gap == 1) {
                continue;
            }
            // So does a skipped call with no later call of the flow to say
            // so: one per skip at most.
            if next_ca.is_none() && prev_ca.is_some_and(|p| p.new != s.new) && excused < lost {
                excused += 1;
                continue;
            }
            if let Some(p) = prev_ca {
                assert_eq!(p.new, s.new, "flow {flow}: {p:?} then {s:?}");
            }
            if let Some(n) = next_ca {
                assert_eq!(n.old, s.new, "flow {flow}: {s:?} then {n:?}");
            }
            checked += 1;
        }
    }
    assert!(
        checked >= files.len() * 4,
        "{checked} busy snapshots checked"
    );

    // analyze times the idle flows over the whole series, in Open, without
    // a change: from the first file's start to the last one's end.
    let span = metas[metas.len() - 1]["end_ktime_ns"].as_u64().unwrap()
        - metas[0]["start_ktime_ns"].as_u64().unwrap();
    let timed: BTreeMap<u64, serde_json::Value> = analyze_rows(&[&out])
        .into_iter()
        .map(|v| (v["flow"].as_u64().unwrap(), v))
        .collect();
    for c in &cookies {
        let v = &timed[c];
        assert_eq!(v["open_ns"], span, "flow {c}: {v}");
        assert_eq!(v["changes"], 0);
        assert_eq!(
            v["recovery_ns"].as_u64().unwrap() + v["loss_ns"].as_u64().unwrap(),
            0
        );
    }
}
