//! hoop node user space: the `hoopd` daemon and the `hoopctl` operator CLI are thin binaries
//! over these modules. In data-path order: `dns` (the forwarder that learns protected names'
//! addresses) → `intercept` (eBPF redirect, target maps, nftables guard) → `identity` (who
//! connected) → `tls` (node CA, verified upstreams) → `wire` (sans-IO codecs) → `proxy` (sessions per protocol) → `classify` and `policy` (the decision point) →
//! `audit` (tamper-evident trail) → `control` (operator API); plus `session`, `config`, `daemon`,
//! `telemetry` (logs), `metrics` (Prometheus), `service` (systemd notifications) and `install`
//! (image installation).

pub mod approval;
pub mod audit;
pub mod classify;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dns;
pub mod identity;
pub mod install;
pub mod intercept;
pub mod mask;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod service;
pub mod session;
pub mod telemetry;
pub mod tls;
pub mod wire;
