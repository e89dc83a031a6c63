//! YAML parsing with positions.
//!
//! `serde_yaml` turns the text into a JSON value (the typed data); a second pass over the
//! `yaml-rust2` event stream records where every node and mapping key starts, keyed by JSON
//! pointer, so that schema and semantic errors can point at `file:line:col`.

use crate::diagnostic::{Diagnostic, Pos, SourceFile};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// How a scalar was written; used to map positions inside a scalar (Rhai code) to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    /// `key: value`
    Plain,
    /// `'value'` or `"value"`
    Quoted,
    /// `|` block: content starts on the next line, lines kept as written.
    Block,
    /// `>` block: content starts on the next line; folding joins lines, so positions inside
    /// it do not map back to the file line by line.
    Folded,
    /// Not a scalar (mapping or sequence).
    Collection,
}

/// Where one node starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSpan {
    /// Start of the node.
    pub pos: Pos,
    /// How it was written.
    pub style: ScalarStyle,
}

/// Positions of the nodes of one YAML document, by JSON pointer.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    values: HashMap<String, NodeSpan>,
    keys: HashMap<String, Pos>,
}

impl SpanIndex {
    /// Position of the value at `pointer`, or of its nearest ancestor that has one.
    pub fn value(&self, pointer: &str) -> Option<Pos> {
        self.node(pointer).map(|n| n.pos)
    }

    /// The span of the value at `pointer`, or its nearest ancestor's.
    pub fn node(&self, pointer: &str) -> Option<NodeSpan> {
        let mut p = pointer;
        loop {
            if let Some(n) = self.values.get(p) {
                return Some(*n);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }

    /// Position of the key of the mapping entry at `pointer` (falls back to its value).
    pub fn key(&self, pointer: &str) -> Option<Pos> {
        self.keys
            .get(pointer)
            .copied()
            .or_else(|| self.value(pointer))
    }

    /// The exact span of the value at `pointer`, without falling back to an ancestor.
    pub fn exact(&self, pointer: &str) -> Option<NodeSpan> {
        self.values.get(pointer).copied()
    }
}

pub use crate::util::schema_check::escape_segment;

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

struct Recorder {
    stack: Vec<Frame>,
    index: SpanIndex,
    root_done: bool,
}

impl Recorder {
    /// Returns the pointer of the node that starts now, or `None` when the event is a key.
    fn next_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => {
                if self.root_done {
                    return None;
                }
                self.root_done = true;
                Some(String::new())
            }
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}/{index}");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(format!("{path}/{}", escape_segment(&k))),
                None => {
                    // This event is a key. Only scalar keys get a position.
                    let k = scalar.unwrap_or("").to_string();
                    let key_pos = to_pos(mark, k.chars().count());
                    // A block mapping is reported where its first key starts.
                    if let Some(span) = self.index.values.get_mut(path.as_str()) {
                        if (span.pos.line, span.pos.col) > (key_pos.line, key_pos.col) {
                            span.pos = Pos::new(key_pos.line, key_pos.col, 1);
                        }
                    }
                    let p = format!("{path}/{}", escape_segment(&k));
                    self.index.keys.insert(p, key_pos);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

fn to_pos(mark: Marker, len: usize) -> Pos {
    Pos::new(mark.line(), mark.col() + 1, len)
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, style, _, _) => {
                if let Some(path) = self.next_path(Some(&text), mark) {
                    let (style, len) = match style {
                        TScalarStyle::Plain => (ScalarStyle::Plain, text.chars().count()),
                        TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                            (ScalarStyle::Quoted, text.chars().count() + 2)
                        }
                        TScalarStyle::Literal => (ScalarStyle::Block, 1),
                        TScalarStyle::Folded => (ScalarStyle::Folded, 1),
                    };
                    self.index.values.insert(
                        path,
                        NodeSpan {
                            pos: to_pos(mark, len),
                            style,
                        },
                    );
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.next_path(None, mark) {
                    self.index.values.insert(
                        path,
                        NodeSpan {
                            pos: to_pos(mark, 1),
                            style: ScalarStyle::Plain,
                        },
                    );
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let path = self
                    .next_path(None, mark)
                    .unwrap_or_else(|| "/?".to_string());
                self.index.values.insert(
                    path.clone(),
                    NodeSpan {
                        pos: to_pos(mark, 1),
                        style: ScalarStyle::Collection,
                    },
                );
                self.stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, index: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// A parsed YAML file: its JSON value and the positions of its nodes.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The document as JSON (`null` for an empty file).
    pub value: serde_json::Value,
    /// Positions by JSON pointer.
    pub spans: SpanIndex,
}

/// A YAML syntax error as a diagnostic.
///
/// serde_yaml writes "PROBLEM at line L column C[, CONTEXT[ at line L column C]]". The problem's
/// position is rendered separately. The context ("while parsing a flow mapping" and where that
/// mapping starts) often names the real culprit, so it goes to the help; when the file ends
/// inside it (an unclosed quote), the diagnostic points at where it starts instead.
fn syntax_error(file: &SourceFile, e: &serde_yaml::Error) -> Diagnostic {
    let mut pos = e.location().map(|l| Pos::new(l.line(), l.column(), 1));
    let msg = e.to_string();
    let (problem, context) = match msg.find(" at line ") {
        Some(i) => (&msg[..i], msg[i..].split_once(", ").map(|(_, c)| c)),
        None => (msg.as_str(), None),
    };
    let context = context.map(|c| {
        let (what, at) = match c.split_once(" at line ") {
            Some((what, at)) => (what, at.split_once(" column ")),
            None => (c, None),
        };
        let what = what
            .strip_prefix("while parsing ")
            .or_else(|| what.strip_prefix("while scanning "))
            .unwrap_or(what);
        let at = at.and_then(|(l, c)| Some(Pos::new(l.parse().ok()?, c.parse().ok()?, 1)));
        (what, at)
    });
    let help = match context {
        Some((what, Some(at))) if problem.contains("end of stream") => {
            pos = Some(at);
            format!("the file ends inside {what} that starts here; close it")
        }
        Some((what, Some(at))) => format!(
            "inside {what} that starts at {}:{}:{}; check the indentation and quoting from there to here",
            file.path, at.line, at.col
        ),
        Some((what, None)) => {
            format!("inside {what}; check the indentation and quoting around this position")
        }
        None => "check the indentation and quoting around this position".to_string(),
    };
    Diagnostic::error(format!("invalid yaml: {problem}"))
        .at(&file.path, pos)
        .with_help(help)
}

/// Parses one YAML file; a syntax error becomes a diagnostic at its position.
pub fn parse(file: &SourceFile) -> Result<Parsed, Diagnostic> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(&file.text).map_err(|e| syntax_error(file, &e))?;
    let value = serde_json::to_value(&value).map_err(|e| {
        Diagnostic::error(format!("yaml value cannot be used as json: {e}"))
            .at(&file.path, None)
            .with_help("mapping keys must be strings")
    })?;
    let mut rec = Recorder {
        stack: Vec::new(),
        index: SpanIndex::default(),
        root_done: false,
    };
    let mut parser = Parser::new_from_str(&file.text);
    // serde_yaml accepted the text, so a failure here only costs positions.
    let _ = parser.load(&mut rec, false);
    Ok(Parsed {
        value,
        spans: rec.index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_value_and_key_positions() {
        let f = SourceFile::new(
            "t.yaml",
            "selection:\n  rules:\n    - id: one\n      then: {optimizer: gepa}\n",
        );
        let p = parse(&f).unwrap();
        assert_eq!(p.value["selection"]["rules"][0]["id"], "one");
        let id = p.spans.value("/selection/rules/0/id").unwrap();
        assert_eq!((id.line, id.col, id.len), (3, 11, 3));
        let key = p.spans.key("/selection/rules/0/then").unwrap();
        assert_eq!((key.line, key.col), (4, 7));
        let opt = p.spans.value("/selection/rules/0/then/optimizer").unwrap();
        assert_eq!((opt.line, opt.col), (4, 25));
        // unknown pointers fall back to the nearest ancestor
        let anc = p.spans.value("/selection/rules/0/then/missing").unwrap();
        assert_eq!((anc.line, anc.col), (4, 13));
    }

    #[test]
    fn syntax_error_has_position() {
        let f = SourceFile::new("bad.yaml", "a: [1, 2\nb: 3\n");
        let d = parse(&f).unwrap_err();
        assert!(d.message.starts_with("invalid yaml"), "{}", d.message);
        assert!(d.pos.is_some());
        assert_eq!(d.file.as_deref(), Some("bad.yaml"));
    }

    #[test]
    fn block_scalar_style_is_recorded() {
        let f = SourceFile::new("s.yaml", "expr: |\n  a < 1\n");
        let p = parse(&f).unwrap();
        let n = p.spans.exact("/expr").unwrap();
        assert_eq!(n.style, ScalarStyle::Block);
    }
}
