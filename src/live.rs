//! Live mode, `tcpcong [-L] [-R] [-T] [-d] [-u] [interval] [outputs]`: the
//! drop-in for BCC's tcpcong. It is not a second implementation: the
//! capture loop of `record` is the event source, the analyze engine does
//! the arithmetic and its printer the output, so a live run and `analyze`
//! of a recording of the same traffic print the same numbers. With `-o` the
//! same stream is also written to a recording.

use std::io::{self, Write};

use crate::analyze::engine::{Engine, FlowKey};
use crate::analyze::{engine_config, stdout_err, warn_losses, Printer};
use crate::cli::{Format, LiveArgs};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::record::capture::{self, Progress, Sink};
use crate::record::host;
use crate::record::load::{self, KernelConfig};
use crate::record::writer::RecordingWriter;

struct LiveSink<W: Write> {
    args: LiveArgs,
    clock_offset_ns: i64,
    engine: Option<Engine>,
    printer: Printer<W>,
    outputs_left: u64,
    recording: Option<RecordingWriter>,
}

impl<W: Write> LiveSink<W> {
    fn wall(&self, ktime: u64) -> u64 {
        (ktime as i64).saturating_add(self.clock_offset_ns).max(0) as u64
    }

    fn print(&mut self, windows: &[crate::analyze::engine::WindowReport]) -> Result<()> {
        for w in windows {
            if self.outputs_left == 0 {
                break;
            }
            self.printer.window(w).map_err(stdout_err)?;
            self.printer.flush().map_err(stdout_err)?;
            self.outputs_left -= 1;
        }
        Ok(())
    }
}

impl<W: Write> Sink for LiveSink<W> {
    fn started(&mut self, start_ktime_ns: u64, _attach: &str) {
        let banner = "Tracing tcp congestion control status duration... Hit Ctrl-C to end.";
        // As the seed prints it, on stdout, unless stdout is for machines.
        if self.args.report.format == Format::Table {
            println!("{banner}");
        } else {
            eprintln!("{banner}");
        }
        let start = self.wall(start_ktime_ns);
        self.engine = Some(Engine::new(engine_config(
            &self.args.report,
            start,
            None,
            !self.args.capture.no_lifecycle,
        )));
    }

    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()> {
        if let Some(w) = self.recording.as_mut() {
            w.write(events)?;
        }
        let now = self.wall(progress.complete_until);
        let offset = self.clock_offset_ns;
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        for e in events {
            let t = (e.ktime_ns as i64).saturating_add(offset).max(0) as u64;
            let addr = e.addr.clone();
            engine.push(
                t,
                FlowKey {
                    boot: 0,
                    cookie: e.flow,
                },
                e.change,
                move || addr,
            );
        }
        let windows = engine.drain_until(now);
        self.print(&windows)
    }

    fn done(&self) -> bool {
        self.outputs_left == 0
    }
}

pub fn run(args: &LiveArgs) -> Result<()> {
    let mut args = args.clone();
    args.report.interval = args.interval.interval;
    args.report.outputs = args.interval.outputs;
    if args.report.outputs.is_some() && args.report.interval.is_none() {
        return Err(Error::Usage(
            "outputs needs an interval: tcpcong [interval] [outputs]".into(),
        ));
    }
    let cfg = KernelConfig::from_args(&args.ports, &args.capture)?;
    load::preflight(cfg.attach)?;
    let clock_offset_ns = host::clock_offset_ns();
    let recording = args
        .output
        .as_deref()
        .map(|p| RecordingWriter::create(p, args.force, clock_offset_ns))
        .transpose()?;

    let mut sink = LiveSink {
        outputs_left: args.report.outputs.unwrap_or(u64::MAX),
        printer: Printer::new(io::stdout(), &args.report, 0),
        clock_offset_ns,
        engine: None,
        recording,
        args,
    };
    let stats = capture::run(&cfg, None, &mut sink)?;
    let end = sink.wall(stats.end_ktime_ns);
    let summary = sink.engine.take().map(|e| e.finish(end));
    if let Some(s) = &summary {
        // At Ctrl-C, the interval in progress is printed, as the seed does.
        sink.print(&s.windows)?;
    }
    if let Some(w) = sink.recording.take() {
        let meta = crate::record::metadata(&cfg, &stats, clock_offset_ns);
        let target = w.target().to_path_buf();
        let size = w.finish(meta)?;
        eprintln!("tcpcong: recorded to {} ({size} bytes)", target.display());
    }
    if let Some(s) = &summary {
        warn_losses(stats.lost_events(), s);
    }
    Ok(())
}
