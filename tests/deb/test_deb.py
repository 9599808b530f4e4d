"""The Debian package (`make deb`), installed on this machine.

What this test proves:

* `dpkg -i` installs the binary (stripped of its debug info, libelf and
  zlib linked in, glibc 2.34 the newest it asks for, and it runs), the
  README and the schemas as its docs,
  a man page per command, the bash, zsh and fish completions, the unit and
  /etc/default/tcpcong (a conffile), and creates the tcpcong user and
  /var/lib/tcpcong; `systemd-analyze verify` accepts the unit.
* The unit's ExecStart, run as systemd would run it (systemd is not PID 1
  here, nor in CI): the environment from its EnvironmentFile (with the
  rotation shortened to 2 s there), its User and Group, its ambient and
  bounding capabilities and NoNewPrivileges (setpriv), its LimitMEMLOCK,
  and the sandbox options unshare can rebuild (ProtectSystem=strict with
  StateDirectory and ReadWritePaths writable, ProtectHome, PrivateTmp,
  PrivateNetwork, and tracefs as sys-kernel-tracing.mount provides it); the
  others (the system call filter, PrivateDevices, ProtectKernel*, ...) only
  systemd applies, and the unit's comments say why they fit. The process
  holds exactly the unit's capabilities, not root's. It records congestion
  in a private lossy namespace and names its sockets' owners: connected and
  accepted while it runs, and both ends of a connection older than it
  (/proc/PID/fd). SIGTERM, systemd's stop, leaves only complete files in
  /var/lib/tcpcong, owned by the user, each with its footer metadata and
  read by analyze.
* `dpkg --purge` removes every installed file, the recordings, the user and
  its group.

It needs root; without root it is skipped, unless CI=true, where anything
missing fails it. It builds the package first (`make deb`, so a release
build), or takes the one TCPCONG_DEB names, and refuses to run where
tcpcong is already installed.
"""

import json
import os
import pwd
import re
import resource
import shlex
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "lab" / "lab.sh"
UNIT = Path("/lib/systemd/system/tcpcong.service")
DEFAULTS = Path("/etc/default/tcpcong")
STATE = Path("/var/lib/tcpcong")
TOOLS = ("make", "dpkg", "dpkg-deb", "readelf", "setpriv", "unshare", "systemd-analyze", "ip", "nft", "iperf3")
# What systemd gives a service with User= before its own settings.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(*cmd, check=True, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        pytest.fail(f"{shlex.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r


def installed() -> bool:
    r = run("dpkg-query", "-W", "-f=${db:Status-Status}", "tcpcong", check=False)
    return r.returncode == 0 and r.stdout not in ("", "not-installed")


def exists_user(name: str, db: str = "passwd") -> bool:
    return run("getent", db, name, check=False).returncode == 0


@pytest.fixture(scope="module")
def deb() -> Path:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the package test needs root (CI=true)")
        pytest.skip("the package test needs root")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    assert not missing, f"missing {missing} (make deps installs them)"
    assert not installed() and not exists_user("tcpcong") and not STATE.exists(), (
        "tcpcong is installed here (or its user or /var/lib/tcpcong is left): "
        "this test installs and purges the package; `dpkg --purge tcpcong` first")
    if given := os.environ.get("TCPCONG_DEB"):
        return Path(given).resolve()
    # Under `make test` the environment names make's jobserver, whose
    # descriptors a subprocess does not inherit: a make started from here
    # would hand cargo (and libbpf's own make) a jobserver that is gone.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    run("make", "--no-print-directory", "deb", cwd=REPO, env=env)
    version = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    arch = run("dpkg", "--print-architecture").stdout.strip()
    path = REPO / "target" / "debian" / f"tcpcong_{version}_{arch}.deb"
    assert path.is_file(), f"make deb did not write {path}"
    return path


@pytest.fixture
def package(deb):
    """Installed for the test, purged after it whatever happens."""
    try:
        run("dpkg", "-i", deb)
        yield deb
    finally:
        if installed():
            run("dpkg", "--purge", "tcpcong", check=False)


@pytest.fixture
def lab_ns():
    ns = f"tc-deb-{os.getpid()}"
    try:
        run(LAB, "up", ns, "--loss", "2")
        yield ns
    finally:
        run(LAB, "down", ns, check=False)


def unit_options(path: Path) -> dict[str, list[str]]:
    """Every Key=value of a unit file, in order (keys may repeat)."""
    opts: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        assert not line.endswith("\\"), "continuation lines are not parsed here"
        key, _, value = line.partition("=")
        opts.setdefault(key.strip(), []).append(value.strip())
    return opts


def one(opts, key, default=None):
    values = opts.get(key, [default])
    assert len(values) == 1, f"{key}= is set {len(values)} times"
    return values[0]


def environment_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def exec_argv(line: str, env: dict[str, str]) -> list[str]:
    """systemd's expansion: ${VAR} is one argument (also inside a word),
    $VAR alone as a word is split at whitespace into zero or more."""
    assert line[:1] not in "-@+!:", "ExecStart prefixes are not emulated"
    argv = []
    for word in shlex.split(line):
        if m := re.fullmatch(r"\$(\w+)", word):
            argv += env.get(m[1], "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m[1], ""), word))
    return argv


def cap_numbers() -> dict[str, int]:
    """CAP_NAME -> number: setpriv lists the kernel's names in number order."""
    names = run("setpriv", "--list-caps").stdout.split()
    caps = {f"CAP_{n.upper()}": i for i, n in enumerate(names)}
    assert caps["CAP_BPF"] == 39 and caps["CAP_PERFMON"] == 38, "setpriv lists capabilities in another order"
    return caps


def setpriv_caps(names: list[str]) -> str:
    return ",".join(["-all"] + ["+" + n.lower().removeprefix("cap_") for n in names])


def sandbox_script(opts) -> str:
    """Shell lines that rebuild, in a fresh mount namespace, the sandbox
    options of the unit that can be rebuilt without systemd."""
    writable = [str(Path("/var/lib") / d) for d in " ".join(opts.get("StateDirectory", [])).split()]
    writable += " ".join(opts.get("ReadWritePaths", [])).split()
    lines = ["set -e"]
    if "sys-kernel-tracing.mount" in " ".join(opts.get("Wants", [])):
        lines.append("[ -d /sys/kernel/tracing/events ] || mount -t tracefs tracefs /sys/kernel/tracing")
    if one(opts, "ProtectSystem", "no") == "strict":
        lines += [f"mount --bind {shlex.quote(p)} {shlex.quote(p)}" for p in writable]
        keep = " | ".join(["/proc | /proc/* | /sys | /sys/* | /dev | /dev/*"] + [shlex.quote(p) for p in writable])
        lines.append("for m in $(awk '{ print $5 }' /proc/self/mountinfo); do "
                     f"case $m in {keep}) ;; *) mount -o remount,bind,ro \"$m\" ;; esac; done")
    if one(opts, "PrivateTmp", "no") == "yes":
        lines += ["mount -t tmpfs -o mode=1777 tmpfs /tmp", "mount -t tmpfs -o mode=1777 tmpfs /var/tmp"]
    if one(opts, "ProtectHome", "no") == "yes":
        lines.append("for d in /home /root /run/user; do [ ! -d $d ] || mount -t tmpfs -o mode=000 tmpfs $d; done")
    lines.append('exec "$@"')
    return "\n".join(lines)


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def wait_for(what, cond, timeout_s=20.0):
    end = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_install_run_purge(package, lab_ns, tmp_path):
    # Installed: every part where Debian looks for it.
    listed = run("dpkg", "-L", "tcpcong").stdout.split("\n")
    files = [Path(p) for p in listed if p and Path(p).is_file()]
    version = run("/usr/bin/tcpcong", "--version").stdout.split()[-1]
    assert version == run("dpkg-query", "-W", "-f=${Version}", "tcpcong").stdout
    sections = run("readelf", "-S", "-W", "/usr/bin/tcpcong").stdout
    assert ".debug_info" not in sections, "the packaged binary keeps its debug info"
    # One file to copy to another host: libbpf, libelf and zlib are linked
    # in, and it asks for no glibc newer than 2.34 (Debian 12, Ubuntu
    # 22.04, RHEL 9 and later have it).
    dynamic = run("readelf", "-d", "-W", "/usr/bin/tcpcong").stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic))
    assert needed <= {"libc.so.6", "libm.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2"}, needed
    symbols = run("objdump", "-T", "/usr/bin/tcpcong").stdout
    glibc = max(tuple(int(n) for n in v.split(".")) for v in re.findall(r"GLIBC_([0-9.]+)", symbols))
    assert glibc <= (2, 34), glibc
    depends = run("dpkg-query", "-W", "-f=${Depends}", "tcpcong").stdout
    assert "libelf" not in depends and "zlib" not in depends, depends
    for doc in ("README.md", "schemas/events-v1.md", "schemas/events-v1.json", "schemas/durations.sql"):
        assert Path("/usr/share/doc/tcpcong", doc) in files, f"{doc} is not in the package's docs"
    commands = ("record", "analyze", "events", "report", "doctor")
    for p in [Path("/usr/share/man/man1/tcpcong.1.gz")] + [Path(f"/usr/share/man/man1/tcpcong-{c}.1.gz") for c in commands]:
        assert p in files, f"{p} is not in the package"
    for p in ("/usr/share/bash-completion/completions/tcpcong", "/usr/share/zsh/vendor-completions/_tcpcong",
              "/usr/share/fish/vendor_completions.d/tcpcong.fish"):
        assert Path(p) in files and "record" in Path(p).read_text(), p
    assert UNIT in files and DEFAULTS in files
    conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "tcpcong").stdout
    assert str(DEFAULTS) in conffiles
    verify = run("systemd-analyze", "verify", "--man=no", UNIT, check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr

    opts = unit_options(UNIT)
    user = pwd.getpwnam(one(opts, "User"))
    group = one(opts, "Group", user.pw_name)
    assert STATE.is_dir() and STATE.stat().st_uid == user.pw_uid

    # The service as systemd would start it, the rotation shortened.
    env_path = Path(one(opts, "EnvironmentFile").removeprefix("-"))
    assert env_path == DEFAULTS
    text = DEFAULTS.read_text()
    assert re.search(r"^TCPCONG_ROTATE_SECONDS=", text, re.M)
    DEFAULTS.write_text(re.sub(r"^TCPCONG_ROTATE_SECONDS=.*$", "TCPCONG_ROTATE_SECONDS=2", text, flags=re.M))
    env = {"PATH": SERVICE_PATH, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name,
           "SHELL": user.pw_shell, **environment_file(DEFAULTS)}
    argv = exec_argv(one(opts, "ExecStart"), env)
    assert argv[:2] == ["/usr/bin/tcpcong", "record"] and "2" in argv, argv

    ambient = " ".join(opts.get("AmbientCapabilities", [])).split()
    bounding = " ".join(opts.get("CapabilityBoundingSet", [])).split()
    assert ambient and bounding, "the unit should name its capabilities"
    nnp = one(opts, "NoNewPrivileges", "no") == "yes"
    setpriv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={group}", "--init-groups",
               f"--inh-caps={setpriv_caps(ambient)}", f"--ambient-caps={setpriv_caps(ambient)}",
               f"--bounding-set={setpriv_caps(bounding)}"] + (["--no-new-privs"] if nnp else [])
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if one(opts, "PrivateNetwork", "no") == "yes":
        unshare.append("--net")

    unlimited_memlock = one(opts, "LimitMEMLOCK", None) == "infinity"

    def limits():
        # Where even root may not raise it (a container without
        # CAP_SYS_RESOURCE) it stays: from Linux 5.11 BPF is not charged to it.
        if unlimited_memlock:
            try:
                resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            except (OSError, ValueError):
                pass

    # Sockets older than the service, whose owners only /proc/PID/fd names.
    older = subprocess.Popen([LAB, "traffic", lab_ns, "4"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    proc = None
    log = tmp_path / "journal"
    try:
        wait_for("the older traffic", lambda: run(
            "ip", "netns", "exec", lab_ns, "ss", "-Htn", "state", "established", "dport = :5201").stdout.strip())
        with open(log, "w") as out:
            proc = subprocess.Popen(unshare + ["sh", "-c", sandbox_script(opts), "sh"] + setpriv + argv,
                                    env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    preexec_fn=limits)
        # Recording once its first file is open (it opens it after attaching).
        wait_for("the first .inprogress file",
                 lambda: proc.poll() is not None or any(STATE.glob("host=*/date=*/.*.inprogress")))
        assert proc.poll() is None, f"the service exited {proc.returncode}:\n{log.read_text()}"
        st = status(proc.pid)
        assert Path(f"/proc/{proc.pid}/exe").resolve() == Path("/usr/bin/tcpcong")
        caps = cap_numbers()
        mask = lambda names: f"{sum(1 << caps[n] for n in names):016x}"  # noqa: E731
        assert st["Uid"].split() == [str(user.pw_uid)] * 4, st["Uid"]
        assert st["CapEff"] == st["CapPrm"] == st["CapAmb"] == mask(ambient), st
        assert st["CapBnd"] == mask(bounding), st
        assert st["NoNewPrivs"] == ("1" if nnp else "0")

        assert older.wait(timeout=60) == 0, older.stderr.read()
        # New sockets: connected (the lifecycle hook names the owner) and
        # accepted (the accept tracepoints do).
        run(LAB, "traffic", lab_ns, "3")
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if older.poll() is None:
            os.killpg(older.pid, signal.SIGKILL)
            older.wait()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    journal = log.read_text()
    assert rc == 0, f"the service exited {rc} after SIGTERM:\n{journal}"
    assert "wrote" in journal, journal

    # Only complete files, each with its footer, read by analyze.
    recordings = sorted(STATE.glob("host=*/date=*/tcpcong-*.parquet"))
    assert len(recordings) >= 2, f"a 2 s rotation over 7 s wrote {recordings}:\n{journal}"
    assert not [p for p in STATE.rglob(".*")], "an unfinished file was left"
    netns = int(run(LAB, "inode", lab_ns).stdout)
    congestion = 0
    flows: dict[int, dict] = {}
    for f in recordings:
        assert f.stat().st_uid == user.pw_uid and f.stat().st_mode & 0o777 == 0o600, f
        meta = json.loads(pq.read_schema(f).metadata[b"tcpcong"])
        # Every row is an event but the two that open and close the capture.
        kinds = pq.read_table(f, columns=["kind"]).column("kind").to_pylist()
        assert kinds[0] == kinds[-1] == "capture" and kinds.count("capture") == 2, f
        assert meta["events"] == len(kinds) - 2, f
        run("/usr/bin/tcpcong", "analyze", f, "--all", "--format", "json")
        events = run("/usr/bin/tcpcong", "events", f, "--format", "json").stdout.splitlines()
        for e in map(json.loads, events):
            if e["netns"] != netns:
                continue
            flow = flows.setdefault(e["flow"], {"born": False, "server": False, "peer": False, "owned": False})
            flow["born"] |= e["kind"] == "tcp_state" and e["new_state"] in ("syn_sent", "syn_recv")
            flow["server"] |= e["sport"] == 5201
            flow["peer"] |= e["dport"] != 0
            flow["owned"] |= e["pid"] != 0
            congestion += e["kind"] == "ca_state" and e["new_state"] in ("disorder", "recovery", "loss")
    assert congestion > 0, "no congestion transitions of the lab namespace were recorded"
    # Owners found with the unit's capabilities and tracefs: for sockets
    # connected (lifecycle hook) and accepted (accept tracepoints) while it
    # ran, and for both ends of the older ones (/proc/PID/fd).
    owned = {(f["born"], f["server"]) for f in flows.values() if f["peer"] and f["owned"]}
    names = {(True, False): "connected", (True, True): "accepted", (False, False): "older client",
             (False, True): "older server"}
    assert owned == set(names), (f"no owner for the {[n for k, n in names.items() if k not in owned]} "
                                 f"sockets: {flows}\n{journal}")
    run("/usr/bin/tcpcong", "analyze", f"{STATE}/")

    # Purged: nothing left.
    run("dpkg", "--purge", "tcpcong")
    assert not installed()
    assert [p for p in files + [STATE, DEFAULTS] if p.exists()] == []
    assert not exists_user("tcpcong") and not exists_user("tcpcong", "group")
