//! Containers and pods, named from what a Kubernetes node keeps: the
//! cgroups the kubelet makes for a pod's containers (systemd driver) and
//! its log folders, built here as the kubelet builds them, with real
//! processes in those cgroups and their real flows. No API server, no
//! container runtime: what tcpcong reads is exactly this layout.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

use crate::util::*;

/// One pod's container as a node has it, removed at drop: its cgroup (and
/// the kubelet's slices above it, where this made them), its log folder
/// under /var/log/pods and its link under /var/log/containers.
struct PodContainer {
    /// The cgroup and log folders this made (to be removed, last first).
    made: Vec<PathBuf>,
    scope: PathBuf,
    pod_folder: PathBuf,
    link: PathBuf,
    id: String,
}

impl PodContainer {
    fn new(namespace: &str, pod: &str, container: &str) -> PodContainer {
        // Unique per run: a uid and a container id of this process's own.
        let n = std::process::id();
        let uid = format!("{n:08x}-7c1d-4e2f-9a3b-{:012x}", u64::from(n) * 7);
        let id = format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15);
        let slices = [
            "kubepods.slice".to_string(),
            "kubepods-burstable.slice".to_string(),
            format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_")),
            format!("cri-containerd-{id}.scope"),
        ];
        let mut dir = cgroup2_root();
        let mut made = Vec::new();
        for s in &slices {
            dir.push(s);
            if !dir.exists() {
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
                made.push(dir.clone());
            }
        }
        let pod_folder = PathBuf::from(format!("/var/log/pods/{namespace}_{pod}_{uid}"));
        let log = pod_folder.join(container).join("0.log");
        for d in ["/var/log/pods", "/var/log/containers"] {
            if !std::path::Path::new(d).exists() {
                fs::create_dir_all(d).expect(d);
                made.push(PathBuf::from(d));
            }
        }
        fs::create_dir_all(log.parent().unwrap()).expect("the pod's log folder");
        fs::write(&log, "").expect("the container's log");
        let link = PathBuf::from(format!(
            "/var/log/containers/{pod}_{namespace}_{container}-{id}.log"
        ));
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&log, &link).expect("the kubelet's link");
        PodContainer {
            made,
            scope: dir,
            pod_folder,
            link,
            id,
        }
    }

    fn cgroup_id(&self) -> u64 {
        fs::metadata(&self.scope).expect("the scope").ino()
    }

    /// Lab traffic whose every process is in this container's cgroup
    /// from its first instruction (the shell joins, then execs).
    fn traffic(&self, lab: &Lab, secs: u32) {
        let script = format!(
            "echo $$ > {}/cgroup.procs && exec {} traffic {} {secs}",
            self.scope.display(),
            repo().join("lab/lab.sh").display(),
            lab.ns
        );
        let o = Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .expect("sh");
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

impl Drop for PodContainer {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.link);
        let _ = fs::remove_dir_all(&self.pod_folder);
        for dir in self.made.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The JSON lines a successful command prints.
fn json_lines(args: &[&str]) -> Vec<serde_json::Value> {
    let o = tcpcong(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The flows those lines are of.
fn flows_of(rows: &[serde_json::Value]) -> BTreeSet<u64> {
    rows.iter().map(|r| r["flow"].as_u64().unwrap()).collect()
}

#[test]
fn flows_of_a_pods_container_carry_its_pod_namespace_and_name() {
    let lab = Lab::new("pod", &["--loss", "2"]);
    let dir = TempDir::new("pod");
    let out = dir.join("run.parquet");
    let c = PodContainer::new("shop", "cart-7d9f8", "api");
    let rec = Recorder::start(&out, &["--netns", &lab.netns_path()]);
    // A second capture of the same traffic that keeps the pod's flows only.
    let pod_out = dir.join("pod.parquet");
    let pod_rec = Recorder::start(
        &pod_out,
        &["--netns", &lab.netns_path(), "--pod", "shop/cart-7d9f8"],
    );
    c.traffic(&lab, 2);
    // And flows of no container, beside them.
    lab.traffic(1, &[]);
    lab.await_closed();
    let o = rec.stop();
    assert_no_transport_loss(&stderr(&o), &read_meta(&out));
    let pod_o = pod_rec.stop();

    // The file names the container's cgroup, and only it.
    let events = read_events(&out);
    let theirs: BTreeSet<u64> = events
        .iter()
        .filter(|e| e.cgroup == c.cgroup_id())
        .map(|e| e.flow)
        .collect();
    let all: BTreeSet<u64> = events.iter().map(|e| e.flow).collect();
    assert!(
        !theirs.is_empty() && theirs.len() < all.len(),
        "{theirs:?} of {all:?}"
    );
    let meta = read_meta(&out);
    assert_eq!(meta["schema_minor"], 4);
    assert_eq!(
        meta["containers"],
        serde_json::json!({ c.cgroup_id().to_string(): {
            "runtime": "containerd", "id": c.id, "name": "api", "pod": "cart-7d9f8", "namespace": "shop",
        }})
    );

    // The capture that kept the pod has exactly its flows' rows (but for
    // calls either capture's programs were skipped for, counted), and names
    // its cgroup only.
    let pod_meta = read_meta(&pod_out);
    assert_eq!(
        pod_meta["filters"]["containers"],
        serde_json::json!([{ "pod": "shop/cart-7d9f8" }])
    );
    assert_eq!(pod_meta["containers"], meta["containers"]);
    assert_eq!(
        pod_meta["cgroup_paths"].as_object().map(|p| p.len()),
        Some(1),
        "{pod_meta}"
    );
    let row = |e: &Ev| (e.flow, e.seq, e.kind.clone(), e.old.clone(), e.new.clone());
    let want: BTreeSet<_> = events
        .iter()
        .filter(|e| theirs.contains(&e.flow))
        .map(row)
        .collect();
    let got: BTreeSet<_> = read_events(&pod_out).iter().map(row).collect();
    assert_no_transport_loss(&stderr(&pod_o), &pod_meta);
    let skipped = meta["lost_events"].as_u64().unwrap() + pod_meta["lost_events"].as_u64().unwrap();
    assert!(got.iter().all(|r| theirs.contains(&r.0)), "{got:?}");
    let differ: Vec<_> = want.symmetric_difference(&got).collect();
    assert!(
        !got.is_empty() && differ.len() <= skipped as usize,
        "{} rows kept of the pod's {}: {differ:?}",
        got.len(),
        want.len()
    );

    // Every row of analyze and events names the container of its flow's
    // cgroup, and none other.
    let file = out.to_str().unwrap();
    let rows = analyze_rows(&[&out]);
    let events_json = json_lines(&["events", file, "--format", "json"]);
    for r in rows.iter().chain(&events_json) {
        let mine = theirs.contains(&r["flow"].as_u64().unwrap());
        let want = |v: &str| if mine { v.to_string() } else { String::new() };
        let labels = ["container", "container_id", "pod", "k8s_namespace"].map(|k| r[k].as_str());
        let expect = [want("api"), want(&c.id), want("cart-7d9f8"), want("shop")];
        assert_eq!(labels, expect.each_ref().map(|s| Some(s.as_str())), "{r}");
    }

    // --container and --pod keep exactly its flows, by name or by id (of
    // them, analyze has rows for those that connected: not the listener).
    let analyzed: BTreeSet<u64> = flows_of(&rows).intersection(&theirs).copied().collect();
    for sel in [
        ["--container", "api"],
        ["--container", &c.id],
        ["--container", &c.id[..12]],
        ["--pod", "cart-7d9f8"],
        ["--pod", "shop/cart-7d9f8"],
    ] {
        let mut args = vec!["analyze", file, "--all", "--format", "json"];
        args.extend(sel);
        assert_eq!(flows_of(&json_lines(&args)), analyzed, "{sel:?}");
        let mut args = vec!["events", file, "--format", "json"];
        args.extend(sel);
        assert_eq!(flows_of(&json_lines(&args)), theirs, "{sel:?}");
    }
    for sel in [["--pod", "dev/cart-7d9f8"], ["--container", "ap"]] {
        let mut args = vec!["events", file, "--format", "json"];
        args.extend(sel);
        assert!(json_lines(&args).is_empty(), "{sel:?}");
    }
    let o = tcpcong(&["analyze", file, "--pod", "a/b/c"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // analyze groups by them: the container's flows in one group, the
    // others in the group of no container.
    let counted = |key: &str| {
        rows.iter()
            .filter(|r| (r["container"] != "") == (key != "(no container)" && key != "(no pod)"))
            .count() as u64
    };
    for (by, key, none) in [
        ("container", "shop/cart-7d9f8/api", "(no container)"),
        ("pod", "shop/cart-7d9f8", "(no pod)"),
        ("k8s-namespace", "shop", "(no pod)"),
    ] {
        let groups = json_lines(&["analyze", file, "--all", "--by", by, "--format", "json"]);
        // The table, for a run's record (`--nocapture`).
        eprintln!(
            "{}",
            stdout(&tcpcong(&["analyze", file, "--all", "--by", by]))
        );
        let got: BTreeMap<&str, u64> = groups
            .iter()
            .map(|g| (g["key"].as_str().unwrap(), g["flows"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([(key, counted(key)), (none, counted(none))]),
            "--by {by}"
        );
    }
}

/// `ip netns exec` runs its command with a /sys of its own, where no
/// cgroup is mounted: a capture there can name no cgroup and says so.
#[test]
fn a_capture_that_sees_no_cgroup_mount_says_so() {
    let lab = Lab::new("nocgroup", &[]);
    let dir = TempDir::new("nocgroup");
    let out = dir.join("run.parquet");
    // `tcpcong record -o OUT ARGS` under `ip netns exec`.
    let record_in_ns = |out: &std::path::Path, args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &lab.ns, bin()])
            .args(["record", "-o", out.to_str().unwrap()])
            .args(args)
            .output()
            .expect("ip netns exec")
    };
    let o = record_in_ns(&out, &["--duration", "0.3"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("note: no cgroup v2 is mounted in this mount namespace"),
        "{err}"
    );
    // Nor can it keep a container's flows: refused, before anything starts.
    let out3 = dir.join("run3.parquet");
    let o = record_in_ns(&out3, &["--pod", "web", "--duration", "0.3"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.lines().count() == 1 && err.contains("--container and --pod need the cgroups' names"),
        "{err}"
    );
    assert!(!out3.exists());
    // Where it can see the mount, it says nothing of it.
    let out2 = dir.join("run2.parquet");
    let o = tcpcong(&["record", "-o", out2.to_str().unwrap(), "--duration", "0.3"]);
    assert!(
        o.status.success() && !stderr(&o).contains("no cgroup v2"),
        "{}",
        stderr(&o)
    );
}

/// A container filter is the user's own text, and it comes back in the
/// capture's words and in the file: escaped on the terminal, kept exactly
/// in the metadata.
#[test]
fn a_container_filter_with_controls_is_escaped_where_it_is_said() {
    let dir = TempDir::new("hostilefilter");
    let out = dir.join("run.parquet");
    let name = "x\u{1b}[31m\"\nq";
    let o = tcpcong(&[
        "record",
        "-o",
        out.to_str().unwrap(),
        "--container",
        name,
        "--duration",
        "0.3",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(err.contains("--container x\\x1b[31m\"\\x0aq"), "{err:?}");
    assert_eq!(
        read_meta(&out)["filters"]["containers"],
        serde_json::json!([{ "container": name }])
    );
}
