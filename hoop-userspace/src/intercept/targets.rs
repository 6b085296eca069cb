//! The protected set: configured targets × (CIDRs + resolved host addresses) × ports, as kernel
//! map entries, nftables set elements, and a user-space lookup from an original destination
//! back to its target.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::Arc,
};

use hoop_common::{TargetRef, TargetV4, TargetV6, lpm_prefix_len};
use ipnet::IpNet;

use crate::config::{Config, PortSpec, Target};

/// One protected (network, ports) pair of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub net: IpNet,
    pub ports: PortSpec,
    pub target_id: u32,
}

/// Exact host name → addresses it resolved to (kept from the last successful resolution).
pub type Resolved = BTreeMap<String, Vec<IpAddr>>;

/// A target as the data path sees it: its configuration plus a stable id shared with the kernel.
#[derive(Debug)]
pub struct TargetInfo {
    pub id: u32,
    pub config: Target,
}

#[derive(Debug, Default)]
pub struct TargetSet {
    entries: Vec<Entry>,
    by_id: HashMap<u32, Arc<TargetInfo>>,
    /// Ids of the targets of this configuration (`by_id` may also hold inherited ones).
    configured: Vec<u32>,
    /// Address → the configured host name it was resolved from.
    names: HashMap<IpAddr, String>,
}

/// LPM keys as plain tuples (aya's `Key` is not `Hash`): (prefix length, data).
pub type KeyV4 = (u32, TargetV4);
pub type KeyV6 = (u32, TargetV6);

impl TargetSet {
    /// Builds the set for `cfg`. Ids are stable across reloads and restarts: a hash of the name
    /// (probing on a collision), so a pinned map written by a previous hoopd stays meaningful.
    pub fn build(cfg: &Config, resolved: &Resolved) -> Self {
        let mut set = Self::default();
        for t in &cfg.targets {
            let mut id = fnv1a(t.name.as_bytes()).max(1);
            while set.by_id.contains_key(&id) {
                id = id.wrapping_add(1).max(1);
            }
            for h in t.exact_hosts() {
                for ip in resolved.get(h).into_iter().flatten() {
                    set.names
                        .entry(canonical(*ip))
                        .or_insert_with(|| h.to_string());
                }
            }
            let nets = t.cidrs.iter().copied().chain(
                t.exact_hosts()
                    .flat_map(|h| resolved.get(h).into_iter().flatten())
                    .map(|ip| IpNet::from(*ip)),
            );
            for net in nets {
                for ports in &t.ports {
                    set.entries.push(Entry {
                        net,
                        ports: *ports,
                        target_id: id,
                    });
                }
            }
            set.by_id.insert(
                id,
                Arc::new(TargetInfo {
                    id,
                    config: t.clone(),
                }),
            );
            set.configured.push(id);
        }
        set
    }

    /// Keeps `old`'s targets resolvable by id (not by address): a connection redirected just
    /// before a reload still finds the target it was redirected for.
    pub fn inherit_ids(&mut self, old: &TargetSet) {
        for (id, t) in &old.by_id {
            self.by_id.entry(*id).or_insert_with(|| t.clone());
        }
    }

    /// The host name `ip` was resolved from, if it came from a configured name.
    pub fn host_for(&self, ip: IpAddr) -> Option<&str> {
        self.names.get(&canonical(ip)).map(String::as_str)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn by_id(&self, id: u32) -> Option<&Arc<TargetInfo>> {
        self.by_id.get(&id)
    }

    /// The configured targets (not the ones only inherited from an earlier configuration).
    pub fn targets(&self) -> impl Iterator<Item = &Arc<TargetInfo>> {
        self.by_id
            .values()
            .filter(|t| self.configured.contains(&t.id))
    }

    /// Ids of the targets (in configuration order) whose `hosts` cover `name`: an exact name
    /// equal to it, or a `*.suffix` it is a strict subdomain of. Case-insensitive; a trailing
    /// dot is ignored.
    pub fn targets_for_name(&self, name: &str) -> Vec<u32> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        self.configured
            .iter()
            .filter(|id| {
                self.by_id[*id]
                    .config
                    .hosts
                    .iter()
                    .any(|h| host_covers(h, &name))
            })
            .copied()
            .collect()
    }

    /// Whether any configured target names hosts (so DNS answers may matter).
    pub fn has_hosts(&self) -> bool {
        self.targets().any(|t| !t.config.hosts.is_empty())
    }

    /// The target protecting `ip:port` (longest prefix wins, as in the kernel).
    pub fn lookup(&self, ip: IpAddr, port: u16) -> Option<&Arc<TargetInfo>> {
        let ip = canonical(ip);
        let mut best: Option<&Entry> = None;
        for e in self
            .entries
            .iter()
            .filter(|e| e.net.contains(&ip) && e.ports.contains(port))
        {
            // strictly longer only: on a tie the first in configuration order wins, as in the maps
            if best.is_none_or(|b| e.net.prefix_len() > b.net.prefix_len()) {
                best = Some(e);
            }
        }
        best.and_then(|e| self.by_id.get(&e.target_id))
    }

    /// Kernel trie entries. When two targets claim the same (network, port), the first in
    /// configuration order wins and the conflict is reported.
    pub fn lpm_entries(
        &self,
    ) -> (
        HashMap<KeyV4, TargetRef>,
        HashMap<KeyV6, TargetRef>,
        Vec<String>,
    ) {
        let (mut v4, mut v6, mut conflicts) = (HashMap::new(), HashMap::new(), Vec::new());
        for e in &self.entries {
            let value = TargetRef {
                target_id: e.target_id,
            };
            for port in e.ports.lo()..=e.ports.hi() {
                let port_be = port.to_be_bytes();
                let prev = match e.net {
                    IpNet::V4(n) => {
                        let data = TargetV4 {
                            port_be,
                            addr: n.network().octets(),
                        };
                        let key = (lpm_prefix_len(n.prefix_len()), data);
                        keep_first(&mut v4, key, value)
                    }
                    IpNet::V6(n) => {
                        let data = TargetV6 {
                            port_be,
                            addr: n.network().octets(),
                        };
                        let key = (lpm_prefix_len(n.prefix_len()), data);
                        keep_first(&mut v6, key, value)
                    }
                };
                if let Some(other) = prev.filter(|o| o.target_id != e.target_id) {
                    let name = |id| self.by_id.get(&id).map_or("?", |t| t.config.name.as_str());
                    conflicts.push(format!(
                        "{}:{port} is claimed by targets {} and {}; {} wins",
                        e.net,
                        name(other.target_id),
                        name(e.target_id),
                        name(other.target_id)
                    ));
                }
            }
        }
        (v4, v6, conflicts)
    }
}

fn keep_first<K: std::hash::Hash + Eq>(
    m: &mut HashMap<K, TargetRef>,
    k: K,
    v: TargetRef,
) -> Option<TargetRef> {
    match m.entry(k) {
        std::collections::hash_map::Entry::Occupied(o) => Some(*o.get()),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(v);
            None
        }
    }
}

/// Whether the configured host pattern `pattern` covers `name` (lower-case, no trailing dot).
pub fn host_covers(pattern: &str, name: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            name.len() > suffix.len() + 1
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
                && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        }
        None => name.eq_ignore_ascii_case(pattern),
    }
}

/// IPv4-mapped IPv6 addresses are IPv4 for matching (the kernel matches them in the v4 trie).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::parse(text, "test").unwrap()
    }

    const TWO: &str = r#"
        [[target]]
        name = "pg"
        protocol = "postgres"
        cidrs = ["10.0.0.0/8", "fd00::/8"]
        hosts = ["db.example.com"]
        ports = [5432]
        [[target]]
        name = "sql"
        protocol = "tds"
        cidrs = ["10.1.2.3/32"]
        ports = [1433, "11000-11002"]
    "#;

    #[test]
    fn expands_cidrs_hosts_and_ports() {
        let mut r = Resolved::new();
        r.insert("db.example.com".into(), vec!["192.0.2.7".parse().unwrap()]);
        let set = TargetSet::build(&cfg(TWO), &r);
        let (v4, v6, conflicts) = set.lpm_entries();
        assert!(conflicts.is_empty());
        // pg: 10/8 and 192.0.2.7/32 on 5432; sql: 10.1.2.3/32 on 1433 + 3 ports
        assert_eq!(v4.len(), 2 + 4);
        assert_eq!(v6.len(), 1);
        let key = (
            16 + 8,
            TargetV4 {
                port_be: 5432u16.to_be_bytes(),
                addr: [10, 0, 0, 0],
            },
        );
        let pg = set.lookup("10.9.9.9".parse().unwrap(), 5432).unwrap();
        assert_eq!(v4[&key].target_id, pg.id);
        assert_eq!(pg.config.name, "pg");
    }

    #[test]
    fn lookup_is_longest_prefix_and_port_exact() {
        let set = TargetSet::build(&cfg(TWO), &Resolved::new());
        let ip = "10.1.2.3".parse().unwrap();
        assert_eq!(set.lookup(ip, 11001).unwrap().config.name, "sql");
        assert_eq!(set.lookup(ip, 5432).unwrap().config.name, "pg");
        assert!(set.lookup(ip, 11003).is_none());
        assert!(set.lookup("11.0.0.1".parse().unwrap(), 5432).is_none());
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(set.lookup(mapped, 1433).unwrap().config.name, "sql");
        assert_eq!(
            set.lookup("fd12::1".parse().unwrap(), 5432)
                .unwrap()
                .config
                .name,
            "pg"
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = TargetSet::build(&cfg(TWO), &Resolved::new());
        let b = TargetSet::build(&cfg(TWO), &Resolved::new());
        let ids = |s: &TargetSet| {
            let mut v: Vec<_> = s.targets().map(|t| (t.config.name.clone(), t.id)).collect();
            v.sort();
            v
        };
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a)[0].1, ids(&a)[1].1);
    }

    #[test]
    fn names_match_exact_and_strict_wildcards() {
        assert!(host_covers(
            "*.postgres.database.azure.com",
            "db1.postgres.database.azure.com"
        ));
        assert!(host_covers(
            "*.Postgres.database.azure.com",
            "a.b.postgres.database.azure.com"
        ));
        assert!(!host_covers(
            "*.postgres.database.azure.com",
            "postgres.database.azure.com"
        ));
        assert!(!host_covers(
            "*.postgres.database.azure.com",
            "xpostgres.database.azure.com"
        ));
        assert!(host_covers("management.azure.com", "management.azure.com"));
        assert!(!host_covers(
            "management.azure.com",
            "x.management.azure.com"
        ));
        let text = r#"
            [[target]]
            name = "pg"
            protocol = "postgres"
            hosts = ["*.postgres.database.azure.com"]
            ports = [5432]
            [[target]]
            name = "all"
            protocol = "tcp"
            hosts = ["*.azure.com"]
            ports = [443]
        "#;
        let set = TargetSet::build(&cfg(text), &Resolved::new());
        let ids = set.targets_for_name("DB1.postgres.database.azure.com.");
        let names: Vec<_> = ids
            .iter()
            .map(|i| set.by_id(*i).unwrap().config.name.clone())
            .collect();
        assert_eq!(names, vec!["pg", "all"]);
        assert!(set.targets_for_name("example.com").is_empty());
    }

    #[test]
    fn conflicting_claims_are_reported() {
        let text = r#"
            [[target]]
            name = "a"
            protocol = "tcp"
            cidrs = ["10.0.0.0/8"]
            ports = [80]
            [[target]]
            name = "b"
            protocol = "tcp"
            cidrs = ["10.0.0.0/8"]
            ports = [80]
        "#;
        let set = TargetSet::build(&cfg(text), &Resolved::new());
        let (v4, _, conflicts) = set.lpm_entries();
        assert_eq!(v4.len(), 1);
        assert_eq!(conflicts.len(), 1);
    }
}
