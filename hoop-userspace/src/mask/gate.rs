//! The gate: a cheap necessary condition per detector, so the regexes run only on values that
//! could hold a match. Almost every value of every row stops here, unmasked and unallocated.
//!
//! Conditions (a value passes for a detector if it holds), cheapest first:
//! - trigger bytes, found with SIMD `memchr`: `@` (e-mail; with `://`, URL passwords), `=`
//!   (with `==`, storage keys; after `sig`, SAS signatures; after a secret's key name and
//!   blanks, connection-string secrets), `_` (after `gh?` or `github`, GitHub tokens), `J` (with
//!   `eyJ`, JWTs), `-` (with `-----`, PEM keys). Looking behind each `=` and `_` keeps SQL text,
//!   where both are everywhere (`WHERE id = 1`, `pgbench_accounts`), away from those regexes;
//! - digit-based detectors: enough ASCII digits in the value (card 13, phone `min_digits`,
//!   IBAN 7), counted in one vectorised pass;
//! - Azure DevOps PATs: an alphanumeric byte at one of the probe offsets (every 84th byte for
//!   the 84-character format, then `AZDO`; every 52nd for the legacy 52-character one), since a
//!   run that long must cover one.
//!
//! An Aho-Corasick pass over all literals was measured first and cost 10-20x more on short
//! values: its per-call setup dominates below a few hundred bytes, where `memchr` does not.
use memchr::memmem;

use super::detect::{maybe_legacy_pat, maybe_new_pat};
use super::spec::DetectorKind as K;

/// Shortest value any built-in detector can match (`a@b.cc` is 6; `pwd=x` is 5).
pub(super) const MIN_LEN: usize = 5;

const EMAIL: u16 = 1 << K::Email as u16;
const CARD: u16 = 1 << K::CreditCard as u16;
const IBAN: u16 = 1 << K::Iban as u16;
const PHONE: u16 = 1 << K::Phone as u16;
const STORAGE: u16 = 1 << K::AzureStorageKey as u16;
const SAS: u16 = 1 << K::AzureSas as u16;
const CONN: u16 = 1 << K::ConnectionString as u16;
const JWT: u16 = 1 << K::Jwt as u16;
const PEM: u16 = 1 << K::PemPrivateKey as u16;
const GITHUB: u16 = 1 << K::GithubToken as u16;
const DEVOPS: u16 = 1 << K::AzureDevopsPat as u16;

pub(super) struct Gate {
    enabled: u16,
    phone_digits: usize,
}

impl Gate {
    pub(super) fn new(enabled: u16, phone_min_digits: u8) -> Gate {
        Gate {
            enabled,
            phone_digits: usize::from(phone_min_digits),
        }
    }

    /// Bit set of the detectors (by [`K::bit`]) whose necessary condition `s` meets.
    #[inline]
    pub(super) fn candidates(&self, s: &[u8]) -> u16 {
        let on = self.enabled;
        if s.len() < MIN_LEN || on == 0 {
            return 0;
        }
        let mut bits = 0u16;
        if on & (EMAIL | CONN | STORAGE | SAS | GITHUB) != 0
            && memchr::memchr3(b'@', b'=', b'_', s).is_some()
        {
            if memchr::memchr(b'@', s).is_some() {
                bits |= EMAIL;
                if memmem::find(s, b"://").is_some() {
                    bits |= CONN;
                }
            }
            if memchr::memchr(b'=', s).is_some() {
                for i in memchr::memchr_iter(b'=', s) {
                    bits |= after_key(&s[..i]);
                }
                if memmem::find(s, b"==").is_some() {
                    bits |= STORAGE;
                }
            }
            if on & GITHUB != 0 && memchr::memchr_iter(b'_', s).any(|i| github_prefix(&s[..i])) {
                bits |= GITHUB;
            }
        }
        if on & (JWT | PEM) != 0 && memchr::memchr2(b'J', b'-', s).is_some() {
            if memmem::find(s, b"eyJ").is_some() {
                bits |= JWT;
            }
            if memmem::find(s, b"-----").is_some() {
                bits |= PEM;
            }
        }
        if on & (CARD | PHONE | IBAN) != 0 && s.len() >= 7 {
            let digits = count_digits(s);
            if digits >= 13 {
                bits |= CARD;
            }
            if digits >= self.phone_digits {
                bits |= PHONE;
            }
            if digits >= 7 && s.len() >= 15 {
                bits |= IBAN;
            }
        }
        if on & DEVOPS != 0 && (maybe_legacy_pat(s) || maybe_new_pat(s)) {
            bits |= DEVOPS;
        }
        bits & on
    }
}

/// The detectors a `=` after `before` could belong to: `sig=` (SAS; `\bsig=`), and a
/// connection-string key the `conn_kv` pattern names (`password`, `pwd`, `accountkey`,
/// `sharedaccesskey`, `client_secret`/`clientsecret`), in any case, then blanks before the `=`.
/// Only the key's ending is compared (`key`, `secret`): a superset, as a gate must be.
#[inline]
fn after_key(before: &[u8]) -> u16 {
    let ends = |s: &[u8], word: &[u8]| {
        s.len() >= word.len() && s[s.len() - word.len()..].eq_ignore_ascii_case(word)
    };
    let mut bits = 0;
    if ends(before, b"sig") {
        bits |= SAS;
    }
    let blanks = before
        .iter()
        .rev()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    let key = &before[..before.len() - blanks];
    if [&b"password"[..], b"pwd", b"key", b"secret"]
        .iter()
        .any(|w| ends(key, w))
    {
        bits |= CONN;
    }
    bits
}

/// Whether a `_` after `before` can start a GitHub token's marker: `gh[pousr]_` or
/// `github_pat_` (both case-sensitive in the pattern).
#[inline]
fn github_prefix(before: &[u8]) -> bool {
    match before {
        [.., b'g', b'h', x] if b"pousr".contains(x) => true,
        _ => before.ends_with(b"github"),
    }
}

/// Counted per 32-byte chunk into a `u8` so the loop vectorises (a `usize` sum does not).
#[inline]
fn count_digits(s: &[u8]) -> usize {
    let mut total = 0usize;
    let mut chunks = s.chunks_exact(32);
    for c in &mut chunks {
        let mut n = 0u8;
        for &b in c {
            n += u8::from(b.wrapping_sub(b'0') < 10);
        }
        total += usize::from(n);
    }
    total
        + chunks
            .remainder()
            .iter()
            .filter(|b| b.is_ascii_digit())
            .count()
}
