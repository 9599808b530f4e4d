//! `tcpcong analyze --episodes`: every trip of a flow out of open, one row
//! each, with what it cost and its cause. The reader streams the recordings,
//! the engine's episode tracker does the work, the renderer writes the rows.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::events::Format;
use super::{open_dataset, Selection};
use crate::analyze::engine::durations;
use crate::analyze::render::arrow::write_parquet;
use crate::analyze::render::columns::{csv_header, csv_line, json_line};
use crate::analyze::render::episodes::{batch, table_header, EpisodeLine, EPISODE};
use crate::error::{Error, Result};
use crate::event::Boot;
use crate::messages;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub inputs: Vec<String>,
    pub select: Selection,
    /// As `events` writes its rows (text: a table).
    pub format: Format,
    /// `--format parquet -o FILE`: the rows go to this file instead.
    pub parquet: Option<PathBuf>,
}

pub fn run(plan: &Plan) -> Result<()> {
    let data = open_dataset(&plan.inputs)?;
    let span = plan.select.span(&data)?;
    let boots = data.boots();
    let (episodes, duplicates) =
        durations::episodes(data, &plan.select.rows(), span.start_ns, span.end_ns)?;
    super::tell_duplicates(duplicates);
    let unnamed = Boot::default();
    let lines = episodes
        .iter()
        .map(|e| EpisodeLine::new(e, boots.get(e.key.boot as usize).unwrap_or(&unnamed)));

    match &plan.parquet {
        Some(path) => super::write_replacing(path, |file| {
            let bad = |e: &dyn std::fmt::Display| Error::Parquet {
                path: path.clone(),
                source: parquet::errors::ParquetError::General(e.to_string()),
            };
            let batch = batch(&episodes, &boots).map_err(|e| bad(&e))?;
            write_parquet(BufWriter::new(file), &batch).map_err(|e| bad(&e))
        })?,
        None => {
            let mut out = BufWriter::new(io::stdout().lock());
            let write = |out: &mut dyn Write| -> io::Result<()> {
                match plan.format {
                    Format::Text => table_header(out)?,
                    Format::Csv => writeln!(out, "{}", csv_header(EPISODE))?,
                    Format::Json => {}
                }
                for l in lines {
                    match plan.format {
                        Format::Text => l.table(out)?,
                        Format::Json => json_line(out, l.named())?,
                        Format::Csv => csv_line(out, l.cells())?,
                    }
                }
                out.flush()
            };
            write(&mut out).map_err(Error::Stdout)?;
        }
    }
    if episodes.is_empty() {
        messages::say(format_args!(
            "no flow left the open state in the selected data"
        ));
    }
    Ok(())
}
