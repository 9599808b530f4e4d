#!/usr/bin/env python3
"""`make bench`: tcpcong's figures, each a ratio to a baseline measured in
the same run on the same machine (these machines are shared and noisy, so
absolute times do not compare across runs). Writes BENCHMARKS.md.

Run as root from the repository root, after `cargo build --release
--workspace --bins`. Nothing here is a test: no figure passes or fails.

Measured:
  1. in-kernel cost per event (kernel.bpf_stats_enabled): tcpcong's program
     next to an empty tp_btf program on the same tracepoint, same events;
     ring and perf buffers, filters off and on;
  2. pipeline throughput: synthetic events through record's real ring
     buffer or lean rings, decoder and Parquet writer (bench/src/bin/synth.rs),
     rate by rate;
  3. analyze speed and peak RSS on a large generated recording at 1 and 2
     threads, next to the fastest exact DuckDB and polars queries we have
     (bench/exact.py, checked equal flow by flow) and DuckDB running the
     readable schemas/durations.sql;
  4. size: bytes per event of the fixtures and the generated file, next to
     the in-memory Arrow size and the same events as JSON lines;
  5. effect on the traced workload: lab throughput with and without record,
     alternating repetitions;
  6. the HTML report of a 10-minute, million-event capture: page size and
     time, next to analyze of the same file;
  7. socket snapshots with 10,000 idle connections in a namespace: time per
     snapshot next to `ss` listing the same sockets, and bytes per row;
  8. a fleet: three hosts' generated recordings, analyze on one and two
     threads next to the Python package, schemas/durations.sql in DuckDB
     and in Spark SQL (local[2]), and Spark running the package per host,
     each table checked equal to analyze's flow by flow.
"""
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = os.environ.get("TCPCONG", "target/release/tcpcong")
FLOOR = os.environ.get("FLOOR", "target/release/floor")
SYNTH = os.environ.get("SYNTH", "target/release/synth")
LAB = "lab/lab.sh"
EVENTS = int(os.environ.get("BENCH_EVENTS", "20000000"))
FLOWS = int(os.environ.get("BENCH_FLOWS", "2000"))
CACHE = Path(os.environ.get("BENCH_CACHE", "target/bench"))
# A subset while working on one figure, e.g. BENCH_PARTS=cost (BENCHMARKS.md
# is then not rewritten).
PARTS = os.environ.get("BENCH_PARTS", "cost,pipeline,analyze,size,load,report,snapshot,fleet").split(",")
FLEET_HOSTS = 3
# Per host; Spark SQL runs durations.sql at a few thousand events per second
# here, so the default keeps its row to minutes.
FLEET_EVENTS = int(os.environ.get("BENCH_FLEET_EVENTS", "1000000"))
# Per host, for tcpcong alone (analyze and the package) at scale.
FLEET_BIG_EVENTS = int(os.environ.get("BENCH_FLEET_BIG_EVENTS", "20000000"))
out_lines = []


def say(line=""):
    print(line, flush=True)
    out_lines.append(line)


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


def tree_rss_kib(root):
    """The summed RSS of `root` and its descendants now (KiB)."""
    parent = {}
    for st in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = st.read_text().rsplit(")", 1)[1].split()
            parent[int(st.parent.name)] = int(fields[1])
        except (OSError, ValueError, IndexError):
            pass
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for p in tree:
        try:
            total += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text()).group(1))
        except (OSError, AttributeError):
            pass
    return total


def run_measured(args, stdout=subprocess.DEVNULL, env=None, tree=False):
    """Wall seconds and peak RSS (KiB) of one child process; with `tree`,
    of it and its descendants together (sampled: a JVM the child starts is
    not its child when wait4 reports)."""
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=stdout, stderr=subprocess.PIPE, env=env)
    peak = 0
    while True:
        if tree:
            peak = max(peak, tree_rss_kib(p.pid))
        done, status, usage = os.wait4(p.pid, os.WNOHANG if tree else 0)
        if done:
            break
        time.sleep(0.5)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode()
    if status != 0:
        sys.exit(f"bench: {args[0]} failed: {err}")
    return wall, max(peak, usage.ru_maxrss)


class Lab:
    def __init__(self, tag, *opts):
        self.ns = f"tc-bench-{tag}-{os.getpid()}"
        sh(LAB, "up", self.ns, *opts)

    def traffic(self, secs, *opts):
        return sh(LAB, "traffic", self.ns, str(secs), *opts).strip()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        subprocess.run([LAB, "down", self.ns])


def as_ns(x):
    return f"{x:.0f}"


def as_times(x):
    return f"{x:.2f}×"


def spread(v, fmt):
    """Median (min-max) of `v`, each as `fmt` words it."""
    v = sorted(v)
    return f"{fmt(statistics.median(v))} ({fmt(v[0])}-{fmt(v[-1])})"


@contextlib.contextmanager
def bpf_stats():
    """kernel.bpf_stats_enabled on while the block runs, as it was after."""
    knob = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = knob.read_text().strip()
    knob.write_text("1")
    try:
        yield
    finally:
        knob.write_text(old)


def prog_stats():
    """run_time_ns and run_cnt per program name prefix."""
    progs = json.loads(sh("bpftool", "prog", "show", "-j"))
    return {p.get("name", ""): (p.get("run_time_ns", 0), p.get("run_cnt", 0)) for p in progs}


def find(stats, prefix):
    """The one program named `prefix`: exactly, or by the first 15
    characters a kernel without BTF names keeps."""
    if prefix in stats:
        return stats[prefix]
    hits = [v for k, v in stats.items() if k and prefix.startswith(k)]
    if len(hits) != 1:
        sys.exit(f"bench: expected one program named {prefix}, found {len(hits)}")
    return hits[0]


def start_tcpcong(d):
    """`tcpcong record` into folder `d`, once its capture runs: how to stop it."""
    rec = subprocess.Popen([BIN, "record", "-o", f"{d}/r.parquet"], stderr=subprocess.PIPE, text=True)
    while not rec.stderr.readline().startswith("Recording"):
        if rec.poll() is not None:
            sys.exit("bench: tcpcong record did not start")
    return lambda: (rec.send_signal(2), rec.wait())


def start_floor(*args):
    """`floor ARGS`, once its programs are attached: how to stop it."""
    p = subprocess.Popen([FLOOR, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.stdout.readline()
    return lambda: (p.stdin.close(), p.wait())


def beside_empty(start, progs, loss, parallel, first, seconds):
    """One run: what `start` attaches (its tracepoint programs `progs`,
    summed; the first runs on every event) and the empty program, `first`
    saying whether it is attached first, over `seconds` of lab traffic at
    `loss` % with `parallel` flows: events/s, its ns and the empty's per event."""
    with Lab("head", "--loss", loss) as lab, tempfile.TemporaryDirectory() as d:
        starts = (lambda: start(d), lambda: start_floor("empty"))
        stops = [s() for s in (starts if first else starts[::-1])]
        before = prog_stats()
        lab.traffic(seconds, "--parallel", str(parallel))
        after = prog_stats()
        for stop in stops:
            stop()
    delta = lambda name: tuple(a - b for a, b in zip(find(after, name), find(before, name)))
    s_rt = sum(delta(p)[0] for p in progs if p in after)
    s_cnt = delta(progs[0])[1]
    e_rt, e_cnt = delta("floor_cong_state")
    return e_cnt / seconds, s_rt / max(s_cnt, 1), e_rt / max(e_cnt, 1)


def paired(start, progs, loss, parallel, pairs, seconds):
    """`pairs` pairs of [`beside_empty`] runs, the order alternating within
    each pair and from pair to pair: the runs by whether it came first."""
    runs = {True: [], False: []}
    for i in range(pairs):
        for first in (True, False) if i % 2 == 0 else (False, True):
            runs[first].append(beside_empty(start, progs, loss, parallel, first, seconds))
    return runs


def headline_cost(pairs=3, seconds=3):
    """tcpcong alone on the tracepoint beside one empty program, as a
    user's host runs it: the ratio and the nanoseconds above empty."""
    say("## 1. In-kernel cost per event")
    say()
    say("The headline: tcpcong (`record`, no filters, its default programs) alone on `tcp_cong_state_set` "
        "beside one empty `tp_btf` program (`floor empty`: `floor_cong_state` in `bench/floor.bpf.c`, "
        "`return 0`), nothing else attached there, `kernel.bpf_stats_enabled=1`, `run_time_ns / run_cnt` "
        f"of each over {seconds} s of lab traffic. The first program to run on an event pays for the socket's "
        "cache lines, so the two are attached in alternating order, tcpcong first in one run of each pair, "
        f"the empty program first in the other; {pairs} pairs per workload: median (min-max) of the "
        f"{2 * pairs} runs. A storm is the most events a second this lab makes with real TCP: 64 parallel "
        "flows at 5 % loss. Budget: ≤ 3× the empty program (≤ +200 ns).")
    say()
    say("| workload | events/s | tcpcong ns/event | empty ns/event | tcpcong / empty | tcpcong − empty ns "
        "| tcpcong first: / empty | empty first: / empty |")
    say("|---|---:|---:|---:|---:|---:|---:|---:|")

    results = []
    with bpf_stats():
        for label, loss, parallel in (("lab, 4 flows, 2 % loss", "2", 4), ("storm, 64 flows, 5 % loss", "5", 64)):
            runs = paired(start_tcpcong, ("on_cong_state_set", "on_cong_state_set_nested"), loss, parallel,
                          pairs, seconds)
            every = runs[True] + runs[False]
            rate, t_ns, e_ns = ([r[i] for r in every] for i in range(3))
            ratio = [t / e for t, e in zip(t_ns, e_ns)]
            above = [t - e for t, e in zip(t_ns, e_ns)]
            by_first = {k: statistics.median([r[1] / r[2] for r in v]) for k, v in runs.items()}
            results.append((label, statistics.median(ratio)))
            say(f"| {label} | {statistics.median(rate):,.0f} | {spread(t_ns, as_ns)} | {spread(e_ns, as_ns)} | "
                f"{spread(ratio, as_times)} | {spread(above, as_ns)} | {as_times(by_first[True])} | {as_times(by_first[False])} |")
    say()
    return results


def parts_cost(pairs=2, seconds=3):
    """The parts of tcpcong's lean path, each alone beside the empty
    program, as the headline measures tcpcong."""
    say("### Where the nanoseconds go")
    say()
    say("The parts of tcpcong's lean path (`bench/floor.bpf.c`), each attached alone (`floor part NAME`) "
        "beside the empty program as the headline measures tcpcong (lab, 4 flows, 2 % loss, alternating "
        f"order, {pairs} pairs: median (min-max) of {2 * pairs} runs). Alone, each pays its own cache "
        "misses: a line two parts share is counted in both.")
    say()
    say("| part | ns/event | empty ns/event | part − empty ns |")
    say("|---|---:|---:|---:|")
    with bpf_stats():
        for prog, what in (("floor_lean_reads", "all the lean path reads (storage, chain, counters, clock)"),
                           ("part_storage", "the socket's storage (`bpf_sk_storage_get`), one field written"),
                           ("part_counters", "the TCP counters a lean record copies"),
                           ("floor_clock_helper", "the clock (`bpf_ktime_get_ns`)")):
            runs = paired(lambda d, prog=prog: start_floor("part", prog), (prog,), "2", 4, pairs, seconds)
            every = runs[True] + runs[False]
            p_ns, e_ns = [r[1] for r in every], [r[2] for r in every]
            above = [a - b for a, b in zip(p_ns, e_ns)]
            say(f"| {what} | {spread(p_ns, as_ns)} | {spread(e_ns, as_ns)} | {spread(above, as_ns)} |")
    say()


def kernel_cost(reps=3):
    say("### Beside other programs")
    say()
    say("`kernel.bpf_stats_enabled=1`; `run_time_ns / run_cnt` of tcpcong's `tp_btf/tcp_cong_state_set` "
        "programs, next to two programs attached to the same tracepoint at the same time "
        "(`bench/floor.bpf.c`, `bench/src/bin/floor.rs`): an empty one, and \"fields only\", which reads "
        "what tcpcong's full record reads and hands nothing over (the read cost alone). Over the same 3 s "
        f"of lab traffic (2 % loss), {reps} runs per row: median (min-max). Budget: ≤ 3× the empty program.")
    say()
    say("| buffer | filters | events | tcpcong ns/event | fields only ns/event | empty ns/event "
        "| tcpcong / empty | fields only / empty |")
    say("|---|---|---:|---:|---:|---:|---:|---:|")
    results = []
    clocks = {"helper": [], "cached": [], "empty": []}
    # The lean record's hand-over variants (floor.bpf.c), per run: ns per
    # event of each and of the empty program.
    lean = {"floor_lean_reads": [], "floor_lean_ring": [], "floor_lean_percpu": [], "empty": []}
    gaps = []

    with bpf_stats():
        for buffer in ("ring", "perf"):
            for filtered in (False, True):
                runs = []
                for _ in range(reps):
                    with Lab("cost", "--loss", "2") as lab, tempfile.TemporaryDirectory() as d:
                        floor = subprocess.Popen([FLOOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                        floor.stdout.readline()
                        args = [BIN, "record", "-o", f"{d}/r.parquet", "--buffer", buffer]
                        if filtered:
                            args += ["--netns", f"/var/run/netns/{lab.ns}", "-R", "5201", "--family", "4"]
                        rec = subprocess.Popen(args, stderr=subprocess.PIPE)
                        time.sleep(1.0)
                        # After tcpcong's, so that they run after its programs.
                        variants = subprocess.Popen([FLOOR, "lean"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                        variants.stdout.readline()
                        lab.traffic(3)
                        stats = prog_stats()
                        rec.send_signal(2)
                        rec.wait()
                        for p in (variants, floor):
                            p.stdin.close()
                        gap = floor.stdout.read().decode().split()
                        for p in (variants, floor):
                            p.wait()
                    if gap[:2] == ["clock", "gap"]:
                        gaps.append((int(gap[2]), int(gap[3])))
                    t_rt, t_cnt = find(stats, "on_cong_state_set")
                    # Its twin runs on every call too (it takes the calls
                    # the kernel keeps from the first): part of the cost
                    # per event.
                    t_rt += stats.get("on_cong_state_set_nested", (0, 0))[0]
                    e_rt, e_cnt = find(stats, "floor_cong_state")
                    r_rt, r_cnt = find(stats, "floor_fields")
                    for name, prog in (("helper", "floor_clock_helper"), ("cached", "floor_clock_cached")):
                        c_rt, c_cnt = find(stats, prog)
                        clocks[name].append(c_rt / max(c_cnt, 1))
                    clocks["empty"].append(e_rt / max(e_cnt, 1))
                    for prog in lean:
                        l_rt, l_cnt = find(stats, prog) if prog != "empty" else (e_rt, e_cnt)
                        lean[prog].append(l_rt / max(l_cnt, 1))
                    runs.append((t_cnt, t_rt / max(t_cnt, 1), r_rt / max(r_cnt, 1), e_rt / max(e_cnt, 1)))
                events = [r[0] for r in runs]
                t_ns, r_ns, e_ns = ([r[i] for r in runs] for i in (1, 2, 3))
                ratio = [t / e for t, e in zip(t_ns, e_ns)]
                fields = [r / e for r, e in zip(r_ns, e_ns)]
                results.append((buffer, filtered, statistics.median(ratio)))
                say(f"| {buffer} | {'netns, -R, family' if filtered else 'none'} | {statistics.median(events):.0f} | "
                    f"{spread(t_ns, as_ns)} | {spread(r_ns, as_ns)} | {spread(e_ns, as_ns)} | "
                    f"{spread(ratio, as_times)} | {spread(fields, as_times)} |")
    say()
    say(f"The hand-over, on tcpcong's lean record, in the same {len(lean['empty'])} runs (three more programs "
        "on the tracepoint, `floor_lean_*` in `bench/floor.bpf.c`, attached after tcpcong's so that they run "
        "after its programs and leave its figures as they are alone): each reads what tcpcong's lean path "
        "reads (its socket storage, event number and chain, the counters, the clock) and then keeps the "
        "record (lean reads), hands it to a BPF ring buffer (as tcpcong did), or writes it into a per-CPU "
        "single-producer ring in an mmapable array map, begun and finished with atomic adds (as tcpcong's "
        "lean records now go, `emit_lean` in `bpf/tcpcong.bpf.c`). They share one storage "
        "map and run in that order, so the first row pays the storage's cache misses for all three (an upper "
        "bound) and the last two differ by their hand-over alone.")
    say()
    say("| program | ns/event | / empty |")
    say("|---|---:|---:|")
    for prog, what in (("floor_lean_reads", "lean reads, no hand-over"),
                       ("floor_lean_ring", "lean record, ring buffer"),
                       ("floor_lean_percpu", "lean record, per-CPU ring")):
        ratio = [v / e for v, e in zip(lean[prog], lean["empty"])]
        say(f"| {what} | {spread(lean[prog], as_ns)} | {spread(ratio, as_times)} |")
    saving = [p / r for p, r in zip(lean["floor_lean_percpu"], lean["floor_lean_ring"])]
    say()
    say(f"Per-CPU ring / ring buffer, run by run: {spread(saving, lambda x: f'{x:.2f}')}.")
    say()
    med = {k: statistics.median(v) for k, v in clocks.items()}
    say(f"The time source, in the same runs (two more programs on the tracepoint, each reading one clock): "
        f"`bpf_ktime_get_ns()` {med['helper']:.0f} ns per call, TCP's cached `tp->tcp_clock_cache` "
        f"{med['cached']:.0f} ns (the empty program {med['empty']:.0f} ns). At the same calls the helper was "
        f"{min(g[0] for g in gaps):,} to {max(g[1] for g in gaps):,} ns later than the cache: the cache is the "
        "time of the socket's last refresh (0 on a socket never refreshed), not of the event, so tcpcong keeps "
        "the helper.")
    say()
    return results


def evidence_cost(reps=3):
    say("### The evidence's programs")
    say()
    say("`on_retransmit` (`tp_btf/tcp_retransmit_skb`) and `on_drop` (`tp_btf/kfree_skb`, which runs for every "
        "packet the host drops) next to an empty program on the same tracepoint (`floor_retransmit`, `floor_drop` "
        "in `bench/floor.bpf.c`), attached at the same time, `run_time_ns / run_cnt` with "
        "`kernel.bpf_stats_enabled=1`; a fresh recorder (`--netns` of the lab) per workload, "
        f"{reps} runs each: median (min-max). Lossy: 3 s of lab traffic at 2 % loss (its flows' retransmissions, "
        "and the loss rule's drops of their segments: found by their addresses). UDP: 200,000 datagrams to a "
        "closed port (drops that are not TCP: the program leaves after reading the packet's protocol numbers). "
        "Budget: a packet that is not a traced TCP segment within 1.5× the empty program.")
    say()
    say("| program | workload | runs | tcpcong ns/run | empty ns/run | tcpcong / empty |")
    say("|---|---|---:|---:|---:|---:|")
    rows = {}
    with bpf_stats():
        for _ in range(reps):
            for workload in ("lossy", "udp"):
                with Lab("evidence", "--loss", "2") as lab, tempfile.TemporaryDirectory() as d:
                    floor = subprocess.Popen([FLOOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                    floor.stdout.readline()
                    rec = subprocess.Popen([BIN, "record", "-o", f"{d}/r.parquet", "--netns",
                                            f"/var/run/netns/{lab.ns}"], stderr=subprocess.PIPE)
                    # Attached when it says so (its banner).
                    while not rec.stderr.readline().startswith(b"Recording"):
                        pass
                    if workload == "lossy":
                        lab.traffic(3)
                    else:
                        sh(LAB, "udp", lab.ns, "200000")
                    stats = prog_stats()
                    rec.send_signal(2)
                    rec.wait()
                    floor.stdin.close()
                    floor.wait()
                pairs = [("on_drop", "floor_drop")]
                if workload == "lossy":
                    pairs.insert(0, ("on_retransmit", "floor_retransmit"))
                for prog, empty in pairs:
                    t_rt, t_cnt = find(stats, prog)
                    e_rt, e_cnt = find(stats, empty)
                    rows.setdefault((prog, workload), []).append(
                        (t_cnt, t_rt / max(t_cnt, 1), e_rt / max(e_cnt, 1)))

    where = {"lossy": "lossy lab", "udp": "UDP to a closed port"}
    for (prog, workload), runs in rows.items():
        say(f"| `{prog}` | {where[workload]} | {statistics.median(r[0] for r in runs):,.0f} | "
            f"{spread([r[1] for r in runs], as_ns)} | {spread([r[2] for r in runs], as_ns)} | "
            f"{spread([r[1] / r[2] for r in runs], as_times)} |")
    say()


def pipeline(seconds=3):
    say("## 2. Record pipeline throughput")
    say()
    say("Real TCP cannot make transitions fast enough, so `bench/src/bin/synth.rs` runs `bench/synth.bpf.c` "
        "with BPF_PROG_TEST_RUN: 256 schema-shaped events per run, paced to the offered rate for "
        f"{seconds} s, into `tcpcong record`'s own buffers (reused through pins) exactly as the capture "
        "hands them over: as full records into its ring buffer (reserve, fill, submit; numbered as the "
        "tracepoint's capture numbers a socket's events), or as a capture "
        "hands over described flows, each of 1,024 flows' first event a full record and the rest lean "
        "records into the lean ring of the CPU it runs on (with the doorbell that wakes record when a "
        "ring is a quarter full). Lost = records the producer could not begin + record's own losses. "
        "Recorder CPU = its user + system time over the run's wall time (above 100 %: the drain and the "
        "Parquet encoder are threads of their own); CPU s per M written = its user + system seconds per "
        "million events written, start-up and the end's footer included. Budget: >= 1 M events/s with "
        "zero loss.")
    say()
    say("| records | offered events/s | offered | written | lost | recorder CPU | CPU s per M written "
        "| written events/s |")
    say("|---|---:|---:|---:|---:|---:|---:|---:|")
    knees = {}
    for mode in ("full", "lean"):
        knees[mode] = 0
        for rate in (250_000, 500_000, 1_000_000, 2_000_000, 4_000_000):
            with tempfile.TemporaryDirectory() as d:
                pin = f"/sys/fs/bpf/tcpcong-bench-{os.getpid()}"
                args = [BIN, "record", "-o", f"{d}/p.parquet", "--pin-buffer", pin, "-L", "1", "--no-lifecycle"]
                t0 = time.monotonic()
                rec = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
                for _ in range(100):
                    if Path(pin).exists():
                        break
                    time.sleep(0.05)
                synth = json.loads(sh(SYNTH, pin, str(rate), str(seconds), *(["lean"] if mode == "lean" else [])))
                rec.send_signal(2)
                _, status, usage = os.wait4(rec.pid, 0)
                wall = time.monotonic() - t0
                err = rec.stderr.read()
                if status != 0:
                    sys.exit(f"bench: record failed: {err}")
                m = re.search(r"wrote (\d+) events? .*?, (\d+) lost events", err)
                written, rec_lost = int(m.group(1)), int(m.group(2))
                offered = synth["offered"] + synth["reserve_failed"]
                lost = synth["reserve_failed"] + rec_lost
                cpu_s = usage.ru_utime + usage.ru_stime
                if lost == 0 and written == offered:
                    knees[mode] = rate
                say(f"| {mode} | {rate:,} | {offered:,} | {written:,} | {lost:,} | {cpu_s / wall:.0%} | "
                    f"{cpu_s * 1e6 / max(written, 1):.2f} | {written / synth['seconds']:,.0f} |")
    say()
    say(f"Highest offered rate with zero loss: {knees['full']:,} events/s as full records, "
        f"{knees['lean']:,} events/s as lean records.")
    say()


def generated_file():
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"synthetic-{EVENTS}-{FLOWS}.parquet"
    if not path.exists():
        sh(sys.executable, "bench/gen_events.py", str(path), str(EVENTS), str(FLOWS))
    return path


DUCKDB_SCRIPT = """
import duckdb, json, pathlib, sys
con = duckdb.connect()
con.execute(f"SET threads = {int(sys.argv[3])}")
con.execute("SET VARIABLE tcpcong_files = ?", [sys.argv[1]])
con.execute("SET VARIABLE tcpcong_accounting = 'full'")
sql = pathlib.Path(sys.argv[2])
con.execute((sql.parent / "durations-duckdb.sql").read_text())
cur = con.execute(sql.read_text())
names = [c[0] for c in cur.description]
with open(sys.argv[4] if len(sys.argv) > 4 else "/dev/null", "w") as out:
    for r in cur.fetchall():
        print(json.dumps(dict(zip(names, r)), default=int), file=out)
"""
SPARK_SCRIPT = """
import json, sys
from pyspark.sql import SparkSession, functions as F
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "6g").getOrCreate())
rows = spark.read.parquet(sys.argv[1])
rows.select("*", F.col("_metadata.file_path").alias("filename"),
            F.col("_metadata.row_index").alias("file_row_number")).createOrReplaceTempView("tcpcong_rows")
spark.sql("SELECT 'full' AS accounting").createOrReplaceTempView("tcpcong_params")
with open(sys.argv[3], "w") as out:
    for r in spark.sql(open(sys.argv[2]).read()).collect():
        print(json.dumps(r.asDict(), default=int), file=out)
spark.stop()
"""
# The Python package (`make python`), on the files and in Spark per host.
PACKAGE_OUT = """
FIELDS = ("host", "boot_id", "flow", "open_ns", "disorder_ns", "cwr_ns", "recovery_ns", "loss_ns", "changes")
def write(rows, path):
    with open(path, "w") as out:
        for r in rows:
            print(json.dumps({k: r[k] for k in FIELDS}, default=int), file=out)
"""
# Times the call alone, REPS times in one process (python and pyarrow
# start once, as in a notebook or a Spark worker).
PACKAGE_SCRIPT = """
import json, sys, time
import tcpcong
""" + PACKAGE_OUT + """
times = []
for _ in range(int(sys.argv[4])):
    t0 = time.monotonic()
    table = tcpcong.durations(sys.argv[1], "full", all=True, threads=int(sys.argv[2]))
    times.append(time.monotonic() - t0)
write(table.select(list(FIELDS)).to_pylist(), sys.argv[3])
print(json.dumps(times))
"""
SPARK_PACKAGE_SCRIPT = """
import json, sys
import tcpcong
from pyspark.sql import SparkSession, functions as F
""" + PACKAGE_OUT + """
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.memory", "6g").getOrCreate())
rows = spark.read.parquet(sys.argv[1]).select(
    "*", F.col("_metadata.file_path").alias("filename"), F.col("_metadata.row_index").alias("file_row_number"))
def per_host(t):
    return tcpcong.to_spark(tcpcong.durations(t, "full", all=True))
write((r.asDict() for r in rows.groupBy("host").applyInArrow(per_host, tcpcong.spark_schema()).collect()),
      sys.argv[2])
spark.stop()
"""
REPS = int(os.environ.get("BENCH_REPS", "3"))
STATE_NAMES = ["open", "disorder", "cwr", "recovery", "loss"]


def flow_table(lines):
    """flow -> (ns per state..., changes, mismatches) from JSON lines."""
    table = {}
    for line in lines.splitlines():
        d = json.loads(line)
        table[d["flow"]] = tuple(d[f"{s}_ns"] for s in STATE_NAMES) + (d["changes"], d["mismatches"])
    return table


def timed(args, env=None):
    """Median wall seconds, the spread (min-max) and the peak RSS in MiB of REPS runs."""
    runs = [run_measured(args, env=env) for _ in range(REPS)]
    walls = [w for w, _ in runs]
    return statistics.median(walls), min(walls), max(walls), max(r for _, r in runs) / 1024


def analyze_speed(path):
    say("## 3. Analyze speed")
    say()
    say(f"A generated recording of {EVENTS:,} events of {FLOWS:,} flows (`bench/gen_events.py`, "
        "consistent per-flow state chains, the writer's encodings, no lifecycle events). Every row "
        "computes the whole-recording per-flow table in one accounting mode: tcpcong "
        "(`analyze FILE --all --format json --accounting MODE --threads N`) and the fastest exact "
        "query we could write for DuckDB and for polars (`bench/exact.py`: two window passes per "
        "flow, the engine's rules for a recording without lifecycle events). Before timing, each "
        "query's table is checked equal to analyze's, flow by flow (ns per state, changes, "
        f"mismatches). {REPS} runs each: median, spread (fastest-slowest), peak RSS. Last, "
        "DuckDB running `schemas/durations.sql`, the readable twin of the engine that also handles "
        "births, closes and several captures (one run per thread count). \"speed-up\" is the "
        "other's median over tcpcong's at the same thread count and mode.")
    say()
    threads = (1, 2)
    for mode in ("full", "between"):
        ours = flow_table(sh(BIN, "analyze", str(path), "--all", "--format", "json", "--accounting", mode))
        for engine in ("duckdb", "polars"):
            theirs = flow_table(sh(sys.executable, "bench/exact.py", engine, str(path), mode, "2", "--rows"))
            differ = [f for f in ours if ours[f] != theirs.get(f)]
            if differ or len(ours) != len(theirs):
                sys.exit(f"bench: {engine}'s {mode} table differs from analyze's for flows {differ[:5]}")
    say(f"Equality checked: in both modes DuckDB's and polars' tables equal analyze's on all {FLOWS:,} flows.")
    say()
    say("| mode | what | threads | median s | spread s | events/s | peak RSS MiB | tcpcong speed-up |")
    say("|---|---|---:|---:|---:|---:|---:|---:|")
    for mode in ("full", "between"):
        base = {}
        for n in threads:
            med, lo, hi, rss = timed([BIN, "analyze", str(path), "--all", "--format", "json",
                                      "--accounting", mode, "--threads", str(n)])
            base[n] = med
            say(f"| {mode} | tcpcong analyze | {n} | {med:.2f} | {lo:.2f}-{hi:.2f} | {EVENTS / med:,.0f} | "
                f"{rss:.0f} | |")
        for engine, label in (("duckdb", "DuckDB, exact query"), ("polars", "polars lazy, exact query")):
            for n in threads:
                med, lo, hi, rss = timed([sys.executable, "bench/exact.py", engine, str(path), mode, str(n)])
                say(f"| {mode} | {label} | {n} | {med:.2f} | {lo:.2f}-{hi:.2f} | {EVENTS / med:,.0f} | "
                    f"{rss:.0f} | {med / base[n]:.2f}x |")
        if mode == "full":
            # Every episode instead of the table, from the same scan (one thread: it reads in
            # time order).
            med, lo, hi, rss = timed([BIN, "analyze", "--episodes", str(path), "--format", "json"])
            say(f"| full | tcpcong analyze --episodes | 1 | {med:.2f} | {lo:.2f}-{hi:.2f} | "
                f"{EVENTS / med:,.0f} | {rss:.0f} | {med / base[1]:.2f}x of analyze's time |")
            script = CACHE / "duckdb_durations.py"
            script.write_text(DUCKDB_SCRIPT)
            for n in threads:
                wall, rss = run_measured([sys.executable, str(script), str(path), "schemas/durations.sql", str(n)])
                say(f"| full | DuckDB, durations.sql (readable twin, 1 run) | {n} | {wall:.2f} | | "
                    f"{EVENTS / wall:,.0f} | {rss / 1024:.0f} | {wall / base[n]:.2f}x |")
    say()


def report_page():
    """The HTML report of a 10-minute capture with a million events."""
    CACHE.mkdir(parents=True, exist_ok=True)
    events, flows, gap = 1_000_000, 50, 600_000
    path = CACHE / f"report-{events}-{flows}.parquet"
    if not path.exists():
        sh(sys.executable, "bench/gen_events.py", str(path), str(events), str(flows), "2", str(gap))
    page = CACHE / "report.html"
    say("## 6. Report page")
    say()
    say(f"`tcpcong report FILE -o PAGE --top 10` on a generated 10-minute capture of {events:,} events of "
        f"{flows} flows (about {events // flows:,} transitions per flow), next to `analyze FILE` on the same "
        f"file. {REPS} runs each: median and spread. Budget: a page under 5 MB, written in under 2 s.")
    say()
    a_med, a_lo, a_hi, a_rss = timed([BIN, "analyze", str(path)])
    r_med, r_lo, r_hi, r_rss = timed([BIN, "report", str(path), "-o", str(page)])
    size = page.stat().st_size
    say("| what | median s | spread s | peak RSS MiB | output |")
    say("|---|---:|---:|---:|---:|")
    say(f"| tcpcong analyze | {a_med:.2f} | {a_lo:.2f}-{a_hi:.2f} | {a_rss:.0f} | table |")
    say(f"| tcpcong report | {r_med:.2f} | {r_lo:.2f}-{r_hi:.2f} | {r_rss:.0f} | {size / 1e6:.2f} MB page |")
    say()
    say(f"The report costs {r_med / a_med:.1f}x analyze (two passes, the second decoding every column of "
        f"the top flows' events); the page is {size / events:.2f} bytes per event.")
    say()


def sizes(path):
    import pyarrow.parquet as pq

    say("## 4. Size")
    say()
    say("Bytes per event of the file, next to the same rows in memory (Arrow) and as JSON lines "
        "(`tcpcong events --format json`). Budget: ≤ 12 bytes per event on realistic recordings.")
    say()
    say("| recording | events | file B/event | Arrow in memory B/event | JSON lines B/event |")
    say("|---|---:|---:|---:|---:|")
    # A realistic recording larger than the fixtures: 10 s, 4 flows, 2 % loss.
    lab_file = CACHE / "lab-10s.parquet"
    with Lab("size", "--loss", "2") as lab:
        rec = subprocess.Popen([BIN, "record", "-o", str(lab_file), "--force",
                                "--netns", f"/var/run/netns/{lab.ns}"], stderr=subprocess.PIPE)
        # Attached when it says so (its banner).
        line = rec.stderr.readline()
        while line and not line.startswith(b"Recording"):
            line = rec.stderr.readline()
        if not line:
            sys.exit("bench: record did not start")
        lab.traffic(10, "--parallel", "4")
        rec.send_signal(2)
        rec.wait()
    files = sorted(Path("fixtures").glob("*.parquet")) + [lab_file, path]
    for f in files:
        n = pq.ParquetFile(f).metadata.num_rows
        mem = pq.read_table(f).nbytes
        json_bytes = 0
        if n <= 1_000_000:
            p = subprocess.run([BIN, "events", str(f), "--format", "json"], capture_output=True, check=True)
            json_bytes = len(p.stdout)
        js = f"{json_bytes / n:.0f}" if json_bytes else "(not measured: too large)"
        say(f"| {f.name} | {n:,} | {f.stat().st_size / n:.1f} | {mem / n:.0f} | {js} |")
    say()


PAIRS = int(os.environ.get("BENCH_PAIRS", "40"))


def median_interval(xs, seed=1, draws=2000):
    """The median of xs and a 95 % bootstrap interval for it."""
    import random

    rnd = random.Random(seed)
    meds = sorted(statistics.median(rnd.choices(xs, k=len(xs))) for _ in range(draws))
    return statistics.median(xs), meds[int(0.025 * draws)], meds[int(0.975 * draws) - 1]


def workload_effect(pairs=PAIRS):
    """Bulk throughput with nothing attached, with only an empty program on
    tcpcong's tracepoints (the floor: what any program there costs), and
    with `tcpcong record` running (its programs and its user space), in
    rounds whose order alternates (A B C, C B A, ...) so that a drift in
    the machine's speed falls on all three alike."""
    say("## 5. Effect on the traced workload")
    say()
    say(f"Lab bulk transfer (3 s, 1 % loss, cubic) throughput in {pairs} rounds of three runs in one "
        "namespace: nothing attached, the empty program on tcpcong's tracepoints "
        "(`bench/src/bin/floor.rs`), and `tcpcong record`; the order alternates from round to round. "
        "Ratios are per round, to the run with nothing attached; the interval is a 95 % bootstrap "
        "interval of the median ratio: a cost is real when the interval excludes 1.")
    say()
    runs = {"nothing": [], "empty program": [], "tcpcong record": []}
    with Lab("load", "--loss", "1") as lab, tempfile.TemporaryDirectory() as d:
        def measure(what, i):
            if what == "nothing":
                return int(lab.traffic(3, "--bps"))
            if what == "empty program":
                floor = subprocess.Popen([FLOOR], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                floor.stdout.readline()
                bps = int(lab.traffic(3, "--bps"))
                floor.stdin.close()
                floor.wait()
                return bps
            rec = subprocess.Popen([BIN, "record", "-o", f"{d}/w{i}.parquet"], stderr=subprocess.PIPE)
            # Attached once its banner is out.
            rec.stderr.readline()
            bps = int(lab.traffic(3, "--bps"))
            rec.send_signal(2)
            rec.wait()
            return bps

        order = list(runs)
        for i in range(pairs):
            for what in order if i % 2 == 0 else reversed(order):
                runs[what].append(measure(what, i))
    say("| | Gbit/s (median) | min | max | ratio to nothing (median) | 95 % interval |")
    say("|---|---:|---:|---:|---:|---:|")
    for name, xs in runs.items():
        ratios = [x / o for x, o in zip(xs, runs["nothing"])]
        med, lo, hi = median_interval(ratios)
        ratio = "" if name == "nothing" else f"{med:.3f} | {lo:.3f}-{hi:.3f}"
        say(f"| {name} | {statistics.median(xs) / 1e9:.2f} | {min(xs) / 1e9:.2f} | {max(xs) / 1e9:.2f} | "
            f"{ratio or ' | '} |")
    say()


IDLE_SIDE = """
import resource, socket, sys
n, port, role = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
keep = []
if role == "server":
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(4096)
    print("ready", flush=True)
    while len(keep) < n:
        keep.append(s.accept()[0])
else:
    for _ in range(n):
        keep.append(socket.create_connection(("127.0.0.1", port)))
print("ready", flush=True)
sys.stdin.read()
"""


def idle_connections(ns, n, port=7300):
    """n connected pairs in `ns` that send nothing: a server and a client
    process of n descriptors each (within the hard limit of one)."""
    side = lambda role: subprocess.Popen(  # noqa: E731
        ["ip", "netns", "exec", ns, "python3", "-c", IDLE_SIDE, str(n), str(port), role],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    server = side("server")
    assert server.stdout.readline().strip() == "ready"
    client = side("client")
    for p in (client, server):
        assert p.stdout.readline().strip() == "ready"
    return [server, client]


def snapshot_cost(conns=10_000, reps=3):
    say("## 7. Socket snapshots")
    say()
    say(f"A namespace with {conns:,} idle connections ({2 * conns:,} sockets), and the same namespace "
        "empty. `record --netns NS --duration 2` takes the capture's start and end snapshots (each "
        "file's, in a series); the longest of them, from the namespace scan to the last row read, as "
        "record reports it, next to `ss -tan` listing the same namespace's sockets (netlink "
        f"inet_diag), {reps} runs each, median (min-max). Bytes per row: the file's size over the "
        "empty namespace's, per snapshot row. The tracepoint programs are not involved: a snapshot "
        "runs in record's own thread, twice per file.")
    say()
    say("| sockets | snapshot ms | ss -tan ms | snapshot / ss | rows per snapshot | bytes per row |")
    say("|---:|---:|---:|---:|---:|---:|")
    with Lab("snap") as lab, tempfile.TemporaryDirectory() as tmp:
        path = f"/var/run/netns/{lab.ns}"
        base_size = None
        for n in (0, conns):
            procs = idle_connections(lab.ns, n) if n else []
            try:
                snap, listing, rows, size = [], [], 0, 0
                for r in range(reps):
                    out = f"{tmp}/s{n}-{r}.parquet"
                    err = subprocess.run([BIN, "record", "-o", out, "--netns", path, "--duration", "2", "-v"],
                                         check=True, text=True, capture_output=True).stderr
                    m = re.search(r"socket snapshots: (\d+) taken, (\d+) rows, the longest ([\d.]+) ms", err)
                    if not m:
                        sys.exit(f"bench: no snapshot line from record: {err}")
                    snap.append(float(m.group(3)))
                    rows = int(m.group(2)) // int(m.group(1))
                    size = os.path.getsize(out)
                    t0 = time.monotonic()
                    sh("ip", "netns", "exec", lab.ns, "ss", "-tanH")
                    listing.append((time.monotonic() - t0) * 1e3)
            finally:
                for p in procs:
                    p.stdin.close()
                    p.wait()
            base_size = size if base_size is None else base_size

            def spread(v):
                return f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"
            per_row = f"{(size - base_size) / (2 * rows):.1f}" if n and rows else ""
            ratio = statistics.median(snap) / statistics.median(listing)
            say(f"| {2 * n:,} | {spread(snap)} | {spread(listing)} | {ratio:.2f}x | {rows:,} | {per_row} |")
    say()


def fleet_dataset(events=FLEET_EVENTS):
    """FLEET_HOSTS hosts' recordings of `events` events each, laid out as
    a fleet's series are (DIR/host=NAME/date=DAY/FILE), each its own boot."""
    d = CACHE / f"fleet-{FLEET_HOSTS}x{events}"
    for i in range(FLEET_HOSTS):
        path = d / f"host=h{i}" / "date=2026-12-01" / "tcpcong-20261201T000000Z-000001.parquet"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ, BENCH_HOST=f"h{i}", BENCH_BOOT_ID=f"00000000-0000-0000-0000-00000000000{i}")
            subprocess.run([sys.executable, "bench/gen_events.py", str(path), str(events), str(FLOWS),
                            str(i + 1)], check=True, env=env, capture_output=True)
    return d


def fleet_table(lines):
    """(host, boot_id, flow) -> ns per state and changes, from JSON lines."""
    out = {}
    for line in lines.splitlines():
        d = json.loads(line)
        out[(d["host"], d["boot_id"], int(d["flow"]))] = tuple(int(d[f"{s}_ns"]) for s in STATE_NAMES) + (
            int(d["changes"]),)
    return out


def fleet():
    d = fleet_dataset()
    events = FLEET_HOSTS * FLEET_EVENTS
    say("## 8. Fleet")
    say()
    say(f"{FLEET_HOSTS} hosts' generated recordings (`bench/gen_events.py` as this version writes files: "
        f"µs `time`, host, boot_id, capture rows), {FLEET_EVENTS:,} events of {FLOWS:,} flows each, "
        "laid out as `DIR/host=NAME/date=DAY/FILE`. The whole fleet's per-flow table, full accounting: "
        f"`tcpcong analyze DIR --all --format json --threads N` ({REPS} runs: median, spread), and "
        "the Python package (`make python`) on the same files, `tcpcong.durations(DIR, threads=N)`; "
        "`schemas/durations.sql` over the rows alone in DuckDB (with `durations-duckdb.sql`) and in "
        "Spark SQL (pyspark `local[2]`, 6 GiB driver); and Spark running the package once per host "
        "(`groupBy('host').applyInArrow`, the README's job), one run each; their peak RSS is the process "
        "tree's (Python and the JVM), sampled twice a second. Each table is checked equal to analyze's, flow by flow, "
        "keyed by (host, boot_id, flow).")
    say()
    say("| what | threads | median s | spread s | events/s | peak RSS MiB | equal to analyze |")
    say("|---|---:|---:|---:|---:|---:|---|")
    want, medians = tcpcong_rows(d, events)
    with tempfile.TemporaryDirectory() as tmp:
        for name, script, threads, args in (
            ("DuckDB, durations.sql", DUCKDB_SCRIPT, (1, 2),
             lambda out, n: [f"{d}/**/*.parquet", "schemas/durations.sql", str(n), out]),
            ("Spark, the package per host", SPARK_PACKAGE_SCRIPT, (2,), lambda out, n: [str(d), out]),
            ("Spark SQL, durations.sql", SPARK_SCRIPT, (2,), lambda out, n: [str(d), "schemas/durations.sql", out]),
        ):
            path = Path(tmp) / "script.py"
            path.write_text(script)
            for n in threads:
                out = Path(tmp) / "out.jsonl"
                wall, rss = run_measured([sys.executable, str(path), *args(str(out), n)], tree=True)
                same = "yes" if fleet_table(out.read_text()) == want else "NO"
                say(f"| {name} | {n} | {wall:.2f} | | {events / wall:,.0f} | {rss / 1024:.0f} | {same} |")
    say()
    say_two_threads(medians, " (hosts are separate boots: each thread reads and computes its own). The "
                    "package's times are its call's, in a Python that has imported it; starting Python and "
                    "importing pyarrow and tcpcong add about 0.2 s to a script")
    fleet_at_scale()


ANALYZE = "tcpcong analyze"
PACKAGE = "Python package, on the files"


def tcpcong_rows(d, events):
    """The table rows of analyze (REPS runs) and the package (REPS calls in
    one process) on `d`, 1 and 2 threads: analyze's fleet table and the
    medians by (what, threads). Each package table is checked against
    analyze's."""
    want = fleet_table(sh(BIN, "analyze", str(d), "--all", "--format", "json"))
    medians = {}
    for n in (1, 2):
        med, lo, hi, rss = timed([BIN, "analyze", str(d), "--all", "--format", "json", "--threads", str(n)])
        medians[(ANALYZE, n)] = med
        say(f"| {ANALYZE} | {n} | {med:.2f} | {lo:.2f}-{hi:.2f} | {events / med:,.0f} | {rss:.0f} | |")
    with tempfile.TemporaryDirectory() as tmp:
        script, out, times = Path(tmp) / "package.py", Path(tmp) / "out.jsonl", Path(tmp) / "times.json"
        script.write_text(PACKAGE_SCRIPT)
        for n in (1, 2):
            with open(times, "w") as t:
                _, rss = run_measured([sys.executable, str(script), str(d), str(n), str(out), str(REPS)], stdout=t)
            calls = json.loads(times.read_text())
            med = statistics.median(calls)
            medians[(PACKAGE, n)] = med
            same = "yes" if fleet_table(out.read_text()) == want else "NO"
            say(f"| {PACKAGE} | {n} | {med:.2f} | {min(calls):.2f}-{max(calls):.2f} | {events / med:,.0f} | "
                f"{rss / 1024:.0f} | {same} |")
    return want, medians


def fleet_at_scale():
    """tcpcong alone on a fleet too large for the SQL engines' rows above."""
    d = fleet_dataset(FLEET_BIG_EVENTS)
    events = FLEET_HOSTS * FLEET_BIG_EVENTS
    say(f"At scale, tcpcong alone: the same layout, {FLEET_HOSTS} hosts × {FLEET_BIG_EVENTS:,} events, "
        f"analyze and the package as above; the tables checked equal.")
    say()
    say("| what | threads | median s | spread s | events/s | peak RSS MiB | equal to analyze |")
    say("|---|---:|---:|---:|---:|---:|---|")
    _, medians = tcpcong_rows(d, events)
    say()
    say_two_threads(medians)


def say_two_threads(medians, why=""):
    say(f"On two threads analyze takes {medians[(ANALYZE, 2)] / medians[(ANALYZE, 1)]:.2f} of its one-thread "
        f"time, the package {medians[(PACKAGE, 2)] / medians[(PACKAGE, 1)]:.2f}{why}.")
    say()


def main():
    os.chdir(Path(__file__).resolve().parent.parent)
    for b in (BIN, FLOOR, SYNTH):
        if not Path(b).exists():
            sys.exit(f"bench: {b} is missing: run `cargo build --release --workspace --bins` (make bench does)")
    if "fleet" in PARTS and subprocess.run([sys.executable, "-c", "import tcpcong"], capture_output=True).returncode:
        sys.exit("bench: the Python package is not importable: run `make python` and put target/python on "
                 "PYTHONPATH (make bench does)")
    say("# tcpcong benchmarks")
    say()
    say(f"Generated by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{platform.node()}, Linux {platform.release()}, {os.cpu_count()} CPUs, "
        f"tcpcong {sh(BIN, '--version').split()[-1]}. Every figure is a ratio to a baseline measured "
        "in the same run; absolute numbers vary with the machine's other load.")
    say()
    if "cost" in PARTS or "headline" in PARTS:
        headline_cost()
        parts_cost()
    if "cost" in PARTS:
        kernel_cost()
    if "cost" in PARTS or "evidence" in PARTS:
        evidence_cost()
    if "pipeline" in PARTS:
        pipeline()
    if "analyze" in PARTS:
        analyze_speed(generated_file())
    if "load" in PARTS:
        workload_effect()
    if "report" in PARTS:
        report_page()
    if "snapshot" in PARTS:
        snapshot_cost()
    if "fleet" in PARTS:
        fleet()
    # Last: it loads a recording into this process, and a child's peak RSS
    # counts its parent's pages up to its exec (fork or vfork alike), which
    # would inflate every figure measured after it.
    if "size" in PARTS:
        sizes(generated_file())
    if "BENCH_PARTS" not in os.environ:
        Path("BENCHMARKS.md").write_text("\n".join(out_lines) + "\n")


if __name__ == "__main__":
    main()
