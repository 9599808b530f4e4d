"""tcpcong's engine in Python: how long every TCP flow spent in each
congestion state (open, disorder, cwr, recovery, loss), computed from
tcpcong recordings exactly as ``tcpcong analyze`` computes it.

    import tcpcong
    table = tcpcong.durations("runs/")         # files, folders, globs
    table = tcpcong.durations(rows)            # rows already in memory
    table = tcpcong.episodes("runs/")          # every trip out of open, with its cause

The result is a ``pyarrow.Table``, one row per flow, with the columns of
``tcpcong analyze --format json`` (host, boot_id and flow key a row).
Rows in memory can come from pyarrow, polars, pandas, DuckDB or a Spark
Arrow UDF: the rows of whole recording files, every column, with the
file's name in a ``filename`` column when they are from several files,
and each row's place in its file in ``file_row_number`` when an engine
may have reordered them (DuckDB's ``read_parquet(..., filename = true,
file_row_number = true)``; Spark's ``_metadata.file_path`` and
``_metadata.row_index``).

No tcpcong binary, BPF or libelf is needed: the engine is in this package.
"""

import builtins as _builtins
import os as _os
import warnings as _warnings

import pyarrow as _pa

from . import _engine

__version__ = _engine.__version__
__all__ = ["durations", "episodes", "schema", "to_spark", "spark_schema", "DataWarning"]


class DataWarning(UserWarning):
    """What a table cannot show (lost events, transitions without an event,
    events two overlapping captures both recorded, full accounting without
    lifecycle events): the lines ``tcpcong analyze`` prints on stderr."""


def durations(data, accounting="full", *, all=False, threads=1):
    """The per-flow duration table of ``data``, as a ``pyarrow.Table``.

    ``data``: a path (file, folder or glob, as ``tcpcong analyze`` takes
    them) or a list of paths; or the rows of whole recording files as any
    Arrow table (anything with ``__arrow_c_stream__``: pyarrow, polars,
    DuckDB) or a pandas DataFrame. ``accounting``: ``"full"`` (the default;
    also the time before a flow's first change and after its last) or
    ``"between"`` (only between two observed changes, the seed's
    arithmetic). ``all``: also flows without changes that were only in
    open (``--all``). ``threads``: boots are computed on this many threads
    (1 to 1024, as ``analyze --threads``).

    Raises ``ValueError`` for data that is not a recording (the message
    says why) and ``OSError`` for files that cannot be read
    (``FileNotFoundError`` for a path that is not there,
    ``PermissionError`` for a recording this user may not read). Warns with
    ``DataWarning`` what the numbers cannot show, as analyze does.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise ValueError(f"threads={threads!r}: a whole number from 1 to 1024")
    paths, rows = _inputs(data, "durations")
    if paths is not None:
        return _with_caveats(*_engine.durations_of_files(paths, accounting, all, threads))
    return _with_caveats(*_engine.durations_of_rows(rows, accounting, all, threads))


def episodes(data):
    """Every trip of a flow out of open in ``data``, one row each, as
    ``tcpcong analyze --episodes --format json`` has them (its states and
    the time in each, what it cost, the evidence that led to it, and its
    cause), as a ``pyarrow.Table``. ``data`` as ``durations`` takes it.
    """
    paths, rows = _inputs(data, "episodes")
    if paths is not None:
        return _with_caveats(*_engine.episodes_of_files(paths))
    return _with_caveats(*_engine.episodes_of_rows(rows))


def _inputs(data, name):
    """``data`` as (paths, None) or (None, rows that Arrow takes)."""
    if isinstance(data, (str, _os.PathLike)):
        data = [data]
    if isinstance(data, (list, tuple)) and not data:
        raise ValueError(f"{name}() needs a path, paths or rows; got an empty list")
    if isinstance(data, (list, tuple)) and data and _builtins.all(isinstance(p, (str, _os.PathLike)) for p in data):
        return [_os.fspath(p) for p in data], None
    if not hasattr(data, "__arrow_c_stream__"):
        try:
            data = _pa.table(data)
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"{name}() takes paths, or rows as an Arrow table (pyarrow, polars, DuckDB) "
                f"or a pandas DataFrame, not {type(data).__name__}"
            ) from e
    return None, data


def _with_caveats(table, caveats):
    for line in caveats:
        _warnings.warn(line, DataWarning, stacklevel=3)
    return table



def schema():
    """The columns of every table ``durations`` returns."""
    return _engine.table_schema()


# Spark has no unsigned integers. Ids (flow, cgroup) become decimal(20,0),
# as Spark reads them in recordings, so that they join; counts and
# nanoseconds (below 2^63) bigint, so that they sum as numbers.
_SPARK = {
    _pa.uint32(): (_pa.int64(), "bigint"),
    _pa.uint16(): (_pa.int32(), "int"),
    _pa.uint8(): (_pa.int16(), "smallint"),
    _pa.string(): (_pa.string(), "string"),
    _pa.float64(): (_pa.float64(), "double"),
    _pa.timestamp("us", tz="UTC"): (_pa.timestamp("us", tz="UTC"), "timestamp"),
}
_IDS = {"flow", "cgroup"}


def _spark_type(f):
    if f.type == _pa.uint64():
        return (_pa.decimal128(20, 0), "decimal(20,0)") if f.name in _IDS else (_pa.int64(), "bigint")
    return _SPARK[f.type]


def to_spark(table):
    """``table`` (from ``durations`` or ``episodes``) in the types Spark
    takes from Arrow: what a Spark Arrow UDF (``applyInArrow``,
    ``mapInArrow``) returns, with ``spark_schema(table)`` as its schema."""
    target = _pa.schema([_pa.field(f.name, _spark_type(f)[0], f.nullable) for f in table.schema])
    return table.cast(target)


def spark_schema(table=None):
    """The columns of ``table`` (by default, of every table ``durations``
    returns) as a Spark DDL schema string (see ``to_spark``)."""
    fields = schema() if table is None else table.schema
    return ", ".join(f"{f.name} {_spark_type(f)[1]}" for f in fields)
