//! Per-target checks of the configuration (names, CIDRs, ports, hosts) and the host-name rule
//! other sections share.

use super::{Listen, Protocol, Target, UpstreamTls};

pub(super) fn validate_target(
    t: &Target,
    key: &dyn Fn(&str) -> String,
    listen: &Listen,
) -> Result<(), (String, String)> {
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if t.name.is_empty() || !t.name.chars().all(name_ok) {
        return Err((
            key("name"),
            format!("{:?} must be non-empty [A-Za-z0-9-_.]", t.name),
        ));
    }
    if t.ports.is_empty() {
        return Err((key("ports"), "at least one port is required".into()));
    }
    for (j, p) in t.ports.iter().enumerate() {
        p.validate().map_err(|r| (key(&format!("ports[{j}]")), r))?;
    }
    for (field, kinds) in [
        ("deny_statements", &t.deny_statements),
        ("review_statements", &t.review_statements),
    ] {
        for (j, k) in kinds.iter().enumerate() {
            if crate::classify::StatementKind::from_name(k).is_none() {
                return Err((
                    key(&format!("{field}[{j}]")),
                    format!("{k:?} is not a statement kind"),
                ));
            }
        }
    }
    if t.protocol != Protocol::Postgres
        && (!t.deny_statements.is_empty()
            || !t.review_statements.is_empty()
            || t.upstream_ca.is_some()
            || t.upstream_tls != UpstreamTls::Require)
    {
        return Err((
            key("protocol"),
            "deny_statements, review_statements, upstream_ca and upstream_tls need protocol \"postgres\"".into(),
        ));
    }
    if let Some(ca) = &t.upstream_ca
        && !ca.is_absolute()
    {
        return Err((key("upstream_ca"), "must be an absolute path".into()));
    }
    if t.cidrs.is_empty() && t.hosts.is_empty() {
        return Err((key("cidrs"), "a target needs cidrs or hosts".into()));
    }
    for (j, h) in t.hosts.iter().enumerate() {
        if !valid_host(h) {
            return Err((
                key(&format!("hosts[{j}]")),
                format!("{h:?} is not a host name or *.suffix"),
            ));
        }
    }
    for (j, c) in t.cidrs.iter().enumerate() {
        if *c != c.trunc() {
            return Err((
                key(&format!("cidrs[{j}]")),
                format!("{c} has host bits set (use {})", c.trunc()),
            ));
        }
        for l in std::iter::once(listen.address).chain(listen.address6) {
            if c.contains(&l.ip()) && t.ports.iter().any(|p| p.contains(l.port())) {
                return Err((
                    key(&format!("cidrs[{j}]")),
                    format!("covers hoopd's own listener {l}"),
                ));
            }
        }
    }
    Ok(())
}

/// A DNS name (letters, digits, hyphens, dots) or `*.` followed by one.
pub fn valid_host(h: &str) -> bool {
    let name = h.strip_prefix("*.").unwrap_or(h);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
