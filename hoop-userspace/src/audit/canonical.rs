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
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing a str to a Vec cannot fail");
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
