//! What `tcpcong serve` exposes to Prometheus, computed from what the
//! engine hands out: the seconds of each closed window per state (so a
//! counter holds exactly what `analyze` of the same events credits up to
//! that window's end), transitions by (from, to), lost events, chain breaks
//! (the engine's mismatches), flows seen, and the flows now in each state;
//! and the episodes as they complete, counted by cause, with a histogram
//! of their durations per cause whose buckets name a recent episode each
//! (an OpenMetrics exemplar: host, boot and flow, as `analyze --episodes`
//! names its rows).
//!
//! Labels are bounded by design: never one series per flow. Series are
//! labelled by state, and by one `--by` key at most, whose values are
//! capped: flows of keys beyond the cap are counted under [`OTHER`], and a
//! key with no flow for [`IDLE_WINDOWS`] intervals gives its place (and
//! its series) up to the next new one, so that names seen once (a burst
//! of short-lived processes, or a user naming processes to fill the
//! places) cannot keep the processes that come later out for good.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::{Atomic, Counter};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap;

use super::flows::{rows, GroupKey};
use crate::analyze::engine::episodes::Episode;
use crate::analyze::engine::{Engine, WindowReport};
use crate::escape::prometheus_label;
use crate::event::Boot;
use crate::event::{CaState, Change, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The one extra label, if any.
    pub by: Option<GroupKey>,
    /// Distinct values of that label before `other`.
    pub max_keys: usize,
}

/// The label value for flows beyond the key limit: longer than a process
/// name can be (15 bytes), and not a path, port or address, so that no
/// flow's own key can read as it.
pub const OTHER: &str = "(beyond max keys)";

/// Intervals without a flow after which a key's place may go to another.
pub const IDLE_WINDOWS: u64 = 60;

type Labels = Vec<(String, String)>;

/// The upper bounds of the episode durations' buckets, in seconds: from a
/// millisecond's disorder to a minute's stall.
pub const EPISODE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// OpenMetrics bounds an exemplar's labels, names and values together, to
/// 128 characters (Prometheus drops a longer one).
pub const EXEMPLAR_CHARS: usize = 128;

type Durations = HistogramWithExemplars<Labels>;

fn durations() -> Durations {
    HistogramWithExemplars::new(EPISODE_BUCKETS.into_iter())
}

pub struct Metrics {
    cfg: MetricsConfig,
    registry: Registry,
    seconds: Family<Labels, Counter<f64, Nanos>>,
    transitions: Family<Labels, Counter>,
    in_state: Family<Labels, Gauge>,
    lost: Counter,
    breaks: Counter,
    flows: Counter,
    episodes: Family<Labels, Counter>,
    episode_seconds: Family<Labels, Durations, fn() -> Durations>,
    /// The `--by` values that have series of their own, with the last
    /// window they had a flow in.
    keys: FxHashMap<String, u64>,
    /// Windows handed in so far.
    windows: u64,
    /// The window a place was last looked for among idle keys: once per
    /// window is enough, and keeps overflowing rows from scanning each.
    evicted_at: Option<u64>,
}

/// Seconds kept as whole nanoseconds and shown as seconds: summed as
/// floats window after window, they drifted off the engine's exact
/// nanoseconds (3.9999509189999999 for 3.999950919).
#[derive(Debug, Default)]
struct Nanos(AtomicU64);

impl Nanos {
    fn add(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::Relaxed);
    }
}

impl Atomic<f64> for Nanos {
    fn inc(&self) -> f64 {
        self.inc_by(1.0)
    }

    fn inc_by(&self, seconds: f64) -> f64 {
        // Whole nanoseconds: what the engine credits.
        let ns = (seconds * 1e9).round() as u64;
        self.0.fetch_add(ns, Ordering::Relaxed) as f64 / 1e9
    }

    fn get(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e9
    }
}

impl Metrics {
    pub fn new(cfg: MetricsConfig) -> Metrics {
        let mut registry = Registry::with_prefix("tcpcong");
        let seconds = Family::<Labels, Counter<f64, Nanos>>::default();
        registry.register(
            "state_seconds",
            "Time flows spent in each congestion state, credited up to the end of the last closed interval",
            seconds.clone(),
        );
        let transitions = Family::<Labels, Counter>::default();
        registry.register(
            "transitions",
            "Congestion-state changes, by the state left and the state entered",
            transitions.clone(),
        );
        let in_state = Family::<Labels, Gauge>::default();
        registry.register(
            "flows",
            "Flows in each congestion state now (their timelines open)",
            in_state.clone(),
        );
        let lost = Counter::default();
        registry.register(
            "lost_events",
            "Events the kernel could not hand over, or that did not decode",
            lost.clone(),
        );
        let breaks = Counter::default();
        registry.register(
            "chain_breaks",
            "Events whose old state was not the state their flow was in: a transition without an event",
            breaks.clone(),
        );
        let flows = Counter::default();
        registry.register("flows_seen", "Distinct flows seen", flows.clone());
        let episodes = Family::<Labels, Counter>::default();
        registry.register(
            "episodes",
            "Trips of flows out of open that ended, by cause",
            episodes.clone(),
        );
        let episode_seconds = Family::new_with_constructor(durations as fn() -> Durations);
        registry.register(
            "episode_seconds",
            "How long the episodes that ended lasted, by cause; a bucket's exemplar names a recent episode's flow",
            episode_seconds.clone(),
        );
        Metrics {
            cfg,
            registry,
            seconds,
            transitions,
            in_state,
            lost,
            breaks,
            flows,
            episodes,
            episode_seconds,
            keys: FxHashMap::default(),
            windows: 0,
            evicted_at: None,
        }
    }

    /// The labels of a series of `state` for a flow labelled `key`.
    fn labels(&mut self, state: (&str, &str), key: Option<String>) -> Labels {
        let mut l = vec![(state.0.to_string(), state.1.to_string())];
        if let (Some(by), Some(key)) = (self.cfg.by, key) {
            // A process or cgroup name could otherwise end the label and
            // forge series of its own.
            let key = crate::escape::prometheus_label(&key).into_owned();
            let admitted = self.keys.contains_key(&key)
                || self.keys.len() < self.cfg.max_keys
                || self.evict_idle(by);
            let value = if admitted {
                self.keys.insert(key.clone(), self.windows);
                key
            } else {
                OTHER.to_string()
            };
            l.push((by.name().to_string(), value));
        }
        l
    }

    /// Frees the place of the key idle longest, if one has been idle for
    /// [`IDLE_WINDOWS`], with its series; whether one was freed.
    fn evict_idle(&mut self, by: GroupKey) -> bool {
        if self.evicted_at == Some(self.windows) {
            return false;
        }
        self.evicted_at = Some(self.windows);
        let Some((idle, _)) = self
            .keys
            .iter()
            .filter(|(_, &last)| last.saturating_add(IDLE_WINDOWS) <= self.windows)
            .min_by_key(|(_, &last)| last)
            .map(|(k, &last)| (k.clone(), last))
        else {
            return false;
        };
        self.keys.remove(&idle);
        for s in CaState::ALL {
            self.seconds.remove(&vec![
                ("state".to_string(), s.name().to_string()),
                (by.name().to_string(), idle.clone()),
            ]);
        }
        // Another may be freed in this window once this one is taken.
        self.evicted_at = None;
        true
    }

    /// A window the engine closed: its time per state, and its breaks.
    pub fn window(&mut self, w: &WindowReport, boots: &[Boot]) {
        self.windows += 1;
        for r in rows(w, true, boots) {
            let key = self.cfg.by.map(|by| by.of(&r.row.addr, r.boot).1);
            for s in CaState::ALL {
                let ns = r.row.ns[s.index()];
                if ns > 0 {
                    let l = self.labels(("state", s.name()), key.clone());
                    self.seconds.get_or_create(&l).inner().add(ns);
                }
            }
            self.breaks.inc_by(r.row.mismatches);
        }
    }

    /// Events as they arrive: their changes.
    pub fn events(&mut self, events: &[Event]) {
        for e in events {
            if let Change::Ca { old, new } = e.change {
                if old != new {
                    let l = vec![
                        ("from".to_string(), old.name().to_string()),
                        ("to".to_string(), new.name().to_string()),
                    ];
                    self.transitions.get_or_create(&l).inc();
                }
            }
        }
    }

    /// Episodes as they complete (of `boot`): counted by cause, and their
    /// durations in the cause's histogram, each its bucket's exemplar
    /// until a later one there, stamped with the episode's end.
    pub fn episodes(&mut self, done: impl IntoIterator<Item = Episode>, boot: &Boot) {
        for ep in done {
            let cause = vec![(
                "cause".to_string(),
                prometheus_label(&ep.cause.label()).into_owned(),
            )];
            self.episodes.get_or_create(&cause).inc();
            let ns = ep.end_ns.saturating_sub(ep.start_ns);
            self.episode_seconds.get_or_create(&cause).observe(
                ns as f64 / 1e9,
                Some(exemplar(boot, ep.key.cookie)),
                Some(UNIX_EPOCH + Duration::from_nanos(ep.end_ns)),
            );
        }
    }

    /// What the engine and the capture say now: flows per state, flows
    /// seen, losses so far.
    pub fn now(&mut self, engine: &Engine, boots: &[Boot], lost: u64) {
        let boot = boots.first().cloned().unwrap_or_default();
        let mut counts: Vec<(Labels, i64)> = Vec::new();
        let open: Vec<(Option<String>, CaState)> = engine
            .open_flows()
            .map(|(addr, s)| (self.cfg.by.map(|by| by.of(addr, &boot).1), s))
            .collect();
        for (key, s) in open {
            let l = self.labels(("state", s.name()), key);
            match counts.iter_mut().find(|(k, _)| *k == l) {
                Some((_, n)) => *n += 1,
                None => counts.push((l, 1)),
            }
        }
        // Without --by, the gauge of a state no flow is in any more goes to
        // 0, not away; with it, the series of a key no open flow has goes
        // (a key's series are many, and would stay at 0 for ever).
        for s in CaState::ALL {
            let l = self.labels(("state", s.name()), None);
            if self.cfg.by.is_none() && !counts.iter().any(|(k, _)| *k == l) {
                counts.push((l, 0));
            }
        }
        self.in_state.clear();
        for (l, n) in counts {
            self.in_state.get_or_create(&l).set(n);
        }
        let seen = engine.flows_seen();
        self.flows.inc_by(seen.saturating_sub(self.flows.get()));
        self.lost.inc_by(lost.saturating_sub(self.lost.get()));
    }

    /// The exposition, in the OpenMetrics text format.
    /// The page; with the episodes' exemplars only for a client that
    /// asked for OpenMetrics: the Prometheus text format has none, and its
    /// parsers (promtool's, a collector's) refuse the line that has one.
    pub fn encode(&self, exemplars: bool) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        if exemplars {
            return out;
        }
        let mut plain = String::with_capacity(out.len());
        for line in out.lines() {
            plain.push_str(without_exemplar(line));
            plain.push('\n');
        }
        plain
    }
}

/// A sample line without its exemplar: up to the ` # ` that starts it
/// outside every quoted label value (a value may hold ` # ` itself: a
/// process names itself as it likes).
fn without_exemplar(line: &str) -> &str {
    if line.starts_with('#') {
        return line;
    }
    let (mut quoted, mut escaped) = (false, false);
    for (i, b) in line.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'#' if !quoted && line[..i].ends_with(' ') => return &line[..i - 1],
            _ => {}
        }
    }
    line
}

/// An episode's exemplar labels: where its rows are. The host name gives
/// way to the bound ([`EXEMPLAR_CHARS`]), cut between characters that are
/// escaped whole.
fn exemplar(boot: &Boot, flow: u64) -> Labels {
    let flow = flow.to_string();
    let boot_id = prometheus_label(&boot.boot_id).into_owned();
    let fixed = ["host", "boot_id", "flow"].concat().len() + boot_id.chars().count() + flow.len();
    let mut room = EXEMPLAR_CHARS.saturating_sub(fixed);
    let mut host = String::new();
    for c in boot.host.chars() {
        let escaped = prometheus_label(c.encode_utf8(&mut [0; 4])).into_owned();
        let Some(left) = room.checked_sub(escaped.chars().count()) else {
            break;
        };
        room = left;
        host.push_str(&escaped);
    }
    vec![
        ("host".to_string(), host),
        ("boot_id".to_string(), boot_id),
        ("flow".to_string(), flow),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::engine::{Accounting, EngineConfig, Unit};
    use crate::event::{FlowAddr, FlowKey, KernelName, Owner};
    use std::net::{IpAddr, Ipv4Addr};

    const S: u64 = 1_000_000_000_000;
    const MS: u64 = 1_000_000;

    fn engine() -> Engine {
        Engine::new(EngineConfig {
            accounting: Accounting::Full,
            lifecycle: true,
            start_ns: S,
            until_ns: None,
            interval_ns: Some(1_000 * MS),
            align: false,
            hist_unit: Unit::Millis,
        })
    }

    fn addr(port: u16, comm: &str) -> FlowAddr {
        FlowAddr {
            family: 4,
            saddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            sport: port,
            daddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            dport: 443,
            owner: Owner {
                pid: u32::from(port),
                comm: KernelName::from_str_lossy(comm),
                cgroup: 1,
            },
            netns: 0,
            cc: Default::default(),
        }
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Metrics by process with one place, the engine that feeds them.
    fn by_process_one_key() -> (Engine, Metrics) {
        let m = Metrics::new(MetricsConfig {
            by: Some(GroupKey::Process),
            max_keys: 1,
        });
        (engine(), m)
    }

    #[test]
    fn counters_hold_the_closed_windows_seconds_and_gauges_the_open_states() {
        use CaState::*;
        let (mut e, mut m) = by_process_one_key();
        let boots = [Boot::default()];
        // Flow 1 (web): open, recovery at +200 ms, open at +700 ms.
        // Flow 2 (db): loss from +100 ms, still in it.
        let k = |c| FlowKey { boot: 0, cookie: c };
        e.push(
            S + 200 * MS,
            k(1),
            Change::Ca {
                old: Open,
                new: Recovery,
            },
            || addr(1, "web"),
        );
        e.push(
            S + 100 * MS,
            k(2),
            Change::Ca {
                old: Open,
                new: Loss,
            },
            || addr(2, "db"),
        );
        e.push(
            S + 700 * MS,
            k(1),
            Change::Ca {
                old: Recovery,
                new: Open,
            },
            || addr(1, "web"),
        );
        for w in e.drain_until(S + 1_000 * MS) {
            m.window(&w, &boots);
        }
        m.now(&e, &boots, 3);
        let t = m.encode(true);
        let web = |s: &str| {
            value(
                &t,
                &format!("tcpcong_state_seconds_total{{state=\"{s}\",process=\"web\"}}"),
            )
        };
        // Full accounting: flow 1's head (open from the window's start) counts.
        assert_eq!(web("open"), Some(0.5));
        assert_eq!(web("recovery"), Some(0.5));
        // db is beyond one key: OTHER.
        let other = value(
            &t,
            &format!("tcpcong_state_seconds_total{{state=\"loss\",process=\"{OTHER}\"}}"),
        );
        assert_eq!(other, Some(0.9));
        assert_eq!(
            value(&t, "tcpcong_flows{state=\"open\",process=\"web\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &t,
                &format!("tcpcong_flows{{state=\"loss\",process=\"{OTHER}\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(value(&t, "tcpcong_lost_events_total"), Some(3.0));
        assert_eq!(value(&t, "tcpcong_flows_seen_total"), Some(2.0));
        assert!(t.ends_with("# EOF\n"), "OpenMetrics: {t}");

        m.events(&[Event {
            ktime_ns: 0,
            flow: 1,
            addr: addr(1, "web"),
            change: Change::Ca {
                old: Open,
                new: Disorder,
            },
            detail: Default::default(),
        }]);
        m.now(&e, &boots, 5);
        let t = m.encode(true);
        assert_eq!(
            value(
                &t,
                "tcpcong_transitions_total{from=\"open\",to=\"disorder\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&t, "tcpcong_lost_events_total"),
            Some(5.0),
            "counted once"
        );
    }

    /// Two ECN episodes and a reordering, through the tracker as serve
    /// runs it: counts, the histogram's buckets and sum, and each bucket's
    /// exemplar naming the last episode that fell in it.
    #[test]
    fn episodes_are_counted_by_cause_with_an_exemplar_per_bucket() {
        use crate::analyze::engine::episodes::Episodes;
        use CaState::*;
        let mut tracker = Episodes::default();
        let mut push = |ms: u64, cookie: u64, old, new, ce: u32| {
            let e = Event {
                ktime_ns: S + ms * MS,
                flow: cookie,
                addr: addr(cookie as u16, "web"),
                change: Change::Ca { old, new },
                detail: crate::event::Detail {
                    snd_cwnd: 10,
                    delivered_ce: ce,
                    ..Default::default()
                },
            };
            tracker.push_live(&[e], 0);
        };
        push(0, 1, Open, Cwr, 0);
        push(3, 1, Cwr, Open, 2);
        push(10, 2, Open, Cwr, 0);
        push(14, 2, Cwr, Open, 1);
        push(20, 3, Open, Disorder, 0);
        push(320, 3, Disorder, Open, 0);
        let mut m = Metrics::new(MetricsConfig {
            by: None,
            max_keys: 1,
        });
        let boot = Boot {
            host: "db1".into(),
            boot_id: "b0".into(),
            ..Default::default()
        };
        m.episodes(tracker.take(), &boot);
        let t = m.encode(true);
        let ecn = |rest: &str| format!("tcpcong_episode_seconds_{rest}");
        assert_eq!(
            value(&t, "tcpcong_episodes_total{cause=\"ecn\"}"),
            Some(2.0)
        );
        assert_eq!(
            value(&t, "tcpcong_episodes_total{cause=\"reordering\"}"),
            Some(1.0)
        );
        assert_eq!(value(&t, &ecn("sum{cause=\"ecn\"}")), Some(0.007));
        assert_eq!(value(&t, &ecn("count{cause=\"ecn\"}")), Some(2.0));
        // 3 ms and 4 ms: both in the 5 ms bucket, whose exemplar is the
        // later one (flow 2, ended at 14 ms).
        let bucket = |le: &str| {
            let series = ecn(&format!("bucket{{le=\"{le}\",cause=\"ecn\"}}"));
            t.lines()
                .find_map(|l| l.strip_prefix(&series))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{series} in {t}"))
                .to_string()
        };
        assert_eq!(bucket("0.0025"), "0");
        assert_eq!(
            bucket("0.005"),
            format!(
                "2 # {{host=\"db1\",boot_id=\"b0\",flow=\"2\"}} 0.004 {}.014",
                S / 1_000_000_000
            )
        );
        assert_eq!(bucket("+Inf"), "2");
        assert!(t.contains(
            "le=\"0.5\",cause=\"reordering\"} 1 # {host=\"db1\",boot_id=\"b0\",flow=\"3\"} 0.3 "
        ));

        // For a client that did not ask for OpenMetrics: the same page,
        // each line up to its exemplar.
        let plain = m.encode(false);
        let cut: Vec<&str> = t.lines().map(|l| l.split(" # {").next().unwrap()).collect();
        assert_eq!(plain.lines().collect::<Vec<_>>(), cut);
        assert!(plain.contains(&format!(
            "{} 2\n",
            ecn("bucket{le=\"0.005\",cause=\"ecn\"}")
        )));
    }

    /// A label value may hold what starts an exemplar: only one outside
    /// the quotes does.
    #[test]
    fn an_exemplar_is_cut_where_it_starts_not_where_a_label_says_so() {
        for (line, want) in [
            (
                r##"a{p="x # {y=\"1\"} 2"} 3 # {f="1"} 0.5 7"##,
                r##"a{p="x # {y=\"1\"} 2"} 3"##,
            ),
            (r##"a{p="\\"} 3 # {f="1"} 0.5"##, r##"a{p="\\"} 3"##),
            (r##"a{p="# x"} 3"##, r##"a{p="# x"} 3"##),
            ("a_total 4", "a_total 4"),
            ("# HELP a a # thing", "# HELP a a # thing"),
        ] {
            assert_eq!(without_exemplar(line), want, "{line}");
        }
    }

    /// A host name is the root's, but long and odd it may be: an exemplar
    /// stays within OpenMetrics' bound, its escapes whole.
    #[test]
    fn an_exemplar_fits_its_bound_whatever_the_host_is_called() {
        for host in [
            "h".repeat(64),
            "\"".repeat(64),
            format!("{}\n", "é".repeat(60)),
        ] {
            let boot = Boot {
                host: host.clone(),
                boot_id: "7e9f8b0c-2c57-4a8e-9d0a-1f2e3d4c5b6a".into(),
                ..Default::default()
            };
            let labels = exemplar(&boot, u64::MAX);
            let chars: usize = labels
                .iter()
                .map(|(k, v)| k.chars().count() + v.chars().count())
                .sum();
            assert!(chars <= EXEMPLAR_CHARS, "{chars}: {labels:?}");
            let host = &labels[0].1;
            assert!(!host.is_empty());
            // Every quote escaped: none ends the value early.
            let unescaped = host.replace("\\\\", "").replace("\\\"", "");
            assert!(!unescaped.contains(['"', '\\', '\n']), "{host}");
        }
    }

    #[test]
    fn seconds_are_the_engines_nanoseconds_however_many_windows() {
        use CaState::*;
        let mut e = engine();
        let mut m = Metrics::new(MetricsConfig {
            by: None,
            max_keys: 1,
        });
        let k = FlowKey { boot: 0, cookie: 1 };
        // 100 ms of loss in each of ten windows: one second.
        for i in 0..10 {
            let at = S + i * 1_000 * MS;
            e.push(
                at,
                k,
                Change::Ca {
                    old: Open,
                    new: Loss,
                },
                || addr(1, "web"),
            );
            e.push(
                at + 100 * MS,
                k,
                Change::Ca {
                    old: Loss,
                    new: Open,
                },
                || addr(1, "web"),
            );
        }
        for w in e.drain_until(S + 10_000 * MS) {
            m.window(&w, &[Boot::default()]);
        }
        // Summed as floats, ten times 0.1 s came to 0.9999999999999999.
        let t = m.encode(true);
        assert!(
            t.lines()
                .any(|l| l == "tcpcong_state_seconds_total{state=\"loss\"} 1.0"),
            "{t}"
        );
    }

    #[test]
    fn without_a_key_every_state_has_a_gauge() {
        let e = engine();
        let mut m = Metrics::new(MetricsConfig {
            by: None,
            max_keys: 1,
        });
        m.now(&e, &[Boot::default()], 0);
        let t = m.encode(true);
        for s in CaState::ALL {
            let series = format!("tcpcong_flows{{state=\"{}\"}}", s.name());
            assert_eq!(value(&t, &series), Some(0.0), "{t}");
        }
    }

    #[test]
    fn an_idle_key_gives_its_place_up_and_no_name_reads_as_other() {
        use CaState::*;
        let (mut e, mut m) = by_process_one_key();
        let boots = [Boot::default()];
        let k = |c| FlowKey { boot: 0, cookie: c };
        let ca = |old, new| Change::Ca { old, new };
        let close = Change::Tcp {
            old: crate::event::TcpState(1),
            new: crate::event::TcpState(7),
        };
        let feed = |e: &mut Engine, m: &mut Metrics, to_s: u64| {
            for w in e.drain_until(S + to_s * 1_000 * MS) {
                m.window(&w, &boots);
            }
            m.now(e, &boots, 0);
            m.encode(true)
        };
        // A process that calls itself by the overflow's short name takes
        // the one place, and its flow closes within the first second.
        e.push(S + 100 * MS, k(1), ca(Open, Loss), || addr(1, "other"));
        e.push(S + 200 * MS, k(1), close, || addr(1, "other"));
        let t = feed(&mut e, &mut m, 1);
        assert!(t.contains("process=\"other\""), "{t}");
        // web comes while the place is taken: counted beyond it, apart
        // from the process named "other".
        e.push(S + 1_100 * MS, k(2), ca(Open, Loss), || addr(2, "web"));
        let t = feed(&mut e, &mut m, 2);
        let other = format!("tcpcong_flows{{state=\"loss\",process=\"{OTHER}\"}}");
        assert_eq!(value(&t, &other), Some(1.0), "{t}");
        // After IDLE_WINDOWS intervals without a flow, "other"'s place and
        // series go to the next key that needs one: web's, still open.
        e.push(
            S + (IDLE_WINDOWS + 2) * 1_000 * MS,
            k(3),
            ca(Open, Cwr),
            || addr(3, "db"),
        );
        let t = feed(&mut e, &mut m, IDLE_WINDOWS + 3);
        assert!(!t.contains("process=\"other\""), "{t}");
        assert_eq!(
            value(&t, "tcpcong_flows{state=\"loss\",process=\"web\"}"),
            Some(1.0),
            "{t}"
        );
        // db, new, finds the one place taken.
        let other = format!("tcpcong_flows{{state=\"cwr\",process=\"{OTHER}\"}}");
        assert_eq!(value(&t, &other), Some(1.0), "{t}");
    }
}
