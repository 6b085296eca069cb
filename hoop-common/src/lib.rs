//! Types shared by the hoop eBPF programs and user space: map names, map keys and values.
//!
//! Every type crossing the kernel/user boundary is `#[repr(C)]`, `Copy`, has explicit padding
//! fields and a size assertion, so both sides agree byte for byte. Byte order is in field names.
#![no_std]

use core::mem::size_of;

/// Map names, shared so the loader finds what the programs define.
pub mod maps {
    /// `Array<NodeConfig>` with one entry: where to redirect, which mark bypasses.
    pub const CONFIG: &str = "HOOP_CONFIG";
    /// `LpmTrie<TargetV4, TargetRef>`: protected IPv4 CIDR + port.
    pub const TARGETS_V4: &str = "HOOP_TARGETS_V4";
    /// `LpmTrie<TargetV6, TargetRef>`: protected IPv6 CIDR + port.
    pub const TARGETS_V6: &str = "HOOP_TARGETS_V6";
    /// `LruHashMap<u64 socket cookie, OrigDst>`: filled by connect4/6, read by sock_ops and
    /// getpeername4/6 for the life of the client socket.
    pub const BY_COOKIE: &str = "HOOP_BY_COOKIE";
    /// `LruHashMap<ClientKey, OrigDst>`: filled by sock_ops on ACTIVE_ESTABLISHED, looked up and
    /// deleted by hoopd with the peer address `accept()` returned.
    pub const BY_CLIENT: &str = "HOOP_BY_CLIENT";
    /// `PerCpuArray<u64>` counters indexed by `stats::*`.
    pub const STATS: &str = "HOOP_STATS";
}

/// Program names (the Rust function names in hoop-ebpf).
pub mod progs {
    pub const CONNECT4: &str = "hoop_connect4";
    pub const CONNECT6: &str = "hoop_connect6";
    pub const GETPEERNAME4: &str = "hoop_getpeername4";
    pub const GETPEERNAME6: &str = "hoop_getpeername6";
    pub const SOCK_OPS: &str = "hoop_sock_ops";
    /// All programs, in attach order.
    pub const ALL: [&str; 5] = [CONNECT4, CONNECT6, GETPEERNAME4, GETPEERNAME6, SOCK_OPS];
}

/// Indexes of the `STATS` per-CPU counters.
pub mod stats {
    /// connects redirected to hoopd
    pub const REDIRECTED: u32 = 0;
    /// connects that bypassed because the socket carried hoopd's mark
    pub const BYPASS_MARK: u32 = 1;
    /// sock_ops entries that could not be recorded (map full)
    pub const RECORD_FAILED: u32 = 2;
    pub const LEN: u32 = 3;
}

/// Capacity of the per-connection maps.
pub const MAX_CONNECTIONS: u32 = 65_536;
/// Capacity of each target LPM trie (CIDR x port entries).
pub const MAX_TARGET_ENTRIES: u32 = 262_144;

/// Address family values as the kernel reports them.
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

/// The single entry of `CONFIG`. While `enabled == 0` the programs redirect nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// hoopd's IPv4 listener, network byte order.
    pub listen_v4: [u8; 4],
    pub listen_v4_port_be: u16,
    pub listen_v6_port_be: u16,
    /// hoopd's IPv6 listener; all zero when there is none (IPv6 connects then go to the IPv4
    /// listener through its v4-mapped address).
    pub listen_v6: [u8; 16],
    /// Sockets carrying this SO_MARK are hoopd's own and are never redirected.
    pub bypass_mark: u32,
    pub enabled: u32,
    /// Byte offsets in `struct task_struct` of this kernel (read from its BTF by user space),
    /// so the programs can record the thread group's start time without CO-RE.
    pub off_task_group_leader: u32,
    pub off_task_start_boottime: u32,
}
const _: () = assert!(size_of::<NodeConfig>() == 40);

/// LPM key data for IPv4 targets: port first, so one lookup with prefix `16 + cidr_len`
/// matches the CIDR and the exact port. Bytes only: no padding inside the compared prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetV4 {
    pub port_be: [u8; 2],
    pub addr: [u8; 4],
}
const _: () = assert!(size_of::<TargetV4>() == 6);

/// LPM key data for IPv6 targets (see [`TargetV4`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetV6 {
    pub port_be: [u8; 2],
    pub addr: [u8; 16],
}
const _: () = assert!(size_of::<TargetV6>() == 18);

/// Prefix length of an LPM key for a CIDR of `cidr_len` bits (the port is always exact).
pub const fn lpm_prefix_len(cidr_len: u8) -> u32 {
    16 + cidr_len as u32
}

/// Value of the target tries: which configured target matched.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetRef {
    pub target_id: u32,
}
const _: () = assert!(size_of::<TargetRef>() == 4);

/// The original destination and the caller of a redirected connect().
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigDst {
    /// Original destination address; IPv4 as v4-mapped IPv6 (`::ffff:a.b.c.d`).
    pub addr: [u8; 16],
    pub port_be: u16,
    /// Family of the client socket (`AF_INET` or `AF_INET6`).
    pub family: u16,
    pub target_id: u32,
    /// Thread id and thread-group id (the process id user space sees).
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// `group_leader->start_boottime` in ns; user space compares it with /proc/PID/stat
    /// field 22 to tell a reused pid from the caller.
    pub start_boottime_ns: u64,
}
const _: () = assert!(size_of::<OrigDst>() == 56);

/// Key of `BY_CLIENT`: the client socket's local address as seen by hoopd's `accept()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// IPv4 as v4-mapped IPv6.
    pub addr: [u8; 16],
    pub port: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<ClientKey>() == 20);

/// `::ffff:a.b.c.d` for an IPv4 address given as network-order bytes.
pub const fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}

/// The IPv4 address inside a v4-mapped IPv6 address, if it is one.
pub const fn v4_unmapped(a: &[u8; 16]) -> Option<[u8; 4]> {
    if a[0] == 0
        && a[1] == 0
        && a[2] == 0
        && a[3] == 0
        && a[4] == 0
        && a[5] == 0
        && a[6] == 0
        && a[7] == 0
        && a[8] == 0
        && a[9] == 0
        && a[10] == 0xff
        && a[11] == 0xff
    {
        Some([a[12], a[13], a[14], a[15]])
    } else {
        None
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), Copy, and every byte is a field (explicit padding), so any bit
    // pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::NodeConfig {}
    unsafe impl aya::Pod for super::TargetV4 {}
    unsafe impl aya::Pod for super::TargetV6 {}
    unsafe impl aya::Pod for super::TargetRef {}
    unsafe impl aya::Pod for super::OrigDst {}
    unsafe impl aya::Pod for super::ClientKey {}
}
