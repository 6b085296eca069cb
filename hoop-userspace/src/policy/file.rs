//! The policy file (TOML): parsing, validation with errors that name line, column and rule, and
//! compilation into [`Policy`]. Loading has no side effects: a file that does not validate
//! yields an error and nothing else, so a reload can keep the running policy.

use std::{
    collections::BTreeMap,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use super::{
    compile,
    engine::{Action, Policy},
};

/// The policy that applies when none is configured.
pub const BUILTIN: &str = include_str!("default.toml");

/// Masking profiles every policy has: `default` (the masking engine's built-in detectors) and
/// `none` (no masking). A file may declare `default` to configure it; `none` is reserved.
pub const BUILTIN_MASKS: [&str; 2] = ["default", "none"];

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", Problems(problems))]
    Invalid { problems: Vec<Problem> },
}

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub origin: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// The rule it is in: 1-based position among `[[rule]]` tables, and name when known.
    pub rule: Option<(usize, Option<String>)>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        match &self.rule {
            Some((i, Some(name))) => write!(f, "rule #{i} `{name}`: ")?,
            Some((i, None)) => write!(f, "rule #{i}: ")?,
            None => {}
        }
        f.write_str(&self.message)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A string or a list of them (likewise numbers). Elements of a list keep their own spans.
#[derive(Debug)]
pub(super) struct List<T>(pub Vec<(T, Option<Range<usize>>)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, IntoDeserializer};
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for V<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = seq.next_element::<Spanned<T>>()? {
                    let span = x.span();
                    v.push((x.into_inner(), Some(span)));
                }
                Ok(List(v))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<List<T>, E> {
                Ok(List(vec![(T::deserialize(s.into_deserializer())?, None)]))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<List<T>, E> {
                Ok(List(vec![(T::deserialize(n.into_deserializer())?, None)]))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

pub(super) type Opt<T> = Option<Spanned<List<T>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub(super) defaults: Option<RawDefaults>,
    #[serde(default)]
    pub(super) rule: Vec<RawRule>,
    #[serde(default)]
    pub(super) mask_profiles: BTreeMap<Spanned<String>, toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) action: Option<Action>,
    pub(super) mask: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Access {
    Read,
    Write,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Spanned<String>,
    pub(super) action: Spanned<Action>,
    pub(super) mask: Option<Spanned<String>>,
    #[allow(dead_code)]
    pub(super) description: Option<String>,
    pub(super) protocol: Opt<String>,
    pub(super) target: Opt<String>,
    pub(super) database: Opt<String>,
    pub(super) user: Opt<String>,
    pub(super) exe: Opt<String>,
    pub(super) uid: Opt<u32>,
    pub(super) statements: Opt<String>,
    pub(super) inner: Opt<String>,
    pub(super) has_where: Option<Spanned<bool>>,
    pub(super) objects: Opt<String>,
    pub(super) access: Option<Spanned<Access>>,
    pub(super) object_kinds: Opt<String>,
    pub(super) identity: Option<BTreeMap<Spanned<String>, Spanned<List<String>>>>,
}

/// Collects problems while compiling, with the rule being compiled as context.
pub(super) struct Ctx<'t> {
    pub(super) text: &'t str,
    /// Byte offset where each line starts.
    lines: Vec<usize>,
    pub(super) origin: &'t str,
    pub problems: Vec<Problem>,
    rule: Option<(usize, Option<String>)>,
}

impl<'t> Ctx<'t> {
    pub(super) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = self.line_col(span.start);
        self.problems.push(Problem {
            origin: self.origin.to_owned(),
            line,
            column,
            rule: self.rule.clone(),
            message: message.into(),
        });
    }

    pub(super) fn line(&self, span: &Range<usize>) -> usize {
        self.line_col(span.start).0
    }

    /// 1-based line and column (in characters) of byte `offset`.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.lines.partition_point(|&start| start <= offset);
        let start = self.lines[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line, col + 1)
    }

    pub(super) fn set_rule(&mut self, rule: Option<(usize, Option<String>)>) {
        self.rule = rule;
    }
}

impl Policy {
    /// The embedded default policy.
    pub fn builtin() -> Policy {
        Self::parse(BUILTIN, "builtin").expect("the embedded default policy validates")
    }

    /// Reads and validates the policy at `path`. No side effects.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Validates `text`; `origin` names it in errors (a path, or `builtin`).
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let mut cx = Ctx {
            text,
            lines: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                .collect(),
            origin,
            problems: Vec::new(),
            rule: None,
        };
        let raw: RawPolicy = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                cx.set_rule(rule_at(text, span.start));
                cx.error(span, e.message().trim_end());
                return Err(PolicyError::Invalid {
                    problems: cx.problems,
                });
            }
        };
        let policy = compile::compile(&mut cx, raw);
        if cx.problems.is_empty() {
            Ok(policy)
        } else {
            Err(PolicyError::Invalid {
                problems: cx.problems,
            })
        }
    }
}

/// Which `[[rule]]` table `offset` falls in (1-based), with its name when the text is valid TOML.
fn rule_at(text: &str, offset: usize) -> Option<(usize, Option<String>)> {
    let mut current = None;
    let mut count = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        if pos > offset {
            break;
        }
        let t: String = line.trim().chars().filter(|c| !c.is_whitespace()).collect();
        if t.starts_with("[[rule]]") {
            count += 1;
            current = Some(count);
        } else if t.starts_with('[') && !t.starts_with("[rule.") {
            current = None;
        }
        pos += line.len();
    }
    let index = current?;
    let name = toml::from_str::<toml::Table>(text).ok().and_then(|t| {
        let rules = t.get("rule")?.as_array()?;
        Some(rules.get(index - 1)?.get("name")?.as_str()?.to_owned())
    });
    Some((index, name))
}

#[cfg(test)]
mod tests;
