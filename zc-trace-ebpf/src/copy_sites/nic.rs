//! Frames leaving a device (net:net_dev_start_xmit): the payload a device reads by DMA, and
//! the CPU copies that segmentation and linearization make for a device without
//! scatter-gather. Attributed by the frame's socket, not the current task.

use super::*;

// ---- net:net_dev_start_xmit: frames leaving a device ----
// Attributed by the frame's socket (SOCKS), not by the current task: transmits also happen in
// softirq context. TCP keeps payload in page fragments (its route caps always include SG,
// software GSO); payload in a frame's linear part was copied there by segmentation or
// linearization because the device lacks scatter-gather.

#[tracepoint]
pub fn zc_net_xmit(ctx: TracePointContext) -> u32 {
    let _ = on_net_xmit(&ctx);
    0
}

#[inline(always)]
fn on_net_xmit(ctx: &TracePointContext) -> Option<()> {
    let cfg = state::config();
    if cfg.skb.sk_off == UNKNOWN || cfg.skb.data_off == UNKNOWN {
        return None;
    }
    let skb: *const u8 = unsafe { ctx.read_at(cfg.tp.xmit_skbaddr_off as usize) }.ok()?;
    let sk: u64 = kread::at(skb, cfg.skb.sk_off)?;
    let role = *unsafe { SOCKS.get(&sk) }?;
    let linear_payload = linear_payload(ctx, cfg, skb);
    if linear_payload > 0 {
        let stats = state::stats(role)?;
        stats.copies[site::NIC_LINEARIZE][class::KERNEL_TO_KERNEL] += linear_payload as u64;
        stats.site_calls[site::NIC_LINEARIZE] += 1;
    }
    Some(())
}

/// The TCP payload in the linear part of the frame at net_dev_start_xmit (its length less the
/// part in fragments, less the headers up to the end of the TCP header); -1 when unknown.
/// A plain value, not an Option: the verifier rejects the undefined payload LLVM may read
/// from a None.
#[inline(always)]
fn linear_payload(ctx: &TracePointContext, cfg: &Config, skb: *const u8) -> i64 {
    let valid: u8 = unsafe { ctx.read_at(cfg.tp.xmit_transport_valid_off as usize) }.unwrap_or(0);
    if valid == 0 {
        return -1;
    }
    let (Ok(len), Ok(data_len), Ok(transport)) = (
        unsafe { ctx.read_at::<u32>(cfg.tp.xmit_len_off as usize) },
        unsafe { ctx.read_at::<u32>(cfg.tp.xmit_data_len_off as usize) },
        unsafe { ctx.read_at::<i32>(cfg.tp.xmit_transport_off as usize) },
    ) else {
        return -1;
    };
    let Some(data) = kread::ptr(skb, cfg.skb.data_off) else {
        return -1;
    };
    // TCP data offset: the high nibble of byte 12 of the header, in 32-bit words.
    let Some(doff) = kread::at_byte::<u8>(data, transport as usize + 12) else {
        return -1;
    };
    let headers = transport as i64 + ((doff >> 4) as i64) * 4;
    (len as i64 - data_len as i64) - headers
}

// ---- the transmit of a device that reads frames by DMA ----
// net:net_dev_start_xmit fires as each frame is handed to a device's driver. For the device
// of a remote sink's route (DMA_DEV), the payload of the sender's frames is what the device
// reads from memory: the linear part (written by the CPU) and the page fragments (read in
// place; with scatter-gather and sendfile/splice, page-cache pages). Loopback and veth hand
// the buffers on by reference instead: DMA_DEV is 0 for them.

/// tp_btf: a raw tracepoint's program runs even when the transmit interrupts (in softirq)
/// another eBPF program on the same CPU, where a classic tracepoint's is skipped (the
/// kernel's per-CPU bpf_prog_active): under load that lost whole TSO frames.
#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn zc_nic_tx_btf(ctx: BtfTracePointContext) -> u32 {
    // TP_PROTO(const struct sk_buff *skb, const struct net_device *dev)
    let skb: *const u8 = unsafe { ctx.arg(0) };
    let dev: *const u8 = unsafe { ctx.arg(1) };
    let _ = on_nic_tx_btf(skb, dev);
    0
}

#[inline(always)]
fn on_nic_tx_btf(skb: *const u8, dev: *const u8) -> Option<()> {
    let cfg = state::config();
    let wanted = *crate::state::DMA_DEV.get(0)?;
    if wanted == 0 || cfg.skb.netdev_ifindex_off == UNKNOWN {
        return None;
    }
    let ifindex: u32 = kread::at(dev, cfg.skb.netdev_ifindex_off)?;
    if ifindex != wanted {
        return None;
    }
    let role = skb_role(cfg, skb)?;
    let frags = skb_frags(cfg, skb);
    if frags < 0 {
        return None;
    }
    count_nic_tx(role, skb_linear_payload(cfg, skb), frags as u32)
}

/// sk_buff.data_len: the bytes in page fragments; -1 when unknown.
#[inline(always)]
fn skb_frags(cfg: &Config, skb: *const u8) -> i64 {
    if cfg.skb.data_len_off == UNKNOWN {
        return -1;
    }
    kread::at::<u32>(skb, cfg.skb.data_len_off).map_or(-1, |v| v as i64)
}

/// `linear_payload` from the skb itself (tp_btf has no tracefs fields): its length less the
/// fragments, less the headers up to the end of the TCP header; -1 when unknown.
#[inline(always)]
fn skb_linear_payload(cfg: &Config, skb: *const u8) -> i64 {
    if cfg.skb.len_off == UNKNOWN
        || cfg.skb.head_off == UNKNOWN
        || cfg.skb.transport_header_off == UNKNOWN
        || cfg.skb.data_off == UNKNOWN
    {
        return -1;
    }
    let frags = skb_frags(cfg, skb);
    let Some(len) = kread::at::<u32>(skb, cfg.skb.len_off) else {
        return -1;
    };
    let head = kread::ptr(skb, cfg.skb.head_off).unwrap_or(core::ptr::null());
    let data = kread::ptr(skb, cfg.skb.data_off).unwrap_or(core::ptr::null());
    let Some(th) = kread::at::<u16>(skb, cfg.skb.transport_header_off) else {
        return -1;
    };
    // (u16)~0: no transport header set.
    if head.is_null() || data.is_null() || frags < 0 || th == u16::MAX {
        return -1;
    }
    let tcp = unsafe { head.add(th as usize) };
    let Some(doff) = kread::at::<u8>(tcp, 12) else {
        return -1;
    };
    let headers = (tcp as i64 - data as i64) + ((doff >> 4) as i64) * 4;
    (len as i64 - frags) - headers
}

/// nic_linearize at the raw tracepoint: the linear payload of each frame of the sender's
/// sockets leaving any device (see `zc_net_xmit`).
#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn zc_net_xmit_btf(ctx: BtfTracePointContext) -> u32 {
    let skb: *const u8 = unsafe { ctx.arg(0) };
    let cfg = state::config();
    let Some(role) = skb_role(cfg, skb) else {
        return 0;
    };
    let linear = skb_linear_payload(cfg, skb);
    if linear > 0 {
        let _ = add_linearized(role, linear as u64);
    }
    0
}

/// The classic tracepoint, where tp_btf cannot attach.
#[tracepoint]
pub fn zc_nic_tx(ctx: TracePointContext) -> u32 {
    let _ = on_nic_tx(&ctx);
    0
}

#[inline(always)]
fn on_nic_tx(ctx: &TracePointContext) -> Option<()> {
    let cfg = state::config();
    let wanted = *crate::state::DMA_DEV.get(0)?;
    if wanted == 0
        || cfg.skb.dev_off == UNKNOWN
        || cfg.skb.netdev_ifindex_off == UNKNOWN
        || cfg.skb.sk_off == UNKNOWN
        || cfg.skb.data_off == UNKNOWN
    {
        return None;
    }
    let skb: *const u8 = unsafe { ctx.read_at(cfg.tp.xmit_skbaddr_off as usize) }.ok()?;
    let dev: *const u8 = kread::ptr(skb, cfg.skb.dev_off)?;
    let ifindex: i32 = kread::at(dev, cfg.skb.netdev_ifindex_off)?;
    if ifindex as u32 != wanted {
        return None;
    }
    let role = skb_role(cfg, skb)?;
    let frags: u32 = unsafe { ctx.read_at(cfg.tp.xmit_data_len_off as usize) }.ok()?;
    count_nic_tx(role, linear_payload(ctx, cfg, skb), frags)
}

#[inline(always)]
fn count_nic_tx(role: u32, linear: i64, frags: u32) -> Option<()> {
    let stats = state::stats(role)?;
    if linear > 0 {
        stats.counters[counter::NIC_TX_LINEAR_BYTES] += linear as u64;
    }
    stats.counters[counter::NIC_TX_FRAG_BYTES] += frags as u64;
    Some(())
}

// ---- segmentation and linearization for a device without scatter-gather ----
// A device without NETIF_F_SG takes no page fragments, so validate_xmit_skb makes the CPU
// copy them: a GSO skb is segmented in software (skb_segment copies every payload byte into
// each segment's linear area: at its entry the skb's data is the payload, headers pulled), a
// one-segment skb is linearized (__skb_linearize, inline, calls __pskb_pull_tail, which
// copies `delta` bytes of fragments). Counted where the copy happens, by the skb's socket:
// transmits also run in softirq context. A retransmitted segment is copied again, and counted.

/// The role of the traced socket that owns `skb`, if any.
#[inline(always)]
fn skb_role(cfg: &Config, skb: *const u8) -> Option<u32> {
    if skb.is_null() || cfg.skb.sk_off == UNKNOWN {
        return None;
    }
    let sk: u64 = kread::at(skb, cfg.skb.sk_off)?;
    unsafe { SOCKS.get(&sk) }.copied()
}

#[inline(always)]
fn add_linearized(role: u32, bytes: u64) -> Option<()> {
    let stats = state::stats(role)?;
    stats.copies[site::NIC_LINEARIZE][class::KERNEL_TO_KERNEL] += bytes;
    stats.site_calls[site::NIC_LINEARIZE] += 1;
    Some(())
}

/// skb_segment(head_skb, features): without NETIF_F_SG every byte of head_skb is copied.
#[inline(always)]
fn on_segment(skb: *const u8, features: u64) -> Option<()> {
    let cfg = state::config();
    if cfg.values.netif_f_sg == 0
        || features & cfg.values.netif_f_sg != 0
        || cfg.skb.len_off == UNKNOWN
    {
        return None;
    }
    let role = skb_role(cfg, skb)?;
    let len: u32 = kread::at(skb, cfg.skb.len_off)?;
    add_linearized(role, len as u64)
}

#[fentry(function = "skb_segment")]
pub fn zc_skb_segment_fentry(ctx: FEntryContext) -> i32 {
    let skb: *const u8 = unsafe { ctx.arg(0) };
    let features: u64 = unsafe { ctx.arg(1) };
    let _ = on_segment(skb, features);
    0
}

#[kprobe]
pub fn zc_skb_segment_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(skb), Some(features)) = (ctx.arg::<*const u8>(0), ctx.arg::<u64>(1)) {
        let _ = on_segment(skb, features);
    }
    0
}

/// __pskb_pull_tail(skb, delta) -> new tail or NULL: `delta` bytes of fragments copied into
/// the linear area (all of them when __skb_linearize calls it).
#[inline(always)]
fn on_pull_tail(skb: *const u8, delta: i32) -> Option<()> {
    if delta <= 0 {
        return None;
    }
    add_linearized(skb_role(state::config(), skb)?, delta as u64)
}

#[fexit(function = "__pskb_pull_tail")]
pub fn zc_pskb_pull_tail_fexit(ctx: FExitContext) -> i32 {
    let skb: *const u8 = unsafe { ctx.arg(0) };
    let delta: i32 = unsafe { ctx.arg(1) };
    let tail: *const u8 = unsafe { ctx.arg(2) };
    if !tail.is_null() {
        let _ = on_pull_tail(skb, delta);
    }
    0
}

/// Counted at entry: the kprobe cannot see the result (a failed pull, ENOMEM, is rare).
#[kprobe]
pub fn zc_pskb_pull_tail_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(skb), Some(delta)) = (ctx.arg::<*const u8>(0), ctx.arg::<i32>(1)) {
        let _ = on_pull_tail(skb, delta);
    }
    0
}
