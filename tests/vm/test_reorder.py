"""Reordering, which only the guests' kernels can make (netem; this host's
kernel has no sch_netem): spurious retransmissions, their undos, and the
episodes they explain, held to the guest kernel's own counters.

In a guest namespace on Debian 12's 6.1 kernel, netem lets 10 % of the
loopback's packets overtake the others (which wait 2 ms) and drops none.
Senders take the late ones for lost, retransmit, learn from DSACKs and
timestamps that they were not, and undo their reductions. The recording
must hold:

* the undos, as the kernel counted them: rows out of loss marked `undo`
  == TcpExtTCPLossUndo; out of recovery, between TCPFullUndo +
  TCPPartialUndo and that plus TCPDSACKUndo (a DSACK undo that comes after
  its episode, in open or disorder, moves no state and has no row);
* the reorderings: reord_seen at the flows' closes == TCPSACKReorder +
  TCPTSReorder + TCPRenoReorder; the DSACKs: dsack_dups == TCPDSACKRecvSegs;
* episodes: every episode holding an undo row is `spurious`, and only
  those; every episode that never left disorder and resent nothing is
  `reordering`; netem dropped nothing (its counters) and no episode holds
  a drop.

Runs unless TCPCONG_VM=0. The binary under test is $TCPCONG (default the
debug build); the first run downloads the kernels (see vm.py).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import vm  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("TCPCONG_VM") == "0", reason="TCPCONG_VM=0")

TCPCONG = vm.TCPCONG

SCRIPT = r"""#!/bin/bash
set -euo pipefail
tcpcong=/usr/local/bin/tcpcong
/lab/lab.sh up vmre
/lab/lab.sh reorder vmre 10
ino=$(/lab/lab.sh inode vmre)
$tcpcong record --netns "$ino" -o /out/run.parquet 2> /out/run.stderr &
rec=$!
for _ in $(seq 600); do grep -q "Hit Ctrl-C" /out/run.stderr && break; sleep 0.1; done
grep -q "Hit Ctrl-C" /out/run.stderr || { cat /out/run.stderr; exit 1; }
/lab/lab.sh nstat vmre > /out/netstat.before
/lab/lab.sh traffic vmre 4 --parallel 2
# Every connection closed: the counters are final.
/lab/lab.sh settle vmre
/lab/lab.sh nstat vmre > /out/netstat.after
ip netns exec vmre tc -s qdisc show dev lo > /out/qdisc
kill -INT $rec
wait $rec
/lab/lab.sh down vmre
"""


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    return vm.run_tcpcong(tmp_path_factory.mktemp("reorder"), "bookworm", SCRIPT, TCPCONG)[1]


def test_undone_reductions_are_the_kernels_and_explain_their_episodes(guest):
    out = guest
    before, after = vm.counters(out / "netstat.before"), vm.counters(out / "netstat.after")

    def counted(name):
        return after.get(name, 0) - before.get(name, 0)

    # netem dropped nothing: every retransmission here is spurious or
    # answers a reordering.
    qdisc = (out / "qdisc").read_text()
    assert "dropped 0," in qdisc and "netem" in qdisc, qdisc

    path = out / "run.parquet"
    f = pq.ParquetFile(path)
    meta = json.loads(f.metadata.metadata[b"tcpcong"])
    stderr = (out / "run.stderr").read_text()
    # The only loss allowed: calls the kernel skipped (a program an
    # interrupt re-entered on one CPU), said as such; each may hide a row.
    skipped = meta["lost_events"]
    assert skipped == 0 or f"{skipped} skipped by the kernel" in stderr, stderr
    rows = [r for r in f.read().to_pylist() if r["kind"] not in ("capture", "snapshot")]
    # Nothing dropped on the way: a copy of a segment the receiver already
    # had, or one that came after its socket was gone (netem held it back
    # past the close), may be, by the receiver on receipt (6.1 names no
    # reason for most of those; no_socket, tcp_* for some), never by a
    # queue or a rule.
    drops = [r for r in rows if r["kind"] == "drop"]
    on_the_way = [(r["old_state"], r["new_state"]) for r in drops
                  if not (r["new_state"] == "not_specified"
                          or (r["old_state"] == "rx" and (r["new_state"] == "no_socket"
                                                          or r["new_state"].startswith("tcp_"))))]
    assert not on_the_way, on_the_way
    ca = [r for r in rows if r["kind"] == "ca_state"]

    def undone(old):
        return sum(1 for r in ca if r["undo"] == 1 and r["old_state"] == old)

    full, partial, dsack = (counted(f"TcpExtTCP{n}Undo") for n in ("Full", "Partial", "DSACK"))
    print(
        f"undone: {undone('recovery')} out of recovery (TCPFullUndo {full}, TCPPartialUndo {partial}, "
        f"TCPDSACKUndo {dsack}), {undone('loss')} out of loss (TCPLossUndo {counted('TcpExtTCPLossUndo')})"
    )
    assert full + partial > 0, "the reordering undid no reduction"
    assert counted("TcpExtTCPLossUndo") - skipped <= undone("loss") <= counted("TcpExtTCPLossUndo")
    assert full + partial - skipped <= undone("recovery") <= full + partial + dsack

    # The flows' lives: each close holds its totals.
    last = {}
    for r in rows:
        if r["kind"] != "drop" and (r["flow"] not in last or r["ktime_ns"] >= last[r["flow"]]["ktime_ns"]):
            last[r["flow"]] = r
    reorderings = sum(counted(f"TcpExtTCP{n}Reorder") for n in ("SACK", "TS", "Reno"))
    assert sum(r["reord_seen"] for r in last.values()) == reorderings > 0
    assert sum(r["dsack_dups"] for r in last.values()) == counted("TcpExtTCPDSACKRecvSegs") > 0

    # Episodes: the undos' are spurious, and only theirs; a trip to
    # disorder that resent nothing is a reordering.
    a = subprocess.run(
        [str(TCPCONG), "analyze", "--episodes", str(path), "--format", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    episodes = [json.loads(line) for line in a.stdout.splitlines()]
    undos = [r for r in ca if r["undo"] == 1]
    holding = {
        (e["flow"], e["start_ktime_ns"])
        for e in episodes
        for u in undos
        if u["flow"] == e["flow"] and e["start_ktime_ns"] < u["ktime_ns"] <= e["end_ktime_ns"]
    }
    spurious = {(e["flow"], e["start_ktime_ns"]) for e in episodes if e["cause"] == "spurious"}
    causes = {}
    for e in episodes:
        causes[e["cause"]] = causes.get(e["cause"], 0) + 1
    print(f"{len(episodes)} episodes: {causes}")
    assert spurious == holding and spurious
    for e in episodes:
        assert e["dropped"] == 0, e
        visited = [s for s in e["states"].split(">") if s != "open"]
        quiet = visited == ["disorder"] and e["retransmits"] == 0 and not e["undone"]
        assert (e["cause"] == "reordering") == quiet, e
    assert causes.get("reordering", 0) > 0
