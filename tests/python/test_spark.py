"""A rotated series read by Spark (pyspark, `local[2]`, Java 17 from
Debian) with its default settings, as a fleet's user would: the hive
partitions discovered, the documented type mapping, and a per-flow figure
computed in Spark SQL keyed by (host, boot_id, flow) equal to analyze's.
The series is a fresh lab recording (root and BPF: in CI this fails,
never skips, without them).

Then a fleet: that series, the fixtures as this version writes them (one
of them with lost events), and hand-made recordings of the rules' corner
cases (snapshots, two boots, overlapping files of one boot), each under a
host of its own. schemas/durations.sql, run by Spark and by DuckDB over
the rows alone, gives analyze's table of the whole fleet, flow by flow, in
both accounting modes; so does the Python package, over the files, over
DuckDB's rows, and run by Spark once per host (an Arrow UDF).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pyarrow.parquet as pq
import pytest

from conftest import FIXTURE_FILES, REPO, SCHEMAS, binary, modernize, run_analyze

LAB = REPO / "lab" / "lab.sh"

# Spark's Parquet reader, by default, for schema v1's types.
SPARK_TYPES = {
    "timestamp[us, tz=UTC]": "timestamp",
    "uint64": "decimal(20,0)",
    "uint32": "bigint",
    "uint16": "int",
    "uint8": "smallint",
    "int32": "int",
    "string": "string",
}


def lab(*args, check=True):
    return subprocess.run(["bash", str(LAB), *args], capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("needs root (BPF, namespaces)")
    out = tmp_path_factory.mktemp("spark") / "series"
    ns = f"tc-spark-{os.getpid()}"
    lab("up", ns, "--loss", "2")
    try:
        rec = subprocess.Popen([str(binary()), "record", "-o", f"{out}/", "--rotate-seconds", "2",
                                "--netns", f"/var/run/netns/{ns}"], stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        for line in rec.stderr:
            if line.startswith("Recording TCP congestion-state transitions") or time.monotonic() > deadline:
                break
        lab("traffic", ns, "4", "--parallel", "2")
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=60)
        assert rec.returncode == 0, err
    finally:
        lab("down", ns, check=False)
    files = sorted(out.rglob("*.parquet"))
    assert len(files) >= 2, files
    return out, files


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession
    s = (SparkSession.builder.master("local[2]").appName("tcpcong-interop")
         .config("spark.ui.enabled", "false").getOrCreate())
    yield s
    s.stop()


def test_spark_reads_a_series_with_its_default_settings(series, spark):
    out, files = series
    df = spark.read.parquet(str(out))
    doc = json.loads((REPO / "schemas" / "events-v1.json").read_text())["columns"]
    got = dict(df.dtypes)
    for c in doc:
        assert got[c["name"]] == SPARK_TYPES[c["type"]], (c["name"], got[c["name"]])
    # The hive partitions: host= (also a column of every row) and date=.
    assert "date" in got
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    assert df.count() == rows > 0
    meta = json.loads(pq.read_schema(files[0]).metadata[b"tcpcong"])
    keys = df.select("host", "boot_id").distinct().collect()
    assert [(r.host, r.boot_id) for r in keys] == [(meta["hostname"], meta["boot_id"])]
    dates = {str(r.date) for r in df.select("date").distinct().collect()}
    assert dates == {f.parent.name.removeprefix("date=") for f in files}


def test_spark_sql_per_flow_changes_equal_analyzes(series, spark):
    out, _ = series
    spark.read.parquet(str(out)).createOrReplaceTempView("events")
    got = {
        (r.host, r.boot_id, int(r.flow)): r.changes
        for r in spark.sql("""
            SELECT host, boot_id, flow,
                   count_if(kind = 'ca_state' AND old_state <> new_state) AS changes
            FROM events GROUP BY host, boot_id, flow""").collect()
    }
    p = subprocess.run([str(binary()), "analyze", str(out), "--all", "--format", "json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(l) for l in p.stdout.splitlines()]
    assert any(r["changes"] for r in rows)
    # Full accounting counts every change in the capture.
    for r in rows:
        key = (r["host"], r["boot_id"], r["flow"])
        assert r["changes"] == got[key], (key, r["changes"], got[key])


def analyze_json(path) -> list[dict]:
    p = subprocess.run([str(binary()), "analyze", str(path), "--all", "--format", "json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines()]


def test_every_file_opens_and_closes_with_its_capture_rows(series):
    _, files = series
    for f in files:
        t = pq.read_table(f)
        kinds, states = t.column("kind").to_pylist(), t.column("new_state").to_pylist()
        assert (kinds[0], states[0]) == ("capture", "start"), f
        assert (kinds[-1], states[-1]) == ("capture", "end"), f
        assert kinds.count("capture") == 2, f
        footer = json.loads(pq.read_schema(f).metadata[b"tcpcong"])
        assert json.loads(t.column("capture")[t.num_rows - 1].as_py()) == footer
        start = json.loads(t.column("capture")[0].as_py())
        assert start["start_ktime_ns"] == footer["start_ktime_ns"] == t.column("ktime_ns")[0].as_py()
        assert t.column("ktime_ns")[t.num_rows - 1].as_py() == footer["end_ktime_ns"]
        assert footer["events"] + footer["snapshots"] == t.num_rows - 2
        assert footer["snapshots"] == kinds.count("snapshot")
        assert set(t.column("capture").to_pylist()[1:-1]) <= {""}


def test_a_file_rewritten_without_its_footer_reads_the_same(series, spark, tmp_path):
    """DuckDB's COPY and Spark's write drop the footer (and Spark writes the
    uint64 columns back as decimal(20,0)): the capture rows still say what
    the footer said."""
    import duckdb
    _, files = series
    f = max(files, key=lambda p: pq.ParquetFile(p).metadata.num_rows)
    want = analyze_json(f)
    assert any(r["changes"] for r in want)
    copied = tmp_path / "copied.parquet"
    duckdb.sql(f"COPY (SELECT * FROM '{f}') TO '{copied}' (FORMAT parquet)")
    assert b"tcpcong" not in (pq.read_schema(copied).metadata or {})
    assert analyze_json(copied) == want
    spark.read.parquet(str(f)).coalesce(1).write.mode("overwrite").parquet(str(tmp_path / "by-spark"))
    assert analyze_json(tmp_path / "by-spark") == want


KEY = ("host", "boot_id", "flow")
NUMBERS = ("open_ns", "disorder_ns", "cwr_ns", "recovery_ns", "loss_ns", "changes")


@pytest.fixture(scope="module")
def fleet(series, tmp_path_factory):
    """As a fleet's series lie: DIR/host=NAME/date=DAY/FILE (the host as
    each file's metadata names it)."""
    import test_interop as rules
    out, _ = series
    d = tmp_path_factory.mktemp("fleet")
    shutil.copytree(out, d, dirs_exist_ok=True)

    def day(host):
        p = d / f"host={host}" / "date=2026-11-18"
        p.mkdir(parents=True, exist_ok=True)
        return p
    for i, f in enumerate(FIXTURE_FILES):
        modernize(f, day(f"fixture-{i}") / f.name, f"fixture-{i}", f"f1xed000-0000-0000-0000-00000000000{i}")
    modernize(FIXTURE_FILES[0], day("lossy") / "lossy.parquet", "lossy",
              "f1xed000-0000-0000-0000-0000000000ff", drop_every=5)
    rules.write_events(day("handmade") / "handmade.parquet", rules.sorted_events(rules.HANDMADE),
                       dict(rules.meta_for(1000, 10000), hostname="handmade"))
    # two boots, one of them in two overlapping files (a, then b)
    made = rules.write_dataset(tmp_path_factory.mktemp("boots") / "runs")
    for f in sorted(made.rglob("*.parquet")):
        host = json.loads(pq.read_schema(f).metadata[b"tcpcong"])["hostname"]
        shutil.move(f, day(host) / f.name)
    return d


def spark_durations(spark, path, accounting):
    from pyspark.sql import functions as F
    rows = spark.read.parquet(str(path))
    rows.select("*", F.col("_metadata.file_path").alias("filename"),
                F.col("_metadata.row_index").alias("file_row_number")).createOrReplaceTempView("tcpcong_rows")
    spark.sql(f"SELECT '{accounting}' AS accounting").createOrReplaceTempView("tcpcong_params")
    return spark.sql((SCHEMAS / "durations.sql").read_text()).collect()


def spark_package_durations(spark, path, accounting):
    """The fleet's table as the README's PySpark job computes it: the
    package once per host, in Spark's Arrow UDF."""
    import tcpcong
    from pyspark.sql import functions as F
    rows = spark.read.parquet(str(path)).select(
        "*", F.col("_metadata.file_path").alias("filename"),
        F.col("_metadata.row_index").alias("file_row_number"))

    def per_host(t):
        return tcpcong.to_spark(tcpcong.durations(t, accounting, all=True))
    return rows.groupBy("host").applyInArrow(per_host, tcpcong.spark_schema()).collect()


def package_durations(path, accounting):
    """The package over the files, and over DuckDB's rows of them."""
    import duckdb
    import tcpcong
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{path}/**/*.parquet', filename = true, file_row_number = true)")
    return (tcpcong.durations(path, accounting, all=True).to_pylist(),
            tcpcong.durations(rows, accounting, all=True).to_pylist())


def duckdb_durations(path, accounting):
    import duckdb
    con = duckdb.connect()
    con.execute("SET VARIABLE tcpcong_files = ?", [f"{path}/**/*.parquet"])
    con.execute("SET VARIABLE tcpcong_accounting = ?", [accounting])
    con.execute((SCHEMAS / "durations-duckdb.sql").read_text())
    cur = con.execute((SCHEMAS / "durations.sql").read_text())
    names = [c[0] for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def keyed(rows):
    out = {}
    for r in rows:
        key = (r["host"], r["boot_id"], int(r["flow"]))
        assert key not in out, key
        out[key] = tuple(int(r[k]) for k in NUMBERS)
    return out


@pytest.mark.parametrize("mode", ["full", "between"])
def test_durations_sql_and_the_package_on_spark_and_duckdb_equal_analyze_on_a_fleet(fleet, spark, mode):
    want = keyed(run_analyze([fleet], mode))
    hosts = {h for h, _, _ in want}
    assert len(hosts) >= 6 and len({(h, b) for h, b, _ in want}) >= 7, hosts
    assert any(n[-1] for n in want.values())
    on_spark = keyed(r.asDict() for r in spark_durations(spark, fleet, mode))
    on_duckdb = keyed(duckdb_durations(fleet, mode))
    spark_package = keyed(r.asDict() for r in spark_package_durations(spark, fleet, mode))
    package_files, package_rows = map(keyed, package_durations(fleet, mode))
    for name, got in (("spark", on_spark), ("duckdb", on_duckdb), ("spark with the package", spark_package),
                      ("package on the files", package_files), ("package on DuckDB's rows", package_rows)):
        assert got.keys() == want.keys(), (name, sorted(got.keys() ^ want.keys())[:10])
        wrong = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        assert not wrong, (name, list(wrong.items())[:5])


def readme_examples():
    """The Python blocks of the README's "The engine in Python"."""
    text = (REPO / "README.md").read_text()
    section = text.split("### The engine in Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.mark.parametrize("example", readme_examples(), ids=["pyspark", "duckdb", "polars"])
def test_the_readmes_python_examples_compute_analyzes_table(fleet, spark, example, capfd):
    """Each example as printed, on the fleet instead of the bucket: its
    table is analyze's, flow by flow, and its roll-up prints."""
    assert 'FLEET = "s3://bucket/tcpcong/"' in example and len(example.splitlines()) <= 30
    code = example.replace('FLEET = "s3://bucket/tcpcong/"', f'FLEET = "{fleet}/"')
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    table = scope["per_flow"]
    rows = (r.asDict() for r in table.collect()) if hasattr(table, "collect") else (
        table.to_dicts() if hasattr(table, "to_dicts") else table.to_pylist())
    assert keyed(rows) == keyed(run_analyze([fleet], "full"))
    printed = capfd.readouterr().out
    assert "recovery_ns" in printed or "loss_s" in printed, printed
