#!/usr/bin/env python3
"""Writes a large synthetic recording in event schema v1, for benchmarks.

Real TCP cannot produce tens of millions of transitions quickly, so this
draws them: FLOWS concurrent flows, each a consistent chain of congestion
states (every event's old_state is its flow's previous new_state) with
exponential dwell times, interleaved in time order (no lifecycle events:
the flows predate the capture and outlive it). Column encodings follow tcpcong's writer (zstd,
dictionaries, delta-encoded clocks and counters) so that sizes and reading
costs are comparable. The metadata object is marked synthetic.

usage: gen_events.py OUT.parquet EVENTS [FLOWS] [SEED] [MEAN_GAP_NS]

MEAN_GAP_NS (default 20000) is the mean time between two events overall.
With BENCH_HOST set, the file is as this version writes it, for the fleet
figures: `time` in microseconds, every later column (host, boot_id from
BENCH_BOOT_ID, ...), and the capture rows that open and close it; without,
as the first version of the schema (what the analyze figures have used).
"""
import json
import os
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

STATES = np.array(["open", "disorder", "cwr", "recovery", "loss"])
# Transition matrix between congestion states, shaped like the lab's
# recordings: mostly open <-> disorder/recovery, some cwr, rare loss.
NEXT = np.array([
    [0.00, 0.45, 0.15, 0.38, 0.02],   # from open
    [0.55, 0.00, 0.02, 0.42, 0.01],   # from disorder
    [0.90, 0.05, 0.00, 0.04, 0.01],   # from cwr
    [0.96, 0.01, 0.00, 0.00, 0.03],   # from recovery
    [0.97, 0.00, 0.00, 0.00, 0.03],   # from loss (loss -> loss: repeated RTO)
])
SCHEMA = [
    ("time", pa.timestamp("ns", tz="UTC")), ("ktime_ns", pa.uint64()), ("kind", pa.string()),
    ("flow", pa.uint64()), ("family", pa.uint8()), ("saddr", pa.string()), ("daddr", pa.string()),
    ("sport", pa.uint16()), ("dport", pa.uint16()), ("old_state", pa.string()),
    ("new_state", pa.string()), ("cpu", pa.uint16()), ("netns", pa.uint32()),
    ("cgroup", pa.uint64()), ("cong_algo", pa.string()),
] + [(c, pa.uint32()) for c in ("snd_cwnd", "snd_ssthresh", "srtt_us", "mss", "packets_out",
                               "retrans_out", "lost_out", "sacked_out", "total_retrans")]
# Added to v1 later, in the schema's order after total_retrans.
LATER = [("seq", pa.uint32()), ("kernel_gap", pa.uint8()), ("pid", pa.uint32()), ("comm", pa.string()),
         ("host", pa.string()), ("boot_id", pa.string()), ("capture", pa.string())]
DELTA = ["time", "ktime_ns", "srtt_us", "total_retrans"]
CHUNK = 2_000_000


def arr(values, type=None):
    a = pa.array(values, type)
    # Large numpy string arrays come back chunked.
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def main():
    out, total = sys.argv[1], int(sys.argv[2])
    flows = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    rng = np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    start_ktime = 1_000_000_000_000
    offset = time.time_ns() - start_ktime - 3600 * 10**9
    # Mean gap between events overall: 20 us by default, i.e. 50k transitions/s.
    mean_gap = int(sys.argv[5]) if len(sys.argv) > 5 else 20_000
    state = np.zeros(flows, dtype=np.int64)
    retrans = np.zeros(flows, dtype=np.int64)
    cookies = np.arange(1000, 1000 + flows, dtype=np.uint64)
    sports = (30000 + np.arange(flows) % 30000).astype(np.uint16)
    saddr = np.array([f"10.{(i >> 8) & 255}.{i & 255}.1" for i in range(flows)])
    daddr = np.array([f"10.200.{i % 250}.2" for i in range(flows)])
    cum = NEXT.cumsum(axis=1)
    host = os.environ.get("BENCH_HOST")
    boot_id = os.environ.get("BENCH_BOOT_ID", "00000000-0000-0000-0000-000000000000")
    columns = SCHEMA + LATER if host else SCHEMA
    if host:
        columns[0] = ("time", pa.timestamp("us", tz="UTC"))
    schema = pa.schema([pa.field(n, t, nullable=False) for n, t in columns])
    meta = {
        "schema_version": 1, "tool_version": "synthetic", "hostname": host or "bench", "kernel": "synthetic",
        "boot_id": boot_id, "start": "", "end": "", "start_ktime_ns": start_ktime, "end_ktime_ns": 0,
        "clock_offset_ns": offset, "attach": "synthetic", "buffer": "none", "filters": {},
        "lifecycle": False, "lost_events": 0, "command": " ".join(sys.argv),
    }

    def wall(k):
        return (k + offset) // 1000 if host else k + offset

    def capture_row(ktime, which):
        """The row that opens or closes the file (current schema only)."""
        row = {n: pa.array([0], t) for n, t in columns if pa.types.is_integer(t)}
        row.update({n: pa.array([""]) for n, t in columns if t == pa.string()})
        row.update(time=pa.array([wall(ktime)], pa.int64()).cast(columns[0][1]),
                   ktime_ns=pa.array([ktime], pa.uint64()), kind=pa.array(["capture"]),
                   new_state=pa.array([which]), host=pa.array([host]), boot_id=pa.array([boot_id]),
                   capture=pa.array([json.dumps(meta)]))
        return pa.record_batch([row[n] for n, _ in columns], schema=schema)
    writer = None
    t = start_ktime
    written = 0
    ca_total = total
    while written < ca_total:
        n = min(CHUNK, ca_total - written)
        gaps = rng.exponential(mean_gap, n).astype(np.int64) + 1
        ktime = t + np.cumsum(gaps)
        t = int(ktime[-1])
        fl = rng.integers(0, flows, n)
        draws = rng.random(n)
        old = np.empty(n, dtype=np.int64)
        new = np.empty(n, dtype=np.int64)
        # Chains are sequential per flow: a tight loop, in numpy-friendly chunks.
        for i in range(n):
            f = fl[i]
            s = state[f]
            nx = int(np.searchsorted(cum[s], draws[i]))
            old[i] = s
            new[i] = min(nx, 4)
            state[f] = new[i]
        retrans += np.bincount(fl[new == 4], minlength=flows)
        cols = {
            "time": arr(wall(ktime), pa.int64()).cast(columns[0][1]),
            "ktime_ns": arr(ktime.astype(np.uint64)),
            "kind": arr(np.full(n, "ca_state")),
            "flow": arr(cookies[fl]),
            "family": arr(np.full(n, 4, dtype=np.uint8)),
            "saddr": arr(saddr[fl]),
            "daddr": arr(daddr[fl]),
            "sport": arr(sports[fl]),
            "dport": arr(np.full(n, 443, dtype=np.uint16)),
            "old_state": arr(STATES[old]),
            "new_state": arr(STATES[new]),
            "cpu": arr((fl % 2).astype(np.uint16)),
            "netns": arr(np.full(n, 4026531840, dtype=np.uint32)),
            "cgroup": arr(np.full(n, 1, dtype=np.uint64)),
            "cong_algo": arr(np.full(n, "cubic")),
            "snd_cwnd": arr(rng.integers(2, 200, n).astype(np.uint32)),
            "snd_ssthresh": arr(rng.integers(2, 200, n).astype(np.uint32)),
            "srtt_us": arr((200 + fl % 500).astype(np.uint32)),
            "mss": arr(np.full(n, 1448, dtype=np.uint32)),
            "packets_out": arr(rng.integers(0, 100, n).astype(np.uint32)),
            "retrans_out": arr(rng.integers(0, 5, n).astype(np.uint32)),
            "lost_out": arr(rng.integers(0, 5, n).astype(np.uint32)),
            "sacked_out": arr(rng.integers(0, 20, n).astype(np.uint32)),
            "total_retrans": arr(retrans[fl].astype(np.uint32)),
        }
        if host:
            cols.update(seq=arr(np.zeros(n, dtype=np.uint32)), kernel_gap=arr(np.zeros(n, dtype=np.uint8)),
                        pid=arr(np.zeros(n, dtype=np.uint32)), comm=arr(np.full(n, "")),
                        host=arr(np.full(n, host)), boot_id=arr(np.full(n, boot_id)),
                        capture=arr(np.full(n, "")))
        batch = pa.record_batch([cols[n_] for n_, _ in columns], schema=schema)
        if writer is None:
            writer = pq.ParquetWriter(
                out, schema, compression="zstd", compression_level=3,
                use_dictionary=[c for c, _ in columns if c not in DELTA],
                column_encoding={c: "DELTA_BINARY_PACKED" for c in DELTA},
            )
            if host:
                writer.write_batch(capture_row(start_ktime, "start"))
        writer.write_batch(batch, row_group_size=1 << 20)
        written += n
    end_ktime = t + 1_000_000
    meta.update(end_ktime_ns=end_ktime, events=written, flows=flows, sorted=True)
    if host:
        meta["schema_minor"] = 1
        writer.write_batch(capture_row(end_ktime, "end"))
    writer.add_key_value_metadata({"tcpcong": json.dumps(meta)})
    writer.close()
    print(f"{out}: {written} events, {flows} flows", file=sys.stderr)


if __name__ == "__main__":
    main()
