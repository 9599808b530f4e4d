//! What a cgroup's path names: the container a runtime made the cgroup
//! for and, under Kubernetes, its pod, the pod's namespace and the
//! container's name in the pod. Found in what the host keeps, with no API
//! server and no network: the path itself (runtime, container id, pod
//! uid), Docker's `config.v2.json`, containers/storage's `containers.json`
//! (podman), and the kubelet's log folders (`/var/log/containers`, whose
//! links are named `POD_NAMESPACE_CONTAINER-ID.log`, and `/var/log/pods`,
//! `NAMESPACE_POD_UID`). Each step is a pure function over the path and a
//! [`View`] of the file system, so that the shapes each runtime writes are
//! tested as they are.
//!
//! Everything read is kept within [`NAME_MAX`] bytes a name and
//! [`FILE_MAX`] a file: a runtime's files are root's, but the names in
//! them are whatever a user called their container.

use std::path::{Path, PathBuf};

use crate::event::Container;

/// The longest name kept (a Kubernetes name is at most 253 bytes).
const NAME_MAX: usize = 253;
/// The largest runtime file read (podman's list of every container).
const FILE_MAX: u64 = 64 << 20;
/// Kubernetes pods' log folders listed, at most.
const LIST_MAX: usize = 100_000;

/// The files a resolution reads: the host's, or a test's.
pub trait View {
    /// The file's text, if it exists and is at most [`FILE_MAX`] bytes.
    fn read(&self, path: &Path) -> Option<String>;
    /// The names in a folder (none if it does not exist).
    fn list(&self, dir: &Path) -> Vec<String>;
}

/// The host's files.
pub struct Host;

impl View for Host {
    fn read(&self, path: &Path) -> Option<String> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        // Not blocking on open, and a regular file only: a FIFO where a
        // runtime's file should be would otherwise hold the capture.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .ok()?;
        if !file.metadata().ok()?.is_file() {
            return None;
        }
        let mut text = String::new();
        file.take(FILE_MAX + 1).read_to_string(&mut text).ok()?;
        (text.len() as u64 <= FILE_MAX).then_some(text)
    }

    fn list(&self, dir: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .take(LIST_MAX)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }
}

/// The container a cgroup path (relative to the cgroup v2 mount) was made
/// for, with every name the host's files give it; `None` for a cgroup of
/// no container (a service, a user's session, a runtime's monitor).
pub fn resolve(path: &str, view: &dyn View) -> Option<Container> {
    let (runtime, id) = container_of(path)?;
    let mut c = Container {
        runtime: runtime.into(),
        id: id.into(),
        ..Container::default()
    };
    if let Some(uid) = pod_uid_of(path) {
        if let Some((namespace, pod)) = pod_folder(&uid, view) {
            c.namespace = namespace;
            c.pod = pod;
        }
        if let Some((pod, namespace, name)) = kubelet_link(id, view) {
            // The link names the pod too: where the folder did not.
            if c.pod.is_empty() {
                (c.pod, c.namespace) = (pod, namespace);
            }
            c.name = name;
        }
    } else {
        c.name = match runtime {
            "docker" => docker_name(id, view),
            "podman" => podman_name(id, view),
            _ => None,
        }
        .unwrap_or_default();
    }
    Some(c)
}

/// A container id: 64 lower-case hex digits, as every runtime here makes.
fn is_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The runtime and container id a path names, from its deepest part that
/// names one: a systemd scope (`docker-ID.scope`, `libpod-ID.scope`,
/// `cri-containerd-ID.scope`, `crio-ID.scope`; podman's may hold the
/// processes in a `container` child), or, with the cgroupfs driver, a bare
/// id under `docker`, `libpod_parent` (as `libpod-ID`) or a pod.
fn container_of(path: &str) -> Option<(&'static str, &str)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate().rev() {
        let unit = part.strip_suffix(".scope").unwrap_or(part);
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("libpod-", "podman"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
        ] {
            if let Some(id) = unit.strip_prefix(prefix).filter(|id| is_id(id)) {
                return Some((runtime, id));
            }
        }
        if is_id(part) {
            let parent = if i > 0 { parts[i - 1] } else { "" };
            if parent == "docker" {
                return Some(("docker", part));
            }
            if pod_uid_of(parent).is_some() {
                // The kubelet's cgroupfs driver does not say which runtime.
                return Some(("cri", part));
            }
        }
    }
    None
}

/// The pod uid a path is under: `kubepods-QOS-podUID.slice` or
/// `kubepods-podUID.slice` (systemd driver, the uid's dashes written as
/// underscores), or `podUID` (cgroupfs driver).
fn pod_uid_of(path: &str) -> Option<String> {
    path.split('/').find_map(|part| {
        let uid = match part.strip_suffix(".slice") {
            Some(slice) if slice.starts_with("kubepods") => slice.rsplit_once("-pod")?.1,
            Some(_) => return None,
            None => part.strip_prefix("pod")?,
        };
        let uid = uid.replace('_', "-");
        is_uid(&uid).then_some(uid)
    })
}

/// A pod uid: a UUID in its 36-character text form.
fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// The namespace and name of the pod with uid `uid`, from the kubelet's
/// folder of its logs, `/var/log/pods/NAMESPACE_POD_UID`.
fn pod_folder(uid: &str, view: &dyn View) -> Option<(String, String)> {
    view.list(Path::new("/var/log/pods"))
        .into_iter()
        .find_map(|f| {
            let (rest, u) = f.rsplit_once('_')?;
            let (namespace, pod) = rest.split_once('_')?;
            (u == uid).then(|| (name(namespace), name(pod)))
        })
}

/// The pod, namespace and container name of container `id`, from the
/// kubelet's link to its log, `/var/log/containers/POD_NAMESPACE_NAME-ID.log`
/// (none of the three may hold an underscore).
fn kubelet_link(id: &str, view: &dyn View) -> Option<(String, String, String)> {
    let suffix = format!("-{id}.log");
    view.list(Path::new("/var/log/containers"))
        .into_iter()
        .find_map(|f| {
            let rest = f.strip_suffix(&suffix)?;
            let mut parts = rest.split('_');
            let (pod, namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
            parts
                .next()
                .is_none()
                .then(|| (name(pod), name(namespace), name(container)))
        })
}

/// Docker's name for a container, from its `config.v2.json` (`"Name":
/// "/web"`).
fn docker_name(id: &str, view: &dyn View) -> Option<String> {
    let file: PathBuf = ["/var/lib/docker/containers", id, "config.v2.json"]
        .iter()
        .collect();
    let config: serde_json::Value = serde_json::from_str(&view.read(&file)?).ok()?;
    Some(name(config["Name"].as_str()?.trim_start_matches('/')))
}

/// Podman's name for a container (root's containers), from
/// containers/storage's list of them, one per storage driver
/// (`overlay-containers/containers.json`, `vfs-containers/...`).
fn podman_name(id: &str, view: &dyn View) -> Option<String> {
    let storage = Path::new("/var/lib/containers/storage");
    view.list(storage)
        .into_iter()
        .filter(|d| d.ends_with("-containers"))
        .find_map(|d| {
            let list = view.read(&storage.join(d).join("containers.json"))?;
            let all: Vec<serde_json::Value> = serde_json::from_str(&list).ok()?;
            let c = all.iter().find(|c| c["id"].as_str() == Some(id))?;
            Some(name(c["names"].get(0)?.as_str()?))
        })
}

/// A name as kept: at most [`NAME_MAX`] bytes, cut at a character.
fn name(s: &str) -> String {
    let mut end = s.len().min(NAME_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A file system of a few files; a folder lists the names under it.
    #[derive(Default)]
    struct Files(BTreeMap<PathBuf, String>);

    impl Files {
        fn with(mut self, path: &str, text: &str) -> Files {
            self.0.insert(PathBuf::from(path), text.into());
            self
        }
    }

    impl View for Files {
        fn read(&self, path: &Path) -> Option<String> {
            self.0.get(path).cloned()
        }
        fn list(&self, dir: &Path) -> Vec<String> {
            let mut names: Vec<String> = self
                .0
                .keys()
                .filter_map(|p| p.strip_prefix(dir).ok())
                .filter_map(|rest| rest.iter().next())
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            names.dedup();
            names
        }
    }

    const ID: &str = "3f9a0c1e5b7d2a4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";
    const UID: &str = "0f2b4d6e-1a3c-4e5f-8a9b-0c1d2e3f4a5b";

    fn at(path: &str, files: &Files) -> Option<Container> {
        resolve(path, files)
    }

    #[test]
    fn docker_under_systemd_and_cgroupfs_is_named_from_its_config() {
        let files = Files::default().with(
            &format!("/var/lib/docker/containers/{ID}/config.v2.json"),
            r#"{"ID":"x","Name":"/web-1","State":{}}"#,
        );
        for path in [
            format!("/system.slice/docker-{ID}.scope"),
            format!("/docker/{ID}"),
        ] {
            let c = at(&path, &files).unwrap();
            assert_eq!(
                (c.runtime.as_str(), c.id.as_str(), c.name.as_str()),
                ("docker", ID, "web-1"),
                "{path}"
            );
            assert!(c.pod.is_empty() && c.namespace.is_empty());
        }
    }

    #[test]
    fn podman_is_named_from_its_storage_whatever_its_driver() {
        let list = format!(
            r#"[{{"id":"{}","names":["other"]}},{{"id":"{ID}","names":["db","x"]}}]"#,
            "a".repeat(64)
        );
        let files = Files::default().with(
            "/var/lib/containers/storage/vfs-containers/containers.json",
            &list,
        );
        for path in [
            format!("/machine.slice/libpod-{ID}.scope"),
            format!("/machine.slice/libpod-{ID}.scope/container"),
            format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
            format!("/libpod_parent/libpod-{ID}"),
        ] {
            let c = at(&path, &files).unwrap();
            assert_eq!(
                (c.runtime.as_str(), c.id.as_str(), c.name.as_str()),
                ("podman", ID, "db"),
                "{path}"
            );
        }
        // Its monitor is no container.
        assert_eq!(
            at(&format!("/machine.slice/libpod-conmon-{ID}.scope"), &files),
            None
        );
    }

    #[test]
    fn kubernetes_pods_are_named_from_the_kubelets_folders() {
        let underscored = UID.replace('-', "_");
        let files = Files::default()
            .with(&format!("/var/log/pods/shop_cart-7d9f_{UID}/api/0.log"), "")
            .with(
                &format!(
                    "/var/log/pods/shop_cart-7d9f_{}/api/0.log",
                    "1".repeat(8) + &UID[8..]
                ),
                "",
            )
            .with(
                &format!("/var/log/containers/cart-7d9f_shop_api-{ID}.log"),
                "",
            );
        for (path, runtime) in [
            (format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{underscored}.slice/cri-containerd-{ID}.scope"), "containerd"),
            (format!("/kubepods.slice/kubepods-pod{underscored}.slice/crio-{ID}.scope"), "cri-o"),
            (format!("/kubepods/besteffort/pod{UID}/{ID}"), "cri"),
        ] {
            let c = at(&path, &files).unwrap();
            assert_eq!(
                [c.runtime.as_str(), c.id.as_str(), c.pod.as_str(), c.namespace.as_str(), c.name.as_str()],
                [runtime, ID, "cart-7d9f", "shop", "api"],
                "{path}"
            );
        }
        // Without the kubelet's files: what the path says, nothing more.
        let c = at(
            &format!("/kubepods/burstable/pod{UID}/{ID}"),
            &Files::default(),
        )
        .unwrap();
        assert_eq!(
            (c.runtime.as_str(), c.pod.as_str(), c.name.as_str()),
            ("cri", "", "")
        );
    }

    #[test]
    fn cgroups_of_no_container_name_none() {
        let files = Files::default();
        let (short, upper) = (
            format!("/system.slice/docker-{}.scope", &ID[1..]),
            format!("/system.slice/docker-{}.scope", ID.to_uppercase()),
        );
        for path in [
            "/",
            "/system.slice/nginx.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/docker.service",
            &short,
            &upper,
            "/kubepods.slice/kubepods-burstable.slice",
        ] {
            assert_eq!(at(path, &files), None, "{path}");
        }
    }

    /// A FIFO or a folder where a runtime's file should be is no file:
    /// read at once as nothing, never waited on.
    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("tcpcong-containers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (fifo, file) = (dir.join("fifo"), dir.join("file"));
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        std::fs::write(&file, "{}").unwrap();
        let read = (Host.read(&fifo), Host.read(&dir), Host.read(&file));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(read, (None, None, Some("{}".to_string())));
    }

    #[test]
    fn names_are_kept_short_and_whole() {
        let long = "é".repeat(200);
        let files = Files::default().with(
            &format!("/var/lib/docker/containers/{ID}/config.v2.json"),
            &serde_json::json!({ "Name": format!("/{long}") }).to_string(),
        );
        let c = at(&format!("/docker/{ID}"), &files).unwrap();
        assert_eq!(c.name, "é".repeat(126));
    }
}
