//! Hand-rolled JSON writing for the hot paths: string escaping and number formatting (why, with
//! the figure: see `list_json`; `serde_json`'s escaping, byte for byte).

/// Hex digits for `\u00XX` escapes.
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` as a JSON string literal (with the quotes) to `out`.
///
/// Exactly as `serde_json` escapes: quotes and backslashes, control characters as `\b`, `\t`,
/// `\n`, `\f`, `\r` or `\u00XX`; everything else (including non-ASCII UTF-8) passes through
/// unchanged.
pub(crate) fn push_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..at]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = at + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends an integer.
pub(crate) fn push_int<I: itoa::Integer>(out: &mut Vec<u8>, value: I) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends a float in its shortest round-trip form; non-finite values (which JSON cannot
/// carry) become `null`.
pub(crate) fn push_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_round_trip_through_serde() {
        for text in [
            "",
            "plain",
            "quo\"te",
            "back\\slash",
            "nl\nx\r\t",
            "\u{0}\u{1f}\u{7f}",
            "bücher/科学 🚀",
        ] {
            let json = string(text);
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, text, "{json}");
        }
        assert_eq!(string("a\u{1}b"), "\"a\\u0001b\"");
        // Byte for byte what serde_json writes, for every ASCII character.
        for byte in 0u8..0x80 {
            let text = format!("x{}y", byte as char);
            assert_eq!(
                string(&text),
                serde_json::to_string(&text).unwrap(),
                "{byte:#x}"
            );
        }
    }

    #[test]
    fn numbers_are_valid_json() {
        for value in [
            0.0,
            1.0,
            12.5,
            1e-7,
            1e21,
            123456789.123,
            f64::MIN_POSITIVE,
            -3.25,
        ] {
            let mut out = Vec::new();
            push_f64(&mut out, value);
            let back: f64 = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, value);
        }
        let mut out = Vec::new();
        push_f64(&mut out, f64::NAN);
        push_int(&mut out, -42i64);
        assert_eq!(out, b"null-42");
    }
}
