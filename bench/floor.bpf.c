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
