//! hoop node user space: the `hoopd` daemon and the `hoopctl` operator CLI are thin binaries
//! over these modules, listed in data-path order.

pub mod intercept;
pub mod identity;
pub mod tls;
pub mod wire;
pub mod classify;
pub mod policy;
pub mod audit;
pub mod control;
pub mod proxy;
pub mod session;
pub mod config;
pub mod daemon;
pub mod telemetry;
