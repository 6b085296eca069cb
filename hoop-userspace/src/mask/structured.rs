//! Masking inside structured text without breaking its syntax: JSON documents (json, jsonb) and
//! PostgreSQL's text form of arrays. Strings are decoded, masked as plain text and re-encoded
//! only when they changed, so replacements can never unbalance quotes or split an escape.
//!
//! JSON specifics: a string value whose key matches a column rule is replaced whole (`"****"`;
//! numbers become `0`; booleans and null stay), and so is everything nested under such a key.
//! A detection inside a bare token (a card number written as a JSON number) turns the token
//! into `0`, the only replacement that keeps it a number.
use super::Masker;

/// What an element of a structured value holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Elem {
    Plain,
    Json,
    /// jsonb in binary format: a version byte (1), then JSON text.
    JsonbBinary,
}

/// Collects edits to `src`; allocates only at the first one.
struct Rewriter<'a> {
    src: &'a [u8],
    out: Option<Vec<u8>>,
    pos: usize,
}

impl<'a> Rewriter<'a> {
    fn new(src: &'a [u8]) -> Self {
        Rewriter {
            src,
            out: None,
            pos: 0,
        }
    }

    /// Replaces `src[start..end]` (ranges come in increasing order) with what `f` writes.
    fn replace(&mut self, start: usize, end: usize, f: impl FnOnce(&mut Vec<u8>)) {
        let out = self
            .out
            .get_or_insert_with(|| Vec::with_capacity(self.src.len() + 16));
        out.extend_from_slice(&self.src[self.pos..start]);
        f(out);
        self.pos = end;
    }

    fn finish(self) -> Option<Vec<u8>> {
        let mut out = self.out?;
        out.extend_from_slice(&self.src[self.pos..]);
        (out != self.src).then_some(out)
    }
}

impl Masker {
    /// Masks one element of kind `elem`; `None` when unchanged.
    pub(crate) fn mask_elem(&self, elem: Elem, v: &[u8]) -> Option<Vec<u8>> {
        match elem {
            Elem::Plain => self.mask_plain(v),
            Elem::Json => self.mask_json(v),
            Elem::JsonbBinary => match v.split_first() {
                Some((1, json)) => self.mask_json(json).map(|m| {
                    let mut out = Vec::with_capacity(m.len() + 1);
                    out.push(1);
                    out.extend_from_slice(&m);
                    out
                }),
                // An unknown jsonb version cannot be inspected: fail closed.
                _ => (v != JSONB_MASKED).then(|| JSONB_MASKED.to_vec()),
            },
        }
    }

    /// Masks JSON text. Malformed JSON (PostgreSQL never sends it) is masked as plain text.
    pub(crate) fn mask_json(&self, s: &[u8]) -> Option<Vec<u8>> {
        if self.columns.is_none() && !self.gate_passes(s) {
            return None;
        }
        match self.walk_json(s) {
            Ok(out) => out,
            Err(()) => self.mask_plain(s),
        }
    }

    fn walk_json(&self, s: &[u8]) -> Result<Option<Vec<u8>>, ()> {
        let mut w = Rewriter::new(s);
        let (mut i, mut depth) = (0usize, 0usize);
        let mut key_hit = false;
        let mut masked_from: Option<usize> = None;
        while i < s.len() {
            match s[i] {
                b'"' => {
                    let end = string_end(s, i + 1).ok_or(())?;
                    let raw = &s[i + 1..end];
                    let mut j = end + 1;
                    while s.get(j).is_some_and(u8::is_ascii_whitespace) {
                        j += 1;
                    }
                    if s.get(j) == Some(&b':') {
                        if masked_from.is_none() {
                            let key = json_unescape(raw).ok_or(())?;
                            key_hit =
                                std::str::from_utf8(&key).is_ok_and(|k| self.column_masked(k));
                        }
                    } else {
                        if masked_from.is_some() || key_hit {
                            if raw != b"****" {
                                w.replace(i, end + 1, |o| o.extend_from_slice(b"\"****\""));
                            }
                        } else if raw.len() >= super::gate::MIN_LEN || self.custom_set.is_some() {
                            let text = json_unescape(raw).ok_or(())?;
                            if let Some(m) = self.mask_plain(&text) {
                                w.replace(i, end + 1, |o| json_quote(&m, o));
                            }
                        }
                        key_hit = false;
                    }
                    i = end + 1;
                }
                b'{' | b'[' => {
                    if key_hit && masked_from.is_none() {
                        masked_from = Some(depth);
                    }
                    key_hit = false;
                    depth += 1;
                    i += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or(())?;
                    if masked_from == Some(depth) {
                        masked_from = None;
                    }
                    i += 1;
                }
                b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                _ => {
                    let end = s[i..]
                        .iter()
                        .position(|b| b",:]}\"[{ \t\n\r".contains(b))
                        .map_or(s.len(), |n| i + n);
                    let tok = &s[i..end];
                    let number = tok[0] == b'-' || tok[0].is_ascii_digit();
                    let whole = (masked_from.is_some() || key_hit) && number;
                    if (whole || self.mask_plain(tok).is_some()) && tok != b"0" {
                        w.replace(i, end, |o| o.push(b'0'));
                    }
                    key_hit = false;
                    i = end;
                }
            }
        }
        Ok(w.finish())
    }

    /// Masks a PostgreSQL text-form array (`{a,"b c",NULL}`, nested, optional `[1:2]=` bounds)
    /// whose elements are of kind `elem` (`Plain` or `Json`). Changed elements are re-quoted.
    pub(crate) fn mask_text_array(&self, s: &[u8], elem: Elem) -> Option<Vec<u8>> {
        let json_keys = elem == Elem::Json && self.columns.is_some();
        if !json_keys && !self.gate_passes(s) {
            return None;
        }
        let mut w = Rewriter::new(s);
        let mut i = 0;
        if s.first() == Some(&b'[') {
            i = memchr::memchr(b'=', s).map_or(s.len(), |n| n + 1);
        }
        while i < s.len() {
            match s[i] {
                b'{' | b'}' | b',' | b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                b'"' => {
                    let Some(end) = string_end(s, i + 1) else {
                        // Unterminated quote: not PostgreSQL's output; mask it as plain text.
                        return self.mask_plain(s);
                    };
                    let raw = &s[i + 1..end];
                    let text = array_unescape(raw);
                    if let Some(m) = self.mask_elem(elem, &text) {
                        w.replace(i, end + 1, |o| array_quote(&m, o));
                    }
                    i = end + 1;
                }
                _ => {
                    let end = s[i..]
                        .iter()
                        .position(|b| matches!(b, b',' | b'}'))
                        .map_or(s.len(), |n| i + n);
                    let tok = s[i..end].trim_ascii_end();
                    if !tok.eq_ignore_ascii_case(b"NULL")
                        && let Some(m) = self.mask_elem(elem, tok)
                    {
                        w.replace(i, i + tok.len(), |o| array_quote(&m, o));
                    }
                    i = end;
                }
            }
        }
        w.finish()
    }
}

/// jsonb's binary form of the JSON string `"****"`.
pub(crate) const JSONB_MASKED: &[u8] = b"\x01\"****\"";

/// Index of the quote closing a string whose content starts at `from`, skipping escapes.
fn string_end(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let n = memchr::memchr2(b'"', b'\\', &s[i..])?;
        if s[i + n] == b'"' {
            return Some(i + n);
        }
        i += n + 2;
        if i > s.len() {
            return None;
        }
    }
}

/// Decodes a JSON string's content; `None` if an escape is invalid.
fn json_unescape(raw: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if memchr::memchr(b'\\', raw).is_none() {
        return Some(std::borrow::Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let c = *raw.get(i + 1)?;
        i += 2;
        let simple = match c {
            b'"' | b'\\' | b'/' => c,
            b'b' => 8,
            b'f' => 12,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (ch, used) = json_unicode(&raw[i..])?;
                i += used;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                continue;
            }
            _ => return None,
        };
        out.push(simple);
    }
    Some(std::borrow::Cow::Owned(out))
}

/// The code point of `XXXX` (after `\u`), joining a surrogate pair; lone surrogates become
/// U+FFFD. Returns it and how many bytes were used.
fn json_unicode(s: &[u8]) -> Option<(char, usize)> {
    let hex4 = |b: &[u8]| -> Option<u32> {
        let h = std::str::from_utf8(b.get(..4)?).ok()?;
        u32::from_str_radix(h, 16).ok()
    };
    let hi = hex4(s)?;
    if (0xD800..0xDC00).contains(&hi)
        && s.get(4..6) == Some(b"\\u")
        && let Some(lo) = hex4(&s[6..]).filter(|lo| (0xDC00..0xE000).contains(lo))
    {
        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        return Some((char::from_u32(cp)?, 10));
    }
    Some((char::from_u32(hi).unwrap_or('\u{FFFD}'), 4))
}

/// Writes `"text"` as a JSON string.
fn json_quote(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in text {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Decodes a quoted array element's content (`\x` stands for `x`).
fn array_unescape(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr(b'\\', raw).is_none() {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        out.push(if b == b'\\' {
            it.next().copied().unwrap_or(b)
        } else {
            b
        });
    }
    std::borrow::Cow::Owned(out)
}

/// Writes `text` as a double-quoted array element.
fn array_quote(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in text {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}
