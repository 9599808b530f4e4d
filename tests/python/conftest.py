"""Shared helpers for the interop tests: paths, the binary, the published
schema, and a writer for synthetic recordings (edge cases the lab fixtures
do not contain), built with pyarrow exactly as schema v1 prescribes."""

import copy
import json
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
SCHEMAS = REPO / "schemas"
FIXTURE_FILES = sorted(FIXTURES.glob("*.parquet"))

MS = 1_000_000


def binary() -> Path:
    p = Path(os.environ.get("TCPCONG", "target/debug/tcpcong"))
    return p if p.is_absolute() else REPO / p


def schema_doc() -> dict:
    return json.loads((SCHEMAS / "events-v1.json").read_text())


ARROW_TYPES = {
    "timestamp[ns, tz=UTC]": pa.timestamp("ns", tz="UTC"),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
    "uint64": pa.uint64(),
    "uint32": pa.uint32(),
    "uint16": pa.uint16(),
    "uint8": pa.uint8(),
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


def run_analyze(inputs, accounting: str) -> list[dict]:
    exe = binary()
    if not exe.exists():
        pytest.fail(f"tcpcong binary not found at {exe} (set TCPCONG)")
    out = subprocess.run(
        [str(exe), "analyze", *map(str, inputs), "--all", "--format", "json",
         "--accounting", accounting],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def write_table(path: Path, table: pa.Table, meta: dict) -> Path:
    """Writes `table` as a recording with `meta` (events/flows/sorted filled)."""
    meta = copy.deepcopy(meta)
    k = table.column("ktime_ns").to_pylist()
    meta["events"] = table.num_rows
    meta["flows"] = len(set(table.column("flow").to_pylist()))
    meta["sorted"] = all(a <= b for a, b in zip(k, k[1:]))
    table = table.replace_schema_metadata({"tcpcong": json.dumps(meta)})
    pq.write_table(table, path, compression="zstd")
    return path


def write_events(path: Path, events: list[tuple], meta: dict) -> Path:
    """Writes hand-made events.

    Each event is (ktime_ns, flow, kind, old, new, family, saddr, sport,
    daddr, dport); the TCP fields get plausible constants.
    """
    cols = {c["name"]: [] for c in schema_doc()["columns"]}
    off = meta["clock_offset_ns"]
    for (kt, flow, kind, old, new, fam, sa, sp, da, dp) in events:
        row = dict(time=(kt + off) // 1000, ktime_ns=kt, kind=kind, flow=flow, family=fam,
                   saddr=sa, daddr=da, sport=sp, dport=dp, old_state=old,
                   new_state=new, cpu=0, netns=4026531840, cgroup=1,
                   cong_algo="cubic", snd_cwnd=10, snd_ssthresh=2**31 - 1,
                   srtt_us=50, mss=1448, packets_out=0, retrans_out=0,
                   lost_out=0, sacked_out=0, total_retrans=0, seq=0, kernel_gap=0,
                   pid=0, comm="", host=meta["hostname"], boot_id=meta["boot_id"], capture="")
        for name in cols:
            cols[name].append(row[name])
    schema = arrow_schema_from_doc()
    table = pa.Table.from_pydict(cols, schema=schema)
    return write_table(path, table, meta)
