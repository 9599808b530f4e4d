//! Long captures (`record -o DIR/`): rotation, the budget, a crash, a full
//! disk. Synthetic load comes from bench/src/bin/synth.rs through record's own
//! ring buffer; real traffic from the lab where flows must be compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// Complete recordings below `dir`, in name (= time) order.
fn series_files(dir: &Path) -> Vec<PathBuf> {
    files_below(dir, |name| name.ends_with(".parquet"))
}

/// Per flow: (changes, ns per state) from `analyze --all --format json`.
fn per_flow(input: &Path) -> BTreeMap<u64, (u64, [u64; 5])> {
    analyze_rows(&[input])
        .into_iter()
        .map(|v| {
            let ns = ["open_ns", "disorder_ns", "cwr_ns", "recovery_ns", "loss_ns"]
                .map(|k| v[k].as_u64().unwrap());
            (
                v["flow"].as_u64().unwrap(),
                (v["changes"].as_u64().unwrap(), ns),
            )
        })
        .collect()
}

#[test]
fn a_rotated_series_equals_one_recording_of_the_same_traffic() {
    let lab = Lab::new("rot", &["--loss", "2"]);
    let dir = TempDir::new("rot");
    let series = dir.join("series");
    let one = dir.join("one.parquet");
    let netns = lab.netns_path();
    let rotated = Recorder::start(
        Path::new(&format!("{}/", series.display())),
        &["--netns", &netns, "--rotate-seconds", "1"],
    );
    let whole = Recorder::start(&one, &["--netns", &netns]);
    lab.traffic(3, &[]);
    // Let the flows close, then end both captures at the same moment.
    lab.await_closed();
    let (r, _) = Recorder::stop_together(rotated, whole);
    assert!(stderr(&r).contains("files to"), "{}", stderr(&r));

    let files = series_files(&series);
    assert!(files.len() >= 3, "{files:?}");
    assert!(files[0].to_string_lossy().contains("/host="), "{files:?}");
    assert!(files[0].to_string_lossy().contains("/date="), "{files:?}");
    // Each file is complete, and each starts where the one before ended.
    let metas: Vec<serde_json::Value> = files.iter().map(|f| read_meta(f)).collect();
    for (f, m) in files.iter().zip(&metas) {
        assert_eq!(m["events"], read_events(f).len() as u64, "{}", f.display());
    }
    for w in metas.windows(2) {
        assert_eq!(w[0]["end_ktime_ns"], w[1]["start_ktime_ns"]);
    }

    // The same flows, the same changes; durations equal up to the two
    // recorders' own timestamps of each event (a few µs apart), and to the
    // difference of their capture spans, which bound flows whose
    // `established` or `close` the kernel did not report (see gaps).
    let whole_meta = read_meta(&one);
    let span_delta = |k: &str, m: &serde_json::Value| {
        m[k].as_u64()
            .unwrap()
            .abs_diff(whole_meta[k].as_u64().unwrap())
    };
    let tolerance = 5_000_000
        + span_delta("start_ktime_ns", &metas[0])
        + span_delta("end_ktime_ns", &metas[metas.len() - 1]);
    let (a, b) = (per_flow(&series), per_flow(&one));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (flow, (changes, ns)) in &a {
        let (changes_b, ns_b) = &b[flow];
        assert_eq!(changes, changes_b, "flow {flow}");
        for (x, y) in ns.iter().zip(ns_b) {
            assert!(
                x.abs_diff(*y) <= tolerance,
                "flow {flow}: {ns:?} vs {ns_b:?} (tolerance {tolerance} ns)"
            );
        }
    }
}

/// A recorder fed by the synthetic producer; its pinned ring buffer's name
/// is removed at drop, also when the test killed the recorder.
struct Synthetic {
    child: Option<std::process::Child>,
    pin: PathBuf,
}

impl Synthetic {
    fn take(&mut self) -> std::process::Child {
        self.child.take().expect("the recorder")
    }
}

impl Drop for Synthetic {
    /// A recorder the test did not take (it failed before) is killed.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // And what record pins beside it (lean rings and .bss), which a
        // killed recorder cannot remove.
        for tail in ["", "-lean", "-bss"] {
            let mut pin = self.pin.clone().into_os_string();
            pin.push(tail);
            let _ = std::fs::remove_file(pin);
        }
    }
}

/// `record -o DIR/ ARGS` with synthetic load at `rate` events/s for `secs`.
fn synthetic_series(dir: &Path, args: &[&str], rate: u32, secs: f32) -> Synthetic {
    let out = format!("{}/", dir.display());
    let mut all = vec!["record", "-o", &out];
    all.extend(args);
    synthetic(dir, &all, rate, secs)
}

/// tcpcong with `args` and the synthetic producer's ring buffer, named
/// after `out`, with synthetic load at `rate` events/s for `secs`.
fn synthetic(out: &Path, args: &[&str], rate: u32, secs: f32) -> Synthetic {
    let pin = format!(
        "/sys/fs/bpf/tcpcong-test-{}-{}",
        std::process::id(),
        out.file_stem().unwrap().to_string_lossy()
    );
    let mut child = Command::new(bin())
        .args(args)
        .args(["--pin-buffer", &pin, "-L", "1", "--no-lifecycle"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if Path::new(&pin).exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !Path::new(&pin).exists() {
        signal(child.id(), libc::SIGKILL);
        let o = child.wait_with_output().unwrap();
        panic!("the recorder never pinned its ring buffer: {}", stderr(&o));
    }
    // Held before the producer runs, so that its failure, too, stops the
    // recorder and removes its pins.
    let synthetic = Synthetic {
        child: Some(child),
        pin: PathBuf::from(&pin),
    };
    let synth = Path::new(bin()).parent().unwrap().join("synth");
    let o = Command::new(synth)
        .args([&pin, &rate.to_string(), &secs.to_string()])
        .output()
        .expect("the synthetic producer: cargo build -p tcpcong-bench (make test does)");
    assert!(o.status.success(), "synth: {}", stderr(&o));
    synthetic
}

#[test]
fn rotation_by_size_keeps_within_the_budget() {
    let dir = TempDir::new("size");
    let out = dir.join("s");
    let mut synthetic = synthetic_series(
        &out,
        &["--rotate-size", "40KB", "--max-total", "200KB"],
        200_000,
        2.0,
    );
    let rec = synthetic.take();
    signal(rec.id(), libc::SIGINT);
    let o = rec.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let files = series_files(&out);
    // The summary counts the files it wrote and those it deleted again.
    let err = stderr(&o);
    // The number before the first of `words` found.
    let said = |words: &[&str]| -> usize {
        let i = words
            .iter()
            .find_map(|w| err.find(w))
            .unwrap_or_else(|| panic!("none of {words:?} in {err}"));
        err[..i].rsplit(' ').next().unwrap().parse().unwrap()
    };
    let written = said(&[" files to ", " file to "]);
    let deleted = said(&[" old files deleted", " old file deleted"]);
    assert_eq!(written, files.len() + deleted, "{err}");
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    assert!(files.len() >= 2, "{sizes:?}");
    // Each file within its limit, its footer and end row included.
    assert!(sizes.iter().all(|&s| s <= 40_000), "{sizes:?}");
    assert!(sizes.iter().sum::<u64>() <= 200_000, "{sizes:?}");
    // The oldest files went: the series no longer starts at number 1.
    assert!(
        !files[0].to_string_lossy().ends_with("-000001.parquet"),
        "{files:?}"
    );
    for f in &files {
        read_meta(f);
    }
}

/// On real traffic, whose rows take 12 to 15 bytes each: every file cut
/// by size is within it, its footer and end row included (a check every
/// 2,048 rows let 16 KiB files grow to twice that).
#[test]
fn files_cut_by_size_stay_within_it_on_real_traffic() {
    let lab = Lab::new("cutsize", &["--loss", "2"]);
    let dir = TempDir::new("cutsize");
    let out = dir.join("s");
    let rec = Recorder::start(
        Path::new(&format!("{}/", out.display())),
        &["--netns", &lab.netns_path(), "--rotate-size", "16KiB"],
    );
    lab.traffic(4, &["--parallel", "2"]);
    lab.await_closed();
    let o = rec.stop();
    assert!(o.status.success(), "{}", stderr(&o));
    let sizes: Vec<u64> = series_files(&out)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    assert!(sizes.len() >= 3, "{sizes:?}");
    assert!(sizes.iter().all(|&s| s <= 16 << 10), "{sizes:?}");
}

#[test]
fn a_killed_capture_leaves_its_finished_files_intact() {
    let dir = TempDir::new("kill");
    let out = dir.join("k");
    let mut synthetic = synthetic_series(&out, &["--rotate-seconds", "1"], 50_000, 2.7);
    // Killed once two files are complete (a loaded machine may be behind
    // the producer), in the middle of the third.
    for _ in 0..200 {
        if series_files(&out).len() >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut rec = synthetic.take();
    signal(rec.id(), libc::SIGKILL);
    rec.wait().unwrap();

    let files = series_files(&out);
    assert!(files.len() >= 2, "{files:?}");
    let o = tcpcong(&["analyze", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let left = in_progress_below(Path::new(&format!("{}/", out.display())));
    assert_eq!(left.len(), 1, "{left:?}");
    let o = tcpcong(&["events", left[0].to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("what a capture that was killed before it finished left"),
        "{}",
        stderr(&o)
    );

    // The next capture into the folder says what it found.
    let o = Command::new(bin())
        .args([
            "record",
            "-o",
            &format!("{}/", out.display()),
            "--duration",
            "0.3",
            "-L",
            "1",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unfinished file"), "{}", stderr(&o));
}

/// A small tmpfs, unmounted at drop.
struct SmallDisk(PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

impl SmallDisk {
    fn mount(dir: &TempDir, size: &str) -> SmallDisk {
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tcpcong-test"])
            .arg(&mnt)
            .status()
            .unwrap();
        assert!(ok.success(), "mounting a tmpfs");
        SmallDisk(mnt)
    }
}

#[test]
fn a_full_disk_is_reported_and_earlier_files_stay_valid() {
    let dir = TempDir::new("full");
    let disk = SmallDisk::mount(&dir, "512k");
    let mnt = disk.0.clone();

    let mut synthetic = synthetic_series(&mnt, &["--rotate-size", "30KB"], 300_000, 3.0);
    let o = synthetic.take().wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("events are lost"), "{err}");
    assert!(
        in_progress_below(Path::new(&format!("{}/", mnt.display()))).is_empty(),
        "an incomplete file was left"
    );
    let files = series_files(&mnt);
    assert!(!files.is_empty());
    for f in &files {
        read_meta(f);
    }
}

/// Live mode's `-o` writes through record's output: a capture that fails
/// (here: the disk fills up) removes the unfinished file and says how many
/// events it held, so that the next run is not blocked by a leftover.
#[test]
fn live_mode_gives_up_on_its_recording_as_record_does() {
    let dir = TempDir::new("livefull");
    let disk = SmallDisk::mount(&dir, "64k");
    let out = disk.0.join("live.parquet");
    let mut synthetic = synthetic(&out, &["-o", out.to_str().unwrap(), "1", "3"], 300_000, 2.0);
    let o = synthetic.take().wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("events are lost"), "{err}");
    assert!(
        std::fs::read_dir(&disk.0).unwrap().next().is_none(),
        "a file was left in {}",
        disk.0.display()
    );
}

/// A disk already full when a file must start (what a series meets when
/// the disk fills just as it rotates): the recording refuses at once and
/// leaves no empty file behind to trip the next run.
#[test]
fn a_file_that_cannot_start_leaves_nothing() {
    let dir = TempDir::new("nostart");
    let disk = SmallDisk::mount(&dir, "64k");
    let filler = disk.0.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k", "count=64"])
        .arg(format!("of={}", filler.display()))
        .output()
        .unwrap();
    let out = disk.0.join("one.parquet");
    let o = tcpcong(&["record", "-o", out.to_str().unwrap(), "--duration", "1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&disk.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "filler")
        .collect();
    assert!(left.is_empty(), "{left:?} left in {}", disk.0.display());
}

/// One file on a full disk: the capture stops at the first failed write
/// (not at the end of its --duration), says how many events the file held,
/// and removes it.
#[test]
fn a_full_disk_stops_a_single_file_capture_at_once() {
    let dir = TempDir::new("fullfile");
    let disk = SmallDisk::mount(&dir, "512k");
    let out = disk.0.join("one.parquet");
    let started = std::time::Instant::now();
    let args = ["record", "-o", out.to_str().unwrap(), "--duration", "60"];
    let mut synthetic = synthetic(&out, &args, 400_000, 3.0);
    let o = synthetic.take().wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("events are lost"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "ran its whole duration: {err}"
    );
    assert!(
        std::fs::read_dir(&disk.0).unwrap().next().is_none(),
        "a file was left in {}",
        disk.0.display()
    );
}
