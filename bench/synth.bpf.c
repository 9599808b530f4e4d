// SPDX-License-Identifier: GPL-2.0
/*
 * The benchmark's synthetic producer: emits schema-shaped events into
 * tcpcong record's own ring buffer (reused through a pin) along exactly the
 * capture's path (reserve, fill, watermark submit), `per_run` events each
 * time the benchmark runs it with BPF_PROG_TEST_RUN. Real TCP cannot
 * produce transitions fast enough to find the pipeline's limit.
 */
#include "../bpf/kernel_types.h"
#include <bpf/bpf_helpers.h>
#include "../bpf/event.h"

char LICENSE[] SEC("license") = "GPL";

#define FLOWS 1024

const volatile __u32 per_run = 256;
const volatile __u64 wakeup_bytes = 1 << 20;

__u64 emitted = 0;
__u64 reserve_failed = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 << 20);
} events_rb SEC(".maps");

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

static long emit_one(__u32 i, void *unused)
{
	struct event *e = bpf_ringbuf_reserve(&events_rb, sizeof(*e), 0);
	__u64 n, k;
	__u32 flow;

	if (!e) {
		__sync_fetch_and_add(&reserve_failed, 1);
		return 0;
	}
	n = __sync_fetch_and_add(&emitted, 1);
	flow = n % FLOWS;
	k = n / FLOWS;
	__builtin_memset(e, 0, sizeof(*e));
	e->ktime_ns = bpf_ktime_get_ns();
	e->cookie = 1000000 + flow;
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
	submit_watermarked(&events_rb, e, wakeup_bytes);
	return 0;
}

SEC("raw_tp")
int synth(void *ctx)
{
	bpf_loop(per_run, emit_one, NULL, 0);
	return 0;
}
