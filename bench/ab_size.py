"""Two builds recording the same lab traffic at once (10 s, 4 flows, 2 %
loss), RUNS times, the start order alternating: bytes per event of each
file. As root:

    python3 bench/ab_size.py OLD_TCPCONG NEW_TCPCONG RUNS
"""
import json, os, subprocess, sys, tempfile
import pyarrow.parquet as pq
A, B, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
LAB = "lab/lab.sh"
ns = "ab-size"
OUT = tempfile.mkdtemp(prefix="tcpcong-ab-")
for run in range(runs):
    subprocess.run(["bash", LAB, "up", ns, "--loss", "2"], check=True)
    try:
        order = [("A", A), ("B", B)] if run % 2 == 0 else [("B", B), ("A", A)]
        procs = {}
        for name, exe in order:
            out = f"{OUT}/{name}.parquet"
            if os.path.exists(out): os.remove(out)
            p = subprocess.Popen([exe, "record", "-o", out, "--netns", f"/var/run/netns/{ns}"], stderr=subprocess.PIPE, text=True)
            while not p.stderr.readline().startswith("Recording"):
                pass
            procs[name] = p
        subprocess.run(["bash", LAB, "traffic", ns, "10", "--parallel", "4"], check=True)
        for p in procs.values(): p.send_signal(2)
        for p in procs.values(): p.wait()
        res = {}
        for name in "AB":
            f = f"{OUT}/{name}.parquet"
            n = pq.ParquetFile(f).metadata.num_rows
            res[name] = (n, os.path.getsize(f) / n)
        print(json.dumps({"run": run, **{k: {"events": v[0], "B_per_event": round(v[1], 3)} for k, v in res.items()}, "B/A": round(res["B"][1] / res["A"][1], 4)}), flush=True)
    finally:
        subprocess.run(["bash", LAB, "down", ns])
