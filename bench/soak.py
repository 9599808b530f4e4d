#!/usr/bin/env python3
"""A long rotated capture under steady synthetic load (issue: captures that
survive): `tcpcong record -o DIR/ --rotate-seconds R --max-total SIZE` for
MINUTES while bench/src/bin/synth.rs offers RATE events/s through the recorder's
own ring buffer. Reports the recorder's peak RSS, files kept, events offered,
written (summed over the files ever written, from record's summary) and lost.

usage: soak.py [MINUTES] [RATE] (as root, after cargo build --release --workspace --bins)
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = os.environ.get("TCPCONG", "target/release/tcpcong")
SYNTH = os.environ.get("SYNTH", "target/release/synth")


def main():
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    with tempfile.TemporaryDirectory(dir="target") as d:
        pin = f"/sys/fs/bpf/tcpcong-soak-{os.getpid()}"
        rec = subprocess.Popen([BIN, "record", "-o", f"{d}/", "--rotate-seconds", "30",
                                "--max-total", "256MB", "--pin-buffer", pin, "-L", "1",
                                "--no-lifecycle"], stderr=subprocess.PIPE, text=True)
        for _ in range(100):
            if Path(pin).exists():
                break
            time.sleep(0.05)
        t0 = time.monotonic()
        synth = json.loads(subprocess.run([SYNTH, pin, str(rate), str(minutes * 60)],
                                          check=True, capture_output=True, text=True).stdout)
        rec.send_signal(2)
        _, status, usage = os.wait4(rec.pid, 0)
        wall = time.monotonic() - t0
        err = rec.stderr.read()
        m = re.search(r"wrote (\d+) events? of \d+ flows? in (\d+) files? .*?, (\d+) lost events", err)
        kept = sorted(Path(d).rglob("*.parquet"))
        offered = synth["offered"] + synth["reserve_failed"]
        print(json.dumps({
            "minutes": round(wall / 60, 2), "rate": rate, "offered": offered,
            "written": int(m.group(1)), "files_written": int(m.group(2)), "files_kept": len(kept),
            "kept_bytes": sum(f.stat().st_size for f in kept),
            "lost": int(m.group(3)) + synth["reserve_failed"],
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_percent": round(100 * (usage.ru_utime + usage.ru_stime) / wall, 1),
            "exit": status,
        }))


if __name__ == "__main__":
    os.chdir(Path(__file__).resolve().parent.parent)
    main()
