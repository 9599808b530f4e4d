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
