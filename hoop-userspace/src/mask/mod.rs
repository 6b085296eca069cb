//! Real-time masking of secrets and personal data in responses, messages and audit text.
//!
//! Protocol-neutral core: a [`Masker`], compiled once from a [`ProfileSpec`] (a policy file's
//! `[mask_profiles.NAME]`) and shared via `Arc`, masks free text ([`Masker::mask_text`]) and
//! says which result columns are masked whole ([`Masker::column_masked`]). Protocol adapters
//! decode values and hand the textual ones over: [`pg`] for PostgreSQL DataRow (text and binary
//! formats), NoticeResponse and ErrorResponse. What each detector matches and what replaces it is
//! specified in `docs/masking.md`.
//!
//! Cost model: masking runs on every value of every row, so the common case — nothing to mask —
//! must cost a few nanoseconds and allocate nothing. Each value first goes through the gate
//! (`gate.rs`: SIMD `memchr` for the detectors' trigger bytes plus one vectorised digit count);
//! only detectors whose necessary condition holds run their regex (or hand scan) and validator,
//! and a value is copied only when a detection survives validation. The `regex` crate was
//! chosen for the patterns: linear-time automata, so a hostile value cannot make matching
//! backtrack for ever.
mod checks;
mod detect;
mod gate;
pub mod pg;
mod spec;
mod structured;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cmp::Reverse;

use regex::bytes::{Regex, RegexSet};

pub use spec::{
    CustomRule, DEFAULT_COLUMNS, DetectorKind, MaskSpecError, PhoneOptions, ProfileSpec,
};

use detect::{Detectors, Span, write_repl};
use gate::Gate;

/// Upper bound on masking passes over one text (see `Masker::mask_plain`).
const MAX_PASSES: usize = 4;

/// A compiled masking profile. Immutable, `Send + Sync`; share it with `Arc`.
pub struct Masker {
    enabled: u16,
    gate: Gate,
    detectors: Detectors,
    custom: Vec<Regex>,
    custom_repl: Vec<Vec<u8>>,
    custom_set: Option<RegexSet>,
    columns: Option<regex::Regex>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on: Vec<_> = DetectorKind::ALL
            .iter()
            .filter(|k| self.enabled & k.bit() != 0)
            .map(|k| k.as_str())
            .collect();
        f.debug_struct("Masker")
            .field("detectors", &on)
            .field("custom", &self.custom.len())
            .field("columns", &self.columns.as_ref().map(|r| r.as_str()))
            .finish()
    }
}

impl Masker {
    /// Compiles `spec`; errors name the field and rule at fault.
    pub fn compile(spec: &ProfileSpec) -> Result<Masker, MaskSpecError> {
        let phone = spec.phone;
        if !(7..=15).contains(&phone.min_digits) {
            return Err(MaskSpecError::PhoneMinDigits {
                value: phone.min_digits,
            });
        }
        let enabled = spec.detectors.iter().fold(0, |acc, k| acc | k.bit());
        let (custom, custom_repl) = compile_custom(&spec.custom)?;
        let custom_set = if custom.is_empty() {
            None
        } else {
            let set = RegexSet::new(custom.iter().map(Regex::as_str));
            Some(set.map_err(|e| MaskSpecError::CustomPattern {
                index: 0,
                name: spec.custom[0].name.clone(),
                reason: e.to_string(),
            })?)
        };
        Ok(Masker {
            enabled,
            gate: Gate::new(enabled, phone.min_digits),
            detectors: Detectors::new(phone),
            custom,
            custom_repl,
            custom_set,
            columns: compile_columns(spec)?,
        })
    }

    /// All detectors and the built-in column rules: what applies when no profile is configured.
    pub fn default_profile() -> Masker {
        // The default spec is covered by the unit tests; it always compiles.
        Masker::compile(&ProfileSpec::default()).expect("default mask profile")
    }

    /// Whether a result column named `name` is masked whole (column-name rules, case-insensitive).
    pub fn column_masked(&self, name: &str) -> bool {
        self.columns.as_ref().is_some_and(|re| re.is_match(name))
    }

    /// Masks free text: values, notice/error text, statement text and excerpts bound for the
    /// audit trail or logs. Borrowed (no copy, no allocation) when nothing is detected.
    pub fn mask_text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        match self.mask_bytes(s.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(s),
            // Every built-in match starts and ends next to an ASCII byte, so valid UTF-8 stays
            // valid; a custom `(?-u)` pattern could split a character: then mask it all.
            Cow::Owned(v) => Cow::Owned(String::from_utf8(v).unwrap_or_else(|_| "****".into())),
        }
    }

    /// [`mask_text`](Self::mask_text) over bytes (text in the client encoding, UTF-8 for hoop).
    #[inline]
    pub fn mask_bytes<'a>(&self, s: &'a [u8]) -> Cow<'a, [u8]> {
        match self.mask_plain(s) {
            Some(v) => Cow::Owned(v),
            None => Cow::Borrowed(s),
        }
    }

    /// `None` when `s` has nothing to mask.
    ///
    /// Masked text is masked again until it no longer changes (at most [`MAX_PASSES`]): a
    /// replacement can change what a neighbouring candidate is glued to (`x(555) 123-4567` is
    /// no phone number, `****(555) 123-4567` is), and masking must be idempotent — text masked
    /// for the audit trail is masked again by whoever reads it through another profile.
    #[inline]
    fn mask_plain(&self, s: &[u8]) -> Option<Vec<u8>> {
        let mut cur = self.mask_once(s)?;
        for _ in 1..MAX_PASSES {
            match self.mask_once(&cur) {
                Some(next) => cur = next,
                None => break,
            }
        }
        Some(cur)
    }

    #[inline]
    fn mask_once(&self, s: &[u8]) -> Option<Vec<u8>> {
        let cands = self.gate.candidates(s);
        let custom = self.custom_set.as_ref().is_some_and(|set| set.is_match(s));
        if cands == 0 && !custom {
            return None;
        }
        self.rewrite(s, cands, custom)
    }

    /// Whether the gate lets `s` through (a superset of "something would be masked").
    fn gate_passes(&self, s: &[u8]) -> bool {
        self.gate.candidates(s) != 0 || self.custom_set.as_ref().is_some_and(|set| set.is_match(s))
    }

    fn rewrite(&self, s: &[u8], cands: u16, custom: bool) -> Option<Vec<u8>> {
        let mut spans: Vec<Span> = Vec::new();
        self.detectors.find_all(cands, s, &mut spans);
        if let (true, Some(set)) = (custom, &self.custom_set) {
            for i in set.matches(s).iter() {
                for m in self.custom[i].find_iter(s).filter(|m| !m.is_empty()) {
                    spans.push(Span {
                        start: m.start(),
                        end: m.end(),
                        repl: detect::Repl::Custom(i),
                    });
                }
            }
        }
        if spans.is_empty() {
            return None;
        }
        // Earliest start wins, then the longest: overlapping detections are masked once.
        spans.sort_unstable_by_key(|sp| (sp.start, Reverse(sp.end)));
        let mut out = Vec::with_capacity(s.len() + 16);
        let mut pos = 0;
        for sp in spans {
            if sp.start < pos {
                continue;
            }
            out.extend_from_slice(&s[pos..sp.start]);
            write_repl(sp.repl, &s[sp.start..sp.end], &self.custom_repl, &mut out);
            pos = sp.end;
        }
        out.extend_from_slice(&s[pos..]);
        (out != s).then_some(out)
    }
}

fn compile_custom(rules: &[CustomRule]) -> Result<(Vec<Regex>, Vec<Vec<u8>>), MaskSpecError> {
    let mut res = Vec::with_capacity(rules.len());
    let mut repls = Vec::with_capacity(rules.len());
    for (index, r) in rules.iter().enumerate() {
        let name = || r.name.clone();
        if r.name.trim().is_empty() {
            return Err(MaskSpecError::CustomNameEmpty { index });
        }
        if rules[..index].iter().any(|o| o.name == r.name) {
            return Err(MaskSpecError::CustomNameDuplicate {
                index,
                name: name(),
            });
        }
        let re = regex::bytes::RegexBuilder::new(&r.pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| MaskSpecError::CustomPattern {
                index,
                name: name(),
                reason: e.to_string(),
            })?;
        if re.is_match(b"") {
            return Err(MaskSpecError::CustomPatternEmptyMatch {
                index,
                name: name(),
            });
        }
        if r.replacement.chars().any(char::is_control) {
            return Err(MaskSpecError::CustomReplacementControl {
                index,
                name: name(),
            });
        }
        if re.is_match(r.replacement.as_bytes()) {
            return Err(MaskSpecError::CustomReplacementMatches {
                index,
                name: name(),
            });
        }
        res.push(re);
        repls.push(r.replacement.as_bytes().to_vec());
    }
    Ok((res, repls))
}

/// All column globs as one anchored, case-insensitive regex.
fn compile_columns(spec: &ProfileSpec) -> Result<Option<regex::Regex>, MaskSpecError> {
    let defaults = if spec.default_columns {
        DEFAULT_COLUMNS
    } else {
        &[]
    };
    let mut alts = Vec::new();
    for g in defaults.iter().copied() {
        alts.push(glob_regex(g));
    }
    for (index, g) in spec.columns.iter().enumerate() {
        if g.is_empty() {
            return Err(MaskSpecError::EmptyColumnGlob { index });
        }
        alts.push(glob_regex(g));
    }
    if alts.is_empty() {
        return Ok(None);
    }
    let pattern = format!("(?is)^(?:{})$", alts.join("|"));
    // Every literal is escaped and wildcards become `.*`/`.`: the regex is always valid.
    Ok(Some(
        regex::Regex::new(&pattern).expect("column glob regex"),
    ))
}

fn glob_regex(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 8);
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    out
}
