//! The container filters, applied in user space: the kernel knows a
//! socket's cgroup id, not what the cgroup was made for. A cgroup's events
//! go on to the sink once the capture has named the cgroup for a container
//! the filters keep; those of any other cgroup, or of one it could not
//! name, do not, nor do the other cgroups' names.

use std::collections::HashSet;

use super::{Progress, Sink, Started};
use crate::error::Result;
use crate::event::{CgroupNames, ContainerSel, Event};

/// How many cgroups left out, and flows kept, are remembered: past it the
/// set starts afresh (a bound on memory against a storm of short-lived
/// cgroups or flows). A left-out cgroup forgotten so is counted as unnamed
/// after; a kept flow forgotten so loses only its rows that name no
/// cgroup.
const MAX_REMEMBERED: usize = 1 << 16;

/// A sink that hands on only the events of the containers `sels` keep.
pub struct Selected<'a> {
    sels: &'a [ContainerSel],
    sink: &'a mut dyn Sink,
    /// The cgroups named for a container the filters keep, and the others
    /// named so far.
    kept: HashSet<u64>,
    left: HashSet<u64>,
    /// Flows with a row of a kept cgroup: their rows that name no cgroup (a
    /// drop found by its addresses before the flow's first full record) are
    /// theirs.
    kept_flows: HashSet<u64>,
    unnamed: u64,
    handed: Vec<Event>,
}

impl<'a> Selected<'a> {
    pub fn new(sels: &'a [ContainerSel], sink: &'a mut dyn Sink) -> Selected<'a> {
        Selected {
            sels,
            sink,
            kept: HashSet::new(),
            left: HashSet::new(),
            kept_flows: HashSet::new(),
            unnamed: 0,
            handed: Vec::new(),
        }
    }

    /// Events left out because their cgroup had no name yet when they came
    /// (it is named from its process, or by a scan at most once a second).
    pub fn unnamed(&self) -> u64 {
        self.unnamed
    }

    fn keeps(&mut self, e: &Event) -> bool {
        let cgroup = e.detail.cgroup;
        if cgroup == 0 {
            return self.kept_flows.contains(&e.flow);
        }
        if self.kept.contains(&cgroup) {
            if self.kept_flows.len() >= MAX_REMEMBERED {
                self.kept_flows.clear();
            }
            self.kept_flows.insert(e.flow);
            return true;
        }
        if !self.left.contains(&cgroup) {
            self.unnamed += 1;
        }
        false
    }
}

impl Sink for Selected<'_> {
    fn started(&mut self, started: &Started) -> Result<()> {
        self.sink.started(started)
    }

    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()> {
        let mut handed = std::mem::take(&mut self.handed);
        handed.clear();
        handed.extend(events.iter().filter(|e| self.keeps(e)).cloned());
        let done = self.sink.events(&handed, progress);
        self.handed = handed;
        done
    }

    fn cgroups(&mut self, names: &CgroupNames) -> Result<()> {
        let mut kept = CgroupNames::default();
        for (&id, path) in &names.paths {
            let container = names.containers.get(&id);
            if ContainerSel::keep(self.sels, container) {
                self.kept.insert(id);
                kept.paths.insert(id, path.clone());
                kept.containers.extend(container.map(|c| (id, c.clone())));
            } else {
                if self.left.len() >= MAX_REMEMBERED {
                    self.left.clear();
                }
                self.left.insert(id);
            }
        }
        if kept.paths.is_empty() {
            return Ok(());
        }
        self.sink.cgroups(&kept)
    }

    fn done(&self) -> bool {
        self.sink.done()
    }

    fn snapshot_due(&self, next: u64) -> bool {
        self.sink.snapshot_due(next)
    }

    fn snapshot_taken(&mut self, done: u64) {
        self.sink.snapshot_taken(done);
    }

    fn unsnapped(&self) -> bool {
        self.sink.unsnapped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Container;

    /// What reached the sink behind the filter.
    #[derive(Default)]
    struct Got {
        flows: Vec<u64>,
        named: Vec<u64>,
    }

    impl Sink for Got {
        fn started(&mut self, _: &Started) -> Result<()> {
            Ok(())
        }
        fn events(&mut self, events: &[Event], _: Progress) -> Result<()> {
            self.flows.extend(events.iter().map(|e| e.flow));
            Ok(())
        }
        fn cgroups(&mut self, names: &CgroupNames) -> Result<()> {
            self.named.extend(names.paths.keys());
            Ok(())
        }
    }

    fn in_cgroup(flow: u64, cgroup: u64) -> Event {
        let mut e = Event::example(flow * 10, flow, 1);
        e.detail.cgroup = cgroup;
        e
    }

    fn progress() -> Progress {
        Progress {
            complete_until: 0,
            lost: 0,
            untraced_drops: Default::default(),
        }
    }

    #[test]
    fn only_the_selected_containers_events_and_names_go_on() {
        let web = Container {
            runtime: "podman".into(),
            id: "ab".repeat(32),
            name: "web".into(),
            pod: String::new(),
            namespace: String::new(),
        };
        let db = Container {
            name: "db".into(),
            id: "cd".repeat(32),
            ..web.clone()
        };
        let sels = [ContainerSel::Container("web".into())];
        let mut got = Got::default();
        let mut sink = Selected::new(&sels, &mut got);
        // Cgroup 7 is web's, 8 db's, 9 no container's; 10 is never named.
        let names = CgroupNames {
            paths: [(7, "/w"), (8, "/d"), (9, "/")]
                .map(|(id, p)| (id, p.to_string()))
                .into(),
            containers: [(7, web), (8, db)].into(),
        };
        sink.cgroups(&names).unwrap();
        // Flow 1's later row that names no cgroup (a drop found by its
        // addresses) is its; flow 6's is not.
        let events =
            [(1, 7), (2, 8), (3, 9), (4, 10), (5, 7), (1, 0), (6, 0)].map(|(f, c)| in_cgroup(f, c));
        sink.events(&events, progress()).unwrap();
        assert_eq!(sink.unnamed(), 1, "cgroup 10's row");
        assert_eq!(got.flows, [1, 5, 1]);
        assert_eq!(got.named, [7]);
    }
}
