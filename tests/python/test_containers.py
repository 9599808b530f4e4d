"""Real containers: Debian's podman and crun run an image the test makes
from this host's iperf3 and its libraries (`podman import`, no registry),
a server container and a client container, both in a lab namespace that
drops 2 % of the server's incoming segments. `tcpcong serve --by
container` records them, and beside it `record --container CLIENT` the
client's alone. What podman says of each container (its name,
its id, and the cgroup its process runs in, read from /proc) is the
independent source: every flow's rows must name the container whose
cgroup they carry, and the server's ports must be the server's; then the
recording's metadata, analyze --by container, events and --container,
serve's labels (equal to analyze's windowed sums of serve's own
recording) and the report's top flows. Root, BPF and podman: in CI this
fails, never skips, without them.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO, binary, get, stop, wait_for

LAB = REPO / "lab" / "lab.sh"
STATES = ["open", "disorder", "cwr", "recovery", "loss"]
PORT = 5201
TAG = f"localhost/tcpcong-test-iperf3:{os.getpid()}"

# How the containers run. --ulimit: podman would raise the open-file and
# process limits above the caller's, which needs CAP_SYS_RESOURCE (a
# sandboxed root may lack it); --privileged: without it crun loads a BPF
# device filter into the container's cgroup v2, raising RLIMIT_MEMLOCK
# first, for the same capability; --pids-limit 0: on a host with cgroup
# v1 controllers (below) cgroup v2 has no pids controller to limit with.
RUN = ["--privileged", "--pids-limit", "0", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=1024:1024"]


def lab(*args, check=True):
    return subprocess.run(["bash", str(LAB), *args], capture_output=True, text=True, check=check, timeout=120)


def cgroup2_mounts() -> list[str]:
    """Where cgroup v2 is mounted (/sys/fs/cgroup, or on a hybrid host
    /sys/fs/cgroup/unified beside the v1 controllers)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        if right.split()[0] == "cgroup2":
            out.append(left.split()[4])
    return out


def podman(*args, check=True, timeout=120) -> subprocess.CompletedProcess:
    """podman, seeing cgroup v2 at /sys/fs/cgroup. On a hybrid host crun
    refuses cgroup v1 beside a v2 that has a controller, so each call runs
    in a mount namespace of its own where the v2 mount is /sys/fs/cgroup:
    the containers' cgroups are then v2 cgroups, the ones tcpcong sees."""
    cmd = ["podman", *args]
    mounts = cgroup2_mounts()
    assert mounts, "no cgroup v2 mounted"
    if "/sys/fs/cgroup" not in mounts:
        cmd = ["unshare", "-m", "sh", "-c",
               'mount --make-rprivate / && mount --bind "$0" /sys/fs/cgroup && exec "$@"', mounts[0], *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"podman {' '.join(args)}: {p.stderr.strip()}"
    return p


def make_image(tmp: Path):
    """An image of iperf3 and the libraries it links, from this host."""
    root = tmp / "rootfs"
    exe = shutil.which("iperf3")
    libs = re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", exe], capture_output=True, text=True,
                                                     check=True).stdout)
    for f in [exe, *libs]:
        dst = root / f.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst)  # follows links: the files themselves
    (root / "tmp").mkdir()
    tar = tmp / "rootfs.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
    podman("import", "-q", str(tar), TAG)


def samples(text: str, metric: str) -> dict[tuple, float]:
    """A metric's samples by their labels (sorted (name, value) pairs)."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(re.escape(metric) + r"(?:\{(.*)\})? (\S+)", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or "")))
            out[labels] = float(m.group(2))
    return out


def tcpcong(*args) -> str:
    p = subprocess.run([str(binary()), *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, f"tcpcong {' '.join(map(str, args))}: {p.stderr}"
    return p.stdout


def json_lines(*args) -> list[dict]:
    return [json.loads(line) for line in tcpcong(*args).splitlines()]


class Container:
    """A container started detached in the lab namespace, with what podman
    and /proc say of it while it runs."""

    def __init__(self, name: str, ns: str, *cmd: str):
        self.name = name
        podman("run", "-d", "--name", name, *RUN, "--network", f"ns:/run/netns/{ns}", TAG, *cmd)
        info = json.loads(podman("inspect", name).stdout)[0]
        self.id = info["Id"]
        pid = info["State"]["Pid"]
        # Its process's cgroup v2 (the "0::" line), and that cgroup's id:
        # the inode of its folder, as the kernel's cgroup ids are.
        line = next(l for l in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if l.startswith("0::"))
        self.cgroup_path = line[3:]
        self.cgroup = os.stat(cgroup2_mounts()[0] + self.cgroup_path).st_ino

    def wait(self) -> int:
        return int(podman("wait", self.name, timeout=60).stdout.strip())


@pytest.fixture
def containers(tmp_path):
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("needs root (BPF, namespaces, podman)")
    assert shutil.which("podman"), "podman is not installed (make deps installs it)"
    pid = os.getpid()
    ctl, traced = f"tc-ctl-{pid}", f"tc-pods-{pid}"
    names = [f"tcpcong-server-{pid}", f"tcpcong-client-{pid}"]
    out = tmp_path / "run.parquet"
    procs = []
    lab("up", ctl)
    lab("up", traced, "--loss", "2", "--port", str(PORT))
    try:
        make_image(tmp_path)
        # nsenter: `ip netns exec` would give serve a /sys without cgroups.
        serve = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ctl}", str(binary()), "serve", "--listen", "127.0.0.1:9464",
             "--netns", f"/var/run/netns/{traced}", "-o", str(out), "--by", "container"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(serve)
        # Its HTTP endpoint answers from the start; the banner says the
        # capture runs.
        banner = serve.stderr.readline()
        assert banner.startswith("Serving"), banner + serve.stderr.read()
        wait_for("serve to answer", lambda: "# EOF" in get(ctl, "http://127.0.0.1:9464/metrics"))
        # Beside it, a capture that keeps the client container's flows only.
        kept = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{ctl}", str(binary()), "record", "--netns", f"/var/run/netns/{traced}",
             "--container", names[1], "-o", str(tmp_path / "client.parquet")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(kept)
        banner = kept.stderr.readline()
        assert banner.startswith("Recording"), banner + kept.stderr.read()
        yield ctl, traced, names, out, serve, kept
    finally:
        stop(procs)
        podman("rm", "-f", "-i", *names, check=False)
        podman("rmi", "-f", "-i", TAG, check=False)
        lab("down", ctl, check=False)
        lab("down", traced, check=False)


def listening(ns: str) -> bool:
    p = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{PORT}"],
                       capture_output=True, text=True, timeout=10)
    return "LISTEN" in p.stdout


def test_flows_of_real_podman_containers_carry_their_names_everywhere(containers):
    ctl, traced, (srv_name, cli_name), out, serve, kept_capture = containers
    server = Container(srv_name, traced, "/usr/bin/iperf3", "-s", "-1", "-p", str(PORT))
    wait_for("the server container to listen", lambda: listening(traced))
    client = Container(cli_name, traced, "/usr/bin/iperf3", "-c", "127.0.0.1", "-p", str(PORT),
                       "-t", "2", "-P", "2", "-C", "cubic")
    assert client.wait() == 0 and server.wait() == 0, podman("logs", cli_name).stdout
    assert server.cgroup != client.cgroup, (server.cgroup_path, client.cgroup_path)
    print(f"server {server.id[:12]} in {server.cgroup_path} ({server.cgroup}), "
          f"client {client.id[:12]} in {client.cgroup_path} ({client.cgroup})")

    # Every socket of theirs closed in the kernel (a FIN lost to the loss
    # rule is resent after the transfer's end). Then serve: once every flow
    # has closed and the counters stood still for over two of its 1 s
    # intervals.
    p = lab("settle", traced, "--port", str(PORT), check=False)
    assert p.returncode == 0, p.stderr
    last = [None, time.monotonic()]
    open_flows = {}

    def settled():
        text = get(ctl, "http://127.0.0.1:9464/metrics")
        flows = samples(text, "tcpcong_flows")
        open_flows.update(now={k: v for k, v in flows.items() if v})
        seconds = samples(text, "tcpcong_state_seconds_total")
        if seconds != last[0]:
            last[:] = [seconds, time.monotonic()]
        return sum(flows.values()) == 0 and seconds and time.monotonic() - last[1] > 2.5

    def seen():
        sockets = subprocess.run(["ip", "netns", "exec", traced, "ss", "-Htan"], capture_output=True, text=True).stdout
        return f"; serve's open flows: {open_flows.get('now')}; the namespace's sockets:\n{sockets}"
    wait_for("serve's counters to settle", settled, seen=seen)
    scraped = last[0]
    serve.send_signal(signal.SIGTERM)
    _, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err
    kept_capture.send_signal(signal.SIGINT)
    _, err = kept_capture.communicate(timeout=60)
    assert kept_capture.returncode == 0, err

    # The file names both containers, as podman does.
    meta = json.loads(pq.read_schema(out).metadata[b"tcpcong"])
    assert meta["containers"] == {
        str(c.cgroup): {"runtime": "podman", "id": c.id, "name": c.name} for c in (server, client)
    }, meta["containers"]

    # Every row names the container whose cgroup it carries, and that is
    # the one its ports say: the client's sockets connect to PORT, the
    # server's (its listener, the sockets it accepted) do not.
    by_cgroup = {c.cgroup: c for c in (server, client)}
    events = json_lines("events", out, "--format", "json")
    assert events
    flows_of: dict[str, set] = {server.name: set(), client.name: set()}
    for e in events:
        c = by_cgroup.get(e["cgroup"])
        assert c is not None, f"a flow of neither container: {e}"
        assert (e["container"], e["container_id"], e["pod"], e["k8s_namespace"]) == (c.name, c.id, "", ""), e
        assert e["cgroup_path"] == c.cgroup_path, e
        assert (c is client) == (e["dport"] == PORT), e
        flows_of[c.name].add(e["flow"])
    assert all(flows_of.values()), flows_of
    # The capture that kept the client's flows has those, and names only
    # its cgroup.
    client_file = out.parent / "client.parquet"
    assert {e["flow"] for e in json_lines("events", client_file, "--format", "json")} == flows_of[client.name]
    client_meta = json.loads(pq.read_schema(client_file).metadata[b"tcpcong"])
    assert client_meta["filters"]["containers"] == [{"container": client.name}]
    assert client_meta["containers"] == {str(client.cgroup): meta["containers"][str(client.cgroup)]}
    for c in (server, client):
        kept = {e["flow"] for e in json_lines("events", out, "--format", "json", "--container", c.name)}
        assert kept == flows_of[c.name]
        by_id = {e["flow"] for e in json_lines("events", out, "--format", "json", "--container", c.id[:12])}
        assert by_id == flows_of[c.name]

    # analyze: every row labelled, and the groups are the containers.
    rows = json_lines("analyze", out, "--all", "--format", "json")
    for r in rows:
        assert r["flow"] in flows_of[r["container"]], r
    assert sum(r["recovery_ns"] + r["loss_ns"] for r in rows) > 0, "real congestion"
    groups = {g["key"]: g["flows"] for g in json_lines("analyze", out, "--all", "--by", "container",
                                                       "--format", "json")}
    assert groups == {name: sum(r["container"] == name for r in rows) for name in flows_of}, groups
    print(tcpcong("analyze", out, "--all", "--by", "container"))

    # The Python package's tables are analyze's rows, labels and all, from
    # the file and from its rows read with pyarrow (metadata and all).
    import tcpcong as package
    labels = ["flow", "container", "container_id", "pod", "k8s_namespace"]
    want = sorted(tuple(r[k] for k in labels) for r in rows)
    for data in (str(out), pq.read_table(out)):
        got = package.durations(data, all=True).select(labels).to_pylist()
        assert sorted(tuple(r.values()) for r in got) == want

    # serve labelled its seconds by container, as analyze's windows of
    # its recording sum them (serve's intervals are 1 s).
    windowed: dict[str, float] = {}
    for g in json_lines("analyze", out, "--all", "--by", "container", "1", "--format", "json"):
        windowed[g["key"]] = windowed.get(g["key"], 0) + sum(g[f"{s}_ns"] for s in STATES) / 1e9
    served: dict[str, float] = {}
    for labels, v in scraped.items():
        key = dict(labels)["container"]
        served[key] = served.get(key, 0) + v
    assert served.keys() == windowed.keys() == flows_of.keys(), (served, windowed)
    for k, v in windowed.items():
        assert abs(served[k] - v) < 1e-6, (k, served, windowed)

    # The report's top flows name their containers.
    page = out.with_suffix(".html")
    tcpcong("report", out, "-o", page)
    html = page.read_text()
    shown = re.findall(r'<tr data-flow="(\d+)">(.*?)</tr>', html, re.S)
    assert shown, "no top flows"
    for flow, cells in shown:
        name = re.findall(r'<td data-v="([^"]*)">', cells)[-1]
        assert int(flow) in flows_of[name], (flow, name)
