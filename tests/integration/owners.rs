//! Attribution, end to end: a client and a server, each started in a
//! cgroup of its own under a name of its own, over IPv4 and IPv6, plus a
//! pair that was already connected when the capture began. Every flow must
//! name the process that owns it (checked against the pids this test
//! spawned, not against anything tcpcong says) and its cgroup's path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const PORT: u16 = 5201;

/// A cgroup v2 of the test's own, removed at drop (its processes are gone
/// by then: they are this test's children, waited for).
struct Cgroup {
    dir: PathBuf,
    /// As recordings name it: from the cgroup2 mount's root.
    path: String,
}

impl Cgroup {
    fn new(name: &str) -> Cgroup {
        let root = cgroup2_root();
        let rel = format!("tcpcong-test-{}-{name}", std::process::id());
        let dir = root.join(&rel);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Cgroup {
            dir,
            path: format!("/{rel}"),
        }
    }

    fn id(&self) -> u64 {
        fs::metadata(&self.dir).expect("cgroup dir").ino()
    }

    /// Runs `prog args` in the lab's namespace as a member of this cgroup
    /// from its first instruction (the shell joins, then execs).
    fn spawn(&self, lab: &Lab, prog: &Path, args: &[&str]) -> Child {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec ip netns exec {} \"$@\"",
            self.dir.display(),
            lab.ns
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(prog)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Kills the processes at drop: a failing test leaves none behind.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn listening(lab: &Lab) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let o = Command::new("ip")
            .args(["netns", "exec", &lab.ns, "ss", "-Hltn"])
            .arg(format!("sport = :{PORT}"))
            .output()
            .expect("ss");
        if !o.stdout.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server never listened on {PORT}");
}

/// One iperf3 transfer of `secs` between a server and a client under their
/// own names and cgroups; returns (server pid, client pid) and the
/// processes, still running.
fn pair(
    lab: &Lab,
    bins: &(PathBuf, PathBuf),
    groups: &(Cgroup, Cgroup),
    v6: bool,
    secs: u32,
) -> (u32, u32, Procs) {
    let (fam, addr) = if v6 {
        ("-6", "::1")
    } else {
        ("-4", "127.0.0.1")
    };
    let port = PORT.to_string();
    let server = groups
        .0
        .spawn(lab, &bins.0, &["-s", fam, "-B", addr, "-p", &port, "-1"]);
    let mut procs = Procs(vec![server]);
    listening(lab);
    let t = secs.to_string();
    let client = groups
        .1
        .spawn(lab, &bins.1, &["-c", addr, fam, "-p", &port, "-t", &t]);
    procs.0.push(client);
    (procs.0[0].id(), procs.0[1].id(), procs)
}

fn finish(mut procs: Procs) {
    for c in &mut procs.0 {
        let st = c.wait().expect("wait");
        assert!(st.success(), "an iperf3 of the pair failed: {st}");
    }
    procs.0.clear();
}

/// The program under another name: its command name is the file's.
fn renamed(dir: &TempDir, name: &str) -> PathBuf {
    let to = dir.join(name);
    fs::copy("/usr/bin/iperf3", &to).expect("iperf3 is installed");
    to
}

#[test]
fn flows_name_their_process_and_cgroup_active_and_passive_v4_and_v6() {
    let lab = Lab::new("owners", &["--loss", "2"]);
    let dir = TempDir::new("owners");
    let bins = (renamed(&dir, "tc-server"), renamed(&dir, "tc-client"));
    let groups = (Cgroup::new("srv"), Cgroup::new("cli"));
    let out = dir.join("owners.parquet");

    // Connected before the capture: found through /proc, not the hooks.
    let (old_srv, old_cli, old) = pair(&lab, &bins, &groups, false, 8);
    std::thread::sleep(Duration::from_millis(500));
    let rec = Recorder::start(&out, &["--netns", &lab.netns_path()]);
    finish(old);
    let (srv4, cli4, p) = pair(&lab, &bins, &groups, false, 2);
    finish(p);
    let (srv6, cli6, p) = pair(&lab, &bins, &groups, true, 2);
    finish(p);
    rec.stop();

    let events = read_events(&out);
    // Per socket (cookie), its rows; a socket whose local port is the
    // server's is the server's end (its close row has port 0: the kernel
    // has released it by then), the listening socket aside.
    let mut ends: BTreeMap<(u64, bool), Vec<&Ev>> = BTreeMap::new();
    let mut by_flow: BTreeMap<u64, Vec<&Ev>> = BTreeMap::new();
    for e in &events {
        by_flow.entry(e.flow).or_default().push(e);
    }
    for (flow, rows) in by_flow {
        if rows.iter().all(|e| e.dport == 0) {
            continue;
        }
        // (A client's rows name the server's port as their remote one; a
        // server socket whose only rows are its close has port 0 there.)
        let server_side =
            rows.iter().any(|e| e.sport == PORT) || rows.iter().all(|e| e.dport != PORT);
        ends.insert((flow, server_side), rows);
    }
    let cgroup_paths = read_meta(&out)["cgroup_paths"].clone();
    let named = |id: u64| cgroup_paths[id.to_string()].as_str().map(str::to_string);

    let mut seen: BTreeSet<(u32, bool)> = BTreeSet::new();
    for ((flow, server_side), rows) in &ends {
        let (pids, comm, group) = if *server_side {
            ([old_srv, srv4, srv6], "tc-server", &groups.0)
        } else {
            ([old_cli, cli4, cli6], "tc-client", &groups.1)
        };
        let owned: Vec<&&Ev> = rows.iter().filter(|e| e.pid != 0).collect();
        assert!(
            !owned.is_empty(),
            "flow {flow} never names its owner: {rows:?}"
        );
        let pid = owned[0].pid;
        assert!(
            pids.contains(&pid),
            "flow {flow}: pid {pid}, not one of {pids:?}"
        );
        for e in &owned {
            assert_eq!((e.pid, e.comm.as_str()), (pid, comm), "flow {flow}");
        }
        // Only a passive socket waits for its owner (its rows before its
        // accept); once known, an owner stays to the socket's close.
        let first = rows.iter().position(|e| e.pid != 0).unwrap();
        assert!(
            rows[first..].iter().all(|e| e.pid != 0),
            "flow {flow}: {rows:?}"
        );
        // A passive socket is one born in the capture from the listener;
        // the old pair's may be one too, when a lost SYN delays its
        // connect until after the capture began.
        let passive = rows
            .iter()
            .any(|e| e.old == "listen" && e.new == "syn_recv");
        if !passive {
            assert_eq!(first, 0, "flow {flow}: {rows:?}");
        }
        for e in rows.iter() {
            assert_eq!(e.cgroup, group.id(), "flow {flow}: cgroup");
        }
        assert_eq!(named(group.id()), Some(group.path.clone()), "cgroup_paths");
        let family = rows[0].family;
        let pair_v6 = pid == srv6 || pid == cli6;
        assert_eq!(family == 6, pair_v6, "flow {flow}: family of its pair");
        seen.insert((pid, *server_side));
    }
    // Every end of every pair was recorded and attributed.
    let want: BTreeSet<(u32, bool)> = [
        (old_srv, true),
        (old_cli, false),
        (srv4, true),
        (cli4, false),
        (srv6, true),
        (cli6, false),
    ]
    .into();
    assert_eq!(seen, want);

    // --by sums analyze's per-flow rows per process and per cgroup path.
    let analyze = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec![
            "analyze",
            out.to_str().unwrap(),
            "--all",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let o = tcpcong(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let flows = analyze(&[]);
    // analyze labels each flow with the owner its rows name (also one
    // learnt at the capture's last instant, a close just before the stop).
    let owner_of: BTreeMap<u64, u32> = ends
        .iter()
        .filter_map(|((flow, _), rows)| Some((*flow, rows.iter().find(|e| e.pid != 0)?.pid)))
        .collect();
    for r in &flows {
        let flow = r["flow"].as_u64().unwrap();
        if let Some(pid) = owner_of.get(&flow) {
            assert_eq!(
                r["pid"].as_u64(),
                Some(u64::from(*pid)),
                "analyze row of flow {flow}"
            );
        }
    }
    // Every flow is the lab namespace's (its inode, from the file system),
    // under the congestion control the recording's own rows name.
    for r in &flows {
        assert_eq!(r["netns"].as_u64(), Some(lab.inode()), "{r}");
        let flow = r["flow"].as_u64().unwrap();
        let algos: BTreeSet<&str> = events
            .iter()
            .filter(|e| e.flow == flow)
            .map(|e| e.cong_algo.as_str())
            .collect();
        assert_eq!(algos, [r["cong_algo"].as_str().unwrap()].into(), "{r}");
    }
    for (key, field) in [
        ("process", "comm"),
        ("cgroup", "cgroup_path"),
        ("netns", "netns"),
        ("cc", "cong_algo"),
        ("host", "host"),
    ] {
        let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in &flows {
            let name = match &r[field] {
                serde_json::Value::String(s) if s.is_empty() && field == "comm" => {
                    "(owner not known)".to_string()
                }
                serde_json::Value::String(s) => s.clone(),
                n => n.to_string(),
            };
            let w = want.entry(name).or_default();
            w.0 += 1;
            w.1 += r["recovery_ns"].as_u64().unwrap() + r["loss_ns"].as_u64().unwrap();
        }
        let got: BTreeMap<String, (u64, u64)> = analyze(&["--by", key])
            .iter()
            .map(|g| {
                let trouble = g["recovery_ns"].as_u64().unwrap() + g["loss_ns"].as_u64().unwrap();
                (
                    g["key"].as_str().unwrap().to_string(),
                    (g["flows"].as_u64().unwrap(), trouble),
                )
            })
            .collect();
        assert_eq!(got, want, "--by {key}");
    }
    let procs = analyze(&["--by", "process"]);
    let keys: BTreeSet<&str> = procs.iter().map(|g| g["key"].as_str().unwrap()).collect();
    assert!(
        keys.is_superset(&["tc-client", "tc-server"].into()),
        "{keys:?}"
    );
}
