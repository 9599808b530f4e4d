// SPDX-License-Identifier: GPL-2.0
/*
 * tcpcong's capture programs: one event per congestion-state transition of
 * a TCP socket and, for flow lifecycle, one per TCP state change. Three
 * ways to see the transitions, one chosen by user space per kernel (the
 * others are never loaded):
 *
 *   tracepoint  tp_btf/tcp_cong_state_set, every call of tcp_set_ca_state()
 *               (Linux >= 5.19);
 *   fentry      fentry/fexit on the functions that call it (BTF kernels
 *               whose tcp_set_ca_state() is still inline);
 *   kprobe      kprobe/kretprobe on the same functions, for kernels
 *               without BPF trampolines.
 *
 * Cost is the design constraint: this runs in softirq for every ACK that
 * moves a congestion state. So socket fields are read by direct (BTF-typed)
 * loads wherever the program type allows it, filtering happens before
 * anything is reserved, a known flow's events go as lean records into a
 * lock-free ring of their CPU (see emit_lean), and the consumer is woken
 * only when the ring buffer crosses a fill watermark (waking per event
 * costs an IPI, ~8 us here); a timer in user space collects the rest.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"

char LICENSE[] SEC("license") = "GPL";

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10

#define TCP_CA_DISORDER 1
#define TCP_CA_RECOVERY 3
#define TCP_CA_LOSS 4

/* Filters and buffer choice, fixed by user space before load so that the
 * verifier prunes whatever is switched off. */
const volatile __u16 lport_lo = 0;
const volatile __u16 lport_hi = 0xffff;
const volatile __u16 rport_lo = 0;
const volatile __u16 rport_hi = 0xffff;
const volatile bool port_filtered = false;
const volatile __u8 family_only = 0;
const volatile __u32 netns_only = 0;
const volatile __u64 cgroup_only = 0;
const volatile bool use_ringbuf = true;
/* Whether flows are named by their socket cookie (tp_btf and fentry on
 * >= 5.12) or by an id from flow_ids below. */
const volatile bool use_cookie = true;
/* tcpcong-assigned flow ids: top bit set, then 21 random bits per
 * recording, the CPU that first saw the flow, a per-CPU sequence number. */
const volatile __u64 flow_id_base = 1ULL << 63;
/* The lifecycle program also runs without lifecycle events when it must
 * retire assigned flow ids. */
const volatile bool emit_lifecycle = true;
/* A fallback mode: the calls map is in use. */
const volatile bool track_calls = false;
/* Socket storage from tracing programs (see sock_seqs). */
const volatile bool use_sk_storage = false;
/* Lean records for described flows (socket storage, and a ring per CPU
 * and program: see emit_lean). */
const volatile bool lean_records = false;
/* The kernel's jiffy in nanoseconds (its retransmission timeout is kept in
 * jiffies), set by user space. */
const volatile __u32 nsec_per_jiffy = 0;
const volatile struct lean_event lean_layout = {};
/* Never read: it puts struct event into the skeleton's types, so that user
 * space decodes records with the generated type instead of a mirror kept
 * by hand. */
const volatile struct event event_layout = {};

/* Full records, and the lean rings' doorbells. */
EVENTS_RB_MAP events_rb SEC(".maps");

/*
 * The lean records' rings: for each CPU one per program on the tracepoint
 * (the second runs only inside the first, see cong_cpus), so that each
 * ring has a single producer and needs no lock (see lean_begin). CPU c's
 * ring for program l is records [(c * LEAN_PROGRAMS + l) * slots, + slots)
 * of this mmapable array, its positions in cong_cpus[c] and lean_tails[c]
 * in .bss: user space reads both through mmap, without a syscall.
 * max_entries and slots are set by user space.
 */
LEAN_RINGS_MAP lean_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events_perf SEC(".maps");

/*
 * Flows that passed a port filter. By the time a socket enters TCP_CLOSE
 * the kernel has released its local port (skc_num is 0), so the port
 * filter alone would drop every flow's close event; remembered flows keep
 * theirs. Only used when a port filter is set, and only where sockets
 * have no storage for tracing programs (see sock_seqs, which cannot
 * overflow or outlive its socket as this table can).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} port_matched SEC(".maps");

/* Socket address -> assigned flow id, from a flow's first event to its
 * close (or the socket's reuse for a new connection). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
} flow_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} flow_seq SEC(".maps");

/* Fallback modes: a socket's calls of the hooked functions in progress
 * (they nest: tcp_fastretrans_alert calls tcp_enter_recovery). The socket
 * lock serialises them, so the entry is never shared between CPUs. An
 * entry whose exit was never seen (a missed kretprobe, a call in flight at
 * attach) goes when its socket closes or starts over, or by LRU. */
struct call {
	__u8 last;
	__u8 depth;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct call);
} calls SEC(".maps");

/* kprobe mode: a kretprobe does not see its function's arguments, so each
 * entry pushes its socket on a stack of the running task (or, for the
 * idle task, of the CPU), tagged with the function so that an exit whose
 * entry was skipped pops nothing. */
#define FRAMES 8 /* a power of two: indexes are masked with FRAMES - 1 */
struct frames {
	__u64 sk[FRAMES];
	__u32 depth;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct frames);
} task_frames SEC(".maps");

/*
 * Events that could not be handed over (ring buffer full, a table full),
 * one cache line per CPU so that counting never contends. User space reads
 * them through the mmapped .bss, never with a bpf() map syscall: while one
 * runs, the kernel skips kprobe programs on that CPU (bpf_prog_active), and
 * on kernels before 6.7 without counting the skip.
 */
#define LOST_SLOTS 1024
struct lost_slot {
	__u64 n;
	__u64 pad[7];
};
struct lost_slot lost[LOST_SLOTS];

/* After `lost`, which the syscall path reads at the start of .bss. */
struct cong_cpu cong_cpus[LEAN_CPUS];
struct lean_tail lean_tails[LEAN_CPUS];

static __always_inline bool port_in(__u16 port, __u16 lo, __u16 hi)
{
	return port >= lo && port <= hi;
}

/*
 * Who owns a socket: the process that connected it (its syn_sent runs in
 * that process) or accepted it (the accept calls' exits, where the new
 * file descriptor leads to the socket). Keyed by socket address, cleared
 * when a socket at that address is born or closes, so that a new socket
 * never inherits the last one's owner. The command name is the process's
 * (its main thread's), as /proc/PID/comm and ss -p show it.
 */
struct owner {
	__u32 pid;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

/* The flow identity, read once and checked against the filters before
 * anything is reserved. */
struct ident {
	struct owner *owner;
	__u64 flow;
	__u64 cgroup;
	__u32 netns;
	__u32 seq;
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 kernel_gap;
};

/* What a retransmission's record adds (see on_retransmit). */
struct resent {
	__u32 segs;
	__u32 seq;
	__s32 err;
};

/*
 * Per socket, where the kernel lets tracing programs keep socket storage
 * (5.11 on; `use_sk_storage`): the number of its last event, and the
 * congestion state its last tcp_cong_state_set call set. A call that finds
 * the socket in another state is a transition no call announced (a call
 * the kernel skipped the programs for, or a state the kernel changed
 * without the tracepoint): the event says so (`kernel_gap`), and its
 * number tells a user space loss (a number missing) from that. Freed with
 * the socket.
 */
/*
 * A transition out of recovery or loss (to open or disorder) that undid its
 * window's reduction: every undo clears undo_marker (in
 * tcp_undo_cwnd_reduction), which entering either state set (tcp_init_undo,
 * to snd_una: 0 only where snd_una is, 1 in 2^32), and nothing else
 * clears it inside them.
 */
static __always_inline bool undone(__u32 undo_marker, __u8 old, __u8 new)
{
	return (old == TCP_CA_RECOVERY || old == TCP_CA_LOSS) && new <= TCP_CA_DISORDER && !undo_marker;
}

struct sock_seq {
	__u32 last_seq;
	__u8 last_set;
	__u8 chained;
	/* The socket passed the port filter (see port_matched). */
	__u8 ports_passed;
	/* A full record of the flow was handed over (`lean_records`), with
	 * these ports and congestion control: while they stay, its calls
	 * need no filter and hand over lean records. */
	__u8 described;
	__u16 sport;
	__u16 dport;
	/* The flow's owner is known, and copied here: no need to look in
	 * owners again. */
	__u8 owned;
	/* The socket had a file then: user space could look for its owner
	 * (an accepted socket has none until its accept). */
	__u8 filed;
	__u64 ca_ops;
	__u64 flow;
	/* The event number of the flow's last full record, and what changes
	 * rarely as it had them (see cause_unchanged). */
	__u32 facts_seq;
	/* nsec_per_jiffy, here for the lean path, which reads no read-only
	 * data (see cong_state_set). */
	__u32 nsec_per_jiffy;
	__u32 mss;
	__u32 delivered_ce;
	__u32 dsack_dups;
	__u32 reord_seen;
	__u8 backoff;
	struct owner owner;
};

/* What changes rarely is as the flow's last full record had it: a lean
 * record can take it from there. */
static __always_inline bool cause_unchanged(const struct sock_seq *s, const struct tcp_sock *tp)
{
	return s->mss == tp->mss_cache && s->delivered_ce == tp->delivered_ce &&
	       s->dsack_dups == tp->dsack_dups && s->reord_seen == tp->reord_seen &&
	       s->backoff == tp->inet_conn.icsk_backoff;
}

/* Keeps what cause_unchanged compares, as a full record just had it. */
static __always_inline void keep_causes(struct sock_seq *s, const struct tcp_sock *tp)
{
	s->mss = tp->mss_cache;
	s->delivered_ce = tp->delivered_ce;
	s->dsack_dups = tp->dsack_dups;
	s->reord_seen = tp->reord_seen;
	s->backoff = tp->inet_conn.icsk_backoff;
}

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_seq);
} sock_seqs SEC(".maps");

static __always_inline void count_lost(void)
{
	/* Atomic because CPUs beyond LOST_SLOTS share slots. */
	__sync_fetch_and_add(&lost[bpf_get_smp_processor_id() & (LOST_SLOTS - 1)].n, 1);
}

static __always_inline struct owner *owner_of(struct sock *sk)
{
	__u64 key = (__u64)sk;

	return bpf_map_lookup_elem(&owners, &key);
}

static __always_inline __u64 assigned_flow(struct sock *sk)
{
	__u64 key = (__u64)sk, id, *known;
	__u32 zero = 0;
	__u64 *seq;

	known = bpf_map_lookup_elem(&flow_ids, &key);
	if (known)
		return *known;
	/* Per CPU, because atomic fetch-and-add needs 5.12. */
	seq = bpf_map_lookup_elem(&flow_seq, &zero);
	if (!seq)
		return 0;
	id = flow_id_base | (__u64)(bpf_get_smp_processor_id() & 0x3ff) << 32 |
	     (*seq & 0xffffffff);
	*seq += 1;
	bpf_map_update_elem(&flow_ids, &key, &id, BPF_ANY);
	return id;
}

/* What the programs keep per socket address, which the next socket at
 * that address must not inherit. */
static __always_inline void forget_socket(struct sock *sk)
{
	__u64 key = (__u64)sk;

	bpf_map_delete_elem(&owners, &key);
	if (!use_cookie)
		bpf_map_delete_elem(&flow_ids, &key);
	if (track_calls)
		bpf_map_delete_elem(&calls, &key);
}

static __always_inline __u64 frames_key(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	/* Every CPU's idle task is pid 0. */
	return (__u32)id ? id : 1ULL << 63 | bpf_get_smp_processor_id();
}

/* False when the frame could not be kept: the exit will not find it. */
static __always_inline bool push_frame(struct sock *sk, __u32 fn)
{
	__u64 key = frames_key();
	struct frames *f = bpf_map_lookup_elem(&task_frames, &key);
	__u32 d;

	if (!f) {
		struct frames fresh = { .sk = { (__u64)sk | fn }, .depth = 1 };

		if (bpf_map_update_elem(&task_frames, &key, &fresh, BPF_NOEXIST)) {
			count_lost();
			return false;
		}
		return true;
	}
	d = f->depth;
	if (d >= FRAMES) {
		count_lost();
		return false;
	}
	f->sk[d & (FRAMES - 1)] = (__u64)sk | fn;
	f->depth = d + 1;
	return true;
}

/*
 * The socket of the innermost call of `fn` on this stack. Frames above it
 * are calls whose exits the kernel never ran (a missed kretprobe): they are
 * dropped with it. No frame of `fn`: its entry was skipped, nothing to do.
 */
static __always_inline struct sock *pop_frame(__u32 fn)
{
	__u64 key = frames_key(), frame;
	struct frames *f = bpf_map_lookup_elem(&task_frames, &key);
	__u32 depth, d, i;

	if (!f)
		return NULL;
	depth = f->depth;
	for (i = 0; i < FRAMES; i++) {
		if (i >= depth)
			break;
		/* The mask, not the bound, is what the verifier can follow. */
		d = (depth - 1 - i) & (FRAMES - 1);
		frame = f->sk[d];
		/* Socket pointers are 8-byte aligned: the tag lives in the low bits. */
		if ((frame & 7) != fn)
			continue;
		if (d == 0)
			bpf_map_delete_elem(&task_frames, &key);
		else
			f->depth = d;
		return (struct sock *)(frame & ~7ULL);
	}
	return NULL;
}
/* The port filter's memory of a flow: in the socket's storage where
 * tracing programs have it, else in port_matched. */
static __always_inline bool ports_seen_map(__u64 flow)
{
	return bpf_map_lookup_elem(&port_matched, &flow);
}

static __always_inline void ports_pass_map(__u64 flow)
{
	__u8 one = 1;

	/* A lookup is lock-free; only a flow's first event writes. */
	if (!bpf_map_lookup_elem(&port_matched, &flow))
		bpf_map_update_elem(&port_matched, &flow, &one, BPF_ANY);
}

static __always_inline bool ports_seen_btf(struct sock *sk, __u64 flow)
{
	struct sock_seq *s;

	if (!use_sk_storage)
		return ports_seen_map(flow);
	s = bpf_sk_storage_get(&sock_seqs, sk, 0, 0);
	return s && s->ports_passed;
}

static __always_inline void ports_pass_btf(struct sock *sk, __u64 flow)
{
	struct sock_seq *s;

	if (!use_sk_storage) {
		ports_pass_map(flow);
		return;
	}
	s = bpf_sk_storage_get(&sock_seqs, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (s)
		s->ports_passed = 1;
}


/* BTF-typed programs: direct loads. */
#define NAME(f) f##_btf
#define LD(p, f) ((p)->f)
#define LD_BITS(p, f) BPF_CORE_READ_BITFIELD(p, f)
#define LD_BYTES(dst, p, f) __builtin_memcpy(dst, (p)->f, sizeof(dst))
#define TCP_SOCK(sk) bpf_skc_to_tcp_sock(sk)
#define COOKIE(sk) bpf_get_socket_cookie(sk)
#define PORTS_SEEN(sk, flow) ports_seen_btf(sk, flow)
#define PORTS_PASS(sk, flow) ports_pass_btf(sk, flow)
#include "handlers.h"
#undef NAME
#undef LD
#undef LD_BITS
#undef LD_BYTES
#undef TCP_SOCK
#undef COOKIE
#undef PORTS_SEEN
#undef PORTS_PASS

/* kprobes and raw tracepoints: probe reads. */
#define NAME(f) f##_probed
#define LD(p, f) BPF_CORE_READ(p, f)
#define LD_BITS(p, f) BPF_CORE_READ_BITFIELD_PROBED(p, f)
#define LD_BYTES(dst, p, f) bpf_core_read(dst, sizeof(dst), &(p)->f)
#define TCP_SOCK(sk) ((struct tcp_sock *)(sk))
#define COOKIE(sk) 0
#define PORTS_SEEN(sk, flow) ports_seen_map(flow)
#define PORTS_PASS(sk, flow) ports_pass_map(flow)
#include "handlers.h"
#undef NAME
#undef LD
#undef LD_BITS
#undef LD_BYTES
#undef TCP_SOCK
#undef COOKIE
#undef PORTS_SEEN
#undef PORTS_PASS

/* Gives the socket's next event its number; NULL where sockets have no
 * storage here. */
static __always_inline struct sock_seq *numbered(struct sock *sk, struct ident *id)
{
	struct sock_seq *s;

	if (!use_sk_storage)
		return NULL;
	s = bpf_sk_storage_get(&sock_seqs, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (s)
		id->seq = ++s->last_seq;
	return s;
}

/* The current process owns `sk`. */
static __always_inline void own(struct sock *sk)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct owner o = { .pid = bpf_get_current_pid_tgid() >> 32 };
	__u64 key = (__u64)sk;

	BPF_CORE_READ_STR_INTO(&o.comm, task, group_leader, comm);
	bpf_map_update_elem(&owners, &key, &o, BPF_ANY);
}

/* Drops are recorded (see on_drop): flows are also kept by their addresses. */
const volatile bool record_drops = false;

/*
 * A flow by its addresses, as a segment names it, in its network namespace:
 * how a drop finds the flow of a segment the kernel freed before it knew
 * the socket (a netfilter rule on input). Kept from a flow's established
 * (or its first full record) on; a closed flow's entry stays until the
 * table needs its room or a new connection takes its addresses (at close
 * the kernel has already released its local port, so the key cannot be
 * built again).
 */
struct flow_tuple {
	__u32 netns;
	__u16 lport;
	__u16 rport;
	__u8 family;
	__u8 pad[3];
	__u8 laddr[16];
	__u8 raddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_tuple);
	__type(value, __u64);
} flow_tuples SEC(".maps");

static __always_inline void remember_tuple(struct sock *sk, const struct ident *id)
{
	struct flow_tuple t = {
		.netns = id->netns,
		.lport = id->sport,
		.rport = id->dport,
		.family = id->family,
	};

	if (!record_drops || !id->sport)
		return;
	if (id->family == 4) {
		__u64 pair = sk->__sk_common.skc_addrpair;
		__u32 l = pair >> 32, r = pair;

		__builtin_memcpy(t.laddr, &l, 4);
		__builtin_memcpy(t.raddr, &r, 4);
	} else {
		__builtin_memcpy(t.laddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(t.raddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
	}
	bpf_map_update_elem(&flow_tuples, &t, &id->flow, BPF_ANY);
}

/* A TCP state change: a lifecycle event, the end (or a reused socket's
 * new start) of a tcpcong-assigned flow id, and an active socket's owner. */
static __always_inline void lifecycle(void *ctx, struct sock *sk, int oldstate, int newstate)
{
	struct tcp_sock *tp;
	struct ident id;

	if (sk->sk_protocol != IPPROTO_TCP)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	if (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV)
		forget_socket(sk);
	if (newstate == TCP_SYN_SENT)
		own(sk);
	if (record_drops && newstate == TCP_ESTABLISHED && flow_wanted_btf(sk, &id))
		remember_tuple(sk, &id);
	if (emit_lifecycle && flow_wanted_btf(sk, &id)) {
		/* A new connection or a close starts the socket's chain afresh,
		 * as readers of the file do. */
		struct sock_seq *s = numbered(sk, &id);

		if (s && (newstate == TCP_SYN_SENT || newstate == TCP_SYN_RECV ||
			  newstate == TCP_CLOSE)) {
			s->chained = 0;
			s->described = 0;
			s->owned = 0;
		}
		id.owner = owner_of(sk);
		emit_btf(ctx, sk, tp, &id, KIND_TCP_STATE, oldstate, newstate, NULL);
	}
	if (newstate == TCP_CLOSE)
		forget_socket(sk);
}

/* The socket's chain: this call's number and whether it found the state
 * the previous call set. */
static __always_inline __u8 chain(struct sock_seq *s, __u8 old, __u8 set)
{
	__u8 gap = s->chained && s->last_set != old;

	s->last_set = set;
	s->chained = 1;
	return gap;
}

/* Wakes user space for this CPU's filling lean ring (see lean_doorbell). A
 * full buffer needs no doorbell: it is being read. */
static __noinline int ring_doorbell(void *ctx)
{
	struct lean_doorbell d = {};

	if (use_ringbuf)
		bpf_ringbuf_output(&events_rb, &d, sizeof(d), BPF_RB_FORCE_WAKEUP);
	else
		bpf_perf_event_output(ctx, &events_perf, BPF_F_CURRENT_CPU, &d, sizeof(d));
	return 0;
}

/* A described flow's call: the per-event fields only, into this CPU's ring
 * for this program (`level`). */
static __always_inline void emit_lean(void *ctx, struct sock_seq *s, struct tcp_sock *tp, __u8 old,
				      __u8 set, struct cong_cpu *c, __u32 cpu, __u32 level)
{
	struct lean_producer p = lean_producer_at(c, &lean_tails[cpu & (LEAN_CPUS - 1)], cpu, level);
	__u32 seq = ++s->last_seq;
	__u8 gap = chain(s, old, set);
	struct lean_event *e;

	/* Beyond LEAN_CPUS there are no lean records (see lean_slots in
	 * load.rs): a CPU there shares another's line. */
	e = cpu < LEAN_CPUS ? lean_begin(&lean_rings, &p) : NULL;
	if (!e) {
		count_lost();
		return;
	}
	e->ktime_ns = bpf_ktime_get_ns();
	e->cookie = s->flow;
	FILL_COUNTERS(e, tp, DIRECT, s->nsec_per_jiffy);
	e->seq = seq;
	e->cpu = cpu;
	e->old_state = old;
	e->new_state = set;
	e->kernel_gap = gap;
	e->facts_seq[0] = s->facts_seq;
	e->facts_seq[1] = s->facts_seq >> 8;
	e->facts_seq[2] = s->facts_seq >> 16;
	lean_finish(&p);
	if (lean_reached(&p, &c->looked[level], LEAN_DOORBELL_AT(p.slots)))
		ring_doorbell(ctx);
	lean_warm_next(&lean_rings, &p);
}

/*
 * A call that needs a full record: a flow's first, or one after its facts
 * changed. Not inlined, so that the lean path's instructions are few and
 * contiguous: at a few hundred events a second each event fetches them
 * cold. `states` is the old state in bits 8-15 and the new in 0-7 (a
 * function here takes at most five arguments).
 */
static __noinline int describe(__u64 *ctx, struct sock *sk, struct tcp_sock *tp, __u32 states)
{
	__u8 old = states >> 8, ca_state = states;
	struct sock_seq *s;
	struct ident id;

	/* A closed socket's call is tcp_disconnect's (a zero-linger close, a
	 * listener's unaccepted children): it resets the socket to open after
	 * its close, which ended the flow; a reconnect starts with a lifecycle
	 * event. Recorded, it would reopen the flow for good. Such a call
	 * never takes the lean path: the close cleared `described`, and
	 * tcp_disconnect the remote port that path compares. Without
	 * lifecycle events nothing ends the flow, and the socket's chain goes
	 * on through this call: it is recorded. */
	if (emit_lifecycle && sk->__sk_common.skc_state == TCP_CLOSE)
		return 0;
	if (!flow_wanted_btf(sk, &id))
		return 0;
	s = numbered(sk, &id);
	if (s)
		id.kernel_gap = chain(s, old, ca_state);
	/* Once known, a flow's owner is read from its socket's storage, which
	 * this call holds already, not looked up again. */
	id.owner = s && s->owned ? &s->owner : owner_of(sk);
	if (s && id.owner && !s->owned) {
		s->owner = *id.owner;
		s->owned = 1;
	}
	if (!s || !s->described)
		remember_tuple(sk, &id);
	if (emit_btf(ctx, sk, tp, &id, KIND_CA_STATE, old, ca_state, NULL) && s && lean_records) {
		s->described = 1;
		s->sport = sk->__sk_common.skc_num;
		s->dport = sk->__sk_common.skc_dport;
		s->ca_ops = (__u64)tp->inet_conn.icsk_ca_ops;
		s->flow = id.flow;
		s->facts_seq = id.seq;
		s->filed = sk->sk_socket != NULL;
		s->nsec_per_jiffy = nsec_per_jiffy;
		keep_causes(s, tp);
	}
	return 0;
}

static __always_inline void cong_state_set(__u64 *ctx, struct sock *sk, __u8 ca_state,
					   struct cong_cpu *c, __u32 cpu, __u32 level)
{
	/* Only flows described while lean_records is on are: no read of
	 * read-only data here, whose line this path would read for that alone
	 * (the tracepoint is younger than sockets' storage in tracing). */
	struct sock_seq *s = bpf_sk_storage_get(&sock_seqs, sk, 0, 0);
	struct tcp_sock *tp;
	__u64 key = (__u64)sk;
	__u64 head;
	__u8 old;

	/* The per-event cost is cache misses, one after another: storage's
	 * chain (socket, its storage, the flow's data) first, and this CPU's
	 * ring head read now, unused, so that its miss overlaps that chain's
	 * instead of following it in emit_lean (an A/B measured about 15 %
	 * less per event). */
	head = *(volatile __u64 *)&c->reserved[level];
	asm volatile("" : : "r"(head));
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	old = BPF_CORE_READ_BITFIELD(&tp->inet_conn, icsk_ca_state);
	/* A flow's owner can become known after its full record (an accept
	 * after its first transition, seen by the accept hooks or, without
	 * them, by user space once the socket has a file): a new full record
	 * says so. */
	if (__builtin_expect(s && s->described && s->sport == sk->__sk_common.skc_num &&
			     s->dport == sk->__sk_common.skc_dport &&
			     s->ca_ops == (__u64)tp->inet_conn.icsk_ca_ops && cause_unchanged(s, tp) &&
			     !undone(tp->undo_marker, old, ca_state) &&
			     (s->owned || (!bpf_map_lookup_elem(&owners, &key) &&
					   (s->filed || !sk->sk_socket))), 1))
		emit_lean(ctx, s, tp, old, ca_state, c, cpu, level);
	else
		describe(ctx, sk, tp, (__u32)old << 8 | ca_state);
}

/*
 * The kernel never runs a program inside itself on one CPU: a
 * tcp_set_ca_state() that interrupts on_cong_state_set (a softirq handling
 * another socket's ACK while the program runs for a socket in process
 * context) is skipped, only counted in the program's recursion_misses. That
 * skip is what broke flows' chains under load (a transition without an
 * event). So a second program on the same tracepoint takes the calls that
 * come while the first is running on its CPU: the first cannot have them,
 * and whichever order the two run in, the first has every call that is not
 * nested (the second, seeing the flag clear, leaves it). The flag is on the
 * CPU's line in cong_cpus, which the first has just written when the
 * second runs after it, so the second's check is a warm read.
 *
 * Turning interrupts off instead (bpf_local_irq_save, 6.14 on) does not
 * keep those calls out: an interrupt that comes meanwhile is taken when
 * they are turned back on, still inside the program, and the softirq after
 * it comes in all the same. Measured side by side on storms of 64 lossy
 * flows (BENCHMARKS.md, section 1): the guard left 30 calls skipped in 1.30
 * million events, no guard 16 in 0.87 million, the twin 6 in 1.31 million,
 * and the guard and the twin cost the same per event. A nested call
 * that is missed all the same (it came in the kernel's own steps around
 * the first program, before it set the flag or after it cleared it; or
 * inside the twin) is lost, and counted: the first's misses minus the
 * calls the twin caught.
 */

/* Runs before the kernel stores the new state, so the old one is still there. */
SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(on_cong_state_set, struct sock *sk, __u8 ca_state)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct cong_cpu *c = &cong_cpus[cpu & (LEAN_CPUS - 1)];

	c->busy = 1;
	cong_state_set(ctx, sk, ca_state, c, cpu, 0);
	c->busy = 0;
	return 0;
}

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(on_cong_state_set_nested, struct sock *sk, __u8 ca_state)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct cong_cpu *c = &cong_cpus[cpu & (LEAN_CPUS - 1)];

	if (!c->busy)
		return 0;
	c->caught++;
	cong_state_set(ctx, sk, ca_state, c, cpu, 1);
	return 0;
}

/* Lifecycle for every mode: tp_btf needs BTF (as all modes' reads do) but
 * no trampolines, so it also serves kprobe mode. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	lifecycle(ctx, sk, oldstate, newstate);
	return 0;
}

#define ICSK_TIME_LOSS_PROBE 5
/* In tcp_skb_cb.sacked: marked lost, so tcp_xmit_retransmit_queue's. */
#define TCPCB_LOST 0x04
/* In sk_flags: the socket is orphaned. */
#define SOCK_DEAD 0

/*
 * Why the kernel sends a segment again, from what it has set by the time
 * it does (schemas/events-v1.md, Retransmissions, says what each kind
 * counts and which of the kernel's counters it equals):
 *
 *   syn   the socket is still connecting (tcp_retransmit_timer in SYN_SENT);
 *   rto   no timer is pending: tcp_write_timer_handler clears icsk_pending
 *         before it calls tcp_retransmit_timer, and at any other time a
 *         socket with data in flight has one pending (retransmission, loss
 *         probe or reordering timer). Unless the peer's window is zero
 *         and the socket has a process: that branch of the timer probes
 *         it, and counts no timeout (other);
 *   tlp   the loss probe timer is pending (tcp_send_loss_probe clears it
 *         only after its probe) and the segment is not marked lost: a
 *         probe resends the last segment, marked or not, while every other
 *         resend but the timer's is of a segment marked lost;
 *   loss  marked lost, in loss: after a timeout's first, as ACKs come;
 *   fast  marked lost in any other state (SACKs, RACK, duplicate ACKs);
 *   other anything else.
 */
static __always_inline __u8 resend_kind(const struct sock *sk, const struct tcp_sock *tp,
					const struct tcp_skb_cb *cb, __u8 ca)
{
	__u8 pending = tp->inet_conn.icsk_pending;
	bool lost = BPF_CORE_READ(cb, sacked) & TCPCB_LOST;

	if (sk->__sk_common.skc_state == TCP_SYN_SENT)
		return RESEND_SYN;
	if (!pending)
		return tp->snd_wnd || (sk->__sk_common.skc_flags & 1 << SOCK_DEAD) ? RESEND_RTO : RESEND_OTHER;
	if (pending == ICSK_TIME_LOSS_PROBE && !lost)
		return RESEND_TLP;
	if (!lost)
		return RESEND_OTHER;
	return ca == TCP_CA_LOSS ? RESEND_LOSS : RESEND_FAST;
}

/*
 * Evidence of a traced flow (a retransmission, a reset): a full record,
 * which moves no state and takes no event number: its `seq` is the
 * socket's last event's, as a snapshot's. `r`: a retransmission's.
 */
static __always_inline void evidence(void *ctx, struct sock *sk, struct tcp_sock *tp,
				     struct ident *id, __u8 kind, __u8 old, __u8 new,
				     const struct resent *r)
{
	struct sock_seq *s = NULL;

	if (use_sk_storage) {
		s = bpf_sk_storage_get(&sock_seqs, sk, 0, 0);
		if (s)
			id->seq = s->last_seq;
	}
	id->owner = s && s->owned ? &s->owner : owner_of(sk);
	emit_btf(ctx, sk, tp, id, kind, old, new, r);
}

/* Every retransmission of a traced flow: rare next to ACKs, so a full
 * record each. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(on_retransmit, struct sock *sk, struct sk_buff *skb)
{
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)skb->cb;
	struct tcp_sock *tp;
	struct resent r;
	struct ident id;
	__u8 ca;

	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !flow_wanted_btf(sk, &id))
		return 0;
	ca = BPF_CORE_READ_BITFIELD(&tp->inet_conn, icsk_ca_state);
	r.segs = BPF_CORE_READ(cb, tcp_gso_segs);
	r.seq = BPF_CORE_READ(cb, seq);
	/* The third argument exists where the classic record has its field:
	 * elsewhere the verifier never sees this read (the branch is a
	 * constant libbpf writes). */
	r.err = bpf_core_field_exists(struct trace_event_raw_tcp_retransmit_skb, err) ? (int)ctx[2] : 0;
	evidence(ctx, sk, tp, &id, KIND_RETRANSMIT, ca, resend_kind(sk, tp, cb, ca), &r);
	return 0;
}

/* A reset of a traced flow, sent (a reason of enum sk_rst_reason) or
 * received. A reset of no full socket (an answer to a segment of none, or
 * from a request or time-wait socket) is no traced flow's. */
static __always_inline void reset(void *ctx, struct sock *sk, __u8 dir, __u32 why)
{
	struct tcp_sock *tp;
	struct ident id;

	/* The kernel sends some without a socket (the verifier knows). */
	if (!sk)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !flow_wanted_btf(sk, &id))
		return;
	evidence(ctx, sk, tp, &id, KIND_RESET, dir, why < REASON_OTHER ? why : REASON_OTHER, NULL);
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(on_send_reset, struct sock *sk)
{
	/* The reason is the third argument where the classic record has its
	 * field (6.10 on); elsewhere the verifier never sees this read. */
	reset(ctx, sk, DIRECTION_TX,
	      bpf_core_field_exists(struct trace_event_raw_tcp_send_reset, reason) ? (__u32)ctx[2] : 0);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(on_receive_reset, struct sock *sk)
{
	reset(ctx, sk, DIRECTION_RX, 0);
	return 0;
}

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

/* Per reason (REASON_OTHER and beyond in the last), TCP segments of
 * the traced namespace (every one without a namespace filter) this host
 * dropped that were no traced flow's: the files' host-wide context, read
 * by user space through the mmapped .bss. */
__u64 untraced_drops[REASON_OTHER + 1];

/* What a drop record adds: the segment, and where it was freed. */
struct dropped {
	struct resent r;
	__u64 location;
};

/* The drop's record, handed over with the address of the kernel function
 * that freed it. `sk`: the flow's socket, or NULL where the segment's addresses
 * (`t`) named the flow: its identity is then the segment's, user space
 * gives it the flow's owner, and the counters are 0. */
static __always_inline void fill_drop(struct event *e, struct sock *sk, struct tcp_sock *tp,
				      const struct ident *id, const struct flow_tuple *t,
				      const struct dropped *d, __u8 dir, __u8 reason)
{
	if (tp) {
		fill_btf(e, sk, tp, id, KIND_DROP, dir, reason, &d->r);
	} else {
		__builtin_memset(e, 0, sizeof(*e));
		e->ktime_ns = bpf_ktime_get_ns();
		e->cookie = id->flow;
		__builtin_memcpy(e->saddr, t->laddr, sizeof(e->saddr));
		__builtin_memcpy(e->daddr, t->raddr, sizeof(e->daddr));
		e->netns = id->netns;
		e->sport = id->sport;
		e->dport = id->dport;
		e->family = id->family;
		e->cpu = bpf_get_smp_processor_id();
		e->kind = KIND_DROP;
		e->old_state = dir;
		e->new_state = reason;
		e->segs = d->r.segs;
		e->tcp_seq = d->r.seq;
	}
	/* Named in user space, once per address: a name looked up here
	 * (bpf_snprintf's %ps) cost about 6 us per drop. */
	e->drop_ip = d->location;
}

static __always_inline void emit_drop(void *ctx, struct sock *sk, const struct ident *id,
				      const struct flow_tuple *t, const struct dropped *d, __u8 dir,
				      __u8 reason)
{
	struct tcp_sock *tp = NULL;
	struct event *e;

	if (!t) {
		tp = bpf_skc_to_tcp_sock(sk);
		if (!tp)
			return;
	}
	if (!use_ringbuf) {
		struct event ev;

		fill_drop(&ev, sk, tp, id, t, d, dir, reason);
		/* A full perf buffer is reported by its lost callback. */
		bpf_perf_event_output(ctx, &events_perf, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
		return;
	}
	e = bpf_ringbuf_reserve(&events_rb, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return;
	}
	fill_drop(e, sk, tp, id, t, d, dir, reason);
	submit_watermarked(&events_rb, e);
}

/*
 * A TCP segment this host dropped: the flow's, by its socket where the
 * kernel gives it (the receiver's, once TCP has found it) or else by its
 * addresses; otherwise counted by reason. Not inlined: every other freed
 * packet leaves on_drop after two loads.
 */
static __noinline int drop_tcp(void *ctx, struct sk_buff *skb, __u64 location, __u32 why,
			       __u32 family)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header, th = skb->transport_header;
	struct flow_tuple t = { .family = family };
	__u8 reason = why < REASON_OTHER ? why : REASON_OTHER;
	__u8 dir = skb->skb_iif ? DIRECTION_RX : DIRECTION_TX;
	struct net_device *dev = skb->dev;
	struct sock *sk = NULL;
	struct dropped d = { .location = location };
	struct ident id;
	__u8 src[16] = {}, dst[16] = {};
	__u16 ports[2];
	__u32 seq;
	__u64 *flow;
	__u32 key = reason;

	if (family == 4) {
		__u8 ihl;

		bpf_probe_read_kernel(&ihl, 1, head + nh);
		bpf_probe_read_kernel(src, 4, head + nh + 12);
		bpf_probe_read_kernel(dst, 4, head + nh + 16);
		if (th == 0xffff)
			th = nh + (ihl & 0xf) * 4;
	} else {
		bpf_probe_read_kernel(src, 16, head + nh + 8);
		bpf_probe_read_kernel(dst, 16, head + nh + 24);
		if (th == 0xffff)
			th = nh + 40;
	}
	bpf_probe_read_kernel(ports, 4, head + th);
	bpf_probe_read_kernel(&seq, 4, head + th + 4);
	d.r.seq = bpf_ntohl(seq);
	d.r.segs = BPF_CORE_READ((struct skb_shared_info *)(head + skb->end), gso_segs) ?: 1;
	d.r.err = 0;

	/* The receiver's socket, once TCP has found it (6.11 on). A sender's
	 * (skb->sk) is not one the verifier lets a program use: its own
	 * segments are found by their addresses, as below. */
	if (dir == DIRECTION_RX && bpf_core_field_exists(struct trace_event_raw_kfree_skb, rx_sk))
		sk = (struct sock *)((__u64 *)ctx)[3];
	if (use_sk_storage && sk && bpf_skc_to_tcp_sock(sk) &&
	    bpf_sk_storage_get(&sock_seqs, sk, 0, 0) && flow_wanted_btf(sk, &id)) {
		struct sock_seq *s = bpf_sk_storage_get(&sock_seqs, sk, 0, 0);

		if (s)
			id.seq = s->last_seq;
		id.owner = s && s->owned ? &s->owner : owner_of(sk);
		emit_drop(ctx, sk, &id, NULL, &d, dir, reason);
		return 0;
	}

	/* By the segment's addresses, as the flow names them. */
	t.netns = dev ? BPF_CORE_READ(dev, nd_net.net, ns.inum) : 0;
	if (dir == DIRECTION_TX) {
		t.lport = bpf_ntohs(ports[0]);
		t.rport = bpf_ntohs(ports[1]);
		__builtin_memcpy(t.laddr, src, 16);
		__builtin_memcpy(t.raddr, dst, 16);
	} else {
		t.lport = bpf_ntohs(ports[1]);
		t.rport = bpf_ntohs(ports[0]);
		__builtin_memcpy(t.laddr, dst, 16);
		__builtin_memcpy(t.raddr, src, 16);
	}
	flow = bpf_map_lookup_elem(&flow_tuples, &t);
	if (flow) {
		id.flow = *flow;
		id.netns = t.netns;
		id.sport = t.lport;
		id.dport = t.rport;
		id.family = family;
		emit_drop(ctx, NULL, &id, &t, &d, dir, reason);
		return 0;
	}
	if (netns_only && t.netns != netns_only)
		return 0;
	/* The mask is the verifier's bound: the compiler knows a u8 needs
	 * none, and would drop it. */
	asm volatile("%0 &= 0xff" : "+r"(key));
	__sync_fetch_and_add(&untraced_drops[key], 1);
	return 0;
}

/*
 * Every packet the host drops (kfree_skb, not consume_skb): anything but
 * TCP over IP leaves after reading its protocol numbers.
 */
SEC("tp_btf/kfree_skb")
int BPF_PROG(on_drop, struct sk_buff *skb, void *location, int reason)
{
	__u16 proto = skb->protocol;
	__u8 l4 = 0;

	if (proto == bpf_htons(ETH_P_IP))
		bpf_probe_read_kernel(&l4, 1, skb->head + skb->network_header + 9);
	else if (proto == bpf_htons(ETH_P_IPV6))
		bpf_probe_read_kernel(&l4, 1, skb->head + skb->network_header + 6);
	if (l4 != IPPROTO_TCP)
		return 0;
	return drop_tcp(ctx, skb, (__u64)location, reason, proto == bpf_htons(ETH_P_IP) ? 4 : 6);
}

/*
 * A snapshot: every TCP socket the filters keep, with its TCP and
 * congestion states as they are now, one full record each, written to
 * the iterator's output (user space reads an instance of it, at the start
 * and end of each file). The kernel holds each socket's lock while this
 * runs for it, so no event of the socket is in progress: the record is
 * the state after the socket's last event, whose number it carries, and
 * before its next. It changes nothing in the socket's storage.
 */
SEC("iter/tcp")
int snapshot_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sock_seq *s = NULL;
	struct tcp_sock *tp;
	struct event e;
	struct ident id;
	struct sock *sk;
	__u8 state;

	if (!skc)
		return 0;
	/* NULL for time-wait and request sockets: no congestion state. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	sk = (struct sock *)tp;
	state = sk->__sk_common.skc_state;
	if (state == TCP_LISTEN || state == TCP_CLOSE || !flow_wanted_btf(sk, &id))
		return 0;
	if (use_sk_storage) {
		s = bpf_sk_storage_get(&sock_seqs, sk, 0, 0);
		if (s)
			id.seq = s->last_seq;
	}
	id.owner = s && s->owned ? &s->owner : owner_of(sk);
	fill_btf(&e, sk, tp, &id, KIND_SNAPSHOT, state,
		 BPF_CORE_READ_BITFIELD(&tp->inet_conn, icsk_ca_state), NULL);
	bpf_seq_write(ctx->meta->seq, &e, sizeof(e));
	return 0;
}

/*
 * A passive socket's owner: the process an accept call hands it to. The
 * syscall tracepoints are classic ones (attached through tracefs, by user
 * space, only where it can): an accept exit is rare next to the events,
 * and no BTF-typed hook sees it on every kernel. Sockets accepted by other
 * means (io_uring, a kernel user) are left for user space to resolve.
 */
struct sys_exit_args {
	__u64 common;
	int nr;
	long ret;
};

static __always_inline void accepted(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *f = NULL;
	struct socket *so;
	struct sock *sk;
	__u16 family;

	if (fd < 0 || fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	so = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(so, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == AF_INET || family == AF_INET6)
		own(sk);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int on_accept4_exit(struct sys_exit_args *ctx)
{
	accepted(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int on_accept_exit(struct sys_exit_args *ctx)
{
	accepted(ctx->ret);
	return 0;
}

/* The callers of tcp_set_ca_state() that change congestion states (BCC's
 * five, and tcp_simple_retransmit for Loss after a path MTU drop), each
 * with its first argument the socket. Names are fixed: user space picks programs by their prefix
 * (fentry_, fexit_, kprobe_, kretprobe_) and function. */
#define FENTRY_PAIR(func, repeats)                                  \
	SEC("fentry/" #func)                                        \
	int BPF_PROG(fentry_##func, struct sock *sk)                \
	{                                                           \
		call_enter_btf(ctx, sk);                            \
		return 0;                                           \
	}                                                           \
	SEC("fexit/" #func)                                         \
	int BPF_PROG(fexit_##func, struct sock *sk)                 \
	{                                                           \
		call_exit_btf(ctx, sk, repeats);                    \
		return 0;                                           \
	}

#define KPROBE_PAIR(func, tag, repeats)                             \
	SEC("kprobe/" #func)                                        \
	int BPF_KPROBE(kprobe_##func, struct sock *sk)              \
	{                                                           \
		if (push_frame(sk, tag))                            \
			call_enter_probed(ctx, sk);                 \
		return 0;                                           \
	}                                                           \
	SEC("kretprobe/" #func)                                     \
	int BPF_KRETPROBE(kretprobe_##func)                         \
	{                                                           \
		struct sock *sk = pop_frame(tag);                   \
									    \
		if (sk)                                             \
			call_exit_probed(ctx, sk, repeats);         \
		return 0;                                           \
	}

#define CALLER(func, tag, repeats) \
	FENTRY_PAIR(func, repeats) \
	KPROBE_PAIR(func, tag, repeats)

CALLER(tcp_fastretrans_alert, 0, false)
CALLER(tcp_enter_cwr, 1, false)
CALLER(tcp_enter_loss, 2, true)
CALLER(tcp_enter_recovery, 3, false)
CALLER(tcp_process_tlp_ack, 4, false)
CALLER(tcp_simple_retransmit, 5, false)
