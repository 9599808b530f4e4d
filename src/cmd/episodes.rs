//! `tcpcong analyze --episodes`: every trip of a flow out of open, one row
//! each, with what it cost and its cause. The reader streams the recordings,
//! the engine's episode tracker does the work, the renderer writes the rows.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::events::Format;
use super::{open_dataset, Selection};
use crate::analyze::engine::durations;
use crate::analyze::engine::episodes::Episode;
use crate::analyze::render::arrow::write_parquet;
use crate::analyze::render::arrow::Rows;
use crate::analyze::render::columns::{csv_header, csv_line, json_line};
use crate::analyze::render::episodes::{
    ordered, table_header, EpisodeGroup, EpisodeLine, GroupBy, Groups, Order, EPISODE,
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
    pub parquet: Option<super::NewFile>,
    /// `--sort` (or `--top` alone: by duration) and `--top`.
    pub order: Option<Order>,
    pub top: Option<usize>,
    /// `--by`: a row per group instead.
    pub by: Option<GroupBy>,
}

pub fn run(plan: &Plan) -> Result<()> {
    let data = open_dataset(&plan.inputs)?;
    if let Some(out) = &plan.parquet {
        out.check(data.recordings().map(|(path, _)| path))?;
    }
    let span = plan.select.span(&data)?;
    super::warn_recorded_losses(&data, crate::analyze::caveats::EPISODES_MISSING);
    let boots = data.boots();
    let unnamed = Boot::default();
    let boot_of = |e: &Episode| boots.get(e.key.boot as usize).unwrap_or(&unnamed);
    let (filter, select) = (plan.select.rows(), (span.start_ns, span.end_ns));
    let mut found = 0u64;
    if let Some(by) = plan.by {
        let mut groups = Groups::new(by);
        let duplicates = durations::episodes(data, &filter, select, &mut |e| {
            found += 1;
            groups.add(&e, boot_of(&e));
            Ok(())
        })?;
        super::tell_duplicates(duplicates);
        let mut groups = groups.finish();
        groups.truncate(plan.top.unwrap_or(usize::MAX));
        write_groups(plan, &groups)?;
    } else if let Some(order) = plan.order {
        // Ordered: every episode first.
        let mut all = Vec::new();
        let duplicates = durations::episodes(data, &filter, select, &mut |e| {
            all.push(e);
            Ok(())
        })?;
        super::tell_duplicates(duplicates);
        found = all.len() as u64;
        let all = ordered(all, order, plan.top);
        match &plan.parquet {
            Some(out) => write_table(out, all.iter().map(|e| EpisodeLine::new(e, boot_of(e))))?,
            None => {
                let mut out = Lines::new(plan.format)?;
                for e in &all {
                    out.line(&EpisodeLine::new(e, boot_of(e)))?;
                }
                out.finish()?;
            }
        }
    } else if let Some(out) = &plan.parquet {
        let mut rows = Rows::new(EPISODE);
        let duplicates = durations::episodes(data, &filter, select, &mut |e| {
            found += 1;
            rows.push(EpisodeLine::new(&e, boot_of(&e)).cells())
                .map_err(|x| parquet_error(&out.path, &x))
        })?;
        super::tell_duplicates(duplicates);
        write_rows(out, rows)?;
    } else {
        // As they complete, so that memory stays the flows'.
        let mut out = Lines::new(plan.format)?;
        let duplicates = durations::episodes(data, &filter, select, &mut |e| {
            found += 1;
            out.line(&EpisodeLine::new(&e, boot_of(&e)))
        })?;
        super::tell_duplicates(duplicates);
        out.finish()?;
    }
    if found == 0 {
        messages::say(format_args!(
            "no flow left the open state in the selected data"
        ));
    }
    Ok(())
}

/// Episodes' lines on standard output, in a format.
struct Lines {
    out: BufWriter<io::StdoutLock<'static>>,
    format: Format,
}

impl Lines {
    fn new(format: Format) -> Result<Lines> {
        let mut out = BufWriter::new(io::stdout().lock());
        match format {
            Format::Text => table_header(&mut out),
            Format::Csv => writeln!(out, "{}", csv_header(EPISODE)),
            Format::Json => Ok(()),
        }
        .map_err(Error::Stdout)?;
        Ok(Lines { out, format })
    }

    fn line(&mut self, l: &EpisodeLine<'_>) -> Result<()> {
        match self.format {
            Format::Text => l.table(&mut self.out),
            Format::Json => json_line(&mut self.out, l.named()),
            Format::Csv => csv_line(&mut self.out, l.cells()),
        }
        .map_err(Error::Stdout)
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(Error::Stdout)
    }
}

fn parquet_error(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::Parquet {
        path: path.to_path_buf(),
        source: parquet::errors::ParquetError::General(e.to_string()),
    }
}

/// Rows of a column list, written as a Parquet file.
fn write_rows(out: &super::NewFile, rows: Rows) -> Result<()> {
    let path = &out.path;
    out.write(|file| {
        let batch = rows.batch().map_err(|e| parquet_error(path, &e))?;
        write_parquet(BufWriter::new(file), &batch).map_err(|e| parquet_error(path, &e))
    })
}

/// Episodes' rows, written as a Parquet file.
fn write_table<'a>(
    out: &super::NewFile,
    lines: impl Iterator<Item = EpisodeLine<'a>>,
) -> Result<()> {
    let mut rows = Rows::new(EPISODE);
    for l in lines {
        rows.push(l.cells())
            .map_err(|e| parquet_error(&out.path, &e))?;
    }
    write_rows(out, rows)
}

/// `--by`'s rows, in the plan's format.
fn write_groups(plan: &Plan, groups: &[EpisodeGroup]) -> Result<()> {
    if let Some(out) = &plan.parquet {
        let mut rows = Rows::new(EPISODE_GROUP);
        for g in groups {
            rows.push(EPISODE_GROUP.iter().map(|c| (c.get)(g)))
                .map_err(|e| parquet_error(&out.path, &e))?;
        }
        return write_rows(out, rows);
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
