//! Reasoning templates: text with `{field}` or `{field:.2}` placeholders, resolved when the
//! rule set is built so an unknown name is a build error, not a runtime surprise.

use super::context::{ContextModel, Value};
use crate::diagnostic::did_you_mean;
use crate::util::json::digits;
use std::fmt::Write as _;

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Field(usize, Option<usize>),
    Extra(usize, Option<usize>),
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    segs: Vec<Seg>,
}

/// A value for an extra placeholder (one that is not a context field).
#[derive(Debug, Clone)]
pub enum Extra<'a> {
    /// Text.
    Text(&'a str),
    /// Number.
    Num(f64),
}

/// A template problem: message, byte offset in the template, and help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Lower-case message.
    pub message: String,
    /// Offset of the placeholder in the template text.
    pub offset: usize,
    /// Advice.
    pub help: Option<String>,
}

impl Template {
    /// Compiles `text`; placeholders may name context fields or one of `extras`.
    pub fn compile(text: &str, ctx: &ContextModel, extras: &[&str]) -> Result<Self, TemplateError> {
        let mut segs = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut inner = String::new();
                    let mut closed = false;
                    for (_, c2) in chars.by_ref() {
                        if c2 == '}' {
                            closed = true;
                            break;
                        }
                        inner.push(c2);
                    }
                    if !closed {
                        return Err(TemplateError {
                            message: "unclosed `{` in template".into(),
                            offset: i,
                            help: Some("write `{{` for a literal brace".into()),
                        });
                    }
                    let (name, prec) = match inner.split_once(':') {
                        Some((n, spec)) => {
                            let p = spec
                                .strip_prefix('.')
                                .and_then(|d| d.parse::<usize>().ok())
                                .filter(|p| *p <= 10)
                                .ok_or_else(|| TemplateError {
                                    message: format!("unknown format `{spec}` in template"),
                                    offset: i,
                                    help: Some("use `{name:.2}` for two decimals".into()),
                                })?;
                            (n.trim(), Some(p))
                        }
                        None => (inner.trim(), None),
                    };
                    let seg = if let Some(idx) = ctx.index_of(name) {
                        Seg::Field(idx, prec)
                    } else if let Some(k) = extras.iter().position(|e| *e == name) {
                        Seg::Extra(k, prec)
                    } else {
                        let names = ctx
                            .fields()
                            .iter()
                            .map(|f| f.name.as_ref())
                            .chain(extras.iter().copied());
                        return Err(TemplateError {
                            message: format!("unknown placeholder `{name}` in template"),
                            offset: i,
                            help: did_you_mean(name, names),
                        });
                    };
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit)));
                    }
                    segs.push(seg);
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        Ok(Self { segs })
    }

    /// Renders the template into `out`.
    pub fn render_into(&self, out: &mut String, values: &[Value], extras: &[Extra<'_>]) {
        for s in &self.segs {
            match s {
                Seg::Lit(t) => out.push_str(t),
                Seg::Field(i, prec) => write_value(out, &values[*i], *prec),
                Seg::Extra(k, prec) => match extras.get(*k) {
                    Some(Extra::Text(t)) => out.push_str(t),
                    Some(Extra::Num(n)) => write_value(out, &Value::Num(*n), *prec),
                    None => {}
                },
            }
        }
    }

    /// Renders the template.
    pub fn render(&self, values: &[Value], extras: &[Extra<'_>]) -> String {
        let mut s = String::with_capacity(96);
        self.render_into(&mut s, values, extras);
        s
    }
}

/// Writes `n` with `p` decimals, rounded like Python. Integer arithmetic for the common case:
/// the standard formatter's exact mode falls back to slow bignum code for values like 10.0.
fn write_fixed(out: &mut String, n: f64, p: usize) {
    if p <= 9 && n.is_finite() && n.abs() < 1e9 {
        let scale = 10i64.pow(p as u32);
        let scaled = (crate::util::round::round_py(n, p as u32) * scale as f64).round() as i64;
        if scaled < 0 {
            out.push('-');
        }
        let abs = scaled.unsigned_abs();
        let scale = scale.unsigned_abs();
        let mut buf = [0u8; 20];
        push_digits(out, digits(abs / scale, &mut buf));
        if p > 0 {
            out.push('.');
            let frac = digits(abs % scale, &mut buf);
            for _ in frac.len()..p {
                out.push('0');
            }
            push_digits(out, frac);
        }
    } else {
        let _ = write!(out, "{n:.p$}");
    }
}

/// Appends ASCII digits.
fn push_digits(out: &mut String, d: &[u8]) {
    for &b in d {
        out.push(char::from(b));
    }
}

fn write_value(out: &mut String, v: &Value, prec: Option<usize>) {
    let _ = match (v, prec) {
        (Value::Num(n), Some(p)) => {
            write_fixed(out, *n, p);
            Ok(())
        }
        (Value::Int(n), Some(p)) => {
            write_fixed(out, *n as f64, p);
            Ok(())
        }
        (Value::Null, _) => write!(out, "none"),
        (Value::Int(n), None) => {
            if *n < 0 {
                out.push('-');
            }
            push_digits(out, digits(n.unsigned_abs(), &mut [0u8; 20]));
            Ok(())
        }
        (v, _) => write!(out, "{v}"),
    };
}

#[cfg(test)]
mod tests {
    use super::write_fixed;

    #[test]
    fn fixed_formatting_matches_the_standard_formatter() {
        for (n, p, want) in [
            (10.0, 2, "10.00"),
            (0.625, 2, "0.62"),
            (-1.5, 1, "-1.5"),
            (19.99, 2, "19.99"),
            (3.0, 0, "3"),
            (0.005, 2, "0.01"),
            (-0.004, 2, "0.00"),
        ] {
            let mut s = String::new();
            write_fixed(&mut s, n, p);
            assert_eq!(s, want, "{n} with {p} decimals");
        }
        let mut x = -50.0f64;
        while x < 50.0 {
            let mut s = String::new();
            write_fixed(&mut s, x, 2);
            let std = format!("{x:.2}");
            assert_eq!(
                s,
                if std == "-0.00" {
                    "0.00".to_string()
                } else {
                    std
                },
                "x = {x}"
            );
            x += 0.01234567;
        }
    }
}
