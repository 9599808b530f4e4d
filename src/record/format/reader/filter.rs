//! Which rows a reading keeps: ports (by flow), flow, cgroup, container,
//! time span.

use rustc_hash::FxHashMap;

pub use crate::event::ContainerSel;
use crate::event::{CgroupNames, Detail, PortRange};

/// `--cgroup`: which cgroup's flows to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupSel {
    Id(u64),
    /// A path as recordings name it (under the cgroup2 mount, from "/"),
    /// and the id it has on this machine, for files that name no paths
    /// (recorded before they did).
    Path {
        path: String,
        local_id: Option<u64>,
    },
}

/// Which rows to keep. Port filters select flows, not single rows: a
/// socket's local port reads 0 before it is bound (`syn_sent`) and after
/// the kernel released it (`close`), and those rows belong to the flow.
#[derive(Debug, Clone, Default)]
pub struct RowFilter {
    localport: Option<PortRange>,
    remoteport: Option<PortRange>,
    flow: Option<u64>,
    pub(super) family: Option<u8>,
    netns: Option<u32>,
    cgroup: Option<CgroupSel>,
    containers: Vec<ContainerSel>,
    /// Per flow, whether its ports matched, once seen with a local port.
    matched: std::cell::RefCell<FxHashMap<u64, bool>>,
}

impl RowFilter {
    pub fn new(
        localport: Option<PortRange>,
        remoteport: Option<PortRange>,
        flow: Option<u64>,
    ) -> RowFilter {
        RowFilter {
            localport,
            remoteport,
            flow,
            ..Default::default()
        }
    }

    /// Also only flows of this family, network namespace and cgroup.
    pub fn socket(
        mut self,
        family: Option<u8>,
        netns: Option<u32>,
        cgroup: Option<CgroupSel>,
    ) -> RowFilter {
        self.family = family;
        self.netns = netns;
        self.cgroup = cgroup;
        self
    }

    /// Also only flows of containers that each of these selects.
    pub fn containers(mut self, containers: Vec<ContainerSel>) -> RowFilter {
        self.containers = containers;
        self
    }

    /// The columns beyond analysis's that the filter reads.
    pub(super) fn columns(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.netns.is_some() {
            c.push("netns");
        }
        if self.cgroup.is_some() || !self.containers.is_empty() {
            c.push("cgroup");
        }
        c
    }

    /// `names`: what the row's file names of its cgroups.
    pub(super) fn keeps_socket(&self, d: &Detail, names: &CgroupNames) -> bool {
        let paths = &names.paths;
        self.netns.is_none_or(|n| n == d.netns)
            && self.cgroup.as_ref().is_none_or(|c| match c {
                CgroupSel::Id(id) => *id == d.cgroup,
                CgroupSel::Path { path, .. } if !paths.is_empty() => {
                    paths.get(&d.cgroup) == Some(path)
                }
                CgroupSel::Path { local_id, .. } => *local_id == Some(d.cgroup),
            })
            && ContainerSel::keep(&self.containers, names.containers.get(&d.cgroup))
    }

    pub(super) fn keeps(&self, flow: u64, sport: u16, dport: u16) -> bool {
        if self.flow.is_some_and(|f| f != flow) {
            return false;
        }
        if self.localport.is_none() && self.remoteport.is_none() {
            return true;
        }
        let mut matched = self.matched.borrow_mut();
        if sport == 0 {
            return matched.get(&flow).copied().unwrap_or(false);
        }
        let ok = self.localport.is_none_or(|p| p.contains(sport))
            && self.remoteport.is_none_or(|p| p.contains(dport));
        matched.insert(flow, ok);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Container;

    #[test]
    fn port_filters_choose_flows_and_keep_their_portless_rows() {
        let f = RowFilter::new(Some(PortRange { lo: 5201, hi: 5201 }), None, None);
        assert!(!f.keeps(1, 0, 5201), "unknown flow without a port");
        assert!(f.keeps(1, 5201, 40000));
        assert!(
            f.keeps(1, 0, 40000),
            "its close, after the port was released"
        );
        assert!(!f.keeps(2, 40000, 5201));
        assert!(!f.keeps(2, 0, 5201));
        let by_flow = RowFilter::new(None, None, Some(2));
        assert!(by_flow.keeps(2, 0, 0) && !by_flow.keeps(1, 5201, 1));
    }

    #[test]
    fn containers_are_chosen_by_name_id_or_pod() {
        let id = "3f9a0c6b2d4e".repeat(5) + "abcd";
        let web = Container {
            runtime: "cri".into(),
            id: id.clone(),
            name: "web".into(),
            pod: "shop-7d9f".into(),
            namespace: "prod".into(),
        };
        let names = CgroupNames {
            paths: Default::default(),
            containers: [(7, web)].into(),
        };
        let keeps = |sel: Vec<ContainerSel>, cgroup: u64| {
            let d = Detail {
                cgroup,
                ..Default::default()
            };
            RowFilter::default()
                .containers(sel)
                .keeps_socket(&d, &names)
        };
        let c = |v: &str| ContainerSel::Container(v.into());
        let p = |v: &str| ContainerSel::Pod(v.into());
        for yes in [
            c("web"),
            c(&id),
            c(&id[..12]),
            p("shop-7d9f"),
            p("prod/shop-7d9f"),
        ] {
            assert!(keeps(vec![yes.clone()], 7), "{yes:?}");
            assert!(!keeps(vec![yes], 8), "a flow of no container");
        }
        for no in [
            c("we"),
            c(&id[..11]),
            c(""),
            p("shop"),
            p("dev/shop-7d9f"),
            p(""),
        ] {
            assert!(!keeps(vec![no.clone()], 7), "{no:?}");
        }
        assert!(keeps(vec![c("web"), p("prod/shop-7d9f")], 7));
        assert!(
            !keeps(vec![c("web"), p("dev/shop-7d9f")], 7),
            "both must hold"
        );
        assert!(keeps(vec![], 8), "no selection keeps all");
    }
}
