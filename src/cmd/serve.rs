//! `tcpcong serve --listen ADDR [-o DIR/]`: live mode for machines. The
//! capture loop feeds the live engine, as in live mode; instead of tables,
//! each closed interval is added to counters that an HTTP endpoint serves
//! to Prometheus (`GET /metrics`), and with `-o` the same events are
//! recorded, rotated, as `record` writes them.
//!
//! A command of its own rather than a `--metrics` option of `record` or
//! live mode: it runs unattended (no banner on stdout, no tables), its
//! intervals exist for the counters (not for printing), and its flags
//! (`--listen`, `--by`, `--max-keys`) mean nothing to the others.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::record::{check_filters, tell_started, Recording};
use crate::analyze::engine::{Accounting, Engine, EngineConfig, Unit};
use crate::analyze::render::flows::Boot;
use crate::analyze::render::prometheus::{Metrics, MetricsConfig};
use crate::error::{Error, Result};
use crate::event::{Event, FlowKey};
use crate::http;
use crate::messages;
use crate::record::capture::load::{preflight, CaptureConfig};
use crate::record::capture::{self, Progress, Sink, Started};
use crate::record::format::output::Target;
use crate::time::Clock;

/// How long a closed flow is remembered (see [`Engine::forget_closed`]):
/// memory follows the flows alive, not every flow since the start.
const FORGET_AFTER_NS: u64 = 60_000_000_000;

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

struct ServeSink<'p> {
    plan: &'p Plan,
    clock: Clock,
    engine: Option<Engine>,
    metrics: Arc<Mutex<Metrics>>,
    boots: Vec<Boot>,
    recording: Option<Recording>,
}

/// The counters, also after a thread panicked holding them: a panic
/// cannot leave them worse than a lost scrape, so serving goes on.
fn lock(m: &Mutex<Metrics>) -> MutexGuard<'_, Metrics> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sink for ServeSink<'_> {
    fn started(&mut self, s: &Started) -> Result<()> {
        super::show_libbpf_log(self.plan.verbose);
        tell_started(s);
        messages::raw(format_args!(
            "Serving TCP congestion-state metrics at http://{}/metrics{}... Hit Ctrl-C to end.",
            self.plan.listen,
            self.recording
                .as_ref()
                .map(|r| format!(", recording into {}", r.describe()))
                .unwrap_or_default()
        ));
        self.engine = Some(Engine::new(EngineConfig {
            accounting: self.plan.accounting,
            lifecycle: self.plan.capture.lifecycle,
            start_ns: self.clock.wall(s.start_ktime_ns),
            until_ns: None,
            interval_ns: Some(self.plan.interval_ns),
            hist_unit: Unit::Millis,
        }));
        match self.recording.as_mut() {
            Some(r) => r.started(s),
            None => Ok(()),
        }
    }

    fn snapshot_due(&self, next: u64) -> bool {
        self.recording
            .as_ref()
            .is_some_and(|r| r.snapshot_due(next))
    }

    fn snapshot_taken(&mut self, done: u64) {
        if let Some(r) = self.recording.as_mut() {
            r.snapshot_taken(done);
        }
    }

    fn cgroups(&mut self, paths: &BTreeMap<u64, String>) -> Result<()> {
        if let Some(r) = self.recording.as_mut() {
            r.name_cgroups(paths);
        }
        if let Some(b) = self.boots.first_mut() {
            b.cgroup_paths
                .extend(paths.iter().map(|(k, v)| (*k, v.clone())));
        }
        Ok(())
    }

    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()> {
        if let Some(r) = self.recording.as_mut() {
            r.write(events, progress)?;
        }
        let Some(mut engine) = self.engine.take() else {
            return Ok(());
        };
        for e in events {
            let key = FlowKey {
                boot: 0,
                cookie: e.flow,
            };
            engine.push(self.clock.wall(e.ktime_ns), key, e.change, || {
                e.addr.clone()
            });
        }
        let now = self.clock.wall(progress.complete_until);
        let windows = engine.drain_until(now);
        // A socket connects again (same cookie) right after a failed
        // attempt, if at all: a minute on, its flow is let go.
        engine.forget_closed(now.saturating_sub(FORGET_AFTER_NS));
        {
            let boots = &self.boots;
            let mut m = lock(&self.metrics);
            m.events(events);
            for w in &windows {
                m.window(w, boots);
            }
            m.now(&engine, boots, progress.lost);
        }
        self.engine = Some(engine);
        Ok(())
    }
}

pub fn run(plan: &Plan) -> Result<()> {
    preflight(&plan.capture)?;
    check_filters(&plan.capture);
    super::warn_without_lifecycle(plan.accounting, plan.capture.lifecycle);
    let metrics = Arc::new(Mutex::new(Metrics::new(plan.metrics)));
    let page: Arc<http::Page> = {
        let metrics = Arc::clone(&metrics);
        Arc::new(move |path: &str| {
            (path == "/metrics").then(|| (http::OPENMETRICS, lock(&metrics).encode()))
        })
    };
    // Bound before anything is loaded: a port in use is the first error.
    let server = http::Server::bind(plan.listen, page).map_err(|e| Error::Listen {
        addr: plan.listen,
        why: e.to_string(),
    })?;
    let recording = plan
        .output
        .as_ref()
        .map(|t| Recording::create(t, &plan.capture, &plan.command))
        .transpose()?;
    let clock = recording
        .as_ref()
        .map_or_else(Clock::of_host, Recording::clock);
    let mut sink = ServeSink {
        plan,
        clock,
        engine: None,
        metrics,
        boots: vec![Boot {
            host: crate::host::hostname(),
            boot_id: crate::host::boot_id(),
            cgroup_paths: Default::default(),
        }],
        recording,
    };
    let outcome = capture::run(&plan.capture, None, &mut sink);
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
    match sink.recording.take() {
        Some(r) => r.end(outcome).map(|_| ()),
        None => outcome.map(|_| ()),
    }
}
