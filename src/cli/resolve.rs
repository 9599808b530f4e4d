//! From parsed flags to a validated plan per command (ripgrep's low-level
//! to high-level arguments): every usage error is raised here, before any
//! command starts, and every command gets its layers' own configs, so
//! that nothing below the command line sees a clap type.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};

use super::args::{
    AccountingArg, AnalyzeArgs, AttachKind, BufferChoice, ByArg, CaptureArgs, Cli, Command,
    CompareArgs, CompareFormat, EventsArgs, EventsFormat, EvidenceArg, Format, KindArg, LiveArgs,
    PageArgs, PortFilter, RecordArgs, ReportArgs, RotationArgs, SelectArgs, ServeArgs, SortArg,
};
use super::values::{duration_secs, parse_duration, parse_outputs};
use crate::analyze::engine::Accounting;
use crate::analyze::render::episodes::{GroupBy, Order};
use crate::analyze::render::flows::GroupKey;
use crate::analyze::render::printer::{ReportConfig, SortKey, Style};
use crate::analyze::render::prometheus::MetricsConfig;
use crate::cmd::{self, Plan, ReportPlan, Selection, TimeBound};
use crate::error::{Error, Result};
use crate::event::{CaState, Filters};
use crate::host::{cgroup2_root, cgroup_id, netns_inode};
use crate::record::capture::attach::AttachMode;
use crate::record::capture::buffer::BufferKind;
use crate::record::capture::config::{CaptureConfig, Evidence};
use crate::record::format::output::Target;
use crate::record::format::reader::{CgroupSel, ContainerSel};
use crate::record::format::series::Rotation;

/// Parses `args` (the program name first) and resolves them into a plan.
/// Help, version, completions and the man page become text to print.
pub fn resolve<I, T>(args: I) -> Result<Plan>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    if let Some(Command::Man { page, dir }) = &cli.command {
        return man(page.as_deref(), dir.as_deref());
    }
    if let Some(text) = clap_text(&cli) {
        return Ok(Plan::Print(text));
    }
    match cli.command {
        Some(Command::Record(a)) => record(&a, command).map(Plan::Record),
        Some(Command::Analyze(a)) if a.episodes => episodes(&a).map(Plan::Episodes),
        Some(Command::Analyze(a)) => analyze(&a).map(Plan::Analyze),
        Some(Command::Serve(a)) => serve(&a, command).map(Plan::Serve),
        Some(Command::Compare(a)) => compare(&a).map(Plan::Compare),
        Some(Command::Events(a)) => events(&a).map(Plan::Events),
        Some(Command::Report(a)) => page(&a).map(Plan::Report),
        Some(Command::Doctor { verbose }) => Ok(Plan::Doctor { verbose }),
        Some(Command::Completions { .. } | Command::Man { .. }) => {
            Err(Error::Internal("completions and man are printed before"))
        }
        None => live(&cli.live, command).map(Plan::Live),
    }
}

/// Completions, generated from the flag definitions so that they never
/// drift.
fn clap_text(cli: &Cli) -> Option<String> {
    let mut out = Vec::new();
    match &cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(*shell, &mut Cli::command(), "tcpcong", &mut out);
        }
        _ => return None,
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `tcpcong man [PAGE]` prints one page, `--dir DIR` writes them all.
fn man(page: Option<&str>, dir: Option<&Path>) -> Result<Plan> {
    let pages = man_pages();
    if let Some(dir) = dir {
        return Ok(Plan::Files(
            pages
                .into_iter()
                .map(|(name, roff)| (dir.join(name), roff))
                .collect(),
        ));
    }
    let want = match page {
        None => "tcpcong.1".to_string(),
        Some(p) => format!("tcpcong-{}.1", p.trim_start_matches("tcpcong-")),
    };
    let names: Vec<String> = pages
        .iter()
        .map(|(n, _)| n.trim_end_matches(".1").to_string())
        .collect();
    pages
        .into_iter()
        .find(|(name, _)| *name == want)
        .map(|(_, roff)| Plan::Print(roff))
        .ok_or_else(|| {
            Error::Usage(format!(
                "no man page {want}: the pages are {}",
                names.join(", ")
            ))
        })
}

/// Every man page as (file name, roff), generated from the flag
/// definitions: tcpcong(1) and one per subcommand.
fn man_pages() -> Vec<(String, String)> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![man_page(&cmd)];
    pages.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(man_page),
    );
    pages
}

fn man_page(cmd: &clap::Command) -> (String, String) {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out: Vec<u8> = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = (|| -> std::io::Result<()> {
        man.render_title(&mut out)?;
        man.render_name_section(&mut out)?;
        man.render_synopsis_section(&mut out)?;
        man.render_description_section(&mut out)?;
        // The pages of the commands that print the tables.
        if ["tcpcong", "analyze"].contains(&cmd.get_name()) {
            out.extend(super::states::roff().as_bytes());
        }
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut out)?;
        }
        if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
            man.render_subcommands_section(&mut out)?;
        }
        if let Some(examples) = cmd.get_after_help() {
            out.extend(verbatim_examples(&examples.to_string()).as_bytes());
        }
        if cmd.get_version().is_some() {
            man.render_version_section(&mut out)?;
        }
        Ok(())
    })();
    (
        man.get_filename(),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

/// The examples of `--help` as a roff section that keeps their lines (man
/// would otherwise fill them into one paragraph).
fn verbatim_examples(text: &str) -> String {
    let mut roff = String::from(".SH EXAMPLES\n.nf\n");
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim_end() != "examples:")
    {
        let line = line.trim_start().replace('\\', "\\e").replace('-', "\\-");
        if line.starts_with(['.', '\'']) {
            roff.push_str("\\&");
        }
        roff.push_str(&line);
        roff.push('\n');
    }
    roff.push_str(".fi\n");
    roff
}

/// Help and version are text to print; a usage error is reduced to its
/// first paragraph on one line (which names the flag and the bad value).
fn clap_error(e: clap::Error) -> Result<Plan> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            Ok(Plan::Print(e.render().to_string()))
        }
        _ => {
            // `tcpcong 1 2 3`: clap takes the third number for a subcommand.
            if let Some(ContextValue::String(sub)) = e.get(ContextKind::InvalidSubcommand) {
                if sub.parse::<f64>().is_ok() {
                    return Err(Error::Usage(format!(
                        "too many numbers: expected [interval] [outputs], and '{sub}' is a third"
                    )));
                }
            }
            let text = e.render().to_string();
            if let Some(hint) = hint(&e, &text) {
                return Err(Error::Usage(hint));
            }
            // clap puts the names of missing arguments on the lines after
            // its first.
            let para: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            Err(Error::Usage(
                para.join(" ").trim_start_matches("error: ").to_string(),
            ))
        }
    }
}

/// The words for two slips clap words poorly: a recording's name given
/// without `-o`, and flags put before the subcommand (clap then reads the
/// subcommand as live mode's interval).
fn hint(e: &clap::Error, text: &str) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let value = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    match e.kind() {
        ErrorKind::UnknownArgument if text.contains("Usage: tcpcong record") => {
            let arg = value(ContextKind::InvalidArg)?;
            (!arg.starts_with('-')).then(|| {
                format!("unexpected argument '{arg}': record writes where -o says (tcpcong record -o {arg})")
            })
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let sub = value(ContextKind::InvalidValue)?;
            Cli::command()
                .get_subcommands()
                .any(|s| s.get_name() == sub)
                .then(|| {
                    format!("'{sub}' is a command: it comes first, its flags after it (tcpcong {sub} ...)")
                })
        }
        _ => None,
    }
}

/// Shorter rotation makes a file of a handful of events each time: a
/// mistake (a unit slip), not a series anyone wants.
const MIN_ROTATE: Duration = Duration::from_secs(1);
/// Live mode's shortest interval: each window is a table printed, and
/// one of a nanosecond would make a billion windows a second.
const MIN_LIVE_INTERVAL: Duration = Duration::from_millis(100);
/// The same for sizes: a file's own rows and footer take about 9 KiB (an
/// empty recording's size), so anything near that (`10`, a slip for 10MB)
/// would rotate at every event.
const MIN_ROTATE_SIZE: u64 = 16 << 10;

/// Where `-o` records to: a series (`DIR/`, rotated as the flags say) or
/// one file.
fn record_target(output: &Path, r: &RotationArgs, force: bool) -> Result<Target> {
    if r.rotate_seconds.is_some_and(|d| d < MIN_ROTATE) {
        return Err(Error::Usage(format!(
            "--rotate-seconds must be at least {} s",
            MIN_ROTATE.as_secs()
        )));
    }
    for (flag, size) in [
        ("--rotate-size", r.rotate_size),
        ("--max-total", r.max_total),
    ] {
        if let Some(b) = size.filter(|&b| b < MIN_ROTATE_SIZE) {
            return Err(Error::Usage(format!(
                "{flag} {b} bytes is too small: it must be at least 16KiB, as a file's own rows take about 9 KiB (sizes take a unit: 64MB, 1G)"
            )));
        }
    }
    if let (Some(total), Some(size)) = (r.max_total, r.rotate_size) {
        if total < size {
            return Err(Error::Usage(format!(
                "--max-total {total} bytes is less than --rotate-size {size} bytes: the series could not keep one whole file; give a --max-total of at least --rotate-size"
            )));
        }
    }
    let rotation = Rotation {
        every_ns: r.rotate_seconds.map(nanos),
        bytes: r.rotate_size,
        max_total: r.max_total,
    };
    if Target::wants_series(output) {
        return Ok(Target::Series {
            root: output.to_path_buf(),
            rotation,
        });
    }
    if rotation != Rotation::default() {
        return Err(Error::Usage(format!(
            "--rotate-seconds, --rotate-size and --max-total need a directory: -o {}/",
            output.display()
        )));
    }
    // A recording is Parquet whatever its name; a name that says another
    // format is a user expecting that format.
    let ext = output.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ["csv", "json", "jsonl", "txt", "html"].contains(&ext.to_ascii_lowercase().as_str()) {
        return Err(Error::Usage(format!(
            "-o {}: a recording is Parquet, not {ext}: name it {}.parquet (analyze --format csv or json prints the tables as {ext})",
            output.display(),
            output.with_extension("").display()
        )));
    }
    file_target(output, force)
}

fn record(a: &RecordArgs, command: String) -> Result<cmd::record::Plan> {
    let capture = capture(&a.ports, &a.capture, true)?;
    let target = record_target(&a.output, &a.rotation, a.force)?;
    Ok(cmd::record::Plan {
        capture,
        target,
        duration: a.duration,
        command,
        verbose: a.capture.verbose,
        quiet: a.quiet,
    })
}

/// A single output file: its folder must exist before the capture starts
/// (a runtime error: the command line itself is fine).
fn file_target(path: &Path, force: bool) -> Result<Target> {
    cmd::output_folder(path)?;
    Ok(Target::File {
        path: path.to_path_buf(),
        force,
    })
}

fn live(a: &LiveArgs, command: String) -> Result<cmd::live::Plan> {
    if a.report.format == Format::Parquet {
        return Err(Error::Usage(
            "live mode prints its report: --format table, json or csv (record a Parquet file with -o)"
                .into(),
        ));
    }
    if a.interval.interval.is_some_and(|d| d < MIN_LIVE_INTERVAL) {
        return Err(Error::Usage(format!(
            "interval: at least {} s between tables (the windows of a shorter one pile up faster than they print)",
            MIN_LIVE_INTERVAL.as_secs_f64()
        )));
    }
    let report = report(
        &a.report,
        a.interval.interval,
        a.interval.outputs,
        "outputs needs an interval: tcpcong [interval] [outputs]",
    )?;
    let output = match &a.output {
        Some(p) if Target::wants_series(p) => Some(Target::Series {
            root: p.clone(),
            rotation: Rotation::default(),
        }),
        Some(p) => Some(file_target(p, a.force)?),
        None if a.force => {
            return Err(Error::Usage(
                "--force replaces the file -o names: give -o FILE".into(),
            ))
        }
        None => None,
    };
    if a.episodes && (a.interval.interval.is_some() || a.report.dist) {
        return Err(Error::Usage(
            "--episodes prints episodes as they complete: without an interval or -d".into(),
        ));
    }
    if a.episodes {
        no_table_options(&a.report)?;
        if a.capture.evidence == [EvidenceArg::None] {
            return Err(Error::Usage(
                "--episodes finds their causes in the evidence: --evidence none would leave every one unknown".into(),
            ));
        }
    }
    Ok(cmd::live::Plan {
        // The episodes' causes are in the evidence.
        capture: capture(&a.ports, &a.capture, output.is_some() || a.episodes)?,
        output,
        report,
        command,
        verbose: a.capture.verbose,
        episodes: a.episodes,
    })
}

fn serve(a: &ServeArgs, command: String) -> Result<cmd::serve::Plan> {
    // The episodes' causes are in the evidence.
    let capture = capture(&a.ports, &a.capture, true)?;
    let output = match &a.output {
        Some(p) => Some(record_target(p, &a.rotation, false)?),
        None if a.rotation.rotate_seconds.is_some()
            || a.rotation.rotate_size.is_some()
            || a.rotation.max_total.is_some() =>
        {
            return Err(Error::Usage(
                "--rotate-seconds, --rotate-size and --max-total rotate a recording: add -o DIR/"
                    .into(),
            ))
        }
        None => None,
    };
    if a.interval < MIN_ROTATE {
        return Err(Error::Usage(format!(
            "--interval must be at least {} s",
            MIN_ROTATE.as_secs()
        )));
    }
    if a.max_keys == 0 {
        return Err(Error::Usage("--max-keys must be at least 1".into()));
    }
    Ok(cmd::serve::Plan {
        capture,
        output,
        listen: a.listen,
        metrics: MetricsConfig {
            by: flows_by(a.by)?,
            max_keys: a.max_keys,
        },
        accounting: accounting(a.accounting),
        interval_ns: nanos(a.interval),
        command,
        verbose: a.capture.verbose,
    })
}

/// `--format parquet -o FILE`: the file `what` goes to, or None for the
/// other formats, which go to standard output.
fn parquet_output(a: &AnalyzeArgs, what: &str) -> Result<Option<cmd::NewFile>> {
    match (a.report.format, &a.output) {
        (Format::Parquet, Some(p)) => Ok(Some(cmd::NewFile {
            path: p.clone(),
            replace: a.force,
        })),
        (Format::Parquet, None) => Err(Error::Usage(
            "--format parquet writes a file: name it with -o FILE".into(),
        )),
        (_, Some(_)) => Err(Error::Usage(format!(
            "-o writes {what} as Parquet: add --format parquet (other formats go to standard output)"
        ))),
        (_, None) if a.force => Err(Error::Usage(
            "--force replaces the file -o names: give -o FILE".into(),
        )),
        _ => Ok(None),
    }
}

/// `analyze --episodes`: the selection and a format, none of the tables'
/// options.
fn episodes(a: &AnalyzeArgs) -> Result<cmd::episodes::Plan> {
    let (inputs, interval, _) = split_positionals(&a.inputs)?;
    if interval.is_some() || a.report.dist {
        return Err(Error::Usage(
            "--episodes lists episodes: without an interval or -d".into(),
        ));
    }
    no_table_options(&a.report)?;
    top_rows(a.report.top)?;
    let parquet = parquet_output(a, "the episodes")?;
    Ok(cmd::episodes::Plan {
        inputs,
        select: selection(&a.select)?,
        format: match a.report.format {
            Format::Json => cmd::events::Format::Json,
            Format::Csv => cmd::events::Format::Csv,
            Format::Table | Format::Parquet => cmd::events::Format::Text,
        },
        parquet,
        order: episode_order(&a.report)?,
        top: a.report.top,
        by: a
            .report
            .by
            .map(|b| flow_group(b).map_or(GroupBy::Cause, GroupBy::Flow)),
    })
}

/// The duration tables' options, which an episode's row has no use for:
/// refused with --episodes rather than ignored.
fn no_table_options(r: &ReportArgs) -> Result<()> {
    let tables: [(bool, &str, &str); 6] = [
        (r.timestamp, "-T", ""),
        (r.microseconds, "-u", ""),
        (r.all, "--all", ""),
        (r.align, "--align", ""),
        (r.accounting != AccountingArg::Full, "--accounting", ""),
        (
            r.wide,
            "-w",
            " (--format json gives each episode's flow id)",
        ),
    ];
    if let Some((_, flag, hint)) = tables.iter().find(|(given, ..)| *given) {
        return Err(Error::Usage(format!(
            "--episodes lists episodes: {flag} is for the duration tables{hint}"
        )));
    }
    Ok(())
}

/// The order --sort (or --top, by duration) asks of episodes.
fn episode_order(r: &ReportArgs) -> Result<Option<Order>> {
    r.sort
        .or(r.top.map(|_| SortArg::Duration))
        .map(|s| match s {
            SortArg::Duration => Ok(Order::Duration),
            SortArg::CwndCut => Ok(Order::CwndCut),
            SortArg::Disorder => Ok(Order::State(CaState::Disorder)),
            SortArg::Cwr => Ok(Order::State(CaState::Cwr)),
            SortArg::Recovery => Ok(Order::State(CaState::Recovery)),
            SortArg::Loss => Ok(Order::State(CaState::Loss)),
            SortArg::Trouble => Ok(Order::Trouble),
            SortArg::Open | SortArg::Changes | SortArg::Mismatches => Err(Error::Usage(format!(
                "--sort {}: an episode has none; it orders flows",
                value_name(s)
            ))),
        })
        .transpose()
}

fn analyze(a: &AnalyzeArgs) -> Result<cmd::analyze::Plan> {
    let (inputs, interval, outputs) = split_positionals(&a.inputs)?;
    let report = report(
        &a.report,
        interval,
        outputs,
        "outputs needs an interval: tcpcong analyze INPUT... [interval] [outputs]",
    )?;
    let parquet = parquet_output(a, "the per-flow table")?;
    if parquet.is_some() && a.report.dist {
        return Err(Error::Usage(
            "--format parquet writes the per-flow table, -d histograms: choose one".into(),
        ));
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    Ok(cmd::analyze::Plan {
        inputs,
        select: selection(&a.select)?,
        report,
        threads,
        parquet,
    })
}

fn page(a: &PageArgs) -> Result<cmd::report::Plan> {
    if a.top == 0 {
        return Err(Error::Usage(
            "--top 0 draws no timeline; give at least 1".into(),
        ));
    }
    let s = &a.select;
    let words: Vec<String> = [
        s.ports.localport.map(|r| format!("-L {r}")),
        s.ports.remoteport.map(|r| format!("-R {r}")),
        s.flow.map(|f| format!("--flow {f}")),
        s.family.map(|f| format!("--family {f}")),
        s.netns.as_ref().map(|n| format!("--netns {n}")),
        s.cgroup.as_ref().map(|c| format!("--cgroup {c}")),
        s.since.as_ref().map(|t| format!("--since {t}")),
        s.until.as_ref().map(|t| format!("--until {t}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok(cmd::report::Plan {
        inputs: a.inputs.clone(),
        output: cmd::NewFile {
            path: a.output.clone(),
            replace: a.force,
        },
        select: selection(s)?,
        page: crate::analyze::render::page::PageConfig {
            top: a.top,
            accounting: accounting(a.accounting),
            selection: words.join(" "),
        },
    })
}

fn accounting(a: AccountingArg) -> Accounting {
    match a {
        AccountingArg::Full => Accounting::Full,
        AccountingArg::Between => Accounting::Between,
    }
}

fn compare(a: &CompareArgs) -> Result<cmd::compare::Plan> {
    top_rows(Some(a.top))?;
    Ok(cmd::compare::Plan {
        before: a.before.clone(),
        after: a.after.clone(),
        select: selection(&a.select)?,
        accounting: accounting(a.accounting),
        top: a.top,
        json: a.format == CompareFormat::Json,
        threads: std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
    })
}

fn events(a: &EventsArgs) -> Result<cmd::events::Plan> {
    Ok(cmd::events::Plan {
        inputs: a.inputs.clone(),
        select: selection(&a.select)?,
        format: match a.format {
            EventsFormat::Text => cmd::events::Format::Text,
            EventsFormat::Json => cmd::events::Format::Json,
            EventsFormat::Csv => cmd::events::Format::Csv,
        },
        kind: a.kind.map(|k| match k {
            KindArg::CaState => "ca_state",
            KindArg::TcpState => "tcp_state",
            KindArg::Snapshot => "snapshot",
            KindArg::Retransmit => "retransmit",
            KindArg::Drop => "drop",
            KindArg::Reset => "reset",
        }),
    })
}

/// BCC's trailing `[interval] [outputs]` after analyze's inputs: trailing
/// durations (`1`, `2s`, `500ms`, as live mode takes them) that are not
/// files. `analyze run.parquet 1 3` is BCC's `tcpcong 1 3` replayed.
fn split_positionals(all: &[String]) -> Result<(Vec<String>, Option<Duration>, Option<u64>)> {
    let is_number = |s: &&String| {
        (s.parse::<f64>().is_ok() || duration_secs(s).is_some()) && !Path::new(s.as_str()).exists()
    };
    let trailing = all.iter().rev().take_while(is_number).count();
    if trailing > 2 {
        return Err(Error::Usage(format!(
            "too many numbers after the inputs: expected [interval] [outputs], got {trailing}"
        )));
    }
    let (inputs, nums) = all.split_at(all.len() - trailing);
    if inputs.is_empty() {
        return Err(Error::Usage(
            "no recording given: tcpcong analyze INPUT... [interval] [outputs]".into(),
        ));
    }
    let interval = nums
        .first()
        .map(|i| parse_duration(i).map_err(|e| Error::Usage(format!("interval: {e}"))))
        .transpose()?;
    let outputs = nums
        .get(1)
        .map(|o| parse_outputs(o).map_err(|e| Error::Usage(format!("outputs: {e}"))))
        .transpose()?;
    Ok((inputs.to_vec(), interval, outputs))
}

/// How reports look, for live mode and analyze alike: the one place that
/// decides which combinations make sense.
fn report(
    a: &ReportArgs,
    interval: Option<Duration>,
    outputs: Option<u64>,
    outputs_alone: &str,
) -> Result<ReportPlan> {
    let style = match a.format {
        Format::Table => Style::Table,
        Format::Json => Style::Json,
        Format::Csv => Style::Csv,
        // analyze writes the Parquet table itself (see its plan); the
        // printer's style then only has to not be the table's.
        Format::Parquet => Style::Json,
    };
    if outputs.is_some() && interval.is_none() {
        return Err(Error::Usage(outputs_alone.into()));
    }
    top_rows(a.top)?;
    if a.dist && (a.sort.is_some() || a.top.is_some()) {
        return Err(Error::Usage(
            "--sort and --top order the flows' rows; -d prints histograms, which are per state: use one or the other".into(),
        ));
    }
    if a.align && interval.is_none() {
        return Err(Error::Usage(
            "--align places the windows of an interval: give one (tcpcong --align -T 5, analyze FILE --align 5)".into(),
        ));
    }
    if a.wide {
        let clash = if a.dist {
            Some("-d: histograms are per state, not per flow")
        } else if a.by.is_some() {
            Some("--by: its rows are groups, not flows")
        } else if a.format != Format::Table {
            Some("--format json, csv and parquet: their rows name the flow, its owner and namespace already")
        } else {
            None
        };
        if let Some(what) = clash {
            return Err(Error::Usage(format!(
                "--wide widens the per-flow table, not with {what}"
            )));
        }
    }
    if let Some(by) = a.by {
        let clash = if a.dist {
            Some("-d (histograms are per state, not per flow)")
        } else if a.format == Format::Parquet {
            Some("--format parquet (the table file is per flow; group it in the engine that loads it)")
        } else {
            None
        };
        if let Some(what) = clash {
            return Err(Error::Usage(format!(
                "--by {} cannot be combined with {what}",
                value_name(by)
            )));
        }
    }
    Ok(ReportPlan {
        report: ReportConfig {
            style,
            histogram: a.dist,
            micros: a.microseconds,
            timestamp: a.timestamp,
            all: a.all,
            // The flows a --top asks for are the worst ones, not the
            // lowest ports (BCC's order, kept when all are shown).
            sort: a
                .sort
                .or(a.top.map(|_| SortArg::Trouble))
                .map(|s| match s {
                    SortArg::Open => Ok(SortKey::State(CaState::Open)),
                    SortArg::Disorder => Ok(SortKey::State(CaState::Disorder)),
                    SortArg::Cwr => Ok(SortKey::State(CaState::Cwr)),
                    SortArg::Recovery => Ok(SortKey::State(CaState::Recovery)),
                    SortArg::Loss => Ok(SortKey::State(CaState::Loss)),
                    SortArg::Trouble => Ok(SortKey::Trouble),
                    SortArg::Changes => Ok(SortKey::Changes),
                    SortArg::Mismatches => Ok(SortKey::Mismatches),
                    SortArg::Duration | SortArg::CwndCut => Err(Error::Usage(format!(
                        "--sort {}: it orders episodes (analyze --episodes)",
                        value_name(s)
                    ))),
                })
                .transpose()?,
            top: a.top,
            by: flows_by(a.by)?,
            wide: a.wide,
            align: a.align,
        },
        accounting: accounting(a.accounting),
        interval_ns: interval.map(nanos),
        outputs,
    })
}

/// What `--by` groups flows by; None for what only episodes have.
fn flow_group(b: ByArg) -> Option<GroupKey> {
    Some(match b {
        ByArg::Process => GroupKey::Process,
        ByArg::Cgroup => GroupKey::Cgroup,
        ByArg::Lport => GroupKey::Lport,
        ByArg::Rport => GroupKey::Rport,
        ByArg::Raddr => GroupKey::Raddr,
        ByArg::Netns => GroupKey::Netns,
        ByArg::Cc => GroupKey::Cc,
        ByArg::Host => GroupKey::Host,
        ByArg::Container => GroupKey::Container,
        ByArg::Pod => GroupKey::Pod,
        ByArg::K8sNamespace => GroupKey::K8sNamespace,
        ByArg::Cause => return None,
    })
}

/// `--top N` keeps N rows: none is not a report.
fn top_rows(top: Option<usize>) -> Result<()> {
    if top == Some(0) {
        return Err(Error::Usage("--top 0 keeps no row; give at least 1".into()));
    }
    Ok(())
}

/// What `--by` groups flows by, refusing what only episodes have.
fn flows_by(by: Option<ByArg>) -> Result<Option<GroupKey>> {
    by.map(|b| {
        flow_group(b).ok_or_else(|| {
            Error::Usage(format!(
                "--by {}: it groups episodes (analyze --episodes)",
                value_name(b)
            ))
        })
    })
    .transpose()
}

/// A value's name as its flag takes it.
fn value_name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// The evidence asked for; without `--evidence`, all of it where it is
/// used (`used`: a file is written, or episodes' causes are found), none
/// where only tables are made of the capture.
fn evidence(asked: &[EvidenceArg], used: bool) -> Result<Evidence> {
    if asked.len() > 1
        && asked
            .iter()
            .any(|a| matches!(a, EvidenceArg::All | EvidenceArg::None))
    {
        return Err(Error::Usage(
            "--evidence: all or none alone, or a list of kinds (retransmit,drop,reset)".into(),
        ));
    }
    let mut e = Evidence::default();
    for a in asked {
        match a {
            EvidenceArg::All => e = Evidence::ALL,
            EvidenceArg::None => {}
            EvidenceArg::Retransmit => e.retransmits = true,
            EvidenceArg::Drop => e.drops = true,
            EvidenceArg::Reset => e.resets = true,
        }
    }
    Ok(if asked.is_empty() && used {
        Evidence::ALL
    } else {
        e
    })
}

/// What the kernel side captures, with paths resolved to the ids the
/// kernel compares; `evidence_used` as [`evidence`] takes it.
fn capture(ports: &PortFilter, c: &CaptureArgs, evidence_used: bool) -> Result<CaptureConfig> {
    let netns = c
        .netns
        .as_deref()
        .map(|s| netns_inode(s).map_err(|why| Error::Usage(format!("--netns {s}: {why}"))))
        .transpose()?;
    let cgroup = c
        .cgroup
        .as_deref()
        .map(|p| {
            cgroup_id(p).map_err(|why| Error::Usage(format!("--cgroup {}: {why}", p.display())))
        })
        .transpose()?;
    Ok(CaptureConfig {
        filters: Filters {
            localport: ports.localport,
            remoteport: ports.remoteport,
            family: c.family,
            netns,
            cgroup,
            containers: capture_containers(c)?,
        },
        buffer: match c.buffer {
            BufferChoice::Auto => BufferKind::best(),
            BufferChoice::Ring => BufferKind::Ring,
            BufferChoice::Perf => BufferKind::Perf,
        },
        attach: match c.attach {
            AttachKind::Auto => None,
            AttachKind::Tracepoint => Some(AttachMode::Tracepoint),
            AttachKind::Fentry => Some(AttachMode::Fentry),
            AttachKind::Kprobe => Some(AttachMode::Kprobe),
        },
        lifecycle: !c.no_lifecycle,
        evidence: evidence(&c.evidence, evidence_used)?,
        pin_buffer: c.pin_buffer.clone(),
    })
}

/// `--container` and `--pod`, of a reading or a capture.
fn container_sels(container: &Option<String>, pod: &Option<String>) -> Result<Vec<ContainerSel>> {
    let mut containers = Vec::new();
    if let Some(v) = container {
        if v.is_empty() {
            return Err(Error::Usage(
                "--container needs a container's name or id (as analyze --by container shows it)"
                    .into(),
            ));
        }
        containers.push(ContainerSel::Container(v.clone()));
    }
    if let Some(v) = pod {
        let (ns, name) = v.split_once('/').unwrap_or(("-", v));
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return Err(Error::Usage(format!(
                "--pod {v}: give a pod's name or NAMESPACE/NAME (as analyze --by pod shows it)"
            )));
        }
        containers.push(ContainerSel::Pod(v.clone()));
    }
    Ok(containers)
}

/// A capture's container filters, which need the cgroups' names.
fn capture_containers(c: &CaptureArgs) -> Result<Vec<ContainerSel>> {
    let sels = container_sels(&c.container, &c.pod)?;
    if !sels.is_empty() && crate::host::cgroup2_root().is_none() {
        return Err(Error::Usage(
            "--container and --pod need the cgroups' names, and no cgroup v2 is mounted in this mount namespace (`ip netns exec` gives its command a /sys without cgroups; use `nsenter --net=`)".into(),
        ));
    }
    Ok(sels)
}

fn selection(s: &SelectArgs) -> Result<Selection> {
    let bound =
        |flag: &str, v: &Option<String>| v.as_deref().map(|v| time_bound(flag, v)).transpose();
    let since = match s.last {
        Some(d) => Some(TimeBound::BeforeEnd(nanos(d))),
        None => bound("--since", &s.since)?,
    };
    let until = bound("--until", &s.until)?;
    if let (Some(a), Some(b)) = (since, until) {
        if a.same_kind(&b) && b <= a {
            return Err(Error::Usage("--until must be later than --since".into()));
        }
    }
    let netns = s
        .netns
        .as_deref()
        .map(|v| netns_inode(v).map_err(|why| Error::Usage(format!("--netns {v}: {why}"))))
        .transpose()?;
    let cgroup = s.cgroup.as_deref().map(cgroup_selection).transpose()?;
    let containers = container_sels(&s.container, &s.pod)?;
    Ok(Selection {
        localport: s.ports.localport,
        remoteport: s.ports.remoteport,
        flow: s.flow,
        family: s.family,
        netns,
        cgroup,
        containers,
        since,
        until,
    })
}

/// `--cgroup` of analyze and events: an id, or a path as recordings name
/// it ("/system.slice/x.service"), also given under this machine's cgroup2
/// mount ("/sys/fs/cgroup/system.slice/x.service").
fn cgroup_selection(v: &str) -> Result<CgroupSel> {
    if let Ok(id) = v.parse::<u64>() {
        return Ok(CgroupSel::Id(id));
    }
    if !v.starts_with('/') {
        return Err(Error::Usage(format!(
            "--cgroup {v}: give a cgroup id or a path starting with / (as analyze --by cgroup shows it)"
        )));
    }
    let root = cgroup2_root();
    let relative = root
        .as_deref()
        .and_then(|r| Path::new(v).strip_prefix(r).ok())
        .map_or_else(
            || v.trim_end_matches('/').to_string(),
            |rel| format!("/{}", rel.display()),
        );
    let path = if relative.is_empty() {
        "/".to_string()
    } else {
        relative
    };
    let local_id = root.and_then(|r| cgroup_id(&r.join(path.trim_start_matches('/'))).ok());
    Ok(CgroupSel::Path { path, local_id })
}

/// RFC 3339; seconds (fractions allowed) from the recordings' start; a
/// duration before their end (`-60s`); or a local clock time (`09:03:40`).
fn time_bound(flag: &str, s: &str) -> Result<TimeBound> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(TimeBound::FromStart((secs * 1e9) as u64));
        }
    }
    if let Some(before) = s.strip_prefix('-') {
        if let Ok(d) = parse_duration(before) {
            return Ok(TimeBound::BeforeEnd(nanos(d)));
        }
    }
    if let Some(ns) = clock_time(s) {
        return Ok(TimeBound::ClockTime(ns));
    }
    crate::time::parse_rfc3339(s).map(TimeBound::At).ok_or_else(|| {
        Error::Usage(format!(
            "{flag} {s}: expected RFC 3339 (2026-11-26T08:00:00Z), seconds from the recording's start (90), a duration before its end (-60s) or a local clock time (09:03:40)"
        ))
    })
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.fraction`: ns since midnight.
fn clock_time(s: &str) -> Option<u64> {
    let mut parts = s.splitn(3, ':');
    let (h, m) = (parts.next()?, parts.next()?);
    let (sec, frac) = match parts.next() {
        Some(rest) => rest.split_once('.').unwrap_or((rest, "")),
        None => ("0", ""),
    };
    let two = |v: &str, max: u64| {
        (v.len() == 2 && v.bytes().all(|b| b.is_ascii_digit()))
            .then(|| v.parse::<u64>().ok())
            .flatten()
            .filter(|&n| n <= max)
    };
    let sec = if sec == "0" { Some(0) } else { two(sec, 59) };
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_ns = format!("{frac:0<9}").parse::<u64>().ok()?;
    Some(((two(h, 23)? * 60 + two(m, 59)?) * 60 + sec?) * 1_000_000_000 + frac_ns)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(args: &[&str]) -> String {
        match resolve(std::iter::once("tcpcong").chain(args.iter().copied())) {
            Err(Error::Usage(msg)) => msg,
            Err(e) => panic!("{args:?}: not a usage error: {e}"),
            Ok(_) => panic!("{args:?} was accepted"),
        }
    }

    fn plan(args: &[&str]) -> Plan {
        resolve(std::iter::once("tcpcong").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    #[test]
    fn histograms_go_to_every_format_in_every_command() {
        for (args, style) in [
            (&["-d", "--format", "json", "2", "1"][..], Style::Json),
            (&["-d", "--format", "csv"], Style::Csv),
        ] {
            let Plan::Live(p) = plan(args) else {
                panic!("not live")
            };
            assert_eq!(
                (p.report.report.style, p.report.report.histogram),
                (style, true)
            );
        }
        let Plan::Analyze(p) = plan(&["analyze", "x.parquet", "-d", "--format", "json"]) else {
            panic!("not analyze");
        };
        assert_eq!(
            (p.report.report.style, p.report.report.histogram),
            (Style::Json, true)
        );
    }

    #[test]
    fn serve_needs_an_address_and_rotates_only_a_recording() {
        assert!(usage(&["serve"]).contains("--listen"));
        assert!(usage(&["serve", "--listen", "nonsense"]).contains("--listen"));
        assert!(usage(&[
            "serve",
            "--listen",
            "127.0.0.1:9464",
            "--rotate-seconds",
            "60"
        ])
        .contains("add -o DIR/"));
        assert!(
            usage(&["serve", "--listen", "127.0.0.1:9464", "--max-keys", "0"])
                .contains("--max-keys")
        );
        assert!(
            usage(&["serve", "--listen", "127.0.0.1:9464", "--interval", "0.1"])
                .contains("--interval")
        );
        let Plan::Serve(p) = plan(&[
            "serve",
            "--listen",
            "127.0.0.1:9464",
            "-o",
            "/tmp/x/",
            "--rotate-seconds",
            "300",
            "--by",
            "cgroup",
        ]) else {
            panic!("not serve")
        };
        assert_eq!(p.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(p.metrics.by, Some(GroupKey::Cgroup));
        assert_eq!(p.interval_ns, 1_000_000_000);
        assert!(matches!(p.output, Some(Target::Series { .. })));
    }

    #[test]
    fn by_refuses_what_is_not_per_flow() {
        assert!(usage(&["analyze", "x.parquet", "--by", "process", "-d"]).contains("-d"));
        assert!(usage(&[
            "analyze",
            "x.parquet",
            "--by",
            "lport",
            "--format",
            "parquet",
            "-o",
            "t.parquet"
        ])
        .contains("--format parquet"));
    }

    #[test]
    fn outputs_need_an_interval() {
        // Live mode's positionals: a second number needs the first.
        assert!(
            matches!(plan(&["2"]), Plan::Live(p) if p.report.interval_ns == Some(2_000_000_000))
        );
        let Plan::Analyze(p) = plan(&["analyze", "a.parquet", "0.5", "3"]) else {
            panic!("not analyze");
        };
        assert_eq!(p.inputs, vec!["a.parquet".to_string()]);
        assert_eq!(
            (p.report.interval_ns, p.report.outputs),
            (Some(500_000_000), Some(3))
        );
        assert!(usage(&["analyze", "a.parquet", "1", "2", "3"]).contains("too many numbers"));
        assert!(usage(&["analyze", "5"]).contains("no recording given"));
        assert!(usage(&["analyze", "a.parquet", "1", "0"]).starts_with("outputs:"));
        let Plan::Analyze(p) = plan(&["analyze", "a.parquet", "2s"]) else {
            panic!("not analyze");
        };
        assert_eq!(p.report.interval_ns, Some(2_000_000_000));
        assert!(usage(&["1", "2", "3"]).contains("'3' is a third"));
    }

    #[test]
    fn report_flags_become_a_report_config() {
        let Plan::Analyze(p) = plan(&[
            "analyze",
            "a.parquet",
            "-uT",
            "--all",
            "--accounting",
            "between",
        ]) else {
            panic!("not analyze");
        };
        assert_eq!(
            p.report.report,
            ReportConfig {
                style: Style::Table,
                histogram: false,
                micros: true,
                timestamp: true,
                all: true,
                sort: None,
                top: None,
                by: None,
                wide: false,
                align: false,
            }
        );
        assert_eq!(p.report.accounting, Accounting::Between);
        let Plan::Live(p) = plan(&["-d"]) else {
            panic!("not live")
        };
        assert!(p.report.report.histogram);
    }

    #[test]
    fn record_targets_and_rotation() {
        let Plan::Record(p) = plan(&["record", "-o", "/tmp/", "--rotate-seconds", "30"]) else {
            panic!("not record");
        };
        assert!(
            matches!(p.target, Target::Series { rotation, .. } if rotation.every_ns == Some(30_000_000_000))
        );
        assert!(
            usage(&["record", "-o", "/tmp/x.parquet", "--max-total", "1G"])
                .contains("need a directory")
        );
        assert!(
            usage(&["record", "-o", "/tmp/", "--rotate-seconds", "0.01"]).contains("at least 1 s")
        );
        // A size a file's own rows exceed would rotate at every event.
        for (flag, size) in [("--rotate-size", "10"), ("--max-total", "16383")] {
            assert!(
                usage(&["record", "-o", "/tmp/", flag, size])
                    .starts_with(&format!("{flag} {size} bytes is too small")),
                "{flag} {size}"
            );
        }
        assert!(matches!(
            plan(&["record", "-o", "/tmp/", "--rotate-size", "16KiB"]),
            Plan::Record(_)
        ));
        assert!(usage(&["0.01"]).starts_with("interval: at least 0.1 s"));
        let missing = resolve(["tcpcong", "record", "-o", "/nonexistent/dir/x.parquet"])
            .map(drop)
            .map_err(|e| (e.exit_code(), e.to_string()));
        assert_eq!(
            missing,
            Err((
                1,
                "/nonexistent/dir: no such folder for -o /nonexistent/dir/x.parquet".into()
            ))
        );
        let Plan::Record(p) = plan(&[
            "record",
            "-o",
            "x.parquet",
            "--attach",
            "kprobe",
            "--buffer",
            "perf",
            "-L",
            "9-1",
        ]) else {
            panic!("not record");
        };
        assert_eq!(p.capture.attach, Some(AttachMode::Kprobe));
        assert_eq!(p.capture.buffer, BufferKind::Perf);
        assert_eq!(
            p.capture.filters.localport.map(|r| (r.lo, r.hi)),
            Some((1, 9))
        );
        assert!(p
            .command
            .ends_with("record -o x.parquet --attach kprobe --buffer perf -L 9-1"));
    }

    #[test]
    fn filter_targets_must_exist() {
        assert!(
            usage(&["record", "-o", "x.parquet", "--netns", "/nonexistent"])
                .starts_with("--netns /nonexistent:")
        );
        assert!(usage(&["record", "-o", "x.parquet", "--cgroup", "/proc"])
            .contains("not on a cgroup v2"));
    }

    #[test]
    fn clock_times_parse_to_ns_since_midnight() {
        assert_eq!(
            clock_time("09:03"),
            Some((9 * 3600 + 3 * 60) * 1_000_000_000)
        );
        assert_eq!(clock_time("00:00:01.5"), Some(1_500_000_000));
        assert_eq!(clock_time("23:59:59.000000001"), Some(86_399_000_000_001));
        for bad in [
            "24:00",
            "9:03",
            "09:60",
            "09:03:61",
            "09:03:01.1234567891",
            "09:03:0x",
            "09",
        ] {
            assert_eq!(clock_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn time_bounds() {
        assert!(
            usage(&["events", "a.parquet", "--since", "5", "--until", "2"])
                .contains("--until must be later")
        );
        assert!(
            usage(&["events", "a.parquet", "--since", "yesterday"]).contains("expected RFC 3339")
        );
        let Plan::Events(p) = plan(&[
            "events",
            "a.parquet",
            "--since",
            "1.5",
            "--until",
            "1970-01-01T00:00:03Z",
        ]) else {
            panic!("not events");
        };
        assert_eq!(p.select.since, Some(TimeBound::FromStart(1_500_000_000)));
        assert_eq!(p.select.until, Some(TimeBound::At(3_000_000_000)));
    }

    #[test]
    fn help_version_and_generated_texts_are_printed() {
        for args in [
            &["--help"][..],
            &["--version"],
            &["man"],
            &["completions", "bash"],
        ] {
            let r = resolve(std::iter::once("tcpcong").chain(args.iter().copied()));
            match r {
                Ok(Plan::Print(text)) => {
                    assert!(text.contains("tcpcong"), "{args:?}: {text}")
                }
                Err(e) => panic!("{args:?}: {e}"),
                Ok(_) => panic!("{args:?}: not text"),
            }
        }
    }

    #[test]
    fn a_man_page_per_command_with_examples_verbatim() {
        let names: Vec<String> = man_pages().into_iter().map(|(n, _)| n).collect();
        for n in [
            "tcpcong.1",
            "tcpcong-record.1",
            "tcpcong-analyze.1",
            "tcpcong-events.1",
            "tcpcong-doctor.1",
        ] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        let Ok(Plan::Print(top)) = resolve(["tcpcong", "man"]) else {
            panic!("no page")
        };
        assert!(top.contains(".SH EXAMPLES\n.nf\ntcpcong                          # show tcp congestion status duration\n"), "{top}");
        assert!(top.contains("tcpcong \\-L 3000\\-3006 1"), "{top}");
        let Ok(Plan::Print(rec)) = resolve(["tcpcong", "man", "record"]) else {
            panic!("no page")
        };
        assert!(rec.contains("\\-\\-rotate\\-seconds"), "{rec}");
        assert!(usage(&["man", "nosuch"]).contains("no man page tcpcong-nosuch.1"));
    }

    #[test]
    fn clap_errors_are_one_line() {
        let msg = usage(&["record"]);
        assert!(!msg.contains('\n') && msg.contains("--output"), "{msg}");
        assert!(usage(&["-L", "abc"]).contains("'abc' is not a port"));
    }
}
