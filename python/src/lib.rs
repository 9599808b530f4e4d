//! The `tcpcong._engine` extension: tcpcong's engine for Python, over
//! recordings on disk or over their rows in memory (any Arrow table),
//! returning the per-flow duration table (or the episodes) as a
//! `pyarrow.Table`. The Python
//! side (`tcpcong/__init__.py`) takes the inputs people have (paths,
//! pyarrow, polars, pandas) and calls one of the two functions here.
//!
//! Arrow crosses in both directions through the Arrow C data interface, so
//! a table's batches come over as they are (rows of several files are then
//! split by file). The work runs without the GIL, so Python threads (and
//! Spark's) go on meanwhile.

use arrow_array::RecordBatch;
use arrow_pyarrow::{PyArrowType, Table};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;

use tcpcong::analyze::caveats;
use tcpcong::analyze::engine::{durations, Accounting};
use tcpcong::analyze::render::arrow::Rows;
use tcpcong::analyze::render::episodes::{EpisodeLine, EPISODE};
use tcpcong::error::Error;
use tcpcong::event::Boot;
use tcpcong::record::format::reader::{discover, Dataset, RowFilter};

/// tcpcong's one-line error as the Python exception it is.
fn to_python(e: Error) -> PyErr {
    match e {
        Error::Missing { .. } => PyFileNotFoundError::new_err(e.to_string()),
        Error::Unreadable { .. } => PyPermissionError::new_err(e.to_string()),
        Error::Io { ref source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(e.to_string()),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(e.to_string()),
            _ => PyOSError::new_err(e.to_string()),
        },
        e => PyValueError::new_err(e.to_string()),
    }
}

fn accounting(name: &str) -> PyResult<Accounting> {
    match name {
        "full" => Ok(Accounting::Full),
        "between" => Ok(Accounting::Between),
        other => Err(PyValueError::new_err(format!(
            "accounting must be 'full' or 'between', not {other:?}"
        ))),
    }
}

/// The table of `data` and what it cannot show (analyze's stderr lines),
/// computed without the GIL.
fn table_of(
    py: Python<'_>,
    data: impl FnOnce() -> Result<(Dataset, Vec<String>), Error> + Send,
    accounting: Accounting,
    all: bool,
    threads: usize,
) -> PyResult<(PyArrowType<Table>, Vec<String>)> {
    let (out, mut caveats) = py
        .detach(|| {
            let (data, mut notes) = data()?;
            notes.extend(caveats::opened(&data));
            durations::table(data, accounting, all, threads.max(1)).map(|t| (t, notes))
        })
        .map_err(to_python)?;
    caveats.extend(out.caveats);
    let table = Table::try_new(out.batches, out.schema).map_err(|e| to_python(e.into()))?;
    Ok((PyArrowType(table), caveats))
}

/// Recordings named by files, folders and globs, as `tcpcong analyze`
/// takes them.
#[pyfunction]
#[pyo3(signature = (inputs, accounting = "full", all = false, threads = 1))]
fn durations_of_files(
    py: Python<'_>,
    inputs: Vec<String>,
    accounting: &str,
    all: bool,
    threads: usize,
) -> PyResult<(PyArrowType<Table>, Vec<String>)> {
    let mode = self::accounting(accounting)?;
    let open = move || {
        let found = discover(&inputs)?;
        let notes = caveats::discovered(&found);
        Ok((Dataset::open(&found.files)?, notes))
    };
    table_of(py, open, mode, all, threads)
}

/// The rows of whole recording files, as any Arrow stream (`filename` and
/// `file_row_number` columns tell files apart and restore their order).
#[pyfunction]
#[pyo3(signature = (rows, accounting = "full", all = false, threads = 1))]
fn durations_of_rows(
    py: Python<'_>,
    rows: PyArrowType<Table>,
    accounting: &str,
    all: bool,
    threads: usize,
) -> PyResult<(PyArrowType<Table>, Vec<String>)> {
    let mode = self::accounting(accounting)?;
    let (batches, _): (Vec<RecordBatch>, _) = rows.0.into_inner();
    table_of(
        py,
        move || Ok((Dataset::from_batches(batches)?, Vec::new())),
        mode,
        all,
        threads,
    )
}

/// The episodes of `data`, computed without the GIL.
fn episodes_of(
    py: Python<'_>,
    data: impl FnOnce() -> Result<(Dataset, Vec<String>), Error> + Send,
) -> PyResult<(PyArrowType<Table>, Vec<String>)> {
    let (batch, caveats) = py
        .detach(|| {
            let (data, mut notes) = data()?;
            // As `analyze --episodes` says them.
            notes.extend(caveats::opened(&data));
            notes.extend(caveats::recorded_losses(&data, caveats::EPISODES_MISSING));
            let boots = data.boots();
            let unnamed = Boot::default();
            let mut rows = Rows::new(EPISODE);
            durations::episodes(data, &RowFilter::default(), (0, u64::MAX), &mut |e| {
                let boot = boots.get(e.key.boot as usize).unwrap_or(&unnamed);
                rows.push(EpisodeLine::new(&e, boot).cells())
                    .map_err(Error::from)
            })?;
            Ok::<_, Error>((rows.batch()?, notes))
        })
        .map_err(to_python)?;
    let table =
        Table::try_new(vec![batch.clone()], batch.schema()).map_err(|e| to_python(e.into()))?;
    Ok((PyArrowType(table), caveats))
}

/// Episodes of recordings named by files, folders and globs, as
/// `tcpcong analyze --episodes` takes them.
#[pyfunction]
fn episodes_of_files(
    py: Python<'_>,
    inputs: Vec<String>,
) -> PyResult<(PyArrowType<Table>, Vec<String>)> {
    episodes_of(py, move || {
        let found = discover(&inputs)?;
        let notes = caveats::discovered(&found);
        Ok((Dataset::open(&found.files)?, notes))
    })
}

/// Episodes of the rows of whole recording files, as any Arrow stream.
#[pyfunction]
fn episodes_of_rows(
    py: Python<'_>,
    rows: PyArrowType<Table>,
) -> PyResult<(PyArrowType<Table>, Vec<String>)> {
    let (batches, _): (Vec<RecordBatch>, _) = rows.0.into_inner();
    episodes_of(py, move || {
        Ok((Dataset::from_batches(batches)?, Vec::new()))
    })
}

/// The columns every table has, whether or not it has rows.
#[pyfunction]
fn table_schema() -> PyArrowType<arrow_schema::Schema> {
    PyArrowType(tcpcong::analyze::render::arrow::schema().as_ref().clone())
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(durations_of_files, m)?)?;
    m.add_function(wrap_pyfunction!(durations_of_rows, m)?)?;
    m.add_function(wrap_pyfunction!(table_schema, m)?)?;
    m.add_function(wrap_pyfunction!(episodes_of_files, m)?)?;
    m.add_function(wrap_pyfunction!(episodes_of_rows, m)?)?;
    m.add("__version__", tcpcong::VERSION)?;
    Ok(())
}
