//! Reading a spanned TOML table against a [`Section`] of the key table.
//!
//! Every reader records errors in the [`Report`] and goes on, so that one pass reports every
//! problem of a file. A field that failed to parse yields `None`; the caller then builds nothing
//! but keeps checking the rest.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Bad, Report, suggest};
use crate::keys::{Section, Ty};

pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// The outcome of reading one optional key.
#[derive(Debug)]
pub(crate) enum Field<T> {
    Absent,
    Value(T, Range<usize>),
    Invalid,
}

impl<T> Field<T> {
    /// The value, the default when absent, `None` when invalid.
    pub(crate) fn or(self, default: T) -> Option<T> {
        match self {
            Field::Absent => Some(default),
            Field::Value(v, _) => Some(v),
            Field::Invalid => None,
        }
    }

    /// `Some(None)` when absent, `None` when invalid.
    pub(crate) fn optional(self) -> Option<Option<T>> {
        match self {
            Field::Absent => Some(None),
            Field::Value(v, _) => Some(Some(v)),
            Field::Invalid => None,
        }
    }

    pub(crate) fn span(&self) -> Option<Range<usize>> {
        match self {
            Field::Value(_, s) => Some(s.clone()),
            _ => None,
        }
    }

    pub(crate) fn is_present(&self) -> bool {
        !matches!(self, Field::Absent)
    }
}

/// The keys of one table, checked against its section.
#[derive(Debug)]
pub(crate) struct Fields<'a, 'i> {
    section: &'static Section,
    table: Option<&'a DeTable<'i>>,
    /// Where a missing required key is reported: the table's header, or the file's start.
    at: Range<usize>,
    asked: Vec<&'static str>,
}

impl<'a, 'i> Fields<'a, 'i> {
    /// Opens `table` (absent tables read as empty) and reports every key the section lacks.
    pub(crate) fn open(
        r: &mut Report<'_>,
        section: &'static Section,
        table: Option<&'a DeTable<'i>>,
        at: Range<usize>,
    ) -> Self {
        for (k, _) in table.into_iter().flatten() {
            if section.key(k.get_ref()).is_none() {
                unknown_key(r, section, k);
            }
        }
        Fields { section, table, at, asked: Vec::new() }
    }

    /// The header span of this table (for errors about the table as a whole).
    pub(crate) fn at(&self) -> Range<usize> {
        self.at.clone()
    }

    fn raw(
        &mut self,
        name: &'static str,
    ) -> Option<(&'a Spanned<std::borrow::Cow<'i, str>>, &'a Val<'i>)> {
        debug_assert!(
            self.section.key(name).is_some(),
            "key {name} missing from the key table of [{}]",
            self.section.name
        );
        self.asked.push(name);
        self.table?.get_key_value(name)
    }

    /// Reads an optional key with `parse`.
    pub(crate) fn get<T>(
        &mut self,
        r: &mut Report<'_>,
        name: &'static str,
        parse: impl FnOnce(&mut Report<'_>, &'a Val<'i>) -> Option<T>,
    ) -> Field<T> {
        match self.raw(name) {
            None => Field::Absent,
            Some((_, v)) => match parse(r, v) {
                Some(t) => Field::Value(t, v.span()),
                None => Field::Invalid,
            },
        }
    }

    /// Reads a required key; a missing one is reported at the table's header.
    pub(crate) fn required<T>(
        &mut self,
        r: &mut Report<'_>,
        name: &'static str,
        parse: impl FnOnce(&mut Report<'_>, &'a Val<'i>) -> Option<T>,
    ) -> Option<T> {
        match self.get(r, name, parse) {
            Field::Value(v, _) => Some(v),
            Field::Invalid => None,
            Field::Absent => {
                let table = match self.section.name {
                    "" => "the file".to_string(),
                    s => format!("[{s}]"),
                };
                r.error(self.at.clone(), format!("missing required key \"{name}\" in {table}"));
                None
            }
        }
    }

    /// A sub-table: `Some((None, span))` when absent, `None` when the key is not a table.
    pub(crate) fn table(
        &mut self,
        r: &mut Report<'_>,
        name: &'static str,
    ) -> Option<(Option<&'a DeTable<'i>>, Range<usize>)> {
        match self.raw(name) {
            None => Some((None, self.at.clone())),
            Some((k, v)) => match v.get_ref() {
                DeValue::Table(t) => Some((Some(t), k.span())),
                other => {
                    type_error(r, v.span(), "a table", other);
                    None
                }
            },
        }
    }

    /// Opens the sub-table `name` as its own `Fields` (the key must be `Ty::Table`).
    pub(crate) fn sub(&mut self, r: &mut Report<'_>, name: &'static str) -> Option<Fields<'a, 'i>> {
        let Some(Ty::Table(section)) = self.section.key(name).map(|k| k.ty) else {
            unreachable!("{name} is not a table key")
        };
        let (table, at) = self.table(r, name)?;
        Some(Fields::open(r, section, table, at))
    }

    /// Marks keys as deliberately not read (their meaning depends on a value that was invalid).
    pub(crate) fn skip(&mut self, names: &[&'static str]) {
        self.asked.extend_from_slice(names);
    }

    /// The span of a key's value, whether or not the value is valid.
    pub(crate) fn value_span(&self, name: &str) -> Option<Range<usize>> {
        self.table?.get(name).map(|v| v.span())
    }

    /// Whether the key is present at all (for "only with" checks).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.table.is_some_and(|t| t.contains_key(name))
    }

    /// Every key of the section must have been read: a key in the table that the parser ignores
    /// would be accepted and silently dropped.
    pub(crate) fn finish(&self) {
        for k in self.section.keys {
            debug_assert!(
                self.asked.contains(&k.name),
                "parser never reads key {} of [{}]",
                k.name,
                self.section.name
            );
        }
    }
}

fn unknown_key(r: &mut Report<'_>, section: &Section, k: &Spanned<std::borrow::Cow<'_, str>>) {
    let msg = match section.name {
        "" => format!("unknown table or key \"{}\"", k.get_ref()),
        s => format!("unknown key \"{}\" in [{s}]", k.get_ref()),
    };
    let hint = suggest(k.get_ref(), section.names());
    let d = r.error(k.span(), msg);
    match hint {
        Some(h) => d.hints.push(h),
        None => {
            let all: Vec<_> = section.names().collect();
            d.hints.push(format!("allowed: {}", all.join(", ")));
        }
    }
}

pub(crate) fn type_error(
    r: &mut Report<'_>,
    span: Range<usize>,
    expected: &str,
    found: &DeValue<'_>,
) {
    r.error(span, format!("expected {expected}, found {}", article(found.type_str())));
}

fn article(t: &str) -> String {
    match t.chars().next() {
        Some('a' | 'i') => format!("an {t}"),
        _ => format!("a {t}"),
    }
}

pub(crate) fn boolean(r: &mut Report<'_>, v: &Val<'_>) -> Option<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Some(*b),
        other => {
            type_error(r, v.span(), "true or false", other);
            None
        }
    }
}

/// A string without control characters (they hide in terminals and break env and argv).
pub(crate) fn string(r: &mut Report<'_>, v: &Val<'_>) -> Option<String> {
    match v.get_ref() {
        DeValue::String(s) => {
            if s.chars().any(char::is_control) {
                r.error(v.span(), "control characters are not allowed here");
                return None;
            }
            Some(s.to_string())
        }
        other => {
            type_error(r, v.span(), "a string", other);
            None
        }
    }
}

/// A TOML integer as i128, so that any written integer can be range-checked.
fn int_value(v: &DeValue<'_>) -> Option<i128> {
    match v {
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

pub(crate) fn integer(r: &mut Report<'_>, v: &Val<'_>, min: i64, max: i64) -> Option<i64> {
    match (v.get_ref(), int_value(v.get_ref())) {
        (_, Some(n)) if n >= i128::from(min) && n <= i128::from(max) => Some(n as i64),
        (DeValue::Integer(_), _) => {
            r.error(v.span(), format!("must be between {min} and {max}"));
            None
        }
        (other, _) => {
            type_error(r, v.span(), "an integer", other);
            None
        }
    }
}

/// A number (integer or float) as f64; NaN and infinities are refused.
pub(crate) fn number(r: &mut Report<'_>, v: &Val<'_>) -> Option<f64> {
    let n = match v.get_ref() {
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        DeValue::Integer(_) => int_value(v.get_ref()).map(|i| i as f64),
        other => {
            type_error(r, v.span(), "a number", other);
            return None;
        }
    };
    match n {
        Some(n) if n.is_finite() => Some(n),
        _ => {
            r.error(v.span(), "must be a finite number");
            None
        }
    }
}

/// A string checked by a pure parser (durations, sizes, paths, …).
pub(crate) fn checked<T>(
    r: &mut Report<'_>,
    v: &Val<'_>,
    parse: impl FnOnce(&str) -> Result<T, Bad>,
) -> Option<T> {
    let s = string(r, v)?;
    match parse(&s) {
        Ok(t) => Some(t),
        Err(bad) => {
            r.bad(v.span(), bad);
            None
        }
    }
}

/// One of the allowed words, with "did you mean" and the list of allowed values.
pub(crate) fn one_of(
    r: &mut Report<'_>,
    v: &Val<'_>,
    allowed: &'static [&'static str],
) -> Option<&'static str> {
    checked(r, v, |s| enum_word(s, allowed))
}

pub(crate) fn enum_word(s: &str, allowed: &'static [&'static str]) -> Result<&'static str, Bad> {
    if let Some(w) = allowed.iter().find(|a| **a == s) {
        return Ok(w);
    }
    let mut bad = Bad::new(format!("unknown value \"{s}\""));
    if let Some(h) = suggest(s, allowed.iter().copied()) {
        bad = bad.hint(h);
    }
    Err(bad.hint(format!("allowed values: {}", quoted(allowed))))
}

pub(crate) fn quoted(words: &[&str]) -> String {
    words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(", ")
}

/// An array whose items are each read with `item`; all items are checked.
pub(crate) fn array<'a, 'i, T>(
    r: &mut Report<'_>,
    v: &'a Val<'i>,
    mut item: impl FnMut(&mut Report<'_>, &'a Val<'i>) -> Option<T>,
) -> Option<Vec<(T, Range<usize>)>> {
    let DeValue::Array(items) = v.get_ref() else {
        type_error(r, v.span(), "an array", v.get_ref());
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for it in items.iter() {
        match item(r, it) {
            Some(t) => out.push((t, it.span())),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// An array of items without their spans.
pub(crate) fn list<'a, 'i, T>(
    r: &mut Report<'_>,
    v: &'a Val<'i>,
    item: impl FnMut(&mut Report<'_>, &'a Val<'i>) -> Option<T>,
) -> Option<Vec<T>> {
    array(r, v, item).map(|items| items.into_iter().map(|(t, _)| t).collect())
}

/// Reports the second and later occurrences of equal items.
pub(crate) fn no_duplicates<T: PartialEq + std::fmt::Display>(
    r: &mut Report<'_>,
    items: &[(T, Range<usize>)],
) -> bool {
    let mut ok = true;
    for (i, (t, span)) in items.iter().enumerate() {
        if items[..i].iter().any(|(u, _)| u == t) {
            r.error(span.clone(), format!("\"{t}\" is listed twice"));
            ok = false;
        }
    }
    ok
}
