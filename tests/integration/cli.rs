//! The command line as a user meets it: usage errors are one line naming
//! the flag and the value, exit code 2; runtime errors exit 1; never a
//! panic or a backtrace.

use crate::util::*;

fn assert_one_line_error(args: &[&str], code: i32, must_contain: &[&str]) {
    let o = tcpcong(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?} printed more than one line:\n{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    for s in must_contain {
        assert!(err.contains(s), "{args:?}: {err:?} does not name {s:?}");
    }
}

#[test]
fn bad_port_values_are_usage_errors() {
    for bad in ["abc", "70000", "1-2-3", "", "5-x"] {
        for (flag, long) in [("-L", "--localport"), ("-R", "--remoteport")] {
            let value = format!("'{bad}'");
            assert_one_line_error(
                &["record", "-o", "/tmp/x.parquet", flag, bad],
                2,
                &[long, &value],
            );
            assert_one_line_error(&["analyze", "x.parquet", flag, bad], 2, &[long, &value]);
        }
    }
}

#[test]
fn other_bad_flags_are_usage_errors() {
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "--family", "5"],
        2,
        &["--family", "'5'"],
    );
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "--duration", "soon"],
        2,
        &["--duration", "soon"],
    );
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "--buffer", "pipe"],
        2,
        &["--buffer", "pipe"],
    );
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "--attach", "uprobe"],
        2,
        &["--attach", "uprobe"],
    );
    assert_one_line_error(&["record"], 2, &["--output"]);
    assert_one_line_error(
        &["events", "x.parquet", "--flow", "abc"],
        2,
        &["'abc' is not a flow id"],
    );
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "--cgroup", "/nonexistent"],
        2,
        &["no such cgroup", "/sys/fs/cgroup"],
    );
    assert_one_line_error(&["analyze"], 2, &["INPUT"]);
    // Where no recording can be: said of the name given, not of tcpcong's
    // unfinished file.
    assert_one_line_error(
        &["record", "-o", "/proc/x.parquet", "--duration", "0.1"],
        1,
        &["/proc/x.parquet: cannot create the recording there"],
    );
    let dir = TempDir::new("notafolder");
    let file = dir.join("afile");
    std::fs::write(&file, b"").unwrap();
    let series = format!("{}/", file.display());
    assert_one_line_error(
        &["record", "-o", &series, "--duration", "0.1"],
        1,
        &["a file, not a folder"],
    );
    assert_one_line_error(&["analyze", "--accounting", "some"], 2, &["--accounting"]);
    assert_one_line_error(
        &["analyze", "x.parquet", "1", "2", "3"],
        2,
        &["too many numbers"],
    );
    assert_one_line_error(&["analyze", "x.parquet", "0"], 2, &["interval"]);
    assert_one_line_error(
        &["analyze", "x.parquet", "--format", "parquet"],
        2,
        &["-o FILE"],
    );
    assert_one_line_error(
        &["analyze", "x.parquet", "-o", "t.parquet"],
        2,
        &["--format parquet"],
    );
    assert_one_line_error(
        &[
            "analyze",
            "x.parquet",
            "--format",
            "parquet",
            "-o",
            "t.parquet",
            "-d",
        ],
        2,
        &["-d"],
    );
    assert_one_line_error(&["--format", "parquet"], 2, &["live mode prints"]);
    assert_one_line_error(
        &["analyze", "x.parquet", "--threads", "0"],
        2,
        &["--threads", "'0'"],
    );
    assert_one_line_error(&["frobnicate"], 2, &["frobnicate"]);
}

#[test]
fn bad_filter_targets_are_usage_errors() {
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "--netns", "/no/such/ns"],
        2,
        &["--netns", "/no/such/ns"],
    );
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "--cgroup", "/tmp"],
        2,
        &["--cgroup", "cgroup v2"],
    );
    // The reader says a number is no recording; the command line says where
    // numbers go.
    assert_one_line_error(
        &["analyze", "1", "x.parquet"],
        2,
        &["'1' is not a recording", "[interval] [outputs] come last"],
    );
}

#[test]
fn output_problems_are_runtime_errors() {
    let dir = TempDir::new("out");
    let existing = dir.join("exists.parquet");
    std::fs::write(&existing, b"keep me").unwrap();
    assert_one_line_error(
        &["record", "-o", existing.to_str().unwrap()],
        1,
        &["already exists", "--force"],
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    let nodir = dir.join("no/such/dir/x.parquet");
    assert_one_line_error(
        &["record", "-o", nodir.to_str().unwrap()],
        1,
        &["no/such/dir"],
    );

    let target = dir.join("left.parquet");
    std::fs::write(dir.join(".left.parquet.inprogress"), b"").unwrap();
    assert_one_line_error(
        &["record", "-o", target.to_str().unwrap()],
        1,
        &["left over", ".left.parquet.inprogress", "or pass --force"],
    );
    assert!(
        dir.join(".left.parquet.inprogress").exists(),
        "a leftover file was removed"
    );
}

#[test]
fn help_and_version_work() {
    let o = tcpcong(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("tcpcong -L 3000-3006 1"));
    let o = tcpcong(&["--version"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("tcpcong "));
}

#[test]
fn completions_and_man_page_come_from_the_flag_definitions() {
    let o = tcpcong(&["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = stdout(&o);
    for word in ["analyze", "record", "--localport", "--accounting"] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    let o = tcpcong(&["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie") || page.contains(".TH tcpcong"),
        "{page}"
    );
    assert!(page.contains("record"));
    // The states are explained where the tables are: tcpcong(1) and
    // tcpcong-analyze(1), and man renders the section.
    for args in [&["man"][..], &["man", "analyze"]] {
        let page = stdout(&tcpcong(args));
        assert!(page.contains(".SH \"CONGESTION STATES\""), "{page}");
        for state in ["open", "disorder", "recovery", "cwr", "loss", "Rcov_ms"] {
            assert!(page.contains(state), "{state}: {page}");
        }
    }
    // `make install` writes the pages with `man --dir`: every user reads them.
    let dir = TempDir::new("man-dir");
    let o = tcpcong(&["man", "--dir", dir.join("man1").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = dir.join("man1").join("tcpcong-analyze.1");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&page).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644, "{}", page.display());
    if std::path::Path::new("/usr/bin/man").exists() {
        let dir = TempDir::new("man-states");
        let roff = dir.join("tcpcong-analyze.1");
        std::fs::write(&roff, stdout(&tcpcong(&["man", "analyze"]))).unwrap();
        let o = std::process::Command::new("man")
            .arg("-l")
            .arg(&roff)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        // As man justifies it: words apart by any spaces.
        let text = String::from_utf8_lossy(&o.stdout);
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains("CONGESTION STATES"), "{text}");
        assert!(
            words.contains("The retransmission timer (RTO) fired"),
            "{text}"
        );
    }
}

#[test]
fn impossible_report_requests_are_usage_errors() {
    let f = fixture("ipv4-loss.parquet");
    let f = f.to_str().unwrap();
    assert_one_line_error(
        &["analyze", f, "--since", "100"],
        2,
        &["--since", "after the end"],
    );
    assert_one_line_error(
        &["analyze", f, "--since", "2", "--until", "1"],
        2,
        &["--until"],
    );
    // A series is filed in subfolders: a flat pattern says where to look.
    assert_one_line_error(
        &["analyze", "/nonexistent-series/*.parquet"],
        1,
        &["no recording matches this pattern", "DIR/**/*.parquet"],
    );
    // Every -o is a file: "-" would be one so named, not standard output.
    for args in [
        &["record", "-o", "-"][..],
        &["-o", "-"],
        &["serve", "--listen", "127.0.0.1:0", "-o", "-"],
    ] {
        assert_one_line_error(args, 2, &["-o -", "not to standard output"]);
    }
    assert_one_line_error(
        &["analyze", f, "--until", "2000-01-01T00:00:00Z"],
        2,
        &["--until", "before the start"],
    );
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "-R", "+5"],
        2,
        &["--remoteport", "'+5'"],
    );
    assert_one_line_error(
        &["record", "-o", "/tmp/x.parquet", "-L", "-5"],
        2,
        &["--localport", "'-5'"],
    );
    // The duration tables' options do nothing to episodes: refused, not
    // ignored.
    for flag in ["-T", "-u", "--all", "--align", "-w"] {
        assert_one_line_error(
            &["analyze", "--episodes", f, flag],
            2,
            &[flag, "for the duration tables"],
        );
        // Live mode's episodes, before anything is loaded (--align, which
        // needs an interval there, is refused for that first).
        assert_one_line_error(&["--episodes", flag], 2, &[flag]);
    }
    assert_one_line_error(
        &["--episodes", "--evidence", "none"],
        2,
        &["--evidence none", "unknown"],
    );
    assert_one_line_error(
        &["analyze", "--episodes", f, "--accounting", "between"],
        2,
        &["--accounting", "for the duration tables"],
    );
}

/// A mode this kernel does not offer is refused before any file is
/// created, with the reason and what to do. The project's machines have no
/// kprobes; on a kernel with them the mode must work instead.
#[test]
fn an_attach_mode_the_kernel_lacks_is_a_one_line_error() {
    let dir = TempDir::new("attach");
    let out = dir.join("x.parquet");
    let out = out.to_str().unwrap();
    if kernel_has_kprobes() {
        let o = tcpcong(&[
            "record",
            "-o",
            out,
            "--attach",
            "kprobe",
            "--duration",
            "0.2",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(read_meta(std::path::Path::new(out))["attach"]
            .as_str()
            .unwrap()
            .starts_with("kprobe+kretprobe/"));
        return;
    }
    assert_one_line_error(
        &["record", "-o", out, "--attach", "kprobe"],
        1,
        &[
            "kprobe",
            "CONFIG_KPROBES",
            "--attach auto would use tracepoint",
        ],
    );
    assert!(std::fs::read_dir(&dir.0).unwrap().next().is_none());
}

/// An error that cannot be told (stderr is a pipe nobody reads) still
/// ends with its exit code, not an abort from a panic while panicking.
#[test]
fn a_closed_stderr_does_not_crash_the_error_path() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(bin())
        .args(["analyze", "/nonexistent.parquet"])
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(bin())
        .args(["-L", "abc"])
        .stderr(writer)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

/// A mode the kernel refuses at load time is one line; libbpf's log (the
/// verifier's, or its guesses such as `ulimit -l`) only with -v. On the
/// project's machines ftrace refuses fentry; where it loads, it must work.
#[test]
fn a_refused_load_is_one_line_and_verbose_shows_libbpf() {
    let dir = TempDir::new("verbose");
    let out = dir.join("x.parquet");
    let out = out.to_str().unwrap();
    let args = [
        "record",
        "-o",
        out,
        "--attach",
        "fentry",
        "--duration",
        "0.2",
    ];
    let o = tcpcong(&args);
    if o.status.success() {
        let attach = read_meta(std::path::Path::new(out))["attach"].clone();
        assert!(
            attach.as_str().unwrap().starts_with("fentry+fexit/"),
            "{attach}"
        );
        return;
    }
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("tcpcong: ") && err.contains("fentry"),
        "{err}"
    );
    // Refused where the kernel offers it: which mode would do.
    assert!(
        err.trim_end()
            .ends_with("--attach auto would use tracepoint"),
        "{err}"
    );
    let o = tcpcong(&[&args[..], &["-v"]].concat());
    let err = stderr(&o);
    assert!(err.lines().count() > 1 && err.contains("libbpf"), "{err}");
    assert!(
        err.lines().last().unwrap().starts_with("tcpcong: "),
        "{err}"
    );
}

/// A second recorder on the output of a running one is told so (the
/// in-progress file is locked while written); a killed capture's leftover
/// is reported as such, and --force replaces it; analyze tells the two
/// apart when it passes over them.
#[test]
fn running_captures_and_leftovers_are_told_apart() {
    let dir = TempDir::new("busy");
    let out = dir.join("busy.parquet");
    std::fs::copy(fixture("ipv4-loss.parquet"), dir.join("done.parquet")).unwrap();
    let first = Recorder::start(&out, &["-L", "1"]);
    let o = tcpcong(&["record", "-o", out.to_str().unwrap(), "--duration", "0.2"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("being written by another tcpcong"),
        "{}",
        stderr(&o)
    );
    let a = tcpcong(&["analyze", dir.0.to_str().unwrap()]);
    assert!(
        stderr(&a).contains("a capture that is still running"),
        "{}",
        stderr(&a)
    );
    first.stop();
    read_meta(&out);

    let left = dir.join("left.parquet");
    std::fs::write(dir.join(".left.parquet.inprogress"), b"").unwrap();
    let a = tcpcong(&["analyze", dir.0.to_str().unwrap()]);
    assert!(
        stderr(&a).contains("nothing in it yet: the capture was killed as it started"),
        "{}",
        stderr(&a)
    );
    let args = [
        "record",
        "-o",
        left.to_str().unwrap(),
        "--duration",
        "0.2",
        "-L",
        "1",
    ];
    let o = tcpcong(&args);
    assert!(
        stderr(&o).contains("--force to replace it"),
        "{}",
        stderr(&o)
    );
    let o = tcpcong(&[&args[..], &["--force"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_meta(&left)["events"], 0);
    assert!(!dir.join(".left.parquet.inprogress").exists());
}

/// Live mode's -o DIR/ is a series, created before the capture starts.
#[test]
fn live_mode_records_into_a_new_folder() {
    let dir = TempDir::new("livedir");
    let out = dir.join("new");
    let o = tcpcong(&["-o", &format!("{}/", out.display()), "-L", "1", "0.3", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let files = files_below(&out, |n| n.ends_with(".parquet"));
    assert_eq!(files.len(), 1, "{files:?}");
    read_meta(&files[0]);
    assert!(
        stderr(&o).contains("wrote 0 events of 0 flows in 1 file to"),
        "{}",
        stderr(&o)
    );
}

/// A namespace filter that can match nothing is said so, not recorded
/// silently; a real namespace gets no such word.
#[test]
fn a_netns_nobody_is_in_is_warned_about() {
    let dir = TempDir::new("netns");
    let out = dir.join("n.parquet");
    let out = out.to_str().unwrap();
    let o = tcpcong(&["record", "-o", out, "--netns", "123", "--duration", "0.2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("WARNING: --netns 123: no process"),
        "{}",
        stderr(&o)
    );
    let o = tcpcong(&[
        "record",
        "-o",
        out,
        "--force",
        "--netns",
        "/proc/self/ns/net",
        "--duration",
        "0.2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("WARNING"), "{}", stderr(&o));
}

/// On a terminal, record shows a status line that it clears at the end;
/// not with --quiet, and not when stderr is not a terminal.
#[test]
fn record_shows_a_status_line_on_a_terminal_only() {
    let dir = TempDir::new("status");
    let out = dir.join("s.parquet");
    let on_terminal = |extra: &str| {
        let cmd = format!(
            "{} record -o {} --force --duration 1.5 -L 1 {extra}",
            bin(),
            out.display()
        );
        // script(1) gives the command a terminal and copies what it wrote.
        let o = std::process::Command::new("script")
            .args(["-qfec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let shown = on_terminal("");
    assert!(
        shown.contains("recording: 0 events of 0 flows, 0 lost"),
        "{shown:?}"
    );
    // Cleared (erase line) before the summary line.
    assert!(
        shown.contains("\u{1b}[2Ktcpcong: wrote 0 events"),
        "{shown:?}"
    );
    let quiet = on_terminal("--quiet");
    assert!(
        !quiet.contains("recording:") && !quiet.contains("Recording TCP"),
        "{quiet:?}"
    );
    assert!(quiet.contains("tcpcong: wrote 0 events"), "{quiet:?}");
    let piped = tcpcong(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--force",
        "--duration",
        "0.3",
        "-L",
        "1",
    ]);
    assert!(!stderr(&piped).contains("recording:"), "{}", stderr(&piped));
}

/// --pin-buffer needs a BPF file system (mounted at /sys/fs/bpf when
/// missing, as on a machine as it boots) and a name it accepts.
#[test]
fn pinning_explains_what_the_kernel_refuses() {
    let dir = TempDir::new("pin");
    let out = dir.join("p.parquet");
    let out = out.to_str().unwrap();
    assert_one_line_error(
        &["record", "-o", out, "--pin-buffer", "/sys/fs/bpf/a.b"],
        2,
        &["refuses names with a dot"],
    );
    let elsewhere = dir.join("pin");
    assert_one_line_error(
        &[
            "record",
            "-o",
            out,
            "--pin-buffer",
            elsewhere.to_str().unwrap(),
        ],
        2,
        &["is not on a BPF file system", "mount -t bpf"],
    );
}

/// Slips a new user makes, each answered with what to type instead.
#[test]
fn common_slips_say_what_to_type() {
    assert_one_line_error(
        &["record", "run.parquet"],
        2,
        &["tcpcong record -o run.parquet"],
    );
    assert_one_line_error(
        &["-L", "5201", "record"],
        2,
        &["'record' is a command", "tcpcong record"],
    );
    assert_one_line_error(
        &["record", "-o", "/tmp/run.csv"],
        2,
        &["a recording is Parquet", "/tmp/run.parquet", "--format csv"],
    );
    let f = fixture("ipv4-loss.parquet");
    let f = f.to_str().unwrap();
    assert_one_line_error(&["analyze", f, "-d", "--top", "1"], 2, &["-d", "--top"]);
    assert_one_line_error(
        &["analyze", f, "-d", "--sort", "loss"],
        2,
        &["-d", "--sort"],
    );
    for episodes in [&[][..], &["--episodes"]] {
        let args = [&["analyze", f, "--top", "0"][..], episodes].concat();
        assert_one_line_error(&args, 2, &["--top 0 keeps no row"]);
    }
    // A mistyped command lands in live mode's [interval].
    assert_one_line_error(
        &["analyse", f],
        2,
        &["not 'analyse'", "the command 'analyze'"],
    );
    assert_one_line_error(&["analyze", f, "2562047h"], 2, &["at most 1e9 s"]);
    assert_one_line_error(&["man", "--dir", f], 2, &["--dir", "not a folder"]);
}

/// `--top` alone keeps the worst flows (most loss + recovery), not the
/// lowest ports.
#[test]
fn top_without_sort_keeps_the_flows_most_in_trouble() {
    let f = fixture("multi-flow.parquet");
    let f = f.to_str().unwrap();
    let rows = |args: &[&str]| -> Vec<serde_json::Value> {
        let o = tcpcong(&[&["analyze", f, "--all", "--format", "json"], args].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let trouble =
        |r: &serde_json::Value| r["loss_ns"].as_u64().unwrap() + r["recovery_ns"].as_u64().unwrap();
    let mut want: Vec<u64> = rows(&[]).iter().map(trouble).collect();
    want.sort_by(|a, b| b.cmp(a));
    want.truncate(2);
    assert!(want[0] > 0, "the fixture has congestion");
    let top: Vec<u64> = rows(&["--top", "2"]).iter().map(trouble).collect();
    assert_eq!(top, want);
}

/// `--netns NAME` finds the namespace `ip netns` named so.
#[test]
fn a_network_namespace_is_found_by_its_name() {
    let name = format!("tc-name-{}", std::process::id());
    let add = std::process::Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .unwrap();
    assert!(add.success(), "ip netns add (as root)");
    struct Delete<'a>(&'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", self.0])
                .status();
        }
    }
    let _delete = Delete(&name);
    let f = fixture("ipv4-loss.parquet");
    let o = tcpcong(&["analyze", f.to_str().unwrap(), "--netns", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_one_line_error(
        &["analyze", f.to_str().unwrap(), "--netns", "tc-no-such-name"],
        2,
        &["tc-no-such-name", "as ip netns lists it"],
    );
}

/// "The last minute" and "from 09:03:40" as a user says them: each equals
/// the same span given in RFC 3339, computed from the fixture's own start
/// and end.
#[test]
fn spans_relative_to_the_end_and_local_clock_times_select_the_same_rows() {
    use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
    let f = fixture("ipv4-loss.parquet");
    let meta = read_meta(&f);
    let instant = |k: &str| DateTime::parse_from_rfc3339(meta[k].as_str().unwrap()).unwrap();
    let (start, end) = (instant("start"), instant("end"));
    let rfc = |t: DateTime<FixedOffset>| {
        t.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Nanos, true)
    };
    let f = f.to_str().unwrap();
    let json = |tz: &str, extra: &[&str]| {
        let o = std::process::Command::new(bin())
            .args([&["analyze", f, "--all", "--format", "json"], extra].concat())
            .env("TZ", tz)
            .output()
            .unwrap();
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        stdout(&o)
    };
    let last = json("UTC", &["--since", &rfc(end - Duration::seconds(2))]);
    assert!(last.lines().count() > 0);
    assert_eq!(json("UTC", &["--last", "2s"]), last);
    assert_eq!(json("UTC", &["--since", "-2s"]), last);
    assert_ne!(
        json("UTC", &["--since", "-3s"]),
        last,
        "a longer span differs"
    );
    // 1.5 s after the start, as a clock time in UTC and nine hours east
    // (a POSIX TZ, no zone files needed).
    let t = start + Duration::milliseconds(1500);
    let at = json("UTC", &["--since", &rfc(t)]);
    let clock = |offset_h: i64| {
        (t.with_timezone(&Utc) + Duration::hours(offset_h))
            .format("%H:%M:%S%.f")
            .to_string()
    };
    assert_eq!(json("UTC", &["--since", &clock(0)]), at);
    assert_eq!(json("JST-9", &["--since", &clock(9)]), at);
    assert_one_line_error(
        &["analyze", f, "--since", "25:00"],
        2,
        &["--since 25:00", "-60s", "09:03:40"],
    );
    assert_one_line_error(
        &["analyze", f, "--last", "2s", "--since", "1"],
        2,
        &["--last", "--since"],
    );
}

/// `analyze ARGS` succeeds and says `text` on stderr.
fn analyze_says(args: &[&str], text: &str) {
    let o = tcpcong(&[&["analyze"], args].concat());
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    assert!(stderr(&o).contains(text), "{args:?}: {}", stderr(&o));
}

/// A recording of nothing says so at its end and when analyzed, naming
/// the filters it was recorded with; a selection that keeps nothing of a
/// recording says which flags it was; a recording this user may not read
/// says whose it is to read.
#[test]
fn empty_results_say_why() {
    let lab = Lab::new("empty", &[]);
    let dir = TempDir::new("empty");
    let out = dir.join("none.parquet");
    let o = tcpcong(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--netns",
        &lab.netns_path(),
        "-L",
        "5201",
        "--duration",
        "1s",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let kept = format!("kept by -L 5201 --netns {}", lab.inode());
    let said = stderr(&o);
    assert!(
        said.contains(&format!(
            "nothing was recorded: no TCP socket {kept} changed state"
        )),
        "{said}"
    );
    analyze_says(
        &[out.to_str().unwrap()],
        &format!("the recordings hold no events: no TCP socket {kept} changed state"),
    );

    // A socket that only listened: events, and no flow to time.
    let listened = dir.join("listen.parquet");
    let rec = Recorder::start(&listened, &["--netns", &lab.netns_path()]);
    let script = "import socket, time\n\
                  s = socket.socket(); s.bind(('127.0.0.1', 5201)); s.listen(); time.sleep(0.2)";
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.ns, "python3", "-c", script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    rec.stop();
    analyze_says(
        &[listened.to_str().unwrap()],
        "events time no flow (births, closes or listening sockets only)",
    );

    let multi = fixture("multi-flow.parquet");
    let events = read_meta(&multi)["events"].as_u64().unwrap();
    // events says so too, where it lists nothing.
    let o = tcpcong(&["events", multi.to_str().unwrap(), "--flow", "999"]);
    assert!(o.status.success() && stdout(&o).is_empty(), "{o:?}");
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "tcpcong: the selection (--flow 999) keeps none of the recordings' {events} events"
        )
    );
    analyze_says(
        &[multi.to_str().unwrap(), "-L", "9999", "--since", "1"],
        &format!("the selection (-L 9999 --since) keeps none of the recordings' {events} events"),
    );
    analyze_says(
        &[multi.to_str().unwrap(), "--cgroup", "/nope.slice"],
        &format!(
            "the selection (--cgroup /nope.slice) keeps none of the recordings' {events} events"
        ),
    );

    let private = dir.join("private.parquet");
    std::fs::copy(&multi, &private).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = tcpcong_as_nobody(&["analyze", private.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let said = stderr(&o);
    assert!(
        said.contains("permission denied: it belongs to uid 0, and tcpcong writes recordings readable by their owner only")
            && said.lines().count() == 1,
        "{said}"
    );
}

/// A recording asked for while its capture runs, or after one was killed,
/// is read from the capture's unfinished file, whose name reads it too,
/// in analyze, events and report alike, and each says which it is; another
/// user is told whose it is.
#[test]
fn unfinished_recordings_say_whose_they_are() {
    let dir = TempDir::new("unfinished");
    let out = dir.join("wip.parquet");
    let wip = dir.join(".wip.parquet.inprogress");
    let page = dir.join("page.html");
    let (out, wip, page) = (
        out.to_str().unwrap(),
        wip.to_str().unwrap(),
        page.to_str().unwrap(),
    );
    let rec = Recorder::start(std::path::Path::new(out), &["-L", "1"]);
    // What the final name and the unfinished one each say.
    let ask = |what: &str| {
        for path in [out, wip] {
            let _ = std::fs::remove_file(page);
            for args in [
                &["analyze", path][..],
                &["events", path],
                &["report", path, "-o", page],
            ] {
                let o = tcpcong(args);
                assert!(o.status.success(), "{args:?}: {}", stderr(&o));
                let said = format!("reading {wip}: {what}");
                assert!(stderr(&o).contains(&said), "{args:?}: {}", stderr(&o));
            }
        }
    };
    ask("the unfinished file of a capture that is still running");
    // Another user cannot open it to tell running from killed.
    let o = tcpcong_as_nobody(&["analyze", out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "is a capture's unfinished file (running or killed) that this user may not read"
        ),
        "{}",
        stderr(&o)
    );
    // Dropping the recorder kills it (SIGKILL) and reaps it.
    drop(rec);
    ask("what a capture that was killed before it finished left");
}

/// In a folder, a recording's unfinished file is read only while the
/// recording is not there: once it is complete, it holds all the other
/// did (a capture stopped between the two steps leaves both).
#[test]
fn a_complete_recording_stands_for_its_unfinished_file() {
    let dir = TempDir::new("both");
    std::fs::copy(fixture("ipv4-loss.parquet"), dir.join("run.parquet")).unwrap();
    std::fs::write(dir.join(".run.parquet.inprogress"), b"not read").unwrap();
    let o = tcpcong(&["analyze", dir.0.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("inprogress"), "{}", stderr(&o));
    // Alone, it is read (and this one is no journal).
    std::fs::rename(dir.join("run.parquet"), dir.join("other.parquet")).unwrap();
    let o = tcpcong(&["analyze", dir.0.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            ".run.parquet.inprogress: a capture's unfinished file that is damaged or not tcpcong's"
        ),
        "{}",
        stderr(&o)
    );
}

/// A link planted under a capture's unfinished-file name is not followed:
/// tcpcong never makes that file a link, and following one would let
/// whoever plants it have root read (and show) a file they cannot, here
/// another capture's unfinished file in a private folder.
#[test]
fn a_link_named_as_an_unfinished_file_is_not_followed() {
    let private = TempDir::new("linked-private");
    let shared = TempDir::new("linked-shared");
    let real = private.join("real.parquet");
    let rec = Recorder::start(&real, &["-L", "1"]);
    let journal = private.join(".real.parquet.inprogress");
    // It can be read by name: what the link would reach.
    let o = tcpcong(&["events", journal.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let link = shared.join(".x.parquet.inprogress");
    std::os::unix::fs::symlink(&journal, &link).unwrap();
    for input in [shared.join("x.parquet"), link] {
        let o = tcpcong(&["events", input.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{input:?}: {}", stderr(&o));
        assert!(
            stdout(&o).is_empty() && !stderr(&o).contains("reading"),
            "{}",
            stderr(&o)
        );
    }
    drop(rec);
}

/// `events` shows a drop by what went and where (the segment's count and
/// the kernel's function), not the socket's counters, which a drop found
/// by its addresses alone does not have.
#[test]
fn events_show_drops_by_segments_and_location() {
    let f = fixture("ipv4-loss.parquet");
    let f = f.to_str().unwrap();
    let text = stdout(&tcpcong(&["events", f, "--kind", "drop"]));
    let json = stdout(&tcpcong(&[
        "events", f, "--kind", "drop", "--format", "json",
    ]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(!lines.is_empty(), "the fixture has drops");
    assert_eq!(lines.len(), json.lines().count());
    for (line, row) in lines.iter().zip(json.lines()) {
        let row: serde_json::Value = serde_json::from_str(row).unwrap();
        let want = format!(
            "segs={} location={}",
            row["segs"],
            row["location"].as_str().unwrap()
        );
        assert!(line.ends_with(&want), "{line} / {want}");
        assert!(!line.contains("cwnd="), "{line}");
    }
}
