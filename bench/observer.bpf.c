// SPDX-License-Identifier: GPL-2.0
/*
 * An independent observer of the kernel's congestion-state calls, for the
 * tests: a classic tracepoint program (perf_event attached, run by
 * trace_call_bpf, not by the raw tracepoint path tcpcong's programs take)
 * on tcp:tcp_cong_state_set. Per socket it keeps the state the last call
 * set; a call that finds the socket in another state is a transition the
 * kernel made without announcing it, and is handed to user space. And,
 * per socket, the calls of tcp:tcp_retransmit_skb and the segments they
 * resent.
 */
#include "../bpf/kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define TCP_CLOSE 7

/* The tracepoints' records: only the fields read, relocated by name. */
struct trace_event_raw_tcp_cong_state_set {
	const void *skaddr;
	__u8 cong_state;
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_retransmit_skb___observed {
	const void *skaddr;
	const void *skbaddr;
} __attribute__((preserve_access_index));

/* The kernel types reason as its enum: so must a relocated read. */
enum skb_drop_reason___observed {
	SKB_DROP_REASON_NOT_SPECIFIED___observed = 2,
};

struct trace_event_raw_kfree_skb___observed {
	void *skbaddr;
	enum skb_drop_reason___observed reason;
} __attribute__((preserve_access_index));

struct trace_event_raw_inet_sock_set_state {
	const void *skaddr;
	int newstate;
} __attribute__((preserve_access_index));

/* The socket cookie, once anything asked for it (tcpcong's programs do):
 * to name the socket as the recording does. */
struct sock_common___cookie {
	struct {
		__s64 counter;
	} skc_cookie;
} __attribute__((preserve_access_index));

struct brk {
	__u64 ktime_ns;
	__u64 cookie;
	__u8 found;
	__u8 new_state;
	__u8 last;
	__u8 pad[5];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} last_set SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} breaks SEC(".maps");

__u64 calls;
__u64 unreported;

/* The kernel's jiffy in nanoseconds (set by user space): the
 * retransmission timeout as tcpcong writes it, in microseconds. */
const volatile __u32 jiffy_ns = 0;

/* Per socket, sums over its calls of what tcpcong's ca_state rows carry
 * about causes (their names), to hold a recording's rows to. */
struct causes {
	__u64 calls;
	__u64 delivered_ce;
	__u64 dsack_dups;
	__u64 reord_seen;
	__u64 backoff;
	__u64 rto_us;
	__u64 undo;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct causes);
} causes SEC(".maps");

__u64 causes_unrecorded;

/* The table's entry for `key`, created from `zero` if new; NULL, and
 * counted in `unrecorded`, when the table has no room. */
static __always_inline void *entry_of(void *map, __u64 *key, const void *zero, __u64 *unrecorded)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (!v) {
		bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, key);
		if (!v)
			__sync_fetch_and_add(unrecorded, 1);
	}
	return v;
}

#define TCP_CA_DISORDER 1
#define TCP_CA_RECOVERY 3
#define TCP_CA_LOSS 4

/* The call's values, read here by probe reads, on the classic tracepoint. */
static void add_causes(__u64 sk, __u8 found, __u8 set)
{
	struct tcp_sock *tp = (void *)sk;
	__u64 cookie = BPF_CORE_READ((struct sock_common___cookie *)sk, skc_cookie.counter);
	struct causes fresh = {}, *c = entry_of(&causes, &cookie, &fresh, &causes_unrecorded);

	if (!c)
		return;
	c->calls++;
	c->delivered_ce += BPF_CORE_READ(tp, delivered_ce);
	c->dsack_dups += BPF_CORE_READ(tp, dsack_dups);
	c->reord_seen += BPF_CORE_READ(tp, reord_seen);
	c->backoff += BPF_CORE_READ(tp, inet_conn.icsk_backoff);
	c->rto_us += (__u64)BPF_CORE_READ(tp, inet_conn.icsk_rto) * jiffy_ns / 1000;
	/* Out of recovery or loss with the undo marker cleared. */
	if ((found == TCP_CA_RECOVERY || found == TCP_CA_LOSS) && set <= TCP_CA_DISORDER &&
	    !BPF_CORE_READ(tp, undo_marker))
		c->undo++;
}

struct resent {
	__u64 calls;
	__u64 segs;
};

/* Socket cookie -> its retransmissions. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct resent);
} resent SEC(".maps");

/* Retransmissions the table had no room for. */
__u64 resent_unrecorded;

/* TCP packets dropped, by network namespace (the device's) and reason. */
struct drop_key {
	__u32 netns;
	__u32 reason;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct drop_key);
	__type(value, __u64);
} dropped SEC(".maps");

__u64 dropped_unrecorded;

SEC("tracepoint/tcp/tcp_cong_state_set")
int observe_cong_state(struct trace_event_raw_tcp_cong_state_set *ctx)
{
	__u64 sk = (__u64)BPF_CORE_READ(ctx, skaddr);
	__u8 set = BPF_CORE_READ(ctx, cong_state);
	struct inet_connection_sock *icsk = (void *)sk;
	__u8 found = BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ca_state);
	__u8 *last = bpf_map_lookup_elem(&last_set, &sk);

	__sync_fetch_and_add(&calls, 1);
	add_causes(sk, found, set);
	if (last && *last != found) {
		struct brk *b = bpf_ringbuf_reserve(&breaks, sizeof(*b), 0);

		if (b) {
			b->ktime_ns = bpf_ktime_get_ns();
			b->cookie = BPF_CORE_READ((struct sock_common___cookie *)sk, skc_cookie.counter);
			b->found = found;
			b->new_state = set;
			b->last = *last;
			__builtin_memset(b->pad, 0, sizeof(b->pad));
			bpf_ringbuf_submit(b, 0);
		} else {
			__sync_fetch_and_add(&unreported, 1);
		}
	}
	bpf_map_update_elem(&last_set, &sk, &set, BPF_ANY);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int observe_sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)BPF_CORE_READ(ctx, skaddr);

	if (BPF_CORE_READ(ctx, newstate) == TCP_CLOSE)
		bpf_map_delete_elem(&last_set, &sk);
	return 0;
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int observe_retransmit(struct trace_event_raw_tcp_retransmit_skb___observed *ctx)
{
	struct sock_common___cookie *sk = (void *)BPF_CORE_READ(ctx, skaddr);
	struct sk_buff *skb = (void *)BPF_CORE_READ(ctx, skbaddr);
	__u64 cookie = BPF_CORE_READ(sk, skc_cookie.counter);
	__u16 segs = BPF_CORE_READ((struct tcp_skb_cb *)&skb->cb, tcp_gso_segs);
	struct resent fresh = {}, *r = entry_of(&resent, &cookie, &fresh, &resent_unrecorded);

	if (!r)
		return 0;
	__sync_fetch_and_add(&r->calls, 1);
	__sync_fetch_and_add(&r->segs, segs);
	return 0;
}

SEC("tracepoint/skb/kfree_skb")
int observe_drop(struct trace_event_raw_kfree_skb___observed *ctx)
{
	struct sk_buff *skb = (void *)BPF_CORE_READ(ctx, skbaddr);
	struct drop_key k = { .reason = BPF_CORE_READ(ctx, reason) };
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 proto = BPF_CORE_READ(skb, protocol);
	__u8 l4 = 0;
	__u64 one = 1, *n;

	/* TCP over IP only, as tcpcong records. */
	if (proto == __builtin_bswap16(0x0800))
		bpf_probe_read_kernel(&l4, 1, head + nh + 9);
	else if (proto == __builtin_bswap16(0x86DD))
		bpf_probe_read_kernel(&l4, 1, head + nh + 6);
	if (l4 != 6)
		return 0;
	k.netns = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
	n = bpf_map_lookup_elem(&dropped, &k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	if (!bpf_map_update_elem(&dropped, &k, &one, BPF_NOEXIST))
		return 0;
	/* Another CPU made the entry between the lookup and the update (a
	 * race, counted as a full table once in CI): add to that one. */
	n = bpf_map_lookup_elem(&dropped, &k);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		__sync_fetch_and_add(&dropped_unrecorded, 1);
	return 0;
}
