"""tcpcong run as root against a hostile host: an unprivileged user who
plants links and FIFOs in shared folders, processes that name themselves
to forge output, a metrics client that misbehaves, sizes and files that
claim too much. Each test is an attack tried as an attacker would, and what
must hold after it. The ones that record need root and BPF: in CI they
fail, never skip, without them.
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import FIXTURES, REPO, binary, fixture_meta, modernize, stop, wait_for

LAB = REPO / "lab" / "lab.sh"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
# A command that hangs (a FIFO read, a loop) is a failure, not a stuck CI.
HANG_S = 30
FIXTURE = FIXTURES / "ipv4-loss.parquet"


def root_or_ci():
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("needs root (BPF, namespaces, another user)")


def tcpcong(*args, timeout=HANG_S, **kw):
    return subprocess.run([str(binary()), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def as_nobody(*cmd):
    subprocess.run([*NOBODY, *map(str, cmd)], check=True, timeout=HANG_S)


def lab(*args, check=True):
    return subprocess.run(["bash", str(LAB), *map(str, args)], capture_output=True, text=True,
                          check=check, timeout=120)


@pytest.fixture
def scratch():
    """A folder of the test's own that every user can reach (pytest's own
    are private to root)."""
    root_or_ci()
    d = Path(tempfile.mkdtemp(prefix="tcpcong-hostile-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def shared(scratch):
    """A sticky, world-writable folder, as /tmp is."""
    d = scratch / "shared"
    d.mkdir()
    d.chmod(0o1777)
    return d


PLANT = r"""
import os, sys
from pathlib import Path
# The names a temporary file could get from the next pids: links to the
# victim, and (for some) FIFOs that would block the writer.
d, victim, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
last = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
for i, pid in enumerate(range(last + 1, last + 2000)):
    planted = d / f".{name}.{pid}.tmp"
    if i % 7 == 3:
        os.mkfifo(planted, 0o666)
    else:
        os.symlink(victim, planted)
"""


def plant_temporaries(folder: Path, victim: Path, name: str):
    subprocess.run([*NOBODY, "/usr/bin/python3", "-c", PLANT, str(folder), str(victim), name],
                   check=True, timeout=HANG_S)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.lstat().st_mode)


def one_line(stderr: str) -> str:
    lines = stderr.strip("\n").split("\n")
    assert len(lines) == 1, stderr
    return lines[0]


# 1. Files in shared folders ------------------------------------------------


@pytest.mark.parametrize("command", ["report", "analyze"])
def test_outputs_in_a_shared_folder_never_follow_planted_links_or_fifos(shared, command):
    victim = shared.parent / "victim"
    victim.write_text("root's own file\n")
    victim.chmod(0o644)
    out = shared / "out.bin"
    plant_temporaries(shared, victim, "out.bin")
    args = (["report", FIXTURE, "-o", out] if command == "report"
            else ["analyze", FIXTURE, "--format", "parquet", "-o", out])
    p = subprocess.run(["sh", "-c", 'umask 000; exec "$@"', "sh", str(binary()), *map(str, args)],
                       capture_output=True, text=True, timeout=HANG_S)
    assert p.returncode == 0, p.stderr
    assert victim.read_text() == "root's own file\n"
    assert out.lstat().st_uid == 0 and stat.S_ISREG(out.lstat().st_mode)
    # What a recording holds, its renderings hold: as private as it is.
    assert mode(out) == 0o600, oct(mode(out))
    assert out.stat().st_size > 0
    leftovers = [p.name for p in shared.iterdir() if p.name.endswith(".tmp") and p.lstat().st_uid == 0]
    assert not leftovers, leftovers


@pytest.mark.parametrize("command", ["report", "analyze", "episodes"])
@pytest.mark.parametrize("planted", ["file", "link", "dangling link", "fifo"])
def test_an_output_someone_planted_is_refused_and_replaced_only_with_force(shared, command, planted):
    victim = shared.parent / "victim"
    victim.write_text("root's own file\n")
    out = shared / "out.bin"
    plant = {"file": ["sh", "-c", 'echo theirs > "$0"', out], "link": ["ln", "-s", victim, out],
             "dangling link": ["ln", "-s", shared / "nothing", out], "fifo": ["mkfifo", "-m", "666", out]}
    as_nobody(*plant[planted])
    before = out.lstat()
    args = {"report": ["report", FIXTURE, "-o", out],
            "analyze": ["analyze", FIXTURE, "--format", "parquet", "-o", out],
            "episodes": ["analyze", FIXTURE, "--episodes", "--format", "parquet", "-o", out]}[command]
    p = tcpcong(*args)
    assert p.returncode == 1, p.stderr
    assert one_line(p.stderr) == f"tcpcong: {out} already exists: pass --force to overwrite it"
    # Untouched: the planted thing and what a link points to.
    after = out.lstat()
    assert (after.st_ino, after.st_uid, after.st_mode) == (before.st_ino, before.st_uid, before.st_mode)
    assert victim.read_text() == "root's own file\n"
    # --force replaces the name, never through it (and a FIFO does not block).
    p = subprocess.run([str(binary()), *map(str, args), "--force"], capture_output=True, text=True, timeout=HANG_S)
    assert p.returncode == 0, p.stderr
    assert out.lstat().st_uid == 0 and stat.S_ISREG(out.lstat().st_mode) and mode(out) == 0o600
    assert out.stat().st_size > 0
    assert victim.read_text() == "root's own file\n"


@pytest.mark.parametrize("command", ["report", "analyze", "episodes"])
def test_a_recording_read_is_never_the_output_even_with_force(tmp_path, command):
    rec = tmp_path / "run.parquet"
    shutil.copy(FIXTURE, rec)
    kept = rec.read_bytes()
    args = {"report": ["report", rec, "-o", rec],
            "analyze": ["analyze", tmp_path, "--format", "parquet", "-o", rec],
            "episodes": ["analyze", rec, "--episodes", "--format", "parquet", "-o", rec]}[command]
    for force in ([], ["--force"]):
        p = tcpcong(*args, *force)
        assert p.returncode == (2 if force else 1), p.stderr
        want = (f"tcpcong: -o {rec}: that is a recording this command reads; write elsewhere" if force
                else f"tcpcong: {rec} already exists: pass --force to overwrite it")
        assert one_line(p.stderr) == want
        assert rec.read_bytes() == kept


def test_readers_refuse_a_fifo_without_hanging(shared):
    fifo = shared / "x.parquet"
    as_nobody("mkfifo", "-m", "666", fifo)
    for args in (["analyze", fifo], ["events", fifo], ["report", fifo, "-o", shared.parent / "r.html"]):
        p = tcpcong(*args)
        assert p.returncode == 1, (args, p.stderr)
        assert "not a regular file" in one_line(p.stderr), p.stderr


def test_a_fifo_in_a_scanned_folder_is_passed_over(shared):
    (shared / "run.parquet").write_bytes(FIXTURE.read_bytes())
    as_nobody("mkfifo", "-m", "666", shared / ".planted.parquet.inprogress")
    as_nobody("mkfifo", "-m", "666", shared / "fake.parquet")
    # A link to the folder itself would send a walk round for ever.
    as_nobody("ln", "-s", ".", shared / "loop")
    p = tcpcong("analyze", shared)
    # The FIFO named like a recording is refused by name, not hung on.
    assert p.returncode == 1 and "fake.parquet" in p.stderr and "not a regular file" in p.stderr, p.stderr
    (shared / "fake.parquet").unlink()
    p = tcpcong("analyze", shared)
    assert p.returncode == 0, p.stderr
    assert "ignoring" in p.stderr and ".planted.parquet.inprogress" in p.stderr
    # A link to a recording that has gone is passed over too, and said.
    as_nobody("ln", "-s", shared / "gone.parquet", shared / "old.parquet")
    p = tcpcong("analyze", shared)
    assert p.returncode == 0, p.stderr
    assert f"tcpcong: ignoring {shared / 'old.parquet'}: a link to nothing: what it named is gone" in p.stderr.splitlines()


def test_a_folder_this_user_may_not_read_is_passed_over(scratch):
    # Another user's private folder inside the one named does not end the
    # reading of the rest (nor, under /proc, one that goes meanwhile).
    runs = scratch / "runs"
    runs.mkdir(mode=0o755)
    rec = runs / "run.parquet"
    rec.write_bytes(FIXTURE.read_bytes())
    rec.chmod(0o644)
    private = runs / "private"
    private.mkdir(mode=0o700)
    (private / "theirs.parquet").write_bytes(FIXTURE.read_bytes())
    p = subprocess.run([*NOBODY, str(binary()), "analyze", str(runs), "--format", "json"],
                       capture_output=True, text=True, timeout=HANG_S)
    assert p.returncode == 0, p.stderr
    assert f"tcpcong: ignoring {private}: a folder this user may not read" in p.stderr.splitlines()
    alone = tcpcong("analyze", rec, "--format", "json")
    assert p.stdout == alone.stdout and alone.stdout
    # Nothing else to read: the reason is the error.
    rec.unlink()
    p = subprocess.run([*NOBODY, str(binary()), "analyze", str(runs)],
                       capture_output=True, text=True, timeout=HANG_S)
    assert p.returncode == 1 and one_line(p.stderr).endswith(f"{private}: a folder this user may not read"), p.stderr
    # What one folder passed over does not hide that another holds nothing.
    empty = scratch / "empty"
    empty.mkdir(mode=0o755)
    p = subprocess.run([*NOBODY, str(binary()), "analyze", str(runs), str(empty)],
                       capture_output=True, text=True, timeout=HANG_S)
    assert p.returncode == 1 and "no recordings (*.parquet) in this folder" in p.stderr, p.stderr


def test_record_refuses_a_planted_in_progress_fifo_without_hanging(shared):
    out = shared / "rec.parquet"
    as_nobody("mkfifo", "-m", "666", shared / ".rec.parquet.inprogress")
    p = tcpcong("record", "-o", out, "--duration", "0.2", "-L", "1")
    assert p.returncode == 1 and "left over" in p.stderr, p.stderr
    p = tcpcong("record", "-o", out, "--duration", "0.2", "-L", "1", "--force")
    assert p.returncode == 0, p.stderr
    assert stat.S_ISREG(out.lstat().st_mode) and mode(out) == 0o600


def test_record_never_writes_through_a_planted_in_progress_link(shared):
    victim = shared.parent / "victim"
    victim.write_text("keep\n")
    out = shared / "rec.parquet"
    as_nobody("ln", "-s", victim, shared / ".rec.parquet.inprogress")
    for force in ([], ["--force"]):
        tcpcong("record", "-o", out, "--duration", "0.2", "-L", "1", *force)
        assert victim.read_text() == "keep\n"


def test_a_series_is_private_and_never_rooted_in_a_link(shared, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    as_nobody("ln", "-s", elsewhere, shared / "series")
    p = tcpcong("record", "-o", f"{shared / 'series'}/", "--duration", "0.2", "-L", "1")
    assert p.returncode == 1 and "symbolic link" in p.stderr, p.stderr
    assert not any(elsewhere.iterdir())
    # A root any user may change: they could move the recordings away.
    as_nobody("mkdir", "-m", "777", shared / "open")
    p = tcpcong("record", "-o", f"{shared / 'open'}/", "--duration", "0.2", "-L", "1")
    assert p.returncode == 1 and "writable by every user" in p.stderr, p.stderr
    # A level of the series that someone else made ahead, open to them.
    theirs = shared / "theirs"
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())
    as_nobody("mkdir", "-p", "-m", "777", theirs / f"host={host}")
    p = tcpcong("record", "-o", f"{theirs}/", "--duration", "0.2", "-L", "1")
    assert p.returncode == 1 and "made by someone else" in p.stderr.strip().splitlines()[-1], p.stderr
    assert not list((theirs / f"host={host}").iterdir())
    root = tmp_path / "mine"
    p = subprocess.run(["sh", "-c", 'umask 000; exec "$@"', "sh", str(binary()), "record", "-o",
                        f"{root}/", "--duration", "0.2", "-L", "1"],
                       capture_output=True, text=True, timeout=HANG_S)
    assert p.returncode == 0, p.stderr
    found = list(root.rglob("*"))
    assert any(f.suffix == ".parquet" for f in found), found
    for f in [root, *found]:
        want = 0o700 if f.is_dir() else 0o600
        assert mode(f) == want, (f, oct(mode(f)))


def record_meanwhile(tmp_path, act):
    """Records into tmp_path/rec.parquet for 2 s, doing `act` once the
    in-progress file is there; returns the exit code and stderr."""
    tmp = tmp_path / ".rec.parquet.inprogress"
    rec = subprocess.Popen([str(binary()), "record", "-o", str(tmp_path / "rec.parquet"), "--duration", "2",
                            "-L", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for("the in-progress file", tmp.exists, HANG_S)
        act()
        _, err = rec.communicate(timeout=HANG_S)
    finally:
        if rec.poll() is None:
            rec.kill()
    return rec.returncode, err


def test_an_unfinished_file_moved_away_during_capture_leaves_the_recording_whole(tmp_path):
    root_or_ci()
    moved = tmp_path / "moved.arrows"
    code, err = record_meanwhile(tmp_path, lambda: (tmp_path / ".rec.parquet.inprogress").rename(moved))
    # The recording is written apart from the unfinished file (which holds
    # a copy of its rows for readers while it runs): whole, under its name.
    assert code == 0, err
    assert tcpcong("analyze", tmp_path / "rec.parquet").returncode == 0
    # It is Arrow's IPC stream: pyarrow reads it as it is.
    assert pa.ipc.open_stream(moved).read_all().num_rows >= 1


def test_a_target_created_during_capture_is_not_replaced(tmp_path):
    root_or_ci()
    out, tmp = tmp_path / "rec.parquet", tmp_path / ".rec.parquet.inprogress"
    code, err = record_meanwhile(tmp_path, lambda: out.write_text("theirs\n"))
    assert code == 1, err
    assert out.read_text() == "theirs\n"
    kept = re.search(r"the complete recording is (\S+): rename it", err)
    assert "created by someone else" in err and kept, err
    assert Path(kept.group(1)).parent == tmp_path and Path(kept.group(1)).name.startswith(".rec.parquet."), err
    assert tcpcong("analyze", kept.group(1)).returncode == 0
    assert not tmp.exists()


# 2. Names are attacker-controlled ------------------------------------------

# Each at most 15 bytes: the kernel's TASK_COMM_LEN.
FORGER = '"}1\nfake 7\n#'
TERMINAL = "\x1b]0;pwn\x07\x1b[2J"
FORMULA = "=HYPERLINK(1)"
MARKUP = "<b>x</b>&'"
# Shown right to left from the override on: reads as "iperfexe.gnp".
BIDI = "iperf\u202egnp.exe"

CLIENT = r"""
import ctypes, socket, sys, time
name = sys.argv[1].encode()
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME
s = socket.create_connection(("127.0.0.1", 5201))
end = time.monotonic() + float(sys.argv[2])
buf = b"x" * 65536
while time.monotonic() < end:
    s.sendall(buf)
s.close()
"""

SERVER = r"""
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 5201))
srv.listen(16)
print("listening", flush=True)
def drain(c):
    while c.recv(1 << 16):
        pass
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=drain, args=(c,), daemon=True).start()
"""


def http_get(ns: str, url: str, timeout=5) -> str:
    code = ("import sys, urllib.request; "
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])).read().decode())")
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, url, str(timeout)],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise OSError(p.stderr.strip())
    return p.stdout


@pytest.fixture
def served(tmp_path):
    """serve --by process in a namespace of its own, recording a lossy lab
    whose clients named themselves to attack each reader."""
    root_or_ci()
    ns, traced = f"tc-hm-{os.getpid()}", f"tc-ht-{os.getpid()}"
    out = tmp_path / "series"
    procs = []
    lab("up", ns)
    lab("up", traced, "--loss", "3")
    try:
        serve = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(binary()), "serve", "--listen", "127.0.0.1:9464",
             "--netns", f"/var/run/netns/{traced}", "--by", "process", "-o", f"{out}/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(serve)
        wait_for("serve to answer", lambda: "# EOF" in http_get(ns, "http://127.0.0.1:9464/metrics"))
        yield ns, traced, out, serve, procs
    finally:
        stop(procs)
        lab("down", ns, check=False)
        lab("down", traced, check=False)


def test_serve_on_port_0_says_the_port_it_got(tmp_path):
    root_or_ci()
    ns = f"tc-hp-{os.getpid()}"
    lab("up", ns)
    procs = []
    try:
        serve = subprocess.Popen(["ip", "netns", "exec", ns, str(binary()), "serve", "--listen", "127.0.0.1:0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(serve)
        banner = ""
        for _ in range(20):
            banner = serve.stderr.readline()
            if banner.startswith("Serving") or not banner:
                break
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/metrics", banner)
        assert m and m.group(1) != "0", banner
        assert http_get(ns, f"http://127.0.0.1:{m.group(1)}/metrics").endswith("# EOF\n")
    finally:
        stop(procs)
        lab("down", ns, check=False)


def test_process_names_cannot_forge_any_output(served, tmp_path):
    ns, traced, out, serve, procs = served
    server = subprocess.Popen(["ip", "netns", "exec", traced, sys.executable, "-c", SERVER],
                              stdout=subprocess.PIPE, text=True)
    procs.append(server)
    assert server.stdout.readline().strip() == "listening"
    clients = [subprocess.Popen(["ip", "netns", "exec", traced, sys.executable, "-c", CLIENT, name, "3"])
               for name in (FORGER, TERMINAL, FORMULA, MARKUP, BIDI)]
    for c in clients:
        assert c.wait(timeout=60) == 0

    wait_for("the named flows' series",
             lambda: f'process="{FORMULA}"' in http_get(ns, "http://127.0.0.1:9464/metrics"))
    text = http_get(ns, "http://127.0.0.1:9464/metrics")
    # Prometheus's own parser: the page is valid, and holds no forged series.
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert "error" not in (check.stdout + check.stderr).lower(), check.stdout + check.stderr
    assert not re.search(r"^fake", text, re.M), text
    assert 'process="\\"}1\\nfake 7\\n#"' in text, text
    server.send_signal(signal.SIGTERM)
    serve.send_signal(signal.SIGTERM)
    _, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err

    table = tcpcong("analyze", out, "--by", "process", "--all")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout, repr(table.stdout)
    assert "\\x1b]0;pwn\\x07\\x1b[2J" in table.stdout, table.stdout
    csv = tcpcong("analyze", out, "--by", "process", "--all", "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    keys = [line.split(",")[3] for line in csv.stdout.splitlines()[1:] if line.count(",") >= 12]
    assert "'=HYPERLINK(1)" in keys, csv.stdout
    assert not any(k.startswith(("=", "+", "-", "@")) for k in keys), keys
    per_flow = tcpcong("analyze", out, "--all", "--format", "csv")
    cells = [c for line in per_flow.stdout.splitlines() for c in line.split(",")]
    assert "'=HYPERLINK(1)" in cells and FORMULA not in cells, per_flow.stdout
    # Control and reordering characters are shown, not sent, in CSV too.
    for text in (csv.stdout, per_flow.stdout):
        assert not set(text) & {"\x1b", "\x07", "\u202e"}, repr(text)
    assert "\\x1b]0;pwn\\x07\\x1b[2J" in per_flow.stdout, per_flow.stdout
    assert "iperf\\u{202e}gnp.exe" in per_flow.stdout, per_flow.stdout
    assert "\u202e" not in table.stdout and "iperf\\u{202e}gnp.exe" in table.stdout, table.stdout
    page = tmp_path / "page.html"
    p = tcpcong("report", out, "-o", page)
    assert p.returncode == 0, p.stderr
    html = page.read_text()
    assert "<b>x</b>" not in html and "\x1b" not in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html, "the name is there, escaped"


# 3. One request must not take serve down -----------------------------------

ATTACK = r"""
import json, socket, sys, time, urllib.request
URL, HOST = "http://127.0.0.1:9464/metrics", ("127.0.0.1", 9464)
out = {}

def scrape(timeout=1.0):
    t = time.monotonic()
    body = urllib.request.urlopen(URL, timeout=timeout).read().decode()
    return body.endswith("# EOF\n"), time.monotonic() - t

def raw(data, read=True):
    s = socket.create_connection(HOST, timeout=5)
    s.sendall(data)
    if not read:
        return s
    got = b""
    try:
        while True:
            b = s.recv(4096)
            if not b:
                break
            got += b
    except OSError:
        pass
    s.close()
    return got.split(b"\r\n", 1)[0].decode()

out["huge_body"] = raw(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000\r\n\r\nabc")
out["delete"] = raw(b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
out["query"] = raw(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
out["huge_head"] = raw(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 100000 + b"\r\n\r\n")
# The documented limit, 8 KiB with the blank line, to the byte.
def head(n):
    start = b"GET /metrics HTTP/1.1\r\nX: "
    return start + b"a" * (n - len(start) - 4) + b"\r\n\r\n"
out["head_at_limit"] = raw(head(8192))
out["head_over_limit"] = raw(head(8193))
# Slow clients: many connections that never finish their request, one
# that trickles it, one that pipelines requests without reading.
idle = [raw(b"GET /metr", read=False) for _ in range(200)]
pipelined = raw(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2000, read=False)
out["during"] = [scrape() for _ in range(5)]
for s in idle:
    s.close()
pipelined.close()
out["after"] = [scrape() for _ in range(3)]
print(json.dumps(out))
"""


def run_script(ns: str, script: str):
    """`script` run by Python in `ns`: what it printed, as JSON."""
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", script],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_serve_keeps_answering_while_clients_misbehave(served):
    ns, traced, out, serve, procs = served
    r = run_script(ns, ATTACK)
    print("scrapes during and after the attack (whole, seconds):", r["during"], r["after"])
    assert r["huge_body"].startswith("HTTP/1.1 405"), r
    assert r["delete"].startswith("HTTP/1.1 405"), r
    assert r["query"].startswith("HTTP/1.1 200"), r
    assert r["huge_head"].startswith("HTTP/1.1 431"), r
    assert r["head_at_limit"].startswith("HTTP/1.1 200"), r
    assert r["head_over_limit"].startswith("HTTP/1.1 431"), r
    # Every scrape whole, each within the second a scraper would wait.
    for ok, seconds in r["during"] + r["after"]:
        assert ok and seconds < 1.0, r
    assert serve.poll() is None, "serve is still running"
    serve.send_signal(signal.SIGTERM)
    _, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err
    assert not list(out.rglob("*.inprogress"))


TRICKLE = r"""
import json, socket, time, urllib.request
URL, HOST = "http://127.0.0.1:9464/metrics", ("127.0.0.1", 9464)
# As many clients as serve has slots: each takes its answer, then keeps
# sending a byte now and then, which a closing connection still reads.
conns = []
for _ in range(64):
    s = socket.create_connection(HOST, timeout=5)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(1 << 16)
    conns.append(s)
scrapes, end = [], time.monotonic() + 6
while time.monotonic() < end:
    for s in conns:
        try:
            s.send(b"x")
        except OSError:
            pass
    t = time.monotonic()
    try:
        body = urllib.request.urlopen(URL, timeout=3).read().decode()
        scrapes.append([body.endswith("# EOF\n"), time.monotonic() - t])
    except Exception as e:
        scrapes.append([repr(e), time.monotonic() - t])
    time.sleep(0.2)
print(json.dumps(scrapes))
"""


def test_clients_trickling_after_their_answer_cannot_keep_scrapes_out(served):
    ns, traced, out, serve, procs = served
    scrapes = run_script(ns, TRICKLE)
    print("scrapes while 64 answered clients trickle bytes (whole, seconds):", scrapes)
    assert len(scrapes) >= 5, scrapes
    for ok, seconds in scrapes:
        assert ok is True and seconds < 1.0, scrapes
    assert serve.poll() is None, "serve is still running"


# 4. Sizes that never end ---------------------------------------------------


@pytest.mark.parametrize("size", ["1B", "10", "9KiB"])
def test_rotation_sizes_below_a_file_are_usage_errors(tmp_path, size):
    p = tcpcong("record", "-o", f"{tmp_path}/", "--rotate-size", size, "--duration", "1")
    assert p.returncode == 2, p.stderr
    assert "--rotate-size" in one_line(p.stderr)
    assert not any(tmp_path.iterdir())
    p = tcpcong("record", "-o", f"{tmp_path}/", "--max-total", size, "--duration", "1")
    assert p.returncode == 2 and "--max-total" in one_line(p.stderr)


def test_a_total_below_one_file_is_a_usage_error(tmp_path):
    # A series that could not keep one whole file would delete each as it
    # is finished, or exceed its total.
    p = tcpcong("record", "-o", f"{tmp_path}/", "--rotate-size", "1MB", "--max-total", "16KiB",
                "--duration", "1")
    assert p.returncode == 2, p.stderr
    assert "--max-total 16384 bytes is less than --rotate-size 1000000 bytes" in one_line(p.stderr)
    assert not any(tmp_path.iterdir())


def test_a_live_interval_of_a_nanosecond_is_a_usage_error():
    p = tcpcong("0.000000001", "1")
    assert p.returncode == 2, p.stderr
    line = one_line(p.stderr)
    assert "[INTERVAL]" in line and "at least 1ms" in line, line


# 5. Files that claim too much ----------------------------------------------


MEASURE = r"""
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_measured(args):
    """Runs tcpcong, returning (exit code, stderr, peak memory in MiB). A
    small process of its own starts it: a child's peak counts the memory
    of the process it was forked from, and the test's is large."""
    p = subprocess.run([sys.executable, "-c", MEASURE, str(binary()), *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    code, kib = p.stdout.split()
    return int(code), p.stderr, int(kib) / 1024


def test_a_file_claiming_to_be_unsorted_cannot_take_all_memory(tmp_path):
    base = modernize(FIXTURE, tmp_path / "base.parquet", "h", "b")
    t = pq.read_table(base)
    t = t.filter(pa.compute.not_equal(t.column("kind"), "capture"))
    rows = t.num_rows
    copies = 5_000_000 // rows + 1
    big = pa.concat_tables([t] * copies)
    meta = fixture_meta(base)
    meta.update(sorted=False, events=big.num_rows)
    path = tmp_path / "unsorted.parquet"
    pq.write_table(big.replace_schema_metadata({"tcpcong": json.dumps(meta)}), path, compression="zstd")
    del big, t
    code, err, peak = run_measured(["analyze", path])
    assert code == 1, err
    assert "budget" in one_line(err), err
    print(f"{path.stat().st_size >> 10} KiB file of {copies * rows} rows said unsorted: peak {peak:.0f} MiB")
    assert peak < 1500, peak


def test_one_huge_string_cannot_take_all_memory(tmp_path):
    base = modernize(FIXTURE, tmp_path / "base.parquet", "h", "b")
    t = pq.read_table(base)
    comm = t.column("comm").to_pylist()
    comm[len(comm) // 2] = "A" * (300 << 20)
    t = t.set_column(t.column_names.index("comm"), "comm", pa.array(comm, pa.large_string()).cast(pa.string()))
    path = tmp_path / "long.parquet"
    pq.write_table(t, path, compression="zstd", use_dictionary=False)
    del t, comm
    assert path.stat().st_size < 5 << 20
    code, err, peak = run_measured(["analyze", path])
    assert code == 1, err
    assert "comm" in one_line(err) and "MiB" in err, err
    print(f"{path.stat().st_size >> 10} KiB file with a 300 MiB string: peak {peak:.0f} MiB")
    assert peak < 200, peak
    # The footer's sizes are the writer's word; the decoder goes by each
    # page's header. A footer patched to say 4 KiB changes nothing.
    lying = tmp_path / "lying.parquet"
    patched = understate_chunks(path, lying)
    assert patched > 0
    assert pq.ParquetFile(lying).metadata.row_group(0).total_byte_size == 4096
    code, err, peak = run_measured(["analyze", lying])
    assert code == 1, err
    assert "comm" in one_line(err) and "MiB" in err, err
    print(f"the same with its footer saying 4 KiB: peak {peak:.0f} MiB")
    assert peak < 200, peak


def understate_chunks(path: Path, out: Path) -> int:
    """`path` with every size of more than 1 MiB in its footer (column
    chunks' uncompressed sizes, row groups' byte sizes) rewritten as 4 KiB,
    the varints padded to their old length so that nothing moves."""
    raw = bytearray(path.read_bytes())
    footer_len = int.from_bytes(raw[-8:-4], "little")
    footer = len(raw) - 8 - footer_len
    md = pq.ParquetFile(path).metadata

    def varint(n, length=None):
        z, b = n << 1, bytearray()
        while True:
            b.append(z & 0x7F)
            z >>= 7
            if (length is None and not z) or (length is not None and len(b) == length):
                break
            b[-1] |= 0x80
        return bytes(b)

    sizes = {md.row_group(r).column(c).total_uncompressed_size
             for r in range(md.num_row_groups) for c in range(md.num_columns)}
    sizes |= {md.row_group(r).total_byte_size for r in range(md.num_row_groups)}
    patched = 0
    for n in sizes:
        if n <= 1 << 20:
            continue
        old = varint(n)
        new = varint(4096, len(old))
        at = raw.find(old, footer)
        while at != -1:
            raw[at:at + len(old)] = new
            patched += 1
            at = raw.find(old, at + 1)
    out.write_bytes(raw)
    return patched


def test_a_file_claiming_a_long_span_cannot_take_all_memory(tmp_path):
    # Five flows alive to the capture's end, which the file says comes 11
    # days on: every 1 s window of it, each with those flows, would be
    # gigabytes of report.
    base = modernize(FIXTURE, tmp_path / "base.parquet", "h", "b")
    t = pq.read_table(base)
    meta = fixture_meta(base)
    meta["end_ktime_ns"] = meta["start_ktime_ns"] + 999_000 * 10**9
    path = tmp_path / "long-span.parquet"
    pq.write_table(t.replace_schema_metadata({"tcpcong": json.dumps(meta)}), path, compression="zstd")
    code, err, peak = run_measured(["analyze", path, "1"])
    assert code == 1, err
    assert "MiB of memory" in one_line(err) and "longer interval" in err, err
    print(f"{path.stat().st_size >> 10} KiB file claiming 999,000 s, 1 s windows: peak {peak:.0f} MiB")
    assert peak < 1500, peak
    # The same file read whole, or in windows that fit, is analyzed.
    code, err, _ = run_measured(["analyze", path])
    assert code == 0, err
    code, err, _ = run_measured(["analyze", path, "3600", "2"])
    assert code == 0, err


@pytest.mark.parametrize("claim", [
    {"end_ktime_ns": 2**64 - 1},
    {"start_ktime_ns": 2**64 - 1},
    {"clock_offset_ns": 2**63 - 1},
    {"clock_offset_ns": -2**63},
])
def test_capture_times_out_of_range_are_refused_not_a_crash(tmp_path, claim):
    base = modernize(FIXTURE, tmp_path / "base.parquet", "h", "b")
    meta = fixture_meta(base)
    meta.update(claim)
    path = tmp_path / "times.parquet"
    pq.write_table(pq.read_table(base).replace_schema_metadata({"tcpcong": json.dumps(meta)}), path)
    for args in (["analyze", path], ["analyze", path, "1"], ["events", path],
                 ["report", path, "-o", tmp_path / "page.html"]):
        p = tcpcong(*args)
        assert p.returncode == 1, (args, p.stderr)
        assert "capture times are out of range" in one_line(p.stderr), p.stderr
        assert "internal error" not in p.stderr


def test_more_files_than_the_soft_descriptor_limit_are_read(tmp_path):
    base = modernize(FIXTURE, tmp_path / "base.parquet", "h", "b")
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(1100):
        shutil.copy(base, folder / f"copy-{i:04}.parquet")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > 1200, "the test needs a hard limit above its files"

    def limit(n_soft, n_hard):
        return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n_soft, n_hard))

    # A soft limit of 1024, as most hosts set it: raised to the hard one.
    p = subprocess.run([binary(), "analyze", folder, "--format", "json"], capture_output=True,
                       text=True, timeout=HANG_S, preexec_fn=limit(1024, hard))
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) > 0
    # Where the hard limit itself is too low: that, in one line, not "not a
    # Parquet file".
    p = subprocess.run([binary(), "analyze", folder], capture_output=True, text=True,
                       timeout=HANG_S, preexec_fn=limit(256, 256))
    assert p.returncode == 1, p.stderr
    assert "Too many open files" in one_line(p.stderr), p.stderr
    assert "not a Parquet file" not in p.stderr


# 6. Small ones -------------------------------------------------------------


@pytest.mark.parametrize("netns", ["/etc/passwd", "0", "/proc/self/ns/uts"])
def test_netns_must_name_a_network_namespace(tmp_path, netns):
    p = tcpcong("record", "-o", tmp_path / "x.parquet", "--netns", netns, "--duration", "0.2")
    assert p.returncode == 2, p.stderr
    assert one_line(p.stderr).startswith(f"tcpcong: --netns {netns}:"), p.stderr


def test_control_characters_in_a_path_stay_on_one_line(tmp_path):
    p = tcpcong("analyze", tmp_path / "a\nb\x1b]0;x\x07.parquet")
    assert p.returncode == 1
    line = one_line(p.stderr)
    assert "\x1b" not in line and "a\\x0ab\\x1b]0;x\\x07.parquet" in line, line


def test_a_drop_reason_cannot_forge_the_terminal(tmp_path):
    """A drop row's reason is a name from the kernel: one a file forges
    (control characters for the terminal that shows `events`) is refused
    as the malformed row it is, and nothing of it reaches the output."""
    t = pq.read_table(FIXTURE)
    kinds = t.column("kind").to_pylist()
    new = t.column("new_state").to_pylist()
    new[kinds.index("drop")] = TERMINAL
    t = t.set_column(t.schema.get_field_index("new_state"), "new_state", pa.array(new))
    evil = tmp_path / "evil.parquet"
    pq.write_table(t, evil)
    p = tcpcong("events", evil, "--kind", "drop")
    out = p.stdout + p.stderr
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert p.returncode == 1, out
    assert "a drop without its reason" in one_line(p.stderr), p.stderr


@pytest.mark.parametrize("name", [TERMINAL, FORMULA, FORGER, BIDI], ids=["terminal", "formula", "forger", "bidi"])
def test_process_names_cannot_forge_the_episodes(tmp_path, name):
    """A file's process names (any process names itself) reach every
    format of `analyze --episodes`, escaped for its reader: shown, never
    sent to the terminal, never a spreadsheet formula, never a line of
    their own; the JSON keeps the name as it is."""
    t = pq.read_table(FIXTURE)
    t = t.set_column(t.schema.get_field_index("comm"), "comm", pa.array([name] * t.num_rows))
    evil = tmp_path / "evil.parquet"
    pq.write_table(t, evil)
    for args in (["--episodes"], ["--episodes", "--by", "process"]):
        table = tcpcong("analyze", evil, *args)
        assert table.returncode == 0, table.stderr
        assert not set(table.stdout) & {"\x1b", "\x07", "\u202e"}, repr(table.stdout)
        csv = tcpcong("analyze", evil, *args, "--format", "csv")
        assert csv.returncode == 0, csv.stderr
        assert not set(csv.stdout) & {"\x1b", "\x07", "\u202e"}, repr(csv.stdout)
        lines = csv.stdout.splitlines()
        assert len(lines) > 1, "the fixture has episodes"
        # One record per line, none starting a formula in any cell.
        assert all(line.count(",") == lines[0].count(",") for line in lines if '"' not in line), lines[:3]
        assert not any(c.startswith(("=", "+", "@")) for line in lines for c in line.split(",")), lines[:3]
    rows = tcpcong("analyze", evil, "--episodes", "--format", "json")
    assert {json.loads(line)["comm"] for line in rows.stdout.splitlines()} == {name}


def test_a_reset_reason_cannot_forge_the_terminal(tmp_path):
    """As a drop's: a reset row's reason is a kernel name, and a forged one
    is refused as the malformed row it is."""
    t = pq.read_table(FIXTURE)
    kinds = t.column("kind").to_pylist()
    i = kinds.index("ca_state")
    kinds[i] = "reset"
    old = t.column("old_state").to_pylist()
    new = t.column("new_state").to_pylist()
    old[i], new[i] = "tx", TERMINAL
    for col, values in (("kind", kinds), ("old_state", old), ("new_state", new)):
        t = t.set_column(t.schema.get_field_index(col), col, pa.array(values))
    evil = tmp_path / "evil.parquet"
    pq.write_table(t, evil)
    p = tcpcong("events", evil, "--kind", "reset")
    out = p.stdout + p.stderr
    assert "\x1b" not in out and "\x07" not in out, repr(out)
    assert p.returncode == 1, out
    assert "a reset without its reason" in one_line(p.stderr), p.stderr


@pytest.mark.parametrize("name", [TERMINAL, FORMULA, FORGER, MARKUP, BIDI],
                         ids=["terminal", "formula", "forger", "markup", "bidi"])
def test_container_names_cannot_forge_any_output(tmp_path, name):
    """Container, pod and namespace names come from files the runtimes
    keep (a container's owner names it), and from a recording's metadata,
    which anyone can write: every output that shows them escapes them for
    its reader (the terminal, a spreadsheet, a browser), and JSON keeps
    them as they are."""
    t = pq.read_table(FIXTURE)
    meta = json.loads(t.schema.metadata[b"tcpcong"])
    meta["containers"] = {"1": {"runtime": "docker", "id": "ab" * 32, "name": name, "pod": name,
                                "namespace": name}}
    evil = tmp_path / "evil.parquet"
    pq.write_table(t.replace_schema_metadata({b"tcpcong": json.dumps(meta)}), evil)
    shown = {"\x1b", "\x07", "\u202e"}
    for by in ("container", "pod", "k8s-namespace"):
        table = tcpcong("analyze", evil, "--all", "--by", by)
        assert table.returncode == 0, table.stderr
        assert not set(table.stdout) & shown, repr(table.stdout)
    for args in (["analyze", evil, "--all"], ["analyze", evil, "--episodes"], ["events", evil]):
        csv = tcpcong(*args, "--format", "csv")
        assert csv.returncode == 0, csv.stderr
        assert not set(csv.stdout) & shown, repr(csv.stdout[:500])
        assert not any(c.startswith(("=", "+", "@")) for line in csv.stdout.splitlines()
                       for c in line.split(",")), args
        rows = [json.loads(line) for line in tcpcong(*args, "--format", "json").stdout.splitlines()]
        named = [r for r in rows if r["container"]]
        assert named and all((r["container"], r["pod"], r["k8s_namespace"]) == (name, name, name)
                             for r in named), args
    page = tmp_path / "page.html"
    p = tcpcong("report", evil, "-o", page)
    assert p.returncode == 0, p.stderr
    html = page.read_text()
    assert "<b>x</b>" not in html and not set(html) & shown, "a name reached the page unescaped"
