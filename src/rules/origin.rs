//! Where a piece of Rhai code sits in a rule file (a whole `.rhai` file, or a YAML scalar in
//! one of its styles), to map the positions Rhai reports back to `file:line:col`.

use super::yaml::{NodeSpan, ScalarStyle};
use crate::diagnostic::{Pos, SourceFile};
use rhai::Position;

/// Where a piece of Rhai code sits in a rule file, to map script positions to the file.
#[derive(Debug, Clone)]
pub struct Origin {
    /// File path.
    pub file: String,
    /// Where the code starts.
    pub start: Pos,
    /// How the code was written in YAML (a `.rhai` file counts as plain at 1:1).
    pub style: ScalarStyle,
    /// Indentation of a block scalar's content.
    pub block_indent: usize,
}

impl Origin {
    /// A whole `.rhai` file.
    pub fn file(path: &str) -> Self {
        Self {
            file: path.to_string(),
            start: Pos::new(1, 1, 1),
            style: ScalarStyle::Plain,
            block_indent: 0,
        }
    }

    /// A scalar of a YAML file. A block scalar (`|`, `>`) is marked by the parser at its
    /// first content character, not at the indicator, so that position gives both the first
    /// line of the code and the indentation stripped from every line.
    pub fn scalar(file: &SourceFile, span: NodeSpan) -> Self {
        let block_indent = if span.style == ScalarStyle::Block {
            span.pos.col.saturating_sub(1)
        } else {
            0
        };
        Self {
            file: file.path.clone(),
            start: span.pos,
            style: span.style,
            block_indent,
        }
    }

    /// Why a position is only the start of the code, when it is.
    pub fn folded_note(&self) -> Option<String> {
        (self.style == ScalarStyle::Folded).then(|| {
            "a folded `>` block joins its lines, so only its start is shown; write it with `|` to see the exact position".to_string()
        })
    }

    /// Maps a Rhai position (relative to the code) to the file.
    pub fn map(&self, pos: Position) -> Pos {
        let (Some(l), c) = (pos.line(), pos.position().unwrap_or(1)) else {
            return self.start;
        };
        match self.style {
            ScalarStyle::Block => Pos::new(self.start.line + l - 1, self.block_indent + c, 1),
            // Folding joined the lines Rhai saw: the start of the code is the best we know.
            ScalarStyle::Folded => self.start,
            ScalarStyle::Quoted if l == 1 => Pos::new(self.start.line, self.start.col + c, 1),
            _ if l == 1 => Pos::new(self.start.line, self.start.col + c - 1, 1),
            _ => Pos::new(self.start.line + l - 1, c, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_maps_positions() {
        let o = Origin {
            file: "f.yaml".into(),
            start: Pos::new(10, 13, 5),
            style: ScalarStyle::Plain,
            block_indent: 0,
        };
        assert_eq!(o.map(Position::new(1, 4)), Pos::new(10, 16, 1));
        let q = Origin {
            style: ScalarStyle::Quoted,
            ..o.clone()
        };
        assert_eq!(q.map(Position::new(1, 4)), Pos::new(10, 17, 1));
        // A block scalar starts at its first content character (line 11, indented by 8).
        let b = Origin {
            start: Pos::new(11, 9, 1),
            style: ScalarStyle::Block,
            block_indent: 8,
            ..o
        };
        assert_eq!(b.map(Position::new(1, 3)), Pos::new(11, 11, 1));
        assert_eq!(b.map(Position::new(2, 3)), Pos::new(12, 11, 1));
    }
}
