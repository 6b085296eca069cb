#![no_main]
//! Masking of server text (what every result value and statement text goes through): never
//! panics, and is idempotent — the audit trail's text, masked once, is masked again by whoever
//! reads it through another profile, and must come out the same.
use std::sync::LazyLock;

use hoop_userspace::mask::Masker;

static DEFAULT: LazyLock<Masker> = LazyLock::new(Masker::default_profile);

libfuzzer_sys::fuzz_target!(|text: &str| {
    let once = DEFAULT.mask_text(text).into_owned();
    let twice = DEFAULT.mask_text(&once);
    assert_eq!(twice, once, "masking {text:?} twice changed it again");
});
