"""The Python package (python/; `make python` builds the wheel and unpacks
it into target/python, which `make test` puts on PYTHONPATH): tcpcong's
engine without the binary. Its table is analyze's JSON rows, row for row,
whether it reads paths or rows already in memory (pyarrow, polars, pandas,
DuckDB; several files and boots, overlapping files, rows shuffled and put
back in order by their place in the file), and the duration query
(schemas/durations.sql, an independent implementation) agrees with it on
the rules' hand-made cases. Its errors are one line each. The fleet, with
Spark running the package per host, is in test_spark.py."""

import json
import random
import re
import subprocess
import warnings
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import tcpcong
import test_interop as rules
from conftest import (COMPAT, FIXTURE_FILES, FIXTURES, REPO, assert_rows_are_json, binary, modernize, run_analyze,
                      write_table)

MODES = ["full", "between"]


def test_the_wheel_is_the_engine_alone():
    """No BPF, libbpf, libelf or zlib in the extension: nothing but the C
    library is needed where it runs (Spark executors, notebooks)."""
    so = next(Path(tcpcong.__file__).parent.glob("_engine*.so"))
    libs = subprocess.run(["ldd", str(so)], capture_output=True, text=True, check=True).stdout
    needed = {line.split()[0] for line in libs.splitlines() if "=>" in line}
    assert needed and not {n for n in needed if re.match(r"lib(elf|bpf|z)\.", n)}, needed
    assert needed <= {"libc.so.6", "libm.so.6", "libgcc_s.so.1"}, needed
    def version_of(cargo):
        return re.search(r'^version = "(.*)"', cargo.read_text(), re.M).group(1)
    version = version_of(REPO / "Cargo.toml")
    # The wheel's own version is python/Cargo.toml's: bumped together.
    assert tcpcong.__version__ == version == version_of(REPO / "python" / "Cargo.toml")
    wheels = list((REPO / "target" / "wheels").glob(f"tcpcong-{version}-*abi3*.whl"))
    assert len(wheels) == 1, wheels


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("every_flow", [True, False], ids=["all", "changed"])
@pytest.mark.parametrize("path", [*FIXTURE_FILES, FIXTURES], ids=[*(p.stem for p in FIXTURE_FILES), "folder"])
def test_paths_give_analyzes_rows(path, mode, every_flow):
    got = tcpcong.durations(path, mode, all=every_flow)
    want = run_analyze([path], mode, every_flow)
    assert want
    assert got.schema == tcpcong.schema()
    assert_rows_are_json(got.to_pylist(), want)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Files as this version writes them, of several boots: a fixture, the
    hand-made corner cases, two boots one of which is in two overlapping
    files."""
    d = rules.write_dataset(tmp_path_factory.mktemp("package") / "runs")
    modernize(FIXTURE_FILES[0], d / "fixture.parquet", "fixture", "f1xed000-0000-0000-0000-000000000000")
    rules.write_events(d / "handmade.parquet", rules.sorted_events(rules.HANDMADE),
                       dict(rules.meta_for(1000, 10000), hostname="handmade"))
    files = sorted(d.rglob("*.parquet"))
    assert len(files) == 5
    return d, files


def duckdb_rows(d):
    return duckdb.sql(f"SELECT * FROM read_parquet('{d}/**/*.parquet', filename = true, file_row_number = true)")


def shuffled(table: pa.Table) -> pa.Table:
    order = list(range(table.num_rows))
    random.Random(7).shuffle(order)
    return table.take(order)


def with_filename(t: pa.Table, f: Path) -> pa.Table:
    return t.append_column("filename", pa.array([str(f)] * t.num_rows).dictionary_encode())


IN_MEMORY = {
    "pyarrow, filename as a dictionary": lambda d, files: pa.concat_tables(
        [with_filename(pq.read_table(f), f) for f in files]),
    "polars": lambda d, files: pl.read_parquet(files, include_file_paths="filename"),
    "pandas": lambda d, files: pd.concat([pd.read_parquet(f).assign(filename=str(f)) for f in files]),
    "duckdb relation": lambda d, files: duckdb_rows(d),
    "shuffled, with file_row_number": lambda d, files: shuffled(duckdb_rows(d).arrow().read_all()),
    "one file's rows": lambda d, files: pq.read_table(files[0]),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", IN_MEMORY)
def test_rows_in_memory_give_what_their_files_give(recordings, how, mode):
    d, files = recordings
    rows = IN_MEMORY[how](d, files)
    inputs = [files[0]] if how == "one file's rows" else [d]
    want = run_analyze(inputs, mode)
    if how != "one file's rows":
        assert len({(r["host"], r["boot_id"]) for r in want}) >= 4
    assert_rows_are_json(tcpcong.durations(rows, mode, all=True).to_pylist(), want)


def test_threads_give_what_one_thread_gives(recordings):
    d, _ = recordings
    one = tcpcong.durations(d, all=True)
    assert one.num_rows > 10
    for n in (2, 3):
        assert tcpcong.durations(d, all=True, threads=n).equals(one)
        assert tcpcong.durations(duckdb_rows(d), all=True, threads=n).equals(one)
    # As analyze --threads takes them: a clear error, not an OverflowError.
    for bad in (0, -1, 1025, 1.5, True):
        with pytest.raises(ValueError, match="a whole number from 1 to 1024"):
            tcpcong.durations(d, threads=bad)


@pytest.mark.parametrize("mode", MODES)
def test_durations_sql_agrees_with_the_package(recordings, mode):
    """The query, from the rows alone, and the engine on the same files."""
    d, _ = recordings
    key = lambda r: (r["host"], r["boot_id"], int(r["flow"]))
    numbers = ("open_ns", "disorder_ns", "cwr_ns", "recovery_ns", "loss_ns", "changes")
    sql = {key(r): tuple(int(r[k]) for k in numbers) for r in rules.sql_durations(f"{d}/**/*.parquet", mode)}
    got = {key(r): tuple(r[k] for k in numbers) for r in tcpcong.durations(duckdb_rows(d), mode, all=True).to_pylist()}
    assert len(got) > 10 and got == sql


def test_spark_types_hold_the_values():
    t = tcpcong.durations(FIXTURES, all=True)
    s = tcpcong.to_spark(t)
    assert s.to_pylist() == t.to_pylist()
    assert str(s.schema.field("flow").type) == "decimal128(20, 0)"
    assert s.schema.field("open_ns").type == pa.int64()
    assert [part.split(" ")[0] for part in tcpcong.spark_schema().split(", ")] == t.schema.names
    # Episodes too: their cut is a double, the time regained may be null.
    e = tcpcong.episodes(FIXTURES)
    s = tcpcong.to_spark(e)
    assert s.to_pylist() == e.to_pylist()
    assert s.schema.field("reduction").type == pa.float64()
    assert s.schema.field("regained_ns").type == pa.int64() and s.schema.field("regained_ns").nullable
    assert "reduction double" in tcpcong.spark_schema(e).split(", ")


def one_line_error(kind, call):
    with pytest.raises(kind) as e:
        call()
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text and "panicked" not in text
    return text


def test_errors_say_what_in_one_line(recordings, tmp_path):
    d, files = recordings
    assert "accounting must be 'full' or 'between'" in one_line_error(
        ValueError, lambda: tcpcong.durations(d, "fullest"))
    assert "no such file" in one_line_error(FileNotFoundError, lambda: tcpcong.durations(tmp_path / "nothing.parquet"))
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), other)
    assert "not a tcpcong recording" in one_line_error(ValueError, lambda: tcpcong.durations(other))
    assert "column ktime_ns is missing" in one_line_error(
        ValueError, lambda: tcpcong.durations(pa.table({"a": [1]})))
    # A fixture predates the capture rows: its facts are only in its footer.
    assert "pass their paths instead" in one_line_error(
        ValueError, lambda: tcpcong.durations(pq.read_table(COMPAT)))
    two = pa.concat_tables([pq.read_table(f) for f in files[-2:]])
    assert "filename column" in one_line_error(ValueError, lambda: tcpcong.durations(two))
    messy = shuffled(pq.read_table(files[0]))
    assert "file_row_number" in one_line_error(ValueError, lambda: tcpcong.durations(messy))
    assert "no rows" in one_line_error(ValueError, lambda: tcpcong.durations(pq.read_table(files[0]).slice(0, 0)))
    assert "takes paths" in one_line_error(TypeError, lambda: tcpcong.durations(42))
    assert "takes paths" in one_line_error(TypeError, lambda: tcpcong.durations([1, 2]))
    assert "empty list" in one_line_error(ValueError, lambda: tcpcong.durations([]))
    one = pq.read_table(files[0])
    assert "given 2 times" in one_line_error(ValueError, lambda: tcpcong.durations(pa.concat_tables([one, one])))
    # Part of a file's rows (a filter) would give other numbers in silence.
    part = one.filter(pc.field("kind") != "tcp_state")
    assert f"{part.num_rows} rows where this recording holds" in one_line_error(
        ValueError, lambda: tcpcong.durations(part))
    # And written back with its metadata: a file that says what it held.
    cut = tmp_path / "cut.parquet"
    pq.write_table(part, cut)
    assert f"{part.num_rows} rows where its metadata counts" in one_line_error(
        ValueError, lambda: tcpcong.durations(cut))
    # Python has no flags: the errors name none (analyze adds its own).
    number = one_line_error(ValueError, lambda: tcpcong.durations("10"))
    assert number == "'10' is not a recording", number
    bare = tmp_path / "bare.parquet"
    pq.write_table(pq.read_table(COMPAT).replace_schema_metadata(None), bare)
    text = one_line_error(ValueError, lambda: tcpcong.durations(bare))
    assert "but not its metadata" in text and not re.search(r"(^|[ (/])--?[a-zA-Z]", text), text


@pytest.mark.parametrize("mode", MODES)
def test_warnings_are_the_lines_analyze_prints(tmp_path, mode):
    """What the numbers cannot show is said, not dropped: the package warns
    with the lines analyze prints on stderr, from paths (a folder with a
    killed capture's leftover beside a lossy file) and from rows."""
    lossy = modernize(FIXTURE_FILES[0], tmp_path / "lossy.parquet", "lossy",
                      "f1xed000-0000-0000-0000-0000000000ff", drop_every=5)
    (tmp_path / ".killed.parquet.inprogress").write_bytes(b"PAR1")
    p = subprocess.run([str(binary()), "analyze", str(tmp_path), "--accounting", mode, "--format", "json"],
                       capture_output=True, text=True, check=True)
    want = [re.sub(r"^tcpcong: (WARNING: )?", "", line) for line in p.stderr.splitlines()]
    assert want[0].startswith("ignoring ") and any("did not start from the state" in w for w in want), want

    def warned(data):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tcpcong.durations(data, mode)
        return [str(w.message) for w in caught if w.category is tcpcong.DataWarning]
    assert warned(tmp_path) == want
    assert warned(pq.read_table(lossy)) == want[1:]


def test_episode_warnings_are_the_lines_analyze_episodes_prints(tmp_path):
    """The losses a recording's footer (and its capture rows) state are
    said by the package's episodes as `analyze --episodes` says them, from
    paths and from rows."""
    base = modernize(FIXTURE_FILES[0], tmp_path / "base.parquet", "lossy",
                     "f1xed000-0000-0000-0000-0000000000ff", drop_every=5)
    meta = json.loads(pq.read_metadata(base).metadata[b"tcpcong"])
    meta.update(lost_events=7, gaps=3)
    t = pq.read_table(base)
    lossy = write_table(tmp_path / "lossy.parquet", t.filter(pc.not_equal(t.column("kind"), "capture")), meta)
    base.unlink()
    p = subprocess.run([str(binary()), "analyze", "--episodes", str(lossy), "--format", "json"],
                       capture_output=True, text=True, check=True)
    want = [re.sub(r"^tcpcong: (WARNING: )?", "", line) for line in p.stderr.splitlines()]
    assert [w[:30] for w in want] == ["the capture lost 7 events (not", "the recordings counted 3 trans"], want

    def warned(data):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tcpcong.episodes(data)
        return [str(w.message) for w in caught if w.category is tcpcong.DataWarning]
    assert warned(lossy) == want
    assert warned(pq.read_table(lossy)) == want


def test_strings_in_any_layout_and_extra_columns(recordings, tmp_path):
    """Dictionary-encoded detail strings (pandas categories, DuckDB enums)
    keep their values, and columns that are not schema v1's (with nulls)
    are not ours to judge."""
    _, files = recordings
    t = pq.read_table(files[0])
    names = pa.array([f"web-{f % 3}" for f in t.column("flow").to_pylist()])
    named = tmp_path / "named.parquet"
    pq.write_table(t.set_column(t.schema.get_field_index("comm"), "comm", names), named)
    want = run_analyze([named], "full")
    assert {r["comm"] for r in want} == {"web-0", "web-1", "web-2"}
    rows = pq.read_table(named)
    as_dictionary = rows.set_column(rows.schema.get_field_index("comm"), "comm",
                                    rows.column("comm").dictionary_encode())
    categories = rows.to_pandas().astype({"comm": "category", "cong_algo": "category"})
    with_nulls = rows.append_column("note", pa.array([None] * rows.num_rows, pa.string()))
    for data in (as_dictionary, categories, with_nulls):
        assert_rows_are_json(tcpcong.durations(data, all=True).to_pylist(), want)


def analyze_episodes(inputs) -> list[dict]:
    out = subprocess.run(
        [str(binary()), "analyze", "--episodes", *map(str, inputs), "--format", "json"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def as_json_rows(table: pa.Table) -> list[dict]:
    """A table's rows with analyze's JSON values: times as RFC 3339 to the
    microsecond (the table's unit), NaN-free numbers as they are."""
    rows = table.to_pylist()
    for r in rows:
        for k in ("start", "end"):
            r[k] = pd.Timestamp(r[k]).isoformat().replace("+00:00", "Z")
    return rows


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=[p.name for p in FIXTURE_FILES])
def test_episodes_are_analyzes_from_files_and_rows(path):
    """`tcpcong.episodes` is `analyze --episodes`, row for row, from a path
    and from the file's rows in memory (pyarrow, polars)."""
    want = analyze_episodes([path])
    for r in want:
        for k in ("start", "end"):
            r[k] = pd.Timestamp(r[k]).floor("us").isoformat().replace("+00:00", "Z")
    from_path = tcpcong.episodes(path)
    assert from_path.schema.field("regained_ns").nullable
    assert as_json_rows(from_path) == want
    assert as_json_rows(tcpcong.episodes(pq.read_table(path))) == want
    assert as_json_rows(tcpcong.episodes(pl.read_parquet(path))) == want
    if path.name.startswith("ipv4") or path.name.startswith("multi"):
        assert want, "the lab's loss makes episodes"
