"""Boot stock Debian kernels under QEMU to test tcpcong on kernels other than the host's.

Why: the host kernel is new (it has the `tcp_cong_state_set` tracepoint) and
closed (no fentry/kprobes), so the older-kernel fallback can never be loaded
on it. Debian's cloud kernels are small, have BTF, and cover both sides of
the 5.19 tracepoint boundary: bookworm ships 6.1, bullseye 5.10. A guest is a
throwaway initramfs (busybox + the host's own binaries and their libraries)
on one of those kernels, with no network device at all; it runs one shell
script and powers off.

There is no KVM here, so QEMU runs with TCG (software emulation): expect
seconds to boot and a slow guest. Nothing in this module needs the network
once a kernel is cached: kernels live in `$TCPCONG_VM_CACHE` (default
`/var/cache/tcpcong-vm`), one directory per suite, and are never refreshed
automatically (delete the suite's directory to fetch the newest again).

Files come back from the guest over a second serial port: the guest's /out is
tarred, base64-encoded between marker lines and checksummed. Serial ports are
built into every Debian kernel (no module needed, unlike virtio-9p), and the
encoding makes the channel binary-safe whatever the tty layer does.

    k = kernel("bullseye")
    build_initramfs(k, "/tmp/t.cpio.gz", binaries=guest_tools(), modules=LAB_MODULES,
                    script="#!/bin/bash\nuname -r > /out/release\n")
    r = boot(k, "/tmp/t.cpio.gz", timeout_s=300)
    r.exit_code, r.console, r.out_dir
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "bullseye")

# Host tools the lab script and the tests call in the guest (busybox covers
# the rest: awk, grep, sed, seq, sleep, mktemp, stat, sysctl, ...).
GUEST_TOOLS = ("bash", "ip", "ss", "nft", "iperf3", "tc", "nstat", "setpriv", "timeout", "env")

# Modules that lab/lab.sh needs (nftables drop and ECN-mark rules on a
# namespace's loopback, netem for reordering, veth for its far namespace). The names are what the cloud
# kernels build as modules; anything built in is skipped by build_initramfs,
# so the list is safe for both suites.
LAB_MODULES = ("nf_tables", "nft_numgen", "sch_netem", "veth")

EXIT_MARKER = "TCPCONG-VM-EXIT:"
OUT_BEGIN = "TCPCONG-VM-OUT-BEGIN"
OUT_END = "TCPCONG-VM-OUT-END"


class VMError(Exception):
    """Anything that keeps a guest from producing a result; the message is one line."""


class VMTimeout(VMError):
    """The guest ran longer than its timeout; the message ends with its last console lines."""


def cache_dir() -> Path:
    return Path(os.environ.get("TCPCONG_VM_CACHE", "/var/cache/tcpcong-vm"))


@dataclass(frozen=True)
class Kernel:
    suite: str
    package: str  # e.g. linux-image-6.1.0-50-cloud-amd64
    version: str  # Debian version, e.g. 6.1.176-1
    release: str  # uname -r, e.g. 6.1.0-50-cloud-amd64
    root: Path  # the extracted .deb

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release


# ---------------------------------------------------------------- kernels


def kernel(suite: str) -> Kernel:
    """The newest Debian cloud kernel of `suite`, downloaded once and then reused offline."""
    if suite not in SUITES:
        raise VMError(f"unknown suite {suite!r}: expected one of {', '.join(SUITES)}")
    suite_dir = cache_dir() / suite
    current = suite_dir / "current"
    if current.is_symlink() or current.exists():
        return _load_kernel(suite, current.resolve())

    package, version, filename, sha256 = _newest_cloud_image(suite)
    suite_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=suite_dir))
    try:
        deb = tmp / Path(filename).name
        _download(f"{MIRROR}/{filename}", deb, sha256)
        tree = tmp / "tree"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        (tree / "PACKAGE").write_text(f"{package}\n{version}\n")
        # Rename then symlink: a killed download never leaves a half kernel
        # that a later run would take for a cached one.
        final = suite_dir / f"{package}_{version}"
        if final.exists():
            shutil.rmtree(final)
        tree.rename(final)
        current.symlink_to(final.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _load_kernel(suite, current.resolve())


def _load_kernel(suite: str, root: Path) -> Kernel:
    package, version = (root / "PACKAGE").read_text().split()
    (release,) = [p.name for p in (root / "lib" / "modules").iterdir()]
    return Kernel(suite, package, version, release, root)


def _newest_cloud_image(suite: str) -> tuple[str, str, str, str]:
    """(package, version, filename, sha256) of the newest linux-image-<abi>-cloud-amd64."""
    url = f"{MIRROR}/dists/{suite}/main/binary-amd64/Packages.xz"
    index = lzma.decompress(_fetch(url)).decode()
    # The metapackage linux-image-cloud-amd64 only depends on the real one, and
    # the -unsigned/-dbg variants are not what Debian boots: match the ABI name.
    name = re.compile(r"linux-image-\d+\.\d+\.\d+-\d+-cloud-amd64")
    found = []
    for stanza in index.split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.M))
        if name.fullmatch(fields.get("Package", "")):
            found.append((fields["Package"], fields["Version"], fields["Filename"], fields["SHA256"]))
    if not found:
        raise VMError(f"no linux-image-*-cloud-amd64 package in {url}")
    return max(found, key=functools.cmp_to_key(lambda a, b: _dpkg_cmp(a[1], b[1])))


def _dpkg_cmp(a: str, b: str) -> int:
    """Debian version order, as dpkg itself defines it."""
    if a == b:
        return 0
    return -1 if subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0 else 1


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.read()
    except (urllib.error.URLError, OSError) as e:
        raise VMError(f"download failed: {url}: {e}") from None


def _download(url: str, dest: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
            while chunk := r.read(1 << 20):
                digest.update(chunk)
                f.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        raise VMError(f"download failed: {url}: {e}") from None
    if digest.hexdigest() != sha256:
        raise VMError(f"download failed: {url}: SHA256 {digest.hexdigest()} is not the index's {sha256}")


# ---------------------------------------------------------------- modules


def module_load_order(k: Kernel, names) -> list[Path]:
    """The .ko files to insmod, dependencies first; built-in modules are left out.

    The .deb ships no modules.dep (depmod runs at install time, and the host
    has no kmod), so dependencies come from each module's own `.modinfo`
    section, the same `depends=` field depmod reads.
    """
    index = {}
    for path in k.modules_dir.rglob("*.ko*"):
        index[_module_name(path)] = path
    builtin = {_module_name(Path(line)) for line in (k.modules_dir / "modules.builtin").read_text().split()}
    order: list[Path] = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in builtin or index.get(name) in order:
            return
        if name not in index:
            raise VMError(f"kernel {k.release} has no module {name} (neither loadable nor built in)")
        for dep in _modinfo(_module_bytes(index[name])).get("depends", "").split(","):
            if dep:
                visit(dep)
        order.append(index[name])

    for name in names:
        visit(name)
    return order


def _module_name(path: Path) -> str:
    return path.name.split(".ko")[0].replace("-", "_")


def _module_bytes(path: Path) -> bytes:
    # Debian compresses modules with xz from 6.x on (trixie); bookworm and
    # bullseye ship plain .ko. busybox insmod cannot be relied on to
    # decompress, so the host does it.
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".ko":
        return data
    raise VMError(f"unsupported module compression: {path}")


def _modinfo(elf: bytes) -> dict[str, str]:
    """The key=value strings of an x86-64 ELF module's .modinfo section."""
    shoff = int.from_bytes(elf[0x28:0x30], "little")
    shentsize, shnum, shstrndx = (int.from_bytes(elf[o : o + 2], "little") for o in (0x3A, 0x3C, 0x3E))
    sections = []
    for i in range(shnum):
        h = elf[shoff + i * shentsize : shoff + (i + 1) * shentsize]
        sections.append(tuple(int.from_bytes(h[a:b], "little") for a, b in ((0, 4), (0x18, 0x20), (0x20, 0x28))))
    _, strtab_off, _ = sections[shstrndx]
    for name_off, off, size in sections:
        name = elf[strtab_off + name_off : elf.index(b"\0", strtab_off + name_off)]
        if name == b".modinfo":
            pairs = (s.split(b"=", 1) for s in elf[off : off + size].split(b"\0") if b"=" in s)
            return {k.decode(): v.decode() for k, v in pairs}
    return {}


# ---------------------------------------------------------------- initramfs


def guest_tools() -> list[str]:
    """Host paths of GUEST_TOOLS, for build_initramfs(binaries=...)."""
    paths = []
    for tool in GUEST_TOOLS:
        path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path is None:
            raise VMError(f"host tool {tool} not found (apt-get install it)")
        paths.append(path)
    return paths


INIT = r"""#!/bin/sh
# Generated by tests/vm/vm.py: set up the kernel's file systems like a real
# host, run /test, send /out to the host over ttyS1, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /tmp
# /var/run is a symlink to /run, as on Debian: `ip netns` keeps its mounts there.
mount -t tmpfs tmpfs /run
mkdir -p /out /dev/shm /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t devpts devpts /dev/pts
# Shared, so that the bind mounts `ip netns add` makes show up in every mount namespace.
mount --make-rshared /
for m in $(cat /modules/order); do
  insmod "$m" || echo "init: insmod $m failed"
done
ip link set lo up
cd /tmp
/test
rc=$?
cd /
# stty raw: no newline translation on the way out; base64 makes it
# binary-safe anyway, the checksum proves it.
stty -F /dev/ttyS1 raw -echo 115200
tar -C /out -cf /tmp/.out.tar .
{
  echo "@@OUT_BEGIN@@"
  base64 /tmp/.out.tar
  echo "@@OUT_END@@ $(sha256sum < /tmp/.out.tar | cut -d' ' -f1)"
} > /dev/ttyS1
sync
# On a line of its own, whatever the script's output ended with.
printf '\n%s %d\n' "@@EXIT_MARKER@@" "$rc"
poweroff -f
"""


def build_initramfs(k: Kernel, out_path, binaries=(), files=None, modules=(), script="#!/bin/sh\ntrue\n") -> Path:
    """Write a gzipped newc cpio for `k` to out_path: busybox, `binaries` (host paths,
    or (guest path, host path) pairs, with their shared libraries) at the same paths, `files` {guest path: host path},
    `modules` (names, with dependencies, loaded at boot) and `script` as /test."""
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="tcpcong-initramfs-") as tmp:
        root = Path(tmp)
        # Debian's merged /usr, so that ldd's paths (/lib64/ld-linux..., /lib/x86_64-...)
        # and host binaries land where the host has them.
        for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "proc", "sys", "dev", "tmp", "run", "var", "etc", "root", "modules"):
            (root / d).mkdir(parents=True, exist_ok=True)
        for link in ("bin", "sbin", "lib", "lib64"):
            (root / link).symlink_to(f"usr/{link}")
        (root / "var/run").symlink_to("../run")
        (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        (root / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
        # libbpf resolves __kconfig externs from /boot/config-$(uname -r).
        _copy(k.root / "boot" / f"config-{k.release}", root / "boot" / f"config-{k.release}")

        for binary in binaries:
            guest, host = binary if isinstance(binary, tuple) else (binary, binary)
            _copy(host, root / str(guest).lstrip("/"))
            for path in _shared_libraries(str(host)):
                _copy(path, root / path.lstrip("/"))
        for guest, host in (files or {}).items():
            _copy(host, root / guest.lstrip("/"))

        # busybox fills in what the host binaries do not provide (a host binary
        # always wins: busybox's ip, for one, knows no `netns`).
        _copy("/bin/busybox", root / "usr/bin/busybox")
        applets = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, text=True, check=True)
        for applet in applets.stdout.split():
            dest = root / applet
            if not dest.exists() and not dest.is_symlink():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to("/usr/bin/busybox")

        order = []
        for ko in module_load_order(k, modules):
            dest = root / "modules" / f"{_module_name(ko)}.ko"
            dest.write_bytes(_module_bytes(ko))
            order.append(f"/modules/{dest.name}")
        (root / "modules" / "order").write_text("".join(f"{m}\n" for m in order))

        if not script.startswith("#!"):
            script = "#!/bin/sh\n" + script
        (root / "test").write_text(script)
        init = INIT.replace("@@OUT_BEGIN@@", OUT_BEGIN).replace("@@OUT_END@@", OUT_END).replace("@@EXIT_MARKER@@", EXIT_MARKER)
        (root / "init").write_text(init)
        for exe in ("test", "init"):
            (root / exe).chmod(0o755)

        names = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root, capture_output=True, check=True).stdout
        archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=names, capture_output=True, check=True).stdout
    out_path.write_bytes(gzip.compress(archive, compresslevel=1))
    return out_path


def _shared_libraries(binary: str) -> list[str]:
    """Absolute paths of the libraries (and the dynamic loader) that `binary` loads."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if r.returncode != 0:
        if "not a dynamic executable" in r.stdout + r.stderr:
            return []
        raise VMError(f"ldd {binary} failed: {r.stderr.strip()}")
    libs = []
    for line in r.stdout.splitlines():
        if "not found" in line:
            raise VMError(f"ldd {binary}: {line.strip()}")
        m = re.search(r"(/\S+) \(0x", line)  # "libc.so.6 => /lib/... (0x...)" or "/lib64/ld-linux... (0x...)"
        if m:
            libs.append(m.group(1))
    return libs


def _copy(src, dest: Path) -> None:
    # Follow symlinks: the guest needs the content under the path the loader asks for.
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest, follow_symlinks=True)


# ---------------------------------------------------------------- boot


@dataclass(frozen=True)
class Result:
    console: str  # everything the guest printed on ttyS0 (kernel log and the script's output)
    exit_code: int  # the script's exit status
    out_dir: Path  # the guest's /out, extracted on the host
    seconds: float  # wall time from starting QEMU to its exit


def boot(k: Kernel, initramfs, timeout_s: float, memory: str = "1G", smp: int = 2, out_dir=None, append: str = "") -> Result:
    """Run the initramfs on `k` under QEMU until the guest powers off.

    The guest has no network device. Raises VMTimeout after `timeout_s`
    (QEMU killed) and VMError when the guest ends without reporting its
    script's exit code (a panic, a crashed init) or its /out is damaged.
    `out_dir` defaults to a new temporary directory; `append` adds kernel
    command-line arguments.
    """
    with tempfile.TemporaryDirectory(prefix="tcpcong-vm-") as tmp:
        console_log, channel = Path(tmp) / "console", Path(tmp) / "out"
        cmd = [
            "qemu-system-x86_64", "-accel", "tcg",
            # -cpu max: every feature TCG emulates; the kernel's BPF JIT runs fine on it.
            "-cpu", "max", "-smp", str(smp), "-m", memory,
            "-nographic", "-monitor", "none", "-no-reboot", "-nic", "none",
            "-serial", f"file:{console_log}",  # ttyS0: console
            "-serial", f"file:{channel}",  # ttyS1: /out
            "-kernel", str(k.vmlinuz), "-initrd", str(initramfs),
            # panic=-1 reboots at once on a panic, and -no-reboot turns that into QEMU's exit.
            "-append", f"console=ttyS0 panic=-1 oops=panic loglevel=4 {append}".strip(),
        ]  # fmt: skip
        start = time.monotonic()
        qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            qemu_output = qemu.communicate(timeout=timeout_s)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
            raise VMTimeout(f"{k.release}: guest still running after {timeout_s:.0f} s; last console lines: " + _tail(console_log)) from None
        seconds = time.monotonic() - start
        console = console_log.read_text(errors="replace") if console_log.exists() else ""
        codes = re.findall(rf"^{EXIT_MARKER} (\d+)\r?$", console, re.M)
        if not codes:
            raise VMError(f"{k.release}: guest ended without an exit code (QEMU: {qemu_output.strip() or 'no output'}); last console lines: " + _tail(console_log))
        # Only now a default out_dir: a failed boot leaves nothing behind.
        out_dir = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="tcpcong-vm-out-"))
        _extract_out(channel.read_bytes() if channel.exists() else b"", out_dir, k.release)
    return Result(console, int(codes[-1]), out_dir, seconds)


def _tail(console_log: Path, lines: int = 20) -> str:
    text = console_log.read_text(errors="replace") if console_log.exists() else ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:]) or "(none)"


def _extract_out(channel: bytes, out_dir: Path, release: str) -> None:
    m = re.search(rb"%s\r?\n(.*?)%s ([0-9a-f]{64})" % (OUT_BEGIN.encode(), OUT_END.encode()), channel, re.S)
    if m is None:
        raise VMError(f"{release}: the guest's /out did not arrive (second serial port: {len(channel)} bytes)")
    tar = base64.b64decode(re.sub(rb"\s", b"", m.group(1)))
    if hashlib.sha256(tar).hexdigest() != m.group(2).decode():
        raise VMError(f"{release}: the guest's /out arrived damaged (checksum mismatch)")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(out_dir, filter="data")


REPO = Path(__file__).resolve().parents[2]
LAB_SH = REPO / "lab" / "lab.sh"
# The binary under test: $TCPCONG, or the debug build.
TCPCONG = Path(os.environ.get("TCPCONG", REPO / "target" / "debug" / "tcpcong")).resolve()


def run_tcpcong(tmp_path, suite: str, script: str, tcpcong) -> tuple[Kernel, Path]:
    """Boots `suite`'s kernel on `script`, with the guest tools, the lab
    script at /lab/lab.sh and the tcpcong binary `tcpcong` (stripped) at
    /usr/local/bin/tcpcong; the kernel and the guest's /out, once the
    script exited 0."""
    binary = Path(tmp_path) / "tcpcong"
    # Debug info is most of the binary; the guest does not need it.
    subprocess.run(["strip", "-o", str(binary), str(tcpcong)], check=True)
    k = kernel(suite)
    initramfs = build_initramfs(
        k,
        Path(tmp_path) / "initramfs.cpio.gz",
        binaries=[*guest_tools(), ("/usr/local/bin/tcpcong", binary)],
        files={"/lab/lab.sh": LAB_SH},
        modules=LAB_MODULES,
        script=script,
    )
    r = boot(k, initramfs, timeout_s=600, out_dir=Path(tmp_path) / "out")
    assert r.exit_code == 0, r.console[-4000:]
    print(f"\n{k.package} ({k.release}): guest ran in {r.seconds:.0f} s")
    return k, r.out_dir


def counters(path) -> dict:
    """`lab.sh nstat`'s "name value" lines, as a dict."""
    return {name: int(value) for name, value in (line.split() for line in Path(path).read_text().splitlines())}
