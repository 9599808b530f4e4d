"""What the listings (`events`, `analyze --episodes`) say on standard error
about what their recordings miss: nothing lost silently. The recording is
a fixture rewritten by pyarrow with a footer that says it lost events and
counted gaps, which only the footer knows."""
import json
import subprocess

import pyarrow.parquet as pq
import pytest

from conftest import FIXTURES, binary

LOST = ("tcpcong: WARNING: the capture lost 7 events (not handed over, or runs the kernel skipped; "
        "which sockets they were of is not known): ")
GAPS = ("tcpcong: WARNING: the recordings counted 3 transitions that did not start from the state "
        "their flow was last in (a transition happened without an event)")


@pytest.fixture
def lossy(tmp_path):
    t = pq.read_table(FIXTURES / "ipv4-loss.parquet")
    meta = json.loads(t.schema.metadata[b"tcpcong"])
    meta.update(lost_events=7, gaps=3)
    path = tmp_path / "lossy.parquet"
    pq.write_table(t.replace_schema_metadata({**t.schema.metadata, b"tcpcong": json.dumps(meta)}), path)
    return path


@pytest.mark.parametrize("args, missing", [
    (["events"], "they are not among these rows"),
    (["events", "--format", "csv"], "they are not among these rows"),
    (["analyze", "--episodes"], "a flow that lost one of its own may have an episode cut short or joined to the next"),
    (["analyze", "--episodes", "--by", "cause", "--format", "json"],
     "a flow that lost one of its own may have an episode cut short or joined to the next"),
])
def test_listings_say_what_the_capture_lost(lossy, args, missing):
    p = subprocess.run([str(binary()), *args, str(lossy)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == [LOST + missing, GAPS]
    assert p.stdout


def test_listings_of_a_whole_recording_say_nothing(tmp_path):
    for args in (["events"], ["analyze", "--episodes"]):
        p = subprocess.run([str(binary()), *args, str(FIXTURES / "ipv4-loss.parquet")],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stderr == "", p.stderr
