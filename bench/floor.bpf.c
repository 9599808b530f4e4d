// SPDX-License-Identifier: GPL-2.0
/*
 * The floor of the in-kernel cost benchmark: empty programs on the hooks
 * tcpcong's capture uses. bpf_stats counts what merely running a BPF
 * program there costs; tcpcong's per-event cost is reported as a ratio to
 * this, measured in the same run on the same events.
 */
#include "../bpf/kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(floor_cong_state, struct sock *sk, __u8 ca_state)
{
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(floor_sock_state, struct sock *sk, int oldstate, int newstate)
{
	return 0;
}

/* The evidence's hooks: a retransmission, and any packet the host drops. */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(floor_retransmit, struct sock *sk, struct sk_buff *skb)
{
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(floor_drop, struct sk_buff *skb, void *location)
{
	return 0;
}

/*
 * "Fields only": what tcpcong's full record reads per event (the flow's
 * identity, namespace, cgroup, cookie, congestion control, state, TCP
 * counters, the clock), loaded the same way and folded into one word that
 * is stored, so that nothing is optimised away, and nothing handed over.
 * Its cost next to the empty program's is the reading alone; tcpcong's
 * next to it, the hand-over.
 */
__u64 fields_sink;

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(floor_fields, struct sock *sk, __u8 ca_state)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	const struct tcp_congestion_ops *ops;
	__u64 x;

	if (!tp)
		return 0;
	x = sk->__sk_common.skc_family;
	x ^= (__u64)sk->__sk_common.skc_num << 16 | sk->__sk_common.skc_dport;
	x ^= sk->__sk_common.skc_addrpair;
	x ^= sk->__sk_common.skc_net.net->ns.inum;
	x ^= sk->sk_cgrp_data.cgroup->kn->id;
	x ^= bpf_get_socket_cookie(sk);
	x ^= tp->snd_cwnd ^ tp->snd_ssthresh ^ (tp->srtt_us >> 3) ^ tp->mss_cache;
	x ^= tp->packets_out ^ tp->retrans_out ^ tp->lost_out ^ tp->sacked_out ^ tp->total_retrans;
	x ^= tp->inet_conn.icsk_rto ^ tp->inet_conn.icsk_backoff ^ tp->undo_marker;
	x ^= tp->delivered_ce ^ tp->dsack_dups ^ tp->reord_seen;
	x ^= BPF_CORE_READ_BITFIELD(&tp->inet_conn, icsk_ca_state);
	ops = tp->inet_conn.icsk_ca_ops;
	if (ops)
		x ^= *(__u64 *)ops->name ^ *(__u64 *)&ops->name[8];
	x ^= bpf_ktime_get_ns() ^ bpf_get_smp_processor_id();
	fields_sink ^= x;
	return 0;
}

/*
 * The time source: the helper tcpcong stamps events with, and TCP's own
 * cached clock (the socket's last tcp_mstamp_refresh()), each alone, for
 * their cost next to the empty program's. The second also keeps the
 * range of (helper - cache) over every call: a small positive gap means
 * one clock read earlier; anything else, two clocks.
 */
__u64 clock_sink;
__s64 clock_gap_min = 0x7fffffffffffffffLL;
__s64 clock_gap_max = -0x7fffffffffffffffLL;

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(floor_clock_helper, struct sock *sk, __u8 ca_state)
{
	clock_sink ^= bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(floor_clock_cached, struct sock *sk, __u8 ca_state)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__s64 gap;

	if (!tp)
		return 0;
	clock_sink ^= tp->tcp_clock_cache;
	gap = (__s64)(bpf_ktime_get_ns() - tp->tcp_clock_cache);
	if (gap < clock_gap_min)
		clock_gap_min = gap;
	if (gap > clock_gap_max)
		clock_gap_max = gap;
	return 0;
}

/*
 * The hand-over, measured on tcpcong's lean record: three programs that
 * read what tcpcong's lean path reads (the socket's storage with its event
 * number and chain, the counters, the clock) and differ only in what they
 * do with the record. They share one storage map, so that after the first
 * one the storage is as warm for the other two: "lean reads" (no
 * hand-over) runs first and is an upper bound; the other two differ by
 * their hand-over alone.
 */
#include "../bpf/event.h"

struct lean_seq {
	__u64 ops;
	__u64 flow;
	__u32 seq[2];
	__u16 sport;
	__u16 dport;
	__u8 last[2];
	__u8 chained[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct lean_seq);
} floor_seqs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 << 20);
} floor_rb SEC(".maps");

/* The per-CPU single-producer ring: SLOTS records per CPU in an mmapable
 * array (max_entries set by floor.rs to CPUs x SLOTS), its producer
 * positions on one line per CPU and the consumer's tail on another:
 * tcpcong's design (lean_rings, lean_begin), without a consumer, which
 * does not change the producer's cost until it is full. */
#define SLOTS 4096
#define POS_SLOTS 1024
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct lean_event);
} floor_slots SEC(".maps");

struct ring_pos {
	__u64 reserved;
	__u64 committed;
	__u32 tail_seen;
	__u32 pad0;
	__u64 lost;
	__u64 pad[4];
};
struct ring_pos floor_pos[POS_SLOTS];
struct ring_tail {
	__u64 tail;
	__u64 pad[7];
};
struct ring_tail floor_tails[POS_SLOTS];
__u64 lean_sink;

/* The lean path's checks and chain; `v` keeps each variant's numbers its own. */
static __always_inline struct lean_seq *lean_check(struct sock *sk, struct tcp_sock *tp,
						   __u8 ca_state, int v)
{
	__u64 ops = (__u64)tp->inet_conn.icsk_ca_ops;
	__u8 old = BPF_CORE_READ_BITFIELD(&tp->inet_conn, icsk_ca_state);
	struct lean_seq *s = bpf_sk_storage_get(&floor_seqs, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!s)
		return NULL;
	if (s->sport != sk->__sk_common.skc_num || s->dport != sk->__sk_common.skc_dport ||
	    s->ops != ops) {
		s->sport = sk->__sk_common.skc_num;
		s->dport = sk->__sk_common.skc_dport;
		s->ops = ops;
		s->flow = bpf_get_socket_cookie(sk);
	}
	s->seq[v & 1]++;
	s->chained[v & 1] = s->chained[v & 1] && s->last[v & 1] == old ? 1 : 2;
	s->last[v & 1] = ca_state;
	return s;
}

static __always_inline void lean_fill(struct lean_event *e, struct lean_seq *s,
				      struct tcp_sock *tp, __u8 ca_state, int v)
{
	e->ktime_ns = bpf_ktime_get_ns();
	e->cookie = s->flow;
	FILL_COUNTERS(e, tp, DIRECT, 4000000);
	e->seq = s->seq[v & 1];
	e->cpu = bpf_get_smp_processor_id();
	e->old_state = s->last[v & 1];
	e->new_state = ca_state;
	e->kernel_gap = s->chained[v & 1] == 2;
	e->facts_seq[0] = s->seq[v & 1];
	e->facts_seq[1] = s->seq[v & 1] >> 8;
	e->facts_seq[2] = s->seq[v & 1] >> 16;
}

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(floor_lean_reads, struct sock *sk, __u8 ca_state)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	struct lean_event e;
	struct lean_seq *s;

	if (!tp || !(s = lean_check(sk, tp, ca_state, 0)))
		return 0;
	lean_fill(&e, s, tp, ca_state, 0);
	lean_sink ^= e.ktime_ns ^ e.cookie ^ e.snd_cwnd ^ e.total_retrans ^ e.cpu;
	return 0;
}

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(floor_lean_ring, struct sock *sk, __u8 ca_state)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	struct lean_event *e;
	struct lean_seq *s;

	if (!tp || !(s = lean_check(sk, tp, ca_state, 1)))
		return 0;
	e = bpf_ringbuf_reserve(&floor_rb, sizeof(*e), 0);
	if (!e)
		return 0;
	lean_fill(e, s, tp, ca_state, 1);
	submit_watermarked(&floor_rb, e);
	return 0;
}

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(floor_lean_percpu, struct sock *sk, __u8 ca_state)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	__u32 cpu = bpf_get_smp_processor_id();
	struct ring_pos *p = &floor_pos[cpu & (POS_SLOTS - 1)];
	struct lean_producer lp = {
		.reserved = &p->reserved,
		.committed = &p->committed,
		.tail_seen = &p->tail_seen,
		.tail = &floor_tails[cpu & (POS_SLOTS - 1)].tail,
		.base = cpu * SLOTS,
		.slots = SLOTS,
	};
	struct lean_event *e;
	struct lean_seq *s;

	if (!tp || !(s = lean_check(sk, tp, ca_state, 1)))
		return 0;
	e = cpu < POS_SLOTS ? lean_begin(&floor_slots, &lp) : NULL;
	if (!e) {
		p->lost++;
		return 0;
	}
	lean_fill(e, s, tp, ca_state, 1);
	lean_finish(&lp);
	return 0;
}

/*
 * The parts of tcpcong's lean path, each alone (`floor part NAME` attaches
 * one of them beside the empty program): its socket's storage and the TCP
 * counters it copies. Alone, each pays its own
 * cache misses, so that the parts' costs say which dominate (their sum
 * counts a line two of them share twice).
 */
__u64 part_sink;

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(part_storage, struct sock *sk, __u8 ca_state)
{
	struct lean_seq *s = bpf_sk_storage_get(&floor_seqs, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (s)
		part_sink ^= ++s->seq[0];
	return 0;
}

SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(part_counters, struct sock *sk, __u8 ca_state)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	struct lean_event e;

	if (!tp)
		return 0;
	FILL_COUNTERS(&e, tp, DIRECT, 4000000);
	part_sink ^= e.snd_cwnd ^ e.snd_ssthresh ^ e.srtt_us ^ e.rto_us ^ e.packets_out ^
		     e.retrans_out ^ e.lost_out ^ e.sacked_out ^ e.total_retrans ^
		     BPF_CORE_READ_BITFIELD(&tp->inet_conn, icsk_ca_state);
	return 0;
}
