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
    /// `HashMap<DnsResolver, u32>`: resolver a process addressed → its slot (see [`super::dns`]).
    pub const DNS_RESOLVERS: &str = "HOOP_DNS_RESOLVERS";
    /// `Array<DnsResolver>` indexed by slot: the way back from a slot address to the resolver.
    pub const DNS_SLOTS: &str = "HOOP_DNS_SLOTS";
    /// `Array<u32>` with one entry: the next free slot.
    pub const DNS_NEXT_SLOT: &str = "HOOP_DNS_NEXT_SLOT";
    /// `LpmTrie<DnsName, DnsPattern>`: protected `*.suffix` names, as [`super::dns::wildcard_key`].
    pub const DNS_WILDCARDS: &str = "HOOP_DNS_WILDCARDS";
    /// `LpmTrie<DnsName, DnsPattern>`: protected exact names, as [`super::dns::name_key`].
    pub const DNS_EXACT: &str = "HOOP_DNS_EXACT";
    /// `PerCpuArray<DnsScratch>`: working memory of the DNS guard (too big for the stack).
    pub const DNS_SCRATCH: &str = "HOOP_DNS_SCRATCH";
}

/// Program names (the Rust function names in hoop-ebpf).
pub mod progs {
    pub const CONNECT4: &str = "hoop_connect4";
    pub const CONNECT6: &str = "hoop_connect6";
    pub const GETPEERNAME4: &str = "hoop_getpeername4";
    pub const GETPEERNAME6: &str = "hoop_getpeername6";
    pub const SOCK_OPS: &str = "hoop_sock_ops";
    pub const SENDMSG4: &str = "hoop_sendmsg4";
    pub const SENDMSG6: &str = "hoop_sendmsg6";
    pub const RECVMSG4: &str = "hoop_recvmsg4";
    pub const RECVMSG6: &str = "hoop_recvmsg6";
    /// `cgroup_skb/egress`: drops direct DNS queries for protected names (see [`super::dns`]).
    pub const DNS_GUARD: &str = "hoop_dns_guard";
    /// All programs, in attach order: the receive-side translation before the send-side
    /// redirect, so no redirected answer is ever seen untranslated.
    pub const ALL: [&str; 10] = [
        RECVMSG4,
        RECVMSG6,
        GETPEERNAME4,
        GETPEERNAME6,
        SOCK_OPS,
        DNS_GUARD,
        CONNECT4,
        CONNECT6,
        SENDMSG4,
        SENDMSG6,
    ];
}

/// Indexes of the `STATS` per-CPU counters.
pub mod stats {
    /// connects redirected to hoopd
    pub const REDIRECTED: u32 = 0;
    /// connects that bypassed because the socket carried hoopd's mark
    pub const BYPASS_MARK: u32 = 1;
    /// sock_ops entries that could not be recorded (map full)
    pub const RECORD_FAILED: u32 = 2;
    /// DNS queries (UDP datagrams and TCP connects) steered to hoopd's forwarder
    pub const DNS_REDIRECTED: u32 = 3;
    /// DNS queries sent direct because the forwarder was not there (hoopd down)
    pub const DNS_DIRECT: u32 = 4;
    /// direct DNS queries for protected names dropped by the DNS guard
    pub const DNS_DROPPED: u32 = 5;
    /// DNS queries refused because no resolver slot was left
    pub const DNS_NO_SLOT: u32 = 6;
    pub const LEN: u32 = 7;
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
    /// Port of hoopd's DNS forwarder (UDP and TCP) on the slot addresses, network order;
    /// 0 when DNS capture is off.
    pub dns_port_be: u16,
    pub _pad: u16,
}
const _: () = assert!(size_of::<NodeConfig>() == 44);

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

/// DNS capture: the kernel half of hoopd's DNS forwarder.
///
/// A DNS query (UDP or TCP to port 53) from the attached subtree is steered to hoopd's forwarder
/// at a *slot address* `127.16.x.y` (IPv4; `::ffff:127.16.x.y` for IPv6 sockets) on
/// `NodeConfig::dns_port_be`. The slot (`x.y`) names the resolver the process addressed, so the
/// forwarder knows where each datagram was going (it reads the destination with IP_PKTINFO) and
/// `recvmsg4|6`/`getpeername4|6` can show the process the resolver's address again — exact even
/// for a socket that talks to several resolvers. Slots are allocated by the programs on first use
/// and never reused.
///
/// Names are matched as the byte-reversal of their wire form: a query's key is the QNAME
/// (without its root byte) minus its first length byte, reversed and lower-cased; a wildcard
/// `*.s`'s key is the wire form of `s` (without root), reversed — so a longest-prefix match is a
/// strict subdomain of `s` ending on a label boundary, and the apex `s` itself does not match.
/// An exact name's key is built like a query's and matches only at its full length.
pub mod dns {
    /// Destination port of DNS.
    pub const PORT: u16 = 53;
    /// First two bytes of every slot address (127.16.0.0/16).
    pub const SLOT_NET: [u8; 2] = [127, 16];
    /// Number of slots (and of distinct resolvers the host can use).
    pub const MAX_SLOTS: u32 = 65_536;
    /// Longest QNAME in wire form (RFC 1035), and the key size.
    pub const MAX_NAME: usize = 256;
    /// Upper bound of labels the guard walks (a name with more is dropped when protected names
    /// cannot be ruled out: fail closed).
    pub const MAX_LABELS: u32 = 128;

    /// The slot address of `slot`.
    pub const fn slot_addr(slot: u32) -> [u8; 4] {
        [SLOT_NET[0], SLOT_NET[1], (slot >> 8) as u8, slot as u8]
    }

    /// The slot of a slot address, if it is one.
    pub const fn slot_of(a: [u8; 4]) -> Option<u32> {
        if a[0] == SLOT_NET[0] && a[1] == SLOT_NET[1] {
            Some(((a[2] as u32) << 8) | a[3] as u32)
        } else {
            None
        }
    }

    /// Wire form of a dotted name (a trailing dot is allowed) without the root byte; `None`
    /// when a label is empty or longer than 63 bytes, or the name does not fit.
    pub fn wire(name: &str, out: &mut [u8; MAX_NAME]) -> Option<usize> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut n = 0;
        for label in name.split('.') {
            let l = label.len();
            if l == 0 || l > 63 || n + 1 + l >= MAX_NAME {
                return None;
            }
            out[n] = l as u8;
            out[n + 1..n + 1 + l].copy_from_slice(label.as_bytes());
            n += 1 + l;
        }
        Some(n)
    }

    /// The key of a QNAME given in wire form without its root byte: everything after the first
    /// length byte, reversed and lower-cased. This is what the DNS guard computes in the kernel.
    pub fn query_key(wire: &[u8]) -> Option<(super::DnsName, u32)> {
        if wire.is_empty() || wire.len() > MAX_NAME {
            return None;
        }
        let mut key = super::DnsName::default();
        let l = wire.len();
        for j in 0..l - 1 {
            key.bytes[j] = wire[l - 1 - j].to_ascii_lowercase();
        }
        Some((key, (l - 1) as u32))
    }

    /// The key of an exact protected name (matches only a query for that name).
    pub fn exact_key(name: &str) -> Option<(super::DnsName, u32)> {
        let mut w = [0; MAX_NAME];
        let n = wire(name, &mut w)?;
        query_key(&w[..n])
    }

    /// The key of a wildcard `*.suffix`, given `suffix` (matches strict subdomains only).
    pub fn wildcard_key(suffix: &str) -> Option<(super::DnsName, u32)> {
        let mut w = [0; MAX_NAME];
        let n = wire(suffix, &mut w)?;
        let mut key = super::DnsName::default();
        for j in 0..n {
            key.bytes[j] = w[n - 1 - j].to_ascii_lowercase();
        }
        Some((key, n as u32))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn q(name: &str) -> (crate::DnsName, u32) {
            let mut w = [0; MAX_NAME];
            let n = wire(name, &mut w).unwrap();
            query_key(&w[..n]).unwrap()
        }

        /// Longest-prefix semantics: `pattern` matches `key` when its bytes start `key`.
        fn prefix_match(pattern: &(crate::DnsName, u32), key: &(crate::DnsName, u32)) -> bool {
            pattern.1 <= key.1
                && key.0.bytes[..pattern.1 as usize] == pattern.0.bytes[..pattern.1 as usize]
        }

        #[test]
        fn wildcard_matches_strict_subdomains_only() {
            let w = wildcard_key("postgres.database.azure.com").unwrap();
            assert!(prefix_match(&w, &q("db1.postgres.database.azure.com")));
            assert!(prefix_match(&w, &q("DB1.Postgres.Database.Azure.COM.")));
            assert!(prefix_match(&w, &q("a.b.postgres.database.azure.com")));
            assert!(!prefix_match(&w, &q("postgres.database.azure.com")));
            assert!(!prefix_match(&w, &q("xpostgres.database.azure.com")));
            assert!(!prefix_match(&w, &q("db1.postgres.database.azure.co")));
            assert!(!prefix_match(
                &w,
                &q("db1.postgres.database.azure.com.evil")
            ));
        }

        #[test]
        fn exact_matches_whole_name_only() {
            let e = exact_key("management.azure.com").unwrap();
            let hit = q("Management.Azure.com");
            assert!(prefix_match(&e, &hit) && e.1 == hit.1);
            let sub = q("x.management.azure.com");
            assert!(!(prefix_match(&e, &sub) && e.1 == sub.1));
            assert!(!prefix_match(&e, &q("management.azure.co")));
        }

        #[test]
        fn slot_addresses_round_trip() {
            assert_eq!(slot_of(slot_addr(0x1234)), Some(0x1234));
            assert_eq!(slot_of([127, 0, 0, 1]), None);
            assert!(wire("a..b", &mut [0; MAX_NAME]).is_none());
        }
    }
}

/// A resolver as a process addressed it (key of `DNS_RESOLVERS`, value of `DNS_SLOTS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DnsResolver {
    /// IPv4 as v4-mapped IPv6.
    pub addr: [u8; 16],
    pub port_be: u16,
    /// 1 for a used slot (an all-zero entry is a free one).
    pub used: u16,
}
const _: () = assert!(size_of::<DnsResolver>() == 20);

/// LPM key data of the name tries (see [`dns`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DnsName {
    pub bytes: [u8; dns::MAX_NAME],
}
const _: () = assert!(size_of::<DnsName>() == 256);

impl Default for DnsName {
    fn default() -> Self {
        Self {
            bytes: [0; dns::MAX_NAME],
        }
    }
}

/// Value of the name tries: the pattern's key length in bytes (exact names match only when the
/// query's key has this length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsPattern {
    pub len: u32,
}
const _: () = assert!(size_of::<DnsPattern>() == 4);

/// Per-CPU working memory of the DNS guard: the QNAME as loaded, then the LPM key.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsScratch {
    pub raw: [u8; dns::MAX_NAME],
    pub prefix_len: u32,
    pub key: DnsName,
}
const _: () = assert!(size_of::<DnsScratch>() == 516);

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
    unsafe impl aya::Pod for super::DnsResolver {}
    unsafe impl aya::Pod for super::DnsName {}
    unsafe impl aya::Pod for super::DnsPattern {}
}
