"""Two builds side by side, in alternating pairs: the recorder's user +
system CPU per event written (µs, start-up included), its losses and its
bytes per event, on `synth` at RATE events/s for 3 s, lean and full
records. As root, after `cargo build --release --workspace --bins`:

    python3 bench/ab_pipeline.py OLD_TCPCONG NEW_TCPCONG PAIRS RATE

Each build runs with the `synth` beside it (its own BPF producer: how often
it wakes the recorder is part of the build), else $SYNTH.
"""
import json, os, re, subprocess, sys, time, tempfile, statistics
from pathlib import Path
builds = dict(A=sys.argv[1], B=sys.argv[2])
pairs, rate = int(sys.argv[3]), int(sys.argv[4])
SYNTH = os.environ.get("SYNTH", "target/release/synth")
def synth_of(exe):
    beside = Path(exe).parent / "synth"
    return str(beside) if beside.exists() else SYNTH
res = {k: [] for k in builds}
def one(exe, mode):
    with tempfile.TemporaryDirectory() as d:
        pin = f"/sys/fs/bpf/tcpcong-ab-{os.getpid()}"
        rec = subprocess.Popen([exe, "record", "-o", f"{d}/p.parquet", "--pin-buffer", pin, "-L", "1", "--no-lifecycle"], stderr=subprocess.PIPE, text=True)
        for _ in range(200):
            if Path(pin).exists(): break
            time.sleep(0.05)
        synth = json.loads(subprocess.run([synth_of(exe), pin, str(rate), "3", *(["lean"] if mode == "lean" else [])], capture_output=True, text=True, check=True).stdout)
        rec.send_signal(2)
        _, status, usage = os.wait4(rec.pid, 0)
        err = rec.stderr.read()
        m = re.search(r"wrote (\d+) events? .*?, (\d+) lost events", err)
        written, lost = int(m.group(1)), int(m.group(2)) + synth["reserve_failed"]
        size = os.path.getsize(f"{d}/p.parquet")
        return (usage.ru_utime + usage.ru_stime) * 1e6 / written, lost, size / written
for i in range(pairs):
    order = "AB" if i % 2 == 0 else "BA"
    for mode in ("lean", "full"):
        for k in order:
            r = one(builds[k], mode)
            res[k].append((mode, r))
            print(k, mode, f"{r[0]:.3f} us/event, lost {r[1]}, {r[2]:.2f} B/event", flush=True)
for mode in ("lean", "full"):
    a = [r[0] for m, r in res["A"] if m == mode]; b = [r[0] for m, r in res["B"] if m == mode]
    print(mode, "A median", round(statistics.median(a), 3), "B median", round(statistics.median(b), 3), "B/A per pair", [round(y / x, 3) for x, y in zip(a, b)])
