/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every capture program does with a socket: filter it, fill an event,
 * hand it over, and (for the fallback modes) turn calls of the kernel's
 * state-changing functions into transitions.
 *
 * Included once per way of reading kernel memory, because the cheap way is
 * not allowed everywhere: BTF-typed programs (tp_btf, fentry/fexit) load
 * socket fields directly, kprobes must go through bpf_probe_read_kernel.
 * The includer defines:
 *
 *   NAME(f)              this instance's name for function f
 *   LD(p, f)             the value of p->f
 *   LD_BITS(p, f)        the value of the bitfield p->f
 *   LD_BYTES(dst, p, f)  copies the array p->f into the array dst
 *   TCP_SOCK(sk)         sk as a struct tcp_sock *, or NULL
 *   COOKIE(sk)           the socket cookie (called only when use_cookie)
 *   PORTS_SEEN(sk, flow) whether the flow passed the port filter before
 *   PORTS_PASS(sk, flow) remembers that it did
 *
 * No include guard, on purpose.
 */

static __always_inline __u64 NAME(flow_of)(struct sock *sk)
{
	return use_cookie ? COOKIE(sk) : assigned_flow(sk);
}

static __always_inline __u64 NAME(cgroup_of)(struct sock *sk)
{
	struct sock_cgroup_data___old *old;
	struct kernfs_node *kn;
	struct cgroup *cg;
	__u64 word;

	if (bpf_core_field_exists(sk->sk_cgrp_data.cgroup)) {
		cg = LD(sk, sk_cgrp_data.cgroup);
		kn = LD(cg, kn);
		return LD(kn, id);
	}
	old = (void *)&sk->sk_cgrp_data;
	word = LD(old, val);
	/* Tagged net_prio/net_cls data: the socket's cgroup is not recorded. */
	if (word & 1)
		return 0;
	return BPF_CORE_READ((struct cgroup *)word, kn, id);
}

static __always_inline bool NAME(flow_wanted)(struct sock *sk, struct ident *id)
{
	__u16 family = LD(sk, __sk_common.skc_family);
	struct net *net;

	if (family != AF_INET && family != AF_INET6)
		return false;
	id->family = family == AF_INET ? 4 : 6;
	if (family_only && id->family != family_only)
		return false;

	id->flow = 0;
	id->seq = 0;
	id->kernel_gap = 0;
	id->sport = LD(sk, __sk_common.skc_num);
	id->dport = bpf_ntohs(LD(sk, __sk_common.skc_dport));
	if (port_filtered) {
		id->flow = NAME(flow_of)(sk);
		if (port_in(id->sport, lport_lo, lport_hi) && port_in(id->dport, rport_lo, rport_hi))
			PORTS_PASS(sk, id->flow);
		else if (id->sport != 0 || !PORTS_SEEN(sk, id->flow))
			return false;
	}

	net = LD(sk, __sk_common.skc_net.net);
	id->netns = LD(net, ns.inum);
	if (netns_only && id->netns != netns_only)
		return false;

	id->cgroup = NAME(cgroup_of)(sk);
	if (cgroup_only && id->cgroup != cgroup_only)
		return false;
	/* Without a port filter, only flows that pass get an id: unwanted
	 * ones cost no map entry. */
	if (!port_filtered)
		id->flow = NAME(flow_of)(sk);
	id->owner = NULL;
	return true;
}

/* The socket's inode (as /proc/PID/fd links name it), for user space to
 * find an owner the programs did not see; 0 for a socket with no file (an
 * accepted socket still in the accept queue). */
static __always_inline __u64 NAME(sock_ino)(struct sock *sk)
{
	struct socket *so = LD(sk, sk_socket);
	struct inode *ino;
	struct file *f;

	if (!so)
		return 0;
	f = LD(so, file);
	if (!f)
		return 0;
	ino = LD(f, f_inode);
	return ino ? LD(ino, i_ino) : 0;
}

/* Writes every byte of `e` (the perf path passes stack memory, which the
 * verifier wants fully initialised). `r`: a retransmission's, or NULL. */
static __always_inline void NAME(fill)(struct event *e, struct sock *sk, struct tcp_sock *tp,
				       const struct ident *id, __u8 kind, __u8 old, __u8 new,
				       const struct resent *r)
{
	const struct tcp_congestion_ops *ops = LD(tp, inet_conn.icsk_ca_ops);

	e->ktime_ns = bpf_ktime_get_ns();
	e->cookie = id->flow;
	e->cgroup = id->cgroup;
	if (id->family == 4) {
		__u64 *s = (__u64 *)e->saddr, *d = (__u64 *)e->daddr;

		/* Both addresses in one read: daddr is the low half. */
		__u64 pair = LD(sk, __sk_common.skc_addrpair);

		s[0] = pair >> 32;
		s[1] = 0;
		d[0] = pair & 0xffffffff;
		d[1] = 0;
	} else {
		LD_BYTES(e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		LD_BYTES(e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
	e->netns = id->netns;
	FILL_COUNTERS(e, tp, LD, nsec_per_jiffy);
	if (ops) {
		LD_BYTES(e->cong_algo, ops, name);
	} else {
		__u64 *a = (__u64 *)e->cong_algo;

		a[0] = 0;
		a[1] = 0;
	}
	if (id->owner) {
		e->pid = id->owner->pid;
		__builtin_memcpy(e->comm, id->owner->comm, sizeof(e->comm));
		e->sock_ino = 0;
	} else {
		__u64 *c = (__u64 *)e->comm;

		e->pid = 0;
		c[0] = 0;
		c[1] = 0;
		e->sock_ino = NAME(sock_ino)(sk);
	}
	e->sport = id->sport;
	e->dport = id->dport;
	e->cpu = bpf_get_smp_processor_id();
	e->family = id->family;
	e->kind = kind;
	e->old_state = old;
	e->new_state = new;
	e->kernel_gap = id->kernel_gap;
	e->pad = 0;
	e->seq = id->seq;
	e->segs = r ? r->segs : 0;
	e->tcp_seq = r ? r->seq : 0;
	e->err = r ? r->err : 0;
	__builtin_memset(e->location, 0, sizeof(e->location));
	e->drop_ip = 0;
	e->mss = LD(tp, mss_cache);
	e->delivered_ce = LD(tp, delivered_ce);
	e->dsack_dups = LD(tp, dsack_dups);
	e->reord_seen = LD(tp, reord_seen);
	e->backoff = LD(tp, inet_conn.icsk_backoff);
	e->undo = kind == KIND_CA_STATE && undone(LD(tp, undo_marker), old, new);
	__builtin_memset(e->tail, 0, sizeof(e->tail));
}

/* Whether the record was handed over. */
static __always_inline bool NAME(emit)(void *ctx, struct sock *sk, struct tcp_sock *tp,
				       const struct ident *id, __u8 kind, __u8 old, __u8 new,
				       const struct resent *r)
{
	struct event *e;

	if (!use_ringbuf) {
		struct event ev;

		NAME(fill)(&ev, sk, tp, id, kind, old, new, r);
		/* A full perf buffer is reported by its lost callback. */
		return !bpf_perf_event_output(ctx, &events_perf, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
	}

	e = bpf_ringbuf_reserve(&events_rb, sizeof(*e), 0);
	if (!e) {
		count_lost();
		return false;
	}
	NAME(fill)(e, sk, tp, id, kind, old, new, r);

	submit_watermarked(&events_rb, e);
	return true;
}

static __always_inline void NAME(transition)(void *ctx, struct sock *sk, struct tcp_sock *tp,
					     __u8 old, __u8 new)
{
	struct ident id;

	if (NAME(flow_wanted)(sk, &id)) {
		id.owner = owner_of(sk);
		NAME(emit)(ctx, sk, tp, &id, KIND_CA_STATE, old, new, NULL);
	}
}

/* Reports the state a hooked call found or left, when it is news. */
static __always_inline void NAME(note)(void *ctx, struct sock *sk, struct tcp_sock *tp,
				       struct call *c, __u8 now, bool always)
{
	if (now != c->last || always) {
		NAME(transition)(ctx, sk, tp, c->last, now);
		c->last = now;
	}
}

/*
 * Entry to one of the functions that change a socket's congestion state.
 * The outermost call on a socket only notes the state; a nested call (the
 * outer function calls another hooked one) first reports a change the
 * outer one made before it.
 */
static __always_inline void NAME(call_enter)(void *ctx, struct sock *sk)
{
	struct tcp_sock *tp = TCP_SOCK(sk);
	__u64 key = (__u64)sk;
	struct call *c;
	__u8 now;

	if (!tp)
		return;
	now = LD_BITS(&tp->inet_conn, icsk_ca_state);
	c = bpf_map_lookup_elem(&calls, &key);
	if (!c) {
		struct call fresh = { .last = now, .depth = 1 };

		/* A full table would lose this call's transition. */
		if (bpf_map_update_elem(&calls, &key, &fresh, BPF_NOEXIST))
			count_lost();
		return;
	}
	c->depth++;
	NAME(note)(ctx, sk, tp, c, now, false);
}

/*
 * Return from such a function: the state it leaves is reported if it
 * differs from the one last noted, and always for tcp_enter_loss
 * (`repeats`), which sets Loss even in Loss, as the tracepoint reports.
 */
static __always_inline void NAME(call_exit)(void *ctx, struct sock *sk, bool repeats)
{
	struct tcp_sock *tp = TCP_SOCK(sk);
	__u64 key = (__u64)sk;
	struct call *c;

	if (!tp)
		return;
	c = bpf_map_lookup_elem(&calls, &key);
	/* No entry: the call began before the programs were attached. */
	if (!c)
		return;
	NAME(note)(ctx, sk, tp, c, LD_BITS(&tp->inet_conn, icsk_ca_state), repeats);
	if (c->depth > 1)
		c->depth--;
	else
		bpf_map_delete_elem(&calls, &key);
}
