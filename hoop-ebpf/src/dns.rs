//! DNS capture, kernel side (the scheme is described in `hoop_common::dns`).
//!
//! - `steer4`/`steer6` (from connect4/6 for UDP and TCP, and sendmsg4/6 for unconnected UDP):
//!   a query to port 53 goes to hoopd's forwarder at the slot address of the resolver it was
//!   addressed to — but only while the forwarder's socket (carrying hoopd's mark) exists. While
//!   hoopd is down queries go direct, and the DNS guard below drops those for protected names:
//!   protected lookups fail, every other lookup keeps working.
//! - `recvmsg4`/`recvmsg6` and `getpeername4`/`getpeername6`: a process sees its resolver, not
//!   the slot address, as the source of the answer (resolvers check it).
//! - `hoop_dns_guard` (cgroup_skb egress): a DNS query leaving the subtree without hoopd's mark
//!   (hoopd down, a raw socket, anything not steered) whose QNAME is protected is dropped.

use core::mem::size_of;

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_F_CURRENT_NETNS, BPF_NOEXIST, bpf_sock, bpf_sock_addr, bpf_sock_tuple,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1,
    },
    helpers::generated::{
        bpf_sk_lookup_tcp, bpf_sk_lookup_udp, bpf_sk_release, bpf_skb_load_bytes,
    },
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::{HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    programs::{SkBuffContext, SockAddrContext},
};
use hoop_common::{
    DnsName, DnsPattern, DnsResolver, DnsScratch, NodeConfig,
    dns::{self, MAX_LABELS, MAX_NAME, slot_addr, slot_of},
    stats, v4_mapped, v4_unmapped,
};

use crate::{ALLOW, CONFIG, count, ip6_bytes, ip6_words};

/// The syscall fails with EPERM.
const REFUSE: i32 = 0;
const SKB_PASS: i32 = 1;
const SKB_DROP: i32 = 0;
/// Slot-table capacity (resolvers in use at once, host-wide).
const SLOT_ENTRIES: u32 = 4096;
/// Probes of the slot table before giving up (fail closed: the query is refused).
const SLOT_PROBES: u32 = 8;

#[map(name = "HOOP_DNS_SLOTS")]
static DNS_SLOTS: HashMap<u32, DnsResolver> = HashMap::pinned(SLOT_ENTRIES, 0);
#[map(name = "HOOP_DNS_WILDCARDS")]
static DNS_WILDCARDS: LpmTrie<DnsName, DnsPattern> = LpmTrie::pinned(4096, 0);
#[map(name = "HOOP_DNS_EXACT")]
static DNS_EXACT: LpmTrie<DnsName, DnsPattern> = LpmTrie::pinned(4096, 0);
#[map(name = "HOOP_DNS_SCRATCH")]
static DNS_SCRATCH: PerCpuArray<DnsScratch> = PerCpuArray::with_max_entries(1, 0);

/// True when `port_be` is DNS and capture is on.
#[inline(always)]
pub fn is_dns(cfg: &NodeConfig, port_be: u16) -> bool {
    cfg.dns_port_be != 0 && port_be == dns::PORT.to_be()
}

/// Whether hoopd's forwarder socket (bound to the forwarder port, carrying hoopd's mark) exists
/// in this network namespace.
#[inline(always)]
fn forwarder_alive(ctx: &SockAddrContext, cfg: &NodeConfig, tcp: bool) -> bool {
    // SAFETY: an all-zero tuple is valid; the IPv4 member is filled below.
    let mut tuple: bpf_sock_tuple = unsafe { core::mem::zeroed() };
    tuple.__bindgen_anon_1.ipv4 = bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
        saddr: u32::from_ne_bytes([127, 0, 0, 1]),
        daddr: u32::from_ne_bytes(slot_addr(1)),
        sport: 0,
        dport: cfg.dns_port_be,
    };
    let size = size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>() as u32;
    let netns = BPF_F_CURRENT_NETNS as u64;
    // SAFETY: valid context and tuple; a returned socket is released below.
    let sk: *mut bpf_sock = unsafe {
        if tcp {
            bpf_sk_lookup_tcp(ctx.as_ptr(), &mut tuple, size, netns, 0)
        } else {
            bpf_sk_lookup_udp(ctx.as_ptr(), &mut tuple, size, netns, 0)
        }
    };
    if sk.is_null() {
        return false;
    }
    let mark = unsafe { (*sk).mark };
    unsafe { bpf_sk_release(sk as *mut _) };
    mark == cfg.bypass_mark
}

/// The slot of `res`, claiming a free one (atomically: insert-if-absent) on first use.
#[inline(always)]
fn slot_for(res: &DnsResolver) -> Option<u32> {
    let mut h: u32 = 0x811c_9dc5;
    let bytes: &[u8; 18] = unsafe { &*(res as *const DnsResolver as *const [u8; 18]) };
    for b in bytes {
        h = (h ^ *b as u32).wrapping_mul(0x0100_0193);
    }
    for i in 0..SLOT_PROBES {
        let slot = (h.wrapping_add(i)) & (dns::MAX_SLOTS - 1);
        // SAFETY: plain lookups of a Copy value.
        match unsafe { DNS_SLOTS.get(&slot) } {
            Some(r) if r == res => return Some(slot),
            Some(_) => continue,
            None => {}
        }
        if DNS_SLOTS.insert(&slot, res, BPF_NOEXIST as u64).is_ok() {
            return Some(slot);
        }
        // another CPU claimed it first: ours if it claimed it for the same resolver
        if unsafe { DNS_SLOTS.get(&slot) }.is_some_and(|r| r == res) {
            return Some(slot);
        }
    }
    None
}

/// The resolver behind a slot address and the forwarder port, if `ip`:`port_be` is one.
#[inline(always)]
pub fn resolver_of(ip: [u8; 4], port_be: u16) -> Option<DnsResolver> {
    let cfg = CONFIG.get(0)?;
    if cfg.dns_port_be == 0 || port_be != cfg.dns_port_be {
        return None;
    }
    let slot = slot_of(ip)?;
    unsafe { DNS_SLOTS.get(&slot) }.copied()
}

/// Steers an IPv4 DNS query to the forwarder; see the module doc.
#[inline(always)]
pub fn steer4(ctx: &SockAddrContext, sa: &mut bpf_sock_addr, cfg: &NodeConfig, tcp: bool) -> i32 {
    if !forwarder_alive(ctx, cfg, tcp) {
        count(stats::DNS_DIRECT);
        return ALLOW;
    }
    let res = DnsResolver {
        addr: v4_mapped(sa.user_ip4.to_ne_bytes()),
        port_be: sa.user_port as u16,
        used: 1,
    };
    let Some(slot) = slot_for(&res) else {
        count(stats::DNS_NO_SLOT);
        return REFUSE;
    };
    sa.user_ip4 = u32::from_ne_bytes(slot_addr(slot));
    sa.user_port = cfg.dns_port_be as u32;
    count(stats::DNS_REDIRECTED);
    ALLOW
}

/// Steers an IPv6 DNS query to the forwarder's v4-mapped slot address (a socket that is
/// IPv6-only then fails to send: fail closed).
#[inline(always)]
pub fn steer6(ctx: &SockAddrContext, sa: &mut bpf_sock_addr, cfg: &NodeConfig, tcp: bool) -> i32 {
    if !forwarder_alive(ctx, cfg, tcp) {
        count(stats::DNS_DIRECT);
        return ALLOW;
    }
    let res = DnsResolver {
        addr: ip6_bytes(&sa.user_ip6),
        port_be: sa.user_port as u16,
        used: 1,
    };
    let Some(slot) = slot_for(&res) else {
        count(stats::DNS_NO_SLOT);
        return REFUSE;
    };
    sa.user_ip6 = ip6_words(&v4_mapped(slot_addr(slot)));
    sa.user_port = cfg.dns_port_be as u32;
    count(stats::DNS_REDIRECTED);
    ALLOW
}

#[cgroup_sock_addr(sendmsg4)]
pub fn hoop_sendmsg4(ctx: SockAddrContext) -> i32 {
    let Some(cfg) = crate::config() else {
        return ALLOW;
    };
    let sa = unsafe { &mut *ctx.sock_addr };
    if crate::is_hoopd(sa, cfg) || !is_dns(cfg, sa.user_port as u16) {
        return ALLOW;
    }
    steer4(&ctx, sa, cfg, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn hoop_sendmsg6(ctx: SockAddrContext) -> i32 {
    let Some(cfg) = crate::config() else {
        return ALLOW;
    };
    let sa = unsafe { &mut *ctx.sock_addr };
    if crate::is_hoopd(sa, cfg) || !is_dns(cfg, sa.user_port as u16) {
        return ALLOW;
    }
    steer6(&ctx, sa, cfg, false)
}

#[cgroup_sock_addr(recvmsg4)]
pub fn hoop_recvmsg4(ctx: SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    if let Some(res) = resolver_of(sa.user_ip4.to_ne_bytes(), sa.user_port as u16) {
        if let Some(v4) = v4_unmapped(&res.addr) {
            sa.user_ip4 = u32::from_ne_bytes(v4);
            sa.user_port = res.port_be as u32;
        }
    }
    ALLOW // recvmsg programs must allow
}

#[cgroup_sock_addr(recvmsg6)]
pub fn hoop_recvmsg6(ctx: SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    let ip = ip6_bytes(&sa.user_ip6);
    if let Some(v4) = v4_unmapped(&ip) {
        if let Some(res) = resolver_of(v4, sa.user_port as u16) {
            sa.user_ip6 = ip6_words(&res.addr);
            sa.user_port = res.port_be as u32;
        }
    }
    ALLOW
}

#[cgroup_skb(egress)]
pub fn hoop_dns_guard(ctx: SkBuffContext) -> i32 {
    match try_dns_guard(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

const ETH_P_IP_BE: u32 = 0x0800u16.to_be() as u32;
const ETH_P_IPV6_BE: u32 = 0x86ddu16.to_be() as u32;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

fn try_dns_guard(ctx: &SkBuffContext) -> Result<i32, i32> {
    let cfg = crate::config().ok_or(SKB_PASS)?;
    if cfg.dns_port_be == 0 || unsafe { (*ctx.skb.skb).mark } == cfg.bypass_mark {
        return Ok(SKB_PASS);
    }
    let (l4, proto) = match ctx.skb.protocol() {
        ETH_P_IP_BE => {
            let vihl: u8 = ctx.load(0).map_err(|_| SKB_PASS)?;
            let frag: u16 = ctx.load(6).map_err(|_| SKB_PASS)?;
            if u16::from_be(frag) & 0x1fff != 0 {
                return Ok(SKB_PASS); // a later fragment carries no question
            }
            let proto: u8 = ctx.load(9).map_err(|_| SKB_PASS)?;
            (((vihl & 0x0f) as usize) * 4, proto)
        }
        ETH_P_IPV6_BE => (40, ctx.load::<u8>(6).map_err(|_| SKB_PASS)?),
        _ => return Ok(SKB_PASS),
    };
    let dport: u16 = ctx.load(l4 + 2).map_err(|_| SKB_PASS)?;
    if dport != dns::PORT.to_be() {
        return Ok(SKB_PASS);
    }
    let msg = match proto {
        IPPROTO_UDP => l4 + 8,
        IPPROTO_TCP => {
            let off: u8 = ctx.load(l4 + 12).map_err(|_| SKB_PASS)?;
            let payload = l4 + ((off >> 4) as usize) * 4;
            let len = ctx.len() as usize;
            if len <= payload {
                return Ok(SKB_PASS); // no data: handshake, ACK, FIN
            }
            // one whole message per segment, or the rest could not be vouched for (pipelined
            // queries after the first): fail closed
            let msg_len: u16 = ctx.load(payload).map_err(|_| SKB_DROP)?;
            if len - payload > u16::from_be(msg_len) as usize + 2 {
                return Ok(SKB_DROP);
            }
            payload + 2 // the two-byte length prefix
        }
        _ => return Ok(SKB_PASS),
    };
    let flags: u8 = ctx.load(msg + 2).map_err(|_| SKB_DROP)?;
    if flags & 0x80 != 0 {
        return Ok(SKB_PASS); // a response, not a query
    }
    // only the first question is read: a query with more is refused (resolvers do too)
    let qdcount: u16 = ctx.load(msg + 4).map_err(|_| SKB_DROP)?;
    if u16::from_be(qdcount) != 1 {
        return Ok(SKB_DROP);
    }
    if protected(ctx, msg + 12)? {
        count(stats::DNS_DROPPED);
        return Ok(SKB_DROP);
    }
    Ok(SKB_PASS)
}

/// Whether the QNAME at `off` is protected. Anything that cannot be read as a name is treated
/// as protected (`Err(DROP)`): the guard fails closed.
#[inline(always)]
fn protected(ctx: &SkBuffContext, off: usize) -> Result<bool, i32> {
    let s = DNS_SCRATCH.get_ptr_mut(0).ok_or(SKB_DROP)?;
    // SAFETY: per-CPU scratch, no other user on this CPU while the program runs.
    let s = unsafe { &mut *s };
    let avail = (ctx.len() as usize).checked_sub(off).ok_or(SKB_DROP)?;
    let n = avail.min(MAX_NAME);
    // SAFETY: reading a local; the fresh value keeps the bounds checks below in the program,
    // so the verifier knows the length is in [1, 256].
    let n = unsafe { core::ptr::read_volatile(&n) };
    if n == 0 || n > MAX_NAME {
        return Err(SKB_DROP);
    }
    // SAFETY: `raw` has MAX_NAME bytes and n <= MAX_NAME.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            off as u32,
            s.raw.as_mut_ptr() as *mut _,
            n as u32,
        )
    };
    if rc != 0 {
        return Err(SKB_DROP);
    }
    // walk the labels to the root byte: `len` is the wire length without it
    let mut len: usize = 0;
    let mut ended = false;
    for _ in 0..MAX_LABELS {
        if len >= n {
            break;
        }
        let l = s.raw[len & (MAX_NAME - 1)] as usize;
        if l == 0 {
            ended = true;
            break;
        }
        if l > 63 {
            return Err(SKB_DROP); // compression pointer or garbage in a question
        }
        len += l + 1;
    }
    if !ended || len >= MAX_NAME {
        return Err(SKB_DROP);
    }
    if len == 0 {
        return Ok(false); // the root
    }
    // key: raw[1..len] reversed, lower-cased (branch-free, so the verifier's paths stay few)
    let klen = len - 1;
    for j in 0..MAX_NAME - 1 {
        if j >= klen {
            break;
        }
        // a fresh value LLVM cannot reason about, so the masks stay and the verifier sees
        // indexes in [0, 255] (otherwise it strength-reduces to a pointer it cannot bound)
        // SAFETY: reading a local.
        let j = unsafe { core::ptr::read_volatile(&j) };
        let c = s.raw[(len - 1 - j) & (MAX_NAME - 1)] as u32;
        let upper = ((c + 191) >> 8) ^ ((c + 165) >> 8);
        s.key.bytes[j & (MAX_NAME - 1)] = (c | (upper << 5)) as u8;
    }
    s.prefix_len = (klen * 8) as u32;
    // SAFETY: `prefix_len` is followed by `key` in the repr(C) scratch: together they are
    // laid out exactly as a packed `Key<DnsName>`.
    let key = unsafe { &*(&raw const s.prefix_len as *const Key<DnsName>) };
    if DNS_WILDCARDS.get(key).is_some() {
        return Ok(true);
    }
    Ok(DNS_EXACT.get(key).is_some_and(|p| p.len as usize == klen))
}
