//! Diagnostics: every problem a user can cause, with the file, line and column to change.
//!
//! A diagnostic prints as `PATH:LINE:COL: error: MESSAGE`, followed by `  hint: …` lines when
//! there is an obvious fix. Whole-file problems (missing, unreadable, too large) have no line.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A 1-based position in a file; the column counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One error in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub location: Option<Location>,
    pub message: String,
    pub hints: Vec<String>,
}

impl Diagnostic {
    /// A problem with the file as a whole (it cannot be read, is too large, …).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.to_path_buf(),
            location: None,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        write!(f, ": error: {}", self.message)?;
        for hint in &self.hints {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// All errors found while loading one or more files, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects the diagnostics of one source text, turning byte spans into lines and columns.
#[derive(Debug)]
pub(crate) struct Report<'s> {
    path: &'s Path,
    text: &'s str,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'s> Report<'s> {
    pub(crate) fn new(path: &'s Path, text: &'s str) -> Self {
        Report { path, text, diags: Vec::new() }
    }

    pub(crate) fn path(&self) -> &'s Path {
        self.path
    }

    pub(crate) fn text(&self) -> &'s str {
        self.text
    }

    /// Records an error at `span` and returns it so that hints can be added.
    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let location = Some(locate(self.text, span.start));
        self.diags.push(Diagnostic {
            path: self.path.to_path_buf(),
            location,
            message: message.into(),
            hints: Vec::new(),
        });
        let last = self.diags.len() - 1;
        &mut self.diags[last]
    }

    /// Records an error with optional hints (the common case of a failed value check).
    pub(crate) fn bad(&mut self, span: Range<usize>, bad: Bad) {
        let d = self.error(span, bad.message);
        d.hints = bad.hints;
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.diags.is_empty()
    }

    /// The diagnostics sorted by position, as a user reads the file.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.diags.sort_by_key(|d| d.location);
        self.diags
    }
}

/// A rejected value: the message and the hints that tell the user what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    pub(crate) message: String,
    pub(crate) hints: Vec<String>,
}

impl Bad {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Bad { message: message.into(), hints: Vec::new() }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

/// The 1-based line and character column of byte offset `at` in `text`.
pub(crate) fn locate(text: &str, at: usize) -> Location {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Location { line, column }
}

/// `did you mean "x"?` for the closest candidate, when one is close enough to be a typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(word, c);
        if score > best.map_or(0.0, |b| b.0) {
            best = Some((score, c));
        }
    }
    match best {
        Some((score, c)) if score >= 0.8 => Some(format!("did you mean \"{c}\"?")),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failing unwrap is a failing test.
mod tests {
    use super::*;

    #[test]
    fn locate_counts_lines_and_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(locate(text, 0), Location { line: 1, column: 1 });
        assert_eq!(locate(text, 6), Location { line: 2, column: 1 });
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(locate(text, 12), Location { line: 2, column: 6 });
        assert_eq!(locate(text, 999).line, 3);
    }

    #[test]
    fn suggest_finds_typos_only() {
        assert_eq!(
            suggest("memroy", ["memory", "cpu"]),
            Some("did you mean \"memory\"?".to_string())
        );
        assert_eq!(suggest("zzz", ["memory", "cpu"]), None);
    }

    #[test]
    fn display_has_path_line_column_and_hints() {
        let d = Diagnostic {
            path: PathBuf::from("/p/a.toml"),
            location: Some(Location { line: 3, column: 5 }),
            message: "unknown key \"memroy\"".into(),
            hints: vec!["did you mean \"memory\"?".into()],
        };
        assert_eq!(
            d.to_string(),
            "/p/a.toml:3:5: error: unknown key \"memroy\"\n  hint: did you mean \"memory\"?"
        );
    }
}
