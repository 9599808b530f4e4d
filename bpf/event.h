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
};

/* The TCP counters every record carries, in both records' order. */
#define TCP_COUNTERS            \
	__u32 snd_cwnd;         \
	__u32 snd_ssthresh;     \
	__u32 srtt_us;          \
	__u32 mss;              \
	__u32 packets_out;      \
	__u32 retrans_out;      \
	__u32 lost_out;         \
	__u32 sacked_out;       \
	__u32 total_retrans;

/* The TCP counters (TCP_COUNTERS) into a record of either kind, through
 * the loads `ld` of the program type. */
#define FILL_COUNTERS(e, tp, ld)                              \
	do {                                                  \
		(e)->snd_cwnd = ld(tp, snd_cwnd);             \
		(e)->snd_ssthresh = ld(tp, snd_ssthresh);     \
		(e)->srtt_us = ld(tp, srtt_us) >> 3;          \
		(e)->mss = ld(tp, mss_cache);                 \
		(e)->packets_out = ld(tp, packets_out);       \
		(e)->retrans_out = ld(tp, retrans_out);       \
		(e)->lost_out = ld(tp, lost_out);             \
		(e)->sacked_out = ld(tp, sacked_out);         \
		(e)->total_retrans = ld(tp, total_retrans);   \
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
	/* No hole anywhere: the perf path hands over stack memory, which must
	 * be written in full. */
	__u32 pad2;
};


/*
 * What a ca_state call of a known flow hands over when nothing fixed
 * about the flow (addresses, ports, namespace, cgroup, congestion control)
 * changed since its last full record: user space takes those from that
 * record. Half the size of struct event (one cache line), and none of its
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
 * Commits a reserved record, waking the consumer only when this record
 * crosses the fill watermark: a wake-up per event costs an IPI (~8 us here),
 * and below the watermark the consumer's own timer drains the buffer.
 */
static __always_inline void submit_watermarked(void *rb, void *e, __u64 wakeup_bytes)
{
	__u64 avail = bpf_ringbuf_query(rb, BPF_RB_AVAIL_DATA);
	__u64 flags = BPF_RB_NO_WAKEUP;

	/* The window is two of the largest records wide: one record always
	 * lands in it as the ring fills. */
	if (avail >= wakeup_bytes && avail < wakeup_bytes + 2 * (sizeof(struct event) + 8))
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

#endif /* TCPCONG_EVENT_H */
