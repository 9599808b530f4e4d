"""The README's quick start, run as printed: its tcpcong commands in a
lossy lab namespace with traffic, one after the other, each checked for
what it promises. The install line is not run here (the .deb test installs
the package); the rest is the binary under test."""
import os
import re
import shlex
import subprocess

import pyarrow.parquet as pq
import pytest

from conftest import REPO, binary

LAB = REPO / "lab" / "lab.sh"


def quick_start() -> list[list[str]]:
    """The quick start's commands (comments dropped), as argument lists."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\n.*?```sh\n(.*?)```", text, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_quick_start_runs_as_printed(tmp_path):
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("needs root (BPF, namespaces)")
    commands = quick_start()
    assert commands[0][:2] == ["make", "install"], commands
    steps = commands[1:]
    assert [c[:2] for c in steps] == [["tcpcong", "record"], ["tcpcong", "analyze"],
                                      ["tcpcong", "report"]], steps
    ns = f"tc-quick-{os.getpid()}"
    subprocess.run([LAB, "up", ns, "--loss", "3"], check=True)
    try:
        def run(argv):
            return subprocess.run(["ip", "netns", "exec", ns, str(binary()), *argv[1:]],
                                  cwd=tmp_path, capture_output=True, text=True, timeout=120)

        record = subprocess.Popen(["ip", "netns", "exec", ns, str(binary()), *steps[0][1:]],
                                  cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Traffic once the capture is attached (its banner on stderr), for
        # less than the capture's duration.
        seen = []
        for line in record.stderr:
            seen.append(line)
            if line.startswith("Recording TCP congestion-state transitions"):
                break
        else:
            pytest.fail("no banner: " + "".join(seen))
        subprocess.run([LAB, "traffic", ns, "4", "--parallel", "2"], check=True,
                       capture_output=True, timeout=60)
        _, err = record.communicate(timeout=60)
        assert record.returncode == 0, "".join(seen) + err
        events = pq.read_table(tmp_path / "run.parquet").to_pylist()
        changes = [e for e in events if e["kind"] == "ca_state"]
        assert changes, "real congestion was recorded"

        analyze = run(steps[1])
        assert analyze.returncode == 0, analyze.stderr
        rows = [l for l in analyze.stdout.splitlines()[2:] if l.strip()]
        assert 1 <= len(rows) <= 5, analyze.stdout
        assert analyze.stdout.splitlines()[1].split()[:3] == ["LAddrPort", "RAddrPort", "Open_ms"], analyze.stdout

        report = run(steps[2])
        assert report.returncode == 0, report.stderr
        page = (tmp_path / "run.html").read_text()
        assert page.startswith("<!doctype html>") and "<h2>Capture</h2>" in page
    finally:
        subprocess.run([LAB, "down", ns], check=False)
