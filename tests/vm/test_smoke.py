"""Smoke test of the VM harness: each Debian kernel boots, has what tcpcong
relies on, and the lab makes real congestion in a guest namespace.

It also records, per kernel, the facts the older-kernel fallback depends on
(which of BCC's five callers are real symbols and traceable, whether the
tcp_cong_state_set tracepoint exists); run with `-s` to see them.

Runs unless TCPCONG_VM=0. The first run downloads the kernels (see vm.py).
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import vm  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("TCPCONG_VM") == "0", reason="TCPCONG_VM=0")

# As src/record/capture/attach.rs hooks them, by exact name.
CALLERS = ("tcp_fastretrans_alert", "tcp_enter_cwr", "tcp_enter_loss", "tcp_enter_recovery", "tcp_process_tlp_ack", "tcp_simple_retransmit")
SYMBOLS = (*CALLERS, "tcp_set_ca_state", "bpf_get_socket_ptr_cookie")

# The guest writes one fact per file under /out.
SCRIPT = r"""#!/bin/bash
set -euo pipefail
uname -r > /out/release
test -e /sys/kernel/btf/vmlinux && echo yes > /out/btf || echo no > /out/btf
test -e /sys/kernel/tracing/events/tcp/tcp_cong_state_set && echo yes > /out/tracepoint || echo no > /out/tracepoint
# A symbol in kallsyms is a real (not inlined) function; in
# available_filter_functions it can also take fentry/kprobes. GCC may have
# renamed it (foo.isra.0, foo.constprop.0): match those too. One awk pass per
# file: both are long, and the guest is slow.
want='@SYMBOLS@'
awk -v want="$want" 'BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) s[w[i]] = 1 }
  { split($3, base, "."); if (base[1] in s) print base[1], $2, $3 }' /proc/kallsyms > /out/kallsyms
awk -v want="$want" 'BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) s[w[i]] = 1 }
  { split($1, base, "."); if (base[1] in s) print base[1], $1 }' /sys/kernel/tracing/available_filter_functions > /out/traceable
/lab/lab.sh up vmtest --loss 2
/lab/lab.sh nstat vmtest > /out/netstat.before
/lab/lab.sh traffic vmtest 3
/lab/lab.sh nstat vmtest > /out/netstat.after
ip netns exec vmtest nstat -az > /out/nstat
/lab/lab.sh down vmtest
"""


@pytest.mark.parametrize("suite, release_prefix, has_tracepoint", [("bookworm", "6.1.", True), ("bullseye", "5.10.", False)])
def test_smoke(tmp_path, suite, release_prefix, has_tracepoint):
    k = vm.kernel(suite)
    initramfs = vm.build_initramfs(
        k,
        tmp_path / "initramfs.cpio.gz",
        binaries=vm.guest_tools(),
        files={"/lab/lab.sh": vm.LAB_SH},
        modules=vm.LAB_MODULES,
        script=SCRIPT.replace("@SYMBOLS@", " ".join(SYMBOLS)),
    )
    r = vm.boot(k, initramfs, timeout_s=300, out_dir=tmp_path / "out")
    assert r.exit_code == 0, r.console[-3000:]
    out = r.out_dir

    release = (out / "release").read_text().strip()
    assert release == k.release and release.startswith(release_prefix)
    assert (out / "btf").read_text().strip() == "yes"
    assert ((out / "tracepoint").read_text().strip() == "yes") == has_tracepoint

    kallsyms = (out / "kallsyms").read_text()
    traceable = (out / "traceable").read_text()
    print(f"\n{k.package} {k.version} ({release}), booted and ran in {r.seconds:.1f} s")
    print(f"tcp_cong_state_set tracepoint: {(out / 'tracepoint').read_text().strip()}")
    print("kallsyms:\n" + kallsyms + "available_filter_functions:\n" + traceable)
    # The fallback hooks the callers by exact name: each must be a real,
    # traceable function under that name (a foo.isra.0 clone would not do).
    for caller in CALLERS:
        assert any(line.split()[::2] == [caller, caller] for line in kallsyms.splitlines()), caller
        assert any(line.split() == [caller, caller] for line in traceable.splitlines()), caller

    before, after = vm.counters(out / "netstat.before"), vm.counters(out / "netstat.after")
    assert after["TcpExtTCPSackRecovery"] > before["TcpExtTCPSackRecovery"]
    assert "TcpExtTCPSackRecovery" in (out / "nstat").read_text()
