//! Which flows a report shows, and whose they are: the pieces every
//! rendering of the per-flow rows shares (the printed ones, the Arrow
//! table, Prometheus' labels). `rows` pairs each visible row with the boot
//! it lived on; `GroupKey` says which `--by` group a flow falls in.

use crate::analyze::engine::{FlowRow, WindowReport};
use std::collections::BTreeMap;

use crate::event::{Boot, Container, FlowAddr};

/// What `--by` sums flows by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKey {
    /// The owning process's command name.
    Process,
    /// The socket's cgroup path (its id where the path is not known).
    Cgroup,
    Lport,
    Rport,
    Raddr,
    /// The socket's network namespace (its inode number).
    Netns,
    /// The congestion control (bbr, cubic, ...).
    Cc,
    /// The host the flow lived on (several hosts' recordings together).
    Host,
    /// The container its cgroup was made for.
    Container,
    /// Kubernetes: its pod (`namespace/pod`), and the pod's namespace.
    Pod,
    K8sNamespace,
}

impl GroupKey {
    pub fn name(self) -> &'static str {
        match self {
            GroupKey::Process => "process",
            GroupKey::Cgroup => "cgroup",
            GroupKey::Lport => "lport",
            GroupKey::Rport => "rport",
            GroupKey::Raddr => "raddr",
            GroupKey::Netns => "netns",
            GroupKey::Cc => "cc",
            GroupKey::Host => "host",
            GroupKey::Container => "container",
            GroupKey::Pod => "pod",
            GroupKey::K8sNamespace => "k8s-namespace",
        }
    }

    /// The group a flow's row falls in, and an order for groups (ports
    /// by number, the rest by name).
    pub fn of(self, a: &FlowAddr, boot: &Boot) -> (u64, String) {
        let o = &a.owner;
        match self {
            GroupKey::Process if o.pid == 0 => (0, UNKNOWN.into()),
            GroupKey::Process => (0, o.comm.as_str().to_string()),
            GroupKey::Cgroup if o.cgroup == 0 => (0, UNKNOWN.into()),
            GroupKey::Cgroup => (0, boot.cgroup_path(o.cgroup)),
            GroupKey::Lport => (u64::from(a.sport), a.sport.to_string()),
            GroupKey::Rport => (u64::from(a.dport), a.dport.to_string()),
            GroupKey::Raddr => (0, a.daddr.to_string()),
            // Recordings before these columns hold 0 and "".
            GroupKey::Netns if a.netns == 0 => (0, NOT_RECORDED.into()),
            GroupKey::Netns => (u64::from(a.netns), a.netns.to_string()),
            GroupKey::Cc if a.cc.as_str().is_empty() => (0, NOT_RECORDED.into()),
            GroupKey::Cc => (0, a.cc.as_str().to_string()),
            GroupKey::Host => (0, boot.host.clone()),
            GroupKey::Container | GroupKey::Pod | GroupKey::K8sNamespace if o.cgroup == 0 => {
                (0, UNKNOWN.into())
            }
            GroupKey::Container => (0, container_label(boot.containers.get(&o.cgroup))),
            GroupKey::Pod => match boot.containers.get(&o.cgroup) {
                Some(c) if !c.pod.is_empty() => (0, format!("{}/{}", c.namespace, c.pod)),
                _ => (0, NO_POD.into()),
            },
            GroupKey::K8sNamespace => match boot.containers.get(&o.cgroup) {
                Some(c) if !c.namespace.is_empty() => (0, c.namespace.clone()),
                _ => (0, NO_POD.into()),
            },
        }
    }
}

/// A container as a group: its pod's namespace and name before its own in
/// a pod, its runtime's name elsewhere, its short id (as `docker ps` shows
/// it) where the host gave no name.
fn container_label(c: Option<&Container>) -> String {
    c.map_or_else(|| NO_CONTAINER.into(), container_name)
}

/// How a container is named to people: as `--by container` groups it.
pub fn container_name(c: &Container) -> String {
    let name = if c.name.is_empty() {
        c.id.get(..12).unwrap_or(&c.id)
    } else {
        &c.name
    };
    if c.pod.is_empty() {
        name.to_string()
    } else {
        format!("{}/{}/{name}", c.namespace, c.pod)
    }
}

/// The groups of flows of no container, and of no pod: in parentheses,
/// which no container's or pod's name may hold.
const NO_CONTAINER: &str = "(no container)";
const NO_POD: &str = "(no pod)";

/// The group of flows whose owner or cgroup is not known: longer than a
/// process name can be (15 bytes), and not a path, so that no process
/// naming itself so joins it.
const UNKNOWN: &str = "(owner not known)";

/// The group of flows whose recording did not hold the key (older files).
const NOT_RECORDED: &str = "(not recorded)";

/// One `--by` group of a window: the flows it sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub key: String,
    /// Where the group sorts among the others (ports by number).
    pub order: u64,
    pub flows: u64,
    pub ns: [u64; 5],
    pub changes: u64,
    pub mismatches: u64,
}

/// A flow's row with the host and boot it lived on.
pub struct HostRow<'a> {
    pub boot: &'a Boot,
    pub row: &'a FlowRow,
}

/// A boot index the caller gave no name for.
static UNNAMED: Boot = Boot {
    host: String::new(),
    boot_id: String::new(),
    cgroup_paths: BTreeMap::new(),
    containers: BTreeMap::new(),
};

/// The rows a report shows (`all`: also those only in open, unchanged), each with
/// its boot (by the flow key's boot index into `boots`).
pub fn rows<'a>(
    w: &'a WindowReport,
    all: bool,
    boots: &'a [Boot],
) -> impl Iterator<Item = HostRow<'a>> + 'a {
    w.rows
        .iter()
        .filter(move |r| visible(r, all))
        .map(move |r| HostRow {
            boot: usize::try_from(r.key.boot)
                .ok()
                .and_then(|b| boots.get(b))
                .unwrap_or(&UNNAMED),
            row: r,
        })
}

/// Whether a row is shown: with `all`, every flow; else those that changed
/// or spent time out of open (a flow stuck in loss for a whole window,
/// with no change in it, is the one a reader looks for).
pub(crate) fn visible(r: &FlowRow, all: bool) -> bool {
    all || r.changes != 0 || r.ns[1..].iter().any(|&n| n > 0)
}
