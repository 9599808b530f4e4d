"""Interop tests: recordings are first-class data outside tcpcong.

What these tests prove, against the real lab recordings in fixtures/:

* The published schema (schemas/events-v1.json) is the written one: every
  column, in order, with its Arrow type and non-null, as pyarrow reads it;
  and it lists exactly the columns of the source (the core columns of
  src/record/format/schema.rs and the list in src/event.rs, detail_columns!)
  and the keys of the Metadata struct.
* pandas loads every fixture with the documented dtypes (tz-aware UTC ns
  `time`, unsigned integers kept unsigned); DuckDB loads every fixture with
  the same row count and the unsigned SQL types.
* The `tcpcong` metadata object reads identically from the Arrow schema
  (pyarrow) and from the Parquet footer (DuckDB), has every documented key
  with its JSON type, and tells the truth about the file: schema_version 1,
  events = rows, flows = distinct flows, sorted rows, no lost events,
  start/end consistent with start_ktime_ns/end_ktime_ns and clock_offset_ns,
  every row within [start_ktime_ns, end_ktime_ns], and
  time - ktime_ns = clock_offset_ns on every row.
* schemas/durations.sql, run in DuckDB over the raw files, gives exactly
  what `tcpcong analyze --all --format json` gives, flow by flow, in both
  accounting modes: on each fixture, on all fixtures at once (a folder), and
  on synthetic recordings written here with pyarrow that exercise the rules
  the lab traffic rarely hits (heads and their discarding, mismatches,
  self-transitions, close and socket reuse, events before the capture
  start, lifecycle off, several boots, overlapping files and separate
  captures of one boot, each flow timed only within the captures it was seen
  in, with its own head and tail per capture and nothing credited or
  compared across the gap between captures). A few values
  are also pinned by hand, so that both sides being wrong the same way does
  not pass.
"""

import json
import re
from datetime import datetime

import subprocess
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from conftest import (COMPAT, FIXTURE_FILES, FIXTURES, LAYOUT_IDS, LAYOUTS, MS, REPO, SCHEMAS,
                      arrow_schema_from_doc, assert_rows_are_json, binary, fixture_meta, run_analyze,
                      schema_doc, write_events, write_table)

IDS = [p.stem for p in FIXTURE_FILES]
MODES = ["full", "between"]
KEY = ("flow", "saddr", "sport", "daddr", "dport", "open_ns", "disorder_ns",
       "cwr_ns", "recovery_ns", "loss_ns", "changes")

PANDAS_DTYPES = {
    "timestamp[ns, tz=UTC]": "datetime64[ns, UTC]",
    "timestamp[us, tz=UTC]": "datetime64[us, UTC]",
    "uint64": "uint64", "uint32": "uint32", "uint16": "uint16", "uint8": "uint8",
    "int32": "int32",
}
DUCKDB_TYPES = {
    "timestamp[ns, tz=UTC]": "TIMESTAMPTZ_NS", "timestamp[us, tz=UTC]": "TIMESTAMP WITH TIME ZONE",
    "uint64": "UBIGINT",
    "uint32": "UINTEGER", "uint16": "USMALLINT", "uint8": "UTINYINT",
    "int32": "INTEGER",
    "string": "VARCHAR",
}
JSON_TYPES = {"integer": int, "string": str, "boolean": bool, "object": dict, "array": list}


def test_fixtures_exist():
    assert len(FIXTURE_FILES) >= 3, FIXTURE_FILES


# ---------------------------------------------------------------- schema doc

SCHEMA_RS = REPO / "src" / "record" / "format" / "schema.rs"
# The Rust types of the detail columns, as pyarrow names them.
RUST_TYPES = {"u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64", "i32": "int32",
              "KernelName": "string", "SymbolName": "string"}


def fixture_columns(current: bool) -> list[dict]:
    """The documented columns a fixture has: all of them in the current
    layout; in v1's first, all but those added to v1 after it, with the
    types they had then."""
    return [dict(c, type=c["type"] if current else c.get("type_before", c["type"]))
            for c in schema_doc()["columns"] if current or not c.get("added_later")]


def wall_from_ktime(path, current: bool) -> tuple[list[int], list[int]]:
    """Each row's `time` as stored, and what it must be: ktime plus the
    clock offset, in microseconds (floored) in the current layout, in ns
    in v1's first."""
    t = pq.read_table(path, columns=["time", "ktime_ns"])
    off = fixture_meta(path)["clock_offset_ns"]
    want = [k + off for k in t.column("ktime_ns").to_pylist()]
    if current:
        want = [w // 1000 for w in want]
    return t.column("time").cast(pa.int64()).to_pylist(), want


def test_schema_json_lists_the_writers_columns():
    core = SCHEMA_RS.read_text().split("pub const CORE:", 1)[1].split("];", 1)[0]
    core_names = re.findall(r'"(\w+)"', core)
    detail = (REPO / "src" / "event.rs").read_text()
    detail = detail.split("macro_rules! detail_columns", 1)[1].split("$m! {", 1)[1].split("}", 1)[0]
    details = [(n, RUST_TYPES[t]) for n, t in re.findall(r"^\s*(\w+): (\w+),\s*$", detail, re.M)]
    per_file = re.findall(r'"(\w+)"', SCHEMA_RS.read_text().split("pub const PER_FILE:", 1)[1].split("=", 1)[1].split("];", 1)[0])
    doc = [(c["name"], c["type"]) for c in schema_doc()["columns"]]
    assert len(core_names) >= 11 and len(details) >= 17 and len(per_file) >= 3, (core_names, details, per_file)
    assert [n for n, _ in doc] == core_names + [n for n, _ in details] + per_file
    # The core columns' types are held to the document by the recordings
    # (test_arrow_schema_is_the_documented_one, and the Rust schema test).
    assert doc[len(core_names):len(core_names) + len(details)] == details
    assert [t for _, t in doc[-len(per_file):]] == ["string"] * len(per_file)
    assert schema_doc()["schema_version"] == 1


def test_schema_json_lists_the_metadata_fields():
    src = SCHEMA_RS.read_text()
    body = src.split("pub struct Metadata {", 1)[1].split("\n}\n", 1)[0]
    fields = re.findall(r"^\s*pub (\w+):", body, re.M)
    assert [k["name"] for k in schema_doc()["metadata_keys"]] == fields


@pytest.mark.parametrize("path,current", LAYOUTS, ids=LAYOUT_IDS)
def test_arrow_schema_is_the_documented_one(path, current):
    got = pq.read_schema(path).remove_metadata()
    assert got.equals(arrow_schema_from_doc(current=current)), f"{got}"
    for f, c in zip(got, fixture_columns(current)):
        assert str(f.type) == c["type"] and f.nullable == c["nullable"]


# ---------------------------------------------------------------- loading

@pytest.mark.parametrize("path,current", LAYOUTS, ids=LAYOUT_IDS)
def test_pandas_dtypes(path, current):
    df = pd.read_parquet(path)
    cols = fixture_columns(current)
    assert list(df.columns) == [c["name"] for c in cols]
    assert len(df) > 0
    for c in cols:
        dt = df[c["name"]].dtype
        if c["type"] == "string":
            assert pd.api.types.is_string_dtype(dt), (c["name"], dt)
        else:
            assert str(dt) == PANDAS_DTYPES[c["type"]], (c["name"], dt)
    assert str(df["time"].dt.tz) == "UTC"
    # the stored precision survives: time is exactly ktime + offset in it
    _, want = wall_from_ktime(path, current)
    unit = "us" if current else "ns"
    assert (df["time"].dt.as_unit(unit).astype("int64").to_numpy() == want).all()


@pytest.mark.parametrize("path,current", LAYOUTS, ids=LAYOUT_IDS)
def test_duckdb_loads_with_unsigned_types(path, current):
    con = duckdb.connect()
    desc = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    got = [(r[0], r[1]) for r in desc]
    want = [(c["name"], DUCKDB_TYPES[c["type"]]) for c in fixture_columns(current)]
    assert got == want
    n = con.execute("SELECT count(*) FROM read_parquet(?)", [str(path)]).fetchone()[0]
    assert n == pq.ParquetFile(path).metadata.num_rows > 0
    # the timestamp keeps its precision in DuckDB too
    epoch = "epoch_us(time)" if current else "epoch_ns(time)"
    per = 1000 if current else 1
    bad = con.execute(
        f"SELECT count(*) FROM read_parquet(?) "
        f"WHERE {epoch} <> (ktime_ns::HUGEINT + ?) // {per}",
        [str(path), fixture_meta(path)["clock_offset_ns"]]).fetchone()[0]
    assert bad == 0


# ---------------------------------------------------------------- metadata

def duckdb_meta(path) -> str:
    rows = duckdb.connect().execute(
        "SELECT decode(value) FROM parquet_kv_metadata(?) WHERE decode(key) = 'tcpcong'",
        [str(path)]).fetchall()
    assert len(rows) == 1
    return rows[0][0]


def rfc3339_ns(s: str) -> int:
    """RFC 3339 with up to 9 fraction digits, 'Z' suffix, to epoch ns."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", s)
    assert m, s
    secs = int(datetime.fromisoformat(m.group(1) + "+00:00").timestamp())
    return secs * 10**9 + int((m.group(2) or "0").ljust(9, "0"))


@pytest.mark.parametrize("path", [p for p, _ in LAYOUTS], ids=LAYOUT_IDS)
def test_metadata_same_in_arrow_schema_and_footer(path):
    from_arrow = pq.read_schema(path).metadata[b"tcpcong"].decode()
    assert from_arrow == duckdb_meta(path)
    meta = json.loads(from_arrow)
    for k in schema_doc()["metadata_keys"]:
        if k.get("added_later"):
            continue
        assert k["name"] in meta, k["name"]
        v = meta[k["name"]]
        assert isinstance(v, JSON_TYPES[k["type"]]), (k["name"], v)
        if k["type"] == "integer":
            assert not isinstance(v, bool)
            if k.get("format", "").startswith("uint"):
                assert v >= 0
        if k.get("format") == "rfc3339":
            rfc3339_ns(v)


@pytest.mark.parametrize("path,current", LAYOUTS, ids=LAYOUT_IDS)
def test_metadata_tells_the_truth(path, current):
    meta = fixture_meta(path)
    t = pq.read_table(path)
    kinds = t.column("kind").to_pylist()
    # The capture and snapshot rows are not events (and name no flow).
    events = t.filter(pc.is_in(t.column("kind"), pa.array(["ca_state", "tcp_state", "retransmit", "drop", "reset"])))
    assert (kinds.count("capture"), kinds.count("snapshot")) == (
        (2, meta["snapshots"]) if current else (0, 0))
    k = t.column("ktime_ns").to_pylist()
    assert meta["schema_version"] == 1
    assert meta["events"] == events.num_rows
    assert meta["flows"] == len(pc.unique(events.column("flow")))
    assert meta["lost_events"] == 0
    assert meta["sorted"] is True
    assert meta["buffer"] in ("ring", "perf")
    assert meta["lifecycle"] == ("tcp_state" in kinds)
    off = meta["clock_offset_ns"]
    assert rfc3339_ns(meta["start"]) == meta["start_ktime_ns"] + off
    assert rfc3339_ns(meta["end"]) == meta["end_ktime_ns"] + off
    assert meta["start_ktime_ns"] < meta["end_ktime_ns"]
    # record/capture/mod.rs: end_ktime_ns = max(time the stop was seen, last event), so
    # no row is after it. start_ktime_ns is read just after attaching, so an
    # event in that microsecond-wide gap could precede it; the lab starts
    # traffic only later, so in these fixtures every row is within the span.
    assert max(k) <= meta["end_ktime_ns"]
    assert min(k) >= meta["start_ktime_ns"]


@pytest.mark.parametrize("path,current", LAYOUTS, ids=LAYOUT_IDS)
def test_rows_sorted_and_time_is_ktime_plus_offset(path, current):
    k = pq.read_table(path, columns=["ktime_ns"]).column("ktime_ns").to_pylist()
    assert all(a <= b for a, b in zip(k, k[1:]))
    got, want = wall_from_ktime(path, current)
    assert got == want


# ---------------------------------------------------------------- durations.sql

def sql_durations(files, accounting: str) -> list[dict]:
    con = duckdb.connect()
    con.execute("SET VARIABLE tcpcong_files = ?", [files])
    con.execute("SET VARIABLE tcpcong_accounting = ?", [accounting])
    con.execute((SCHEMAS / "durations-duckdb.sql").read_text())
    cur = con.execute((SCHEMAS / "durations.sql").read_text())
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def as_set(rows) -> set:
    out = {tuple(r[k] for k in KEY) for r in rows}
    assert len(out) == len(rows), "duplicate rows"
    return out


def assert_same(files, inputs, accounting):
    sql = sql_durations(files, accounting)
    ana = run_analyze(inputs, accounting)
    assert ana, "analyze printed no rows"
    s, a = as_set(sql), as_set(ana)
    assert s == a, f"only in SQL: {sorted(s - a)}\nonly in analyze: {sorted(a - s)}"
    return {r["flow"]: r for r in ana}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=IDS)
def test_sql_equals_analyze_per_fixture(path, mode):
    rows = assert_same(str(path), [path], mode)
    if mode == "full":
        # the lab's bulk flows all change state
        assert any(r["changes"] > 0 for r in rows.values())


@pytest.mark.parametrize("mode", MODES)
def test_sql_equals_analyze_on_the_fixture_folder(mode):
    rows = assert_same(str(FIXTURES / "*.parquet"), [FIXTURES], mode)
    per_file = sum(len(run_analyze([p], mode)) for p in FIXTURE_FILES)
    assert len(rows) == per_file


@pytest.mark.parametrize("mode", MODES)
def test_sql_accepts_a_list_of_files(mode):
    files = [str(p) for p in FIXTURE_FILES[:2]]
    assert_same(files, FIXTURE_FILES[:2], mode)


# ---- derived recordings: the fixtures with parts removed or moved

def derived(tmp_path, path, how):
    t = pq.read_table(path).replace_schema_metadata(None)
    meta = fixture_meta(path)
    if how == "no-lifecycle":
        t = t.filter(pc.equal(t.column("kind"), "ca_state"))
        meta["lifecycle"] = False
    elif how == "gaps":
        # drop every 5th ca_state event: lost events, i.e. mismatches
        ca = [i for i, k in enumerate(t.column("kind").to_pylist()) if k == "ca_state"]
        drop = set(ca[3::5])
        t = t.take([i for i in range(t.num_rows) if i not in drop])
    elif how == "late-start":
        # capture start moved into the traffic: earlier events set state only
        k = t.column("ktime_ns").to_pylist()
        meta["start_ktime_ns"] = k[len(k) * 2 // 5] - 1
    return write_table(tmp_path / f"{path.stem}-{how}.parquet", t, meta)


def analyze_mismatches(inputs, accounting) -> int:
    out = subprocess.run(
        [str(binary()), "analyze", *map(str, inputs), "--all", "--format", "json",
         "--accounting", accounting], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    m = re.search(r"WARNING: (\d+) transitions? did not start", out.stderr)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["no-lifecycle", "gaps", "late-start"])
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=IDS)
def test_sql_equals_analyze_on_derived_recordings(tmp_path, path, how, mode):
    f = derived(tmp_path, path, how)
    assert_same(str(f), [f], mode)
    sql_mismatches = sum(r["mismatches"] for r in sql_durations(str(f), mode))
    assert sql_mismatches == analyze_mismatches([f], mode)
    if how == "gaps":
        assert sql_mismatches > 0


# ---- hand-made recordings: one flow per rule

K0 = 1_000_000 * MS  # ktime base


def meta_for(start_ms, end_ms, boot="11111111-2222-3333-4444-555555555555",
             offset=1_795_000_000_000_000_000, lifecycle=True):
    m = fixture_meta()
    m.update(boot_id=boot, clock_offset_ns=offset, lifecycle=lifecycle,
             start_ktime_ns=K0 + start_ms * MS, end_ktime_ns=K0 + end_ms * MS)
    m["start"] = pd.Timestamp(K0 + start_ms * MS + offset, tz="UTC").isoformat()
    m["end"] = pd.Timestamp(K0 + end_ms * MS + offset, tz="UTC").isoformat()
    return m


def ca(ms, flow, old, new, port=None, fam=4):
    return ev(ms, flow, "ca_state", old, new, port, fam)


def tcp(ms, flow, old, new, port=None, fam=4):
    return ev(ms, flow, "tcp_state", old, new, port, fam)


def snap(ms, flow, ca_state, port=None, fam=4, tcp_state="established"):
    return ev(ms, flow, "snapshot", tcp_state, ca_state, port, fam)


def ev(ms, flow, kind, old, new, port, fam):
    sport = 40000 + flow % 1000 if port is None else port
    a, b = ("10.0.0.1", "10.0.0.2") if fam == 4 else ("fd00::1", "fd00::2")
    return (K0 + int(ms * MS), flow, kind, old, new, fam, a, sport, b, 5201)


EST = ("syn_sent", "established")
CLOSE = ("established", "close")

# capture [1000, 10000) ms
HANDMADE = [
    # 100: passive child, head discarded by established (two self-transitions first)
    ca(2000, 100, "open", "open"), ca(2500, 100, "open", "open"), tcp(3000, 100, *EST),
    ca(5000, 100, "open", "disorder"), ca(6000, 100, "disorder", "open"),
    # 101: head settled by a change; a late established changes nothing
    ca(2000, 101, "open", "open"), ca(3000, 101, "open", "cwr"),
    ca(4000, 101, "cwr", "open"), tcp(5000, 101, *EST),
    # 102: head in loss, RTO self-transitions, close, reuse without head, re-established
    ca(1500, 102, "loss", "loss"), ca(2000, 102, "loss", "loss"),
    ca(7000, 102, "loss", "open"), tcp(8000, 102, *CLOSE),
    ca(8500, 102, "open", "disorder"), ca(8600, 102, "disorder", "open"),
    tcp(8700, 102, *EST), tcp(8800, 102, *CLOSE), tcp(8900, 102, *EST),
    # 103: events before the capture start
    tcp(500, 103, *EST), ca(800, 103, "open", "recovery"), ca(1200, 103, "recovery", "open"),
    ca(1300, 103, "open", "loss"), ca(1400, 103, "loss", "loss"), ca(2000, 103, "loss", "open"),
    # 104: a mismatch, and a mismatch into a self-transition
    tcp(2000, 104, *EST), ca(3000, 104, "open", "disorder"), ca(4000, 104, "recovery", "open"),
    ca(5000, 104, "open", "cwr"), ca(6000, 104, "loss", "loss"), ca(7000, 104, "loss", "open"),
    # 105: only other TCP states: no row
    tcp(2000, 105, "close", "syn_sent", port=0), tcp(3000, 105, "syn_sent", "fin_wait1"),
    # 106: established only: a row in full (tail), none in between
    tcp(3000, 106, *EST),
    # 107: close first (cur none), then events: no head
    tcp(1500, 107, "listen", "close"), ca(2000, 107, "open", "disorder"),
    ca(2100, 107, "disorder", "open"),
    # 108: self-transition first, then close: head settled by the close
    ca(2000, 108, "open", "open"), tcp(3000, 108, *CLOSE),
    # 109: self-transition before the start, established after it
    ca(500, 109, "open", "open"), tcp(1500, 109, *EST), ca(4000, 109, "open", "cwr"),
    # 110: IPv6, port bound after syn_sent: the row carries the bound port
    tcp(2000, 110, "close", "syn_sent", port=0, fam=6),
    tcp(2001, 110, *EST, fam=6), ca(2500, 110, "open", "disorder", fam=6),
    ca(2600, 110, "disorder", "open", fam=6),
    # 111: two events at the same ktime: file order decides
    tcp(2000, 111, *EST), ca(4000, 111, "open", "disorder"),
    ca(4000, 111, "disorder", "recovery"), ca(4500, 111, "recovery", "open"),
    # 112: head pending, settled by a mismatch; established afterwards does nothing
    ca(2000, 112, "open", "open"), ca(2500, 112, "loss", "open"), tcp(3000, 112, *EST),
    # 113: first event after established is a mismatched self-transition
    tcp(2000, 113, *EST), ca(2500, 113, "cwr", "cwr"), ca(3000, 113, "cwr", "open"),
    # 114: only self-transitions, never established: head and tail
    ca(2000, 114, "open", "open"), ca(3000, 114, "open", "open"),
    # 120-127: snapshot rows (old_state the TCP state, new_state the
    # congestion state), read by full accounting only
    # 120: seen only in snapshots, at the start and end
    snap(1010, 120, "open"), snap(9990, 120, "open"),
    # 121: a snapshot that agrees, inside a period: the table is unchanged
    snap(1010, 121, "open"), ca(3000, 121, "open", "recovery"),
    snap(4000, 121, "recovery"), ca(5000, 121, "recovery", "open"),
    # 122: a snapshot that disagrees: a mismatch, and its state from then on
    tcp(2000, 122, *EST), ca(3000, 122, "open", "disorder"), snap(4000, 122, "loss"),
    ca(6000, 122, "loss", "open"),
    # 123: a snapshot first, then an established: the head is kept
    snap(2000, 123, "open"), tcp(3000, 123, *EST),
    # 124: a passive child's self-transition, a snapshot, then established:
    # the snapshot saw it, so the head is kept too
    ca(2000, 124, "open", "open"), snap(2500, 124, "open"), tcp(3000, 124, *EST),
    # 125: born in the capture, seen in syn_sent by a snapshot, established
    tcp(2000, 125, "close", "syn_sent", port=0), snap(2100, 125, "open", tcp_state="syn_sent"),
    tcp(2200, 125, "syn_sent", "established"),
    # 126: a snapshot after a close and reuse, then more snapshots
    ca(2000, 126, "open", "cwr"), tcp(3000, 126, *CLOSE), snap(4000, 126, "open"),
    snap(5000, 126, "open"),
    # 127: a snapshot at the same instant as a change, after it (seq order)
    ca(2000, 127, "open", "disorder"), snap(2000, 127, "disorder"),
    ca(2500, 127, "disorder", "open"),
]


def sorted_events(evs):
    return sorted(evs, key=lambda e: e[0])  # stable: same-ktime events keep order


@pytest.fixture
def handmade(tmp_path):
    return write_events(tmp_path / "handmade.parquet", sorted_events(HANDMADE),
                        meta_for(1000, 10000))


@pytest.mark.parametrize("mode", MODES)
def test_sql_equals_analyze_on_handmade_rules(handmade, mode):
    rows = assert_same(str(handmade), [handmade], mode)
    assert 105 not in rows
    assert (106 in rows) == (mode == "full")


@pytest.mark.parametrize("mode", MODES)
def test_sql_equals_analyze_on_handmade_without_lifecycle(tmp_path, mode):
    f = write_events(tmp_path / "handmade-nolc.parquet", sorted_events(HANDMADE),
                     meta_for(1000, 10000, lifecycle=False))
    assert_same(str(f), [f], mode)


def ms_of(row):
    return tuple(row[k] / MS for k in ("open_ns", "disorder_ns", "cwr_ns",
                                       "recovery_ns", "loss_ns")) + (row["changes"],)


def test_handmade_values_pinned_by_hand(handmade):
    """The engine's rules (src/analyze/engine/mod.rs), computed by hand (ms), full accounting."""
    full = {f: ms_of(r) for f, r in assert_same(str(handmade), [handmade], "full").items()}
    # head discarded at 3000; open 3000-5000 and 6000-10000 (tail)
    assert full[100] == (6000, 1000, 0, 0, 0, 2)
    # head 1000-2000 open; open 2000-3000, cwr 3000-4000, open 4000-10000
    assert full[101] == (8000, 0, 1000, 0, 0, 2)
    # head 1000-1500 loss, loss 1500-7000, open 7000-8000; reuse: open 8500? no:
    # 8500 first event of the new timeline (no head), disorder 8500-8600,
    # open 8600-8800 (close), established 8900 -> open to 10000
    assert full[102] == (1000 + 200 + 1100, 100, 0, 0, 6000, 3)
    # before start: only 1000-1200 recovery counts, then loss 1300-2000 clipped
    # from 1300, open 1200-1300 and 2000-10000; changes at >= start: 1200, 1300, 2000
    assert full[103] == (100 + 8000, 0, 0, 200, 700, 3)
    # mismatch at 4000: disorder 3000-4000 credited to nobody; mismatch into
    # loss->loss at 6000: cwr 5000-6000 credited to nobody, loss 6000-7000
    assert full[104] == (1000 + 1000 + 3000, 0, 0, 0, 1000, 4)
    assert full[106] == (7000, 0, 0, 0, 0, 0)
    # 107: no head after a close; disorder 2000-2100, open 2100-10000
    assert full[107] == (7900, 100, 0, 0, 0, 2)
    # 108: head 1000-2000 plus open 2000-3000, no change
    assert full[108] == (2000, 0, 0, 0, 0, 0)
    # 114: head 1000-2000, open 2000-10000 (tail)
    assert full[114] == (9000, 0, 0, 0, 0, 0)
    # 110: born at its syn_sent (2000), not at its established (2001): open
    # 2000-2500, disorder 2500-2600, open to 10000
    assert full[110] == (500 + 7400, 100, 0, 0, 0, 2)
    # 120: head 1000-1010, open to the last snapshot and the tail to 10000
    assert full[120] == (9000, 0, 0, 0, 0, 0)
    assert full[121] == (7000, 0, 0, 2000, 0, 2)
    # 122: open from its established at 2000 to 3000, disorder 3000-4000 to
    # nobody (a mismatch at the snapshot), loss 4000-6000, open 6000-10000
    assert full[122] == (1000 + 4000, 0, 0, 0, 2000, 2)
    assert full[123] == (9000, 0, 0, 0, 0, 0)
    assert full[124] == (9000, 0, 0, 0, 0, 0)
    # 125: from its birth at 2000
    assert full[125] == (8000, 0, 0, 0, 0, 0)
    # 126: head 1000-2000, cwr 2000-3000; after the close, open 4000-10000
    assert full[126] == (1000 + 6000, 0, 1000, 0, 0, 1)
    assert full[127] == (1000 + 7500, 500, 0, 0, 0, 2)
    between = {f: ms_of(r) for f, r in run_analyze_rows(handmade, "between").items()}
    # snapshots are not read: flow 120 has none, 121 is its changes
    assert 120 not in between and 123 not in between
    assert between[121] == (0, 0, 0, 2000, 0, 1)
    assert between[101] == (1000, 0, 1000, 0, 0, 2)
    # between ignores established: 3000 starts the clock (and, as in BCC, is
    # not a change)
    assert between[104] == (1000, 0, 0, 0, 1000, 3)
    assert 114 not in between and 106 not in between and 108 not in between


def run_analyze_rows(path, mode):
    return {r["flow"]: r for r in run_analyze([path], mode)}


# ---- several files: two boots, one boot split over two overlapping files

BOOT_X = "aaaaaaaa-0000-0000-0000-000000000001"
BOOT_Y = "bbbbbbbb-0000-0000-0000-000000000002"
OFF_X = 1_795_000_000_000_000_000
OFF_Y = OFF_X + 3_600 * 10**9  # boot Y's ktime 0 is an hour later


@pytest.fixture
def dataset(tmp_path):
    return write_dataset(tmp_path / "runs")


def write_dataset(d):
    (d / "x").mkdir(parents=True)
    # boot X, file a: [1000, 10000)
    write_events(d / "x" / "a.parquet", sorted_events([
        tcp(1500, 200, *EST), ca(3000, 200, "open", "loss"), ca(4000, 200, "loss", "loss"),
        ca(6000, 201, "open", "disorder"), ca(6500, 201, "disorder", "open"),
        ca(9500, 202, "open", "cwr"),
    ]), meta_for(1000, 10000, boot=BOOT_X, offset=OFF_X))
    # boot X, file b: [8000, 20000), overlaps a; its own offset differs by a
    # few ns (measured again), analyze uses the boot's first file's offset
    write_events(d / "x" / "b.parquet", sorted_events([
        ca(9000, 200, "loss", "open"), ca(9600, 202, "cwr", "open"),
        tcp(15000, 200, *CLOSE), ca(12000, 203, "open", "cwr"),
    ]), meta_for(8000, 20000, boot=BOOT_X, offset=OFF_X + 7))
    # boot Y: same cookie 200 is another socket; starts later in wall time
    write_events(d / "y.parquet", sorted_events([
        tcp(50500, 200, *EST), ca(51000, 200, "open", "recovery"),
        ca(52000, 200, "recovery", "open"),
        ca(55000, 300, "open", "open"),
    ]), meta_for(50000, 60000, boot=BOOT_Y, offset=OFF_Y))
    return d


@pytest.mark.parametrize("args", [["--format", "json", "--all"], ["--format", "csv", "--all", "2"],
                                  ["-d", "--format", "json"], ["--accounting", "between"]])
def test_several_boots_on_several_threads_print_what_one_thread_does(dataset, args):
    """Boots are read and computed on threads of their own (and one boot's
    flows shared out): the output is the same on any number of threads."""
    def run(threads):
        p = subprocess.run([str(binary()), "analyze", str(dataset), *args, "--threads", str(threads)],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout, p.stderr
    one = run(1)
    assert one[0].strip()
    for n in (2, 3, 4):
        assert run(n) == one, n


@pytest.mark.parametrize("mode", MODES)
def test_sql_equals_analyze_on_several_boots_and_overlaps(dataset, mode):
    rows = run_analyze([dataset], mode)
    assert_same(str(dataset / "**" / "*.parquet"), [dataset], mode)
    # cookie 200 appears once per boot
    assert sum(r["flow"] == 200 for r in rows) == 2


def test_several_boots_pinned_by_hand(dataset):
    """Each flow is timed within its own capture (the engine's rule, src/analyze/engine/mod.rs: "capture
    start" and "capture end" are those of the recordings the flow was seen
    in, not the whole data set's). Boot X's files a and b overlap, so they are
    one capture [1000, 20000); boot Y's is [50000, 60000), an hour later."""
    files = str(dataset / "**" / "*.parquet")
    full = {(r["boot_id"], r["flow"]): ms_of(r) for r in sql_durations(files, "full")}
    # X 200: open 1500-3000, loss 3000-9000 (the loss->loss at 4000 is no
    # change; the loss->open at 9000 is in file b), open 9000-15000 (close)
    assert full[(BOOT_X, 200)] == (1500 + 6000, 0, 0, 0, 6000, 2)
    # X 201: head 1000-6000, disorder 6000-6500, open to 20000 (X's end)
    assert full[(BOOT_X, 201)] == (5000 + 13500, 500, 0, 0, 0, 2)
    # X 202: head 1000-9500, cwr to 9600 (file b), open to 20000
    assert full[(BOOT_X, 202)] == (8500 + 10400, 0, 100, 0, 0, 2)
    # X 203, only in file b: its head starts at the capture's start (1000,
    # file a's, as a and b overlap), cwr from 12000 to 20000
    assert full[(BOOT_X, 203)] == (11000, 0, 8000, 0, 0, 1)
    # Y 200, another socket with the same cookie: open 50500-51000, recovery
    # to 52000, open to 60000
    assert full[(BOOT_Y, 200)] == (500 + 8000, 0, 0, 1000, 0, 2)
    # Y 300: head 50000-55000 and tail to 60000 (Y's own span, not X's start
    # an hour earlier)
    assert full[(BOOT_Y, 300)] == (10000, 0, 0, 0, 0, 0)
    between = {(r["boot_id"], r["flow"]): ms_of(r) for r in sql_durations(files, "between")}
    # each flow's first event starts the clock and is not a change
    assert between[(BOOT_X, 200)] == (0, 0, 0, 0, 6000, 1)
    assert between[(BOOT_X, 202)] == (0, 0, 100, 0, 0, 1)
    assert between[(BOOT_Y, 200)] == (0, 0, 0, 1000, 0, 1)


# ---- one boot recorded twice: two captures with a gap between them

def two_captures(d, last_lifecycle=True, first_lifecycle=True):
    """Capture 1: p1 [1000, 5000) and p2 [4000, 8000) overlap; capture 2: p3
    [20000, 30000), after a 12 s gap in which nothing was recorded. A capture
    without lifecycle events has no tcp_state rows."""
    d.mkdir(parents=True, exist_ok=True)
    first = [
        ca(2000, 400, "open", "cwr"), ca(2500, 400, "cwr", "open"),
        tcp(1500, 401, *EST), ca(3000, 401, "open", "loss"),
        # 404: in disorder when capture 1 ends
        ca(2000, 404, "open", "disorder"),
        # 405: closed in capture 1
        tcp(1500, 405, *EST), tcp(3000, 405, *CLOSE),
        # 406: an ordinary flow in capture 1
        ca(2000, 406, "open", "disorder"), ca(2200, 406, "disorder", "open"),
    ]
    second_p = [
        ca(6000, 403, "open", "recovery"), ca(6400, 403, "recovery", "open"),
        # 407: a self-transition, its head still pending when capture 1 ends
        ca(7000, 407, "open", "open"),
    ]
    second = [
        ca(21000, 401, "loss", "open"),
        ca(22000, 402, "open", "disorder"), ca(23000, 402, "disorder", "open"),
        # 404: would be a mismatch (disorder -> recovery?) if the gap were crossed
        ca(22000, 404, "recovery", "open"),
        # 405: seen again after its close: no head
        ca(25000, 405, "open", "cwr"),
        # 406: a passive child's head in capture 2, discarded by established
        ca(21000, 406, "open", "open"), tcp(21500, 406, *EST), ca(24000, 406, "open", "cwr"),
        # 407: established first in capture 2: no head, and capture 1's
        # pending head is not discarded by it
        tcp(20500, 407, *EST),
    ]

    def keep(evs, lifecycle):
        return sorted_events([e for e in evs if lifecycle or e[2] == "ca_state"])

    write_events(d / "p1.parquet", keep(first, first_lifecycle),
                 meta_for(1000, 5000, boot=BOOT_X, offset=OFF_X, lifecycle=first_lifecycle))
    write_events(d / "p2.parquet", keep(second_p, first_lifecycle),
                 meta_for(4000, 8000, boot=BOOT_X, offset=OFF_X, lifecycle=first_lifecycle))
    write_events(d / "p3.parquet", keep(second, last_lifecycle),
                 meta_for(20000, 30000, boot=BOOT_X, offset=OFF_X, lifecycle=last_lifecycle))
    return d


LIFECYCLES = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("first_lc,last_lc", LIFECYCLES)
def test_sql_equals_analyze_on_two_captures_of_one_boot(tmp_path, mode, first_lc, last_lc):
    d = two_captures(tmp_path / "runs", last_lc, first_lc)
    rows = assert_same(str(d / "*.parquet"), [d], mode)
    # between: 401 and 404 have one event per capture, which only starts
    # each capture's clock
    want = {400, 401, 402, 403, 404, 406} if mode == "full" else {400, 402, 403, 406}
    assert want <= set(rows)
    sql = sql_durations(str(d / "*.parquet"), mode)
    # no mismatch is detected across the gap
    assert sum(r["mismatches"] for r in sql) == 0 == analyze_mismatches([d], mode)


def two_captures_rows(d, mode):
    sql = {r["flow"]: ms_of(r) for r in sql_durations(str(d / "*.parquet"), mode)}
    ana = {r["flow"]: ms_of(r) for r in run_analyze([d], mode)}
    assert sql == ana
    return sql


def test_two_captures_of_one_boot_pinned_by_hand(tmp_path):
    """engine.rs `Engine::set_span`: a flow is timed only inside the captures
    it was seen in. Capture 1 is [1000, 8000) (p1 and p2 overlap), capture 2
    [20000, 30000); the gap 8000-20000 is never credited."""
    full = two_captures_rows(two_captures(tmp_path / "a"), "full")
    # 400, only in capture 1: head 1000-2000, cwr 2000-2500, open to 8000
    # (its own capture's end, not capture 2's 30000)
    assert full[400] == (1000 + 5500, 0, 500, 0, 0, 2)
    # 401 in both: open 1500-3000, loss 3000-8000 (tail of capture 1); in
    # capture 2 a head in loss 20000-21000, then open to 30000. The loss
    # period is not credited across the gap (it was 3000-21000 before).
    assert full[401] == (1500 + 9000, 0, 0, 0, 5000 + 1000, 2)
    # 402, first seen in capture 2: head from capture 2's start (20000), not
    # the data set's (1000); disorder 22000-23000; open to 30000
    assert full[402] == (2000 + 7000, 1000, 0, 0, 0, 2)
    # 403, first seen in p2: head from capture 1's start (1000: p1 and p2
    # overlap, so they are one capture), not p2's own start (4000);
    # recovery 6000-6400, open to 8000
    assert full[403] == (5000 + 1600, 0, 0, 400, 0, 2)
    # 404: head 1000-2000, disorder 2000-8000; capture 2: head in recovery
    # 20000-22000 (no mismatch), open to 30000
    assert full[404] == (1000 + 8000, 6000, 0, 2000, 0, 2)
    # 405: open 1500-3000 (close); capture 2: no head after a close, cwr
    # 25000-30000
    assert full[405] == (1500, 0, 5000, 0, 0, 1)
    # 406: head 1000-2000, disorder 2000-2200, open to 8000; capture 2: head
    # 20000-21000 discarded by the established, open 21500-24000, cwr to 30000
    assert full[406] == (1000 + 5800 + 2500, 200, 6000, 0, 0, 3)
    # 407: pending head 1000-7000 credited when capture 1 ends, open to 8000;
    # capture 2: open 20500-30000
    assert full[407] == (6000 + 1000 + 9500, 0, 0, 0, 0, 0)

    # capture 2 without lifecycle: no tails there; flows last seen in
    # capture 1 keep theirs (their own capture's lifecycle, not the boot's
    # last capture's)
    full = two_captures_rows(two_captures(tmp_path / "b", last_lifecycle=False), "full")
    assert full[400] == (1000 + 5500, 0, 500, 0, 0, 2)
    assert full[403] == (5000 + 1600, 0, 0, 400, 0, 2)
    assert full[401] == (1500, 0, 0, 0, 5000 + 1000, 2)
    assert full[402] == (2000, 1000, 0, 0, 0, 2)
    # 406 without the established: the open->open starts a period (no
    # sample), the head 20000-21000 stays, open 21000-24000
    assert full[406] == (1000 + 5800 + 1000 + 3000, 200, 0, 0, 0, 3)

    # capture 1 without lifecycle, capture 2 with: flows last seen in
    # capture 1 get no tail even though the boot's last capture has one
    full = two_captures_rows(two_captures(tmp_path / "c", first_lifecycle=False), "full")
    # 400: head 1000-2000, cwr 2000-2500, open 2500-... not counted
    assert full[400] == (1000, 0, 500, 0, 0, 2)
    # 401: head 1000-3000 (no established recorded), no tail in capture 1
    assert full[401] == (2000 + 9000, 0, 0, 0, 1000, 2)
    assert full[403] == (5000, 0, 0, 400, 0, 2)

    # between: the clock restarts in each capture, nothing spans the gap
    # (as in BCC, each timeline's first event only starts the clock: it is
    # not a change)
    between = two_captures_rows(two_captures(tmp_path / "d"), "between")
    assert between[400] == (0, 0, 500, 0, 0, 1)
    # 401 and 404: one event per capture, each a first one: no row at all
    assert 401 not in between and 404 not in between
    # 406: disorder 2000-2200; open 21000-24000 (the open->open starts the
    # clock in capture 2; established is ignored)
    assert between[406] == (3000, 200, 0, 0, 0, 2)
    assert 407 not in between


# ------------------------------------------------ files other tools wrote

def rewritten(tmp_path, path, how) -> Path:
    """The fixture at `path` written back by another tool, the way a user
    filtering a recording would, keeping the tcpcong metadata."""
    meta = pq.read_schema(path).metadata[b"tcpcong"].decode()
    out = tmp_path / f"{how}.parquet"
    table = pq.read_table(path)
    if how.startswith("pyarrow-"):
        # pyarrow's own defaults: snappy, dictionary-encoded strings, or
        # another codec, or strings read back as dictionaries.
        codec = how.split("-", 1)[1]
        if codec == "dictionary":
            table = pq.read_table(path, read_dictionary=["kind", "saddr", "daddr", "old_state",
                                                         "new_state", "cong_algo"])
            codec = "snappy"
        pq.write_table(table, out, compression=codec)
    elif how == "pandas":
        pd.read_parquet(path).to_parquet(out)
    elif how == "polars":
        import polars as pl
        # polars' own writer: string views, its own defaults.
        pl.read_parquet(path).write_parquet(out, metadata={"tcpcong": meta})
        return out
    elif how == "polars-large-strings":
        import polars as pl
        t = pl.read_parquet(path).to_arrow()
        t = t.cast(pa.schema([pa.field(f.name, pa.large_string() if pa.types.is_string(f.type)
                                       or pa.types.is_string_view(f.type) else f.type, False)
                              for f in t.schema]))
        pq.write_table(t, out, compression="lz4")
    elif how == "duckdb":
        con = duckdb.connect()
        escaped = meta.replace("'", "''")
        con.execute(f"COPY (SELECT * FROM '{path}') TO '{out}' "
                    f"(FORMAT parquet, COMPRESSION gzip, KV_METADATA {{tcpcong: '{escaped}'}})")
        return out
    else:
        raise ValueError(how)
    # Writers that keep only the Arrow schema's metadata: put it back.
    t = pq.read_table(out)
    pq.write_table(t.replace_schema_metadata({"tcpcong": meta}), out,
                   compression=pq.ParquetFile(out).metadata.row_group(0).column(0).compression.lower()
                   if pq.ParquetFile(out).metadata.num_row_groups else "snappy")
    return out


WRITERS = ["pyarrow-snappy", "pyarrow-gzip", "pyarrow-brotli", "pyarrow-lz4",
           "pyarrow-dictionary", "pandas", "polars", "polars-large-strings", "duckdb"]


@pytest.mark.parametrize("how", WRITERS)
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=IDS)
def test_analyze_reads_what_other_tools_wrote(tmp_path, path, how):
    out = rewritten(tmp_path, path, how)
    for mode in MODES:
        assert run_analyze([out], mode) == run_analyze([path], mode), (how, mode)


def test_a_file_without_the_metadata_is_refused_in_one_line(tmp_path):
    """A file of v1's first layout holds its capture's facts only in its
    footer: a copy without it cannot be read (a current file's capture rows
    hold them too: test_analyze_reads_what_other_tools_wrote)."""
    out = tmp_path / "copied.parquet"
    duckdb.sql(f"COPY (SELECT * FROM '{COMPAT}') TO '{out}' (FORMAT parquet)")
    r = subprocess.run([str(binary()), "analyze", str(out)], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1, r.stderr
    assert "tcpcong's columns but not its metadata" in r.stderr, r.stderr


# ---- analyze's own table as Parquet

def test_the_parquet_table_holds_the_json_rows(tmp_path):
    """`analyze --format parquet -o FILE` writes the rows `--format json`
    prints, with the same columns and values, windows and all."""
    out = tmp_path / "table.parquet"
    args = [str(binary()), "analyze", str(FIXTURES), "--all", "1"]
    p = subprocess.run(args + ["--format", "parquet", "-o", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    j = subprocess.run(args + ["--format", "json"], capture_output=True, text=True, check=True)
    want = [json.loads(line) for line in j.stdout.splitlines()]
    got = pq.read_table(out).to_pylist()
    assert len(want) > 20
    assert_rows_are_json(got, want)
    assert pq.read_schema(out).field("flow").type == pa.uint64()
