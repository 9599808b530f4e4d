"""Shared helpers for the interop tests: paths, the binary, the published
schema, and a writer for synthetic recordings (edge cases the lab fixtures
do not contain), built with pyarrow exactly as schema v1 prescribes."""

import copy
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
SCHEMAS = REPO / "schemas"
FIXTURE_FILES = sorted(FIXTURES.glob("*.parquet"))
# One of schema v1's first files, without what was added to v1 since.
COMPAT = REPO / "tests" / "compat" / "v1-first-multi-flow.parquet"
# Every fixture with whether it is in the current layout.
LAYOUTS = [(p, True) for p in FIXTURE_FILES] + [(COMPAT, False)]
LAYOUT_IDS = [p.stem for p, _ in LAYOUTS]

MS = 1_000_000


def binary() -> Path:
    p = Path(os.environ.get("TCPCONG", "target/debug/tcpcong"))
    return p if p.is_absolute() else REPO / p


def wait_for(what, ok, seconds=60, seen=lambda: ""):
    """Polls `ok` until it holds (an OSError counts as not yet); a
    timeout says what `seen` last returns."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}{seen()}")


def get(ns: str, url: str) -> str:
    """An HTTP GET from inside the namespace (its loopback is not ours)."""
    code = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
    p = subprocess.run(["ip", "netns", "exec", ns, "python3", "-c", code, url],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise OSError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "GET failed")
    return p.stdout


def stop(procs):
    """Ends processes a test started: SIGTERM, then SIGKILL after 30 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def schema_doc() -> dict:
    return json.loads((SCHEMAS / "events-v1.json").read_text())


ARROW_TYPES = {
    "timestamp[ns, tz=UTC]": pa.timestamp("ns", tz="UTC"),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    "uint64": pa.uint64(),
    "uint32": pa.uint32(),
    "uint16": pa.uint16(),
    "uint8": pa.uint8(),
    "int32": pa.int32(),
    "string": pa.string(),
}


def arrow_schema_from_doc(metadata: dict | None = None, current: bool = True) -> pa.Schema:
    """The documented schema; with current=False without the columns added
    to v1 later (what older recordings, the fixtures among them, have)."""
    # Older files have a column's type before it changed.
    fields = [
        pa.field(c["name"], ARROW_TYPES[c["type"] if current else c.get("type_before", c["type"])],
                 nullable=c["nullable"])
        for c in schema_doc()["columns"]
        if current or not c.get("added_later")
    ]
    md = {"tcpcong": json.dumps(metadata)} if metadata is not None else None
    return pa.schema(fields, metadata=md)


def fixture_meta(path: Path = FIXTURES / "ipv4-loss.parquet") -> dict:
    return json.loads(pq.read_schema(path).metadata[b"tcpcong"])


def run_analyze(inputs, accounting: str, every_flow: bool = True) -> list[dict]:
    """analyze's JSON rows, with --all unless `every_flow` is False."""
    exe = binary()
    if not exe.exists():
        pytest.fail(f"tcpcong binary not found at {exe} (set TCPCONG)")
    out = subprocess.run(
        [str(exe), "analyze", *map(str, inputs), *(["--all"] if every_flow else []), "--format", "json",
         "--accounting", accounting],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def assert_rows_are_json(got: list[dict], want: list[dict]):
    """The rows of a duration table (analyze's Parquet table, the Python
    package's) are analyze's JSON rows, in order: the same columns and
    values, the times in microseconds (Spark's) where JSON has ns."""
    import pandas as pd
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g, w = dict(g), dict(w)
        for k in ("window_start", "window_end"):
            g[k] = pd.Timestamp(g[k]).isoformat().replace("+00:00", "Z")
            w[k] = pd.Timestamp(w[k]).floor("us").isoformat().replace("+00:00", "Z")
        assert g == w


def write_table(path: Path, table: pa.Table, meta: dict) -> Path:
    """Writes `table` as a recording with `meta` (events, snapshots, flows
    and sorted filled). A table of the current schema also gets the rows
    that open and close the capture (kind 'capture', the metadata in their
    capture column), each at its time among the others, as the writer
    places them."""
    meta = copy.deepcopy(meta)
    kinds = table.column("kind").to_pylist()
    meta["events"] = sum(k in ("ca_state", "tcp_state", "retransmit", "drop", "reset") for k in kinds)
    meta["snapshots"] = kinds.count("snapshot")
    meta["flows"] = len(set(table.column("flow").to_pylist()))
    if "capture" in table.column_names:
        meta["schema_minor"] = 4
        table = with_capture_rows(table, meta)
    k = table.column("ktime_ns").to_pylist()
    meta["sorted"] = all(a <= b for a, b in zip(k, k[1:]))
    if "capture" in table.column_names:
        # the end row says what the footer says
        table = with_capture_rows(table.filter(pa.compute.not_equal(table.column("kind"), "capture")), meta)
    table = table.replace_schema_metadata({"tcpcong": json.dumps(meta)})
    pq.write_table(table, path, compression="zstd")
    return path


def with_capture_rows(table: pa.Table, meta: dict) -> pa.Table:
    ti = table.column_names.index("time")
    rows = table.set_column(ti, "time", table.column("time").cast(pa.int64())).to_pylist()
    off = meta["clock_offset_ns"]

    def capture_row(ktime, which, m):
        row = {c: (0 if pa.types.is_integer(table.schema.field(c).type) else "") for c in table.column_names}
        row.update(time=(ktime + off) // 1000, ktime_ns=ktime, kind="capture", new_state=which,
                   host=meta["hostname"], boot_id=meta["boot_id"], capture=json.dumps(m))
        return row
    start = {k: v for k, v in meta.items() if k not in ("events", "snapshots", "flows", "sorted")}
    at = next((i for i, r in enumerate(rows) if r["ktime_ns"] >= meta["start_ktime_ns"]), len(rows))
    rows.insert(at, capture_row(meta["start_ktime_ns"], "start", start))
    rows.append(capture_row(meta["end_ktime_ns"], "end", meta))
    cols = {c: [r[c] for r in rows] for c in table.column_names}
    cols["time"] = pa.array(cols["time"], pa.int64()).cast(table.schema.field("time").type)
    return pa.Table.from_pydict(cols, schema=table.schema)


def modernize(path: Path, out: Path, host: str, boot_id: str, drop_every: int = 0) -> Path:
    """A fixture as this version writes it, as if recorded on `host` in boot
    `boot_id`: a file of v1's first layout gets time in microseconds, the
    capture rows and zeros for the other new columns; a current one keeps
    its rows (new capture rows replace its own). With `drop_every` N,
    every Nth ca_state row is left out (lost events)."""
    t = pq.read_table(path)
    current = t.schema.field("time").type == pa.timestamp("us", tz="UTC")
    if current:
        t = t.filter(pa.compute.not_equal(t.column("kind"), "capture"))
    meta = fixture_meta(path)
    meta.update(hostname=host, boot_id=boot_id)
    schema = arrow_schema_from_doc()
    n = t.num_rows
    cols = {}
    for f in schema:
        if f.name == "time" and not current:
            ns = t.column("time").cast(pa.int64()).to_pylist()
            cols["time"] = pa.array([v // 1000 for v in ns], pa.int64()).cast(f.type)
        elif f.name in ("host", "boot_id"):
            cols[f.name] = pa.array([meta["hostname" if f.name == "host" else "boot_id"]] * n)
        elif f.name in t.column_names:
            cols[f.name] = t.column(f.name)
        else:
            cols[f.name] = pa.array(["" if f.type == pa.string() else 0] * n, f.type)
    table = pa.Table.from_pydict(cols, schema=schema)
    if drop_every:
        ca = [i for i, k in enumerate(table.column("kind").to_pylist()) if k == "ca_state"]
        drop = set(ca[drop_every - 1::drop_every])
        table = table.take([i for i in range(n) if i not in drop])
    return write_table(out, table, meta)


def write_events(path: Path, events: list[tuple], meta: dict) -> Path:
    """Writes hand-made events.

    Each event is (ktime_ns, flow, kind, old, new, family, saddr, sport,
    daddr, dport); the TCP fields get plausible constants, and columns
    this does not name (a counter added later) zero or empty.
    """
    columns = schema_doc()["columns"]
    cols = {c["name"]: [] for c in columns}
    blank = {c["name"]: "" if c["type"] == "string" else 0 for c in columns}
    off = meta["clock_offset_ns"]
    for (kt, flow, kind, old, new, fam, sa, sp, da, dp) in events:
        row = dict(time=(kt + off) // 1000, ktime_ns=kt, kind=kind, flow=flow, family=fam,
                   saddr=sa, daddr=da, sport=sp, dport=dp, old_state=old,
                   new_state=new, cpu=0, netns=4026531840, cgroup=1,
                   cong_algo="cubic", snd_cwnd=10, snd_ssthresh=2**31 - 1,
                   srtt_us=50, mss=1448, packets_out=0, retrans_out=0,
                   lost_out=0, sacked_out=0, total_retrans=0, seq=0, kernel_gap=0,
                   pid=0, comm="", host=meta["hostname"], boot_id=meta["boot_id"], capture="")
        row = {**blank, **row}
        for name in cols:
            cols[name].append(row[name])
    schema = arrow_schema_from_doc()
    table = pa.Table.from_pydict(cols, schema=schema)
    return write_table(path, table, meta)
