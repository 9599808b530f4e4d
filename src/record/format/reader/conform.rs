//! Files other tools wrote (pyarrow, polars, DuckDB, Spark): their
//! layouts of schema v1's columns checked and converted, so that the rest
//! of the reader sees one layout.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::DataType;

use super::super::schema::{self};
use crate::error::{Error, Result};

/// The columns analysis reads (the core but `time`); the rest of a
/// recording is never decoded.
pub(super) const NEEDED: &[&str] = schema::CORE.split_at(1).1;

/// Whether a column written as `found` holds what schema v1 keeps as
/// `want`: the same kind of value in any layout other tools write (large,
/// view and dictionary strings; any integer width, checked per value).
pub(super) fn compatible(found: &DataType, want: &DataType) -> bool {
    let string = |t: &DataType| match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => matches!(
            **v,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        _ => false,
    };
    match want {
        DataType::Utf8 => string(found),
        DataType::Timestamp(..) => matches!(found, DataType::Timestamp(..)),
        // Spark writes unsigned 64-bit integers back as decimal(20,0).
        w if w.is_integer() => found.is_integer() || matches!(found, DataType::Decimal128(_, 0)),
        w => found == w,
    }
}

/// A batch with every column in its schema v1 type: other tools' layouts
/// are converted, and a value that does not fit (a negative port, say) is
/// an input error.
pub(super) fn conform(path: &Path, batch: RecordBatch) -> Result<RecordBatch> {
    let want: HashMap<&str, DataType> = schema::columns().into_iter().collect();
    let needs = |f: &arrow_schema::Field| {
        want.get(f.name().as_str())
            .is_some_and(|w| !same_layout(f.name(), f.data_type(), w))
    };
    if !batch.schema().fields().iter().any(|f| needs(f)) {
        return Ok(batch);
    }
    let strict = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        match want.get(f.name().as_str()) {
            Some(w) if !same_layout(f.name(), f.data_type(), w) => {
                let cast = arrow_cast::cast_with_options(c, w, &strict)
                    .map_err(|e| Error::bad_input(path, format!("column {}: {e}", f.name())))?;
                fields.push(arrow_schema::Field::new(
                    f.name(),
                    w.clone(),
                    f.is_nullable(),
                ));
                columns.push(cast);
            }
            _ => {
                fields.push(f.as_ref().clone());
                columns.push(Arc::clone(c));
            }
        }
    }
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
        .map_err(|e| Error::bad_input(path, e.to_string()))
}

/// Whether a column needs no conversion: its schema v1 type, or a core
/// column's strings as the dictionary the reader asks the decoder for
/// (the detail columns' decoders take plain strings only).
pub(super) fn same_layout(name: &str, found: &DataType, want: &DataType) -> bool {
    match (found, want) {
        (DataType::Dictionary(_, v), DataType::Utf8) => {
            **v == DataType::Utf8 && schema::CORE.contains(&name)
        }
        _ => found == want,
    }
}

/// Every column analysis reads must be there, and every schema v1 column
/// that is there must hold its schema v1 kind of value.
pub(super) fn check_columns(path: &Path, schema: &arrow_schema::Schema) -> Result<()> {
    for (name, want) in schema::columns() {
        match schema.field_with_name(name) {
            Ok(f) if compatible(f.data_type(), &want) => {}
            Ok(f) => {
                return Err(Error::bad_input(
                    path,
                    format!("column {name} has type {}, expected {want}", f.data_type()),
                ))
            }
            Err(_) if NEEDED.contains(&name) => {
                return Err(Error::bad_input(
                    path,
                    format!("column {name} is missing: not a tcpcong event file"),
                ))
            }
            Err(_) => {}
        }
    }
    Ok(())
}
