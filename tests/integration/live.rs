//! Live mode (the drop-in for BCC's tcpcong), `events` and `doctor`, as a
//! user runs them. Live tests need root and build their own lab.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// Starts live tcpcong with `args`, runs lab traffic, returns its output.
fn live_during_traffic(lab: &Lab, args: &[&str], secs: u32) -> std::process::Output {
    live_until(lab, args, || lab.traffic(secs, &[]), false)
}

/// Live mode with `args` in the lab's namespace while `workload` runs;
/// stopped with Ctrl-C's signal after it when `interrupt`, else left to
/// end by itself.
fn live_until(
    lab: &Lab,
    args: &[&str],
    workload: impl FnOnce(),
    interrupt: bool,
) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(args)
        .args(["--netns", &lab.netns_path()])
        .env("TZ", "UTC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("live tcpcong starts");
    // The banner, printed once the programs are attached, comes on stdout
    // for a table and on stderr otherwise: both are read whole, and the
    // traffic starts when either shows it.
    let (attached, banner) = std::sync::mpsc::channel();
    let collect = |from: Box<dyn std::io::Read + Send>| {
        let attached = attached.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in std::io::BufReader::new(from).split(b'\n') {
                let line = line.unwrap();
                if line.starts_with(b"Tracing tcp congestion") {
                    let _ = attached.send(());
                }
                all.extend_from_slice(&line);
                all.push(b'\n');
            }
            all
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    if banner.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!(
            "live mode never attached: {}",
            String::from_utf8_lossy(&err.join().unwrap())
        );
    }
    workload();
    if interrupt {
        signal(child.id(), libc::SIGINT);
    }
    let status = child.wait().expect("live tcpcong ends");
    let o = std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    };
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

#[test]
fn live_intervals_print_tables_and_agree_with_a_recording() {
    let lab = Lab::new("live", &["--loss", "2"]);
    let dir = TempDir::new("live");
    let out = dir.join("same.parquet");
    let o = live_during_traffic(&lab, &["-T", "1", "4", "-o", out.to_str().unwrap()], 2);
    let text = stdout(&o);
    assert!(
        text.starts_with("Tracing tcp congestion control status duration"),
        "{text}"
    );
    let stamps = text
        .lines()
        .filter(|l| l.len() == 8 && l.as_bytes()[2] == b':')
        .count();
    assert_eq!(stamps, 4, "{text}");
    assert!(
        text.contains("LAddrPort") && text.contains("/5201"),
        "{text}"
    );

    // One capture, two outputs: the live JSON of the same run would be
    // redundant, so compare the live table's change counts with analyze of
    // the recording made by that very run, window by window.
    let replay = analyze_chgs(&tcpcong(&[
        "analyze",
        out.to_str().unwrap(),
        "-T",
        "1",
        "4",
    ]));
    let live = chgs(&text);
    assert!(!live.is_empty());
    assert_eq!(live, replay, "live:\n{text}");
}

/// (flow label, Chgs) per table row.
fn chgs(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| l.contains('/') && !l.starts_with("LAddr"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (format!("{} {}", f[0], f[1]), f[f.len() - 1].to_string())
        })
        .collect()
}

fn analyze_chgs(o: &std::process::Output) -> Vec<(String, String)> {
    assert!(o.status.success(), "{}", stderr(o));
    chgs(&stdout(o))
}

#[test]
fn live_filters_histograms_and_json() {
    let lab = Lab::new("livef", &["--loss", "2"]);
    let o = live_during_traffic(&lab, &["-d", "-R", "5201", "3", "1"], 2);
    let text = stdout(&o);
    assert!(text.contains("tcp_congest_state = open"), "{text}");
    assert!(
        text.contains("msecs               : count     distribution"),
        "{text}"
    );

    let o = live_during_traffic(
        &lab,
        &["-L", "5201", "--all", "--format", "json", "3", "1"],
        2,
    );
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(!lines.is_empty(), "{}", stderr(&o));
    assert!(lines.iter().all(|v| v["sport"] == 5201), "{lines:?}");
}

#[test]
fn events_stream_in_time_order() {
    let f = fixture("multi-flow.parquet");
    let text = stdout(&tcpcong(&["events", f.to_str().unwrap()]));
    insta::assert_snapshot!(
        "events_multi_head",
        text.lines().take(12).collect::<Vec<_>>().join("\n")
    );
    let json = stdout(&tcpcong(&[
        "events",
        f.to_str().unwrap(),
        "--format",
        "json",
    ]));
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), read_events(&f).len());
    assert!(rows
        .windows(2)
        .all(|w| w[0]["ktime_ns"].as_u64() <= w[1]["ktime_ns"].as_u64()));
    assert_eq!(
        rows[0].as_object().unwrap().len(),
        documented_columns() - 1 + EVENTS_NAMES,
        "every column but the capture rows' own"
    );

    let only = stdout(&tcpcong(&[
        "events",
        f.to_str().unwrap(),
        "-R",
        "5201",
        "--format",
        "json",
    ]));
    assert!(!only.is_empty());
    assert!(only.lines().all(|l| l.contains("\"dport\":5201")));

    // `| head -1`: the reader goes away, tcpcong ends quietly.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("{} events {} | head -1", bin(), f.display()))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn doctor_reports_what_works_and_what_does_not() {
    let o = tcpcong(&["doctor"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", stderr(&o));
    fn line<'a>(text: &'a str, what: &str) -> &'a str {
        text.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what} line in:\n{text}"))
    }
    assert!(
        line(&text, "--attach tracepoint").starts_with("ok"),
        "{text}"
    );
    assert!(
        line(&text, "--attach tracepoint").contains("loads and attaches"),
        "{text}"
    );
    // Every mode has its verdict, found out rather than assumed: on the
    // project's machines ftrace refuses fentry at load time and
    // the kernel has no kprobes at all.
    for mode in ["fentry", "kprobe"] {
        let l = line(&text, &format!("--attach {mode}"));
        assert!(
            l.starts_with("ok") && l.contains("loads and attaches")
                || l.starts_with("missing") && l.contains("out: "),
            "{text}"
        );
    }
    if !kernel_has_kprobes() {
        assert!(
            line(&text, "--attach kprobe").contains("CONFIG_KPROBES"),
            "{text}"
        );
    }
    // 6.18 says why it drops: recordings have drop rows.
    assert!(
        line(&text, "skb:kfree_skb reasons").starts_with("ok"),
        "{text}"
    );
    assert!(line(&text, "record would use").starts_with("ok"), "{text}");
    assert!(
        line(&text, "record would use").contains("--attach tracepoint with the ring buffer"),
        "{text}"
    );

    let o = tcpcong_without_capabilities(&["doctor"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(line(&text, "privileges").starts_with("missing"), "{text}");
    assert!(
        line(&text, "--attach tracepoint").contains("load not tried"),
        "{text}"
    );
    // What cannot be probed without privileges is unknown, not a false fact.
    assert!(
        line(&text, "BPF ring buffer").starts_with("unknown"),
        "{text}"
    );
    assert!(!line(&text, "record would use").contains("perf"), "{text}");
    // Nor is a mode that nothing loaded an "ok" beside the refusal.
    assert!(
        line(&text, "record would use").starts_with("unknown"),
        "{text}"
    );
    assert!(stderr(&o).contains("recording cannot work here"), "{o:?}");

    // A report that cannot be written says so, as every command does.
    let full = std::fs::File::create("/dev/full").expect("/dev/full");
    let o = std::process::Command::new(bin())
        .arg("doctor")
        .stdout(full)
        .output()
        .expect("tcpcong runs");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "tcpcong: writing to standard output: No space left on device (os error 28)"
    );
}

/// Live windows and `analyze` of the same run's recording agree exactly,
/// flow by flow and window by window, in both accounting modes: periods cut
/// by interval boundaries are credited the same way whether the window was
/// printed while the capture ran or computed afterwards.
#[test]
fn live_and_analyze_of_its_recording_agree_in_both_modes() {
    let lab = Lab::new("liveagree", &["--loss", "2"]);
    let dir = TempDir::new("liveagree");
    for mode in ["full", "between"] {
        let out = dir.join(&format!("{mode}.parquet"));
        let args = [
            "--format",
            "json",
            "--all",
            "--accounting",
            mode,
            "-o",
            out.to_str().unwrap(),
            "1",
            "4",
        ];
        let o = live_during_traffic(&lab, &args, 3);
        let rows = |text: &str| -> Vec<serde_json::Value> {
            text.lines()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    // Live knows the losses so far, analyze the file's total.
                    v.as_object_mut().unwrap().remove("lost_events");
                    v
                })
                .collect()
        };
        let live = rows(&stdout(&o));
        // The whole recording: it ends with the last window printed.
        let replay = tcpcong(&[
            "analyze",
            out.to_str().unwrap(),
            "--format",
            "json",
            "--all",
            "--accounting",
            mode,
            "1",
        ]);
        assert!(replay.status.success(), "{}", stderr(&replay));
        let offline = rows(&stdout(&replay));
        assert!(
            live.iter().any(|v| v["changes"].as_u64() > Some(0)),
            "{mode}: no changes"
        );
        assert_eq!(live, offline, "{mode}");
    }
}

/// `--episodes` prints each episode as it completes: the same rows as
/// `analyze --episodes` of the recording made by the same run (one tracker,
/// fed by the capture or by the file).
#[test]
fn live_episodes_are_analyzes_of_its_recording() {
    let lab = Lab::new("liveepi", &["--loss", "2"]);
    let dir = TempDir::new("liveepi");
    let out = dir.join("run.parquet");
    let o = live_until(
        &lab,
        &[
            "--episodes",
            "--format",
            "json",
            "-o",
            out.to_str().unwrap(),
        ],
        || {
            lab.traffic(2, &[]);
            lab.await_closed();
        },
        true,
    );
    let rows = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let live = rows(&stdout(&o));
    let replay = tcpcong(&[
        "analyze",
        "--episodes",
        out.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let offline = rows(&stdout(&replay));
    assert!(
        live.iter()
            .any(|e| e["cause"] == "local-drop:netfilter_drop"),
        "{live:?}"
    );
    assert_eq!(live, offline);
}
