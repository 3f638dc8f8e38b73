//! Writing JSON object text directly, without building a `serde_json::Value` tree per record.
//!
//! The importers turn every row or event into `properties`/`traits` text; building a tree and
//! serialising it would cost several allocations per field. [`ObjectWriter`] appends to one
//! reused buffer instead, escaping exactly as `serde_json` does, so the text round-trips.

use std::fmt::Write as _;

/// For each byte: 0 when it is copied as is, else the letter of its short escape (`u` for
/// `\u00XX`), as in serde_json.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Appends `s` as a JSON string literal (quotes included), escaped like `serde_json` does.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // No early exit: a loop over all bytes is cheaper for the short strings seen here.
    let needs_escape = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        // Every byte that needs escaping is ASCII, so `start..i` falls on char boundaries.
        out.push_str(&s[start..i]);
        if escape == b'u' {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push('\\');
            out.push(escape as char);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// True when `s` is a number in JSON's grammar, so it can be copied into JSON text as is.
pub fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// Builds one JSON object's text in a reused buffer.
#[derive(Debug, Default)]
pub struct ObjectWriter {
    buf: String,
}

impl ObjectWriter {
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Starts a member: the separator, then `key` escaped, then the colon.
    pub fn key(&mut self, key: &str) {
        self.buf.push(if self.buf.is_empty() { '{' } else { ',' });
        write_str(&mut self.buf, key);
        self.buf.push(':');
    }

    /// Starts a member whose key is already JSON text (`"key":`), as made by [`key_fragment`].
    pub fn key_fragment(&mut self, fragment: &str) {
        self.buf.push(if self.buf.is_empty() { '{' } else { ',' });
        self.buf.push_str(fragment);
    }

    pub fn str_value(&mut self, v: &str) {
        write_str(&mut self.buf, v);
    }

    pub fn bool_value(&mut self, v: bool) {
        self.buf.push_str(if v { "true" } else { "false" });
    }

    pub fn i64_value(&mut self, v: i64) {
        let _ = write!(self.buf, "{v}");
    }

    pub fn u64_value(&mut self, v: u64) {
        let _ = write!(self.buf, "{v}");
    }

    /// A finite float as a JSON number (`{:?}` gives the shortest round-tripping form, with an
    /// exponent for very large or small values, which JSON accepts); anything else as `null`.
    pub fn f64_value(&mut self, v: f64) {
        if v.is_finite() {
            let _ = write!(self.buf, "{v:?}");
        } else {
            self.buf.push_str("null");
        }
    }

    /// Text that is already a valid JSON value (checked by the caller).
    pub fn raw_value(&mut self, v: &str) {
        debug_assert!(!v.is_empty());
        self.buf.push_str(v);
    }

    /// `"key":` as JSON text, for keys written on every record.
    pub fn key_fragment_of(key: &str) -> String {
        let mut s = String::with_capacity(key.len() + 3);
        write_str(&mut s, key);
        s.push(':');
        s
    }

    /// The finished object, or `None` when no member was written.
    pub fn finish(&self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let mut s = String::with_capacity(self.buf.len() + 1);
        s.push_str(&self.buf);
        s.push('}');
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_serde_json() {
        for s in [
            "plain",
            "",
            "quote \" backslash \\ slash /",
            "ctl \n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "ünïcödé ✓ 😀",
        ] {
            let mut out = String::new();
            write_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn recognises_json_numbers() {
        for good in ["0", "-0", "35.0", "1e5", "1.5E-3", "-12", "1E+2"] {
            assert!(is_json_number(good), "{good}");
        }
        for bad in [
            "", "-", "01", ".5", "5.", "1e", "NaN", "inf", "+1", "1 ", "0x10",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn builds_objects_that_parse() {
        let mut w = ObjectWriter::default();
        assert_eq!(w.finish(), None);
        w.key("a\"b");
        w.str_value("x\ny");
        w.key_fragment(&ObjectWriter::key_fragment_of("n"));
        w.f64_value(35.0);
        w.key("i");
        w.i64_value(-7);
        w.key("b");
        w.bool_value(true);
        w.key("nan");
        w.f64_value(f64::NAN);
        let text = w.finish().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a\"b": "x\ny", "n": 35.0, "i": -7, "b": true, "nan": null})
        );
        w.clear();
        assert_eq!(w.finish(), None);
    }
}
