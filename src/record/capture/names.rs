//! What the kernel side cannot name cheaply, named in user space once per
//! flow or per cgroup: the owner of a socket the programs did not see
//! being connected or accepted (one older than the capture, or accepted
//! by io_uring), found from its inode in `/proc/PID/fd` as `ss -p` does;
//! the path of a cgroup id under the cgroup v2 mount; and the kernel
//! function at an address (where a drop happened), from /proc/kallsyms,
//! once per address.
//!
//! Both are looked up again on a miss, at most once per [`RESCAN`]: a
//! burst of new flows (a capture starting on a busy server) costs one scan,
//! not one per flow. A new cgroup is first looked for where its socket's
//! owner runs (`/proc/PID/cgroup`, one read): a container that starts
//! right after another is named at its first event, not a scan later.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::event::{KernelName, SymbolName};

const RESCAN: Duration = Duration::from_secs(1);
/// Kernel addresses named: the places that drop packets are a few hundred
/// functions, so more is a bug, not a workload (the cache starts over).
const MAX_SYMBOLS: usize = 4096;
const MAX_SOCKETS: usize = 1 << 20;
/// Cgroups are few; more asked of is a storm of them (the set starts over).
const MAX_CGROUPS_ASKED: usize = 1 << 16;

/// A process, as a flow's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub comm: KernelName,
}

/// Socket inode -> owning process and cgroup id -> path, as far as found.
#[derive(Default)]
pub struct Names {
    sockets: FxHashMap<u64, Process>,
    sockets_scanned: Option<Instant>,
    /// Every cgroup of the last scan.
    cgroups: FxHashMap<u64, String>,
    cgroups_scanned: Option<Instant>,
    /// Cgroups whose path was handed out, or is about to be.
    named: FxHashSet<u64>,
    /// Cgroups looked for where a socket's owner runs.
    owners_asked: FxHashSet<u64>,
    /// Paths found since the last [`Names::take_new_cgroups`].
    new_cgroups: BTreeMap<u64, String>,
    /// Kernel functions by address.
    symbols: FxHashMap<u64, SymbolName>,
}

fn due(last: Option<Instant>) -> bool {
    last.is_none_or(|t| t.elapsed() >= RESCAN)
}

impl Names {
    /// The process holding the socket with inode `ino` open.
    pub fn owner(&mut self, ino: u64) -> Option<Process> {
        if let Some(p) = self.sockets.get(&ino) {
            return Some(*p);
        }
        if !due(self.sockets_scanned) {
            return None;
        }
        self.sockets_scanned = Some(Instant::now());
        // Kept across scans: a socket's last records can come after its
        // process closed it. Socket inode numbers only grow (until they
        // wrap at 2^32), so an old entry is not a new socket's; the bound
        // keeps a long capture's memory in check.
        if self.sockets.len() > MAX_SOCKETS {
            self.sockets.clear();
        }
        self.sockets.extend(scan_sockets(Path::new("/proc")));
        self.sockets.get(&ino).copied()
    }

    /// Notes that a socket of process `pid` (0: not known) is in cgroup
    /// `id`, and finds its path the first time (a cgroup that is gone by
    /// then stays unnamed).
    pub fn cgroup(&mut self, id: u64, pid: u32) {
        if id == 0 || self.named.contains(&id) {
            return;
        }
        // Once per cgroup: a socket whose process has moved on would
        // otherwise cost two reads on every one of its events.
        if !self.cgroups.contains_key(&id) && pid != 0 && self.owners_asked.insert(id) {
            if self.owners_asked.len() > MAX_CGROUPS_ASKED {
                self.owners_asked.clear();
            }
            if let Some(path) = cgroup_of(pid, id) {
                self.cgroups.insert(id, path);
            }
        }
        if !self.cgroups.contains_key(&id) && due(self.cgroups_scanned) {
            self.cgroups_scanned = Some(Instant::now());
            self.cgroups = crate::host::cgroup2_root()
                .map(|root| scan_cgroups(&root).into_iter().collect())
                .unwrap_or_default();
        }
        if let Some(path) = self.cgroups.get(&id) {
            self.named.insert(id);
            self.new_cgroups.insert(id, path.clone());
        }
    }

    /// Paths of the cgroups named since the last call.
    pub fn take_new_cgroups(&mut self) -> BTreeMap<u64, String> {
        std::mem::take(&mut self.new_cgroups)
    }
}

/// Every socket inode of every process under `proc`, with its process.
/// Processes that exit while scanned, or whose descriptors are not
/// readable, are skipped.
impl Names {
    /// The kernel function that holds `addr` (its text symbol at or below
    /// it), empty where /proc/kallsyms does not show addresses.
    pub fn kernel_symbol(&mut self, addr: u64) -> SymbolName {
        if let Some(name) = self.symbols.get(&addr) {
            return *name;
        }
        if self.symbols.len() >= MAX_SYMBOLS {
            self.symbols.clear();
        }
        let all = fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let name = symbol_at(&all, addr)
            .map(SymbolName::from_str_lossy)
            .unwrap_or_default();
        self.symbols.insert(addr, name);
        name
    }
}

/// In kallsyms' text (`ADDR TYPE NAME [MODULE]` lines), the name of the
/// function `addr` is in: the text symbol with the highest address not
/// above it.
fn symbol_at(kallsyms: &str, addr: u64) -> Option<&str> {
    kallsyms
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let at = u64::from_str_radix(f.next()?, 16).ok()?;
            let kind = f.next()?;
            let name = f.next()?;
            (matches!(kind, "t" | "T") && at != 0 && at <= addr).then_some((at, name))
        })
        .max_by_key(|&(at, _)| at)
        .map(|(_, name)| name)
}

fn scan_sockets(proc: &Path) -> FxHashMap<u64, Process> {
    let mut out = FxHashMap::default();
    let Ok(dir) = fs::read_dir(proc) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let mut comm = None;
        for fd in fds.flatten() {
            let Ok(link) = fs::read_link(fd.path()) else {
                continue;
            };
            let Some(ino) = socket_inode(&link) else {
                continue;
            };
            let comm = *comm.get_or_insert_with(|| {
                let name = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                KernelName::from_str_lossy(name.trim_end_matches('\n'))
            });
            // A socket shared by a parent and its children belongs to the
            // first found; /proc lists the parent (lower pid) first.
            out.entry(ino).or_insert(Process { pid, comm });
        }
    }
    out
}

/// `socket:[12345]` -> 12345.
fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every cgroup under `root` by id (its directory's inode), with its path
/// relative to the mount ("/" for the root, "/system.slice/x.service").
/// Process `pid`'s cgroup v2 path, if that is cgroup `id` (a socket's
/// cgroup is where its process was when it made it: it may have moved).
fn cgroup_of(pid: u32, id: u64) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let root = crate::host::cgroup2_root()?;
    let meta = fs::metadata(root.join(path.trim_start_matches('/'))).ok()?;
    (meta.ino() == id).then(|| path.to_string())
}

fn scan_cgroups(root: &Path) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(meta) = fs::metadata(&dir) else {
            continue;
        };
        let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
        out.push((meta.ino(), format!("/{}", rel.display())));
        if let Ok(entries) = fs::read_dir(&dir) {
            todo.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_named_by_the_function_below_it() {
        let all = "ffffffff81000000 T _stext\nffffffff81000100 t tcp_v4_rcv\nffffffff81000200 D some_data\nffffffff81000300 T nf_hook_slow\t[nf]\n0000000000000000 T hidden\n";
        assert_eq!(symbol_at(all, 0xffffffff81000150), Some("tcp_v4_rcv"));
        assert_eq!(symbol_at(all, 0xffffffff81000250), Some("tcp_v4_rcv"));
        assert_eq!(symbol_at(all, 0xffffffff81000300), Some("nf_hook_slow"));
        assert_eq!(symbol_at(all, 0xffffffff80000000), None);
        // Addresses hidden (kptr_restrict): nothing to name it by.
        assert_eq!(symbol_at("0000000000000000 T tcp_v4_rcv\n", 0x1234), None);
    }

    #[test]
    fn socket_links_name_their_inode() {
        assert_eq!(socket_inode(Path::new("socket:[4026]")), Some(4026));
        assert_eq!(socket_inode(Path::new("pipe:[4026]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn a_socket_of_this_process_is_found_with_its_command() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        use std::os::fd::AsRawFd;
        let link = fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap();
        let ino = socket_inode(&link).unwrap();
        let mut names = Names::default();
        let p = names.owner(ino).expect("this process's socket");
        assert_eq!(p.pid, std::process::id());
        let comm = fs::read_to_string("/proc/self/comm").unwrap();
        assert_eq!(p.comm.as_str(), comm.trim_end());
        // A miss right after a scan does not scan again.
        assert_eq!(names.owner(u64::MAX), None);
        assert!(names.sockets_scanned.is_some_and(|t| t.elapsed() < RESCAN));
    }

    #[test]
    fn the_cgroup_of_this_process_gets_its_path() {
        let Some(root) = crate::host::cgroup2_root() else {
            panic!("no cgroup2 mount: /proc/self/mounts has no cgroup2 line");
        };
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .expect("a cgroup v2 line in /proc/self/cgroup");
        let id = fs::metadata(root.join(rel.trim_start_matches('/')))
            .unwrap()
            .ino();
        let mut names = Names::default();
        names.cgroup(id, 0);
        names.cgroup(12345678901, 0);
        let new = names.take_new_cgroups();
        assert_eq!(new.get(&id).map(String::as_str), Some(rel));
        assert_eq!(new.len(), 1, "only cgroups events named: {new:?}");
        assert!(names.take_new_cgroups().is_empty(), "reported once");

        // Its owner's cgroup names it without a scan; another's does not.
        let mut names = Names {
            cgroups_scanned: Some(Instant::now()),
            ..Default::default()
        };
        names.cgroup(id + 1, std::process::id());
        assert!(names.take_new_cgroups().is_empty());
        assert!(
            names.owners_asked.contains(&(id + 1)),
            "asked once, not per event"
        );
        names.cgroup(id, std::process::id());
        assert_eq!(
            names.take_new_cgroups(),
            BTreeMap::from([(id, rel.to_string())]),
            "named between scans"
        );
    }
}
