//! Addresses learned from DNS answers for protected names: which targets they belong to, until
//! when, and which names the agents asked for (most recent first).
//!
//! The table is pure bookkeeping; `Intercept` writes the kernel keys it implies. It survives a
//! restart through a JSON file in the state directory (`dns-learned.json`), so an address learned
//! before a restart stays protected after it.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// How many names are remembered per address.
const NAMES_PER_ADDR: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedAddr {
    /// Target ids (in configuration order) the address is protected for.
    pub targets: Vec<u32>,
    /// Names the address was an answer for, most recent first.
    pub names: Vec<String>,
    /// Unix seconds after which the address is no longer protected (unless sessions are live).
    pub expires: u64,
}

#[derive(Debug, Default)]
pub struct Learned {
    addrs: HashMap<IpAddr, LearnedAddr>,
}

/// What `learn` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// (address, target id) pairs that are new: their kernel keys must be written.
    pub added: Vec<(IpAddr, u32)>,
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl Learned {
    /// Records that `name` resolved to `ip` (with `lifetime` seconds to live) for `targets`.
    pub fn learn(&mut self, ip: IpAddr, name: &str, targets: &[u32], lifetime: u64) -> Change {
        let expires = now_unix() + lifetime;
        let e = self.addrs.entry(ip).or_insert_with(|| LearnedAddr {
            targets: Vec::new(),
            names: Vec::new(),
            expires,
        });
        e.expires = e.expires.max(expires);
        e.names.retain(|n| n != name);
        e.names.insert(0, name.to_string());
        e.names.truncate(NAMES_PER_ADDR);
        let mut change = Change::default();
        for t in targets {
            if !e.targets.contains(t) {
                e.targets.push(*t);
                change.added.push((ip, *t));
            }
        }
        change
    }

    /// Undoes the (`ip`, `target`) pair of a `learn` whose kernel keys could not be written.
    pub fn forget(&mut self, ip: IpAddr, target: u32) {
        if let Some(e) = self.addrs.get_mut(&ip) {
            e.targets.retain(|t| *t != target);
            if e.targets.is_empty() {
                self.addrs.remove(&ip);
            }
        }
    }

    /// The name most recently answered with `ip`.
    pub fn name_for(&self, ip: IpAddr) -> Option<&str> {
        self.addrs
            .get(&ip)
            .and_then(|e| e.names.first())
            .map(String::as_str)
    }

    /// Every (address, target id) pair.
    pub fn pairs(&self) -> Vec<(IpAddr, u32)> {
        self.addrs
            .iter()
            .flat_map(|(ip, e)| e.targets.iter().map(move |t| (*ip, *t)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    pub fn get(&self, ip: IpAddr) -> Option<&LearnedAddr> {
        self.addrs.get(&ip)
    }

    /// Removes the addresses past their expiry; one for which `live` says sessions are open
    /// gets `grace` more seconds instead. Returns the removed entries.
    pub fn expire(
        &mut self,
        live: impl Fn(IpAddr) -> bool,
        grace: u64,
    ) -> Vec<(IpAddr, LearnedAddr)> {
        let now = now_unix();
        let due: Vec<IpAddr> = self
            .addrs
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(ip, _)| *ip)
            .collect();
        let mut removed = Vec::new();
        for ip in due {
            if live(ip) {
                self.addrs.get_mut(&ip).expect("listed above").expires = now + grace;
            } else if let Some(e) = self.addrs.remove(&ip) {
                removed.push((ip, e));
            }
        }
        removed
    }

    /// Drops target ids not in `keep` (after a reload removed a target); entries left without
    /// targets are returned (their kernel keys must go).
    pub fn retain_targets(&mut self, keep: impl Fn(u32) -> bool) -> Vec<(IpAddr, u32)> {
        let mut gone = Vec::new();
        for (ip, e) in self.addrs.iter_mut() {
            e.targets.retain(|t| {
                let k = keep(*t);
                if !k {
                    gone.push((*ip, *t));
                }
                k
            });
        }
        self.addrs.retain(|_, e| !e.targets.is_empty());
        gone
    }

    /// Writes the table to `path` (atomically: a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let sorted: BTreeMap<String, &LearnedAddr> = self
            .addrs
            .iter()
            .map(|(ip, e)| (ip.to_string(), e))
            .collect();
        let text = serde_json::to_vec_pretty(&sorted).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// Reads a table written by `save`, dropping expired entries. A missing file is empty.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e),
        };
        let raw: BTreeMap<String, LearnedAddr> =
            serde_json::from_slice(&text).map_err(std::io::Error::other)?;
        let now = now_unix();
        let addrs = raw
            .into_iter()
            .filter(|(_, e)| e.expires > now)
            .filter_map(|(ip, e)| Some((ip.parse().ok()?, e)))
            .collect();
        Ok(Self { addrs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_most_recent_name_and_new_targets() {
        let mut l = Learned::default();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(l.learn(ip, "a.example", &[1], 60).added, vec![(ip, 1)]);
        assert_eq!(l.learn(ip, "b.example", &[1, 2], 60).added, vec![(ip, 2)]);
        assert_eq!(l.name_for(ip), Some("b.example"));
        l.learn(ip, "a.example", &[1], 60);
        assert_eq!(l.name_for(ip), Some("a.example"));
        assert_eq!(l.get(ip).unwrap().names, vec!["a.example", "b.example"]);
        l.forget(ip, 2);
        assert_eq!(l.get(ip).unwrap().targets, vec![1]);
        l.forget(ip, 1);
        assert!(l.get(ip).is_none());
        // forgotten pairs are new again
        assert_eq!(l.learn(ip, "a.example", &[1], 60).added, vec![(ip, 1)]);
    }

    #[test]
    fn expiry_respects_live_sessions() {
        let mut l = Learned::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        l.learn(a, "a", &[1], 0);
        l.learn(b, "b", &[1], 0);
        let removed = l.expire(|ip| ip == b, 30);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].0, a);
        assert!(l.get(b).unwrap().expires >= now_unix() + 29);
    }

    #[test]
    fn saves_and_loads_unexpired() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dns-learned.json");
        let mut l = Learned::default();
        l.learn("10.0.0.1".parse().unwrap(), "a", &[7], 100);
        l.learn("fd00::1".parse().unwrap(), "b", &[7], 100);
        l.save(&p).unwrap();
        let back = Learned::load(&p).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.name_for("fd00::1".parse().unwrap()), Some("b"));
        assert!(Learned::load(&dir.path().join("none")).unwrap().is_empty());
    }
}
