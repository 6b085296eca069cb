//! Glob patterns in policy rules: validated once at load (`fast_glob::validate`) and sorted by
//! shape. Literals are string compares; `prefix*`, `*suffix`, `dir/**` and `*`/`?` patterns
//! (`/usr/lib/postgresql/*/bin/*`) are byte scans over the pattern, checked exhaustively against
//! fast-glob in the tests; the rest (classes, alternatives, escapes, inner `**`) goes to
//! `fast_glob::glob_match`. No allocation, and a match touches only the pattern's own bytes.
//!
//! Syntax: `*` matches any run of characters except `/`; `**` any run including `/` (as a whole
//! path component: `refs/heads/**`, `**/x`, `a/**/b`, or alone); `?` one byte other than `/`;
//! `[a-z]`, `[!a-z]` one byte of a class (never `/`); `{a,b}` alternatives (nestable); `\`
//! escapes the next character. Matching is case-sensitive and covers the whole value. A leading
//! `!` (fast-glob's negation) is refused: order rules instead, the first match decides.
//!
//! Measured before settling on this (500-rule adversarial bench, `benches/policy.rs`): globset's
//! regexes compiled to dense DFAs took 5 ms a decision (KBs of tables per glob, a cache line
//! per input byte, cold at that size; globset's own matcher also draws scratch space from a
//! shared pool); fast-glob alone 0.8 ms (it interprets the pattern on every call: 70–370 ns);
//! the byte scans plus the per-decision memo ([`super::when`]) 0.09 ms.

use super::engine::Tri;

/// Characters that make a pattern more than a literal.
const META: &[char] = &['*', '?', '[', ']', '{', '}', '\\', '!'];

/// The patterns of one condition (`target = ["pg-*", "db-1"]`): a value matches if any matches.
#[derive(Debug)]
pub(super) struct Patterns {
    /// As written, for `explain` and for the shadowing check.
    sources: Box<[Box<str>]>,
    /// Patterns without metacharacters, compared as strings.
    literals: Box<[Box<str>]>,
    /// `lit*`, `*lit` and everything else.
    globs: Box<[Glob]>,
    /// One of the patterns is `**`.
    all: bool,
    /// Memo slot, when the same list is used on the same field by several rules.
    pub(super) slot: Option<u16>,
}

impl Patterns {
    /// Checks and stores `sources`; on error, the index of the bad pattern and why.
    pub(super) fn compile<S: AsRef<str>>(sources: &[S]) -> Result<Self, (usize, String)> {
        let mut literals = Vec::new();
        let mut globs = Vec::new();
        let mut all = false;
        for (i, src) in sources.iter().enumerate() {
            let src = src.as_ref();
            if src.is_empty() {
                return Err((i, "empty pattern".into()));
            }
            if src.starts_with('!') {
                return Err((
                    i,
                    format!(
                        "`{src}`: negation is not supported (the first matching rule decides: \
                         put the exception in an earlier rule); `\\!` is a literal `!`"
                    ),
                ));
            }
            if let Err(e) = fast_glob::validate(src) {
                return Err((i, format!("bad glob `{src}`: {e}")));
            }
            if src == "**" {
                all = true;
            } else if !src.contains(META) {
                literals.push(Box::from(src));
            } else {
                globs.push(Glob::new(src));
            }
        }
        Ok(Self {
            sources: sources.iter().map(|s| Box::from(s.as_ref())).collect(),
            literals: literals.into(),
            globs: globs.into(),
            all,
            slot: None,
        })
    }

    /// Whether `value` matches one of the patterns.
    pub(super) fn matches(&self, value: &str) -> Tri {
        let hit = self.all
            || self.literals.iter().any(|l| **l == *value)
            || self.globs.iter().any(|g| g.matches(value));
        if hit { Tri::Yes } else { Tri::No }
    }

    /// Whether every value matches (the pattern list contains `**`).
    pub(super) fn matches_everything(&self) -> bool {
        self.all
    }

    pub(super) fn sources(&self) -> &[Box<str>] {
        &self.sources
    }

    /// Whether every value `other` matches, `self` matches too, as far as can be told from the
    /// text: `self` has `**`, or every pattern of `other` is also one of `self`'s.
    pub(super) fn covers(&self, other: &Patterns) -> bool {
        self.all || other.sources.iter().all(|o| self.sources.contains(o))
    }
}

/// One glob. The shapes policies use (`*`, `?`, `dir/**`) are matched by byte scans over the
/// pattern; anything else (classes, alternatives, escapes, `**` inside) by fast-glob.
#[derive(Debug)]
enum Glob {
    /// `lit*`: starts with `lit`, no `/` after it.
    Prefix(Box<str>),
    /// `*lit`: ends with `lit`, no `/` before it.
    Suffix(Box<str>),
    /// `lit/**`, stored as `lit/`: starts with it.
    Under(Box<str>),
    /// Literal chunks and `?` between single `*`s, e.g. `/usr/lib/postgresql/*/bin/*`.
    Stars(Box<str>),
    Other(Box<str>),
}

/// Metacharacters the byte-scan shapes cannot take.
const COMPLEX: &[char] = &['[', ']', '{', '}', '\\', '!'];

impl Glob {
    fn new(src: &str) -> Self {
        let plain = |s: &str| !s.contains(META);
        if let Some(lit) = src.strip_suffix("/**").filter(|l| plain(l)) {
            return Self::Under(format!("{lit}/").into());
        }
        match (src.strip_suffix('*'), src.strip_prefix('*')) {
            (Some(lit), _) if plain(lit) => Self::Prefix(lit.into()),
            (_, Some(lit)) if plain(lit) => Self::Suffix(lit.into()),
            _ if !src.contains(COMPLEX) && !src.contains("**") => Self::Stars(src.into()),
            _ => Self::Other(src.into()),
        }
    }

    fn matches(&self, v: &str) -> bool {
        match self {
            Self::Prefix(p) => v.strip_prefix(&**p).is_some_and(|rest| !rest.contains('/')),
            Self::Suffix(s) => v.strip_suffix(&**s).is_some_and(|rest| !rest.contains('/')),
            Self::Under(p) => v.starts_with(&**p),
            Self::Stars(p) => stars_match(p.as_bytes(), v.as_bytes()),
            Self::Other(g) => fast_glob::glob_match(&**g, v),
        }
    }
}

/// `chunk` (literal bytes and `?`, which is any byte but `/`) matches `v` exactly.
fn chunk_eq(chunk: &[u8], v: &[u8]) -> bool {
    chunk.len() == v.len()
        && chunk
            .iter()
            .zip(v)
            .all(|(&c, &b)| c == b || (c == b'?' && b != b'/'))
}

/// Matches `p` = chunk `*` chunk … `*` chunk (at least one `*`, no `**`) against `v`. The first
/// and last chunks are anchored; each middle chunk takes its leftmost place whose gap has no
/// `/`. Leftmost is never wrong: a chunk without `/` placed earlier only moves slash-free bytes
/// into the next gap; a chunk with `/` cannot fit later, since the `/` of its leftmost place
/// would then fall inside the gap before it.
fn stars_match(p: &[u8], v: &[u8]) -> bool {
    let (Some(first_star), Some(last_star)) = (
        p.iter().position(|&b| b == b'*'),
        p.iter().rposition(|&b| b == b'*'),
    ) else {
        return chunk_eq(p, v);
    };
    let (first, last) = (&p[..first_star], &p[last_star + 1..]);
    if v.len() < first.len() + last.len()
        || !chunk_eq(first, &v[..first.len()])
        || !chunk_eq(last, &v[v.len() - last.len()..])
    {
        return false;
    }
    let end = v.len() - last.len();
    let mut pos = first.len();
    if first_star < last_star {
        for mid in p[first_star + 1..last_star].split(|&b| b == b'*') {
            loop {
                if pos + mid.len() > end {
                    return false;
                }
                if chunk_eq(mid, &v[pos..pos + mid.len()]) {
                    break;
                }
                if v[pos] == b'/' {
                    return false;
                }
                pos += 1;
            }
            pos += mid.len();
        }
    }
    !v[pos..end].contains(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pats: &[&str], value: &str) -> bool {
        Patterns::compile(pats).unwrap().matches(value) == Tri::Yes
    }

    #[test]
    fn star_stays_within_a_path_component() {
        assert!(m(&["acme/*"], "acme/api"));
        assert!(!m(&["acme/*"], "acme/api/x"));
        assert!(!m(&["acme/*"], "acme"));
        assert!(m(&["refs/heads/*"], "refs/heads/main"));
        assert!(!m(&["refs/heads/*"], "refs/heads/feature/x"));
        assert!(m(&["refs/heads/**"], "refs/heads/feature/x"));
        assert!(m(&["*.users"], "public.users"));
        assert!(m(&["db-*"], "db-"));
    }

    #[test]
    fn double_star_alone_matches_everything() {
        let p = Patterns::compile(&["**"]).unwrap();
        assert!(p.matches_everything());
        for v in ["", "/", "a/b/c", "é"] {
            assert_eq!(p.matches(v), Tri::Yes, "{v:?}");
        }
    }

    #[test]
    fn anchored_at_both_ends_and_case_sensitive() {
        assert!(!m(&["main"], "refs/heads/main"));
        assert!(!m(&["pg-*"], "xpg-1"));
        assert!(!m(&["pg"], "pg1"));
        assert!(!m(&["Main"], "main"));
        assert!(!m(&["pg-?"], "pg-10"));
        assert!(m(&["pg-?"], "pg-1"));
    }

    #[test]
    fn classes_alternatives_and_escapes() {
        assert!(m(&["pg-[0-9]"], "pg-7"));
        assert!(!m(&["pg-[!0-9]"], "pg-7"));
        assert!(m(
            &["refs/heads/{main,release/*}"],
            "refs/heads/release/1.2"
        ));
        assert!(!m(&["refs/heads/{main,release/*}"], "refs/heads/dev"));
        assert!(m(&[r"a\*b"], "a*b"));
        assert!(!m(&[r"a\*b"], "axb"));
        assert!(m(&["/usr/bin/ps*"], "/usr/bin/psql"));
        assert!(!m(&["/usr/bin/*"], "/usr/bin/sub/psql"));
    }

    #[test]
    fn globstar_components_and_nesting() {
        assert!(m(&["**/x"], "x"));
        assert!(m(&["**/x"], "a/b/x"));
        assert!(!m(&["**/x"], "a/bx"));
        assert!(m(&["a/**/b"], "a/b"));
        assert!(m(&["a/**/b"], "a/x/y/b"));
        assert!(m(&["refs/**"], "refs/heads/main"));
        assert!(m(&["*"], ""));
        assert!(!m(&["*"], "a/b"));
        assert!(m(&["{main,release/{1,2}.*}"], "release/2.0"));
        assert!(!m(&["{main,release/{1,2}.*}"], "release/3.0"));
        // Classes never match `/`.
        assert!(!m(&["a[/x]b"], "a/b"));
        assert!(m(&["a[/x]b"], "axb"));
    }

    #[test]
    fn negation_is_refused_but_escapable() {
        let (_, msg) = Patterns::compile(&["!refs/heads/main"]).unwrap_err();
        assert!(msg.contains("negation is not supported"), "{msg}");
        assert!(m(&[r"\!x"], "!x"));
        assert!(!m(&[r"\!x"], "x"));
        assert!(m(&["a!"], "a!"));
    }

    #[test]
    fn fast_shapes_agree_with_the_general_matcher() {
        let pats = ["pg-*", "*_rw", "*", "a/*", "*/b", "é*", "*é"];
        let vals = [
            "", "pg-", "pg-1", "pg-1/x", "app_rw", "_rw", "x/app_rw", "a/", "a/b", "a/b/c", "/b",
            "x/b", "é", "éa", "aé", "/",
        ];
        for p in pats {
            let g = Glob::new(p);
            assert!(!matches!(g, Glob::Other(_)), "{p}");
            for v in vals {
                assert_eq!(g.matches(v), fast_glob::glob_match(p, v), "{p:?} vs {v:?}");
            }
        }
        assert!(matches!(Glob::new("a*b"), Glob::Stars(_)));
        assert!(matches!(Glob::new("a?*"), Glob::Stars(_)));
        assert!(matches!(Glob::new("refs/**"), Glob::Under(_)));
        assert!(matches!(Glob::new("a**"), Glob::Other(_)));
        assert!(matches!(Glob::new("**a"), Glob::Other(_)));
        assert!(matches!(Glob::new("a*[b]"), Glob::Other(_)));
    }

    /// Every pattern over `a b / * ?` up to 5 characters (as `Glob::new` shapes them) against
    /// every value over `a b /` up to 6: the byte scans agree with fast-glob everywhere.
    #[test]
    fn byte_scans_agree_with_fast_glob_exhaustively() {
        fn all(alphabet: &[u8], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut layer = vec![String::new()];
            for _ in 0..max {
                layer = layer
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |&c| format!("{s}{}", c as char)))
                    .collect();
                out.extend(layer.iter().cloned());
            }
            out
        }
        let values = all(b"ab/", 6);
        let mut checked = 0;
        for p in all(b"ab/*?", 5) {
            if p.is_empty() {
                continue;
            }
            let g = Glob::new(&p);
            if matches!(g, Glob::Other(_)) {
                continue;
            }
            for v in &values {
                assert_eq!(
                    g.matches(v),
                    fast_glob::glob_match(&p, v),
                    "{p:?} vs {v:?} ({g:?})"
                );
                checked += 1;
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }

    #[test]
    fn utf8_values() {
        assert!(m(&["caf*"], "café"));
        assert!(m(&["*é"], "café"));
        assert!(m(&["café"], "café"));
        // `?` is one byte: a two-byte character needs `??` or `*`.
        assert!(!m(&["caf?"], "café"));
        assert!(m(&["caf??"], "café"));
    }

    #[test]
    fn lists_match_any_and_literals_are_compared() {
        let p = Patterns::compile(&["exact", "pre*"]).unwrap();
        assert_eq!((p.literals.len(), p.globs.len()), (1, 1));
        assert_eq!(p.matches("exact"), Tri::Yes);
        assert_eq!(p.matches("prefix"), Tri::Yes);
        assert_eq!(p.matches("other"), Tri::No);
        assert!(Patterns::compile(&["a", "b"]).unwrap().globs.is_empty());
    }

    #[test]
    fn bad_globs_are_errors_naming_the_pattern() {
        let (i, msg) = Patterns::compile(&["ok", "pg-[0-9"]).unwrap_err();
        assert_eq!(i, 1);
        assert!(msg.contains("pg-[0-9"), "{msg}");
        assert!(Patterns::compile(&["{a,b"]).is_err());
        assert_eq!(Patterns::compile(&[""]).unwrap_err().1, "empty pattern");
    }

    #[test]
    fn covers_is_textual_or_everything() {
        let a = Patterns::compile(&["x*", "y"]).unwrap();
        let b = Patterns::compile(&["y"]).unwrap();
        assert!(a.covers(&b));
        assert!(!b.covers(&a));
        assert!(Patterns::compile(&["**"]).unwrap().covers(&a));
    }
}
