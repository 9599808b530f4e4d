"""`tcpcong serve` scraped by a real Prometheus (Debian's), both on
127.0.0.1 inside a namespace of the test's own, while lab traffic congests
a second one (the scrapes are TCP flows too: they stay out of the traced
namespace) and serve records the same events (-o DIR/). Prometheus's HTTP
API is then asked for the counters, and they are checked against `analyze`
of that recording: seconds per state, transitions, chain breaks, lost
events, and flows per state once every flow has closed; and episodes by
cause, their durations' histogram and its exemplars against `analyze
--episodes` of it. Root and BPF: in CI this fails, never skips, without
them.
"""

import json
import os
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import REPO, binary, get, stop, wait_for

LAB = REPO / "lab" / "lab.sh"
STATES = ["open", "disorder", "cwr", "recovery", "loss"]
SCRAPE_S = 1


def lab(*args, check=True):
    return subprocess.run(["bash", str(LAB), *args], capture_output=True, text=True, check=check, timeout=120)


def query(ns: str, promql: str) -> list[dict]:
    r = json.loads(get(ns, "http://127.0.0.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
    assert r["status"] == "success", r
    return r["data"]["result"]


def by_label(result: list[dict], label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in result}


@pytest.fixture
def served(tmp_path, request):
    """A lab, tcpcong serve in it (recording), and Prometheus scraping it;
    serve's label flags are the test's parameter, if it gives one."""
    by = getattr(request, "param", ["--by", "lport", "--max-keys", "2"])
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("needs root (BPF, namespaces)")
    ns = f"tc-metrics-{os.getpid()}"
    traced = f"tc-traced-{os.getpid()}"
    out = tmp_path / "series"
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n"
        f"  scrape_interval: {SCRAPE_S}s\n"
        "scrape_configs:\n"
        "  - job_name: tcpcong\n"
        "    static_configs:\n"
        "      - targets: ['127.0.0.1:9464']\n"
    )
    procs = []
    lab("up", ns)
    lab("up", traced, "--loss", "3")
    try:
        serve = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(binary()), "serve", "--listen", "127.0.0.1:9464",
             "--netns", f"/var/run/netns/{traced}", "-o", f"{out}/", *by],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(serve)
        prom = subprocess.Popen(
            ["ip", "netns", "exec", ns, "prometheus", f"--config.file={cfg}", "--enable-feature=exemplar-storage",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--web.listen-address=127.0.0.1:9090"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(prom)
        wait_for("serve to answer", lambda: "# EOF" in get(ns, "http://127.0.0.1:9464/metrics"))
        wait_for("prometheus to be ready", lambda: "Ready" in get(ns, "http://127.0.0.1:9090/-/ready"))
        wait_for("a first scrape", lambda: query(ns, 'up{job="tcpcong"} == 1'))
        yield ns, traced, out, serve
    finally:
        stop(procs)
        lab("down", ns, check=False)
        lab("down", traced, check=False)


def settle(ns: str, traced: str):
    """Waits until every flow has closed and the counters stopped moving:
    every socket of the lab closed in the kernel (a FIN lost to the loss
    rule is resent after the transfer's end), serve closed the interval of
    the last close and Prometheus scraped it."""
    p = lab("settle", traced, check=False)
    assert p.returncode == 0, p.stderr
    last = [None, time.monotonic()]

    def settled():
        v = query(ns, "sum(tcpcong_state_seconds_total)")
        v = v and v[0]["value"][1]
        if v != last[0]:
            last[:] = [v, time.monotonic()]
        # Unchanged over three scrapes, and no flow open any more.
        quiet = v is not None and time.monotonic() - last[1] > 3 * SCRAPE_S
        return quiet and not query(ns, "sum(tcpcong_flows) > 0")

    try:
        wait_for("the counters to settle", settled)
    except pytest.fail.Exception:
        # What kept them from settling, for whoever reads the failure.
        open_flows = query(ns, "tcpcong_flows > 0")
        lost = query(ns, "tcpcong_lost_events_total")
        sockets = subprocess.run(["ip", "netns", "exec", traced, "ss", "-tanH"],
                                 capture_output=True, text=True).stdout
        pytest.fail(f"the counters did not settle in 60 s: last total {last[0]}, flows still open "
                    f"{open_flows}, lost events {lost}, the namespace's sockets:\n{sockets}")


def stopped(serve):
    serve.send_signal(signal.SIGTERM)
    _, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err
    return err


def analyze_json(*args) -> list[dict]:
    p = subprocess.run([str(binary()), "analyze", *map(str, args), "--format", "json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines()]


def test_prometheus_scrapes_what_analyze_computes_from_the_same_run(served):
    ns, traced, out, serve = served
    lab("traffic", traced, "3", "--parallel", "3")
    settle(ns, traced)
    seconds = by_label(query(ns, "sum by (state) (tcpcong_state_seconds_total)"), "state")
    transitions = query(ns, "sum(tcpcong_transitions_total)")
    breaks = query(ns, "tcpcong_chain_breaks_total")
    lost = query(ns, "tcpcong_lost_events_total")
    lports = by_label(query(ns, "sum by (lport) (tcpcong_state_seconds_total)"), "lport")
    moves = query(ns, "tcpcong_transitions_total")

    err = stopped(serve)
    # In serve's 1 s intervals: a flow is timed from the interval it is
    # first seen in, as in any windowed report (live mode's, analyze's).
    rows = analyze_json(out, "--all", "1")
    assert rows, "analyze found flows"
    want = {s: sum(r[f"{s}_ns"] for r in rows) / 1e9 for s in STATES}
    print("state  prometheus  analyze (s)")
    for s in STATES:
        print(f"{s:9} {seconds.get(s, 0.0):.9f} {want[s]:.9f}")
        # The same engine on the same events: equal, up to float sums.
        assert abs(seconds.get(s, 0.0) - want[s]) < 1e-6, (s, seconds, want)
    assert want["recovery"] > 0, "real congestion"
    assert float(transitions[0]["value"][1]) == sum(r["changes"] for r in rows)
    assert float(breaks[0]["value"][1]) == sum(r["mismatches"] for r in rows)
    assert float(lost[0]["value"][1]) == 0 == rows[0]["lost_events"], (lost, rows[0]["lost_events"], err)
    # --by lport --max-keys 2: two ports of their own, the rest beyond the
    # limit, and nothing lost by the cap.
    assert len(lports) == 3 and "(beyond max keys)" in lports, lports
    assert abs(sum(lports.values()) - sum(want.values())) < 1e-6
    # Every transition pair is a real change.
    assert all(m["metric"]["from"] != m["metric"]["to"] for m in moves)


@pytest.mark.parametrize("served", [["--by", "process"]], indirect=True)
def test_serve_names_owners_as_the_windowed_report_does(served):
    """The lab's server only receives: its sockets' owner, learnt at their
    accept, reaches the engine with their next record, their close. serve
    labels the intervals closed before then "(owner not known)", and so
    does analyze in the same intervals (--all: serve counts every flow);
    analyze without an interval names the owner known at the end."""
    ns, traced, out, serve = served
    lab("traffic", traced, "3", "--parallel", "2")
    settle(ns, traced)
    seconds = by_label(query(ns, "sum by (process) (tcpcong_state_seconds_total)"), "process")
    stopped(serve)
    windowed: dict[str, float] = {}
    for g in analyze_json(out, "--all", "--by", "process", "1"):
        windowed[g["key"]] = windowed.get(g["key"], 0) + sum(g[f"{s}_ns"] for s in STATES) / 1e9
    print("process  serve  analyze 1 (s)")
    for k in sorted(set(seconds) | set(windowed)):
        print(f"{k:20} {seconds.get(k, 0.0):.9f} {windowed.get(k, 0.0):.9f}")
    assert seconds.keys() == windowed.keys()
    for k, v in windowed.items():
        assert abs(seconds[k] - v) < 1e-6, (k, seconds, windowed)
    assert seconds.get("(owner not known)", 0) > 0, seconds
    whole = {g["key"] for g in analyze_json(out, "--all", "--by", "process")}
    assert whole == {"iperf3"}, whole


def test_episodes_and_their_exemplars_are_analyzes_of_the_same_run(served):
    """Episodes counted by cause as they complete, their durations' buckets
    and sums, and every bucket's exemplar (Prometheus's exemplar storage)
    naming an episode of that cause and length that `analyze --episodes`
    finds in serve's own recording."""
    ns, traced, out, serve = served
    lab("traffic", traced, "3", "--parallel", "3")
    settle(ns, traced)
    counts = by_label(query(ns, "sum by (cause) (tcpcong_episodes_total)"), "cause")
    sums = by_label(query(ns, "sum by (cause) (tcpcong_episode_seconds_sum)"), "cause")
    buckets = {(r["metric"]["cause"], r["metric"]["le"]): float(r["value"][1])
               for r in query(ns, "sum by (cause, le) (tcpcong_episode_seconds_bucket)")}
    now = time.time()
    found = json.loads(get(ns, "http://127.0.0.1:9090/api/v1/query_exemplars?" + urllib.parse.urlencode(
        {"query": "tcpcong_episode_seconds_bucket", "start": now - 3600, "end": now + 60})))
    assert found["status"] == "success", found
    stopped(serve)

    episodes = analyze_json(out, "--episodes")
    assert episodes, "analyze found episodes"
    # Every flow closed: no episode was still going when the run ended.
    assert {e["ended"] for e in episodes} <= {"open", "close"}, {e["ended"] for e in episodes}
    want: dict[str, list[dict]] = {}
    for e in episodes:
        want.setdefault(e["cause"], []).append(e)
    print("cause                          prometheus  analyze")
    for c in sorted(set(counts) | set(want)):
        print(f"{c:30} {counts.get(c, 0):10.0f} {len(want.get(c, [])):8}")
    assert counts == {c: float(len(es)) for c, es in want.items()}
    assert "local-drop:netfilter_drop" in counts, counts
    for c, es in want.items():
        assert abs(sums[c] - sum(e["duration_ns"] for e in es) / 1e9) < 1e-6, c
    for (c, le), n in buckets.items():
        bound = float("inf") if le == "+Inf" else float(le)
        assert n == sum(1 for e in want[c] if e["duration_ns"] / 1e9 <= bound), (c, le)

    # The exemplars: each an episode of the series' cause and length, on
    # this host and boot, and every bucket an episode fell in (its lowest
    # bound at or over the duration) has one.
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    bounds = sorted({float("inf") if le == "+Inf" else float(le) for _, le in buckets})
    with_exemplars = set()
    for series in found["data"]:
        c, le = series["seriesLabels"]["cause"], series["seriesLabels"]["le"]
        for x in series["exemplars"]:
            labels = x["labels"]
            assert labels["boot_id"] == boot_id, labels
            assert labels["host"] == episodes[0]["host"], labels
            match = [e for e in want[c] if e["flow"] == int(labels["flow"])
                     and abs(e["duration_ns"] / 1e9 - float(x["value"])) < 1e-9]
            assert match, (c, x)
            with_exemplars.add((c, float(le)))
    fell_in = {(c, next(b for b in bounds if e["duration_ns"] / 1e9 <= b)) for c, es in want.items() for e in es}
    print(f"{len(with_exemplars)} buckets with exemplars")
    assert with_exemplars == fell_in
