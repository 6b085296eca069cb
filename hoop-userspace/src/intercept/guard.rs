//! The nftables guard: drop direct egress to protected targets from the intercepted scope,
//! except hoopd's own (marked) sockets — so a raw socket or a detached program opens no path.
//!
//! The table is replaced in one `nft -f` transaction (atomic: there is no moment without the
//! rules), survives hoopd crashing (fail closed) and is removed only by `hoopd teardown`.
//!
//! Why nft's native syntax and not the `nftables` crate: that crate speaks nft's JSON, and the
//! JSON parser of nft 1.0.6 (Debian 12) rejects `socket cgroupv2` outright ("Invalid socket key
//! value"; its JSON output even drops the `level`), which is exactly the match that confines the
//! guard to the attached cgroup subtree. The ruleset is rendered from typed values only (parsed
//! addresses, numbers, a checked path), never from free text.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    net::IpAddr,
    path::Path,
    process::{Command, Stdio},
};

use ipnet::IpNet;

use super::{sys::CgroupScope, targets::TargetSet};
use crate::config::PortSpec;

/// nft resolves `socket cgroupv2` paths relative to this directory.
const NFT_CGROUP_BASE: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("cannot run nft: {0}")]
    Spawn(std::io::Error),
    #[error("nft rejected the guard ruleset: {0}")]
    Nft(String),
    #[error("cgroup {0} cannot be named to nft (it resolves paths under {NFT_CGROUP_BASE})")]
    Scope(String),
}

/// What the guard protects and whom it exempts.
pub struct GuardSpec<'a> {
    pub table: &'a str,
    pub mark: u32,
    pub scope: &'a CgroupScope,
}

/// Renders the complete table: a pair of address sets per distinct port list, one drop rule each.
/// `learned` are the (address, target id) pairs learned from DNS answers.
pub fn render(
    spec: &GuardSpec<'_>,
    targets: &TargetSet,
    learned: &[(IpAddr, u32)],
) -> Result<String, GuardError> {
    let scope = scope_match(spec.scope)?;
    let mut groups: BTreeMap<Vec<PortSpec>, (Vec<IpNet>, Vec<IpNet>)> = BTreeMap::new();
    for t in targets.targets() {
        let ports = merged(&t.config.ports);
        let g = groups.entry(ports).or_default();
        let nets = targets
            .entries()
            .iter()
            .filter(|e| e.target_id == t.id)
            .map(|e| e.net)
            .chain(
                learned
                    .iter()
                    .filter(|(_, id)| *id == t.id)
                    .map(|(ip, _)| IpNet::from(super::targets::canonical(*ip))),
            );
        for net in nets {
            match net {
                IpNet::V4(_) => g.0.push(net),
                IpNet::V6(_) => g.1.push(net),
            }
        }
    }
    let mut out = format!("table inet {} {{\n", spec.table);
    let mut rules = String::new();
    for (i, (ports, (v4, v6))) in groups.iter().enumerate() {
        let ports = ports
            .iter()
            .map(PortSpec::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        for (fam, ty, nets) in [("ip", "ipv4_addr", v4), ("ip6", "ipv6_addr", v6)] {
            let mut nets = nets.clone();
            nets.sort();
            nets.dedup();
            let set = format!("p{i}_{ty}");
            let _ = write!(out, "  set {set} {{ type {ty}; flags interval; auto-merge;");
            if !nets.is_empty() {
                let elems = nets
                    .iter()
                    .map(IpNet::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = write!(out, " elements = {{ {elems} }};");
            }
            out.push_str(" }\n");
            let _ = writeln!(
                rules,
                "    {scope}meta mark != {:#x} {fam} daddr @{set} tcp dport {{ {ports} }} counter drop",
                spec.mark
            );
        }
    }
    let _ = write!(
        out,
        "  chain egress {{\n    type filter hook output priority filter; policy accept;\n{rules}  }}\n}}\n"
    );
    Ok(out)
}

/// Installs (or atomically replaces) the guard table.
pub fn apply(
    spec: &GuardSpec<'_>,
    targets: &TargetSet,
    learned: &[(IpAddr, u32)],
) -> Result<(), GuardError> {
    let table = render(spec, targets, learned)?;
    // declaring the table first makes the delete valid when it does not exist yet
    let script = format!(
        "table inet {t} {{}}\ndelete table inet {t}\n{table}",
        t = spec.table
    );
    nft(&script)
}

/// Removes the guard table (no error when it is absent).
pub fn remove(table: &str) -> Result<(), GuardError> {
    nft(&format!(
        "table inet {table} {{}}\ndelete table inet {table}\n"
    ))
}

/// Whether the guard table exists.
pub fn installed(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn nft(script: &str) -> Result<(), GuardError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(GuardError::Spawn)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(GuardError::Spawn)?;
    let out = child.wait_with_output().map_err(GuardError::Spawn)?;
    if !out.status.success() {
        return Err(GuardError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// `socket cgroupv2 level N "path" ` for a sub-tree scope; nothing for the whole host.
fn scope_match(scope: &CgroupScope) -> Result<String, GuardError> {
    if scope.is_root() {
        return Ok(String::new());
    }
    let rel = scope
        .path
        .strip_prefix(Path::new(NFT_CGROUP_BASE))
        .map_err(|_| GuardError::Scope(scope.path.display().to_string()))?;
    let rel = rel.to_str().filter(|s| {
        s.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
    });
    let rel = rel.ok_or_else(|| GuardError::Scope(scope.path.display().to_string()))?;
    Ok(format!("socket cgroupv2 level {} \"{rel}\" ", scope.level))
}

/// Sorted, with overlapping or adjacent ranges merged (nft rejects overlapping set elements).
fn merged(ports: &[PortSpec]) -> Vec<PortSpec> {
    let mut v: Vec<(u16, u16)> = ports.iter().map(|p| (p.lo(), p.hi())).collect();
    v.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out.into_iter()
        .map(|(lo, hi)| PortSpec::range(lo, hi))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Config, intercept::targets::Resolved};

    #[test]
    fn merges_port_ranges() {
        let p = |lo, hi| PortSpec::range(lo, hi);
        assert_eq!(
            merged(&[p(1433, 1433), p(11000, 11999), p(1400, 1500), p(1501, 1501)]),
            vec![p(1400, 1501), p(11000, 11999)]
        );
    }

    #[test]
    fn renders_scoped_table() {
        let cfg = Config::parse(
            r#"
            [[target]]
            name = "sql"
            protocol = "tds"
            cidrs = ["10.0.0.0/8", "10.1.2.3/32", "fd00::/8"]
            ports = [1433, "11000-11999"]
            "#,
            "t",
        )
        .unwrap();
        let set = TargetSet::build(&cfg, &Resolved::new());
        let scope = CgroupScope {
            path: "/sys/fs/cgroup/unified/ci/job1".into(),
            root: "/sys/fs/cgroup/unified".into(),
            relative: "ci/job1".into(),
            level: 2,
            id: 42,
        };
        let text = render(
            &GuardSpec {
                table: "hoop",
                mark: 0x10,
                scope: &scope,
            },
            &set,
            &[
                (
                    "10.1.2.3".parse().unwrap(),
                    set.targets().next().unwrap().id,
                ),
                (
                    "192.0.2.9".parse().unwrap(),
                    set.targets().next().unwrap().id,
                ),
            ],
        )
        .unwrap();
        assert!(
            text.contains("elements = { 10.0.0.0/8, 10.1.2.3/32, 192.0.2.9/32 }"),
            "{text}"
        );
        assert!(text.contains(
            "socket cgroupv2 level 2 \"unified/ci/job1\" meta mark != 0x10 ip daddr @p0_ipv4_addr tcp dport { 1433, 11000-11999 } counter drop"
        ), "{text}");
        assert!(text.contains("ip6 daddr @p0_ipv6_addr"), "{text}");
    }
}
