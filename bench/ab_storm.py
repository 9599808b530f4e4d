"""Builds of tcpcong recording the same kind of storm (64 parallel flows at
5 % loss in a lab namespace, SECONDS each), the builds' order alternating
from round to round: per build, the events written, the calls the kernel
skipped (re-entered on one CPU), the transitions without an event, and the
tracepoint programs' ns per event (bpf_stats). As root:

    python3 bench/ab_storm.py ROUNDS SECONDS NAME=TCPCONG [NAME=TCPCONG ...]
"""
import json, os, re, subprocess, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import bpf_stats  # noqa: E402
rounds, secs = int(sys.argv[1]), sys.argv[2]
builds = dict(a.split("=", 1) for a in sys.argv[3:])
LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lab", "lab.sh")
res = {k: [] for k in builds}
with bpf_stats():
    for r in range(rounds):
        for name in (list(builds) if r % 2 == 0 else list(builds)[::-1]):
            ns = f"ab-storm-{os.getpid()}"
            subprocess.run(["bash", LAB, "up", ns, "--loss", "5"], check=True, capture_output=True)
            try:
                with tempfile.TemporaryDirectory() as d:
                    p = subprocess.Popen([builds[name], "record", "-o", f"{d}/r.parquet", "--netns", f"/var/run/netns/{ns}"],
                                         stderr=subprocess.PIPE, text=True)
                    while not p.stderr.readline().startswith("Recording"):
                        if p.poll() is not None:
                            sys.exit(f"{name} did not start")
                    subprocess.run(["bash", LAB, "traffic", ns, secs, "--parallel", "64"], check=True, capture_output=True)
                    p.send_signal(2)
                    err = p.stderr.read()
                    p.wait()
            finally:
                subprocess.run(["bash", LAB, "down", ns], capture_output=True)
            num = lambda pat: int(m.group(1)) if (m := re.search(pat, err)) else 0
            progs = {n: (int(a), int(b)) for n, a, b in re.findall(r"(\w+) (\d+) ns x (\d+)", err)}
            first, twin = progs.get("on_cong_state_set", (0, 0)), progs.get("on_cong_state_set_nested", (0, 0))
            row = {"round": r, "build": name, "events": num(r"wrote (\d+) events"),
                   "skipped": num(r"(\d+) skipped by the kernel"),
                   "gaps": num(r"(\d+) transitions? happened without an event"),
                   "ns_per_event": round((first[0] * first[1] + twin[0] * twin[1]) / max(first[1], 1))}
            res[name].append(row)
            print(json.dumps(row), flush=True)
for name, rows in res.items():
    ev, sk = sum(r["events"] for r in rows), sum(r["skipped"] for r in rows)
    print(json.dumps({"build": name, "events": ev, "skipped": sk, "skipped_per_10k": round(1e4 * sk / max(ev, 1), 3),
                      "gaps": sum(r["gaps"] for r in rows), "ns_per_event": sorted(r["ns_per_event"] for r in rows)}))
