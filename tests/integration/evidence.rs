//! The evidence recorded beside the transitions, end to end as root: a
//! lossy lab's retransmissions against the kernel's own counters for its
//! namespace.

use std::collections::HashMap;
use std::time::Duration;

use crate::util::*;

/// The namespace's counters that retransmissions move.
const COUNTERS: [&str; 6] = [
    "TcpRetransSegs",
    "TcpExtTCPFastRetrans",
    "TcpExtTCPSlowStartRetrans",
    "TcpExtTCPTimeouts",
    "TcpExtTCPSynRetrans",
    "TcpExtTCPLossProbes",
];

/// Retransmissions of every kind a lab makes: handshakes while SYNs are
/// dropped, bulk transfer under loss with a blackout (timeouts, then loss
/// state), and requests answered one at a time (a lost one is its flow's
/// tail, which a loss probe resends).
fn retransmitting_traffic(lab: &Lab) {
    let block = lab.synblock(1200);
    lab.traffic(1, &[]);
    block.join().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| lab.traffic(3, &[]));
        std::thread::sleep(Duration::from_millis(1500));
        lab.blackout(400);
    });
    assert!(lab.requests(2) > 0);
    lab.await_closed();
}

/// `events FILE --kind KIND --format json`, which must succeed: its rows.
fn events_json(file: &std::path::Path, kind: &str) -> Vec<serde_json::Value> {
    let o = tcpcong(&[
        "events",
        file.to_str().unwrap(),
        "--kind",
        kind,
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn retransmissions_match_the_kernel_counters() {
    let lab = Lab::new("rtx", &["--loss", "2"]);
    let dir = TempDir::new("rtx");
    let (out, none) = (dir.join("run.parquet"), dir.join("none.parquet"));
    let netns = lab.netns_path();
    let rec = Recorder::start(&out, &["--netns", &netns]);
    let without = Recorder::start(&none, &["--netns", &netns, "--evidence", "none"]);
    // After the recorders: the lab's sockets have their cookies (which
    // name them to the observer) from their first event on.
    let observer = Observer::start();
    let before = lab.nstat();
    retransmitting_traffic(&lab);
    // No socket of the lab is left to retransmit: the counters are final.
    let after = lab.nstat();
    let seen = observer.stop();
    let (o, _) = Recorder::stop_together(rec, without);
    let kernel: HashMap<&str, u64> = COUNTERS
        .iter()
        .map(|&k| (k, after[k] - before[k]))
        .collect();

    let meta = read_meta(&out);
    assert_eq!(meta["schema_minor"], 3);
    assert_eq!(meta["evidence"], serde_json::json!(["retransmit", "drop"]));
    assert_no_transport_loss(&stderr(&o), &meta);
    let events = read_events(&out);
    let resent: Vec<&Ev> = events.iter().filter(|e| e.kind == "retransmit").collect();
    let rows = |why: &str| resent.iter().filter(|e| e.new == why).count() as u64;
    let segs = |why: &str| -> u64 {
        resent
            .iter()
            .filter(|e| why.is_empty() || e.new == why)
            .map(|e| u64::from(e.segs))
            .sum()
    };
    let recorded = format!(
        "rows {:?}, segments {:?}",
        ["fast", "loss", "rto", "tlp", "syn", "other"].map(|w| (w, rows(w))),
        ["fast", "loss", "rto", "tlp", "syn"].map(|w| (w, segs(w)))
    );
    // For the record of a run (`--nocapture`).
    eprintln!("{recorded}; kernel: {kernel:?}");
    assert!(
        resent.iter().all(|e| e.err == 0 && e.segs > 0),
        "{recorded}"
    );
    assert_eq!(rows("other"), 0, "{recorded}");
    // Every kind the workload is made to cause. `loss` (resends in loss
    // state after the blackout's timeout) is there in most runs, not all:
    // the timeout's own resend can be the only one its flow needs.
    for why in ["fast", "rto", "tlp", "syn"] {
        assert!(rows(why) > 0, "no {why} retransmission: {recorded}");
    }

    // The recorder has every call of the tracepoint the independent
    // observer saw, flow by flow, and nothing else (a program the kernel
    // skipped, re-entered on one CPU, is the only loss allowed: said).
    let mut per_flow: HashMap<u64, (u64, u64)> = HashMap::new();
    for e in &events {
        let f = per_flow.entry(e.flow).or_default();
        if e.kind == "retransmit" {
            *f = (f.0 + 1, f.1 + u64::from(e.segs));
        }
    }
    let lost = meta["lost_events"].as_u64().unwrap() + seen.resent_misses;
    for (flow, file) in &per_flow {
        let observed = seen.resent.get(flow).copied().unwrap_or_default();
        assert!(
            file.0 <= observed.0 && observed.0 <= file.0 + lost && file.1 <= observed.1,
            "flow {flow}: {file:?} (calls, segments) in the file, {observed:?} observed"
        );
    }

    // The kernel's counters, exactly but for resends the kernel counted
    // without calling the tracepoint, which neither tracer can see. SYN-ACKs
    // a listener resent count in TcpRetransSegs and TCPSynRetrans (and, from
    // its timer, in TCPTimeouts) and are no flow's yet.
    let synacks = kernel["TcpExtTCPSynRetrans"]
        .checked_sub(rows("syn"))
        .unwrap_or_else(|| panic!("more SYNs resent than counted: {recorded}"));
    let unseen = kernel["TcpRetransSegs"]
        .checked_sub(segs("") + synacks)
        .unwrap_or_else(|| panic!("more resent than counted: {recorded}"));
    let (fast_unseen, loss_unseen) = (
        kernel["TcpExtTCPFastRetrans"].checked_sub(segs("fast")),
        kernel["TcpExtTCPSlowStartRetrans"].checked_sub(segs("loss")),
    );
    let (Some(fast_unseen), Some(loss_unseen)) = (fast_unseen, loss_unseen) else {
        panic!("more fast or loss resends than counted: {recorded}; kernel {kernel:?}");
    };
    assert!(
        fast_unseen + loss_unseen <= unseen,
        "{recorded}; kernel {kernel:?}"
    );
    let timeouts = rows("rto") + rows("syn");
    assert!(
        timeouts <= kernel["TcpExtTCPTimeouts"]
            && kernel["TcpExtTCPTimeouts"] <= timeouts + synacks + unseen,
        "{recorded}; kernel {kernel:?}"
    );
    // Rare: about one a run at most, when it happens at all.
    assert!(
        unseen <= 2,
        "{unseen} resends counted by the kernel, seen by neither tracer: {recorded}; kernel {kernel:?}"
    );
    // Probes that sent new data count too: no counter has resends alone.
    assert!(rows("tlp") <= kernel["TcpExtTCPLossProbes"], "{recorded}");

    // Every row is a traced flow's, in the lab, and takes no event number:
    // its seq is the number of its socket's last event.
    let mut last: HashMap<u64, u32> = HashMap::new();
    for e in &events {
        assert_eq!(u64::from(e.netns), lab.inode());
        match e.kind.as_str() {
            "retransmit" => {
                assert_eq!(e.seq, last.get(&e.flow).copied().unwrap_or(0), "{e:?}")
            }
            "ca_state" | "tcp_state" => {
                last.insert(e.flow, e.seq);
            }
            _ => {}
        }
    }

    // What `events` shows of them.
    let shown = events_json(&out, "retransmit");
    assert_eq!(shown.len(), resent.len());
    let shown_segs: u64 = shown.iter().map(|r| r["segs"].as_u64().unwrap()).sum();
    assert_eq!(shown_segs, segs(""));
    assert!(shown.iter().all(|r| r["kind"] == "retransmit"));

    // Asked for none: the same traffic, no rows, and the file says so.
    assert_eq!(read_meta(&none)["evidence"], serde_json::json!([]));
    assert!(read_events(&none).iter().all(|e| e.kind != "retransmit"));
}

#[test]
fn drops_match_the_rules_and_queues_that_dropped_them() {
    let lab = Lab::new("drops", &["--loss", "2"]);
    lab.shape();
    let dir = TempDir::new("drops");
    let (out, udp) = (dir.join("run.parquet"), dir.join("udp.parquet"));
    let netns = lab.netns_path();

    // Datagrams to a closed port: dropped by the kernel, and no flow's.
    let rec = Recorder::start(&udp, &["--netns", &netns]);
    lab.udp(20_000);
    let o = rec.stop();
    let meta = read_meta(&udp);
    assert_no_transport_loss(&stderr(&o), &meta);
    assert_eq!(meta["lost_events"], 0);
    assert!(read_events(&udp).is_empty());
    assert!(meta.get("untraced_drops").is_none(), "{meta}");

    let before = lab.drops();
    let rec = Recorder::start(&out, &["--netns", &netns]);
    let observer = Observer::start();
    lab.traffic(2, &[]);
    lab.traffic(1, &["--parallel", "3"]);
    lab.await_closed();
    let after = lab.drops();
    let observed = observer.stop();
    let o = rec.stop();
    let meta = read_meta(&out);
    assert_no_transport_loss(&stderr(&o), &meta);
    assert_eq!(meta["evidence"], serde_json::json!(["retransmit", "drop"]));
    let events = read_events(&out);
    let drops: Vec<&Ev> = events.iter().filter(|e| e.kind == "drop").collect();
    let rows = |dir: &str, reason: &str| {
        drops
            .iter()
            .filter(|e| e.old == dir && e.new == reason)
            .count() as u64
    };
    let untraced = |reason: &str| meta["untraced_drops"][reason].as_u64().unwrap_or(0);
    let lab_count = |what: &str| after[what] - before.get(what).copied().unwrap_or(0);
    let seen = format!(
        "{:?}; untraced {}",
        drops
            .iter()
            .map(|e| (&e.old, &e.new))
            .fold(HashMap::new(), |mut m, k| {
                *m.entry(k).or_insert(0) += 1;
                m
            }),
        meta["untraced_drops"]
    );
    // Every segment the rule dropped, on its way in: a flow's, or (a
    // handshake's, before its flow is established) counted apart; and every
    // one the queue dropped, its sender's own. Exactly as the independent
    // observer counted the kernel's calls, and as the rule and the queue
    // counted them but for a drop the kernel counted without calling its
    // tracepoint (seen by neither tracer; rare).
    assert!(lab_count("netfilter") > 0 && lab_count("qdisc") > 0);
    for (dir, reason, counter) in [
        ("rx", "netfilter_drop", "netfilter"),
        ("tx", "qdisc_drop", "qdisc"),
    ] {
        let file = rows(dir, reason) + untraced(reason);
        let traced = observed
            .dropped
            .get(&(lab.inode(), reason.to_string()))
            .copied()
            .unwrap_or(0);
        let counted = lab_count(counter);
        eprintln!("{reason}: {file} in the file, {traced} observed, {counted} counted by the lab");
        assert_eq!(file, traced, "{reason}: {seen}");
        assert!(
            traced <= counted && counted <= traced + 2,
            "{reason}: {traced} observed, {counted} counted by the lab: {seen}"
        );
    }
    assert!(rows("rx", "netfilter_drop") > 0 && rows("tx", "qdisc_drop") > 0);
    for e in &drops {
        assert_eq!(u64::from(e.netns), lab.inode(), "{e:?}");
    }
    // Where: the function that freed each, by name.
    let shown = events_json(&out, "drop");
    assert_eq!(shown.len(), drops.len());
    assert!(
        shown
            .iter()
            .all(|r| !r["location"].as_str().unwrap().is_empty()),
        "{shown:?}"
    );
    // Each flow's drops name its owner, as its transitions do.
    let owners: HashMap<u64, u32> = events
        .iter()
        .filter(|e| e.kind == "ca_state" && e.pid != 0)
        .map(|e| (e.flow, e.pid))
        .collect();
    for e in drops.iter().filter(|e| owners.contains_key(&e.flow)) {
        assert_eq!(Some(&e.pid), owners.get(&e.flow), "{e:?}");
    }
}
