//! Interception: load, attach and pin the eBPF programs, keep the target maps in step with the
//! configuration, hand hoopd the original destination of each accepted connection, and keep the
//! nftables guard in place.
//!
//! Pins live under `pin_dir`: `maps/` (by name), `progs/`, `links/`. Links are pinned so the
//! redirect outlives hoopd: while it is down a protected connect reaches a closed listener and is
//! refused, never sent direct. On start hoopd re-adopts the pinned maps and replaces each pinned
//! link by attaching the new program first (multi-attach) and only then releasing the old link,
//! so there is no moment without a redirect.
//!
//! Besides the configured CIDRs and the resolved exact names, the target tries hold addresses
//! learned from DNS answers for protected names (`learned`, written by `crate::dns` before the
//! answer reaches the client, removed after its TTL). The DNS name tries tell the kernel's DNS
//! guard which query names are protected (see `hoop_common::dns`).

pub mod btf;
pub mod guard;
pub mod learned;
mod occupancy;
mod pins;
pub mod sys;
pub mod targets;

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Mutex,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, LpmTrie, MapData, MapError, PerCpuArray, lpm_trie::Key},
};
use hoop_common::{
    ClientKey, DnsName, DnsPattern, DnsResolver, NodeConfig, OrigDst, TargetRef, TargetV4,
    TargetV6, lpm_prefix_len, maps, stats, v4_mapped,
};

use crate::config::Config;
use learned::Learned;
pub use occupancy::MapOccupancy;
pub use sys::CgroupScope;
use targets::{KeyV4, KeyV6, TargetSet};

/// The eBPF object built by `cargo xtask build-ebpf`, embedded at compile time.
#[cfg(hoop_ebpf_embedded)]
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("HOOP_EBPF_OBJ"));
#[cfg(not(hoop_ebpf_embedded))]
static EBPF_OBJECT: &[u8] = &[];

#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("this hoopd was built without its eBPF object; build with `cargo xtask build`")]
    NoObject,
    #[error("cgroup: {0}")]
    Cgroup(std::io::Error),
    #[error("bpffs at {path}: {source}")]
    Bpffs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("eBPF link of {name}: {source}")]
    Link {
        name: &'static str,
        source: aya::programs::links::LinkError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("pin {path}: {source}")]
    Pin {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nftables guard: {0}")]
    Guard(#[from] guard::GuardError),
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> InterceptError {
    move |source| InterceptError::Map { name, source }
}

/// Redirect counters, summed over CPUs.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub redirected: u64,
    pub bypass_mark: u64,
    pub record_failed: u64,
    pub dns_redirected: u64,
    pub dns_direct: u64,
    pub dns_dropped: u64,
    pub dns_no_slot: u64,
}

pub struct Intercept {
    scope: CgroupScope,
    pin_dir: PathBuf,
    targets_v4: Mutex<LpmTrie<MapData, TargetV4, TargetRef>>,
    targets_v6: Mutex<LpmTrie<MapData, TargetV6, TargetRef>>,
    by_client: Mutex<BpfHashMap<MapData, ClientKey, OrigDst>>,
    stats: PerCpuArray<MapData, u64>,
    dns_slots: BpfHashMap<MapData, u32, DnsResolver>,
    dns_wildcards: Mutex<LpmTrie<MapData, DnsName, DnsPattern>>,
    dns_exact: Mutex<LpmTrie<MapData, DnsName, DnsPattern>>,
    /// Addresses learned from DNS answers, and the kernel keys of the configured set (which a
    /// learned address expiring must not remove).
    learned: Mutex<Learned>,
    static_keys: Mutex<(HashSet<KeyV4>, HashSet<KeyV6>)>,
    /// Keeps the programs' file descriptors (and the aya-log buffer) alive.
    ebpf: Ebpf,
}

impl Intercept {
    /// Loads and attaches the programs to the configured cgroup, configures the redirect to the
    /// listener and fills the target maps. Call after the listener is bound.
    pub fn start(cfg: &Config, set: &TargetSet, learned: Learned) -> Result<Self, InterceptError> {
        if EBPF_OBJECT.is_empty() {
            return Err(InterceptError::NoObject);
        }
        raise_memlock();
        let scope = CgroupScope::resolve(cfg.intercept.cgroup.as_deref())
            .map_err(InterceptError::Cgroup)?;
        let pin_dir = cfg.intercept.pin_dir.clone();
        let pins = pins::Pins::new(&pin_dir);
        pins.create().map_err(|source| InterceptError::Bpffs {
            path: pin_dir.clone(),
            source,
        })?;

        let log_level = if tracing::enabled!(target: "hoop_ebpf", tracing::Level::DEBUG) {
            4u8
        } else {
            2
        };
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pins.maps())
            .override_global(aya_log::LEVEL, &log_level, false)
            .load(EBPF_OBJECT)?;
        spawn_ebpf_logger(&mut ebpf);

        let mut config: Array<MapData, NodeConfig> = take(&mut ebpf, maps::CONFIG)?;
        config
            .set(0, node_config(cfg), 0)
            .map_err(map_err(maps::CONFIG))?;
        let mut this = Self {
            targets_v4: Mutex::new(take(&mut ebpf, maps::TARGETS_V4)?),
            targets_v6: Mutex::new(take(&mut ebpf, maps::TARGETS_V6)?),
            by_client: Mutex::new(take(&mut ebpf, maps::BY_CLIENT)?),
            stats: take(&mut ebpf, maps::STATS)?,
            dns_slots: take(&mut ebpf, maps::DNS_SLOTS)?,
            dns_wildcards: Mutex::new(take(&mut ebpf, maps::DNS_WILDCARDS)?),
            dns_exact: Mutex::new(take(&mut ebpf, maps::DNS_EXACT)?),
            learned: Mutex::new(learned),
            static_keys: Default::default(),
            scope,
            pin_dir,
            ebpf,
        };
        for c in this.sync_targets(set)? {
            tracing::warn!(conflict = %c, "overlapping targets");
        }
        let cgroup = std::fs::File::open(&this.scope.path).map_err(|e| {
            InterceptError::Cgroup(std::io::Error::other(format!(
                "{}: {e}",
                this.scope.path.display()
            )))
        })?;
        pins.attach_all(&mut this.ebpf, &cgroup)?;
        tracing::info!(cgroup = %this.scope.path.display(), pins = %this.pin_dir.display(), "eBPF redirect attached");
        Ok(this)
    }

    pub fn scope(&self) -> &CgroupScope {
        &self.scope
    }

    /// Makes the kernel tries equal `set`: new and changed entries are written first, stale ones
    /// removed after, so an entry present before and after is never absent in between.
    /// Returns the overlapping claims found (first target in configuration order wins).
    pub fn sync_targets(&self, set: &TargetSet) -> Result<Vec<String>, InterceptError> {
        let (mut v4, mut v6, conflicts) = set.lpm_entries();
        *self.static_keys.lock().unwrap() =
            (v4.keys().copied().collect(), v6.keys().copied().collect());
        {
            // learned addresses of targets that are gone are forgotten; the rest stay protected
            let mut learned = self.learned.lock().unwrap();
            learned.retain_targets(|id| set.targets().any(|t| t.id == id));
            for (ip, id) in learned.pairs() {
                for (k, v) in learned_keys(set, ip, id) {
                    match k {
                        LearnedKey::V4(k) => v4.entry(k).or_insert(v),
                        LearnedKey::V6(k) => v6.entry(k).or_insert(v),
                    };
                }
            }
        }
        sync_trie(&mut self.targets_v4.lock().unwrap(), &v4).map_err(map_err(maps::TARGETS_V4))?;
        sync_trie(&mut self.targets_v6.lock().unwrap(), &v6).map_err(map_err(maps::TARGETS_V6))?;
        self.sync_dns_names(set)?;
        Ok(conflicts)
    }

    /// Makes the kernel's protected-name tries (read by the DNS guard) equal the hosts of `set`.
    fn sync_dns_names(&self, set: &TargetSet) -> Result<(), InterceptError> {
        let (mut wild, mut exact) = (HashMap::new(), HashMap::new());
        for t in set.targets() {
            for h in &t.config.hosts {
                let (m, key) = match h.strip_prefix("*.") {
                    Some(suffix) => (&mut wild, hoop_common::dns::wildcard_key(suffix)),
                    None => (&mut exact, hoop_common::dns::exact_key(h)),
                };
                if let Some((name, len)) = key {
                    m.insert((len * 8, name), DnsPattern { len });
                }
            }
        }
        sync_trie(&mut self.dns_wildcards.lock().unwrap(), &wild)
            .map_err(map_err(maps::DNS_WILDCARDS))?;
        sync_trie(&mut self.dns_exact.lock().unwrap(), &exact).map_err(map_err(maps::DNS_EXACT))
    }

    /// Protects `ip` (an answer for `name`) for the targets `ids` for `lifetime` seconds: the
    /// kernel keys are written before this returns, so the connect that follows the answer is
    /// captured. Returns whether the set of protected addresses grew.
    pub fn learn(
        &self,
        set: &TargetSet,
        ip: IpAddr,
        name: &str,
        ids: &[u32],
        lifetime: u64,
    ) -> Result<bool, InterceptError> {
        let ip = targets::canonical(ip);
        let mut learned = self.learned.lock().unwrap();
        let change = learned.learn(ip, name, ids, lifetime);
        for (ip, id) in &change.added {
            for (k, v) in learned_keys(set, *ip, *id) {
                // BPF_NOEXIST: an address already protected (a CIDR, another target) keeps its owner
                let r = match k {
                    LearnedKey::V4((p, d)) => {
                        self.targets_v4
                            .lock()
                            .unwrap()
                            .insert(&Key::new(p, d), v, 1)
                    }
                    LearnedKey::V6((p, d)) => {
                        self.targets_v6
                            .lock()
                            .unwrap()
                            .insert(&Key::new(p, d), v, 1)
                    }
                };
                match r {
                    Ok(()) => {}
                    Err(MapError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => {
                        // not half-learned: the next answer for the name tries again
                        for (ip, id) in &change.added {
                            learned.forget(*ip, *id);
                        }
                        let map = if ip.is_ipv4() {
                            maps::TARGETS_V4
                        } else {
                            maps::TARGETS_V6
                        };
                        return Err(map_err(map)(e));
                    }
                }
            }
        }
        Ok(!change.added.is_empty())
    }

    /// Forgets learned addresses past their lifetime (those with live sessions get `grace`
    /// seconds more) and removes their kernel keys. Returns whether anything was removed.
    pub fn expire_learned(
        &self,
        set: &TargetSet,
        live: impl Fn(IpAddr) -> bool,
        grace: u64,
    ) -> Result<bool, InterceptError> {
        let removed = self.learned.lock().unwrap().expire(live, grace);
        let statics = self.static_keys.lock().unwrap();
        for (ip, e) in &removed {
            tracing::info!(addr = %ip, names = ?e.names, "learned address expired");
            for id in &e.targets {
                for (k, _) in learned_keys(set, *ip, *id) {
                    let r = match k {
                        LearnedKey::V4(k) if !statics.0.contains(&k) => {
                            self.targets_v4.lock().unwrap().remove(&Key::new(k.0, k.1))
                        }
                        LearnedKey::V6(k) if !statics.1.contains(&k) => {
                            self.targets_v6.lock().unwrap().remove(&Key::new(k.0, k.1))
                        }
                        _ => Ok(()),
                    };
                    if let Err(e) = r {
                        tracing::warn!(addr = %ip, error = %e, "removing an expired address");
                    }
                }
            }
        }
        Ok(!removed.is_empty())
    }

    /// The name an agent most recently resolved to `ip`, if it was learned from DNS.
    pub fn learned_host(&self, ip: IpAddr) -> Option<String> {
        self.learned
            .lock()
            .unwrap()
            .name_for(targets::canonical(ip))
            .map(str::to_string)
    }

    /// Every learned (address, target id) pair (for the nftables guard).
    pub fn learned_pairs(&self) -> Vec<(IpAddr, u32)> {
        self.learned.lock().unwrap().pairs()
    }

    /// Writes the learned table to `path`.
    pub fn save_learned(&self, path: &Path) -> std::io::Result<()> {
        self.learned.lock().unwrap().save(path)
    }

    /// The resolver a process addressed, behind a DNS slot.
    pub fn dns_resolver(&self, slot: u32) -> Option<SocketAddr> {
        let r = self.dns_slots.get(&slot, 0).ok()?;
        let ip = targets::canonical(IpAddr::from(r.addr));
        Some(SocketAddr::new(ip, u16::from_be(r.port_be)))
    }

    /// Takes (looks up and deletes) the record of the redirected connection whose client side
    /// is `peer`, as returned by `accept()`.
    pub fn take_orig(&self, peer: SocketAddr) -> Option<OrigDst> {
        let addr = match peer.ip() {
            IpAddr::V4(v4) => v4_mapped(v4.octets()),
            IpAddr::V6(v6) => v6.octets(),
        };
        let key = ClientKey {
            addr,
            port: peer.port(),
            _pad: 0,
        };
        let mut m = self.by_client.lock().unwrap();
        let orig = m.get(&key, 0).ok()?;
        let _ = m.remove(&key);
        Some(orig)
    }

    pub fn stats(&self) -> Stats {
        let sum = |i: u32| self.stats.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0);
        Stats {
            redirected: sum(stats::REDIRECTED),
            bypass_mark: sum(stats::BYPASS_MARK),
            record_failed: sum(stats::RECORD_FAILED),
            dns_redirected: sum(stats::DNS_REDIRECTED),
            dns_direct: sum(stats::DNS_DIRECT),
            dns_dropped: sum(stats::DNS_DROPPED),
            dns_no_slot: sum(stats::DNS_NO_SLOT),
        }
    }
}

/// Logs the wildcard names that protect nothing because DNS capture is off.
pub fn report_pending_wildcards(cfg: &Config) {
    if cfg.dns.capture {
        return;
    }
    for t in &cfg.targets {
        let pending: Vec<&str> = t.wildcard_hosts().collect();
        if !pending.is_empty() {
            tracing::warn!(
                target_name = %t.name,
                hosts = ?pending,
                "wildcard hosts protect nothing while dns.capture = false; \
                 only the target's cidrs and exact hosts are protected"
            );
        }
    }
}

/// Removes every pin (detaching the programs) and the guard table: the explicit way back to an
/// unprotected host.
pub fn teardown(pin_dir: &Path, nft_table: &str) -> Result<(), InterceptError> {
    pins::Pins::new(pin_dir)
        .remove_all()
        .map_err(|source| InterceptError::Pin {
            path: pin_dir.into(),
            source,
        })?;
    guard::remove(nft_table)?;
    Ok(())
}

fn node_config(cfg: &Config) -> NodeConfig {
    let v4 = match cfg.listen.address.ip() {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => unreachable!("validated: listen.address is IPv4"),
    };
    let (v6, v6_port) = match cfg.listen.address6 {
        Some(SocketAddr::V6(a)) => (a.ip().octets(), a.port()),
        _ => ([0; 16], 0),
    };
    let offsets = btf::task_offsets()
        .inspect_err(|e| tracing::warn!(error = %e, "caller start times will not be recorded; pid reuse cannot be detected"))
        .ok();
    NodeConfig {
        listen_v4: v4,
        listen_v4_port_be: cfg.listen.address.port().to_be(),
        listen_v6_port_be: v6_port.to_be(),
        listen_v6: v6,
        bypass_mark: cfg.intercept.mark,
        enabled: 1,
        off_task_group_leader: offsets.map_or(0, |o| o.group_leader),
        off_task_start_boottime: offsets.map_or(0, |o| o.start_boottime),
        dns_port_be: if cfg.dns.capture {
            cfg.dns.port.to_be()
        } else {
            0
        },
        _pad: 0,
    }
}

enum LearnedKey {
    V4(KeyV4),
    V6(KeyV6),
}

/// The kernel keys protecting `ip` on the ports of target `id`.
fn learned_keys(set: &TargetSet, ip: IpAddr, id: u32) -> Vec<(LearnedKey, TargetRef)> {
    let Some(t) = set.by_id(id) else {
        return Vec::new();
    };
    let v = TargetRef { target_id: id };
    t.config
        .port_list()
        .map(|port| {
            let port_be = port.to_be_bytes();
            let k = match targets::canonical(ip) {
                IpAddr::V4(a) => LearnedKey::V4((
                    lpm_prefix_len(32),
                    TargetV4 {
                        port_be,
                        addr: a.octets(),
                    },
                )),
                IpAddr::V6(a) => LearnedKey::V6((
                    lpm_prefix_len(128),
                    TargetV6 {
                        port_be,
                        addr: a.octets(),
                    },
                )),
            };
            (k, v)
        })
        .collect()
}

fn take<M>(ebpf: &mut Ebpf, name: &'static str) -> Result<M, InterceptError>
where
    M: TryFrom<aya::maps::Map, Error = MapError>,
{
    let map = ebpf.take_map(name).ok_or(InterceptError::Map {
        name,
        source: MapError::InvalidName { name: name.into() },
    })?;
    M::try_from(map).map_err(map_err(name))
}

fn sync_trie<K, V>(
    trie: &mut LpmTrie<MapData, K, V>,
    want: &HashMap<(u32, K), V>,
) -> Result<(), MapError>
where
    K: aya::Pod + std::hash::Hash + Eq,
    V: aya::Pod + PartialEq,
{
    for ((prefix, data), v) in want {
        trie.insert(&Key::new(*prefix, *data), *v, 0)?;
    }
    let stale: Vec<Key<K>> = trie
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !want.contains_key(&(k.prefix_len(), k.data())))
        .collect();
    for k in stale {
        trie.remove(&k)?;
    }
    Ok(())
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; harmless on newer ones.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}

/// Forwards the programs' aya-log records to tracing (through the `log` bridge).
fn spawn_ebpf_logger(ebpf: &mut Ebpf) {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "eBPF log forwarding unavailable");
            return;
        }
    };
    // SAFETY: the logger owns the ring buffer's fd and lives inside the AsyncFd, so the fd stays
    // open for as long as it is registered.
    let fd = match unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    } {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "eBPF log forwarding unavailable");
            return;
        }
    };
    tokio::spawn(async move {
        let mut fd = fd;
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}
