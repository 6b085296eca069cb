//! The built-in detectors: one regex (or hand scan) per detector finds candidates, a validator
//! (check digits, boundaries, separator rules) keeps the real ones, and each detection carries
//! how its replacement keeps the shape. They only run on text the gate flagged (see `gate.rs`).
use regex::bytes::{Regex, RegexSet, SetMatches};

use super::checks::{iban_len, iban_mod97, luhn};
use super::spec::{DetectorKind as K, PhoneOptions};

/// How a detection is rewritten; offsets are relative to the start of the match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repl {
    /// `****` followed by the match from `at` (the `@` of an e-mail) on.
    KeepFrom(usize),
    /// The first `n` bytes, then `****`.
    KeepPrefix(usize),
    /// A connection-string value at `n`: `****`, inside the value's quotes or braces if any
    /// (so the masked value still ends where the original did).
    ConnValue(usize),
    /// URL userinfo: the first `n` bytes (`scheme://user:`), then `****@`.
    UrlPassword(usize),
    /// Digits become `*` except the last `keep`; separators stay. Cards (4), phones (2).
    Digits { keep: usize },
    /// IBAN: country code and last four characters stay, the rest become `*`.
    Iban,
    /// JWT: header kept up to `n` (its dot), payload and signature become `****`.
    Jwt(usize),
    /// PEM: label is bytes `11..n` (after `-----BEGIN `); the body becomes `****`.
    Pem(usize),
    /// `****`.
    Stars,
    /// A profile's custom rule, by index.
    Custom(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub start: usize,
    pub end: usize,
    pub repl: Repl,
}

pub(super) struct Detectors {
    /// The digit-family patterns below, in this order: one pass says which of them can match
    /// (each `find_iter` costs tens of nanoseconds even on a short value).
    digit_set: RegexSet,
    card: Regex,
    iban: Regex,
    phone_intl: Regex,
    phone_na: Regex,
    phone_eu: Regex,
    storage_key: Regex,
    sas: Regex,
    conn_kv: Regex,
    conn_url: Regex,
    jwt: Regex,
    pem: Regex,
    github: Regex,
    devops: Regex,
    phone: PhoneOptions,
}

fn re(p: &str) -> Regex {
    // The patterns are constants covered by the unit tests; failing here is a build bug.
    Regex::new(p).expect("built-in mask pattern")
}

impl Detectors {
    pub(super) fn new(phone: PhoneOptions) -> Self {
        let digit_family = [
            r"(?-u)\b[2-6](?:[ \-]?[0-9]){12,18}\b",
            r"(?-u)\b[A-Z]{2}[0-9]{2}",
            r"(?-u)\+[1-9][0-9]{0,3}(?:[ .\-]?(?:\([0-9]{1,5}\)|[0-9]{1,10})){1,6}",
            r"(?-u)(?:\([0-9]{3}\) ?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4}",
            r"(?-u)0[1-9][0-9]{0,3}(?:[ \-/][0-9]{2,8}){1,4}",
        ];
        Detectors {
            digit_set: RegexSet::new(digit_family).expect("built-in mask patterns"),
            card: re(digit_family[0]),
            iban: re(digit_family[1]),
            phone_intl: re(digit_family[2]),
            phone_na: re(digit_family[3]),
            phone_eu: re(digit_family[4]),
            storage_key: re(r"(?-u)[A-Za-z0-9+/]{86}=="),
            sas: re(r"(?i-u)\bsig=[A-Za-z0-9%+/=]{10,}"),
            conn_kv: re(
                r#"(?i-u)\b(?:password|pwd|accountkey|sharedaccesskey|client_?secret)[ \t]*=[ \t]*(?:"[^"]*"|'[^']*'|\{[^}]*\}|[^;\s'"]+)"#,
            ),
            conn_url: re(r"(?i-u)\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:[^@\s/]+@"),
            jwt: re(r"(?-u)eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"),
            pem: re(
                r"(?-u)-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:(?s:.)*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|[^\-]*)",
            ),
            github: re(r"(?-u)gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,244}"),
            devops: re(r"(?-u)[A-Za-z0-9]{76}AZDO[A-Za-z0-9]{4}"),
            phone,
        }
    }

    /// Appends the detections in `s` of the detectors in `cands` (a bit set by [`K::bit`]).
    pub(super) fn find_all(&self, cands: u16, s: &[u8], out: &mut Vec<Span>) {
        let on = |k: K| cands & k.bit() != 0;
        if on(K::CreditCard) || on(K::Iban) || on(K::Phone) {
            let hits = self.digit_set.matches(s);
            if on(K::CreditCard) && hits.matched(0) {
                self.card(s, out);
            }
            if on(K::Iban) && hits.matched(1) {
                self.iban(s, out);
            }
            if on(K::Phone) {
                self.phone(s, out, &hits);
            }
        }
        for k in DIGITLESS {
            if on(k) {
                self.find(k, s, out);
            }
        }
    }

    /// Appends the detections of `kind` (one of [`DIGITLESS`]) in `s`.
    fn find(&self, kind: K, s: &[u8], out: &mut Vec<Span>) {
        match kind {
            K::Email => emails(s, out),
            K::CreditCard | K::Iban | K::Phone => {}
            K::AzureStorageKey => bounded(&self.storage_key, s, out, is_b64, Repl::Stars),
            K::AzureSas => {
                for m in self.sas.find_iter(s) {
                    out.push(span(m.start(), m.end(), Repl::KeepPrefix(4)));
                }
            }
            K::ConnectionString => self.conn(s, out),
            K::Jwt => {
                for m in self.jwt.find_iter(s) {
                    if !before(s, m.start()).is_some_and(is_b64url) {
                        let dot = memchr::memchr(b'.', m.as_bytes()).unwrap_or(0);
                        out.push(span(m.start(), m.end(), Repl::Jwt(dot)));
                    }
                }
            }
            K::PemPrivateKey => {
                for m in self.pem.find_iter(s) {
                    let label = memchr::memmem::find(&m.as_bytes()[11..], b"-----").unwrap_or(0);
                    out.push(span(m.start(), m.end(), Repl::Pem(11 + label)));
                }
            }
            K::GithubToken => {
                for m in self.github.find_iter(s) {
                    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
                    if !before(s, m.start()).is_some_and(word)
                        && !after(s, m.end()).is_some_and(word)
                    {
                        let keep = if m.as_bytes()[3] == b'_' { 4 } else { 11 };
                        out.push(span(m.start(), m.end(), Repl::KeepPrefix(keep)));
                    }
                }
            }
            K::AzureDevopsPat => {
                // the gate lets either format through; the regex only for the one with `AZDO`
                if maybe_new_pat(s) {
                    bounded(&self.devops, s, out, is_alnum, Repl::Stars);
                }
                legacy_pats(s, out);
            }
        }
    }

    fn card(&self, s: &[u8], out: &mut Vec<Span>) {
        for m in self.card.find_iter(s) {
            if let Some(len) = card_prefix(m.as_bytes()) {
                out.push(span(m.start(), m.start() + len, Repl::Digits { keep: 4 }));
            }
        }
    }

    fn iban(&self, s: &[u8], out: &mut Vec<Span>) {
        for m in self.iban.find_iter(s) {
            if let Some(end) = iban_at(s, m.start()) {
                out.push(span(m.start(), end, Repl::Iban));
            }
        }
    }

    fn phone(&self, s: &[u8], out: &mut Vec<Span>, hits: &SetMatches) {
        let opts = self.phone;
        let digits = |b: &[u8]| b.iter().filter(|c| c.is_ascii_digit()).count();
        let min = usize::from(opts.min_digits);
        let intl = hits.matched(2).then_some(&self.phone_intl);
        for m in intl.into_iter().flat_map(|re| re.find_iter(s)) {
            let n = digits(m.as_bytes());
            if (min..=15).contains(&n) && !before(s, m.start()).is_some_and(is_alnum) {
                out.push(span(m.start(), m.end(), Repl::Digits { keep: 2 }));
            }
        }
        if opts.international_only {
            return;
        }
        let national = [(3, &self.phone_na), (4, &self.phone_eu)];
        for (_, re) in national.into_iter().filter(|(i, _)| hits.matched(*i)) {
            for m in re.find_iter(s) {
                let n = digits(m.as_bytes());
                if (min..=13).contains(&n) && national_ok(s, m.start(), m.end()) {
                    out.push(span(m.start(), m.end(), Repl::Digits { keep: 2 }));
                }
            }
        }
    }

    fn conn(&self, s: &[u8], out: &mut Vec<Span>) {
        for m in self.conn_kv.find_iter(s) {
            let b = m.as_bytes();
            let mut v = memchr::memchr(b'=', b).map_or(b.len(), |i| i + 1);
            while matches!(b.get(v), Some(b' ' | b'\t')) {
                v += 1;
            }
            out.push(span(m.start(), m.end(), Repl::ConnValue(v)));
        }
        for m in self.conn_url.find_iter(s) {
            let b = m.as_bytes();
            let user = memchr::memmem::find(b, b"://").map_or(0, |i| i + 3);
            let colon = memchr::memchr(b':', &b[user..]).map_or(b.len() - 1, |i| user + i + 1);
            out.push(span(m.start(), m.end(), Repl::UrlPassword(colon)));
        }
    }
}

/// Detectors without digit-family patterns, in the order they are run.
const DIGITLESS: [K; 8] = [
    K::Email,
    K::AzureStorageKey,
    K::AzureSas,
    K::ConnectionString,
    K::Jwt,
    K::PemPrivateKey,
    K::GithubToken,
    K::AzureDevopsPat,
];

/// E-mail addresses around each `@` (hand-written: a regex search cost ten times more, and the
/// gate already found the `@`). Local part: `A-Za-z0-9._%+-` and non-ASCII bytes, at least
/// one, extending left no further than the previous detection. Domain: labels of
/// `A-Za-z0-9-` and non-ASCII bytes, not starting with `-`, separated by single dots, at least
/// two; the last one kept is the TLD, 2–63 ASCII letters (trailing labels that are no TLD are
/// dropped), and no letter, digit or `-` follows it.
fn emails(s: &[u8], out: &mut Vec<Span>) {
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b) || b >= 0x80;
    let label = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80;
    let mut from = 0;
    for at in memchr::memchr_iter(b'@', s) {
        if at < from {
            continue;
        }
        let mut start = at;
        while start > from && local(s[start - 1]) {
            start -= 1;
        }
        if start == at {
            continue;
        }
        // Ends of the domain's labels, while they are well-formed.
        let mut ends = [0usize; 16];
        let (mut n, mut i) = (0, at + 1);
        while n < ends.len() && s.get(i).is_some_and(|&b| label(b) && b != b'-') {
            while s.get(i).is_some_and(|&b| label(b)) {
                i += 1;
            }
            ends[n] = i;
            n += 1;
            if s.get(i) != Some(&b'.') {
                break;
            }
            i += 1;
        }
        // The TLD: the last label (from the right) made of 2-63 ASCII letters, after another.
        let tld = (1..n).rev().find(|&k| {
            let t = &s[ends[k - 1] + 1..ends[k]];
            (2..=63).contains(&t.len()) && t.iter().all(u8::is_ascii_alphabetic)
        });
        let Some(k) = tld else { continue };
        let end = ends[k];
        if after(s, end).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-') {
            continue;
        }
        out.push(span(start, end, Repl::KeepFrom(at - start)));
        from = end;
    }
}

fn span(start: usize, end: usize, repl: Repl) -> Span {
    Span { start, end, repl }
}

fn before(s: &[u8], i: usize) -> Option<u8> {
    i.checked_sub(1).map(|j| s[j])
}

fn after(s: &[u8], i: usize) -> Option<u8> {
    s.get(i).copied()
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Matches of `re` not glued to more characters of class `class` on either side.
fn bounded(re: &Regex, s: &[u8], out: &mut Vec<Span>, class: fn(u8) -> bool, repl: Repl) {
    for m in re.find_iter(s) {
        let glued_after = after(s, m.end()).is_some_and(|b| class(b) || b == b'=');
        if !before(s, m.start()).is_some_and(class) && !glued_after {
            out.push(span(m.start(), m.end(), repl));
        }
    }
}

/// Longest valid card number at the start of `m` (a regex candidate): 13–19 digits, Luhn-valid;
/// with separators, all of one kind (space or dash) between groups of 3–6 digits. A candidate
/// that fails as a whole is retried group by group from the end, so a card followed by more
/// digit groups is still found.
fn card_prefix(m: &[u8]) -> Option<usize> {
    let sep = m.iter().copied().find(|b| !b.is_ascii_digit());
    let Some(sep) = sep else {
        return ((13..=19).contains(&m.len()) && luhn(m.iter().copied())).then_some(m.len());
    };
    let groups = m.split(|&b| !b.is_ascii_digit());
    let mut ends = Vec::with_capacity(8);
    let mut end = 0;
    for g in groups {
        if !(3..=6).contains(&g.len()) {
            break;
        }
        end += g.len();
        ends.push(end);
        if m.get(end) != Some(&sep) {
            break;
        }
        end += 1;
    }
    ends.into_iter().rev().find(|&e| {
        let digits = m[..e].iter().copied().filter(u8::is_ascii_digit);
        (13..=19).contains(&digits.clone().count()) && luhn(digits)
    })
}

/// An IBAN starting at `start` (country letters and check digits already matched): exactly the
/// country's length in characters, optionally in groups of four separated by single spaces,
/// not followed by another letter or digit, and mod-97 valid. Returns its end.
fn iban_at(s: &[u8], start: usize) -> Option<usize> {
    let want = iban_len([s[start], s[start + 1]])?;
    let mut compact = [0u8; 34];
    let (mut n, mut i) = (0, start);
    while n < want {
        match s.get(i) {
            Some(&c) if c.is_ascii_uppercase() || c.is_ascii_digit() => {
                compact[n] = c;
                n += 1;
                i += 1;
            }
            Some(b' ') if n % 4 == 0 && s.get(i + 1).is_some_and(u8::is_ascii_alphanumeric) => {
                i += 1
            }
            _ => return None,
        }
    }
    if after(s, i).is_some_and(is_alnum) {
        return None;
    }
    iban_mod97(&compact[..n]).then_some(i)
}

/// National phone forms must stand alone: no letter, digit, `+`, `.`, `-` or `/` glued before
/// (ids, IPs, dates), none of letter/digit after, and no `.5`/`-5` continuation; the separators
/// inside are all the same character.
fn national_ok(s: &[u8], start: usize, end: usize) -> bool {
    let glue = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-' | b'/');
    if before(s, start).is_some_and(glue) || after(s, end).is_some_and(is_alnum) {
        return false;
    }
    if matches!(after(s, end), Some(b'.' | b'-' | b'/'))
        && after(s, end + 1).is_some_and(|b| b.is_ascii_digit())
    {
        return false;
    }
    let m = &s[start..end];
    if m[0] == b'(' {
        return true;
    }
    let mut seps = m.iter().filter(|b| matches!(b, b' ' | b'.' | b'-' | b'/'));
    let first = seps.next();
    seps.all(|b| Some(b) == first)
}

/// Legacy Azure DevOps PATs: exactly 52 characters of lowercase base32 (`a-z`, `2-7`), at least
/// one of them a digit, standing alone. No literal to look for, so instead of a regex every 52nd
/// byte is probed: any such run must contain one of them.
fn legacy_pats(s: &[u8], out: &mut Vec<Span>) {
    let class = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
    let mut i = 51;
    while i < s.len() {
        if class(s[i]) {
            let mut a = i;
            while a > 0 && class(s[a - 1]) {
                a -= 1;
            }
            let mut b = i + 1;
            while b < s.len() && class(s[b]) {
                b += 1;
            }
            let alone = !before(s, a).is_some_and(is_alnum) && !after(s, b).is_some_and(is_alnum);
            if b - a == 52 && alone && s[a..b].iter().any(u8::is_ascii_digit) {
                out.push(span(a, b, Repl::Stars));
            }
            i = b.max(i) + 52;
        } else {
            i += 52;
        }
    }
}

/// Whether `s` could hold an 84-character PAT: an alphanumeric byte at a probe offset, and `AZDO`.
pub(super) fn maybe_new_pat(s: &[u8]) -> bool {
    s.iter().skip(83).step_by(84).any(u8::is_ascii_alphanumeric)
        && memchr::memmem::find(s, b"AZDO").is_some()
}

/// Whether `s` could hold a legacy PAT: probes the same bytes as `legacy_pats`.
pub(super) fn maybe_legacy_pat(s: &[u8]) -> bool {
    let class = |b: u8| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b);
    s.iter().skip(51).step_by(52).any(|&b| class(b))
}

/// Writes the replacement of `m` (the matched bytes) into `out`.
pub(super) fn write_repl(repl: Repl, m: &[u8], custom: &[Vec<u8>], out: &mut Vec<u8>) {
    const STARS: &[u8] = b"****";
    match repl {
        Repl::KeepFrom(at) => {
            out.extend_from_slice(STARS);
            out.extend_from_slice(&m[at..]);
        }
        Repl::KeepPrefix(n) => {
            out.extend_from_slice(&m[..n]);
            out.extend_from_slice(STARS);
        }
        Repl::ConnValue(n) => {
            out.extend_from_slice(&m[..n]);
            match m.get(n) {
                Some(&q @ (b'"' | b'\'')) => {
                    out.push(q);
                    out.extend_from_slice(STARS);
                    out.push(q);
                }
                Some(b'{') => out.extend_from_slice(b"{****}"),
                _ => out.extend_from_slice(STARS),
            }
        }
        Repl::UrlPassword(n) => {
            out.extend_from_slice(&m[..n]);
            out.extend_from_slice(b"****@");
        }
        Repl::Digits { keep } => {
            let total = m.iter().filter(|b| b.is_ascii_digit()).count();
            let mut seen = 0;
            for &b in m {
                if b.is_ascii_digit() {
                    seen += 1;
                    out.push(if seen + keep > total { b } else { b'*' });
                } else {
                    out.push(b);
                }
            }
        }
        Repl::Iban => {
            let total = m.iter().filter(|b| b.is_ascii_alphanumeric()).count();
            let mut seen = 0;
            for &b in m {
                if b.is_ascii_alphanumeric() {
                    seen += 1;
                    out.push(if seen <= 2 || seen + 4 > total {
                        b
                    } else {
                        b'*'
                    });
                } else {
                    out.push(b);
                }
            }
        }
        Repl::Jwt(dot) => {
            out.extend_from_slice(&m[..dot]);
            out.extend_from_slice(b".****.****");
        }
        Repl::Pem(label_end) => {
            let label = &m[11..label_end];
            out.extend_from_slice(b"-----BEGIN ");
            out.extend_from_slice(label);
            out.extend_from_slice(b"-----****-----END ");
            out.extend_from_slice(label);
            out.extend_from_slice(b"-----");
        }
        Repl::Stars => out.extend_from_slice(STARS),
        Repl::Custom(i) => out.extend_from_slice(&custom[i]),
    }
}
