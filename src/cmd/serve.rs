//! `tcpcong serve --listen ADDR [-o DIR/]`: live mode for machines. The
//! capture loop feeds the live engine, as in live mode; instead of tables,
//! each closed interval is added to counters that an HTTP endpoint serves
//! to Prometheus (`GET /metrics`), each episode as it completes to the
//! episodes' counters (from the tracker `analyze --episodes` runs), and
//! with `-o` the same events are recorded, rotated, as `record` writes
//! them.
//!
//! A command of its own rather than a `--metrics` option of `record` or
//! live mode: it runs unattended (no banner on stdout, no tables), its
//! intervals exist for the counters (not for printing), and its flags
//! (`--listen`, `--by`, `--max-keys`) mean nothing to the others.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::feed::{this_boot, Feed, Output, FORGET_AFTER_NS};
use super::recording::{tell_started, Recorder};
use crate::analyze::engine::episodes::Episodes;
use crate::analyze::engine::{Accounting, Engine, EngineConfig, Unit, WindowReport};
use crate::analyze::render::prometheus::{Metrics, MetricsConfig};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::event::{Boot, CgroupNames};
use crate::http;
use crate::messages;
use crate::record::capture::config::CaptureConfig;
use crate::record::capture::{self, Progress, Started};
use crate::record::format::output::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub capture: CaptureConfig,
    /// `-o`: also record the events.
    pub output: Option<Target>,
    pub listen: SocketAddr,
    pub metrics: MetricsConfig,
    pub accounting: Accounting,
    pub interval_ns: u64,
    pub command: String,
    pub verbose: bool,
}

/// Serve's output: the counters the endpoint serves.
struct Counters<'p> {
    plan: &'p Plan,
    /// Where the server listens: `--listen`, with the port the system
    /// chose for port 0.
    listening: std::net::SocketAddr,
    metrics: Arc<Mutex<Metrics>>,
    boots: Vec<Boot>,
    /// The episodes of the capture's flows, counted as they complete.
    episodes: Episodes,
    /// Wall clock minus the capture's kernel clock.
    offset_ns: i128,
}

/// The counters, also after a thread panicked holding them: a panic
/// cannot leave them worse than a lost scrape, so serving goes on.
fn lock(m: &Mutex<Metrics>) -> MutexGuard<'_, Metrics> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Output for Counters<'_> {
    fn started(
        &mut self,
        s: &Started,
        start_ns: u64,
        recording: Option<&Recorder>,
    ) -> Result<EngineConfig> {
        super::show_libbpf_log(self.plan.verbose);
        tell_started(s);
        self.offset_ns = i128::from(start_ns) - i128::from(s.start_ktime_ns);
        messages::raw(format_args!(
            "Serving TCP congestion-state metrics at http://{}/metrics{}... Hit Ctrl-C to end.",
            self.listening,
            recording
                .map(|r| format!(", recording into {}", r.describe()))
                .unwrap_or_default()
        ));
        Ok(EngineConfig {
            accounting: self.plan.accounting,
            lifecycle: self.plan.capture.lifecycle,
            start_ns,
            until_ns: None,
            interval_ns: Some(self.plan.interval_ns),
            align: false,
            hist_unit: Unit::Millis,
        })
    }

    fn cgroups(&mut self, names: &CgroupNames) {
        if let Some(b) = self.boots.first_mut() {
            b.learn(names);
        }
    }

    fn fed(
        &mut self,
        engine: &mut Engine,
        events: &[Event],
        windows: &[WindowReport],
        now: u64,
        progress: Progress,
    ) -> Result<()> {
        // A socket connects again (same cookie) right after a failed
        // attempt, if at all: a minute on, its flow is let go.
        engine.forget_closed(now.saturating_sub(FORGET_AFTER_NS));
        self.episodes.push_live(events, self.offset_ns);
        self.episodes
            .forget_closed(now.saturating_sub(FORGET_AFTER_NS));
        let boots = &self.boots;
        let mut m = lock(&self.metrics);
        m.events(events);
        m.episodes(self.episodes.take(), &boots[0]);
        for w in windows {
            m.window(w, boots);
        }
        m.now(engine, boots, progress.lost);
        Ok(())
    }
}

pub fn run(plan: &Plan) -> Result<()> {
    capture::install_stop_handler()?;
    let metrics = Arc::new(Mutex::new(Metrics::new(plan.metrics)));
    let page: Arc<http::Page> = {
        let metrics = Arc::clone(&metrics);
        Arc::new(move |path: &str, openmetrics: bool| {
            (path == "/metrics").then(|| (http::OPENMETRICS, lock(&metrics).encode(openmetrics)))
        })
    };
    // Bound before anything is loaded: a port in use is the first error.
    let server = http::Server::bind(plan.listen, page).map_err(|e| Error::Listen {
        addr: plan.listen,
        why: e.to_string(),
    })?;
    let counters = Counters {
        plan,
        listening: server.addr,
        metrics,
        boots: vec![this_boot()],
        episodes: Episodes::default(),
        offset_ns: 0,
    };
    let mut feed = Feed::create(counters, &plan.capture, plan.output.as_ref(), &plan.command)?;
    super::warn_without_lifecycle(plan.accounting, plan.capture.lifecycle);
    let outcome = feed.run(&plan.capture, None);
    super::show_libbpf_log(plan.verbose);
    drop(server);
    if let Ok(stats) = &outcome {
        if stats.lost_events() > 0 {
            messages::warn(format_args!(
                "the capture lost {} events (tcpcong_lost_events_total)",
                stats.lost_events()
            ));
        }
    }
    feed.end(outcome).1.map(|_| ())
}
