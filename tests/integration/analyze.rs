//! `analyze` on the fixtures: golden outputs of every format (reviewed
//! snapshots), and a one-line error with exit code 1 for every kind of bad
//! input.

use std::io::Write;

use crate::util::*;

fn analyze_ok(args: &[&str]) -> String {
    let mut full = vec!["analyze"];
    full.extend_from_slice(args);
    let o = tcpcong(&full);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}

fn f(name: &str) -> String {
    fixture(name).display().to_string()
}

#[test]
fn golden_tables() {
    let v4 = f("ipv4-loss.parquet");
    let v6 = f("ipv6-ecn.parquet");
    let multi = f("multi-flow.parquet");
    insta::assert_snapshot!("table_ipv4", analyze_ok(&[&v4]));
    insta::assert_snapshot!("table_ipv4_all_micros", analyze_ok(&[&v4, "--all", "-u"]));
    insta::assert_snapshot!("table_ipv6", analyze_ok(&[&v6]));
    insta::assert_snapshot!(
        "table_multi_between",
        analyze_ok(&[&multi, "--accounting", "between"])
    );
    insta::assert_snapshot!(
        "table_multi_windows_timestamps",
        analyze_ok(&[&multi, "-T", "1"])
    );
    insta::assert_snapshot!("table_multi_two_windows", analyze_ok(&[&multi, "1", "2"]));
    insta::assert_snapshot!(
        "table_all_fixtures_folder",
        analyze_ok(&[fixture("").to_str().unwrap()])
    );
    // One of v1's first files (no seq, owners, capture or snapshot rows)
    // reads as it always did.
    insta::assert_snapshot!("table_compat_first_v1", analyze_ok(&[&compat(), "-T", "1"]));
}

/// The engine on one thread and shared out over several gives the same
/// reports, on every fixture at once (several boots and captures).
#[test]
fn any_thread_count_prints_the_same() {
    let all = fixture("").display().to_string();
    let reports: [&[&str]; 4] = [
        &["--format", "json", "--all", "1"],
        &["-d", "2"],
        &["--accounting", "between", "--format", "csv", "1"],
        &["--accounting", "between", "-R", "5201"],
    ];
    for report in reports {
        let with = |threads: &str| {
            let mut args = vec![all.as_str()];
            args.extend_from_slice(report);
            args.extend_from_slice(&["--threads", threads]);
            analyze_ok(&args)
        };
        let one = with("1");
        assert!(one.lines().count() > 3, "{report:?}: {one}");
        for threads in ["2", "3", "8"] {
            assert_eq!(with(threads), one, "{report:?} on {threads} threads");
        }
    }
}

#[test]
fn golden_histograms() {
    insta::assert_snapshot!("hist_ipv4_ms", analyze_ok(&[&f("ipv4-loss.parquet"), "-d"]));
    insta::assert_snapshot!(
        "hist_ipv6_us",
        analyze_ok(&[&f("ipv6-ecn.parquet"), "-d", "-u"])
    );
    insta::assert_snapshot!(
        "hist_multi_windows",
        analyze_ok(&[&f("multi-flow.parquet"), "-d", "2"])
    );
}

#[test]
fn golden_json_and_csv() {
    let multi = f("multi-flow.parquet");
    let json = analyze_ok(&[&multi, "--format", "json", "2"]);
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        for k in [
            "window_start",
            "window_end",
            "host",
            "boot_id",
            "flow",
            "open_ns",
            "loss_ns",
            "changes",
            "lost_events",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {line}");
        }
        // A flow is named by its host and boot too, as the file says.
        let meta = read_meta(&fixture("multi-flow.parquet"));
        assert_eq!(v["host"], meta["hostname"], "{line}");
        assert_eq!(v["boot_id"], meta["boot_id"], "{line}");
    }
    insta::assert_snapshot!("json_multi_windows", json);
    insta::assert_snapshot!(
        "csv_ipv6_all",
        analyze_ok(&[&f("ipv6-ecn.parquet"), "--format", "csv", "--all"])
    );
}

#[test]
fn windows_add_up_to_the_whole() {
    // Dwell periods split at window boundaries lose nothing: per flow, the
    // windows' nanoseconds and changes sum to the unwindowed figures.
    let multi = f("multi-flow.parquet");
    let sums = |args: &[&str]| {
        let mut m = std::collections::BTreeMap::<u64, [u64; 6]>::new();
        for line in analyze_ok(args).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let e = m.entry(v["flow"].as_u64().unwrap()).or_default();
            for (i, k) in [
                "open_ns",
                "disorder_ns",
                "cwr_ns",
                "recovery_ns",
                "loss_ns",
                "changes",
            ]
            .iter()
            .enumerate()
            {
                e[i] += v[k].as_u64().unwrap();
            }
        }
        m
    };
    let whole = sums(&[&multi, "--format", "json", "--all"]);
    let windowed = sums(&[&multi, "--format", "json", "--all", "0.25"]);
    assert!(!whole.is_empty());
    assert_eq!(whole, windowed);
}

#[test]
fn filters_select_flows() {
    let multi = f("multi-flow.parquet");
    let out = analyze_ok(&[&multi, "-L", "5201", "--all", "--format", "csv"]);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r.split(',').nth(7) == Some("5201")),
        "{out}"
    );
    let one = rows[0].split(',').nth(4).unwrap();
    let only = analyze_ok(&[&multi, "--flow", one, "--all", "--format", "csv"]);
    assert_eq!(only.lines().count(), 2, "{only}");
}

fn assert_bad_input(path: &std::path::Path, needle: &str) {
    let o = tcpcong(&["analyze", path.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains(&path.display().to_string()),
        "{err} does not name the file"
    );
    assert!(err.contains(needle), "{err:?} does not say {needle:?}");
}

#[test]
fn bad_inputs_get_one_line_each() {
    let dir = TempDir::new("bad");
    assert_bad_input(&dir.join("missing.parquet"), "no such file");

    let empty_dir = dir.join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    assert_bad_input(&empty_dir, "no recordings");

    let empty = dir.join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    assert_bad_input(&empty, "empty file");

    let good = std::fs::read(fixture("ipv4-loss.parquet")).unwrap();
    let truncated = dir.join("truncated.parquet");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    assert_bad_input(&truncated, "truncated");

    // Bytes of the footer changed: it is there, and says so.
    let mut damaged = good.clone();
    let footer = u32::from_le_bytes(good[good.len() - 8..good.len() - 4].try_into().unwrap());
    let at = good.len() - 8 - footer as usize;
    for b in &mut damaged[at + 10..at + 60] {
        *b ^= 0xff;
    }
    let path = dir.join("damaged.parquet");
    std::fs::write(&path, &damaged).unwrap();
    assert_bad_input(
        &path,
        "damaged recording: its Parquet footer is there but does not decode",
    );

    let text = dir.join("text.parquet");
    std::fs::write(&text, b"time,flow\n1,2\n").unwrap();
    assert_bad_input(&text, "not a Parquet file");

    let other = dir.join("other.parquet");
    write_parquet(&other, other_schema_batch(), None);
    assert_bad_input(&other, "not a tcpcong recording");

    let newer = dir.join("newer.parquet");
    let meta = r#"{"schema_version": 2}"#;
    write_parquet(&newer, other_schema_batch(), Some(meta));
    assert_bad_input(&newer, "schema version 2");

    let wrong = dir.join("wrong-types.parquet");
    let m = serde_json::to_string(&read_meta(&fixture("ipv4-loss.parquet"))).unwrap();
    write_parquet(&wrong, other_schema_batch(), Some(&m));
    assert_bad_input(&wrong, "column");
}

fn other_schema_batch() -> arrow_array::RecordBatch {
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;
    arrow_array::RecordBatch::try_from_iter([
        (
            "ktime_ns",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        ),
        (
            "kind",
            Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn write_parquet(
    path: &std::path::Path,
    batch: arrow_array::RecordBatch,
    tcpcong_meta: Option<&str>,
) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    if let Some(m) = tcpcong_meta {
        w.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
            "tcpcong".into(),
            m.to_string(),
        ));
    }
    w.close().unwrap();
}

#[test]
fn output_to_a_closed_pipe_is_not_an_error() {
    let args = [
        "analyze",
        &f("ipv6-ecn.parquet"),
        "--all",
        "--format",
        "json",
        "0.001",
    ];
    // The whole output is many times a pipe's buffer (64 KiB)...
    let whole = tcpcong(&args);
    assert!(whole.status.success(), "{}", stderr(&whole));
    assert!(whole.stdout.len() > 1 << 20, "{}", whole.stdout.len());
    let mut child = std::process::Command::new(bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // ...so once its first line has been read and the pipe closed, the
    // rest must meet the closed pipe (`| head -1`).
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.starts_with('{'), "{first}");
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let _ = std::io::stdout().flush();
}

/// `-d` with JSON or CSV gives the text histogram's buckets, window by
/// window and state by state.
#[test]
fn histograms_for_programs_hold_the_text_histograms_counts() {
    let f = f("multi-flow.parquet");
    let text = analyze_ok(&[&f, "-d", "1"]);
    // (state, low, count) from the text: sections `tcp_congest_state = S`.
    let mut from_text = Vec::new();
    let mut state = String::new();
    for l in text.lines() {
        if let Some(s) = l.strip_prefix("tcp_congest_state = ") {
            state = s.to_string();
        } else if l.contains(" -> ") {
            let f: Vec<&str> = l.split_whitespace().collect();
            from_text.push((
                state.clone(),
                f[0].parse::<u64>().unwrap(),
                f[4].parse::<u64>().unwrap(),
            ));
        }
    }
    assert!(from_text.iter().any(|(_, _, c)| *c > 0), "{text}");
    let json = analyze_ok(&[&f, "-d", "1", "--format", "json"]);
    let mut from_json = Vec::new();
    for l in json.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for b in v["buckets"].as_array().unwrap() {
            from_json.push((
                v["state"].as_str().unwrap().to_string(),
                b["low"].as_u64().unwrap(),
                b["count"].as_u64().unwrap(),
            ));
        }
    }
    assert_eq!(from_json, from_text);
    let csv = analyze_ok(&[&f, "-d", "1", "--format", "csv"]);
    assert!(csv.starts_with("window_start,window_end,state,unit,low,high,count,lost_events\n"));
    assert_eq!(csv.lines().count(), from_text.len() + 1);
}

/// The column filters of analyze and events, --sort and --top, events'
/// --kind and CSV, each checked against the recording read directly.
#[test]
fn column_filters_sort_and_top() {
    let multi = fixture("multi-flow.parquet");
    let m = multi.to_str().unwrap();
    let rows = read_events(&multi);
    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        analyze_ok(args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = json(&[m, "--all", "--format", "json"]);
    // Every flow of this recording is IPv4, in one namespace and cgroup.
    let netns = rows[0].netns.to_string();
    let cgroup = rows[0].cgroup.to_string();
    assert!(rows
        .iter()
        .all(|e| e.family == 4 && e.netns == rows[0].netns));
    assert_eq!(
        json(&[m, "--all", "--format", "json", "--family", "4"]),
        all
    );
    assert_eq!(
        json(&[m, "--all", "--format", "json", "--netns", &netns]),
        all
    );
    assert_eq!(
        json(&[m, "--all", "--format", "json", "--cgroup", &cgroup]),
        all
    );
    assert!(json(&[m, "--all", "--format", "json", "--family", "6"]).is_empty());
    assert!(json(&[m, "--all", "--format", "json", "--netns", "1"]).is_empty());

    let top = json(&[m, "--format", "json", "--sort", "trouble", "--top", "2"]);
    let trouble =
        |v: &serde_json::Value| v["loss_ns"].as_u64().unwrap() + v["recovery_ns"].as_u64().unwrap();
    let mut want: Vec<u64> = all
        .iter()
        .filter(|v| v["changes"] != 0)
        .map(trouble)
        .collect();
    want.sort_by(|a, b| b.cmp(a));
    want.truncate(2);
    assert_eq!(top.iter().map(trouble).collect::<Vec<_>>(), want);

    let csv = stdout(&tcpcong(&["events", m, "--format", "csv"]));
    let mut lines = csv.lines();
    let header = lines.next().unwrap().split(',').count();
    assert_eq!(
        header,
        documented_columns() - 1 + EVENTS_NAMES,
        "every column but the capture rows' own, then the cgroup's path and container"
    );
    assert!(csv.lines().all(|l| l.split(',').count() == header));
    assert_eq!(lines.count(), rows.len());
    let tcp = stdout(&tcpcong(&[
        "events",
        m,
        "--kind",
        "tcp_state",
        "--format",
        "csv",
    ]));
    let n = rows.iter().filter(|e| e.kind == "tcp_state").count();
    assert!(n > 0);
    assert_eq!(tcp.lines().count(), n + 1);
    assert!(tcp
        .lines()
        .skip(1)
        .all(|l| l.split(',').nth(2) == Some("tcp_state")));
}

/// A glob that matches folders reads them as a folder argument does.
#[test]
fn globs_that_match_folders_read_them() {
    let dir = TempDir::new("globdirs");
    for (host, name) in [("a", "ipv4-loss.parquet"), ("b", "multi-flow.parquet")] {
        let d = dir.join(&format!("runs/host={host}/date=2026-11-26"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(fixture(name), d.join(name)).unwrap();
    }
    let root = dir.join("runs");
    let whole = analyze_ok(&[root.to_str().unwrap(), "--all", "--format", "json"]);
    let pattern = format!("{}/host=*/date=2026-*", root.display());
    assert_eq!(analyze_ok(&[&pattern, "--all", "--format", "json"]), whole);
    assert!(whole.lines().count() > 3);
}

/// `--wide` names each flow as `--flow` takes it, its namespace and
/// congestion control, and when it was in trouble: from its first entry
/// into recovery or loss to its last way out (out of them, or its close),
/// which the test reads from the flow's own events.
#[test]
fn wide_tables_name_the_flow_and_when_it_was_in_trouble() {
    let multi = f("multi-flow.parquet");
    let table = analyze_ok(&[&multi, "--wide"]);
    insta::assert_snapshot!("table_multi_wide", table);

    let o = tcpcong(&["events", &multi, "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let events: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let trouble = |s: &serde_json::Value| matches!(s.as_str(), Some("recovery" | "loss"));
    // HH:MM:SS.mmm of an RFC 3339 time in UTC, as the table (TZ=UTC) cuts it.
    let hms = |t: &serde_json::Value| t.as_str().unwrap()[11..23].to_string();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .filter(|l| l.contains('/') && !l.starts_with("LAddr"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    for cells in rows {
        let flow: u64 = cells[8].parse().unwrap();
        let mut first = None;
        let mut last = None;
        let mut inside = false;
        for e in events.iter().filter(|e| e["flow"] == flow) {
            let leaves = match e["kind"].as_str() {
                Some("ca_state") => inside && !trouble(&e["new_state"]),
                Some("tcp_state") => inside && e["new_state"] == "close",
                _ => false,
            };
            if leaves {
                last = Some(hms(&e["time"]));
                inside = false;
            }
            if e["kind"] == "ca_state" && trouble(&e["new_state"]) && !inside {
                first.get_or_insert_with(|| hms(&e["time"]));
                inside = true;
            }
        }
        assert!(!inside, "flow {flow} is in trouble at the fixture's end");
        let want = format!("{}-{}", first.unwrap(), last.unwrap());
        assert_eq!(cells[12], want, "flow {flow}");
        assert_eq!(cells[10], events[0]["netns"].to_string(), "flow {flow}");
        // The congestion control in charge of its states (iperf3 sets its
        // own after connect: the handshake's rows name the default, bbr).
        let cc = events
            .iter()
            .find(|e| e["flow"] == flow && e["kind"] == "ca_state")
            .map(|e| e["cong_algo"].as_str().unwrap());
        assert_eq!(Some(cells[11]), cc, "flow {flow}");
        // The id is what --flow takes: that flow's row alone.
        let one = analyze_ok(&[&multi, "--wide", "--flow", cells[8]]);
        let line = one
            .lines()
            .find(|l| l.contains('/') && !l.starts_with("LAddr"));
        assert_eq!(
            line.map(str::split_whitespace)
                .map(Iterator::collect::<Vec<_>>),
            Some(cells.clone())
        );
    }
}

/// `--align` puts the windows on whole seconds: `-T` then names each by a
/// different second, the last one, which the recording's end cuts short,
/// too; the windows still add up to the unaligned total.
#[test]
fn aligned_windows_end_on_whole_seconds() {
    let multi = f("multi-flow.parquet");
    let aligned = analyze_ok(&[&multi, "-T", "--align", "1"]);
    insta::assert_snapshot!("table_multi_aligned_timestamps", aligned);
    let stamps: Vec<&str> = aligned
        .lines()
        .filter(|l| l.len() == 8 && l.as_bytes()[2] == b':')
        .collect();
    let distinct: std::collections::BTreeSet<&&str> = stamps.iter().collect();
    assert_eq!(distinct.len(), stamps.len(), "{aligned}");

    let json = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec![multi.as_str(), "--format", "json", "--all"];
        all.extend_from_slice(args);
        analyze_ok(&all)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let windows = json(&["--align", "1"]);
    let starts: std::collections::BTreeSet<&str> = windows
        .iter()
        .map(|r| r["window_start"].as_str().unwrap())
        .collect();
    // The recording's start, then whole seconds.
    for s in starts.iter().skip(1) {
        assert_eq!(&s[19..], ".000000000Z", "{s} is not a whole second");
    }
    let total = |rows: &[serde_json::Value], col: &str| -> u64 {
        rows.iter().map(|r| r[col].as_u64().unwrap()).sum()
    };
    let whole = json(&[]);
    for col in [
        "open_ns",
        "disorder_ns",
        "recovery_ns",
        "loss_ns",
        "changes",
    ] {
        assert_eq!(total(&windows, col), total(&whole, col), "{col}");
    }
}

/// `compare` puts two recordings side by side: each side's time per state
/// is what analyze's rows of that recording add up to, its shares follow
/// from them, and its worst flow is the one analyze's rows have most in
/// loss + recovery.
#[test]
fn compare_sides_are_what_analyze_adds_up() {
    let (before, after) = ("fixtures/ipv4-loss.parquet", "fixtures/multi-flow.parquet");
    insta::assert_snapshot!(
        "compare_ipv4_multi",
        analyze_ok_cmd(&["compare", before, after])
    );
    let v: serde_json::Value = serde_json::from_str(&analyze_ok_cmd(&[
        "compare", before, after, "--format", "json", "--top", "1",
    ]))
    .unwrap();
    for (name, input) in [("before", before), ("after", after)] {
        let rows: Vec<serde_json::Value> = analyze_ok(&[
            &repo().join(input).display().to_string(),
            "--all",
            "--format",
            "json",
        ])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let side = &v[name];
        let mut total = 0;
        for s in ["open", "disorder", "cwr", "recovery", "loss"] {
            let want: u64 = rows
                .iter()
                .map(|r| r[format!("{s}_ns")].as_u64().unwrap())
                .sum();
            assert_eq!(side["state_ns"][s].as_u64(), Some(want), "{name} {s}");
            total += want;
        }
        assert_eq!(side["flow_time_ns"].as_u64(), Some(total), "{name}");
        let loss = side["state_ns"]["loss"].as_u64().unwrap() as f64;
        // (serde_json parses floats to within an ulp.)
        let share = side["share_percent"]["loss"].as_f64().unwrap();
        assert!(
            (share - loss * 100.0 / total as f64).abs() < 1e-12,
            "{name}: {share}"
        );
        let changes: u64 = rows.iter().map(|r| r["changes"].as_u64().unwrap()).sum();
        assert_eq!(side["changes"].as_u64(), Some(changes), "{name}");
        // Its flows are the table's (a listening socket's close is none).
        assert_eq!(side["flows"].as_u64(), Some(rows.len() as u64), "{name}");
        let trouble = |r: &serde_json::Value| {
            r["recovery_ns"].as_u64().unwrap() + r["loss_ns"].as_u64().unwrap()
        };
        let worst = rows.iter().max_by_key(|r| trouble(r)).unwrap();
        assert_eq!(side["worst"][0]["flow"], worst["flow"], "{name}");
        assert_eq!(
            side["worst"][0]["trouble_ns"].as_u64(),
            Some(trouble(worst))
        );
    }
    // The biggest difference comes first, and the side with a blackout
    // spent more of its time in loss (its RTOs).
    let called = v["called_out"].as_array().unwrap();
    assert_eq!(called[0]["kind"], "share", "{called:?}");
    let loss = called
        .iter()
        .find(|c| c["kind"] == "share" && c["state"] == "loss")
        .unwrap_or_else(|| panic!("no loss share called out: {called:?}"));
    assert!(loss["points"].as_f64().unwrap() > 1.0, "{loss}");
    let points = |c: &serde_json::Value| c["points"].as_f64().map_or(0.0, f64::abs);
    assert!(
        called
            .windows(2)
            .filter(|w| w[0]["kind"] == "share" && w[1]["kind"] == "share")
            .all(|w| points(&w[0]) >= points(&w[1])),
        "{called:?}"
    );
    // A side the selection empties says so.
    let o = tcpcong(&[
        "compare",
        &f("ipv4-loss.parquet"),
        &f("multi-flow.parquet"),
        "-L",
        "9999",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stderr(&o)
            .matches("the selection (-L 9999) keeps no flow of it")
            .count(),
        2,
        "{}",
        stderr(&o)
    );
}

/// A command's output, run in the repository with the paths given
/// relative to it (so that golden outputs do not name the checkout).
fn analyze_ok_cmd(args: &[&str]) -> String {
    let o = std::process::Command::new(bin())
        .args(args)
        .current_dir(repo())
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
}
