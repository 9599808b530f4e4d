//! Files as a program running as root must treat them: the folders it
//! writes to and reads from may be writable by others (`/tmp`, a shared
//! data folder), and `fs.protected_symlinks`/`protected_fifos` may be off.
//! So every file tcpcong creates is new (`O_EXCL`, which never follows a
//! symbolic link), private (0600, whatever the umask) and, when temporary,
//! named unpredictably; every file it reads is opened without blocking and
//! refused unless it is a regular file (a FIFO would hang the read, a
//! device would feed it forever); every folder it creates is private
//! (0700), and a folder it is told to write into must not be a symbolic
//! link.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file tcpcong writes: they hold addresses and names.
const PRIVATE: u32 = 0o600;
/// How many unpredictable names are tried before giving up: a clash is
/// one in 2^64 unless someone plants names, and then trying forever would
/// let them hold the program in a loop.
const NAME_TRIES: usize = 16;

/// Creates `path`, which must not exist (not even as a dangling symbolic
/// link or a FIFO), mode 0600, for writing.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Raises this process's limit of open files to its hard limit: a dataset
/// keeps each of its files open, and the usual soft limit (1024) is a
/// default for programs that do not, not a policy. Where it cannot be
/// raised, a file past it says so when it is opened.
pub fn raise_open_files_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid rlimit for both calls to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Creates a file for `path`'s content beside it, under a hidden name no
/// one can guess (`.NAME.RANDOM.tmp`), for renaming into place once
/// complete.
pub fn create_temp_beside(path: &Path) -> io::Result<(PathBuf, File)> {
    fresh_name_beside(path, |tmp| create_new(tmp).map(|f| (tmp.to_path_buf(), f)))
}

/// Calls `make` with unpredictable hidden names beside `path`
/// (`.NAME.RANDOM.tmp`) until one is not taken.
fn fresh_name_beside<T>(
    path: &Path,
    mut make: impl FnMut(&Path) -> io::Result<T>,
) -> io::Result<T> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut last = None;
    for _ in 0..NAME_TRIES {
        let tmp = folder_of(path).join(format!(
            ".{}.{:016x}.tmp",
            name.to_string_lossy(),
            random_u64()?
        ));
        match make(&tmp) {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A file for `path`'s content in its folder, as yet without a name
/// (`O_TMPFILE`): if the process dies before [`name_beside`] the kernel
/// frees it, so a killed capture leaves no half-written file behind. A
/// file system without unnamed files gets a hidden unpredictable name
/// (see [`create_temp_beside`]), returned with the file.
pub fn create_unnamed_beside(path: &Path) -> io::Result<(File, Option<PathBuf>)> {
    let unnamed = OpenOptions::new()
        .write(true)
        .mode(PRIVATE)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(folder_of(path));
    match unnamed {
        Ok(f) => Ok((f, None)),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) =>
        {
            create_temp_beside(path).map(|(p, f)| (f, Some(p)))
        }
        Err(e) => Err(e),
    }
}

/// Gives a file [`create_unnamed_beside`] made without a name a hidden
/// unpredictable one beside `path`, for renaming into place.
pub fn name_beside(file: &File, path: &Path) -> io::Result<PathBuf> {
    fresh_name_beside(path, |tmp| {
        let to = c_path(tmp)?;
        let empty = c"";
        // SAFETY: the descriptor is open for the call; both paths are
        // NUL-terminated and live across it.
        let rc = unsafe {
            libc::linkat(
                file.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        };
        if rc == 0 {
            return Ok(tmp.to_path_buf());
        }
        let err = io::Error::last_os_error();
        // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; the descriptor's
        // /proc link does not.
        if !matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EPERM)) {
            return Err(err);
        }
        let proc = c_path(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))?;
        // SAFETY: as above.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if rc == 0 {
            Ok(tmp.to_path_buf())
        } else {
            Err(io::Error::last_os_error())
        }
    })
}

/// Opens `path` for reading if it is a regular file (following symbolic
/// links, as a user's `latest.parquet` may be one). The open itself does
/// not block on a FIFO, and anything but a regular file is refused.
pub fn open_regular(path: &Path) -> io::Result<File> {
    open_checked(path, 0)
}

/// As [`open_regular`], but a symbolic link is refused too: for the files
/// tcpcong itself names (in-progress files), which are never links.
pub fn open_regular_nofollow(path: &Path) -> io::Result<File> {
    open_checked(path, libc::O_NOFOLLOW)
}

fn open_checked(path: &Path, flags: i32) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | flags)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(not_regular());
    }
    // Reads of a regular file never block anyway; the flag goes so that
    // the descriptor behaves as any other.
    // SAFETY: fcntl on the descriptor `file` owns, with integer arguments.
    let rc = unsafe {
        let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file (a FIFO, device or socket), refused",
    )
}

/// Whether `path` is a regular file, without following a symbolic link
/// and without opening it.
pub fn is_regular(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// Renames `from` to `to`; unless `replace`, fails with `AlreadyExists`
/// if `to` exists, atomically (a file someone created there meanwhile is
/// kept). A file system without `RENAME_NOREPLACE` gets a hard link and
/// an unlink, which is as atomic for the target.
pub fn rename(from: &Path, to: &Path, replace: bool) -> io::Result<()> {
    if replace {
        return std::fs::rename(from, to);
    }
    let (f, t) = (c_path(from)?, c_path(to)?);
    // SAFETY: both are NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(err);
    }
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

fn c_path(p: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path"))
}

/// Creates `dir` and its missing parents, mode 0700 whatever the umask;
/// `dir` itself must not be a symbolic link (an existing folder is fine).
/// Folders tcpcong creates hold its recordings: others must not add or
/// remove files in them.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    // `DIR/` would make the checks below look through a link at DIR.
    let dir: &Path = &dir.components().collect::<PathBuf>();
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a symbolic link, not a folder: give the folder itself",
            ))
        }
        Ok(m) if !m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file, not a folder: name a folder to hold the series, or the file without its /",
            ))
        }
        _ => {}
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    // Whoever could swap the folder for a link between the check and the
    // creation could do so after as well: check what is there now.
    let m = std::fs::symlink_metadata(dir)?;
    if !m.file_type().is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a folder (a symbolic link or a file), refused",
        ));
    }
    Ok(())
}

/// As [`create_private_dir`], for the folder a user named to hold a series
/// of recordings: one that exists already may be anyone's, but not open
/// to everyone without the sticky bit (as `/tmp` has), where any user
/// could move or remove what tcpcong puts there.
pub fn create_root_dir(dir: &Path) -> io::Result<()> {
    create_private_dir(dir)?;
    let mode = std::fs::symlink_metadata(dir)?.mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "writable by every user and not sticky (mode {:o}): choose a folder others cannot change",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// As [`create_private_dir`], for a folder whose name tcpcong chose (a
/// series' `host=`/`date=` levels): one that exists already must be ours
/// and closed to others, or someone else could move and remove the files
/// inside it.
pub fn create_own_dir(dir: &Path) -> io::Result<()> {
    create_private_dir(dir)?;
    let m = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if m.uid() != me || m.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "made by someone else (owner uid {}, mode {:o}), not by tcpcong: refused",
                m.uid(),
                m.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// 64 bits from the kernel's random source.
fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from_ne_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tcpcong-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn mkfifo(p: &Path) {
        let c = c_path(p).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
    }

    #[test]
    fn new_files_are_private_and_never_through_a_link_or_fifo() {
        let d = scratch("new");
        let victim = d.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        symlink(&victim, d.join("link")).unwrap();
        assert_eq!(
            create_new(&d.join("link")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        symlink(d.join("nowhere"), d.join("dangling")).unwrap();
        assert!(create_new(&d.join("dangling")).is_err());
        assert!(!d.join("nowhere").exists());
        mkfifo(&d.join("fifo"));
        assert!(create_new(&d.join("fifo")).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        create_new(&d.join("fresh")).unwrap();
        let mode = std::fs::metadata(d.join("fresh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn temporary_names_differ_and_stay_in_the_folder() {
        let d = scratch("temp");
        let target = d.join("out.html");
        let (a, _) = create_temp_beside(&target).unwrap();
        let (b, _) = create_temp_beside(&target).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(d.as_path()));
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".out.html.") && name.ends_with(".tmp"),
            "{name}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn reads_refuse_fifos_without_blocking() {
        let d = scratch("read");
        mkfifo(&d.join("x.parquet"));
        let e = open_regular(&d.join("x.parquet")).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        std::fs::write(d.join("real"), "x").unwrap();
        symlink(d.join("real"), d.join("link")).unwrap();
        assert!(open_regular(&d.join("link")).is_ok());
        assert!(open_regular_nofollow(&d.join("link")).is_err());
        assert!(open_regular(Path::new("/dev/zero")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_rename_without_replace_keeps_what_is_there() {
        let d = scratch("rename");
        std::fs::write(d.join("a"), "new").unwrap();
        std::fs::write(d.join("b"), "theirs").unwrap();
        let e = rename(&d.join("a"), &d.join("b"), false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(d.join("b")).unwrap(), "theirs");
        rename(&d.join("a"), &d.join("c"), false).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("c")).unwrap(), "new");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn private_folders_refuse_a_link() {
        let d = scratch("dir");
        let real = d.join("real");
        std::fs::create_dir(&real).unwrap();
        symlink(&real, d.join("link")).unwrap();
        assert!(create_private_dir(&d.join("link")).is_err());
        assert!(create_private_dir(&d.join("link/")).is_err());
        create_private_dir(&d.join("new/deeper")).unwrap();
        create_own_dir(&d.join("new/deeper")).unwrap();
        std::fs::create_dir(d.join("open")).unwrap();
        std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(create_own_dir(&d.join("open")).is_err());
        assert!(create_root_dir(&d.join("open")).is_err());
        std::fs::set_permissions(d.join("open"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(create_root_dir(&d.join("open")).is_ok());
        for p in [d.join("new"), d.join("new/deeper")] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", p.display());
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
