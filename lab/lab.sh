#!/usr/bin/env bash
# The lab as one script: a private network
# namespace whose loopback drops or ECN-marks packets, and bounded bulk
# traffic inside it. Tests, the demo, fixtures and benchmarks all use it, so
# there is one recipe. Traffic never leaves the namespace: the only
# addresses used are 127.0.0.1 and ::1 inside it.
#
#   lab.sh up NS [--loss PCT] [--ecn PCT] [--port PORT]   create (idempotent: recreated)
#   lab.sh traffic NS SECONDS [--ipv6] [--parallel N] [--port PORT] [--cc ALGO] [--bps]
#                                         (--bps: print the received bits/s)
#   lab.sh requests NS SECONDS [--port PORT]  one connection, small requests each answered
#                                         before the next (lost ones: tail loss probes);
#                                         prints how many
#   lab.sh shape NS                       a slow, short queue (tbf) on the loopback: senders
#                                         overflow it
#   lab.sh reorder NS PCT                 PCT % of the loopback's packets overtake the others,
#                                         which wait 2 ms (netem: the VM guests' kernels have it,
#                                         this host's does not): reorderings, spurious
#                                         retransmissions and their undos, without a drop
#   lab.sh drops NS                       "netfilter N" (the --loss rule's drops) and
#                                         "qdisc N" (the queue's, with shape)
#   lab.sh udp NS COUNT                   COUNT datagrams to a closed UDP port
#   lab.sh blackout NS MS [--port PORT]   drop everything to PORT for MS ms (RTOs: loss state);
#                                         prints "blackout N", the packets it dropped (where
#                                         nft counts)
#   lab.sh synblock NS MS [--port PORT]   drop SYNs and SYN-ACKs of PORT for MS ms (handshake
#                                         retransmits: open -> loss while in syn_sent); prints
#                                         "blocked" once the rules are in
#   lab.sh reset NS MS [--port PORT]      answer packets to PORT with a TCP reset for MS ms
#   lab.sh aborts NS COUNT [--port PORT]  COUNT connections reset by their client: one in two
#                                         closed with data unread, the others with a zero
#                                         linger; each reset seen by the server before the next
#   lab.sh reuse NS [--port PORT]         two short connections from the same local port
#                                         (one 4-tuple, two sockets)
#   lab.sh far NS [--loss PCT] [--port PORT]  a second namespace, NS-far, joined to NS by a veth
#                                         pair (10.99.0.1 in NS, 10.99.0.2 in NS-far), whose way in
#                                         drops PCT % of PORT's packets: loss "in the network", out of
#                                         sight of a recorder of NS. Only on a machine with no network
#                                         device but its loopback (the VM guests), so that nothing can
#                                         ever leave; refused anywhere else
#     --far (traffic, blackout, drops)    the server in NS-far, the rules NS-far's
#   lab.sh settle NS [--port PORT] [--clients]  wait (30 s at most, else fail, naming them) until
#                                         no socket of PORT in NS can still send (all closed or
#                                         in time-wait; --clients: those connected to PORT): the
#                                         namespace's counters are final. A transfer's end is not
#                                         enough: a FIN lost to the loss rule is resent after it
#   lab.sh inode NS                       the namespace's inode (for --netns)
#   lab.sh nstat NS                       Tcp and TcpExt counters, "name value" lines
#   lab.sh down NS                        delete (never fails)
set -euo pipefail

die() { echo "lab.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: lab.sh up|traffic|blackout|synblock|settle|inode|nstat|down NS ..."
cmd=$1 ns=$2
shift 2
port=5201 loss=0 ecn=0 ipv6=0 parallel=1 cc=cubic bps=0 far=0 clients=0
parse() {
  while [ $# -gt 0 ]; do
    case $1 in
      --loss) loss=$2; shift 2 ;;
      --ecn) ecn=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --ipv6) ipv6=1; shift ;;
      --parallel) parallel=$2; shift 2 ;;
      --cc) cc=$2; shift 2 ;;
      --bps) bps=1; shift ;;
      --far) far=1; shift ;;
      --clients) clients=1; shift ;;
      *) die "unknown option $1" ;;
    esac
  done
}
inns() { ip netns exec "$ns" "$@"; }
farns=$ns-far
# Where the server and the rules are: NS-far with --far, else NS.
inrules() { if [ "$far" = 1 ]; then ip netns exec "$farns" "$@"; else inns "$@"; fi; }

case $cmd in
  up)
    parse "$@"
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    inns ip link set lo up
    inns nft add table inet lab
    inns nft add chain inet lab in '{ type filter hook input priority 0; }'
    inns nft add chain inet lab out '{ type filter hook output priority 0; }'
    if [ "$loss" != 0 ]; then
      # Counted where the kernel has nft's counters (a guest's may not).
      inns nft add rule inet lab in tcp dport "$port" numgen random mod 100 '<' "$loss" counter drop 2>/dev/null ||
        inns nft add rule inet lab in tcp dport "$port" numgen random mod 100 '<' "$loss" drop
    fi
    if [ "$ecn" != 0 ]; then
      # Never mark a SYN: a SYN arriving ECT/CE makes Linux refuse ECN for
      # the connection, which would then see no CWR at all.
      inns sysctl -qw net.ipv4.tcp_ecn=1
      inns nft add rule inet lab out meta nfproto ipv4 tcp dport "$port" tcp flags '&' syn == 0 numgen random mod 100 '<' "$ecn" ip ecn set ce
      inns nft add rule inet lab out meta nfproto ipv6 tcp dport "$port" tcp flags '&' syn == 0 numgen random mod 100 '<' "$ecn" ip6 ecn set ce
    fi
    ;;
  traffic)
    [ $# -ge 1 ] || die "traffic needs SECONDS"
    secs=$1; shift
    parse "$@"
    addr=127.0.0.1; fam=-4
    if [ "$ipv6" = 1 ]; then addr=::1; fam=-6; fi
    if [ "$far" = 1 ]; then addr=10.99.0.2; fam=-4; fi
    # One-off server per attempt, bounded: it exits after one test or when
    # killed below. Under a loaded machine a first attempt can fail to
    # connect; a failed transfer is retried, then reported, never ignored
    # (a test that silently got no traffic would fail for the wrong reason).
    err=$(mktemp)
    for attempt in 1 2 3; do
      inrules timeout $((secs + 15)) iperf3 -s "$fam" -B "$addr" -p "$port" -1 >/dev/null 2>&1 &
      server=$!
      for _ in $(seq 100); do
        # grep reads to the end: with pipefail, `grep -q` quitting early
        # would fail the pipeline on ss's SIGPIPE.
        inrules ss -ltn "sport = :$port" | grep LISTEN >/dev/null && break
        sleep 0.1
      done
      ok=0
      if [ "$bps" = 1 ]; then
        out=$(inns timeout $((secs + 10)) iperf3 -c "$addr" "$fam" -p "$port" -t "$secs" -P "$parallel" -C "$cc" -J 2>"$err") &&
          python3 -c 'import json, sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))' <<<"$out" && ok=1
      else
        inns timeout $((secs + 10)) iperf3 -c "$addr" "$fam" -p "$port" -t "$secs" -P "$parallel" -C "$cc" >/dev/null 2>"$err" && ok=1
      fi
      kill "$server" 2>/dev/null || true
      wait "$server" 2>/dev/null || true
      [ "$ok" = 1 ] && break
      sleep 0.5
    done
    if [ "$ok" != 1 ]; then
      echo "lab.sh: iperf3 failed 3 times in $ns: $(tail -1 "$err")" >&2
      rm -f "$err"
      exit 1
    fi
    rm -f "$err"
    ;;
  shape)
    # A slow, short queue on the namespace's loopback: senders overflow it
    # (drops of their own segments, by the queue).
    inns tc qdisc replace dev lo root tbf rate 200mbit burst 128kb limit 160kb
    ;;
  reorder)
    [ $# -ge 1 ] || die "reorder needs PCT"
    # netem holds every packet but the PCT % it lets jump the queue (no
    # loss: netem drops nothing without a loss option).
    inns tc qdisc replace dev lo root netem delay 2ms reorder "$1%" limit 100000 ||
      die "reorder needs the kernel's sch_netem (not built on every kernel)"
    ;;
  drops)
    # What the lab dropped: its loss rule's packets and the queue's.
    parse "$@"
    inrules nft list chain inet lab in | awk '/numgen random/ { for (i = 1; i < NF; i++) if ($i == "packets") print "netfilter", $(i + 1) }'
    inns tc -s qdisc show dev lo | awk '/dropped/ { gsub(/[(),]/, " "); for (i = 1; i < NF; i++) if ($i == "dropped") print "qdisc", $(i + 1) }'
    ;;
  udp)
    # Datagrams to a closed port: drops of another protocol than TCP.
    [ $# -ge 1 ] || die "udp needs COUNT"
    inns python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])):
    s.sendto(b"x", ("127.0.0.1", 9))' "$1"
    ;;
  requests)
    [ $# -ge 1 ] || die "requests needs SECONDS"
    secs=$1; shift
    parse "$@"
    # One connection, one small request (a segment) at a time, each
    # answered before the next: a lost request is the flow's last segment
    # with nothing after it, which a tail loss probe resends.
    inns timeout $((secs + 15)) python3 -c '
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
cli = socket.create_connection(("127.0.0.1", port))
conn, _ = srv.accept()
end, n = time.monotonic() + secs, 0
while time.monotonic() < end:
    cli.sendall(b"q" * 2000)
    got = 0
    while got < 2000:
        got += len(conn.recv(2000 - got))
    conn.sendall(b"a")
    cli.recv(1)
    n += 1
cli.close(); conn.close(); srv.close()
print(n)' "$port" "$secs"
    ;;
  blackout)
    [ $# -ge 1 ] || die "blackout needs MS"
    ms=$1; shift
    parse "$@"
    # A kernel without nft's counter (5.10's is a module) drops uncounted.
    inrules nft insert rule inet lab in tcp dport "$port" counter drop 2>/dev/null ||
      inrules nft insert rule inet lab in tcp dport "$port" drop
    sleep "$(awk "BEGIN { print $ms / 1000 }")"
    # awk reads to the end (no early exit): nft must not die of SIGPIPE,
    # which pipefail and set -e would turn into this script's exit 141.
    rule=$(inrules nft -a list chain inet lab in | awk '/tcp dport '"$port"' (counter packets [0-9]+ bytes [0-9]+ )?drop # handle/ && !/numgen/ && !r { r = $0 } END { print r }')
    inrules nft delete rule inet lab in handle "${rule##* }"
    # What it dropped, for a test to hold drop rows against.
    echo "$rule" | awk '{ for (i = 1; i < NF; i++) if ($i == "packets") print "blackout", $(i + 1) }'
    ;;
  synblock)
    [ $# -ge 1 ] || die "synblock needs MS"
    ms=$1; shift
    parse "$@"
    inns nft add chain inet lab synblock
    inns nft add rule inet lab synblock tcp dport "$port" tcp flags '&' syn == syn drop
    inns nft add rule inet lab synblock tcp sport "$port" tcp flags '&' syn == syn drop
    inns nft insert rule inet lab in jump synblock
    echo blocked
    sleep "$(awk "BEGIN { print $ms / 1000 }")"
    handle=$(inns nft -a list chain inet lab in | awk '/jump synblock # handle/ && !h { h = $NF } END { print h }')
    inns nft delete rule inet lab in handle "$handle"
    inns nft delete chain inet lab synblock
    ;;
  reset)
    [ $# -ge 1 ] || die "reset needs MS"
    ms=$1; shift
    parse "$@"
    inns nft insert rule inet lab in tcp dport "$port" reject with tcp reset
    sleep "$(awk "BEGIN { print $ms / 1000 }")"
    handle=$(inns nft -a list chain inet lab in | awk '/reject with tcp reset # handle/ && !h { h = $NF } END { print h }')
    inns nft delete rule inet lab in handle "$handle"
    ;;
  aborts)
    [ $# -ge 1 ] || die "aborts needs COUNT"
    count=$1; shift
    parse "$@"
    inns timeout 60 python3 -c '
import socket, struct, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
for i in range(count):
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.sendall(b"x")
    if i % 2:
        # Nothing unread, zero linger: close aborts (TCPAbortOnData).
        cli.recv(1)
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        # Data unread at close: the kernel resets (TCPAbortOnClose).
        cli.recv(1, socket.MSG_PEEK)
    cli.close()
    try:
        conn.recv(1)
        sys.exit("lab.sh: the server saw no reset")
    except ConnectionResetError:
        pass
    conn.close()
srv.close()
print(count)' "$port" "$count"
    ;;
  reuse)
    parse "$@"
    # The server closes first, so that its side keeps the TIME_WAIT and the
    # client may bind the same port again at once.
    # On a lossy link the previous connection's last ACK can be lost: its
    # 4-tuple stays busy until the FIN is retransmitted, so connect retries.
    inns timeout 20 python3 - "$port" <<'PY'
import errno, socket, sys, time
port = int(sys.argv[1])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen()

def connect():
    for _ in range(100):
        cli = socket.socket()
        cli.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            cli.bind(("127.0.0.1", 45999))
            cli.connect(("127.0.0.1", port))
            return cli
        except OSError as e:
            cli.close()
            if e.errno not in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
                raise
            time.sleep(0.1)
    raise SystemExit("the 4-tuple stayed busy")

for _ in range(2):
    cli = connect()
    conn, _ = srv.accept()
    conn.sendall(b"x" * 65536)
    conn.close()
    while cli.recv(65536):
        pass
    cli.close()
srv.close()
PY
    ;;
  far)
    parse "$@"
    # A veth pair is a way out of a namespace: only where there is
    # nowhere to go.
    devices=$(ls /sys/class/net)
    [ "$devices" = lo ] ||
      die "far joins two namespaces by a veth pair, which only a machine with no network device but lo may have (a VM guest); this one has: $(echo $devices)"
    [ -e "/var/run/netns/$ns" ] || die "far needs the lab $ns (lab.sh up $ns)"
    ip netns del "$farns" 2>/dev/null || true
    ip netns add "$farns"
    ip -n "$farns" link set lo up
    ip link add far0 netns "$ns" type veth peer name far1 netns "$farns"
    ip -n "$ns" addr add 10.99.0.1/30 dev far0
    ip -n "$farns" addr add 10.99.0.2/30 dev far1
    ip -n "$ns" link set far0 up
    ip -n "$farns" link set far1 up
    ip netns exec "$farns" nft add table inet lab
    ip netns exec "$farns" nft add chain inet lab in '{ type filter hook input priority 0; }'
    if [ "$loss" != 0 ]; then
      ip netns exec "$farns" nft add rule inet lab in tcp dport "$port" numgen random mod 100 '<' "$loss" counter drop
    fi
    ;;
  settle)
    parse "$@"
    filter="( sport = :$port or dport = :$port )"
    [ "$clients" = 1 ] && filter="( dport = :$port )"
    deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
      open=$(inns ss -Htn state connected exclude time-wait "$filter")
      [ -z "$open" ] && exit 0
      sleep 0.02
    done
    die "connections of port $port still open in $ns after 30 s:"$'\n'"$open"
    ;;
  inode)
    stat -L -c %i "/var/run/netns/$ns"
    ;;
  nstat)
    inns cat /proc/net/snmp /proc/net/netstat | awk '
      /^(Tcp|TcpExt):/ { p = substr($1, 1, length($1) - 1); if (!hdr[p]) { for (i = 2; i <= NF; i++) name[p, i] = $i; hdr[p] = 1 } else { for (i = 2; i <= NF; i++) print p name[p, i], $i } }'
    ;;
  down)
    ip netns del "$farns" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ;;
  *) die "unknown command $cmd" ;;
esac
