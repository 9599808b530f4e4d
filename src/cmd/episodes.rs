//! `tcpcong analyze --episodes`: every trip of a flow out of open, one row
//! each, with what it cost and its cause. The reader streams the recordings,
//! the engine's episode tracker does the work, the renderer writes the rows.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use super::events::Format;
use super::{open_dataset, Selection};
use crate::analyze::engine::durations;
use crate::analyze::render::arrow::write_parquet;
use crate::analyze::render::arrow::Rows;
use crate::analyze::render::columns::{csv_header, csv_line, json_line};
use crate::analyze::render::episodes::{
    batch, groups, ordered, table_header, EpisodeGroup, EpisodeLine, GroupBy, Order, EPISODE,
    EPISODE_GROUP,
};
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
    /// `--sort` (or `--top` alone: by duration) and `--top`.
    pub order: Option<Order>,
    pub top: Option<usize>,
    /// `--by`: a row per group instead.
    pub by: Option<GroupBy>,
}

pub fn run(plan: &Plan) -> Result<()> {
    let data = open_dataset(&plan.inputs)?;
    let span = plan.select.span(&data)?;
    let boots = data.boots();
    let (episodes, duplicates) =
        durations::episodes(data, &plan.select.rows(), span.start_ns, span.end_ns)?;
    super::tell_duplicates(duplicates);
    let found = !episodes.is_empty();
    if let Some(by) = plan.by {
        let mut groups = groups(&episodes, &boots, by);
        groups.truncate(plan.top.unwrap_or(usize::MAX));
        return write_groups(plan, &groups);
    }
    let episodes = match plan.order {
        Some(order) => ordered(episodes, order, plan.top),
        None => episodes,
    };
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
    if !found {
        messages::say(format_args!(
            "no flow left the open state in the selected data"
        ));
    }
    Ok(())
}

/// `--by`'s rows, in the plan's format.
fn write_groups(plan: &Plan, groups: &[EpisodeGroup]) -> Result<()> {
    if let Some(path) = &plan.parquet {
        return super::write_replacing(path, |file| {
            let bad = |e: &dyn std::fmt::Display| Error::Parquet {
                path: path.clone(),
                source: parquet::errors::ParquetError::General(e.to_string()),
            };
            let mut rows = Rows::new(EPISODE_GROUP);
            for g in groups {
                rows.push(EPISODE_GROUP.iter().map(|c| (c.get)(g)))
                    .map_err(|e| bad(&e))?;
            }
            let batch = rows.batch().map_err(|e| bad(&e))?;
            write_parquet(BufWriter::new(file), &batch).map_err(|e| bad(&e))
        });
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let write = |out: &mut dyn Write| -> io::Result<()> {
        match plan.format {
            Format::Text => {
                EpisodeGroup::table_header(groups.first().map_or("key", |g| g.by), out)?
            }
            Format::Csv => writeln!(out, "{}", csv_header(EPISODE_GROUP))?,
            Format::Json => {}
        }
        for g in groups {
            match plan.format {
                Format::Text => g.table(out)?,
                Format::Json => json_line(out, EPISODE_GROUP.iter().map(|c| (c.name, (c.get)(g))))?,
                Format::Csv => csv_line(out, EPISODE_GROUP.iter().map(|c| (c.get)(g)))?,
            }
        }
        out.flush()
    };
    write(&mut out).map_err(Error::Stdout)
}
