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
  dwell histograms equal `analyze -d --format json`.

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


def open_report(driver, inputs, name, top=10):
    out = ARTIFACTS / f"report-{name}.html"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    p = tcpcong("report", *inputs, "-o", out, "--top", top)
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
    p = tcpcong("report", FIXTURES / "ipv4-loss.parquet", "-o", out, "--since", "2099-01-01T00:00:00Z")
    assert p.returncode == 2, p.stderr
    assert out.read_text() == "old page"
    p = tcpcong("report", FIXTURES / "ipv4-loss.parquet", "-o", tmp_path / "no" / "such" / "dir.html")
    assert p.returncode == 1 and "dir.html" in p.stderr, p.stderr
