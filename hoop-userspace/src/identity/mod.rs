//! Who opened a connection: the calling process as the kernel recorded it, checked against /proc.
//! (Workload OIDC identity builds on these facts.)

pub mod process;

pub use process::ProcessFacts;
