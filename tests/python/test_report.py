"""`tcpcong report` in a real browser: Debian's chromium, headless, driven
through chromedriver (selenium). For the report of the fixtures and of a
fresh lab recording (root and BPF: in CI this fails, never skips, without
them), checked through the DOM:

* no console errors, and nothing loaded but the page itself;
* the top flows table holds analyze's numbers and owners (`analyze --all
  --format json`), flow by flow, and sorts when a column is clicked;
* every top flow has a timeline whose bands add up, state by state, to its
  time in that state; the capture-wide strip adds up to the totals;
* the transition matrix equals a count of the raw events (pyarrow), the
  dwell histograms equal `analyze -d --format json`;
* the episodes: per cause, counts, time and percentiles as `analyze
  --episodes` finds them (and as this test computes from its rows), the
  longest ones its longest, each drawn flow's marks its episodes, and its
  drop ticks the drops a computation from the raw rows credits it with.

A screenshot of each page is written to target/test-artifacts/ (kept, so a
failure can be looked at).
"""

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from conftest import FIXTURES, REPO, binary

ARTIFACTS = REPO / "target" / "test-artifacts"
STATES = ["open", "disorder", "cwr", "recovery", "loss"]
LAB = REPO / "lab" / "lab.sh"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # Selenium must not look for a driver on the network: the Debian one.
    os.environ["SE_AVOID_STATS"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,3200",
              f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    yield driver
    driver.quit()


def container_label(r: dict) -> str:
    """A flow's container as the page names it (as analyze --by container
    groups it): in a pod NAMESPACE/POD/NAME, its short id where unnamed."""
    if not r["container_id"]:
        return ""
    name = r["container"] or r["container_id"][:12]
    return f"{r['k8s_namespace']}/{r['pod']}/{name}" if r["pod"] else name


def tcpcong(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary()), *map(str, args)], capture_output=True, text=True)


def analyze_rows(inputs) -> dict:
    p = tcpcong("analyze", *inputs, "--all", "--format", "json")
    assert p.returncode == 0, p.stderr
    return {r["flow"]: r for r in map(json.loads, p.stdout.splitlines())}


def analyze_hist(inputs) -> dict:
    p = tcpcong("analyze", *inputs, "-d", "--format", "json")
    assert p.returncode == 0, p.stderr
    return {h["state"]: {i + 1: b["count"] for i, b in enumerate(h["buckets"])}
            for h in map(json.loads, p.stdout.splitlines())}


def raw_matrix(files) -> Counter:
    """ca_state events per (old, new), read straight from the files."""
    c = Counter()
    for f in files:
        t = pq.read_table(f, columns=["kind", "old_state", "new_state"]).to_pylist()
        c.update((r["old_state"], r["new_state"]) for r in t if r["kind"] == "ca_state")
    return c


def analyze_episodes(inputs, *args) -> list[dict]:
    p = tcpcong("analyze", *inputs, "--episodes", "--format", "json", *args)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines()]


def nearest_rank(values: list[int], pct: int) -> int:
    values = sorted(values)
    return values[max(1, -(-len(values) * pct // 100)) - 1]


def drops_by_flow(files) -> Counter:
    """Segments this host dropped, per flow they are evidence of, from the
    raw rows in time order: one dropped on its way in is its sender's, the
    flow whose local end is the segment's source, where a flow of this
    host had that end before."""
    cols = ["ktime_ns", "boot_id", "kind", "flow", "netns", "saddr", "sport", "daddr", "dport",
            "old_state", "segs"]
    rows = sorted((r for f in files for r in pq.read_table(f, columns=cols).to_pylist()),
                  key=lambda r: r["ktime_ns"])
    ends, port, out = {}, {}, Counter()
    for r in rows:
        key = (r["boot_id"], r["flow"])
        if r["kind"] == "drop":
            peer = (r["boot_id"], r["netns"], r["daddr"], r["dport"], r["saddr"], r["sport"])
            whose = ends.get(peer, key) if r["old_state"] == "rx" else key
            out[whose] += max(r["segs"], 1)
        elif r["sport"] and port.get(key) != r["sport"]:
            port[key] = r["sport"]
            ends[(r["boot_id"], r["netns"], r["saddr"], r["sport"], r["daddr"], r["dport"])] = key
    return out


def check_episodes(driver, inputs, files):
    rows = analyze_episodes(inputs)
    assert rows, "episodes"
    total = driver.find_element(By.ID, "episode-total")
    assert int(total.get_attribute("data-episodes")) == len(rows)
    assert int(total.get_attribute("data-ns")) == sum(e["duration_ns"] for e in rows)

    # Per cause: analyze's groups, and the same computed here from its rows.
    causes = driver.execute_script("""
        return Array.from(document.querySelectorAll('#causes tbody tr')).map(tr => {
          const v = Array.from(tr.querySelectorAll('td[data-v]')).map(td => td.dataset.v);
          return [tr.dataset.cause, v.map(Number)]; });""")
    groups = analyze_episodes(inputs, "--by", "cause")
    want = [[g["key"], [g["episodes"], g["total_ns"], g["median_ns"], g["p99_ns"], g["retransmits"],
                        g["dropped"], g["ce_marks"]]] for g in groups]
    assert causes == want
    by_cause: dict[str, list[int]] = {}
    for e in rows:
        by_cause.setdefault(e["cause"], []).append(e["duration_ns"])
    for cause, (n, ns, median, p99, *_) in causes:
        d = by_cause[cause]
        assert (n, ns, median, p99) == (len(d), sum(d), nearest_rank(d, 50), nearest_rank(d, 99)), cause

    # The longest: analyze's durations, longest first, each one of its rows.
    longest = driver.execute_script("""
        return Array.from(document.querySelectorAll('#longest tbody tr')).map(tr =>
          [Number(tr.dataset.flow), Number(tr.dataset.startKtimeNs), tr.dataset.cause,
           Number(tr.querySelector('td[data-v]').dataset.v)]);""")
    durations = sorted((e["duration_ns"] for e in rows), reverse=True)[:10]
    assert [x[3] for x in longest] == durations
    index = {(e["flow"], e["start_ktime_ns"], e["cause"]): e["duration_ns"] for e in rows}
    assert all(index.get(tuple(x[:3])) == x[3] for x in longest), longest

    # Each drawn flow: its marks hold its episodes, cause by cause; its drop
    # ticks the drops the raw rows credit it with.
    marks = driver.execute_script("""
        return Array.from(document.querySelectorAll('figure.flow')).map(f => [Number(f.dataset.flow),
          Array.from(f.querySelectorAll('g.episodes rect')).map(r =>
            [r.dataset.cause, Number(r.dataset.episodes), Number(r.dataset.ns)]),
          Array.from(f.querySelectorAll('rect.drop')).reduce((n, r) => n + Number(r.dataset.v), 0)]);""")
    assert marks
    dropped = drops_by_flow(files)
    boot = pq.read_table(files[0], columns=["boot_id"]).column(0)[0].as_py()
    for flow, drawn, drops in marks:
        mine = [e for e in rows if e["flow"] == flow]
        for cause in {e["cause"] for e in mine} | {m[0] for m in drawn}:
            got = [(n, ns) for c, n, ns in drawn if c == cause]
            of = [e["duration_ns"] for e in mine if e["cause"] == cause]
            assert (sum(n for n, _ in got), sum(ns for _, ns in got)) == (len(of), sum(of)), (flow, cause)
        assert drops == dropped[(boot, flow)], flow


def open_report(driver, inputs, name, top=10):
    out = ARTIFACTS / f"report-{name}.html"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # The last run's page is replaced: it is kept for people to look at.
    p = tcpcong("report", *inputs, "-o", out, "--top", top, "--force")
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stderr
    driver.get_log("performance")  # drop what came before
    driver.get(out.as_uri())
    driver.save_screenshot(str(ARTIFACTS / f"report-{name}.png"))
    return out


# Time per state drawn inside an element: runs carry their state and
# nanoseconds, a mixed column's hover target the nanoseconds of each state
# in state order.
SUMS = """
    function sums(root) {
      const names = ['open', 'disorder', 'cwr', 'recovery', 'loss'];
      const out = {};
      const add = (k, v) => out[k] = (out[k] || 0n) + BigInt(v);
      root.querySelectorAll('rect[data-state]').forEach(e => add(e.dataset.state, e.dataset.ns));
      root.querySelectorAll('rect.hit[data-ns]').forEach(e =>
        e.dataset.ns.split(',').forEach((v, i) => add(names[i], v)));
      return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.toString()]));
    }
"""


def check_report(driver, inputs, files, name):
    page = open_report(driver, inputs, name)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    urls = set()
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        url = msg["params"].get("request", {}).get("url", "")
        # chrome:// and data: never leave the browser (its own blank page and
        # placeholder images); the page itself holds no data: URL (below).
        if msg["method"] == "Network.requestWillBeSent" and not url.startswith(("chrome:", "data:")):
            urls.add(url)
    assert urls == {page.as_uri()}, f"the page loaded more than itself: {urls}"
    assert "data:" not in page.read_text()

    rows = analyze_rows(inputs)
    shown = driver.execute_script("""
        return Array.from(document.querySelectorAll('#top tbody tr')).map(tr => {
          const r = {flow: tr.dataset.flow};
          tr.querySelectorAll('td[data-state]').forEach(td => r[td.dataset.state] = td.dataset.v);
          const tds = tr.querySelectorAll('td');
          r.process = tds[6].dataset.v; r.pid = tds[6].dataset.pid;
          r.changes = tds[12].dataset.v; r.mismatches = tds[13].dataset.v;
          r.container = tds[14].dataset.v;
          return r; });""")
    assert shown, "no top flows"
    trouble = lambda r: r["loss_ns"] + r["recovery_ns"]
    # The page's top flows are analyze's flows with the most loss + recovery.
    # (then by changes), among those with a change or such time.
    storied = [r for r in rows.values() if r["changes"] or trouble(r)]
    want = sorted(storied, key=lambda r: (-trouble(r), -r["changes"], r["flow"]))[:10]
    assert [int(s["flow"]) for s in shown] == [r["flow"] for r in want]
    for s in shown:
        r = rows[int(s["flow"])]
        for st in STATES:
            assert int(s[st]) == r[f"{st}_ns"], (s, r)
        assert (int(s["changes"]), int(s["mismatches"])) == (r["changes"], r["mismatches"])
        # The owner analyze names (none in the fixtures, recorded before owners were).
        assert int(s["pid"]) == r["pid"]
        assert s["process"] == (f"{r['comm']} ({r['pid']})" if r["pid"] else "")
        assert s["container"] == container_label(r), (s, r)

    # Every top flow's bands add up to its time in each state.
    for s in shown:
        sums = driver.execute_script(SUMS + """
            const f = document.getElementById('flow-' + arguments[0]);
            if (!f) return null;
            return sums(f.querySelector('g.bands'));""", s["flow"])
        assert sums is not None, f"flow {s['flow']} has no timeline"
        r = rows[int(s["flow"])]
        assert {st: int(sums.get(st, 0)) for st in STATES} == {st: r[f"{st}_ns"] for st in STATES}

    # The strip and the totals: every flow's time, state by state.
    totals = {st: sum(r[f"{st}_ns"] for r in rows.values()) for st in STATES}
    strip = driver.execute_script(SUMS + "return sums(document.getElementById('strip'));")
    assert {st: int(strip.get(st, 0)) for st in STATES} == totals
    bar = {e.get_attribute("data-state"): int(e.get_attribute("data-ns"))
           for e in driver.find_elements(By.CSS_SELECTOR, "#totals [data-state]")}
    assert bar == totals

    matrix = {(td.get_attribute("data-from"), td.get_attribute("data-to")): int(td.get_attribute("data-v"))
              for td in driver.find_elements(By.CSS_SELECTOR, "#matrix td")}
    raw = raw_matrix(files)
    assert matrix == {(a, b): raw.get((a, b), 0) for a in STATES for b in STATES}
    assert sum(matrix.values()) > 0

    hist = analyze_hist(inputs)
    for st in STATES:
        cells = driver.find_elements(By.CSS_SELECTOR, f"table.hist[data-state={st}] td[data-slot]")
        drawn = {int(c.get_attribute("data-slot")): int(c.get_attribute("data-v")) for c in cells}
        assert drawn == hist.get(st, {}), st

    check_episodes(driver, inputs, files)

    # Sorting: by loss, ascending then descending.
    head = driver.find_element(By.CSS_SELECTOR, "#top th[data-col='11']")
    for order in (1, -1):
        head.click()
        vals = [int(td.get_attribute("data-v"))
                for td in driver.find_elements(By.CSS_SELECTOR, "#top tbody td[data-state=loss]")]
        assert vals == sorted(vals, reverse=order < 0), vals
    return driver


def test_report_of_the_fixtures_in_a_browser(browser):
    files = sorted(FIXTURES.glob("*.parquet"))
    check_report(browser, [FIXTURES], files, "fixtures")
    # The fixtures record no loss: the page says so, quietly.
    assert browser.find_element(By.ID, "losses").get_attribute("data-lost") == "0"


def lab(*args, check=True):
    return subprocess.run(["bash", str(LAB), *args], capture_output=True, text=True, check=check, timeout=120)


def test_report_of_a_fresh_lab_recording_in_a_browser(browser, tmp_path):
    ns = f"tc-report-{os.getpid()}"
    out = tmp_path / "lab.parquet"
    lab("up", ns, "--loss", "3")
    try:
        rec = subprocess.Popen([str(binary()), "record", "-o", str(out), "--netns", f"/var/run/netns/{ns}",
                                "--duration", "7"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        for line in rec.stderr:
            if line.startswith("Recording TCP congestion-state transitions") or time.monotonic() > deadline:
                break
        lab("traffic", ns, "4", "--parallel", "4")
        _, err = rec.communicate(timeout=60)
        assert rec.returncode == 0, err
    finally:
        lab("down", ns, check=False)
    check_report(browser, [out], [out], "lab")
    flows = browser.find_elements(By.CSS_SELECTOR, "figure.flow")
    assert len(flows) >= 4, "four iperf3 streams and their server side"
    # Real congestion: the top flow spent time in recovery.
    assert int(browser.find_element(By.CSS_SELECTOR, "#top tbody td[data-state=recovery]").get_attribute("data-v")) > 0


def test_bad_inputs_leave_no_page(tmp_path):
    out = tmp_path / "r.html"
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    p = tcpcong("report", bad, "-o", out)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    out.write_text("old page")
    p = tcpcong("report", FIXTURES / "ipv4-loss.parquet", "-o", out)
    assert p.returncode == 1 and "already exists: pass --force" in p.stderr, p.stderr
    # Even when it may be replaced, a report that fails leaves it as it was.
    p = tcpcong("report", FIXTURES / "ipv4-loss.parquet", "-o", out, "--force", "--since", "2099-01-01T00:00:00Z")
    assert p.returncode == 2, p.stderr
    assert out.read_text() == "old page"
    p = tcpcong("report", FIXTURES / "ipv4-loss.parquet", "-o", tmp_path / "no" / "such" / "dir.html")
    assert p.returncode == 1 and "dir.html" in p.stderr, p.stderr
    # "-" is not standard output here: a page is a file, and no file is
    # named "-" in the current folder.
    for args in (["report", FIXTURES / "ipv4-loss.parquet"],
                 ["analyze", FIXTURES / "ipv4-loss.parquet", "--format", "parquet"]):
        p = subprocess.run([str(binary()), *map(str, args), "-o", "-"], cwd=tmp_path,
                           capture_output=True, text=True)
        assert p.returncode == 2 and "not to standard output" in p.stderr, p.stderr
        assert not (tmp_path / "-").exists()
