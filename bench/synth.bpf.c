// SPDX-License-Identifier: GPL-2.0
/*
 * The benchmark's synthetic producer: emits schema-shaped events into
 * tcpcong record's own ring buffer (reused through a pin) along exactly the
 * capture's path (reserve, fill, watermark submit), `per_run` events each
 * time the benchmark runs it with BPF_PROG_TEST_RUN. Real TCP cannot
 * produce transitions fast enough to find the pipeline's limit.
 *
 * With `lean`, as a capture hands over described flows: each flow's first
 * event is a full record, the others lean records into record's lean ring
 * of this CPU for the second program (lean_begin, lean_finish), whose
 * positions it finds in record's .bss (reused through a pin, at offsets
 * the caller sets). That ring is written by the capture only while its
 * first program is interrupted on this CPU, which cannot happen while this
 * program runs here.
 */
#include "../bpf/kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "../bpf/event.h"

char LICENSE[] SEC("license") = "GPL";

#define FLOWS 1024

const volatile __u32 per_run = 256;
const volatile bool lean = false;
/* Where cong_cpus and lean_tails are in record's .bss. */
const volatile __u32 cpus_at = 0;
const volatile __u32 tails_at = 0;

__u64 emitted = 0;
__u64 reserve_failed = 0;
/* Events attempted: emitted and failed. */
__u64 attempts = 0;

/* Record's ring buffer, reused through its pin. */
EVENTS_RB_MAP events_rb SEC(".maps");

/* Record's lean rings and .bss; sizes set by the caller. */
LEAN_RINGS_MAP lean_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 1);
} record_bss SEC(".maps");

/* A flow's k-th event moves it around open -> disorder -> recovery -> open,
 * so every flow's chain is consistent, as analyze expects. */
static __always_inline __u8 state_at(__u64 k)
{
	switch (k % 3) {
	case 0:
		return 0; /* open */
	case 1:
		return 1; /* disorder */
	default:
		return 3; /* recovery */
	}
}

#define COOKIE(flow) (1000000 + (flow))

/* Event k of a described flow, into this CPU's lean ring for the second
 * program; its facts are in the flow's first event (number 1). */
static void emit_lean(__u64 n, __u32 flow, __u64 k)
{
	__u32 cpu = bpf_get_smp_processor_id() & (LEAN_CPUS - 1), zero = 0;
	char *bss = bpf_map_lookup_elem(&record_bss, &zero);
	struct cong_cpu *c;
	struct lean_tail *t;
	struct lean_event *e;

	if (!bss) {
		__sync_fetch_and_add(&reserve_failed, 1);
		return;
	}
	c = (void *)(bss + cpus_at) + cpu * sizeof(*c);
	t = (void *)(bss + tails_at) + cpu * sizeof(*t);
	struct lean_producer p = lean_producer_at(c, t, cpu, 1);
	e = lean_begin(&lean_rings, &p);
	if (!e) {
		__sync_fetch_and_add(&reserve_failed, 1);
		return;
	}
	e->ktime_ns = bpf_ktime_get_ns();
	e->cookie = COOKIE(flow);
	e->snd_cwnd = 10 + (n & 63);
	e->snd_ssthresh = 20;
	e->srtt_us = 200 + flow;
	e->rto_us = 200000;
	e->packets_out = n & 31;
	e->retrans_out = 0;
	e->lost_out = 0;
	e->sacked_out = 0;
	e->total_retrans = k;
	e->seq = k + 1;
	e->cpu = cpu;
	e->old_state = state_at(k);
	e->new_state = state_at(k + 1);
	e->kernel_gap = 0;
	e->facts_seq[0] = 1;
	e->facts_seq[1] = 0;
	e->facts_seq[2] = 0;
	lean_finish(&p);
	__sync_fetch_and_add(&emitted, 1);
	if (lean_reached(&p, &c->looked[1], LEAN_DOORBELL_AT(p.slots))) {
		struct lean_doorbell d = {};

		bpf_ringbuf_output(&events_rb, &d, sizeof(d), BPF_RB_FORCE_WAKEUP);
	}
}

static long emit_one(__u32 i, void *unused)
{
	struct event *e;
	__u64 n, k;
	__u32 flow;

	n = __sync_fetch_and_add(&attempts, 1);
	flow = n % FLOWS;
	k = n / FLOWS;
	if (lean && k > 0) {
		emit_lean(n, flow, k);
		return 0;
	}
	e = bpf_ringbuf_reserve(&events_rb, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&reserve_failed, 1);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ktime_ns = bpf_ktime_get_ns();
	e->cookie = COOKIE(flow);
	e->cgroup = 1;
	e->saddr[0] = 10;
	e->saddr[2] = flow >> 8;
	e->saddr[3] = flow & 0xff;
	e->daddr[0] = 10;
	e->daddr[1] = 200;
	e->daddr[3] = 1;
	e->netns = 4026531840u;
	e->snd_cwnd = 10 + (n & 63);
	e->snd_ssthresh = 20;
	e->srtt_us = 200 + flow;
	e->rto_us = 200000;
	e->mss = 1448;
	e->packets_out = n & 31;
	e->total_retrans = k;
	__builtin_memcpy(e->cong_algo, "cubic", 6);
	e->sport = 30000 + flow;
	e->dport = 443;
	e->cpu = bpf_get_smp_processor_id();
	e->family = 4;
	e->kind = KIND_CA_STATE;
	e->old_state = state_at(k);
	e->new_state = state_at(k + 1);
	/* Numbered as a capture on the tracepoint numbers its sockets' events,
	 * full records too (every event one, as when each changes its flow's
	 * facts). */
	e->seq = k + 1;
	submit_watermarked(&events_rb, e);
	__sync_fetch_and_add(&emitted, 1);
	return 0;
}

SEC("raw_tp")
int synth(void *ctx)
{
	bpf_loop(per_run, emit_one, NULL, 0);
	return 0;
}
