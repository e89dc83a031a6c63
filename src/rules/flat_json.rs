//! A fast path for the request bodies `recommend` gets nearly always: one flat JSON object of
//! numbers, plain strings, booleans and nulls. Anything else (nesting, escapes, long numbers,
//! a syntax error) is left to `serde_json`, which also words the errors; for what this parser
//! accepts it yields exactly the values `serde_json` would.

/// Calls `pair` for each member of `body` in order, with the key's bytes (not checked for
/// UTF-8: `pair` compares them with the names it knows first), and returns `true`; returns
/// `false` as soon as the body is not a simple flat object or `pair` refuses a member (some
/// members may have been passed already: the caller starts over with `serde_json`).
pub fn each_member(body: &[u8], mut pair: impl FnMut(&[u8], serde_json::Value) -> bool) -> bool {
    let mut p = Parser { b: body, i: 0 };
    p.ws();
    if !p.eat(b'{') {
        return false;
    }
    p.ws();
    if p.eat(b'}') {
        return p.end();
    }
    loop {
        let Some(key) = p.raw_string() else {
            return false;
        };
        p.ws();
        if !p.eat(b':') {
            return false;
        }
        p.ws();
        let Some(value) = p.value() else {
            return false;
        };
        if !pair(key, value) {
            return false;
        }
        p.ws();
        if p.eat(b',') {
            p.ws();
            continue;
        }
        return p.eat(b'}') && p.end();
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn end(&mut self) -> bool {
        self.ws();
        self.i == self.b.len()
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_string()?).ok()
    }

    /// The bytes of a string without escapes or control characters.
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => return None,
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        let s = self.b.get(start..self.i)?;
        self.i += 1;
        Some(s)
    }

    fn literal(&mut self, word: &[u8], v: serde_json::Value) -> Option<serde_json::Value> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(v)
        } else {
            None
        }
    }

    fn value(&mut self) -> Option<serde_json::Value> {
        match self.peek()? {
            b'"' => self
                .string()
                .map(|s| serde_json::Value::String(s.to_string())),
            b't' => self.literal(b"true", serde_json::Value::Bool(true)),
            b'f' => self.literal(b"false", serde_json::Value::Bool(false)),
            b'n' => self.literal(b"null", serde_json::Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A JSON number of at most 15 digits, scaled by at most 10^22: for those both this parser
    /// and `serde_json` give the correctly rounded float. Integers become `u64` (or `i64` when
    /// negative) as in `serde_json`.
    fn number(&mut self) -> Option<serde_json::Value> {
        let start = self.i;
        let negative = self.eat(b'-');
        let int_start = self.i;
        let mut int: u64 = 0;
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while let Some(d @ b'0'..=b'9') = self.peek() {
                    // At most 15 digits are kept (checked below): no overflow.
                    int = int.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let int_digits = self.i - int_start;
        let mut frac_digits = 0;
        let mut float = false;
        if self.eat(b'.') {
            let s = self.i;
            self.digits();
            frac_digits = self.i - s;
            if frac_digits == 0 {
                return None;
            }
            float = true;
        }
        let mut exp: i32 = 0;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let minus = !self.eat(b'+') && self.eat(b'-');
            let s = self.i;
            self.digits();
            let digits = self.b.get(s..self.i)?;
            if digits.is_empty() || digits.len() > 2 {
                return None;
            }
            exp = digits.iter().fold(0, |e, d| e * 10 + i32::from(d - b'0'));
            if minus {
                exp = -exp;
            }
            float = true;
        }
        // Up to 15 digits and a power of ten up to 22: one exact operation in either parser.
        if int_digits + frac_digits > 15 || (exp - frac_digits as i32).abs() > 22 {
            return None;
        }
        if float {
            let text = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
            let f: f64 = text.parse().ok()?;
            return serde_json::Number::from_f64(f).map(serde_json::Value::Number);
        }
        match (negative, int) {
            // `-0` is a float in serde_json.
            (true, 0) => serde_json::Number::from_f64(-0.0).map(serde_json::Value::Number),
            // Below 10^15: fits an i64.
            (true, n) => Some((-(n as i64)).into()),
            (false, n) => Some(n.into()),
        }
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::each_member;

    fn flat(body: &str) -> Option<Vec<(String, serde_json::Value)>> {
        let mut got = Vec::new();
        each_member(body.as_bytes(), |k, v| {
            got.push((String::from_utf8(k.to_vec()).unwrap(), v));
            true
        })
        .then_some(got)
    }

    #[test]
    fn flat_objects_read_as_serde_json_reads_them() {
        for body in [
            r#"{"trainset_size": 200, "budget_usd": 10}"#,
            "{}",
            " { } ",
            r#"{"a":-0,"b":0,"c":-12,"d":1.5,"e":1e3,"f":-2.5E-3,"g":0.1,"h":123456789012345}"#,
            r#"{"a":1e22,"b":1.5e-21,"c":-0.0,"d":0.001,"e":10.250,"f":1E+2,"g":9.99999999999999}"#,
            r#"{"a": true, "b": false, "c": null, "d": "text with spaces é", "e": ""}"#,
            "{\n\t\"budget_usd\" :\r\n 10.25 ,\"a\":1 }\n",
            r#"{"a": 1, "a": 2}"#,
        ] {
            let ours = flat(body).unwrap_or_else(|| panic!("not taken: {body}"));
            let serde: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(body).unwrap();
            // serde's map keeps the last of duplicate keys; compare member by member otherwise.
            if body.contains(r#""a": 1, "a": 2"#) {
                assert_eq!(ours.len(), 2);
                continue;
            }
            assert_eq!(ours.len(), serde.len(), "{body}");
            for (k, v) in &ours {
                assert_eq!(Some(v), serde.get(k), "{body}: {k}");
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        for body in [
            "",
            "[]",
            "null",
            r#"{"a": {"b": 1}}"#,
            r#"{"a": [1]}"#,
            r#"{"a\"b": 1}"#,
            r#"{"a": "x\ny"}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1.}"#,
            r#"{"a": .5}"#,
            r#"{"a": 1e}"#,
            r#"{"a": 1e400}"#,
            r#"{"a": 1e23}"#,
            r#"{"a": 1.5e-22}"#,
            r#"{"a": 1234567890123456}"#,
            r#"{"x": 18446744073709551615}"#,
            r#"{"a": 0.1234567890123456}"#,
            r#"{"a": 1,}"#,
            r#"{"a" 1}"#,
            r#"{"a": tru}"#,
            r#"{"a": 1} x"#,
            r#"{"a": 1"#,
            "{\"a\": \"\u{1}\"}",
        ] {
            assert!(flat(body).is_none(), "taken: {body}");
        }
    }
}
