/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The record every capture program emits, and how it is handed over. Shared
 * by the capture (tcpcong.bpf.c) and the benchmark's synthetic producer
 * (bench/synth.bpf.c), so that the benchmark drives exactly this path.
 */
#ifndef TCPCONG_EVENT_H
#define TCPCONG_EVENT_H

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

enum event_kind {
	KIND_CA_STATE = 0,
	KIND_TCP_STATE = 1,
	/* A socket's states as the snapshot program found them: old_state
	 * is its TCP state, new_state its congestion state. */
	KIND_SNAPSHOT = 2,
	/* The socket sent a segment again: old_state is its congestion
	 * state then, new_state why (enum resend). */
	KIND_RETRANSMIT = 3,
	/* This host dropped a segment of the flow: old_state is the
	 * direction (enum direction), new_state the kernel's reason (enum
	 * skb_drop_reason, REASON_OTHER beyond). */
	KIND_DROP = 4,
	/* The flow was reset: old_state is the direction (enum direction:
	 * tx sent, rx received), new_state a sent reset's reason (enum
	 * sk_rst_reason, REASON_OTHER beyond; 0 when received). */
	KIND_RESET = 5,
};

enum direction {
	DIRECTION_TX = 0,
	DIRECTION_RX = 1,
};

/* The last reason value a record carries: the kernel's beyond it are
 * this one. */
#define REASON_OTHER 255

/* Why a segment was sent again (see resend_kind in tcpcong.bpf.c). */
enum resend {
	RESEND_OTHER = 0,
	RESEND_FAST = 1,
	RESEND_LOSS = 2,
	RESEND_RTO = 3,
	RESEND_TLP = 4,
	RESEND_SYN = 5,
};

/* The TCP counters every record carries, in both records' order: those
 * that change from one event to the next. */
#define TCP_COUNTERS            \
	__u32 snd_cwnd;         \
	__u32 snd_ssthresh;     \
	__u32 srtt_us;          \
	__u32 rto_us;           \
	__u32 packets_out;      \
	__u32 retrans_out;      \
	__u32 lost_out;         \
	__u32 sacked_out;       \
	__u32 total_retrans;

/* The TCP counters (TCP_COUNTERS) into a record of either kind, through
 * the loads `ld` of the program type; `tick`: the nanoseconds of a jiffy,
 * in which the kernel keeps its retransmission timeout. */
#define FILL_COUNTERS(e, tp, ld, tick)                                       \
	do {                                                                 \
		(e)->snd_cwnd = ld(tp, snd_cwnd);                            \
		(e)->snd_ssthresh = ld(tp, snd_ssthresh);                    \
		(e)->srtt_us = ld(tp, srtt_us) >> 3;                         \
		(e)->rto_us = (__u64)ld(tp, inet_conn.icsk_rto) * (tick) / 1000; \
		(e)->packets_out = ld(tp, packets_out);                      \
		(e)->retrans_out = ld(tp, retrans_out);                      \
		(e)->lost_out = ld(tp, lost_out);                            \
		(e)->sacked_out = ld(tp, sacked_out);                        \
		(e)->total_retrans = ld(tp, total_retrans);                  \
	} while (0)
#define DIRECT(p, f) ((p)->f)

/*
 * User space decodes it with the skeleton's generated copy (see
 * event_layout in tcpcong.bpf.c). The fields after the addresses that are
 * plain values are columns of the same name: a new one is added here and
 * to the column list in src/event.rs.
 */
struct event {
	__u64 ktime_ns;
	__u64 cookie;
	__u64 cgroup;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 netns;
	TCP_COUNTERS
	char cong_algo[16];
	/* The owning process (see owners in tcpcong.bpf.c), or 0 and the
	 * socket's inode for user space to resolve. */
	__u64 sock_ino;
	__u32 pid;
	char comm[16];
	__u16 sport;
	__u16 dport;
	__u16 cpu;
	__u8 family;
	__u8 kind;
	__u8 old_state;
	__u8 new_state;
	__u8 kernel_gap;
	__u8 pad;
	__u32 seq;
	/* A retransmission's or drop's segments and the first one's sequence
	 * number, and a retransmission's send error (0 in other kinds'
	 * records). No hole anywhere: the perf path hands over stack memory,
	 * which must be written in full. */
	__u32 segs;
	__u32 tcp_seq;
	__s32 err;
	/* A drop's place, the kernel function that freed the segment, by
	 * name: user space names `drop_ip` here (empty in other kinds'
	 * records). */
	char location[32];
	__u64 drop_ip;
	/* What changes rarely, and tells why a flow's window moved: its
	 * segment size, the CE marks its peer echoed, the DSACKs it got, the
	 * reorderings it saw, and its timer's backoff (tcp_info's names).
	 * A lean record takes them from its flow's last full record, which
	 * holds only while none changed (see cause_unchanged). */
	__u32 mss;
	__u32 delivered_ce;
	__u32 dsack_dups;
	__u32 reord_seen;
	__u8 backoff;
	/* A ca_state record's transition out of recovery or loss undid the
	 * window's reduction (see undone): never a lean record's. */
	__u8 undo;
	__u8 tail[6];
};


/*
 * What a ca_state call of a known flow hands over when nothing fixed
 * about the flow (addresses, ports, namespace, cgroup, congestion control,
 * and what changes rarely: segment size, CE marks, DSACKs, reorderings,
 * backoff) changed since its last full record, and the call undid no
 * reduction: user space takes those from that record. One cache line (struct event is three and a half), and none of its
 * pointer chases.
 */
struct lean_event {
	__u64 ktime_ns;
	__u64 cookie;
	TCP_COUNTERS
	__u32 seq;
	__u16 cpu;
	__u8 old_state;
	__u8 new_state;
	__u8 kernel_gap;
	/* The low 24 bits of the event number of the full record it takes
	 * its flow's facts from: lean records come by their own rings, so
	 * user space may read one before that record, or after a newer one. */
	__u8 facts_seq[3];
};

/*
 * The ring buffer's fill watermark: an eighth of the 32 MiB ring (RING_BYTES
 * in load.rs), so that a consumer woken there has seven eighths left to
 * drain before a producer finds the ring full. One value for the capture's
 * programs and the benchmark's producer, which stands in for them. (A
 * smaller one, 256 KiB, with lean doorbells at a 32nd of their rings, kept
 * each round's events in the CPU's cache but did not save CPU: in 5
 * alternating pairs at 1,000,000 events/s, 0.90-1.22 of the CPU per event
 * lean and 0.98-1.09 full.)
 */
#define WAKEUP_BYTES (4 << 20)

/*
 * Commits a reserved record, waking the consumer only when this record
 * crosses the fill watermark: a wake-up per event costs an IPI (~8 us here),
 * and below the watermark the consumer's own timer drains the buffer.
 */
static __always_inline void submit_watermarked(void *rb, void *e)
{
	const __u64 wakeup_bytes = WAKEUP_BYTES;
	__u64 avail = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;

	/* The window is two of the largest records wide: one record always
	 * lands in it as the ring fills. */
	if (avail >= wakeup_bytes && avail < wakeup_bytes + 2 * (sizeof(struct event) + 8))
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

/*
 * The ring buffer's map (see events_rb in tcpcong.bpf.c), declared by this
 * one definition in the capture and in the benchmark's producer, which
 * reuses the capture's through a pin (as LEAN_RINGS_MAP). max_entries is
 * set by user space.
 */
#define EVENTS_RB_MAP                               \
	struct {                                    \
		__uint(type, BPF_MAP_TYPE_RINGBUF); \
		__uint(max_entries, 32 << 20);      \
	}

/*
 * Lean rings: per CPU, one for each program on the tracepoint (see
 * lean_rings in tcpcong.bpf.c), for up to LEAN_CPUS CPUs.
 */
#define LEAN_CPUS 1024
#define LEAN_PROGRAMS 2

/*
 * The lean rings' array map (see lean_rings in tcpcong.bpf.c), declared
 * by this one definition in the capture and in the benchmark's producer,
 * which reuses the capture's through a pin: the two stay compatible.
 * max_entries is set by user space.
 */
#define LEAN_RINGS_MAP                             \
	struct {                                   \
		__uint(type, BPF_MAP_TYPE_ARRAY);  \
		__uint(map_flags, BPF_F_MMAPABLE); \
		__uint(max_entries, 1);            \
		__type(key, __u32);                \
		__type(value, struct lean_event);  \
	}

/*
 * Per CPU, the one line of its own a lean record's path writes, and only
 * this CPU writes it: whether on_cong_state_set is running (see there),
 * the calls the second program took, and the producer side of the CPU's
 * lean rings (see lean_begin).
 */
struct cong_cpu {
	__u32 busy;
	/* Records per lean ring, set by user space before load (0: no lean
	 * records). Here rather than in read-only data, whose line a lean
	 * record would read for it alone. */
	__u32 slots;
	__u64 caught;
	__u64 reserved[LEAN_PROGRAMS];
	__u64 committed[LEAN_PROGRAMS];
	__u32 tail_seen[LEAN_PROGRAMS];
	/* Where each ring last looked whether to ring its doorbell. */
	__u32 looked[LEAN_PROGRAMS];
};

/* How far user space has read each of a CPU's lean rings, on a line of its
 * own: user space writes it. */
struct lean_tail {
	__u64 tail[LEAN_PROGRAMS];
	__u64 pad[8 - LEAN_PROGRAMS];
};

/*
 * A single-producer ring of `slots` records (a power of two), records
 * [base, base + slots) of the mmapable array `ring`, read by user space
 * through mmap. The producer's positions sit on a line only its CPU
 * writes; the consumer's `tail` on a line of its own, which the producer
 * reads only when its copy (`tail_seen`) says the ring is full, so that a
 * record costs no read of a line the consumer last wrote.
 *
 * Begun is a fetching atomic add, fully ordered on every JIT (a plain
 * atomic add orders nothing on arm64; its result is used, by an empty asm,
 * so that it stays a fetching add): a record is begun before it is
 * stamped. Finished is one too except on x86 (see lean_finish): a record
 * is written in full before user space can see it finished.
 * Positions are counts since the start; 32 bits of them are enough to
 * tell how full a ring is.
 */
struct lean_producer {
	__u64 *reserved;
	__u64 *committed;
	__u32 *tail_seen;
	const __u64 *tail;
	__u32 base;
	__u32 slots;
};

/* The producer of CPU `cpu`'s ring for program `level`, whose positions
 * are in `c` and whose consumer's tail is in `t`. */
static __always_inline struct lean_producer lean_producer_at(struct cong_cpu *c, struct lean_tail *t,
							     __u32 cpu, __u32 level)
{
	struct lean_producer p = {
		.reserved = &c->reserved[level],
		.committed = &c->committed[level],
		.tail_seen = &c->tail_seen[level],
		.tail = &t->tail[level],
		.base = (cpu * LEAN_PROGRAMS + level) * c->slots,
		.slots = c->slots,
	};
	return p;
}

/* The ring's record at position `pos` (NULL only to the verifier, which
 * cannot tell that the index is within the map). */
static __always_inline void *lean_record(void *ring, const struct lean_producer *p, __u32 pos)
{
	__u32 idx = p->base + (pos & (p->slots - 1));

	return bpf_map_lookup_elem(ring, &idx);
}

/* The next record, or NULL when the ring is full. */
static __always_inline void *lean_begin(void *ring, const struct lean_producer *p)
{
	__u32 head = *p->reserved;
	__u64 begun;
	void *e;

	if (head - *p->tail_seen >= p->slots) {
		*p->tail_seen = *(volatile const __u64 *)p->tail;
		if (head - *p->tail_seen >= p->slots)
			return NULL;
	}
	e = lean_record(ring, p, head);
	if (!e)
		return NULL;
	begun = __sync_fetch_and_add(p->reserved, 1);
	asm volatile("" : : "r"(begun) : "memory");
	return e;
}

/*
 * On x86 stores become visible in program order, so a plain store of the
 * count publishes the record written before it, and the CPU goes on while
 * the record's line is still on its way: a locked add would wait for that
 * line here. Only the ring's producer writes the count.
 */
static __always_inline void lean_finish(const struct lean_producer *p)
{
#if defined(__TARGET_ARCH_x86)
	__u64 done = *p->committed + 1;

	asm volatile("" : : : "memory");
	*(volatile __u64 *)p->committed = done;
#else
	__u64 done = __sync_fetch_and_add(p->committed, 1);

	asm volatile("" : : "r"(done) : "memory");
#endif
}

/*
 * Writes into the next record's line, so that it is fetched for writing
 * now, after this record, while the kernel goes on, rather than when the
 * next record is filled: each record is a line of its own, last read by
 * the consumer on another CPU. Only a free record is touched: the cached
 * tail is never ahead of the consumer's, and user space reads no record
 * beyond the committed count. Call after lean_finish.
 */
static __always_inline void lean_warm_next(void *ring, const struct lean_producer *p)
{
	__u32 next = *p->reserved;
	__u64 *e;

	if (next - *p->tail_seen >= p->slots)
		return;
	e = lean_record(ring, p, next);
	if (e)
		*(volatile __u64 *)e = 0;
}

/*
 * Whether the ring holds `mark` records user space has not read, looked at
 * once in `mark` records (`looked`: the count when it last was), with a
 * fresh tail. Call after lean_begin.
 */
static __always_inline bool lean_reached(const struct lean_producer *p, __u32 *looked, __u32 mark)
{
	__u32 head = *p->reserved;

	if (head - *looked < mark)
		return false;
	*looked = head;
	*p->tail_seen = *(volatile const __u64 *)p->tail;
	return head - *p->tail_seen >= mark;
}

/*
 * Lean rings wake nobody: a ring a quarter full hands this over the ring
 * or perf buffer to wake user space before the poll's timeout would (a
 * ring of 4,096 records, 64 CPUs' share, fills in 50 ms at 80,000 events a
 * second). User space knows it by its size, and skips it.
 */
struct lean_doorbell {
	__u64 zero;
};
#define LEAN_DOORBELL_AT(slots) ((slots) / 4)

/*
 * The sizes user space and the cache-line design rely on. A lean record is
 * one line; a CPU's producer line and its consumer's tails are one line
 * each, so that no two CPUs, nor producer and consumer, share a line; user
 * space tells a doorbell from a record by its size alone; and a full
 * record has no padding the compiler could add (the perf path hands over
 * stack memory, written in full).
 */
_Static_assert(sizeof(struct lean_event) == 64, "a lean record is one cache line");
_Static_assert(sizeof(struct cong_cpu) == 64, "a CPU's producer positions are one cache line");
_Static_assert(sizeof(struct lean_tail) == 64, "a CPU's consumer tails are one cache line");
_Static_assert(sizeof(struct lean_doorbell) != sizeof(struct event) &&
		       sizeof(struct lean_doorbell) != sizeof(struct lean_event),
	       "a doorbell is told from records by its size");
_Static_assert(sizeof(struct event) % 8 == 0, "a full record ends on its alignment, without a tail hole");
_Static_assert((LEAN_CPUS & (LEAN_CPUS - 1)) == 0, "CPUs are masked into LEAN_CPUS");

#endif /* TCPCONG_EVENT_H */
