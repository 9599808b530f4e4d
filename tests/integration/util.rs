//! Helpers: running the binary, the lab (a private lossy namespace, through
//! lab/lab.sh), background recorders, and reading recordings back with the
//! Parquet crate directly, so that tests check files independently of
//! tcpcong's own reader.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tcpcong")
}

/// The names `events` adds after the file's columns: the row's cgroup
/// path and its container's name, id, pod and namespace.
pub const EVENTS_NAMES: usize = 5;

/// How many columns `schemas/events-v1.json` documents.
pub fn documented_columns() -> usize {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/events-v1.json")).unwrap(),
    )
    .unwrap();
    schema["columns"].as_array().unwrap().len()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One of schema v1's first files (no `seq`, owners, capture or snapshot
/// rows), kept apart from the fixtures so that their folder is one schema.
pub fn compat() -> String {
    repo()
        .join("tests/compat/v1-first-multi-flow.parquet")
        .display()
        .to_string()
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures").join(name)
}

/// Runs tcpcong with `args`, local time in UTC so that `-T` is reproducible.
pub fn tcpcong(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("TZ", "UTC")
        .output()
        .expect("tcpcong runs")
}

/// Runs tcpcong as the user nobody (uid 65534), with no groups.
pub fn tcpcong_as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(args)
        .output()
        .expect("setpriv runs")
}

/// Runs tcpcong as root without any capability, as an unprivileged user
/// would be (setpriv drops them all, also for children).
pub fn tcpcong_without_capabilities(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--inh-caps=-all",
            "--ambient-caps=-all",
            "--bounding-set=-all",
            "--",
        ])
        .arg(bin())
        .args(args)
        .output()
        .expect("setpriv runs")
}

/// Sends `sig` to a child process of this test.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory effects; the pid is our own child's.
    unsafe { libc::kill(pid as i32, sig) };
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tcpcong-test-{tag}-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    /// Kept when a test fails, to look at: its path is in the panic message.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn unique() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A private network namespace with a lossy loopback, deleted at drop (so
/// also when a test fails). Each test gets its own, and filters its
/// recorders by its inode, so tests running in parallel never see each
/// other's flows.
pub struct Lab {
    pub ns: String,
}

fn lab_sh(args: &[&str]) -> Output {
    let o = Command::new(repo().join("lab/lab.sh"))
        .args(args)
        .output()
        .expect("lab.sh runs");
    assert!(o.status.success(), "lab.sh {args:?} failed: {}", stderr(&o));
    o
}

impl Lab {
    /// `opts` are lab.sh's: `--loss PCT`, `--ecn PCT`, `--port PORT`.
    pub fn new(tag: &str, opts: &[&str]) -> Lab {
        let ns = format!("tc-{tag}-{}-{}", std::process::id(), unique());
        let lab = Lab { ns };
        let mut args = vec!["up", lab.ns.as_str()];
        args.extend_from_slice(opts);
        lab_sh(&args);
        lab
    }

    pub fn netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.ns)
    }

    pub fn inode(&self) -> u64 {
        stdout(&lab_sh(&["inode", &self.ns]))
            .trim()
            .parse()
            .expect("inode")
    }

    /// Bounded bulk transfer; `opts`: `--ipv6`, `--parallel N`, `--port P`.
    pub fn traffic(&self, secs: u32, opts: &[&str]) {
        let s = secs.to_string();
        let mut args = vec!["traffic", self.ns.as_str(), s.as_str()];
        args.extend_from_slice(opts);
        lab_sh(&args);
    }

    /// Waits (at most 10 s) until `n` connections in the namespace are
    /// established.
    pub fn await_established(&self, n: usize) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until {
            let o = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.ns,
                    "ss",
                    "-Htn",
                    "state",
                    "established",
                ])
                .output()
                .expect("ss runs");
            if stdout(&o).lines().count() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{n} connections never established in {}", self.ns);
    }

    /// One connection's small requests, each answered before the next, for
    /// `secs`: its lost requests are resent by tail loss probes. Returns
    /// how many were answered.
    pub fn requests(&self, secs: u32) -> u64 {
        stdout(&lab_sh(&["requests", &self.ns, &secs.to_string()]))
            .trim()
            .parse()
            .expect("a count")
    }

    /// `count` connections to `port`, each reset by its client (one in two
    /// closed with data unread, the others with a zero linger) and the
    /// reset seen by its server before the next.
    pub fn aborts(&self, count: u32, port: u16) {
        let (c, p) = (count.to_string(), port.to_string());
        lab_sh(&["aborts", &self.ns, &c, "--port", &p]);
    }

    /// A slow, short queue on the loopback, which senders overflow.
    pub fn shape(&self) {
        lab_sh(&["shape", &self.ns]);
    }

    /// What the lab dropped so far: `netfilter` (the loss rule) and, with
    /// [`Lab::shape`], `qdisc` (the queue).
    pub fn drops(&self) -> HashMap<String, u64> {
        name_values(&lab_sh(&["drops", &self.ns]))
    }

    /// `n` datagrams to a closed UDP port.
    pub fn udp(&self, n: u32) {
        lab_sh(&["udp", &self.ns, &n.to_string()]);
    }

    /// Drops everything to the server port for `ms`: RTOs, hence `loss`.
    pub fn blackout(&self, ms: u32) {
        lab_sh(&["blackout", &self.ns, &ms.to_string()]);
    }

    /// Answers packets to the lab's port with a TCP reset for `ms`.
    pub fn reset(&self, ms: u32) {
        lab_sh(&["reset", &self.ns, &ms.to_string()]);
    }

    /// Two short connections from one local port: one 4-tuple, two sockets.
    pub fn reuse(&self) {
        lab_sh(&["reuse", &self.ns]);
    }

    /// Drops handshake packets (SYN, SYN-ACK) of the lab's port for `ms`,
    /// in the background: connections opened meanwhile retransmit them.
    /// Drops SYNs of the lab's port for `ms`; returns once the rules are
    /// in (lab.sh says so), with the thread that lifts them.
    pub fn synblock(&self, ms: u32) -> std::thread::JoinHandle<()> {
        let mut child = Command::new(repo().join("lab/lab.sh"))
            .args(["synblock", &self.ns, &ms.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("lab.sh runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "blocked", "lab.sh synblock");
        std::thread::spawn(move || assert!(child.wait().unwrap().success(), "lab.sh synblock"))
    }

    /// Waits (`lab.sh settle`) until no connection of the lab's port can
    /// still send (closed, or in TIME-WAIT, whose socket the kernel already
    /// closed): every flow of the traffic has had its close, and the
    /// namespace's counters are final.
    pub fn await_closed(&self) {
        lab_sh(&["settle", &self.ns]);
    }

    /// As [`Lab::await_closed`], for the clients' side alone: a server
    /// whose peer was reset away keeps its socket until it writes.
    pub fn await_clients_closed(&self) {
        lab_sh(&["settle", &self.ns, "--clients"]);
    }

    pub fn nstat(&self) -> HashMap<String, u64> {
        name_values(&lab_sh(&["nstat", &self.ns]))
    }
}

/// lab.sh's "name value" lines.
fn name_values(o: &Output) -> HashMap<String, u64> {
    stdout(o)
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("lab/lab.sh"))
            .args(["down", &self.ns])
            .output();
    }
}

/// `tcpcong record` running in the background; killed at drop if the test
/// ended (failed) before stopping it, so that no recorder outlives its test.
pub struct Recorder {
    child: Option<Child>,
    /// Collects stderr (whose banner says the programs are attached).
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Recorder {
    /// Starts a recorder and returns once its programs are attached (its
    /// banner is printed after attaching): loading can take long on a busy
    /// machine, and traffic before it would not be recorded.
    pub fn start(out: &Path, args: &[&str]) -> Recorder {
        let mut child = Command::new(bin())
            .arg("record")
            .arg("-o")
            .arg(out)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("record starts");
        let mut pipe = child.stderr.take().expect("piped stderr");
        let (attached, seen) = std::sync::mpsc::channel();
        let stderr = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut all = Vec::new();
            let mut lines = std::io::BufReader::new(&mut pipe);
            let mut line = Vec::new();
            while lines.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.starts_with(b"Recording TCP congestion-state transitions") {
                    let _ = attached.send(());
                }
                all.append(&mut line);
            }
            all
        });
        // Attached, or the recorder ended (the test sees why at wait).
        let _ = seen.recv_timeout(Duration::from_secs(60));
        Recorder {
            child: Some(child),
            stderr: Some(stderr),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Ends the capture with SIGINT and returns its output.
    pub fn stop(self) -> Output {
        signal(self.pid(), libc::SIGINT);
        self.wait()
    }

    /// Ends two captures with one signal each, sent back to back.
    pub fn stop_together(a: Recorder, b: Recorder) -> (Output, Output) {
        for r in [&a, &b] {
            signal(r.pid(), libc::SIGINT);
        }
        (a.wait(), b.wait())
    }

    /// Reaps a recorder the test killed: how it ended.
    pub fn wait_killed(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running recorder");
        child.wait().expect("record ends")
    }

    pub fn wait(mut self) -> Output {
        let child = self.child.take().expect("a running recorder");
        let mut o = child.wait_with_output().expect("record finishes");
        if let Some(t) = self.stderr.take() {
            o.stderr = t.join().unwrap_or_default();
        }
        assert!(o.status.success(), "record failed: {}", stderr(&o));
        o
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One row of a recording, as the test reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub time: i64,
    pub ktime: u64,
    pub kind: String,
    pub flow: u64,
    pub family: u8,
    pub saddr: String,
    pub daddr: String,
    pub sport: u16,
    pub dport: u16,
    pub old: String,
    pub new: String,
    pub netns: u32,
    pub cgroup: u64,
    pub cong_algo: String,
    pub snd_cwnd: u32,
    pub snd_ssthresh: u32,
    pub seq: u32,
    pub kernel_gap: u8,
    pub pid: u32,
    pub comm: String,
    pub segs: u32,
    pub err: i32,
    /// The socket's own count of the segments it resent, when the row was
    /// taken (0 in a drop row named by the segment's addresses alone).
    pub total_retrans: u32,
    pub causes: Causes,
}

/// What a row carries of the causes (columns of the same names; 0 in
/// recordings older than them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Causes {
    pub rto_us: u32,
    pub backoff: u8,
    pub delivered_ce: u32,
    pub dsack_dups: u32,
    pub reord_seen: u32,
    pub undo: u8,
}

/// The events of a recording: neither the capture rows that open and
/// close each file nor the snapshot rows.
pub fn read_events(path: &Path) -> Vec<Ev> {
    read_rows(path, |kind| kind != "capture" && kind != "snapshot")
}

/// The snapshot rows of a recording.
pub fn read_snapshots(path: &Path) -> Vec<Ev> {
    read_rows(path, |kind| kind == "snapshot")
}

fn read_rows(path: &Path, keep: impl Fn(&str) -> bool) -> Vec<Ev> {
    let f = File::open(path).expect("recording exists");
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out = Vec::new();
    for b in reader {
        let b = b.expect("batch");
        let c = |n: &str| {
            b.column_by_name(n)
                .unwrap_or_else(|| panic!("column {n}"))
                .clone()
        };
        // Microseconds; files written before that hold nanoseconds.
        let time = arrow_cast::cast(
            &c("time"),
            &arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, None),
        )
        .expect("time as ns");
        let time = time.as_primitive::<arrow_array::types::TimestampNanosecondType>();
        let (ktime, kind, flow, family) = (c("ktime_ns"), c("kind"), c("flow"), c("family"));
        let (saddr, daddr, sport, dport) = (c("saddr"), c("daddr"), c("sport"), c("dport"));
        let (old, new, netns, algo, cwnd) = (
            c("old_state"),
            c("new_state"),
            c("netns"),
            c("cong_algo"),
            c("snd_cwnd"),
        );
        let cgroup = c("cgroup");
        // Added to v1 later: older recordings (the fixtures) have neither.
        let (seq, kernel_gap) = (b.column_by_name("seq"), b.column_by_name("kernel_gap"));
        let (pid, comm) = (b.column_by_name("pid"), b.column_by_name("comm"));
        let (segs, err) = (b.column_by_name("segs"), b.column_by_name("err"));
        let u32_at = |name: &str, i: usize| {
            b.column_by_name(name)
                .map_or(0, |a| a.as_primitive::<UInt32Type>().value(i))
        };
        let u8_at = |name: &str, i: usize| {
            b.column_by_name(name)
                .map_or(0, |a| a.as_primitive::<UInt8Type>().value(i))
        };
        for i in 0..b.num_rows() {
            if !keep(kind.as_string::<i32>().value(i)) {
                continue;
            }
            out.push(Ev {
                time: time.value(i),
                ktime: ktime.as_primitive::<UInt64Type>().value(i),
                kind: kind.as_string::<i32>().value(i).to_string(),
                flow: flow.as_primitive::<UInt64Type>().value(i),
                family: family.as_primitive::<UInt8Type>().value(i),
                saddr: saddr.as_string::<i32>().value(i).to_string(),
                daddr: daddr.as_string::<i32>().value(i).to_string(),
                sport: sport.as_primitive::<UInt16Type>().value(i),
                dport: dport.as_primitive::<UInt16Type>().value(i),
                old: old.as_string::<i32>().value(i).to_string(),
                new: new.as_string::<i32>().value(i).to_string(),
                netns: netns.as_primitive::<UInt32Type>().value(i),
                cgroup: cgroup.as_primitive::<UInt64Type>().value(i),
                cong_algo: algo.as_string::<i32>().value(i).to_string(),
                snd_cwnd: cwnd.as_primitive::<UInt32Type>().value(i),
                snd_ssthresh: u32_at("snd_ssthresh", i),
                seq: seq.map_or(0, |a| a.as_primitive::<UInt32Type>().value(i)),
                kernel_gap: kernel_gap.map_or(0, |a| a.as_primitive::<UInt8Type>().value(i)),
                pid: pid.map_or(0, |a| a.as_primitive::<UInt32Type>().value(i)),
                comm: comm.map_or_else(String::new, |a| a.as_string::<i32>().value(i).to_string()),
                segs: segs.map_or(0, |a| a.as_primitive::<UInt32Type>().value(i)),
                err: err.map_or(0, |a| a.as_primitive::<Int32Type>().value(i)),
                total_retrans: u32_at("total_retrans", i),
                causes: Causes {
                    rto_us: u32_at("rto_us", i),
                    backoff: u8_at("backoff", i),
                    delivered_ce: u32_at("delivered_ce", i),
                    dsack_dups: u32_at("dsack_dups", i),
                    reord_seen: u32_at("reord_seen", i),
                    undo: u8_at("undo", i),
                },
            });
        }
    }
    out
}

/// Nothing was lost between the kernel and the file. The only loss allowed
/// is the kernel skipping a program that an interrupt re-entered on the same
/// CPU (seen under this suite's parallel load, about once per twenty runs),
/// which the recorder must report as such, in the file and on stderr.
pub fn assert_no_transport_loss(stderr: &str, meta: &serde_json::Value) {
    assert_only_kernel_skips(stderr, meta["lost_events"].as_u64().unwrap());
}

/// [`assert_no_transport_loss`] for a capture's `lost` events in all.
pub fn assert_only_kernel_skips(stderr: &str, lost: u64) {
    if lost == 0 {
        assert!(stderr.contains(", 0 lost events"), "{stderr}");
    } else {
        let why = format!(
            "{lost} lost events ({lost} skipped by the kernel: program re-entered on one CPU;"
        );
        assert!(stderr.contains(&why), "{stderr}");
    }
}

/// `analyze INPUTS --all --format json`, which must succeed: its rows.
pub fn analyze_rows(inputs: &[&Path]) -> Vec<serde_json::Value> {
    let mut args = vec!["analyze"];
    args.extend(inputs.iter().map(|p| p.to_str().expect("a UTF-8 path")));
    args.extend(["--all", "--format", "json"]);
    let o = tcpcong(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect()
}

/// The `tcpcong` object from the Parquet footer.
pub fn read_meta(path: &Path) -> serde_json::Value {
    let f = File::open(path).expect("recording exists");
    let b = ParquetRecordBatchReaderBuilder::try_new(f).expect("parquet");
    let kv = b
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "tcpcong"))
        .and_then(|k| k.value.clone())
        .expect("tcpcong metadata in the footer");
    let from_schema = b.schema().metadata().get("tcpcong").cloned();
    assert_eq!(
        from_schema.as_deref(),
        Some(kv.as_str()),
        "footer and Arrow schema metadata differ"
    );
    serde_json::from_str(&kv).expect("metadata is JSON")
}

/// Congestion events only.
pub fn ca(events: &[Ev]) -> Vec<&Ev> {
    events.iter().filter(|e| e.kind == "ca_state").collect()
}

/// CLOCK_MONOTONIC, the clock of `ktime_ns`.
pub fn ktime_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Files below `dir` (recursively) whose name passes `keep`, sorted.
pub fn files_below(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&e.file_name().to_string_lossy()) {
                found.push(p);
            }
        }
    }
    found.sort();
    found
}

/// In-progress files next to `out` (a file) or anywhere below it (a series).
pub fn in_progress_below(out: &Path) -> Vec<PathBuf> {
    let unfinished = |name: &str| name.ends_with(".inprogress");
    if out.as_os_str().to_string_lossy().ends_with('/') {
        files_below(out, unfinished)
    } else {
        let dir = out.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| unfinished(&p.file_name().unwrap_or_default().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Whether this kernel was built with kprobes (their register function is
/// in kallsyms), which decides what `--attach kprobe` must do here.
pub fn kernel_has_kprobes() -> bool {
    std::fs::read_to_string("/proc/kallsyms")
        .expect("/proc/kallsyms")
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("register_kprobe"))
}

/// What the independent observer (the bench crate's `observer`: a classic
/// tracepoint program, run by a different kernel path than tcpcong's)
/// saw: calls of the kernel's congestion-state tracepoint that found a
/// socket in another state than its previous call set.
pub struct Observed {
    /// (ktime ns, cookie, state found, state set, state the previous
    /// call set).
    pub breaks: Vec<(u64, u64, u8, u8, u8)>,
    pub calls: u64,
    /// Calls the kernel did not run the observer for (it nested).
    pub misses: u64,
    /// Per socket cookie, calls of `tcp:tcp_retransmit_skb` and the
    /// segments they resent.
    pub resent: HashMap<u64, (u64, u64)>,
    /// Retransmission calls the kernel did not run the observer for.
    pub resent_misses: u64,
    /// Drops (of any packet) the kernel did not run the observer for.
    pub drop_misses: u64,
    /// TCP packets dropped, by (network namespace, reason).
    pub dropped: HashMap<(u64, String), u64>,
    /// Per socket cookie, over its calls of `tcp:tcp_cong_state_set`:
    /// the calls, and the sums of `delivered_ce`, `dsack_dups`,
    /// `reord_seen`, `backoff`, `rto_us`, and of calls out of recovery or
    /// loss that found the undo marker cleared.
    pub causes: HashMap<u64, [u64; 7]>,
}

pub struct Observer {
    child: Child,
}

impl Observer {
    /// Starts the observer (built by `cargo build -p tcpcong-bench`, which
    /// `make test` runs first) and returns once it is attached.
    pub fn start() -> Observer {
        let path = Path::new(bin()).with_file_name("observer");
        let mut child = Command::new(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (cargo build -p tcpcong-bench)", path.display()));
        let mut line = String::new();
        let out = child.stdout.as_mut().expect("piped stdout");
        let mut reader = std::io::BufReader::new(out);
        std::io::BufRead::read_line(&mut reader, &mut line).expect("observer output");
        assert_eq!(line.trim(), "ready", "the observer did not attach");
        Observer { child }
    }

    pub fn stop(mut self) -> Observed {
        drop(self.child.stdin.take());
        let o = self.child.wait_with_output().expect("observer ends");
        assert!(o.status.success(), "observer failed");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut seen = Observed {
            breaks: Vec::new(),
            calls: 0,
            misses: 0,
            resent: HashMap::new(),
            resent_misses: 0,
            drop_misses: 0,
            dropped: HashMap::new(),
            causes: HashMap::new(),
        };
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["break", t, cookie, found, set, last] => seen.breaks.push((
                    t.parse().unwrap(),
                    cookie.parse().unwrap(),
                    found.parse().unwrap(),
                    set.parse().unwrap(),
                    last.parse().unwrap(),
                )),
                ["drops", netns, reason, n] => {
                    seen.dropped.insert(
                        (netns.parse().unwrap(), reason.to_string()),
                        n.parse().unwrap(),
                    );
                }
                ["causes", cookie, sums @ ..] if sums.len() == 7 => {
                    let mut v = [0; 7];
                    for (d, s) in v.iter_mut().zip(sums) {
                        *d = s.parse().unwrap();
                    }
                    seen.causes.insert(cookie.parse().unwrap(), v);
                }
                ["retransmits", cookie, calls, segs] => {
                    seen.resent.insert(
                        cookie.parse().unwrap(),
                        (calls.parse().unwrap(), segs.parse().unwrap()),
                    );
                }
                ["calls", calls, "unreported", unreported, "misses", misses, "resent_unrecorded", unrecorded, "resent_misses", resent_misses, "drop_misses", drop_misses] =>
                {
                    assert_eq!(*unreported, "0", "the observer's ring overflowed");
                    assert_eq!(*unrecorded, "0", "the observer's table overflowed");
                    seen.calls = calls.parse().unwrap();
                    seen.misses = misses.parse().unwrap();
                    seen.resent_misses = resent_misses.parse().unwrap();
                    seen.drop_misses = drop_misses.parse().unwrap();
                }
                _ => {}
            }
        }
        seen
    }
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on hybrid hosts).
pub fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    mounts
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .expect("a cgroup2 mount (/sys/fs/cgroup or /sys/fs/cgroup/unified)")
}
