//! hoopd's configuration: TOML, strict (`deny_unknown_fields`), validated with errors naming the key.
//!
//! Every key and its default is documented in `docs/config.md`. When no file exists at the default
//! path, the embedded `default.toml` applies.

mod ports;
#[cfg(test)]
mod tests;
mod validate;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::IpNet;
use serde::Deserialize;

pub use ports::PortSpec;
pub use validate::valid_host;
use validate::validate_target;

/// Where hoopd looks for its configuration unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/hoop/hoop.toml";
/// The configuration used when [`DEFAULT_PATH`] does not exist.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {source}")]
    Parse {
        origin: String,
        source: Box<toml::de::Error>,
    },
    #[error("{origin}: {key}: {reason}")]
    Invalid {
        origin: String,
        key: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub intercept: Intercept,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub proxy: Proxy,
    #[serde(default)]
    pub control: Control,
    #[serde(default)]
    pub approval: Approval,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub dns: Dns,
    /// `[audit]`: the audit trail (see `audit::AuditConfig` for every key and default).
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default, rename = "target")]
    pub targets: Vec<Target>,
    /// `[identity]`: workload token sources and validation (see `identity::config`).
    #[serde(default)]
    pub identity: crate::identity::config::IdentityConfig,
    /// `[[issuer]]`: OIDC issuers whose tokens are accepted.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<crate::identity::config::IssuerConfig>,
}

/// `[listen]`: hoopd's listener, where protected connects are redirected.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// IPv4 loopback address; default `127.0.0.1:977`.
    pub address: SocketAddr,
    /// IPv6 loopback address; default `[::1]:977`. Without it IPv6 connects are sent to the
    /// IPv4 listener through its v4-mapped address.
    pub address6: Option<SocketAddr>,
    /// Connection worker threads (each a single-threaded runtime owning its sessions whole);
    /// default (0): one per CPU hoopd may run on.
    pub workers: usize,
    /// The longest a connection worker keeps polling its sockets after a read before it
    /// sleeps, in µs, and only while the node has idle CPU (see `proxy::busy_poll`); the
    /// window adapts below it. Default 200; 0 turns polling off.
    pub busy_poll_us: u64,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:977".parse().unwrap(),
            address6: Some("[::1]:977".parse().unwrap()),
            workers: 0,
            busy_poll_us: 200,
        }
    }
}

impl Listen {
    /// The longest busy-poll window of a connection worker (zero: off).
    pub fn busy_poll(&self) -> Duration {
        Duration::from_micros(self.busy_poll_us)
    }

    /// The number of connection workers to start.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// `[intercept]`: where the eBPF programs attach and how hoopd's own traffic is recognised.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Intercept {
    /// cgroup v2 directory to attach to; default: the root of the cgroup v2 hierarchy.
    pub cgroup: Option<PathBuf>,
    /// bpffs directory for pinned programs, links and maps; default `/sys/fs/bpf/hoop`.
    pub pin_dir: PathBuf,
    /// SO_MARK hoopd puts on its own upstream sockets: never redirected, never dropped by the guard.
    pub mark: u32,
    /// Install the nftables guard; default `true`.
    pub guard: bool,
    /// Name of the nftables table (family `inet`) of the guard; default `hoop`.
    pub nft_table: String,
}

impl Default for Intercept {
    fn default() -> Self {
        Self {
            cgroup: None,
            pin_dir: PathBuf::from("/sys/fs/bpf/hoop"),
            mark: 0x686f_6f70, // "hoop"
            guard: true,
            nft_table: "hoop".into(),
        }
    }
}

/// `[state]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// State directory (node CA, audit trail); default `/var/lib/hoop`.
    pub dir: PathBuf,
}

impl Default for State {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/hoop"),
        }
    }
}

/// `[control]`: the operator API (hoopctl).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// Unix socket; default `/run/hoop/control.sock` (mode 0660, group `operators_group`).
    pub socket: PathBuf,
    /// Group whose members (besides root) may operate; default `hoop-operators`.
    pub operators_group: String,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/hoop/control.sock"),
            operators_group: "hoop-operators".into(),
        }
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Serve `/metrics`; default `true`.
    pub enabled: bool,
    /// Loopback address of the endpoint; default `127.0.0.1:9477`.
    pub listen: SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "127.0.0.1:9477".parse().unwrap(),
        }
    }
}

/// `[proxy]`
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Proxy {
    /// Time allowed to connect to an upstream, in milliseconds; default 10000.
    pub connect_timeout_ms: u64,
    /// Time a client has from its connection to a session ready for requests (TLS, startup
    /// packet, authentication), in milliseconds; default 60000, PostgreSQL's own
    /// `authentication_timeout`.
    pub startup_timeout_ms: u64,
    /// The largest message a client may send, in bytes (a Query, Parse or Bind carrying big
    /// values, a CopyData); default 64 MiB, at most PostgreSQL's own 1 GiB - 1.
    pub max_client_message_bytes: u64,
    /// How often exact target host names are resolved again, in seconds; default 300.
    pub resolve_interval_s: u64,
}

/// `[proxy] max_client_message_bytes` unless set: what a session may make hoopd buffer.
pub const DEFAULT_MAX_CLIENT_MESSAGE: u64 = 64 << 20;
/// PostgreSQL's `PQ_LARGE_MESSAGE_LIMIT` (MaxAllocSize - 1): no server takes a larger message.
pub const MAX_CLIENT_MESSAGE_LIMIT: u64 = (1 << 30) - 1;

impl Proxy {
    pub fn settings(&self) -> crate::proxy::Settings {
        crate::proxy::Settings {
            connect: Duration::from_millis(self.connect_timeout_ms),
            startup: Duration::from_millis(self.startup_timeout_ms),
            // validated to fit (at most 1 GiB)
            max_client_message: self.max_client_message_bytes as usize,
        }
    }
}

impl Default for Proxy {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 10_000,
            startup_timeout_ms: 60_000,
            max_client_message_bytes: DEFAULT_MAX_CLIENT_MESSAGE,
            resolve_interval_s: 300,
        }
    }
}

/// `[policy]`: the rules every request is decided by.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Policy file (docs/policy.md); none: the built-in default policy.
    pub file: Option<PathBuf>,
}

/// `[approval]`: requests held for a human approver.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Approval {
    /// Seconds a held request waits for a verdict before it is denied; default 300.
    pub timeout_s: u64,
}

impl Default for Approval {
    fn default() -> Self {
        Self { timeout_s: 300 }
    }
}

/// `[dns]`: DNS capture, which learns the addresses of protected names (see `crate::dns`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Steer DNS queries from the attached subtree through hoopd's forwarder; default `true`.
    /// Without it wildcard hosts protect nothing (they are reported as pending).
    pub capture: bool,
    /// Port of the forwarder (UDP and TCP) on the slot addresses 127.16.0.0/16; default 978.
    pub port: u16,
    /// Seconds a learned address outlives its record's TTL at least; default 10 (so even a TTL
    /// of 0 covers the connect that follows the lookup).
    pub min_ttl_s: u64,
    /// Longest time a learned address is kept without a new answer; default 86400.
    pub max_ttl_s: u64,
    /// Seconds an expired address is kept again while sessions to it are live; default 60.
    pub grace_s: u64,
    /// Time allowed to a resolver to answer a forwarded query, in ms; default 5000.
    pub upstream_timeout_ms: u64,
    /// Resolvers hoopd itself uses for exact target names (`"ip:port"`); default: the
    /// `nameserver` lines of /etc/resolv.conf.
    pub resolvers: Vec<SocketAddr>,
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            capture: true,
            port: 978,
            min_ttl_s: 10,
            max_ttl_s: 86_400,
            grace_s: 60,
            upstream_timeout_ms: 5000,
            resolvers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Postgres,
    Tds,
    Https,
    Kubernetes,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Postgres => "postgres",
            Self::Tds => "tds",
            Self::Https => "https",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// `[[target]]`: a protected endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub name: String,
    pub protocol: Protocol,
    /// Protected address ranges.
    #[serde(default)]
    pub cidrs: Vec<IpNet>,
    /// Protected names: exact names are resolved; `*.suffix` wildcards need DNS learning.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Protected ports: numbers or `"lo-hi"` ranges.
    pub ports: Vec<PortSpec>,
    /// postgres: PEM file of CAs trusted for this upstream in addition to the system roots.
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// postgres: whether the upstream must accept TLS (`require`, default) or may refuse it
    /// (`prefer`: TLS whenever the server offers it).
    #[serde(default)]
    pub upstream_tls: UpstreamTls,
    /// postgres: statement kinds refused outright (e.g. `["drop", "truncate"]`).
    #[serde(default)]
    pub deny_statements: Vec<String>,
    /// postgres: statement kinds held for a human approver (e.g. `["delete"]`).
    #[serde(default)]
    pub review_statements: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamTls {
    #[default]
    Require,
    Prefer,
}

impl Target {
    pub fn exact_hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts
            .iter()
            .map(String::as_str)
            .filter(|h| !h.starts_with("*."))
    }

    pub fn wildcard_hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts
            .iter()
            .map(String::as_str)
            .filter(|h| h.starts_with("*."))
    }

    /// Every protected port, ranges expanded.
    pub fn port_list(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().flat_map(|p| p.lo()..=p.hi())
    }
}

impl Config {
    /// Loads `path`, or the default path, or — when no path was given and the default path does
    /// not exist — the embedded default. Returns the config and where it came from.
    pub fn load(path: Option<&Path>) -> Result<(Self, String), ConfigError> {
        let (text, origin) = match path {
            Some(p) => (read(p)?, p.display().to_string()),
            None if Path::new(DEFAULT_PATH).exists() => {
                (read(Path::new(DEFAULT_PATH))?, DEFAULT_PATH.to_string())
            }
            None => (
                EMBEDDED_DEFAULT.to_string(),
                "embedded default config".to_string(),
            ),
        };
        Ok((Self::parse(&text, &origin)?, origin))
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            source: Box::new(e),
        })?;
        cfg.validate()
            .map_err(|(key, reason)| ConfigError::Invalid {
                origin: origin.to_string(),
                key,
                reason,
            })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let l = &self.listen;
        if !(l.address.is_ipv4() && l.address.ip().is_loopback()) {
            return Err((
                "listen.address".into(),
                "must be an IPv4 loopback address".into(),
            ));
        }
        if let Some(a6) = l.address6
            && !(a6.is_ipv6() && a6.ip().is_loopback())
        {
            return Err((
                "listen.address6".into(),
                "must be an IPv6 loopback address".into(),
            ));
        }
        if l.workers > 1024 {
            return Err((
                "listen.workers".into(),
                "at most 1024 (0: one per CPU)".into(),
            ));
        }
        if l.busy_poll_us > 10_000 {
            return Err((
                "listen.busy_poll_us".into(),
                "at most 10000 (10 ms; 0 turns busy polling off)".into(),
            ));
        }
        if !self.metrics.listen.ip().is_loopback() {
            return Err((
                "metrics.listen".into(),
                "must be a loopback address (the endpoint has no authentication)".into(),
            ));
        }
        let i = &self.intercept;
        if i.mark == 0 {
            return Err((
                "intercept.mark".into(),
                "must not be 0 (0 is every unmarked socket)".into(),
            ));
        }
        if i.nft_table.is_empty()
            || !i
                .nft_table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err((
                "intercept.nft_table".into(),
                "must be non-empty [A-Za-z0-9_]".into(),
            ));
        }
        if !i.pin_dir.is_absolute() {
            return Err((
                "intercept.pin_dir".into(),
                "must be an absolute path".into(),
            ));
        }
        if let Some(cg) = &i.cgroup
            && !cg.is_absolute()
        {
            return Err(("intercept.cgroup".into(), "must be an absolute path".into()));
        }
        if !self.control.socket.is_absolute() {
            return Err(("control.socket".into(), "must be an absolute path".into()));
        }
        if !self.state.dir.is_absolute() {
            return Err(("state.dir".into(), "must be an absolute path".into()));
        }
        if self.proxy.connect_timeout_ms == 0 {
            return Err(("proxy.connect_timeout_ms".into(), "must be > 0".into()));
        }
        if self.proxy.startup_timeout_ms == 0 || self.proxy.startup_timeout_ms > 3_600_000 {
            return Err((
                "proxy.startup_timeout_ms".into(),
                "must be between 1 and 3600000".into(),
            ));
        }
        if !(1 << 20..=MAX_CLIENT_MESSAGE_LIMIT).contains(&self.proxy.max_client_message_bytes) {
            return Err((
                "proxy.max_client_message_bytes".into(),
                format!(
                    "must be between 1048576 and {MAX_CLIENT_MESSAGE_LIMIT} (PostgreSQL's own limit)"
                ),
            ));
        }
        if let Some(p) = &self.policy.file
            && !p.is_absolute()
        {
            return Err(("policy.file".into(), "must be an absolute path".into()));
        }
        if self.approval.timeout_s == 0 || self.approval.timeout_s > 86_400 {
            return Err((
                "approval.timeout_s".into(),
                "must be between 1 and 86400".into(),
            ));
        }
        if self.proxy.resolve_interval_s == 0 {
            return Err(("proxy.resolve_interval_s".into(), "must be > 0".into()));
        }
        let d = &self.dns;
        if d.port == 0 {
            return Err(("dns.port".into(), "must not be 0".into()));
        }
        if d.capture && self.listen_addrs().iter().any(|l| l.port() == d.port) {
            return Err((
                "dns.port".into(),
                "must differ from the listener ports".into(),
            ));
        }
        if d.upstream_timeout_ms == 0 {
            return Err(("dns.upstream_timeout_ms".into(), "must be > 0".into()));
        }
        if d.max_ttl_s == 0 || d.max_ttl_s < d.min_ttl_s {
            return Err((
                "dns.max_ttl_s".into(),
                "must be > 0 and at least dns.min_ttl_s".into(),
            ));
        }
        if let Err(crate::audit::AuditError::Config { field, reason }) = self.audit.validate() {
            return Err((format!("audit.{field}"), reason.to_string()));
        }
        for (key, p) in [
            ("audit.dir", &self.audit.dir),
            ("audit.key_path", &self.audit.key_path),
        ] {
            if !p.as_os_str().is_empty() && !p.is_absolute() {
                return Err((key.into(), "must be an absolute path".into()));
            }
        }
        self.identity.validate()?;
        crate::identity::config::validate_issuers(&self.issuers)?;
        let mut names = std::collections::HashSet::new();
        for (n, t) in self.targets.iter().enumerate() {
            let key = |field: &str| format!("target[{n}].{field}");
            validate_target(t, &key, &self.listen)?;
            if !names.insert(t.name.as_str()) {
                return Err((key("name"), format!("duplicate target name {:?}", t.name)));
            }
        }
        Ok(())
    }

    /// The audit settings with default paths placed under the state directory.
    pub fn audit_config(&self) -> crate::audit::AuditConfig {
        self.audit.clone().under_state_dir(&self.state.dir)
    }

    /// The listener addresses (IPv4 first).
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        std::iter::once(self.listen.address)
            .chain(self.listen.address6)
            .collect()
    }
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
        path: p.to_path_buf(),
        source,
    })
}
