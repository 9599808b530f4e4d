/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types tcpcong's BPF programs read, declared by hand for
 * CO-RE instead of a multi-megabyte vmlinux.h.
 *
 * Only member names and types matter: preserve_access_index makes clang
 * record every access as a relocation that libbpf resolves against the
 * running kernel's BTF at load time, so member order and the structs' real
 * sizes are irrelevant here, and members that the kernel keeps inside
 * anonymous unions can be declared flat.
 */
#ifndef TCPCONG_KERNEL_TYPES_H
#define TCPCONG_KERNEL_TYPES_H

/* This header stands in for vmlinux.h: libbpf's bpf_tracing.h then names
 * the kernel's struct pt_regs members (di, si, ...) for kprobes. */
#define __VMLINUX_H__

typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_SK_STORAGE = 24,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_F_NO_PREALLOC = 1,
	BPF_F_MMAPABLE = 1024,
};

enum {
	BPF_SK_STORAGE_GET_F_CREATE = 1,
};

enum {
	BPF_F_CURRENT_CPU = 0xffffffffULL,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
};

#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
};

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

struct kernfs_node {
	__u64 id;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct sock_cgroup_data {
	struct cgroup *cgroup;
};

/* Older kernels (5.10 among them) keep the socket's cgroup as a tagged
 * word: a struct cgroup pointer when the low bit is clear, net_prio/net_cls
 * data when it is set. */
struct sock_cgroup_data___old {
	__u64 val;
};

struct sock_common {
	__u64 skc_addrpair;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	/* sk_flags, as the kernel names it through a macro. */
	unsigned long skc_flags;
	struct {
		struct net *net;
	} skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct inode {
	unsigned long i_ino;
};

struct file {
	void *private_data;
	struct inode *f_inode;
};

struct socket;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	struct sock_cgroup_data sk_cgrp_data;
	struct socket *sk_socket;
};

struct socket {
	struct file *file;
	struct sock *sk;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

struct task_struct {
	struct task_struct *group_leader;
	struct files_struct *files;
	char comm[16];
};

struct tcp_congestion_ops {
	char name[16];
};

struct inet_connection_sock {
	const struct tcp_congestion_ops *icsk_ca_ops;
	__u8 icsk_ca_state: 5;
	__u8 icsk_ca_initialized: 1;
	__u8 icsk_ca_setsockopt: 1;
	__u8 icsk_ca_dst_locked: 1;
	__u8 icsk_pending;
	__u8 icsk_backoff;
	__u32 icsk_rto;
};

struct tcp_sock {
	struct inet_connection_sock inet_conn;
	__u32 mss_cache;
	__u32 snd_cwnd;
	__u32 snd_ssthresh;
	__u32 srtt_us;
	__u32 packets_out;
	__u32 retrans_out;
	__u32 lost_out;
	__u32 sacked_out;
	__u32 total_retrans;
	__u32 snd_wnd;
	__u32 delivered_ce;
	__u32 dsack_dups;
	__u32 reord_seen;
	__u32 undo_marker;
	/* Read by the benchmark's clock comparison only (bench/floor.bpf.c). */
	__u64 tcp_clock_cache;
};

struct net_device {
	struct {
		struct net *net;
	} nd_net;
};

struct sk_buff {
	char cb[48];
	struct net_device *dev;
	int skb_iif;
	__be16 protocol;
	__u16 transport_header;
	__u16 network_header;
	__u32 end;
	unsigned char *head;
};

struct skb_shared_info {
	__u16 gso_segs;
};

/* What TCP keeps in an skb's control buffer (skb->cb). */
struct tcp_skb_cb {
	__u32 seq;
	__u16 tcp_gso_segs;
	__u8 sacked;
};

/* The tracepoint's classic record, declared only to ask whether this
 * kernel's tcp_retransmit_skb reports the send's error (6.17 on). */
struct trace_event_raw_tcp_retransmit_skb {
	int err;
};

/* Likewise: whether kfree_skb says why (5.17 on) and for which socket
 * (6.11 on). */
struct trace_event_raw_kfree_skb {
	int reason;
	void *rx_sk;
};

/* Likewise: whether tcp_send_reset says why (6.10 on). */
enum sk_rst_reason {
	SK_RST_REASON_NOT_SPECIFIED = 0,
};

struct trace_event_raw_tcp_send_reset {
	enum sk_rst_reason reason;
};

/* What kprobes see, per architecture (bpf_tracing.h names the members). */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long cx;
	unsigned long r8;
	unsigned long r9;
	unsigned long ax;
	unsigned long bp;
	unsigned long sp;
	unsigned long ip;
};

/* The iter/tcp program's context. */
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
};

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
};

#pragma clang attribute pop

#endif /* TCPCONG_KERNEL_TYPES_H */
