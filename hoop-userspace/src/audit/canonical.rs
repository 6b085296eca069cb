//! Canonical JSON: object keys sorted by bytes, no insignificant whitespace, serde_json's
//! escaping and number forms — one byte string per value, so hashes are reproducible.

use serde_json::Value;

/// Deepest nesting written; serde_json's parser stops at 128, and a record the verifier cannot
/// parse would look like tampering.
pub const MAX_DEPTH: usize = 100;

/// Appends the canonical encoding of `value` to `out`. Returns false (leaving `out` partly
/// written) when the value nests deeper than `MAX_DEPTH`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> bool {
    write_at(out, value, 0)
}

/// Canonical encoding as a fresh buffer; None when too deep.
pub fn to_vec(value: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value).then_some(out)
}

/// Appends the canonical encoding of a typed event: serde_json's compact output of `event`,
/// which is canonical when every struct declares its fields sorted by bytes (and holds no maps)
/// — the hot records are built this way, without a `Value` tree. Debug builds check the result
/// against the `Value` path, so a field out of order fails every test that writes one.
pub fn write_sorted<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, event: &T) {
    let start = out.len();
    serde_json::to_writer(&mut *out, event).expect("a typed event always serializes");
    debug_assert_eq!(
        std::str::from_utf8(&out[start..]).unwrap(),
        std::str::from_utf8(&to_vec(&serde_json::to_value(event).unwrap()).unwrap()).unwrap(),
        "typed audit event not canonical: declare its fields sorted by bytes"
    );
}

/// Appends `s` as a JSON string literal (serde_json's escaping: `"`, `\`, control characters).
/// A string with nothing to escape (the usual case) is copied as is.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(&mut *out, s).expect("writing a str to a Vec cannot fail");
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// Whether serde_json would escape any byte of `s` (a branch-free scan the compiler vectorizes:
/// most strings have nothing to escape and are read to the end anyway).
fn needs_escape(s: &[u8]) -> bool {
    s.iter().fold(false, |acc, &b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    })
}

/// Writes a canonical JSON object field by field, for hot records built without serde: keys
/// are `'static` names given in byte order (debug builds check the order and that no key needs
/// escaping), values are written canonically. A record can be written in two parts — a
/// prefix encoded once and [`Obj::resume`]d for the fields that change.
pub struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    #[cfg(debug_assertions)]
    last: &'static str,
}

impl<'a> Obj<'a> {
    /// Opens an object (`{`) at the end of `out`.
    pub fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj {
            out,
            first: true,
            #[cfg(debug_assertions)]
            last: "",
        }
    }

    /// Continues an object whose fields up to `last_key` are already in `out`.
    pub fn resume(out: &'a mut Vec<u8>, last_key: &'static str) -> Self {
        #[cfg(not(debug_assertions))]
        let _ = last_key;
        Obj {
            out,
            first: false,
            #[cfg(debug_assertions)]
            last: last_key,
        }
    }

    fn key(&mut self, key: &'static str) -> &mut Vec<u8> {
        #[cfg(debug_assertions)]
        {
            assert!(
                self.last.is_empty() && self.first || self.last.as_bytes() < key.as_bytes(),
                "canonical object: key {key:?} after {:?}",
                self.last
            );
            assert!(!needs_escape(key.as_bytes()));
            self.last = key;
        }
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub fn str(&mut self, key: &'static str, value: &str) -> &mut Self {
        write_str(self.key(key), value);
        self
    }

    /// A string, or `null`.
    pub fn opt_str(&mut self, key: &'static str, value: Option<&str>) -> &mut Self {
        let out = self.key(key);
        match value {
            Some(v) => write_str(out, v),
            None => out.extend_from_slice(b"null"),
        }
        self
    }

    pub fn u64(&mut self, key: &'static str, value: u64) -> &mut Self {
        let out = self.key(key);
        out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A number, or `null`.
    pub fn opt_u64(&mut self, key: &'static str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.u64(key, v),
            None => {
                self.key(key).extend_from_slice(b"null");
                self
            }
        }
    }

    pub fn bool(&mut self, key: &'static str, value: bool) -> &mut Self {
        let v: &[u8] = if value { b"true" } else { b"false" };
        self.key(key).extend_from_slice(v);
        self
    }

    /// A value already encoded canonically (its bytes as they are).
    pub fn raw(&mut self, key: &'static str, encoded: &[u8]) -> &mut Self {
        self.key(key).extend_from_slice(encoded);
        self
    }

    /// Closes the object (`}`).
    pub fn close(&mut self) {
        self.out.push(b'}');
    }
}

fn write_at(out: &mut Vec<u8>, value: &Value, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if !write_at(out, item, depth + 1) {
                    return false;
                }
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json's map is sorted unless some crate in the build enables
            // `preserve_order`; sort ourselves so that feature cannot change hashes.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if !entries.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            }
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                if !write_at(out, item, depth + 1) {
                    return false;
                }
            }
            out.push(b'}');
        }
    }
    true
}

#[cfg(test)]
mod tests;
