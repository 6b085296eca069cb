//! Literal-insensitive statement templates: a small hand-written lexer that
//! turns one DML statement into a cache key with every numeric and plain
//! string literal replaced by a marker of its token class, and that refuses
//! (returns `None`) whatever it cannot lex exactly as PostgreSQL does.
//!
//! It lets [`ClassifyCache`](super::ClassifyCache) classify `... WHERE aid =
//! 64227` once per statement *shape* instead of once per text, which is what
//! simple-protocol clients (pgbench `-M simple`, apps without prepared
//! statements) need. A template hit must equal `classify(text)` exactly, and
//! this is why it does — for two texts with the same key:
//!
//! 1. **Same tokens but literal values.** The key is the text verbatim except
//!    that each literal token becomes `$i` (ICONST: decimal digits that fit in
//!    an `int4`), `$f` (FCONST: a decimal point, an exponent, or too large for
//!    `int4`) or `$s` (SCONST). `$` is refused everywhere else, so the key
//!    determines the token sequence; only literal *values* differ. The lexer
//!    accepts only what it lexes as PostgreSQL 18's scanner does and refuses
//!    the rest: comments (`--`, `/*`, which could hide or merge text),
//!    dollar quotes and parameters (`$`), prefixed strings (`E'`, `B'`, `X'`,
//!    `N'`, `U&'`, and any quote glued to a word or `&`), backslashes in
//!    strings (their meaning depends on `standard_conforming_strings`, which a
//!    session may turn off), a string followed by another (line-continued
//!    strings concatenate), numeric junk (`0x1F`, `1_000`, `1e`, `1..2`,
//!    `12abc`), NUL, control and non-ASCII bytes outside quotes (Unicode
//!    spaces are not SQL spaces), and more than one statement.
//! 2. **Same parse tree but constant values.** Bison chooses shifts and
//!    reductions from token types alone, so both texts take the same
//!    derivation unless a grammar action reads a literal's value. In the
//!    grammar reachable from SELECT/INSERT/UPDATE/DELETE/WITH/VALUES (the only
//!    first keywords accepted; checked against the actions of pg_query 18's
//!    `gram.y`), the actions that do so are `float(p)`'s precision (errors, or
//!    picks float4/float8) and `UESCAPE` (refused above); every other literal
//!    becomes an `A_Const` whose value no action inspects (`doNegate` only
//!    negates it, JSON_TABLE checks only that its path is a string constant,
//!    which the class preserves). The cache checks this on the real parse tree
//!    of the first text before storing a template: it parsed into one
//!    statement, and every replaced literal is an `A_Const` at its own offset
//!    (or at the `-` that negated it). `float(10)`, `CURRENT_TIME(3)` and
//!    `int[3]` fail that check, so their templates are refused and their
//!    texts stay on the exact-text path.
//! 3. **Same classification.** For these statements the classifier reads only
//!    node types, relation/CTE/function names, WHERE presence, row locks and
//!    the WITH RECURSIVE flag (`kind.rs`, `walk.rs`), never a constant's value
//!    or position. So casts (`::`, `CAST`) and string-named objects
//!    (`'users'::regclass`, `nextval('seq')`) need no special case: the
//!    classifier does not report the named object for any literal, and the
//!    template tests (`tests/tiers.rs`) fail the day it starts to, as they
//!    compare texts differing only in such literals. Debug builds also compare
//!    every template hit with `classify`. Only the span depends on literal
//!    lengths; templates are
//!    single statements, and the span is recomputed here (leading spaces and
//!    a final `;` excluded) and checked against the parser's before storing.
use super::Span;

/// Token class of a replaced literal; its marker is part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// ICONST: decimal digits whose value fits in `int4`.
    Int,
    /// FCONST: decimal point or exponent, or an integer too large for `int4`.
    Float,
    /// SCONST: a plain `'...'` string.
    Str,
}

impl Class {
    fn marker(self) -> &'static str {
        match self {
            Class::Int => "$i",
            Class::Float => "$f",
            Class::Str => "$s",
        }
    }
}

/// A literal the template replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Literal {
    pub start: usize,
    pub end: usize,
    pub class: Class,
    /// Start of the run of `-` and spaces just before the literal: the parser
    /// reports a negated constant at its (outermost) `-`.
    pub sign_run: usize,
}

/// What [`normalize`] learned besides the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Template {
    /// The statement's span in `sql`, as `classify` reports it.
    pub span: Span,
    pub literals: usize,
}

const FIRST_KEYWORDS: [&str; 6] = ["select", "insert", "update", "delete", "with", "values"];

/// Writes the template key of `sql` into `key` (cleared first), and the
/// replaced literals into `literals` when given. `None`: not a statement this
/// lexer can normalize with certainty; `key` is then unspecified.
pub(super) fn normalize(
    sql: &str,
    key: &mut String,
    mut literals: Option<&mut Vec<Literal>>,
) -> Option<Template> {
    key.clear();
    let b = sql.as_bytes();
    let start = skip_space(b, 0);
    let first_end = word_end(b, start);
    let first = sql.get(start..first_end)?;
    if !FIRST_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(first)) {
        return None;
    }
    let mut lx = Lexer {
        b,
        i: first_end,
        copied: 0,
        count: 0,
        lit_start: 0,
    };
    let end = loop {
        let class = match lx.next()? {
            Step::End(end) => break end,
            Step::Literal(class) => class,
        };
        let lit_start = lx.lit_start;
        key.push_str(&sql[lx.copied..lit_start]);
        key.push_str(class.marker());
        lx.copied = lx.i;
        lx.count += 1;
        if let Some(out) = literals.as_deref_mut() {
            out.push(Literal {
                start: lit_start,
                end: lx.i,
                class,
                sign_run: sign_run(b, lit_start),
            });
        }
    };
    key.push_str(&sql[lx.copied..]);
    let mut trimmed_end = end;
    while trimmed_end > start && is_space(b[trimmed_end - 1]) {
        trimmed_end -= 1;
    }
    Some(Template {
        span: Span {
            start,
            end: trimmed_end,
        },
        literals: lx.count,
    })
}

enum Step {
    Literal(Class),
    /// End of the statement: the text's end, or its final `;`.
    End(usize),
}

struct Lexer<'a> {
    b: &'a [u8],
    i: usize,
    /// Bytes before this are already in the key.
    copied: usize,
    count: usize,
    lit_start: usize,
}

impl Lexer<'_> {
    /// Skips verbatim tokens up to the next literal or the end; `None` refuses.
    fn next(&mut self) -> Option<Step> {
        let b = self.b;
        loop {
            // The hot loop: most bytes are verbatim whatever surrounds them.
            while b.get(self.i).is_some_and(|&c| PLAIN[usize::from(c)]) {
                self.i += 1;
            }
            let Some(&c) = b.get(self.i) else {
                return Some(Step::End(b.len()));
            };
            let next = b.get(self.i + 1).copied();
            match c {
                b'\'' => return self.string().map(Step::Literal),
                b'"' => self.quoted_ident()?,
                // A digit inside an identifier (`t1`) is not a number.
                b'0'..=b'9' if self.prev().is_some_and(is_word_byte) => self.i += 1,
                b'0'..=b'9' => return self.number().map(Step::Literal),
                b'.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                    return self.number().map(Step::Literal);
                }
                b';' if skip_space(b, self.i + 1) == b.len() => return Some(Step::End(self.i)),
                b'-' if next == Some(b'-') => return None,
                b'/' if next == Some(b'*') => return None,
                b'.' | b'-' | b'/' => self.i += 1,
                // `;` mid-text, `$`, `\`, control and non-ASCII bytes.
                _ => return None,
            }
        }
    }

    fn prev(&self) -> Option<u8> {
        self.i.checked_sub(1).map(|p| self.b[p])
    }

    /// A plain `'...'` string (`''` escapes a quote).
    fn string(&mut self) -> Option<Class> {
        // `E'`, `X'`, `B'`, `N'`, `U&'` and friends lex differently.
        if self.prev().is_some_and(|p| is_word_byte(p) || p == b'&') {
            return None;
        }
        self.lit_start = self.i;
        let mut j = self.i + 1;
        loop {
            match *self.b.get(j)? {
                b'\'' if self.b.get(j + 1) == Some(&b'\'') => j += 2,
                b'\'' => break,
                b'\\' | 0 => return None,
                _ => j += 1,
            }
        }
        self.i = j + 1;
        // Adjacent strings: continued across a newline they are one literal.
        if self.b.get(skip_space(self.b, self.i)) == Some(&b'\'') {
            return None;
        }
        Some(Class::Str)
    }

    /// A `"..."` identifier, kept verbatim (`""` escapes a quote).
    fn quoted_ident(&mut self) -> Option<()> {
        if self.prev() == Some(b'&') {
            return None; // U&"...", whose UESCAPE takes a string's value.
        }
        let mut j = self.i + 1;
        loop {
            match *self.b.get(j)? {
                b'"' if self.b.get(j + 1) == Some(&b'"') => j += 2,
                b'"' => break,
                // `$` only ever appears in a key as a marker.
                b'$' | 0 => return None,
                _ => j += 1,
            }
        }
        self.i = j + 1;
        Some(())
    }

    /// `12`, `1.5`, `.5`, `1.`, `1e-3`: PostgreSQL 18's decinteger, numeric
    /// and real; hex/octal/binary, `_` separators and junk are refused.
    fn number(&mut self) -> Option<Class> {
        let b = self.b;
        let start = self.i;
        let mut j = digits(b, start);
        let int_end = j;
        if b.get(j) == Some(&b'.') {
            if b.get(j + 1) == Some(&b'.') {
                return None; // `1..2`: PostgreSQL lexes `1` then `..`.
            }
            j = digits(b, j + 1);
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            let mut k = j + 1;
            if matches!(b.get(k), Some(b'+' | b'-')) {
                k += 1;
            }
            if !b.get(k).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            j = digits(b, k);
        }
        if b.get(j)
            .is_some_and(|&c| is_word_byte(c) || c == b'.' || !c.is_ascii())
        {
            return None;
        }
        self.lit_start = start;
        self.i = j;
        if j == int_end && fits_int4(&b[start..j]) {
            Some(Class::Int)
        } else {
            Some(Class::Float)
        }
    }
}

/// PostgreSQL's scanner returns ICONST only if `pg_strtoint32` accepts it.
fn fits_int4(digits: &[u8]) -> bool {
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let d = &digits[first..];
    d.len() < 10 || (d.len() == 10 && d <= b"2147483647".as_slice())
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// End of the identifier or keyword starting at `i` (ASCII only: `$` and
/// non-ASCII bytes, which PostgreSQL also allows, are refused by the caller).
fn word_end(b: &[u8], mut i: usize) -> usize {
    if b.get(i)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        while b.get(i).is_some_and(|&c| is_word_byte(c)) {
            i += 1;
        }
    }
    i
}

fn sign_run(b: &[u8], mut i: usize) -> usize {
    while i > 0 && (b[i - 1] == b'-' || is_space(b[i - 1])) {
        i -= 1;
    }
    i
}

/// Bytes that are copied to the key as they are, whatever surrounds them:
/// letters, `_`, spaces, and punctuation that starts no literal, quote or
/// comment. (A quote glued to a letter, or a digit glued to a word, is judged
/// where the quote or digit is.)
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 128 {
        t[c] = (c as u8).is_ascii_alphabetic() || c == b'_' as usize || is_space(c as u8);
        c += 1;
    }
    let punct = b"()[]{},=+*<>!#%^&|`?@~:";
    let mut i = 0;
    while i < punct.len() {
        t[punct[i] as usize] = true;
        i += 1;
    }
    t
};

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// PostgreSQL's `space`: `[ \t\n\r\f\v]`.
const fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_space(c)) {
        i += 1;
    }
    i
}

/// Whether every literal is a plain constant in the parse tree, i.e. an
/// `A_Const` at its offset or at a `-` in front of it (`doNegate`).
/// `consts` are the `A_Const` locations of the original text, sorted.
pub(super) fn literals_are_constants(sql: &str, literals: &[Literal], consts: &[i32]) -> bool {
    let b = sql.as_bytes();
    // Unknown locations are -1; offsets beyond i32 cannot be constants.
    let at = |c: i32| usize::try_from(c).unwrap_or(usize::MAX);
    literals.iter().all(|lit| {
        let from = consts.partition_point(|&c| c < 0 || at(c) < lit.sign_run);
        consts[from..]
            .iter()
            .map(|&c| at(c))
            .take_while(|&c| c <= lit.start)
            .any(|c| c == lit.start || b[c] == b'-')
    })
}
