//! The flags, as clap parses them: names, help texts and value types, and
//! nothing else. What they mean together is `resolve`'s business.
//!
//! Flag names and meanings follow BCC's tcpcong where they overlap, so that
//! its users' muscle memory (and scripts) keep working.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::values::{
    parse_duration, parse_family, parse_flow, parse_interval, parse_listen, parse_outputs,
    parse_ports, parse_size, parse_threads,
};
use crate::event::PortRange;

#[derive(Debug, Parser)]
#[command(
    name = "tcpcong",
    version,
    about = "How long every TCP flow spends in each congestion state (open, disorder, cwr, recovery, loss)",
    long_about = "How long every TCP flow spends in each congestion state.\n\n\
        Without a subcommand, traces live and prints BCC tcpcong's tables.\n\
        `record` captures raw transitions into Parquet; `analyze` reports on recordings.",
    after_help = "examples:\n    \
        tcpcong                          # show tcp congestion status duration\n    \
        tcpcong 1 10                     # show 1 second summaries, 10 times\n    \
        tcpcong -L 3000-3006 1           # 1s summaries, local port 3000-3006\n    \
        tcpcong -R 5000-5005 1           # 1s summaries, remote port 5000-5005\n    \
        tcpcong -uT 1                    # 1s summaries, microseconds, and timestamps\n    \
        tcpcong -d                       # show the duration as histograms\n    \
        tcpcong record -o run.parquet --duration 60s\n    \
        tcpcong analyze run.parquet -d",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub live: LiveArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture every congestion-state transition into a zstd Parquet file.
    Record(RecordArgs),
    /// Duration tables and histograms from one or many recordings.
    Analyze(AnalyzeArgs),
    /// Keep the live engine running and serve its counters to Prometheus
    /// (seconds per state, transitions, losses, flows per state), optionally
    /// recording at the same time.
    Serve(ServeArgs),
    /// Two sets of recordings side by side (before and after): the share
    /// of time in each state, the change rate, typical stays, the flows
    /// most in trouble, and the differences that matter.
    Compare(CompareArgs),
    /// The raw transitions of recordings, in time order.
    Events(EventsArgs),
    /// One self-contained HTML page of recordings: where the time went,
    /// episodes and their causes, each top flow's timeline, dwell times,
    /// transitions.
    Report(PageArgs),
    /// What this kernel supports for recording, and why.
    Doctor {
        /// Also show libbpf's log of every mode that does not load.
        #[arg(short = 'v', long)]
        verbose: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): tcpcong(1), or a subcommand's.
    Man {
        /// The subcommand whose page to print (record, analyze, ...).
        page: Option<String>,
        /// Write every page into this folder instead (as `make install` does).
        #[arg(long, value_name = "DIR", conflicts_with = "page")]
        dir: Option<PathBuf>,
    },
}

/// Which flows to keep, by port: shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct PortFilter {
    /// Trace local ports only: N or N-M.
    #[arg(short = 'L', long = "localport", value_name = "PORTS", value_parser = parse_ports, allow_hyphen_values = true)]
    pub localport: Option<PortRange>,

    /// Trace remote ports only: N or N-M.
    #[arg(short = 'R', long = "remoteport", value_name = "PORTS", value_parser = parse_ports, allow_hyphen_values = true)]
    pub remoteport: Option<PortRange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// The per-flow table as a Parquet file (analyze, with -o FILE).
    Parquet,
}

/// How reports look: shared by live mode and `analyze`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Include a timestamp (HH:MM:SS, local time of the interval's end) on output.
    #[arg(short = 'T', long)]
    pub timestamp: bool,

    /// Show distributions as histograms.
    #[arg(short = 'd', long)]
    pub dist: bool,

    /// Output in microseconds.
    #[arg(short = 'u', long)]
    pub microseconds: bool,

    /// Also show flows without state changes that were only in open (a flow out of open is shown without it).
    #[arg(long)]
    pub all: bool,

    /// full: also count time before a flow's first and after its last event;
    /// between: only between two observed changes (BCC's arithmetic).
    #[arg(long, value_enum, default_value = "full")]
    pub accounting: AccountingArg,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,

    /// Order each window's flows by this, largest first (default: by local port, as BCC).
    #[arg(long, value_enum, value_name = "COLUMN")]
    pub sort: Option<SortArg>,

    /// Only the first N flows of each window: by --sort, or else those with the most time in loss + recovery.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,

    /// Sum the flows of each window by their process, cgroup, local or remote port, remote address, network namespace, congestion control or host (--sort and --top then order and cut the groups).
    #[arg(long, value_enum, value_name = "KEY")]
    pub by: Option<ByArg>,

    /// Tables also show each flow's id (what --flow takes), process id, network namespace, congestion control, when it was in recovery or loss (first-last, local time) and command name.
    #[arg(short = 'w', long)]
    pub wide: bool,

    /// Windows end on round clock times, whole multiples of the interval (10:00:05, 10:00:10 for 5), instead of every interval from the start; the first is shorter.
    #[arg(long)]
    pub align: bool,
}

/// `--by`: what flows are summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ByArg {
    /// The owning process's command name
    Process,
    /// The socket's cgroup path
    Cgroup,
    /// The local port
    Lport,
    /// The remote port
    Rport,
    /// The remote address
    Raddr,
    /// The network namespace (its inode number)
    Netns,
    /// The congestion control (bbr, cubic, ...)
    Cc,
    /// The episode's cause (analyze --episodes)
    Cause,
    /// The host (several hosts' recordings together)
    Host,
    /// The container (its runtime's name; in a pod, namespace/pod/name)
    Container,
    /// The Kubernetes pod (namespace/pod)
    Pod,
    /// The Kubernetes namespace
    K8sNamespace,
}

/// BCC's trailing positionals: `[interval] [outputs]`.
#[derive(Debug, Clone, Args)]
pub struct Interval {
    /// Output interval, in seconds.
    #[arg(value_parser = parse_interval)]
    pub interval: Option<Duration>,

    /// Number of outputs.
    #[arg(value_parser = parse_outputs)]
    pub outputs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccountingArg {
    Full,
    Between,
}

#[derive(Debug, Clone, Args)]
pub struct LiveArgs {
    #[command(flatten)]
    pub ports: PortFilter,

    #[command(flatten)]
    pub report: ReportArgs,

    #[command(flatten)]
    pub capture: CaptureArgs,

    #[command(flatten)]
    pub interval: Interval,

    /// Also record the captured events into this Parquet file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,

    /// Print each episode when it completes (a line per trip of a flow out
    /// of open, with its cause, as analyze --episodes has it) instead of
    /// the tables; the evidence is recorded for its causes.
    #[arg(long)]
    pub episodes: bool,
}

/// `--buffer`: a transport, or the best this kernel has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BufferChoice {
    /// The ring buffer where the kernel has one (5.8+), the perf buffer otherwise.
    Auto,
    /// The BPF ring buffer, one for all CPUs (Linux 5.8+).
    Ring,
    /// The perf event array: a buffer per CPU (any kernel).
    Perf,
}

/// `--attach`: how the kernel's congestion-state changes are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttachKind {
    /// The best this kernel offers: tracepoint, then fentry, then kprobe.
    Auto,
    /// tp_btf/tcp_cong_state_set (Linux 5.19+): every transition, exactly.
    Tracepoint,
    /// fentry/fexit on the callers of tcp_set_ca_state (BTF kernels).
    Fentry,
    /// kprobe/kretprobe on the same callers (kernels without BPF trampolines).
    Kprobe,
}

/// What the kernel side captures: shared by live mode and `record`.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// Only IPv4 (4) or IPv6 (6) sockets.
    #[arg(long, value_parser = parse_family)]
    pub family: Option<u8>,

    /// Only sockets of this network namespace: its name (as ip netns lists it), a path (/proc/PID/ns/net) or an inode number.
    #[arg(long, value_name = "PATH|INODE")]
    pub netns: Option<String>,

    /// Only sockets of this cgroup v2 (a path under the cgroup2 mount).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,

    /// Only sockets of this container: its name, or its id (whole, or its first 12 digits or more), as the capture names the cgroups it sees.
    #[arg(long, value_name = "NAME|ID")]
    pub container: Option<String>,

    /// Only sockets of this Kubernetes pod's containers: its name, or NAMESPACE/NAME.
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    pub pod: Option<String>,

    /// Kernel-to-user transport.
    #[arg(long, value_enum, default_value = "auto")]
    pub buffer: BufferChoice,

    /// Kernel hook for congestion-state changes.
    #[arg(long, value_enum, default_value = "auto")]
    pub attach: AttachKind,

    /// Do not record TCP state changes (flow start and end).
    #[arg(long)]
    pub no_lifecycle: bool,

    /// The evidence written beside the transitions, as rows of their own
    /// kind: `all`, `none`, or a list (`retransmit,drop,reset`). Default: all when
    /// writing a file or finding episodes' causes (`--episodes`, `serve`), none
    /// otherwise (the tables do not use it).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KINDS")]
    pub evidence: Vec<EvidenceArg>,

    /// Also show libbpf's log (the verifier's, when the kernel refuses a program).
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Benchmarks only: pin the ring buffer at this bpffs path (and the
    /// lean records' rings and positions at PATH-lean and PATH-bss) so that
    /// a synthetic producer (bench/synth.bpf.c) can write into them.
    #[arg(long, hide = true, value_name = "PATH")]
    pub pin_buffer: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct RecordArgs {
    /// The Parquet file to write, or a directory (DIR/) for a rotated series.
    #[arg(short = 'o', long = "output", value_name = "FILE|DIR/")]
    pub output: PathBuf,

    /// Stop after this long (e.g. 30, 10s, 5m, 2h); default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    pub duration: Option<Duration>,

    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub rotation: RotationArgs,

    /// No banner and no status line (the summary and warnings remain).
    #[arg(short = 'q', long)]
    pub quiet: bool,

    #[command(flatten)]
    pub ports: PortFilter,

    #[command(flatten)]
    pub capture: CaptureArgs,
}

/// How a series (`-o DIR/`) rotates: shared by `record` and `serve`.
#[derive(Debug, Clone, Args)]
pub struct RotationArgs {
    /// With -o DIR/: start a new file every DURATION (seconds, or e.g. 90s, 5m, 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub rotate_seconds: Option<Duration>,

    /// With -o DIR/: start a new file before one exceeds SIZE (e.g. 64MB;
    /// estimated from what is encoded so far, its footer included, so that
    /// files come out at or below it).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub rotate_size: Option<u64>,

    /// With -o DIR/: delete the oldest files of the series beyond SIZE in all.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_total: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where to serve /metrics (Prometheus text / OpenMetrics), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_listen)]
    pub listen: std::net::SocketAddr,

    /// Also record the events: a directory (DIR/) for a rotated series, or a file.
    #[arg(short = 'o', long = "output", value_name = "DIR/|FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub rotation: RotationArgs,

    /// Label the state seconds and flow gauges by this key too.
    #[arg(long, value_enum, value_name = "KEY")]
    pub by: Option<ByArg>,

    /// At most this many values of the --by label; flows of later ones are counted under "(beyond max keys)", and a value with no flow for 60 intervals gives its place up.
    #[arg(long, value_name = "N", default_value = "50")]
    pub max_keys: usize,

    /// How often the counters catch up with periods in progress (seconds).
    #[arg(long, value_parser = parse_duration, default_value = "1")]
    pub interval: Duration,

    /// full: also count time before a flow's first and after its last event;
    /// between: only between two observed changes (BCC's arithmetic).
    #[arg(long, value_enum, default_value = "full")]
    pub accounting: AccountingArg,

    #[command(flatten)]
    pub ports: PortFilter,

    #[command(flatten)]
    pub capture: CaptureArgs,
}

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Recordings (files, folders of *.parquet, globs), then optionally
    /// `interval` (seconds) and `outputs` as in live mode.
    #[arg(required = true, value_name = "INPUT... [interval] [outputs]")]
    pub inputs: Vec<String>,

    #[command(flatten)]
    pub select: SelectArgs,

    #[command(flatten)]
    pub report: ReportArgs,

    /// With --format parquet: the file to write the per-flow table (or the
    /// episodes) to (a new file: see --force).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Replace the -o file if it exists (never a recording being read).
    #[arg(long)]
    pub force: bool,

    /// Threads to use: with several boots, each thread reads and computes
    /// its share of the boots; with one, one thread reads and the others
    /// compute a share of its flows [default: the machine's cores]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,

    /// One row per episode instead: every trip of a flow out of open, with
    /// its states, what it cost (window before, threshold, lowest), the
    /// evidence that led to it and its cause, the first rule it earns:
    /// spurious (the kernel undid the reduction), local-drop:REASON (this
    /// host dropped its segments), ecn (CE marks, nothing resent), timeout,
    /// tail-loss, remote-loss (resent, nothing dropped here), reordering
    /// (disorder only, nothing resent), unknown (--format table, json, csv,
    /// or parquet with -o).
    #[arg(long)]
    pub episodes: bool,
}

/// Which events of the recordings to use: shared by `analyze` and `events`.
#[derive(Debug, Clone, Args)]
pub struct SelectArgs {
    #[command(flatten)]
    pub ports: PortFilter,

    /// Only this flow (socket cookie).
    #[arg(long, value_name = "COOKIE", value_parser = parse_flow)]
    pub flow: Option<u64>,

    /// Start of the span to use: RFC 3339, seconds from the recordings' start (90), a duration before their end (-60s), or a local clock time (09:03:40) of the day that puts it in the recordings or nearest them.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,

    /// Only the last part of the recordings: the same as --since -DURATION (e.g. 60s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "since")]
    pub last: Option<Duration>,

    /// End of the span to use: as --since.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub until: Option<String>,

    /// Only IPv4 (4) or IPv6 (6) flows.
    #[arg(long, value_parser = parse_family)]
    pub family: Option<u8>,

    /// Only flows of this network namespace: its inode, or a namespace file.
    #[arg(long, value_name = "INODE|PATH")]
    pub netns: Option<String>,

    /// Only flows of this cgroup v2: its id, or its path under the cgroup2 mount.
    #[arg(long, value_name = "ID|PATH")]
    pub cgroup: Option<String>,

    /// Only flows of this container, as the recording names it: its name, or its id (whole, or its first 12 digits or more).
    #[arg(long, value_name = "NAME|ID")]
    pub container: Option<String>,

    /// Only flows of this Kubernetes pod's containers: its name, or NAMESPACE/NAME.
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    pub pod: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventsFormat {
    Text,
    Json,
    Csv,
}

/// `--evidence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvidenceArg {
    /// Every kind below.
    All,
    /// Transitions only.
    None,
    /// Every retransmitted segment, with why (fast, loss, rto, tlp, syn).
    Retransmit,
    /// Every segment of a traced flow this host dropped, with the kernel's
    /// reason and where (Linux 5.17+).
    Drop,
    /// Every reset of a traced flow, sent (with the kernel's reason, Linux
    /// 6.10+) or received.
    Reset,
}

/// `events --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Congestion-state transitions.
    #[value(name = "ca_state")]
    CaState,
    /// TCP state changes (flow lifecycle).
    #[value(name = "tcp_state")]
    TcpState,
    /// Each socket's states at the start and end of each file (old_state
    /// its TCP state, new_state its congestion state).
    #[value(name = "snapshot")]
    Snapshot,
    /// Retransmitted segments (old_state the congestion state then,
    /// new_state why: fast, loss, rto, tlp, syn, other).
    #[value(name = "retransmit")]
    Retransmit,
    /// Segments this host dropped (old_state rx or tx, new_state the
    /// kernel's reason).
    #[value(name = "drop")]
    Drop,
    /// Resets (old_state tx or rx, new_state a sent one's reason, or
    /// peer).
    #[value(name = "reset")]
    Reset,
}

/// `--sort`: the per-flow figure that orders rows, largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SortArg {
    Open,
    Disorder,
    Cwr,
    Recovery,
    Loss,
    /// Time in loss and recovery together.
    Trouble,
    Changes,
    Mismatches,
    /// An episode's length (analyze --episodes).
    Duration,
    /// The share of its window an episode cut (analyze --episodes).
    CwndCut,
}

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The recordings before: a file, a folder (every *.parquet inside) or a glob.
    #[arg(value_name = "BEFORE")]
    pub before: String,

    /// The recordings after, as BEFORE.
    #[arg(value_name = "AFTER")]
    pub after: String,

    #[command(flatten)]
    pub select: SelectArgs,

    /// full: also count time before a flow's first and after its last event;
    /// between: only between two observed changes (BCC's arithmetic).
    #[arg(long, value_enum, default_value = "full")]
    pub accounting: AccountingArg,

    /// The flows most in loss + recovery shown for each side.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub top: usize,

    /// table: for people; json: one object with both sides and what changed.
    #[arg(long, value_enum, default_value = "table")]
    pub format: CompareFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompareFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Recordings: files, folders (every *.parquet inside) or globs.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,

    #[command(flatten)]
    pub select: SelectArgs,

    /// text: one line per event; json: one object per line, every column
    /// and the names of the row's cgroup (cgroup_path, container,
    /// container_id, pod, k8s_namespace); csv: the same, with a header line.
    #[arg(long, value_enum, default_value = "text")]
    pub format: EventsFormat,

    /// Only events of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
}

#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Recordings: files, folders (every *.parquet inside) or globs.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// The page to write (an HTML file, new: see --force).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,

    /// Replace the -o file if it exists (never a recording being read).
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub select: SelectArgs,

    /// full: also count time before a flow's first and after its last event;
    /// between: only between two observed changes (BCC's arithmetic).
    #[arg(long, value_enum, default_value = "full")]
    pub accounting: AccountingArg,

    /// Timelines for this many flows, those with the most time in loss + recovery.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
