//! The container filters, applied in user space: the kernel knows a
//! socket's cgroup id, not what the cgroup was made for. A cgroup's events
//! go on to the sink once the capture has named the cgroup for a container
//! the filters keep; those of any other cgroup, or of one it could not
//! name, do not, nor do the other cgroups' names.

use std::collections::HashMap;

use super::{Progress, Sink, Started};
use crate::error::Result;
use crate::event::{CgroupNames, ContainerSel, Event};

/// How many cgroups' answers are kept: past it the map starts afresh, and
/// a cgroup seen again is treated as unnamed (its events are not kept) —
/// a bound on memory against a storm of short-lived cgroups.
const MAX_CGROUPS: usize = 1 << 16;

/// A sink that hands on only the events of the containers `sels` keep.
pub struct Selected<'a> {
    sels: &'a [ContainerSel],
    sink: &'a mut dyn Sink,
    /// Per cgroup named so far, whether its flows are kept.
    keep: HashMap<u64, bool>,
    kept: Vec<Event>,
}

impl<'a> Selected<'a> {
    pub fn new(sels: &'a [ContainerSel], sink: &'a mut dyn Sink) -> Selected<'a> {
        Selected {
            sels,
            sink,
            keep: HashMap::new(),
            kept: Vec::new(),
        }
    }
}

impl Sink for Selected<'_> {
    fn started(&mut self, started: &Started) -> Result<()> {
        self.sink.started(started)
    }

    fn events(&mut self, events: &[Event], progress: Progress) -> Result<()> {
        self.kept.clear();
        self.kept.extend(
            events
                .iter()
                .filter(|e| self.keep.get(&e.detail.cgroup) == Some(&true))
                .cloned(),
        );
        self.sink.events(&self.kept, progress)
    }

    fn cgroups(&mut self, names: &CgroupNames) -> Result<()> {
        if self.keep.len() + names.paths.len() > MAX_CGROUPS {
            self.keep.clear();
        }
        let mut kept = CgroupNames::default();
        for (&id, path) in &names.paths {
            let container = names.containers.get(&id);
            let keep = ContainerSel::keep(self.sels, container);
            self.keep.insert(id, keep);
            if keep {
                kept.paths.insert(id, path.clone());
                kept.containers.extend(container.map(|c| (id, c.clone())));
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
        let events = [(1, 7), (2, 8), (3, 9), (4, 10), (5, 7)].map(|(f, c)| in_cgroup(f, c));
        sink.events(&events, progress()).unwrap();
        assert_eq!(got.flows, [1, 5]);
        assert_eq!(got.named, [7]);
    }
}
