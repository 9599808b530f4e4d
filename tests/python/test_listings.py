"""What the listings (`events`, `analyze --episodes`) say on standard error
about what their recordings miss: nothing lost silently. The recording is
a fixture rewritten by pyarrow with a footer that says it lost events and
counted gaps, which only the footer knows."""
import json
import subprocess

import pyarrow as pa
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


def with_kind(tmp_path, name, minor=None):
    """The fixture with its sixth row's kind renamed, and its schema minor
    set (a later version's file) or left."""
    t = pq.read_table(FIXTURES / "ipv4-loss.parquet")
    kinds = t.column("kind").to_pylist()
    assert kinds[5] == "ca_state"
    kinds[5] = "from_the_future"
    t = t.set_column(t.schema.get_field_index("kind"), "kind", pa.array(kinds))
    if minor is not None:
        meta = json.loads(t.schema.metadata[b"tcpcong"])
        meta["schema_minor"] = minor
        t = t.replace_schema_metadata({**t.schema.metadata, b"tcpcong": json.dumps(meta)})
    path = tmp_path / name
    pq.write_table(t, path)
    return path


def run(*args):
    return subprocess.run([str(binary()), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_a_kind_its_version_lacks_is_an_error_and_a_later_versions_a_note(tmp_path):
    # Of this version: a row that cannot be what it says is refused.
    bad = with_kind(tmp_path, "bad.parquet")
    for args in (["events", bad], ["analyze", bad], ["analyze", "--episodes", bad]):
        p = run(*args)
        assert p.returncode == 1, p.stderr
        assert p.stderr.splitlines()[-1] == f"tcpcong: {bad}: row with a kind its schema version does not have"
    # Of a later version: its kinds are left out, and that is said.
    later = with_kind(tmp_path, "later.parquet", minor=99)
    p = run("events", later, "--format", "json")
    assert p.returncode == 0, p.stderr
    assert p.stderr == (f"tcpcong: note: {later} was written by a later tcpcong (schema 1.99, this one reads "
                        "1.4): rows of kinds it added are left out\n")
    whole = run("events", FIXTURES / "ipv4-loss.parquet", "--format", "json").stdout.splitlines()
    # The file's sixth row is its fifth event (the first is the capture's).
    assert p.stdout.splitlines() == whole[:4] + whole[5:]
