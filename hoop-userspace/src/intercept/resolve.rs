//! Resolving the exact host names of targets (wildcards wait for DNS learning).

use std::{collections::BTreeSet, net::IpAddr, time::Duration};

use super::targets::Resolved;
use crate::config::Config;

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves every exact host name. A name that fails keeps the addresses it had in `previous`
/// (protection is never dropped because a resolver hiccuped).
pub async fn resolve_hosts(cfg: &Config, previous: &Resolved) -> Resolved {
    let names: BTreeSet<&str> = cfg.targets.iter().flat_map(|t| t.exact_hosts()).collect();
    let mut out = Resolved::new();
    for name in names {
        match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0))).await {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                ips.sort();
                ips.dedup();
                out.insert(name.to_string(), ips);
            }
            res => {
                let error = match res {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                let kept = previous.get(name).cloned().unwrap_or_default();
                tracing::warn!(host = name, %error, kept = kept.len(), "cannot resolve target host");
                out.insert(name.to_string(), kept);
            }
        }
    }
    out
}

/// Logs the wildcard names that are configured but not enforceable yet.
pub fn report_pending_wildcards(cfg: &Config) {
    for t in &cfg.targets {
        let pending: Vec<&str> = t.wildcard_hosts().collect();
        if !pending.is_empty() {
            tracing::warn!(
                target_name = %t.name,
                hosts = ?pending,
                "wildcard hosts are pending: they need DNS learning, which this hoopd does not have yet; \
                 only the target's cidrs and exact hosts are protected"
            );
        }
    }
}
