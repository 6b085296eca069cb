//! Unit tests of the masking engine: detectors, profile parsing, structured values, the
//! PostgreSQL adapter (checked by decoding its output with the wire codec), and properties.
use std::borrow::Cow;

use super::{Masker, ProfileSpec};

mod detectors;
mod pg;
mod props;
mod spec;
mod structured;

/// The default profile, compiled once per test binary.
fn default() -> &'static Masker {
    default_arc_ref()
}

/// The same, shared (what a `RowPlan` takes).
fn default_arc() -> std::sync::Arc<Masker> {
    default_arc_ref().clone()
}

fn default_arc_ref() -> &'static std::sync::Arc<Masker> {
    static M: std::sync::OnceLock<std::sync::Arc<Masker>> = std::sync::OnceLock::new();
    M.get_or_init(|| std::sync::Arc::new(Masker::default_profile()))
}

/// Masks with the default profile, asserting the result is a copy.
#[track_caller]
fn masked(s: &str) -> String {
    match default().mask_text(s) {
        Cow::Owned(o) => o,
        Cow::Borrowed(_) => panic!("expected {s:?} to be masked"),
    }
}

/// Asserts the default profile leaves `s` borrowed.
#[track_caller]
fn unchanged(s: &str) {
    match default().mask_text(s) {
        Cow::Borrowed(_) => {}
        Cow::Owned(o) => panic!("expected {s:?} unchanged, got {o:?}"),
    }
}

/// A masker from a profile written as TOML (the body of a `[mask_profiles.NAME]` table).
#[track_caller]
fn masker(toml_body: &str) -> Masker {
    let spec: ProfileSpec = toml::from_str(toml_body).expect("profile parses");
    Masker::compile(&spec).expect("profile compiles")
}
