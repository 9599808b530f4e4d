// SPDX-License-Identifier: GPL-2.0
/*
 * tcpcong's capture programs: one event per call of tcp_set_ca_state()
 * (tp_btf/tcp_cong_state_set) and, for flow lifecycle, one per TCP state
 * change (tp_btf/inet_sock_set_state).
 *
 * Cost is the design constraint: this runs in softirq for every ACK that
 * moves a congestion state. So all socket fields are read by direct
 * (BTF-typed) loads rather than bpf_probe_read helper calls, filtering
 * happens before anything is reserved, and the consumer is woken only when
 * the ring buffer crosses a fill watermark (waking per event costs an IPI,
 * ~8 us here); a timer in user space collects the rest.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "event.h"

char LICENSE[] SEC("license") = "GPL";

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
const volatile __u64 wakeup_bytes = 1 << 20;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 << 20);
} events_rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} events_perf SEC(".maps");

/*
 * Flows that passed a port filter. By the time a socket enters TCP_CLOSE
 * the kernel has released its local port (skc_num is 0), so the port
 * filter alone would drop every flow's close event; remembered flows keep
 * theirs. Only used when a port filter is set.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} port_matched SEC(".maps");

/* Ring-buffer reserve failures, per CPU so that counting never contends. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline bool port_in(__u16 port, __u16 lo, __u16 hi)
{
	return port >= lo && port <= hi;
}

/* The flow identity, read once and checked against the filters before
 * anything is reserved. */
struct ident {
	__u64 cgroup;
	__u32 netns;
	__u16 sport;
	__u16 dport;
	__u8 family;
};

static __always_inline bool flow_wanted(struct sock *sk, struct ident *id)
{
	__u16 family = sk->__sk_common.skc_family;

	if (family != AF_INET && family != AF_INET6)
		return false;
	id->family = family == AF_INET ? 4 : 6;
	if (family_only && id->family != family_only)
		return false;

	id->sport = sk->__sk_common.skc_num;
	id->dport = bpf_ntohs(sk->__sk_common.skc_dport);
	if (port_filtered) {
		__u64 cookie = bpf_get_socket_cookie(sk);

		if (port_in(id->sport, lport_lo, lport_hi) && port_in(id->dport, rport_lo, rport_hi)) {
			__u8 one = 1;

			/* A lookup is lock-free; only a flow's first event writes. */
			if (!bpf_map_lookup_elem(&port_matched, &cookie))
				bpf_map_update_elem(&port_matched, &cookie, &one, BPF_ANY);
		} else if (id->sport != 0 || !bpf_map_lookup_elem(&port_matched, &cookie)) {
			return false;
		}
	}

	id->netns = sk->__sk_common.skc_net.net->ns.inum;
	if (netns_only && id->netns != netns_only)
		return false;

	id->cgroup = sk->sk_cgrp_data.cgroup->kn->id;
	if (cgroup_only && id->cgroup != cgroup_only)
		return false;
	return true;
}

/* Writes every byte of `e` (the perf path passes stack memory, which the
 * verifier wants fully initialised). */
static __always_inline void fill(struct event *e, struct sock *sk, struct tcp_sock *tp,
				 const struct ident *id, __u8 kind, __u8 old, __u8 new)
{
	const struct tcp_congestion_ops *ops = tp->inet_conn.icsk_ca_ops;

	e->ktime_ns = bpf_ktime_get_ns();
	e->cookie = bpf_get_socket_cookie(sk);
	e->cgroup = id->cgroup;
	if (id->family == 4) {
		__u64 *s = (__u64 *)e->saddr, *d = (__u64 *)e->daddr;

		s[0] = sk->__sk_common.skc_rcv_saddr;
		s[1] = 0;
		d[0] = sk->__sk_common.skc_daddr;
		d[1] = 0;
	} else {
		__builtin_memcpy(e->saddr, sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(e->daddr, sk->__sk_common.skc_v6_daddr.in6_u.u6_addr8, 16);
	}
	e->netns = id->netns;
	e->snd_cwnd = tp->snd_cwnd;
	e->snd_ssthresh = tp->snd_ssthresh;
	e->srtt_us = tp->srtt_us >> 3;
	e->mss = tp->mss_cache;
	e->packets_out = tp->packets_out;
	e->retrans_out = tp->retrans_out;
	e->lost_out = tp->lost_out;
	e->sacked_out = tp->sacked_out;
	e->total_retrans = tp->total_retrans;
	if (ops) {
		__builtin_memcpy(e->cong_algo, ops->name, sizeof(e->cong_algo));
	} else {
		__u64 *a = (__u64 *)e->cong_algo;

		a[0] = 0;
		a[1] = 0;
	}
	e->sport = id->sport;
	e->dport = id->dport;
	e->cpu = bpf_get_smp_processor_id();
	e->family = id->family;
	e->kind = kind;
	e->old_state = old;
	e->new_state = new;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
}

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&lost, &zero);

	if (n)
		*n += 1;
}

static __always_inline void emit(void *ctx, struct sock *sk, struct tcp_sock *tp,
				 const struct ident *id, __u8 kind, __u8 old, __u8 new)
{
	struct event *e;

	if (!use_ringbuf) {
		struct event ev;

		fill(&ev, sk, tp, id, kind, old, new);
		/* A full perf buffer is reported by its lost callback. */
		bpf_perf_event_output(ctx, &events_perf, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
		return;
	}

	e = bpf_ringbuf_reserve(&events_rb, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return;
	}
	fill(e, sk, tp, id, kind, old, new);

	submit_watermarked(&events_rb, e, wakeup_bytes);
}

/* Runs before the kernel stores the new state, so the old one is still there. */
SEC("tp_btf/tcp_cong_state_set")
int BPF_PROG(on_cong_state_set, struct sock *sk, __u8 ca_state)
{
	struct ident id;
	struct tcp_sock *tp;

	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !flow_wanted(sk, &id))
		return 0;
	emit(ctx, sk, tp, &id, KIND_CA_STATE,
	     BPF_CORE_READ_BITFIELD(&tp->inet_conn, icsk_ca_state), ca_state);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_inet_sock_set_state, struct sock *sk, int oldstate, int newstate)
{
	struct ident id;
	struct tcp_sock *tp;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || !flow_wanted(sk, &id))
		return 0;
	emit(ctx, sk, tp, &id, KIND_TCP_STATE, oldstate, newstate);
	return 0;
}
