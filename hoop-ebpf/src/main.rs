//! hoop's kernel side: redirect protected TCP connects into hoopd and remember who made them.
//!
//! - `connect4`/`connect6`: a TCP connect whose destination (CIDR + port) is in a target trie is
//!   rewritten to hoopd's listener; the original destination and the caller (pid, tgid, uid, gid,
//!   cgroup, start time) are recorded by socket cookie. Sockets carrying hoopd's SO_MARK are never
//!   touched: a mark needs CAP_NET_ADMIN to set and, unlike a pid, cannot be inherited by a
//!   process that later reuses hoopd's pid.
//! - `sock_ops` (ACTIVE_ESTABLISHED): re-keys the record by the client's local address, which is
//!   what hoopd's `accept()` returns. The callback runs before the client's final ACK, so the
//!   entry exists before `accept()` can return.
//! - `getpeername4`/`getpeername6`: a redirected client sees the original destination as peer.
//! - DNS capture (`dns`): queries to port 53 (connect4/6 for UDP and TCP, sendmsg4/6, with
//!   recvmsg4/6 translating answers back) go through hoopd's forwarder, which learns the
//!   addresses of protected names; a guard on egress drops direct queries for protected names.
//!
//! Every program allows the syscall (returns 1): they only rewrite addresses. Failing closed is
//! hoopd's listener's job: while hoopd is down the redirected connect is refused.
#![no_std]
#![no_main]

mod dns;

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, bpf_sock_addr},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_probe_read_kernel, generated::bpf_get_socket_cookie,
    },
    macros::{cgroup_sock_addr, map, sock_ops},
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::{SockAddrContext, SockOpsContext},
};
use aya_log_ebpf::{debug, warn};
use hoop_common::{
    AF_INET, AF_INET6, ClientKey, MAX_CONNECTIONS, MAX_TARGET_ENTRIES, NodeConfig, OrigDst,
    TargetRef, TargetV4, TargetV6, lpm_prefix_len, stats, v4_mapped, v4_unmapped,
};

const SOCK_STREAM: u32 = 1;
/// The syscall goes on (with whatever address we wrote).
pub(crate) const ALLOW: i32 = 1;

#[map(name = "HOOP_CONFIG")]
pub(crate) static CONFIG: Array<NodeConfig> = Array::pinned(1, 0);
#[map(name = "HOOP_TARGETS_V4")]
static TARGETS_V4: LpmTrie<TargetV4, TargetRef> = LpmTrie::pinned(MAX_TARGET_ENTRIES, 0);
#[map(name = "HOOP_TARGETS_V6")]
static TARGETS_V6: LpmTrie<TargetV6, TargetRef> = LpmTrie::pinned(MAX_TARGET_ENTRIES, 0);
#[map(name = "HOOP_BY_COOKIE")]
static BY_COOKIE: LruHashMap<u64, OrigDst> = LruHashMap::pinned(MAX_CONNECTIONS, 0);
#[map(name = "HOOP_BY_CLIENT")]
static BY_CLIENT: LruHashMap<ClientKey, OrigDst> = LruHashMap::pinned(MAX_CONNECTIONS, 0);
#[map(name = "HOOP_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::pinned(stats::LEN, 0);

#[inline(always)]
pub(crate) fn count(idx: u32) {
    if let Some(c) = STATS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
pub(crate) fn config() -> Option<&'static NodeConfig> {
    CONFIG.get(0).filter(|c| c.enabled != 0)
}

/// True for hoopd's own sockets (they carry its mark), which are never touched.
#[inline(always)]
pub(crate) fn is_hoopd(sa: &bpf_sock_addr, cfg: &NodeConfig) -> bool {
    // SAFETY: `sk` is always a valid socket pointer in cgroup sock_addr programs.
    let sk = unsafe { sa.__bindgen_anon_1.sk };
    if sk.is_null() {
        return true;
    }
    let mark = unsafe { (*sk).mark };
    if mark == cfg.bypass_mark {
        count(stats::BYPASS_MARK);
        return true;
    }
    false
}

/// Who is calling connect(): pid/tgid, uid/gid, cgroup and the thread group's start time.
#[inline(always)]
fn caller(cfg: &NodeConfig, addr: [u8; 16], port_be: u16, family: u16, target_id: u32) -> OrigDst {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    OrigDst {
        addr,
        port_be,
        family,
        target_id,
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        // SAFETY: no preconditions; the generated binding is merely declared unsafe.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        start_boottime_ns: start_boottime(cfg).unwrap_or(0),
    }
}

/// `current->group_leader->start_boottime`, at offsets user space read from this kernel's BTF.
#[inline(always)]
fn start_boottime(cfg: &NodeConfig) -> Option<u64> {
    if cfg.off_task_group_leader == 0 || cfg.off_task_start_boottime == 0 {
        return None;
    }
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: probe reads tolerate any address; the offsets come from the running kernel's BTF.
    let leader: *const u8 = unsafe {
        bpf_probe_read_kernel(task.add(cfg.off_task_group_leader as usize) as *const *const u8)
    }
    .ok()?;
    unsafe { bpf_probe_read_kernel(leader.add(cfg.off_task_start_boottime as usize) as *const u64) }
        .ok()
}

/// Records `orig` under the socket's cookie; false when the map refused it (then we must not
/// redirect: hoopd could not tell where the connection was going and would refuse it anyway).
#[inline(always)]
fn record(ctx: &SockAddrContext, orig: &OrigDst) -> bool {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if BY_COOKIE.insert(&cookie, orig, 0).is_err() {
        count(stats::RECORD_FAILED);
        return false;
    }
    true
}

#[cgroup_sock_addr(connect4)]
pub fn hoop_connect4(ctx: SockAddrContext) -> i32 {
    match try_connect4(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

fn try_connect4(ctx: &SockAddrContext) -> Result<i32, i32> {
    let cfg = config().ok_or(ALLOW)?;
    // SAFETY: the context pointer is valid for the program's run.
    let sa = unsafe { &mut *ctx.sock_addr };
    if is_hoopd(sa, cfg) {
        return Ok(ALLOW);
    }
    if dns::is_dns(cfg, sa.user_port as u16) {
        return Ok(dns::steer4(ctx, sa, cfg, sa.type_ == SOCK_STREAM));
    }
    if sa.type_ != SOCK_STREAM {
        return Ok(ALLOW);
    }
    let ip = sa.user_ip4.to_ne_bytes(); // already network order in memory
    let port_be = sa.user_port as u16; // low 16 bits hold the network-order port
    let key = Key::new(
        lpm_prefix_len(32),
        TargetV4 {
            port_be: port_be.to_ne_bytes(),
            addr: ip,
        },
    );
    let target = TARGETS_V4.get(&key).ok_or(ALLOW)?;
    let orig = caller(cfg, v4_mapped(ip), port_be, AF_INET, target.target_id);
    if !record(ctx, &orig) {
        // Fail closed: send it to the listener anyway; hoopd refuses a connection it has no
        // record of, so nothing goes direct.
        warn!(ctx, "connect4: could not record tgid {}", orig.tgid);
    }
    sa.user_ip4 = u32::from_ne_bytes(cfg.listen_v4);
    sa.user_port = cfg.listen_v4_port_be as u32;
    count(stats::REDIRECTED);
    debug!(
        ctx,
        "connect4: tgid {} {:i}:{} redirected",
        orig.tgid,
        u32::from_be_bytes(ip),
        u16::from_be(port_be)
    );
    Ok(ALLOW)
}

#[cgroup_sock_addr(connect6)]
pub fn hoop_connect6(ctx: SockAddrContext) -> i32 {
    match try_connect6(&ctx) {
        Ok(v) | Err(v) => v,
    }
}

#[inline(always)]
pub(crate) fn ip6_bytes(w: &[u32; 4]) -> [u8; 16] {
    let (a, b, c, d) = (
        w[0].to_ne_bytes(),
        w[1].to_ne_bytes(),
        w[2].to_ne_bytes(),
        w[3].to_ne_bytes(),
    );
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3],
    ]
}

#[inline(always)]
pub(crate) fn ip6_words(b: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

fn try_connect6(ctx: &SockAddrContext) -> Result<i32, i32> {
    let cfg = config().ok_or(ALLOW)?;
    let sa = unsafe { &mut *ctx.sock_addr };
    if is_hoopd(sa, cfg) {
        return Ok(ALLOW);
    }
    if dns::is_dns(cfg, sa.user_port as u16) {
        return Ok(dns::steer6(ctx, sa, cfg, sa.type_ == SOCK_STREAM));
    }
    if sa.type_ != SOCK_STREAM {
        return Ok(ALLOW);
    }
    let ip = ip6_bytes(&sa.user_ip6);
    let port_be = sa.user_port as u16;
    // A v4-mapped destination is an IPv4 connect made through an IPv6 socket: match it against
    // the IPv4 targets and send it to the IPv4 listener (v4-mapped), which that socket can reach.
    let (target, to) = match v4_unmapped(&ip) {
        Some(v4) => {
            let key = Key::new(
                lpm_prefix_len(32),
                TargetV4 {
                    port_be: port_be.to_ne_bytes(),
                    addr: v4,
                },
            );
            (
                TARGETS_V4.get(&key).ok_or(ALLOW)?,
                (v4_mapped(cfg.listen_v4), cfg.listen_v4_port_be),
            )
        }
        None => {
            let key = Key::new(
                lpm_prefix_len(128),
                TargetV6 {
                    port_be: port_be.to_ne_bytes(),
                    addr: ip,
                },
            );
            let t = TARGETS_V6.get(&key).ok_or(ALLOW)?;
            if cfg.listen_v6 == [0; 16] {
                (t, (v4_mapped(cfg.listen_v4), cfg.listen_v4_port_be))
            } else {
                (t, (cfg.listen_v6, cfg.listen_v6_port_be))
            }
        }
    };
    let orig = caller(cfg, ip, port_be, AF_INET6, target.target_id);
    if !record(ctx, &orig) {
        warn!(ctx, "connect6: could not record tgid {}", orig.tgid);
    }
    sa.user_ip6 = ip6_words(&to.0);
    sa.user_port = to.1 as u32;
    count(stats::REDIRECTED);
    debug!(
        ctx,
        "connect6: tgid {} port {} redirected",
        orig.tgid,
        u16::from_be(port_be)
    );
    Ok(ALLOW)
}

#[sock_ops]
pub fn hoop_sock_ops(ctx: SockOpsContext) -> u32 {
    if ctx.op() == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        sock_ops_established(&ctx);
    }
    1 // sock_ops must return 1
}

#[inline(always)]
fn sock_ops_established(ctx: &SockOpsContext) {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(orig) = (unsafe { BY_COOKIE.get(&cookie) }) else {
        return;
    };
    let addr = match ctx.family() as u16 {
        AF_INET => v4_mapped(ctx.local_ip4().to_ne_bytes()),
        AF_INET6 => ip6_bytes(&local_ip6(ctx)),
        _ => return,
    };
    let key = ClientKey {
        addr,
        port: ctx.local_port() as u16,
        _pad: 0,
    };
    if BY_CLIENT.insert(&key, orig, 0).is_err() {
        count(stats::RECORD_FAILED);
        warn!(ctx, "sock_ops: could not record local port {}", key.port);
    }
}

/// `local_ip6` one word at a time: the verifier only accepts context loads at a constant offset
/// from the context pointer, and a by-value array copy makes LLVM derive a pointer first.
#[inline(always)]
fn local_ip6(ctx: &SockOpsContext) -> [u32; 4] {
    let ops = ctx.ops;
    // SAFETY: `ops` is the program's context, valid for its run.
    unsafe {
        [
            core::ptr::read_volatile(&raw const (*ops).local_ip6[0]),
            core::ptr::read_volatile(&raw const (*ops).local_ip6[1]),
            core::ptr::read_volatile(&raw const (*ops).local_ip6[2]),
            core::ptr::read_volatile(&raw const (*ops).local_ip6[3]),
        ]
    }
}

#[cgroup_sock_addr(getpeername4)]
pub fn hoop_getpeername4(ctx: SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if let Some(orig) = unsafe { BY_COOKIE.get(&cookie) } {
        if let Some(v4) = v4_unmapped(&orig.addr) {
            sa.user_ip4 = u32::from_ne_bytes(v4);
            sa.user_port = orig.port_be as u32;
        }
    } else if let Some(res) = dns::resolver_of(sa.user_ip4.to_ne_bytes(), sa.user_port as u16) {
        if let Some(v4) = v4_unmapped(&res.addr) {
            sa.user_ip4 = u32::from_ne_bytes(v4);
            sa.user_port = res.port_be as u32;
        }
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn hoop_getpeername6(ctx: SockAddrContext) -> i32 {
    let sa = unsafe { &mut *ctx.sock_addr };
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if let Some(orig) = unsafe { BY_COOKIE.get(&cookie) } {
        sa.user_ip6 = ip6_words(&orig.addr);
        sa.user_port = orig.port_be as u32;
    } else if let Some(v4) = v4_unmapped(&ip6_bytes(&sa.user_ip6)) {
        if let Some(res) = dns::resolver_of(v4, sa.user_port as u16) {
            sa.user_ip6 = ip6_words(&res.addr);
            sa.user_port = res.port_be as u32;
        }
    }
    ALLOW
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
