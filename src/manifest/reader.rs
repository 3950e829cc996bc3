//! Reading a spanned TOML tree. Every value keeps its byte span so that an error can point at
//! FILE:LINE:COL, and every table rejects keys it does not know: a misspelt key must never be
//! silently ignored, or a sweep would quietly run its defaults.

use std::fmt::Display;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{Location, ManifestError};

type Result<T> = std::result::Result<T, ManifestError>;

/// The manifest text and the file it came from, to turn byte spans into positions.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub file: &'a Path,
}

impl Source<'_> {
    /// The position of a byte span's start; `None` (no span) names the file alone.
    pub fn locate(&self, span: Option<&Range<usize>>) -> Location {
        let line_col = span.map(|span| line_col(self.text, span.start));
        Location {
            file: self.file.to_path_buf(),
            line_col,
        }
    }

    pub fn error(&self, span: Option<&Range<usize>>, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid {
            at: self.locate(span),
            message: message.into(),
        }
    }

    /// A TOML syntax error, at the parser's position but without its multi-line snippet.
    pub fn syntax(&self, error: &toml::de::Error) -> ManifestError {
        ManifestError::Syntax {
            at: self.locate(error.span().as_ref()),
            message: error.message().trim().to_string(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// A key as it would be written in TOML: bare when possible, quoted otherwise.
fn key_text(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// One TOML value with its dotted name (`sweep.dynatree.depth`) for messages.
#[derive(Clone)]
pub(crate) struct Value<'a> {
    pub src: &'a Source<'a>,
    pub name: String,
    pub value: &'a Spanned<DeValue<'a>>,
}

impl<'a> Value<'a> {
    pub fn span(&self) -> Range<usize> {
        self.value.span()
    }

    /// An error at this value, prefixed with its name.
    pub fn error(&self, message: impl Display) -> ManifestError {
        self.src
            .error(Some(&self.span()), format!("{}: {message}", self.name))
    }

    /// An error at this value whose message names what it is about itself.
    pub fn error_unprefixed(&self, message: impl Into<String>) -> ManifestError {
        self.src.error(Some(&self.span()), message)
    }

    /// How the value reads in the manifest, for "expected X, got Y".
    pub fn describe(&self) -> String {
        match self.value.get_ref() {
            DeValue::Array(_) => "an array".to_string(),
            DeValue::Table(_) => "a table".to_string(),
            _ => {
                let text = self.src.text[self.span()].trim();
                if text.chars().count() > 100 {
                    format!("{}...", text.chars().take(100).collect::<String>())
                } else {
                    text.to_string()
                }
            }
        }
    }

    fn expected(&self, what: &str) -> ManifestError {
        self.error(format!("expected {what}, got {}", self.describe()))
    }

    pub fn str(&self) -> Result<&'a str> {
        self.value
            .get_ref()
            .as_str()
            .ok_or_else(|| self.expected("a string"))
    }

    /// A string that must not be empty (names, labels, ids).
    pub fn non_empty_str(&self) -> Result<&'a str> {
        let text = self.str()?;
        if text.is_empty() {
            return Err(self.error("must not be empty"));
        }
        Ok(text)
    }

    /// A string from a closed set, e.g. dtype or device.
    pub fn one_of(&self, allowed: &[&str]) -> Result<String> {
        let text = self.str()?;
        if allowed.contains(&text) {
            Ok(text.to_string())
        } else {
            Err(self.error(format!(
                "expected one of {}, got {text:?}",
                allowed.join(", ")
            )))
        }
    }

    pub fn u64(&self) -> Result<u64> {
        let parsed = match self.value.get_ref() {
            DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        parsed.ok_or_else(|| self.expected("a non-negative integer"))
    }

    pub fn usize(&self) -> Result<usize> {
        usize::try_from(self.u64()?).map_err(|_| self.expected("a smaller integer"))
    }

    /// A count that must be at least 1 (repeats, prompts, axis values such as depth).
    pub fn count(&self) -> Result<usize> {
        let n = self.usize()?;
        if n == 0 {
            return Err(self.error("must be at least 1, got 0"));
        }
        Ok(n)
    }

    /// A float; integers are accepted too (`tau = 0` means 0.0). -0.0 becomes 0.0 so that
    /// equal values compare equal bit for bit.
    pub fn f64(&self) -> Result<f64> {
        let parsed = match self.value.get_ref() {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|i| i as f64),
            _ => None,
        };
        parsed
            .map(|f| f + 0.0)
            .ok_or_else(|| self.expected("a number"))
    }

    /// A probability in [0, 1] (tau, confidence_threshold).
    pub fn probability(&self) -> Result<f64> {
        let p = self.f64()?;
        if (0.0..=1.0).contains(&p) {
            Ok(p)
        } else {
            Err(self.error(format!("must be within [0, 1], got {}", self.describe())))
        }
    }

    pub fn bool(&self) -> Result<bool> {
        self.value
            .get_ref()
            .as_bool()
            .ok_or_else(|| self.expected("true or false"))
    }

    /// The elements of an array, named `name[i]`.
    pub fn array(&self) -> Result<Vec<Value<'a>>> {
        let DeValue::Array(items) = self.value.get_ref() else {
            return Err(self.expected("an array"));
        };
        let items = items.iter().enumerate().map(|(i, value)| Value {
            src: self.src,
            name: format!("{}[{i}]", self.name),
            value,
        });
        Ok(items.collect())
    }

    /// A non-empty array: an empty axis or list would silently produce no runs.
    pub fn non_empty_array(&self) -> Result<Vec<Value<'a>>> {
        let items = self.array()?;
        if items.is_empty() {
            return Err(self.error("must not be empty; give at least one value"));
        }
        Ok(items)
    }

    /// A table whose keys must all be in `allowed`; `label` names it in messages.
    pub fn table(&self, label: &str, allowed: &[&str]) -> Result<Table<'a>> {
        let table = self.map_labeled(label)?;
        table.check_keys(allowed)?;
        Ok(table)
    }

    /// A table whose keys are names chosen by the user (`[datasets]`, `files`).
    pub fn map(&self) -> Result<Table<'a>> {
        self.map_labeled(&format!("[{}]", self.name))
    }

    fn map_labeled(&self, label: &str) -> Result<Table<'a>> {
        let DeValue::Table(map) = self.value.get_ref() else {
            return Err(self.expected("a table"));
        };
        Ok(Table {
            src: self.src,
            name: self.name.clone(),
            label: label.to_string(),
            span: Some(self.span()),
            map,
        })
    }

    /// A table named after its dotted path, e.g. `[models.target]`.
    pub fn plain_table(&self, allowed: &[&str]) -> Result<Table<'a>> {
        self.table(&format!("[{}]", self.name), allowed)
    }
}

/// A TOML table being read.
pub(crate) struct Table<'a> {
    src: &'a Source<'a>,
    /// Dotted path, the prefix of its values' names; empty for the document.
    name: String,
    /// How unknown-key messages name it: `[sweep.dynatree]`, `[[sweep.exclude]]`.
    label: String,
    span: Option<Range<usize>>,
    map: &'a DeTable<'a>,
}

impl<'a> Table<'a> {
    /// The whole document; it has no position of its own.
    pub fn root(
        src: &'a Source<'a>,
        doc: &'a Spanned<DeTable<'a>>,
        allowed: &[&str],
    ) -> Result<Self> {
        let table = Table {
            src,
            name: String::new(),
            label: "the top level".to_string(),
            span: None,
            map: doc.get_ref(),
        };
        table.check_keys(allowed)?;
        Ok(table)
    }

    pub fn error(&self, message: impl Into<String>) -> ManifestError {
        self.src.error(self.span.as_ref(), message)
    }

    /// How messages name the table, e.g. `[models.target]`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// An error somewhere inside the table, e.g. at a key.
    pub fn error_at(&self, span: &Range<usize>, message: impl Into<String>) -> ManifestError {
        self.src.error(Some(span), message)
    }

    /// Where the table starts (its header or opening brace).
    pub fn location(&self) -> Location {
        self.src.locate(self.span.as_ref())
    }

    /// Rejects the first unknown key in source order.
    fn check_keys(&self, allowed: &[&str]) -> Result<()> {
        let unknown = self
            .map
            .keys()
            .filter(|key| !allowed.contains(&key.get_ref().as_ref()))
            .min_by_key(|key| key.span().start);
        match unknown {
            None => Ok(()),
            Some(key) => Err(self.src.error(
                Some(&key.span()),
                format!(
                    "unknown key {:?} in {}; expected one of {}",
                    key.get_ref().as_ref(),
                    self.label,
                    allowed.join(", ")
                ),
            )),
        }
    }

    fn child_name(&self, key: &str) -> String {
        if self.name.is_empty() {
            key_text(key)
        } else {
            format!("{}.{}", self.name, key_text(key))
        }
    }

    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.map.get(key).map(|value| Value {
            src: self.src,
            name: self.child_name(key),
            value,
        })
    }

    pub fn req(&self, key: &str) -> Result<Value<'a>> {
        self.get(key).ok_or_else(|| {
            if self.name.is_empty() {
                self.error(format!("missing table [{key}]"))
            } else {
                self.error(format!("missing key {key:?} in {}", self.label))
            }
        })
    }

    /// Every entry in source order, with the key's span (for maps such as `datasets`).
    pub fn entries(&self) -> Vec<(&'a str, Range<usize>, Value<'a>)> {
        let mut entries: Vec<_> = self
            .map
            .iter()
            .map(|(key, value)| {
                let name = key.get_ref().as_ref();
                let value = Value {
                    src: self.src,
                    name: self.child_name(name),
                    value,
                };
                (name, key.span(), value)
            })
            .collect();
        entries.sort_by_key(|(_, span, _)| span.start);
        entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(line_col(text, 6 + 6), (2, 6));
        assert_eq!(line_col(text, 10_000), (3, 1));
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(key_text("max_nodes"), "max_nodes");
        assert_eq!(key_text("a/b.parquet"), "\"a/b.parquet\"");
    }
}
