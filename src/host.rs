//! Facts about this host: those that go into every recording's metadata,
//! so that a file explains itself long after the capture, and what the
//! command line resolves its namespace and cgroup arguments against. No
//! BPF here: the command line and the capture both ask.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// This thread's network namespace.
pub const OWN_NETNS: &str = "/proc/thread-self/ns/net";

fn proc_line(path: &str) -> String {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn hostname() -> String {
    proc_line("/proc/sys/kernel/hostname")
}

pub fn kernel_release() -> String {
    proc_line("/proc/sys/kernel/osrelease")
}

pub fn boot_id() -> String {
    proc_line("/proc/sys/kernel/random/boot_id")
}

/// A netns inode, given as a number, a path to a namespace file, or the
/// name `ip netns` gave it; the error says why the path is none.
pub fn netns_inode(s: &str) -> Result<u32, String> {
    const HOW: &str =
        "give a network namespace's name (as ip netns lists it), its file (e.g. /proc/PID/ns/net) or its inode number";
    if let Ok(ino) = s.parse::<u32>() {
        // No inode is 0: it would match no socket, and record nothing.
        return match ino {
            0 => Err(format!("0 is no namespace's inode; {HOW}")),
            _ => Ok(ino),
        };
    }
    // A bare name is what `ip netns` calls the namespace.
    let named = (!s.contains('/'))
        .then(|| ["/run/netns", "/var/run/netns"].map(|d| Path::new(d).join(s)))
        .and_then(|paths| paths.into_iter().find(|p| p.exists()));
    let path = named.as_deref().unwrap_or(Path::new(s));
    let meta = fs::metadata(path).map_err(|e| format!("{e}; {HOW}"))?;
    if !is_netns_file(path) {
        return Err(format!("not a network namespace; {HOW}"));
    }
    u32::try_from(meta.ino()).map_err(|_| format!("inode {} is out of range", meta.ino()))
}

/// Whether `path` is a network namespace (a file of the kernel's nsfs
/// whose type is `CLONE_NEWNET`), told without blocking on whatever else
/// it may be: the file system is asked first, and only an nsfs file is
/// opened.
fn is_netns_file(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // _IO(0xb7, 0x3): the namespace type of an nsfs file descriptor.
    const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
    if fs_type(path).ok() != Some(NSFS_MAGIC) {
        return false;
    }
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    // SAFETY: an ioctl without arguments on the descriptor `file` owns.
    let kind = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), NS_GET_NSTYPE as _) };
    kind == libc::CLONE_NEWNET
}

/// Whether a network namespace with this inode is in use: some process is
/// in it, or it is bound under /run/netns (as `ip netns` does). One that is
/// neither may still exist (held by a file descriptor), so this is for a
/// warning, not a refusal.
pub fn netns_in_use(ino: u32) -> bool {
    network_namespaces().contains_key(&u64::from(ino))
}

/// The network namespaces in use (this thread's, those bound under
/// /run/netns as `ip netns` does, and every process's), by inode, each
/// with a path that names it.
pub fn network_namespaces() -> BTreeMap<u64, PathBuf> {
    let mut found = BTreeMap::new();
    let mut add = |p: PathBuf| {
        if let Ok(m) = fs::metadata(&p) {
            found.entry(m.ino()).or_insert(p);
        }
    };
    add(PathBuf::from(OWN_NETNS));
    for dir in ["/run/netns", "/var/run/netns"] {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            add(e.path());
        }
    }
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if e.file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            add(e.path().join("ns/net"));
        }
    }
    found
}

/// A cgroup v2 directory's id, which is its inode number on cgroup2fs; the
/// error says why the path is none.
pub fn cgroup_id(p: &Path) -> Result<u64, String> {
    let meta = fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            "no such cgroup: give its folder under the cgroup2 mount (e.g. /sys/fs/cgroup/system.slice/nginx.service)".to_string()
        }
        _ => e.to_string(),
    })?;
    if !meta.is_dir() {
        return Err("not a directory".into());
    }
    if fs_type(p).map_err(|e| e.to_string())? != CGROUP2_SUPER_MAGIC {
        return Err(
            "not on a cgroup v2 file system (see the cgroup2 line of /proc/self/mountinfo)".into(),
        );
    }
    Ok(meta.ino())
}

/// The magic number of the file system `p` is on.
pub fn fs_type(p: &Path) -> std::io::Result<i64> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statfs is plain old data, for which all zeroes is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path, st a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on hybrid systems).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(at))
    })
}
