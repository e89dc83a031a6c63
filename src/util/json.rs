//! Writing JSON by hand on the hot path, byte for byte what `serde_json` writes.

/// Writes `s` as a JSON string. Text without a quote, a backslash or a control character (the
/// only bytes `serde_json` escapes) is copied as is; anything else goes through `serde_json`.
pub fn str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if !needs_escape(b) {
        out.reserve(b.len() + 2);
        out.push(b'"');
        out.extend_from_slice(b);
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// The decimal digits of `v`, written at the end of `buf`.
pub fn digits(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Writes a float as `serde_json` does. Values with at most two decimals (costs, confidences,
/// risks) are written directly: for them the shortest text that reads back to the same float
/// is the decimal itself, trailing zeros dropped. Anything else goes through `serde_json`.
pub fn f64(out: &mut Vec<u8>, x: f64) {
    if x.abs() < 1e9 && !(x == 0.0 && x.is_sign_negative()) {
        // The nearest whole number of cents; the check below makes the rounding mode moot.
        let c = (x * 100.0 + 0.5f64.copysign(x)) as i64;
        if c as f64 / 100.0 == x {
            // Built right to left in a small buffer, then copied once: cents, point, units.
            let mut buf = [0u8; 24];
            let mut i = buf.len();
            let cents = c.unsigned_abs();
            let frac = (cents % 100) as u8;
            if !frac.is_multiple_of(10) {
                i -= 1;
                buf[i] = b'0' + frac % 10;
            }
            i -= 1;
            buf[i] = b'0' + frac / 10;
            i -= 1;
            buf[i] = b'.';
            let mut units = cents / 100;
            loop {
                i -= 1;
                buf[i] = b'0' + (units % 10) as u8;
                units /= 10;
                if units == 0 {
                    break;
                }
            }
            if c < 0 {
                i -= 1;
                buf[i] = b'-';
            }
            out.extend_from_slice(&buf[i..]);
            return;
        }
    }
    let _ = serde_json::to_writer(&mut *out, &x);
}

/// Writes an unsigned integer as `serde_json` does.
pub fn u64(out: &mut Vec<u8>, v: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(digits(v, &mut buf));
}

/// Whether any byte needs escaping; 16 bytes at a time, without a branch per byte (the
/// compiler turns the inner loop into vector compares).
fn needs_escape(b: &[u8]) -> bool {
    let special = |x: u8| (x < 0x20) | (x == b'"') | (x == b'\\');
    let mut chunks = b.chunks_exact(16);
    for c in &mut chunks {
        if c.iter().fold(false, |m, &x| m | special(x)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&x| special(x))
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        let check = |x: f64| {
            let mut ours = Vec::new();
            super::f64(&mut ours, x);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&x).unwrap(),
                "{x:?}"
            );
        };
        for x in [
            0.0,
            -0.0,
            0.1,
            0.2,
            0.15,
            0.75,
            2.5,
            14.0,
            0.01,
            0.05,
            1.0,
            10.0,
            100.0,
            625.0,
            -1.5,
            -0.01,
            0.125,
            1e-7,
            123456.78,
            999_999_999.99,
            1e9,
            1e15,
            1e16,
            1e300,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
        ] {
            check(x);
        }
        // Every cent value up to 20,000, the same as costs, and a spread of other values.
        for c in -200_000..2_000_000i64 {
            check(c as f64 / 100.0);
        }
        let mut x = 0.000_123_f64;
        while x < 5e9 {
            check(x);
            check(x * 1.000_000_1);
            x *= 1.37;
        }
        for v in [0u64, 7, 10, 99, 100, 12_345, u64::MAX] {
            let mut ours = Vec::new();
            super::u64(&mut ours, v);
            assert_eq!(String::from_utf8(ours).unwrap(), v.to_string());
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let cases = [
            "",
            "plain text",
            "Moderate trainset (200 examples) and budget ($10.00): MIPROv2 light.",
            "quote \" inside",
            "back\\slash",
            "new\nline and tab\t",
            "\u{0}\u{1f} controls",
            "del \u{7f} and unicode é 漢字 🚀",
            "</script>",
            "a long text of more than sixteen bytes, with a \" quote far in",
            "a long text of more than sixteen bytes, with a control at the end\u{1}",
        ];
        for s in cases {
            let mut ours = Vec::new();
            super::str(&mut ours, s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }
}
