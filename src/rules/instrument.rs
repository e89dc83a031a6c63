//! Coverage instrumentation of Rhai code, for `rules test --coverage` only.
//!
//! A coverage build compiles a copy of every `.rhai` file in which each function body starts
//! with a call to a native recorder (`skill_fleet_hit(N);`), and wraps every `expr:` condition
//! so that it records its own evaluation. Normal builds are untouched: the recorder exists only
//! in the coverage build, so normal evaluation pays nothing for it.
//!
//! The copy is made by a small lexical scan ([`definitions`]) that finds the top-level `fn`
//! definitions while skipping comments and string literals. The instrumented copy must define
//! exactly the functions of the original (same names and arities), otherwise the file is
//! compiled as written and its functions are reported as not measured.

use super::origin::Origin;
use std::sync::Mutex;

/// Name of the native function the instrumented copy calls at the start of each function.
pub const HIT_FN: &str = "skill_fleet_hit";

/// What a coverage site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteKind {
    /// A function of a `.rhai` file.
    Function,
    /// An `expr:` condition.
    Expr,
}

/// One piece of Rhai code whose execution a coverage build records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Function or expression.
    pub kind: SiteKind,
    /// `name/arity` of a function, the code of an expression.
    pub name: String,
    /// File it is written in.
    pub file: String,
    /// Line where it starts.
    pub line: usize,
    /// Whether it ran at least once.
    pub hit: bool,
    /// False when the file could not be instrumented (its functions are not measured).
    pub measured: bool,
}

/// Records which sites ran. Shared by the coverage build's closures and the Rhai engine.
#[derive(Debug, Default)]
pub struct Recorder {
    sites: Mutex<Vec<Site>>,
}

impl Recorder {
    /// A recorder without sites.
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&self, site: Site) -> usize {
        match self.sites.lock() {
            Ok(mut s) => {
                s.push(site);
                s.len() - 1
            }
            Err(_) => usize::MAX,
        }
    }

    /// Registers a function definition; returns its site number.
    pub fn add_fn(
        &self,
        name: &str,
        arity: usize,
        file: &str,
        line: usize,
        measured: bool,
    ) -> usize {
        self.add(Site {
            kind: SiteKind::Function,
            name: format!("{name}/{arity}"),
            file: file.to_string(),
            line,
            hit: false,
            measured,
        })
    }

    /// Registers an `expr:` condition; returns its site number.
    pub fn add_expr(&self, origin: &Origin, code: &str) -> usize {
        self.add(Site {
            kind: SiteKind::Expr,
            name: code.to_string(),
            file: origin.file.clone(),
            line: origin.start.line,
            hit: false,
            measured: true,
        })
    }

    /// Number of sites registered so far.
    pub fn len(&self) -> usize {
        self.sites.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// True when no site is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks a site as run.
    pub fn hit(&self, site: usize) {
        if let Ok(mut s) = self.sites.lock() {
            if let Some(site) = s.get_mut(site) {
                site.hit = true;
            }
        }
    }

    /// The sites, in registration order, with what ran.
    pub fn sites(&self) -> Vec<Site> {
        self.sites.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A top-level function definition found in a Rhai source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnDef {
    /// Function name.
    pub name: String,
    /// Number of parameters.
    pub arity: usize,
    /// 1-based line of the `fn` keyword.
    pub line: usize,
    /// Byte offset just after the `{` that opens the body.
    pub body: usize,
}

/// The source with `skill_fleet_hit(ID);` inserted at the start of each body, `ids[i]` for
/// `defs[i]`.
pub fn rewrite(src: &str, defs: &[FnDef], ids: &[usize]) -> String {
    let mut out = String::with_capacity(src.len() + defs.len() * 32);
    let mut last = 0;
    for (d, id) in defs.iter().zip(ids) {
        out.push_str(&src[last..d.body]);
        out.push_str(&format!("{HIT_FN}({id});"));
        last = d.body;
    }
    out.push_str(&src[last..]);
    out
}

/// Finds the top-level `fn` definitions of a Rhai source, skipping comments and strings.
/// `None` when the source does not scan (the compiler reports real syntax errors).
pub fn definitions(src: &str) -> Option<Vec<FnDef>> {
    let mut s = Scanner {
        b: src.as_bytes(),
        i: 0,
    };
    let mut defs = Vec::new();
    let mut depth = 0usize;
    while s.i < s.b.len() {
        if s.skip_trivia_or_literal()? {
            continue;
        }
        let c = s.b[s.i];
        if c == b'{' {
            depth += 1;
            s.i += 1;
        } else if c == b'}' {
            depth = depth.checked_sub(1)?;
            s.i += 1;
        } else if is_ident_start(c) {
            let start = s.i;
            let word = s.ident();
            if word == "fn" && depth == 0 {
                let line = line_of(s.b, start);
                let (name, arity) = s.signature()?;
                s.skip_space()?;
                if s.b.get(s.i) != Some(&b'{') {
                    return None;
                }
                s.i += 1;
                depth += 1;
                defs.push(FnDef {
                    name,
                    arity,
                    line,
                    body: s.i,
                });
            }
        } else {
            s.i += 1;
        }
    }
    Some(defs)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn line_of(b: &[u8], at: usize) -> usize {
    1 + b[..at].iter().filter(|&&c| c == b'\n').count()
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self, k: usize) -> Option<u8> {
        self.b.get(self.i + k).copied()
    }

    fn ident(&mut self) -> String {
        let start = self.i;
        while self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.b[start..self.i]).into_owned()
    }

    /// Skips one comment or literal at the cursor: `Some(true)` when it did, `Some(false)`
    /// when there is none, `None` when one is unterminated.
    fn skip_trivia_or_literal(&mut self) -> Option<bool> {
        match (self.peek(0), self.peek(1)) {
            (Some(b'/'), Some(b'/')) => {
                while self.peek(0).is_some_and(|c| c != b'\n') {
                    self.i += 1;
                }
            }
            (Some(b'/'), Some(b'*')) => self.block_comment()?,
            (Some(b'"'), _) => self.quoted(b'"')?,
            (Some(b'\''), _) => self.quoted(b'\'')?,
            (Some(b'`'), _) => self.backtick()?,
            (Some(b'#'), Some(b'"' | b'#')) => self.raw()?,
            _ => return Some(false),
        }
        Some(true)
    }

    fn skip_space(&mut self) -> Option<()> {
        loop {
            while self.peek(0).is_some_and(|c| c.is_ascii_whitespace()) {
                self.i += 1;
            }
            match (self.peek(0), self.peek(1)) {
                (Some(b'/'), Some(b'/' | b'*')) => {
                    self.skip_trivia_or_literal()?;
                }
                _ => return Some(()),
            }
        }
    }

    fn block_comment(&mut self) -> Option<()> {
        self.i += 2;
        let mut level = 1;
        while level > 0 {
            match (self.peek(0)?, self.peek(1)) {
                (b'/', Some(b'*')) => {
                    level += 1;
                    self.i += 2;
                }
                (b'*', Some(b'/')) => {
                    level -= 1;
                    self.i += 2;
                }
                _ => self.i += 1,
            }
        }
        Some(())
    }

    fn quoted(&mut self, close: u8) -> Option<()> {
        self.i += 1;
        loop {
            match self.peek(0)? {
                b'\\' => self.i += 2,
                c if c == close => {
                    self.i += 1;
                    return Some(());
                }
                _ => self.i += 1,
            }
        }
    }

    /// `#"…"#`, `##"…"##`, …
    fn raw(&mut self) -> Option<()> {
        let mut hashes = 0;
        while self.peek(0) == Some(b'#') {
            hashes += 1;
            self.i += 1;
        }
        if self.peek(0) != Some(b'"') {
            // `#{` (a map) or a stray `#`: not a raw string; the caller scans on.
            return Some(());
        }
        self.i += 1;
        loop {
            if self.peek(0)? == b'"' && (1..=hashes).all(|k| self.peek(k) == Some(b'#')) {
                self.i += 1 + hashes;
                return Some(());
            }
            self.i += 1;
        }
    }

    /// A backtick string with `${…}` interpolations, which hold code.
    fn backtick(&mut self) -> Option<()> {
        self.i += 1;
        loop {
            match (self.peek(0)?, self.peek(1)) {
                (b'`', Some(b'`')) => self.i += 2,
                (b'`', _) => {
                    self.i += 1;
                    return Some(());
                }
                (b'$', Some(b'{')) => {
                    self.i += 2;
                    self.code_until_close()?;
                }
                _ => self.i += 1,
            }
        }
    }

    /// Code up to and including the `}` that closes an interpolation.
    fn code_until_close(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            if self.skip_trivia_or_literal()? {
                continue;
            }
            match self.peek(0)? {
                b'{' => depth += 1,
                b'}' if depth == 0 => {
                    self.i += 1;
                    return Some(());
                }
                b'}' => depth -= 1,
                _ => {}
            }
            self.i += 1;
        }
    }

    /// `name(a, b)` after `fn`: the name and the number of parameters.
    fn signature(&mut self) -> Option<(String, usize)> {
        self.skip_space()?;
        if !self.peek(0).is_some_and(is_ident_start) {
            return None;
        }
        let name = self.ident();
        self.skip_space()?;
        if self.peek(0)? != b'(' {
            return None;
        }
        self.i += 1;
        let mut arity = 0;
        let mut in_param = false;
        loop {
            self.skip_space()?;
            match self.peek(0)? {
                b')' => {
                    self.i += 1;
                    return Some((name, arity + usize::from(in_param)));
                }
                b',' => {
                    if !in_param {
                        return None;
                    }
                    arity += 1;
                    in_param = false;
                    self.i += 1;
                }
                c if is_ident_start(c) => {
                    if in_param {
                        return None;
                    }
                    self.ident();
                    in_param = true;
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(src: &str) -> Vec<(String, usize, usize)> {
        definitions(src)
            .expect("scans")
            .into_iter()
            .map(|d| (d.name, d.arity, d.line))
            .collect()
    }

    #[test]
    fn finds_top_level_definitions_with_arity_and_line() {
        let src = "// fn commented(x) { }\nfn a() { 1 }\n\nprivate fn b(x, y) {\n  if x { y } else { #{k: `fn c() { ${x} }`} }\n}\nfn d(input, optimizer, model) { \"fn e() {\" }\n";
        assert_eq!(
            names(src),
            [
                ("a".to_string(), 0, 2),
                ("b".to_string(), 2, 4),
                ("d".to_string(), 3, 7)
            ]
        );
    }

    #[test]
    fn skips_block_comments_raw_strings_and_chars() {
        let src =
            "/* fn x() { /* nested */ } */\nfn f(a) { let c = '}'; let s = #\"fn g() {\"#; a }\n";
        assert_eq!(names(src), [("f".to_string(), 1, 2)]);
    }

    #[test]
    fn unterminated_literals_do_not_scan() {
        assert_eq!(definitions("fn f() { \"open }"), None);
        assert_eq!(definitions("fn f( { }"), None);
    }

    #[test]
    fn rewrite_inserts_a_hit_at_each_body() {
        let src = "fn a() { 1 }\nfn b(x) {\n  x\n}\n";
        let defs = definitions(src).expect("scans");
        let out = rewrite(src, &defs, &[7, 8]);
        assert_eq!(
            out,
            "fn a() {skill_fleet_hit(7); 1 }\nfn b(x) {skill_fleet_hit(8);\n  x\n}\n"
        );
    }

    #[test]
    fn recorder_marks_hits() {
        let r = Recorder::new();
        let a = r.add_fn("f", 1, "h.rhai", 3, true);
        let b = r.add_fn("g", 0, "h.rhai", 5, true);
        r.hit(b);
        let sites = r.sites();
        assert!(!sites[a].hit);
        assert!(sites[b].hit);
        assert_eq!(sites[b].name, "g/0");
    }
}
