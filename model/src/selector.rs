//! Calico label selectors, parsed and evaluated as Calico's own selector parser
//! (`libcalico-go/lib/selector`) does.
//!
//! # Grammar
//!
//! ```text
//! selector   := <blank> | or
//! or         := and ( "||" and )*
//! and        := operation ( "&&" operation )*
//! operation  := "!"* ( "all(" ")" | "global(" ")" | "has(" label ")" | "(" or ")"
//!                    | label ( "==" | "!=" | "contains" | "starts with" | "ends with" ) string
//!                    | label ( "in" | "not in" ) "{" [ string ( "," string )* [ "," ] ] "}" )
//! label      := [A-Za-z0-9_./-]{1,512}
//! string     := "'" <anything but '> "'" | '"' <anything but "> '"'
//! ```
//!
//! * `!` binds tightest, then `&&`, then `||`; a run of `!`s collapses (`!!e` is `e`).
//! * Whitespace is spaces and tabs only, allowed between any two tokens and inside `has( k )`,
//!   `all( )`, `global( )`, `starts  with` and `not  in`, but not between `has`/`all`/`global`
//!   and their `(`. Line breaks are rejected, as Calico does.
//! * The operator words are only words right after a label: `contains contains 'x'` compares
//!   the label `contains`. They must end at a word boundary (`a inside {}` is an error), the
//!   two-word ones may be written without the space (`startswith`, `endswith`, `notin`).
//! * Strings have no escapes: a value containing `"` is written in single quotes and vice versa.
//! * An empty or blank selector is `all()`.
//!
//! # Evaluation
//!
//! `!=` and `not in` also match when the label is absent; `==`, `in`, `contains`,
//! `starts with` and `ends with` need the label. `global()` is Calico's marker for
//! "non-namespaced resources" (host endpoints, global network sets): Calico's parser evaluates
//! it as `true`, and only a rule's `namespaceSelector: global()` gives it meaning (Calico
//! rewrites it to `!has(projectcalico.org/namespace)`). [`Selector::matches`] evaluates as
//! Calico's parser does (`global()` true, i.e. a non-namespaced context);
//! [`Selector::matches_in`] with [`Scope::Namespaced`] makes `global()` false.
//!
//! # Limits
//!
//! * A label name is at most [`MAX_LABEL_LEN`] (512) bytes, in `has()` too (Calico's tokenizer).
//! * Calico's API limits every selector field to [`MAX_SELECTOR_LEN`] (1024) characters; the
//!   parser itself has no length limit, so [`Selector::parse`] has none either and
//!   [`Selector::parse_field`] applies the API's.
//! * Brindle's own guard (Calico's parser has none): parentheses, and `&&`/`||` expressions, nest
//!   at most [`MAX_NESTING`] (512) deep. No selector within the API's 1024 characters exceeds
//!   that (`((…(has(a))…))` fits at most 509 levels), so it rejects nothing Calico accepts.
//!
//! # Canonical form
//!
//! [`fmt::Display`] prints what Calico's `Selector.String()` prints: every `&&`/`||` group in
//! parentheses (also at the top), single spaces around operators, values in double quotes
//! unless they contain one, set members sorted and de-duplicated, `""` as `all()`:
//! `a == 'x' && has(b) || c in {'z','y'}` prints as `((a == "x" && has(b)) || c in {"y", "z"})`.
//! One deliberate difference: `!(!e)` is folded to `e` (Calico keeps both `!`s and prints `!!e`,
//! which it would re-parse as `e`), so that the canonical form always parses back to itself.
//! [`Selector::unique_id`] is Calico's `UniqueID()` of that form.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::hash::{BuildHasher, Hash, Hasher};

/// Longest label name Calico's tokenizer accepts, in bytes (label names are ASCII).
pub const MAX_LABEL_LEN: usize = 512;

/// Longest selector Calico's API accepts in a resource field, in characters.
pub const MAX_SELECTOR_LEN: usize = 1024;

/// Deepest nesting of parentheses, and of `&&`/`||` expressions, that Brindle parses.
pub const MAX_NESTING: usize = 512;

/// A parsed selector together with its source text.
///
/// Equality and hashing follow the canonical form (as Calico's `Equal` compares `UniqueID`s):
/// `a=='x'` equals `a == "x"`.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    expr: Expr,
}

/// Where a selector is evaluated; decides only what `global()` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Calico's plain evaluation, and the one for non-namespaced resources (host endpoints,
    /// global network sets): `global()` is true. This is what [`Selector::matches`] uses.
    #[default]
    NonNamespaced,
    /// For namespaced resources (pods / workload endpoints, or their namespaces when
    /// evaluating a rule's `namespaceSelector`): `global()` is false.
    Namespaced,
}

/// A set of labels a selector can be evaluated against without copying it.
pub trait Labels {
    /// The value of label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// Why a selector did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0-based character (not byte) offset into the selector text.
    pub offset: usize,
    /// What is wrong, without the offset.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at offset {})", self.message, self.offset)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Expr {
    All,
    Global,
    Has(Box<str>),
    Eq(Box<str>, Box<str>),
    Ne(Box<str>, Box<str>),
    Contains(Box<str>, Box<str>),
    StartsWith(Box<str>, Box<str>),
    EndsWith(Box<str>, Box<str>),
    /// Members sorted and de-duplicated.
    In(Box<str>, Box<[Box<str>]>),
    NotIn(Box<str>, Box<[Box<str>]>),
    Not(Box<Expr>),
    /// At least two operands.
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Selector {
    /// Parses a selector as Calico's parser does; an empty (or blank) selector is `all()`.
    /// Errors say what is wrong and at which character offset.
    pub fn parse(text: &str) -> Result<Selector, String> {
        Selector::parse_detailed(text).map_err(|e| e.to_string())
    }

    /// [`Selector::parse`] with the error as a [`ParseError`].
    pub fn parse_detailed(text: &str) -> Result<Selector, ParseError> {
        let expr = parse_expr(text).map_err(|(pos, message)| ParseError {
            offset: char_offset(text, pos),
            message,
        })?;
        Ok(Selector {
            text: text.to_string(),
            expr,
        })
    }

    /// Parses a selector from a resource field, which Calico's API also limits to
    /// [`MAX_SELECTOR_LEN`] characters.
    pub fn parse_field(text: &str) -> Result<Selector, String> {
        let len = text.chars().count();
        if len > MAX_SELECTOR_LEN {
            return Err(ParseError {
                offset: MAX_SELECTOR_LEN,
                message: format!(
                    "selector is {len} characters long; Calico allows at most {MAX_SELECTOR_LEN}"
                ),
            }
            .to_string());
        }
        Selector::parse(text)
    }

    /// The selector that matches everything.
    pub fn all() -> Selector {
        Selector {
            text: "all()".to_string(),
            expr: Expr::All,
        }
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Calico's canonical form (the same as `to_string()`).
    pub fn canonical(&self) -> String {
        self.to_string()
    }

    /// Calico's `UniqueID()`: `"s:"` and the unpadded URL-safe base64 of the SHA-224 of
    /// `"s:"` + the canonical form, 40 characters. Equal selectors have equal IDs.
    pub fn unique_id(&self) -> String {
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha224::digest(format!("s:{self}").as_bytes());
        let mut out = String::with_capacity(40);
        out.push_str("s:");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(digest, &mut out);
        out
    }

    /// True for `all()` and the empty selector.
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    /// True when the selector is exactly `global()`: Calico only allows `global()` as a rule's
    /// whole `namespaceSelector`.
    pub fn is_global_only(&self) -> bool {
        self.expr == Expr::Global
    }

    /// True when `global()` appears anywhere in the selector.
    pub fn uses_global(&self) -> bool {
        self.expr.any(&|e| matches!(e, Expr::Global))
    }

    /// Whether `labels` match, evaluated as Calico's parser evaluates (`global()` is true; see
    /// [`Scope::NonNamespaced`]). Allocates nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.expr.eval(labels, Scope::NonNamespaced)
    }

    /// Whether `labels` match in `scope`. Allocates nothing.
    pub fn matches_in<L: Labels + ?Sized>(&self, labels: &L, scope: Scope) -> bool {
        self.expr.eval(labels, scope)
    }

    /// The same selector with `prefix` put before every label name (Calico's `PrefixVisitor`,
    /// which it uses to turn a namespace selector into one over `pcns.`-prefixed labels). Its
    /// text is its canonical form. As in Calico, label lengths are not checked again, so a
    /// prefixed label can exceed [`MAX_LABEL_LEN`] (and then the text would not parse).
    pub fn with_label_prefix(&self, prefix: &str) -> Selector {
        let expr = self.expr.prefixed(prefix);
        let mut sel = Selector {
            text: String::new(),
            expr,
        };
        sel.text = sel.to_string();
        sel
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.expr.hash(state)
    }
}

/// Calico's canonical form; see the module documentation.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.write(f)
    }
}

/// Serializes as the text as written.
impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Selector::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation and printing

impl Expr {
    fn eval<L: Labels + ?Sized>(&self, labels: &L, scope: Scope) -> bool {
        match self {
            Expr::All => true,
            Expr::Global => scope == Scope::NonNamespaced,
            Expr::Has(k) => labels.label(k).is_some(),
            Expr::Eq(k, v) => labels.label(k) == Some(&**v),
            Expr::Ne(k, v) => labels.label(k) != Some(&**v),
            Expr::Contains(k, v) => labels.label(k).is_some_and(|l| l.contains(&**v)),
            Expr::StartsWith(k, v) => labels.label(k).is_some_and(|l| l.starts_with(&**v)),
            Expr::EndsWith(k, v) => labels.label(k).is_some_and(|l| l.ends_with(&**v)),
            Expr::In(k, set) => labels.label(k).is_some_and(|l| set_contains(set, l)),
            Expr::NotIn(k, set) => !labels.label(k).is_some_and(|l| set_contains(set, l)),
            Expr::Not(e) => !e.eval(labels, scope),
            Expr::And(es) => es.iter().all(|e| e.eval(labels, scope)),
            Expr::Or(es) => es.iter().any(|e| e.eval(labels, scope)),
        }
    }

    fn any(&self, pred: &dyn Fn(&Expr) -> bool) -> bool {
        pred(self)
            || match self {
                Expr::Not(e) => e.any(pred),
                Expr::And(es) | Expr::Or(es) => es.iter().any(|e| e.any(pred)),
                _ => false,
            }
    }

    fn prefixed(&self, prefix: &str) -> Expr {
        let p = |k: &str| -> Box<str> { format!("{prefix}{k}").into() };
        match self {
            Expr::All => Expr::All,
            Expr::Global => Expr::Global,
            Expr::Has(k) => Expr::Has(p(k)),
            Expr::Eq(k, v) => Expr::Eq(p(k), v.clone()),
            Expr::Ne(k, v) => Expr::Ne(p(k), v.clone()),
            Expr::Contains(k, v) => Expr::Contains(p(k), v.clone()),
            Expr::StartsWith(k, v) => Expr::StartsWith(p(k), v.clone()),
            Expr::EndsWith(k, v) => Expr::EndsWith(p(k), v.clone()),
            Expr::In(k, s) => Expr::In(p(k), s.clone()),
            Expr::NotIn(k, s) => Expr::NotIn(p(k), s.clone()),
            Expr::Not(e) => Expr::Not(Box::new(e.prefixed(prefix))),
            Expr::And(es) => Expr::And(es.iter().map(|e| e.prefixed(prefix)).collect()),
            Expr::Or(es) => Expr::Or(es.iter().map(|e| e.prefixed(prefix)).collect()),
        }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = |f: &mut fmt::Formatter<'_>, k: &str, op: &str, v: &str| {
            f.write_str(k)?;
            f.write_str(op)?;
            write_quoted(f, v)
        };
        match self {
            Expr::All => f.write_str("all()"),
            Expr::Global => f.write_str("global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => op(f, k, " == ", v),
            Expr::Ne(k, v) => op(f, k, " != ", v),
            Expr::Contains(k, v) => op(f, k, " contains ", v),
            Expr::StartsWith(k, v) => op(f, k, " starts with ", v),
            Expr::EndsWith(k, v) => op(f, k, " ends with ", v),
            Expr::In(k, set) | Expr::NotIn(k, set) => {
                f.write_str(k)?;
                f.write_str(if matches!(self, Expr::In(..)) {
                    " in {"
                } else {
                    " not in {"
                })?;
                for (i, v) in set.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, v)?;
                }
                f.write_char('}')
            }
            Expr::Not(e) => {
                f.write_char('!')?;
                e.write(f)
            }
            Expr::And(es) | Expr::Or(es) => {
                let sep = if matches!(self, Expr::And(_)) {
                    " && "
                } else {
                    " || "
                };
                f.write_char('(')?;
                for (i, e) in es.iter().enumerate() {
                    if i > 0 {
                        f.write_str(sep)?;
                    }
                    e.write(f)?;
                }
                f.write_char(')')
            }
        }
    }
}

fn set_contains(set: &[Box<str>], value: &str) -> bool {
    set.binary_search_by(|m| (**m).cmp(value)).is_ok()
}

/// Double quotes unless the value contains one (it then cannot contain a single quote, as no
/// selector string can hold both).
fn write_quoted(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    let q = if v.contains('"') { '\'' } else { '"' };
    f.write_char(q)?;
    f.write_str(v)?;
    f.write_char(q)
}

// ---------------------------------------------------------------------------------------------
// Tokenizer: the same token boundaries as Calico's `tokenizer.AppendTokens`, over bytes.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    Label(&'a str),
    Str(&'a str),
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    In,
    NotIn,
    Not,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Has(&'a str),
    Global,
    LParen,
    RParen,
    And,
    Or,
    Eof,
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::Label(l) => format!("label {l:?}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::Eq => "'=='".into(),
            Tok::Ne => "'!='".into(),
            Tok::In => "'in'".into(),
            Tok::NotIn => "'not in'".into(),
            Tok::Not => "'!'".into(),
            Tok::Contains => "'contains'".into(),
            Tok::StartsWith => "'starts with'".into(),
            Tok::EndsWith => "'ends with'".into(),
            Tok::All => "all()".into(),
            Tok::Has(k) => format!("has({k})"),
            Tok::Global => "global()".into(),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::Eof => "the end of the selector".into(),
        }
    }
}

/// A token and the byte offset where it starts.
type Spanned<'a> = (Tok<'a>, usize);

/// An error and the byte offset it is about.
type PErr = (usize, String);

const OPERATORS: &str = "==, !=, in, not in, contains, starts with, ends with";

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

fn at_word_boundary(b: &[u8], i: usize) -> bool {
    i >= b.len() || !is_ident(b[i])
}

/// `words` at `i` followed by a word boundary; the offset after them. As in Calico, a
/// two-word operator may have whitespace after each word (none needed between them) and the
/// boundary is checked after that whitespace, while a one-word operator is checked right after
/// the word: `a in c` tokenizes (and fails to parse), `a not in c` does not tokenize.
fn cut_words(b: &[u8], i: usize, words: &[&str]) -> Option<usize> {
    let mut j = i;
    for w in words {
        if !b[j..].starts_with(w.as_bytes()) {
            return None;
        }
        j += w.len();
        if words.len() > 1 {
            j = skip_ws(b, j);
        }
    }
    at_word_boundary(b, j).then_some(j)
}

/// The label name at `i` (possibly empty) and the offset after it.
fn cut_ident(text: &str, i: usize) -> Result<(&str, usize), PErr> {
    let b = text.as_bytes();
    let mut j = i;
    while j < b.len() && is_ident(b[j]) {
        j += 1;
    }
    if j - i > MAX_LABEL_LEN {
        return Err((
            i,
            format!(
                "label name is {} characters long; the maximum is {MAX_LABEL_LEN}",
                j - i
            ),
        ));
    }
    Ok((&text[i..j], j))
}

/// What is at byte `i`, for "found ..." in messages.
fn describe_at(text: &str, i: usize) -> String {
    let b = text.as_bytes();
    if i >= b.len() {
        return "the end of the selector".into();
    }
    if is_ident(b[i]) {
        let mut j = i;
        while j < b.len() && is_ident(b[j]) {
            j += 1;
        }
        return format!("{:?}", &text[i..j]);
    }
    match text[i..].chars().next() {
        Some('\n' | '\r') => {
            "a line break (only spaces and tabs may separate the parts of a selector)".into()
        }
        Some(c) => format!("{c:?}"),
        None => "the end of the selector".into(),
    }
}

fn tokenize(text: &str) -> Result<Vec<Spanned<'_>>, PErr> {
    let b = text.as_bytes();
    let mut out: Vec<Spanned<'_>> = Vec::new();
    let mut i = 0;
    loop {
        i = skip_ws(b, i);
        if i >= b.len() {
            out.push((Tok::Eof, b.len()));
            return Ok(out);
        }
        let start = i;
        let after_label = matches!(out.last(), Some((Tok::Label(_), _)));
        let tok = match b[i] {
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'{' => {
                i += 1;
                Tok::LBrace
            }
            b'}' => {
                i += 1;
                Tok::RBrace
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            q @ (b'"' | b'\'') => {
                let Some(len) = b[i + 1..].iter().position(|&c| c == q) else {
                    return Err((
                        i,
                        format!("unterminated string: no closing {} for this one", q as char),
                    ));
                };
                let s = &text[i + 1..i + 1 + len];
                i += len + 2;
                Tok::Str(s)
            }
            b'=' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Eq
            }
            b'=' => return Err((i, "use '==' to compare labels, not '='".into())),
            b'!' if b.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Ne
            }
            b'!' => {
                i += 1;
                Tok::Not
            }
            b'&' if b.get(i + 1) == Some(&b'&') => {
                i += 2;
                Tok::And
            }
            b'&' => return Err((i, "use '&&' for \"and\", not '&'".into())),
            b'|' if b.get(i + 1) == Some(&b'|') => {
                i += 2;
                Tok::Or
            }
            b'|' => return Err((i, "use '||' for \"or\", not '|'".into())),
            _ if after_label => {
                let ops: [(&[&str], Tok<'_>); 5] = [
                    (&["contains"], Tok::Contains),
                    (&["starts", "with"], Tok::StartsWith),
                    (&["ends", "with"], Tok::EndsWith),
                    (&["not", "in"], Tok::NotIn),
                    (&["in"], Tok::In),
                ];
                let Some((end, tok)) = ops
                    .iter()
                    .find_map(|(words, tok)| cut_words(b, i, words).map(|end| (end, *tok)))
                else {
                    let label = match out.last() {
                        Some((Tok::Label(l), _)) => *l,
                        _ => "",
                    };
                    return Err((
                        i,
                        format!(
                            "expected an operator ({OPERATORS}) after label {label:?}, found {}",
                            describe_at(text, i)
                        ),
                    ));
                };
                i = end;
                tok
            }
            _ if b[i..].starts_with(b"has(") => {
                let j = skip_ws(b, i + 4);
                let (key, k) = cut_ident(text, j)?;
                if key.is_empty() {
                    return Err((
                        j,
                        format!(
                            "expected a label name in has(), found {}",
                            describe_at(text, j)
                        ),
                    ));
                }
                let k = skip_ws(b, k);
                if b.get(k) != Some(&b')') {
                    return Err((
                        k,
                        format!(
                            "expected ')' to close has({key}, found {}",
                            describe_at(text, k)
                        ),
                    ));
                }
                i = k + 1;
                Tok::Has(key)
            }
            _ if b[i..].starts_with(b"all(") || b[i..].starts_with(b"global(") => {
                let (name, tok) = if b[i] == b'a' {
                    ("all", Tok::All)
                } else {
                    ("global", Tok::Global)
                };
                let j = skip_ws(b, i + name.len() + 1);
                if b.get(j) != Some(&b')') {
                    return Err((
                        j,
                        format!(
                            "expected ')' after {name}( ({name}() takes no arguments), found {}",
                            describe_at(text, j)
                        ),
                    ));
                }
                i = j + 1;
                tok
            }
            _ => {
                let (label, j) = cut_ident(text, i)?;
                if label.is_empty() {
                    return Err((i, format!("unexpected {}", describe_at(text, i))));
                }
                i = j;
                Tok::Label(label)
            }
        };
        out.push((tok, start));
    }
}

// ---------------------------------------------------------------------------------------------
// Parser: the same structure and acceptance as Calico's `parser.parseRoot`.

fn parse_expr(text: &str) -> Result<Expr, PErr> {
    let toks = tokenize(text)?;
    if toks[0].0 == Tok::Eof {
        return Ok(Expr::All);
    }
    let mut p = Parser {
        text,
        toks: &toks,
        pos: 0,
        parens: 0,
    };
    let (expr, _) = p.or()?;
    let (tok, at) = p.peek();
    if tok != Tok::Eof {
        return Err((
            at,
            format!(
                "unexpected {} after a complete expression (join expressions with && or ||)",
                tok.describe()
            ),
        ));
    }
    Ok(expr)
}

struct Parser<'t, 'a> {
    text: &'a str,
    /// Always ends with `Tok::Eof`, which is never consumed.
    toks: &'t [Spanned<'a>],
    pos: usize,
    /// Parentheses currently open.
    parens: usize,
}

impl<'a> Parser<'_, 'a> {
    fn peek(&self) -> Spanned<'a> {
        self.toks[self.pos]
    }

    fn bump(&mut self) -> Spanned<'a> {
        let t = self.toks[self.pos];
        if t.0 != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    /// `operation ( ("&&" | "||") operation )*` with `&&` binding tighter, and the result's
    /// `&&`/`||` nesting depth (how deep its canonical form nests parentheses). One frame for
    /// both levels keeps the recursion through parentheses shallow.
    fn or(&mut self) -> Result<(Expr, usize), PErr> {
        let start = self.peek().1;
        let mut ors: Vec<Expr> = Vec::new();
        let mut or_depth = 0;
        let mut ands: Vec<Expr> = Vec::new();
        let mut and_depth = 0;
        loop {
            let (e, d) = self.operation()?;
            ands.push(e);
            and_depth = and_depth.max(d);
            let next = self.peek().0;
            if next == Tok::And {
                self.bump();
                continue;
            }
            // The && group is complete.
            let group = if ands.len() == 1 {
                ands.pop().unwrap_or(Expr::All)
            } else {
                and_depth += 1;
                Expr::And(std::mem::take(&mut ands))
            };
            if and_depth > MAX_NESTING {
                return Err(too_deep(start));
            }
            ors.push(group);
            or_depth = or_depth.max(and_depth);
            and_depth = 0;
            if next == Tok::Or {
                self.bump();
                continue;
            }
            if ors.len() == 1 {
                return Ok((ors.pop().unwrap_or(Expr::All), or_depth));
            }
            if or_depth + 1 > MAX_NESTING {
                return Err(too_deep(start));
            }
            return Ok((Expr::Or(ors), or_depth + 1));
        }
    }

    fn string_after(&mut self, op: Tok<'_>) -> Result<Box<str>, PErr> {
        match self.bump() {
            (Tok::Str(s), _) => Ok(s.into()),
            (t, at) => Err(expected_after(at, "a quoted string", op, t)),
        }
    }

    fn set_after(&mut self, op: Tok<'_>) -> Result<Box<[Box<str>]>, PErr> {
        match self.bump() {
            (Tok::LBrace, _) => {}
            (t, at) => return Err(expected_after(at, "a set such as {'a', 'b'}", op, t)),
        }
        let mut members: Vec<Box<str>> = Vec::new();
        let mut after_member = false;
        loop {
            match self.peek() {
                (Tok::Str(s), _) if !after_member => {
                    self.bump();
                    members.push(s.into());
                    after_member = true;
                }
                (Tok::Comma, _) if after_member => {
                    self.bump();
                    after_member = false;
                }
                (Tok::RBrace, _) => {
                    self.bump();
                    break;
                }
                (t, at) => return Err(bad_set_member(at, after_member, t)),
            }
        }
        members.sort_unstable();
        members.dedup();
        Ok(members.into_boxed_slice())
    }

    fn operation(&mut self) -> Result<(Expr, usize), PErr> {
        let mut negated = false;
        while self.peek().0 == Tok::Not {
            self.bump();
            negated = !negated;
        }
        let (tok, at) = self.bump();
        let (expr, depth) = match tok {
            Tok::All => (Expr::All, 0),
            Tok::Global => (Expr::Global, 0),
            Tok::Has(k) => (Expr::Has(k.into()), 0),
            Tok::Label(k) => (self.comparison(k)?, 0),
            Tok::LParen => {
                if self.parens >= MAX_NESTING {
                    return Err(too_many_parens(at));
                }
                self.parens += 1;
                let inner = self.or()?;
                self.parens -= 1;
                match self.bump() {
                    (Tok::RParen, _) => inner,
                    (t, found_at) => return Err(unclosed_paren(self.text, at, found_at, t)),
                }
            }
            t => return Err(expected_operation(at, t)),
        };
        if !negated {
            return Ok((expr, depth));
        }
        Ok(match expr {
            // `!(!e)`: fold, so that the canonical form re-parses to the same tree.
            Expr::Not(inner) => (*inner, depth),
            e => (Expr::Not(Box::new(e)), depth),
        })
    }

    /// The rest of `label <op> <string or set>`.
    fn comparison(&mut self, label: &str) -> Result<Expr, PErr> {
        let (op, at) = self.bump();
        let key: Box<str> = label.into();
        Ok(match op {
            Tok::Eq => Expr::Eq(key, self.string_after(op)?),
            Tok::Ne => Expr::Ne(key, self.string_after(op)?),
            Tok::Contains => Expr::Contains(key, self.string_after(op)?),
            Tok::StartsWith => Expr::StartsWith(key, self.string_after(op)?),
            Tok::EndsWith => Expr::EndsWith(key, self.string_after(op)?),
            Tok::In => Expr::In(key, self.set_after(op)?),
            Tok::NotIn => Expr::NotIn(key, self.set_after(op)?),
            t => return Err(expected_operator(at, label, t)),
        })
    }
}

// Error messages, out of line so that the recursive parser's frames stay small.

#[cold]
#[inline(never)]
fn too_deep(at: usize) -> PErr {
    (
        at,
        format!("expressions nest more than {MAX_NESTING} deep (&& and || groups)"),
    )
}

#[cold]
#[inline(never)]
fn too_many_parens(at: usize) -> PErr {
    (at, format!("parentheses nest more than {MAX_NESTING} deep"))
}

#[cold]
#[inline(never)]
fn unclosed_paren(text: &str, open: usize, at: usize, found: Tok<'_>) -> PErr {
    (
        at,
        format!(
            "expected ')' to close the '(' at offset {}, found {}",
            char_offset(text, open),
            found.describe()
        ),
    )
}

#[cold]
#[inline(never)]
fn expected_operation(at: usize, found: Tok<'_>) -> PErr {
    (
        at,
        format!(
            "expected a label test, has(), all(), global(), '!' or '(', found {}",
            found.describe()
        ),
    )
}

#[cold]
#[inline(never)]
fn expected_operator(at: usize, label: &str, found: Tok<'_>) -> PErr {
    let message = if found == Tok::Eof {
        format!(
            "expected an operator ({OPERATORS}) after label {label:?} (did you mean has({label})?)"
        )
    } else {
        format!(
            "expected an operator ({OPERATORS}) after label {label:?}, found {}",
            found.describe()
        )
    };
    (at, message)
}

#[cold]
#[inline(never)]
fn expected_after(at: usize, what: &str, op: Tok<'_>, found: Tok<'_>) -> PErr {
    (
        at,
        format!(
            "expected {what} after {}, found {}",
            op.describe(),
            found.describe()
        ),
    )
}

#[cold]
#[inline(never)]
fn bad_set_member(at: usize, after_member: bool, found: Tok<'_>) -> PErr {
    let want = if after_member {
        "',' or '}'"
    } else {
        "a quoted string or '}'"
    };
    (
        at,
        format!("expected {want} in the set, found {}", found.describe()),
    )
}

fn char_offset(text: &str, byte_pos: usize) -> usize {
    text.get(..byte_pos)
        .map_or_else(|| text.chars().count(), |s| s.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(text: &str) -> Selector {
        Selector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn m(text: &str, l: &BTreeMap<String, String>) -> bool {
        sel(text).matches(l)
    }

    fn render_tokens(toks: &[Spanned<'_>]) -> String {
        let one = |t: &Tok<'_>| match t {
            Tok::Label(s) => format!("Label({s})"),
            Tok::Str(s) => format!("Str({s})"),
            Tok::Has(s) => format!("Has({s})"),
            other => format!("{other:?}"),
        };
        toks.iter()
            .map(|(t, _)| one(t))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn json_labels(v: &Value) -> BTreeMap<String, String> {
        v.as_object()
            .expect("labels are a JSON object")
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().expect("label values are strings").into(),
                )
            })
            .collect()
    }

    /// Parses `text`, checks that its canonical form re-parses to the same selector and
    /// prints the same, and returns it.
    fn round_trip(text: &str) -> Result<Selector, String> {
        let s = Selector::parse(text)?;
        let canon = s.to_string();
        let again = Selector::parse(&canon)
            .map_err(|e| format!("canonical form {canon:?} does not parse: {e}"))?;
        if again != s || again.to_string() != canon || again.unique_id() != s.unique_id() {
            return Err(format!("{canon:?} does not round-trip"));
        }
        Ok(s)
    }

    /// Runs one fixture line; `Err` describes a failure.
    fn run_case(case: &[Value]) -> Result<(), String> {
        let kind = case[0].as_str().unwrap_or_default();
        let input = case[1].as_str().ok_or("input must be a string")?;
        match kind {
            "tokens" => {
                let got = tokenize(input).map(|t| render_tokens(&t));
                match (&case[2], got) {
                    (Value::Null, Err(_)) => Ok(()),
                    (Value::Null, Ok(t)) => Err(format!("tokenized as {t}, want an error")),
                    (Value::String(want), Ok(t)) if *want == t => Ok(()),
                    (want, got) => Err(format!("tokens {got:?}, want {want}")),
                }
            }
            "match" => {
                let s = round_trip(input)?;
                let again = sel(&s.to_string());
                for (want, set) in [(true, &case[2]), (false, &case[3])] {
                    for l in set.as_array().ok_or("label sets must be a list")? {
                        let l = json_labels(l);
                        if s.matches(&l) != want || again.matches(&l) != want {
                            return Err(format!("should match {l:?}: {want}"));
                        }
                        if s.matches_in(&l, Scope::NonNamespaced) != want {
                            return Err(format!("matches_in({l:?}) differs from matches"));
                        }
                        let h: HashMap<String, String> = l.clone().into_iter().collect();
                        if s.matches_in(&h, Scope::NonNamespaced) != want {
                            return Err(format!("HashMap {l:?} differs from BTreeMap"));
                        }
                    }
                }
                Ok(())
            }
            "bad" => match Selector::parse(input) {
                Ok(s) => Err(format!("parsed as {s}, want an error")),
                Err(_) => Ok(()),
            },
            "canon" => {
                let s = round_trip(input)?;
                let want = case[2].as_str().ok_or("canonical form must be a string")?;
                if s.to_string() != want {
                    return Err(format!("canonical {:?}, want {want:?}", s.to_string()));
                }
                match case[3].as_str() {
                    Some("") | None => Ok(()),
                    Some(uid) if s.unique_id() == uid => Ok(()),
                    Some(uid) => Err(format!("unique_id {}, want {uid}", s.unique_id())),
                }
            }
            "prefix" => {
                let s = sel(input).with_label_prefix(case[2].as_str().unwrap_or_default());
                let want = case[3].as_str().unwrap_or_default();
                if s.to_string() != want || s.as_str() != want {
                    return Err(format!("prefixed {s}, want {want}"));
                }
                round_trip(want).map(|_| ())
            }
            "error" => {
                let e = match Selector::parse_detailed(input) {
                    Ok(s) => return Err(format!("parsed as {s}, want an error")),
                    Err(e) => e,
                };
                let (offset, text) = (case[2].as_u64(), case[3].as_str().unwrap_or_default());
                if offset != Some(e.offset as u64) || !e.message.contains(text) {
                    return Err(format!("error {e}, want {text:?} at offset {offset:?}"));
                }
                let plain = Selector::parse(input).unwrap_err();
                if plain != format!("{} (at offset {})", e.message, e.offset) {
                    return Err(format!("parse() says {plain:?}"));
                }
                Ok(())
            }
            "scope" => {
                let s = round_trip(input)?;
                let l = json_labels(&case[2]);
                let got = (
                    s.matches_in(&l, Scope::NonNamespaced),
                    s.matches_in(&l, Scope::Namespaced),
                );
                let want = (case[3].as_bool(), case[4].as_bool());
                if (Some(got.0), Some(got.1)) != want || s.matches(&l) != got.0 {
                    return Err(format!(
                        "(non-namespaced, namespaced) = {got:?}, want {want:?}"
                    ));
                }
                Ok(())
            }
            other => Err(format!("unknown case kind {other:?}")),
        }
    }

    #[test]
    fn fixture_table() {
        let text = include_str!("../testdata/selectors.txt");
        let mut failures = Vec::new();
        let mut count = 0;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            count += 1;
            let case: Vec<Value> = match serde_json::from_str(line) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("line {}: not a JSON array: {e}", n + 1));
                    continue;
                }
            };
            if let Err(e) = run_case(&case) {
                failures.push(format!("line {}: {line}\n    {e}", n + 1));
            }
        }
        assert!(count > 250, "only {count} cases read");
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn label_length_limit() {
        // Calico's tokenizer_test.go: a 512-character label is fine, 513 is not.
        let ok = format!("{} == \"value\"", "a".repeat(512));
        assert_eq!(
            render_tokens(&tokenize(&ok).unwrap()),
            format!("Label({}) Eq Str(value) Eof", "a".repeat(512))
        );
        round_trip(&ok).unwrap();
        let long = format!("{} == \"value\"", "a".repeat(513));
        assert!(tokenize(&long).is_err());
        let e = Selector::parse_detailed(&long).unwrap_err();
        assert_eq!(e.offset, 0);
        assert!(
            e.message
                .contains("513 characters long; the maximum is 512"),
            "{e}"
        );
        let e = Selector::parse_detailed(&format!("x == 'y' && has( {})", "b".repeat(513)))
            .unwrap_err();
        assert_eq!(e.offset, 17, "{e}");
        round_trip(&format!("has({})", "b".repeat(512))).unwrap();
        // Values have no limit.
        round_trip(&format!("a == '{}'", "v".repeat(100_000))).unwrap();
    }

    #[test]
    fn api_length_limit() {
        let at_limit = format!("a == '{}'", "v".repeat(MAX_SELECTOR_LEN - 7));
        assert_eq!(at_limit.chars().count(), MAX_SELECTOR_LEN);
        Selector::parse_field(&at_limit).unwrap();
        let over = format!("a == '{}'", "ü".repeat(MAX_SELECTOR_LEN - 6));
        let e = Selector::parse_field(&over).unwrap_err();
        assert_eq!(
            e,
            "selector is 1025 characters long; Calico allows at most 1024 (at offset 1024)"
        );
        // parse() itself, like Calico's parser, has no length limit.
        Selector::parse(&over).unwrap();
    }

    #[test]
    fn nesting_limits() {
        let nest = |n: usize| format!("{}has(a){}", "(".repeat(n), ")".repeat(n));
        assert_eq!(
            round_trip(&nest(MAX_NESTING)).unwrap().to_string(),
            "has(a)"
        );
        let e = Selector::parse_detailed(&nest(MAX_NESTING + 1)).unwrap_err();
        assert_eq!(e.offset, MAX_NESTING);
        assert!(
            e.message.contains("parentheses nest more than 512 deep"),
            "{e}"
        );

        // "a||b&&(" per level: each level adds an || and an && group to the canonical form.
        let groups = |levels: usize| {
            let mut s = String::new();
            for _ in 0..levels {
                s.push_str("has(a) || has(b) && (");
            }
            s.push_str("has(c)");
            s.push_str(&")".repeat(levels));
            s
        };
        let deepest = groups(MAX_NESTING / 2);
        let s = round_trip(&deepest).unwrap();
        assert!(s.matches(&labels(&[("a", "")])));
        assert!(s.matches_in(&labels(&[("b", ""), ("c", "")]), Scope::Namespaced));
        assert!(!s.matches(&labels(&[("b", "")])));
        let e = Selector::parse_detailed(&groups(MAX_NESTING / 2 + 1)).unwrap_err();
        assert!(
            e.message.contains("expressions nest more than 512 deep"),
            "{e}"
        );
        // The deepest tree: a negation and a && group per parenthesis.
        let mut alternating = String::new();
        for _ in 0..MAX_NESTING {
            alternating.push_str("!(has(a) && ");
        }
        alternating.push_str("has(b)");
        alternating.push_str(&")".repeat(MAX_NESTING));
        let s = round_trip(&alternating).unwrap();
        assert!(s.matches(&labels(&[("a", ""), ("b", "")])));
        assert!(!s.matches(&labels(&[("a", "")])));
        assert_eq!(s.clone(), s);

        // Negations nested through parentheses, and long flat chains, are fine.
        let nots = format!(
            "{}has(a){}",
            "!(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        let s = round_trip(&nots).unwrap();
        assert_eq!(s.to_string(), "has(a)", "an even number of ! cancels out");
        let chain = vec!["has(a)"; 10_000].join(" && ");
        assert!(round_trip(&chain).unwrap().matches(&labels(&[("a", "")])));
        let bangs = format!("{}has(a)", "!".repeat(100_001));
        assert_eq!(round_trip(&bangs).unwrap().to_string(), "!has(a)");
        // Nothing that fits Calico's 1024-character field limit reaches either limit.
        let fits = nest((MAX_SELECTOR_LEN - 6) / 2);
        assert!(fits.len() <= MAX_SELECTOR_LEN);
        Selector::parse_field(&fits).unwrap();
    }

    #[test]
    fn basic_operators() {
        let l = labels(&[
            ("rack", "r1"),
            ("route-reflector", "true"),
            ("kubernetes.io/os", "linux"),
        ]);
        assert!(m("all()", &l));
        assert!(m("", &l));
        assert!(m("has(rack)", &l));
        assert!(!m("has(zone)", &l));
        assert!(m("!has(zone)", &l));
        assert!(m("rack == 'r1'", &l));
        assert!(m("rack == \"r1\"", &l));
        assert!(!m("rack == 'r2'", &l));
        assert!(m("rack != 'r2'", &l));
        assert!(m("zone != 'x'", &l), "!= matches absent labels");
        assert!(m("rack in {'r1', 'r2'}", &l));
        assert!(!m("rack in {'r3'}", &l));
        assert!(!m("rack in {}", &l));
        assert!(m("rack not in {'r3'}", &l));
        assert!(m("zone not in {'r3'}", &l));
        assert!(m("kubernetes.io/os == 'linux'", &l));
        assert!(m("rack contains '1'", &l));
        assert!(m("rack starts with 'r'", &l));
        assert!(m("rack ends with '1'", &l));
        assert!(!m("zone contains ''", &l), "contains needs the label");
        assert!(m(
            "route-reflector != 'true' || !has(c) && rack in {'r0','r1','r2','r3','r4'}",
            &l
        ));
    }

    #[test]
    fn boolean_structure() {
        let l = labels(&[("a", "1"), ("b", "2")]);
        assert!(m("a == '1' && b == '2'", &l));
        assert!(!m("a == '1' && b == '3'", &l));
        assert!(m("a == '9' || b == '2'", &l));
        // ! binds tighter than &&, which binds tighter than ||.
        assert!(m("a == '1' || b == '9' && has(c)", &l));
        assert!(!m("(a == '1' || b == '9') && has(c)", &l));
        assert!(m("!a == '2'", &l), "! applies to the comparison");
        assert!(!m("!has(a) && has(b)", &l));
        assert!(m("!(has(a) && has(c))", &l));
        assert!(!m("!!has(c)", &l));
        assert!(m("route-reflector != 'true' && !has(c)", &l));
    }

    #[test]
    fn errors_are_located_and_explained() {
        let e = Selector::parse("rack = 'x'").unwrap_err();
        assert_eq!(e, "use '==' to compare labels, not '=' (at offset 5)");
        assert!(Selector::parse("a").unwrap_err().contains("has(a)"));
        // Offsets count characters, not bytes.
        let e = Selector::parse_detailed("ü == 'ü' && %").unwrap_err();
        assert_eq!(e.offset, 0, "{e}");
        let e = Selector::parse_detailed("a == 'üüü' && %").unwrap_err();
        assert_eq!(e.offset, 14, "{e}");
    }

    #[test]
    fn display_equality_and_serde() {
        let s = sel("rack == 'r1'");
        assert_eq!(s.to_string(), "rack == \"r1\"");
        assert_eq!(s.canonical(), "rack == \"r1\"");
        assert_eq!(s.as_str(), "rack == 'r1'");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"rack == 'r1'\"");
        let back: Selector = serde_json::from_str("\"rack == 'r1'\"").unwrap();
        assert_eq!(back.as_str(), "rack == 'r1'");
        assert!(serde_json::from_str::<Selector>("\"rack = 'r1'\"").is_err());
        assert_eq!(
            s,
            sel("rack==\"r1\""),
            "equality follows the canonical form"
        );
        assert_ne!(s, sel("rack == 'r2'"));
        let set: std::collections::HashSet<Selector> = [
            "a in {'x','y'}",
            "a in {\"y\", 'x', 'x'}",
            "(a in {'y','x'})",
        ]
        .iter()
        .map(|t| sel(t))
        .collect();
        assert_eq!(set.len(), 1);
        assert!(!s.is_all());
        assert!(sel(" all() ").is_all());
        assert!(sel("").is_all());
        assert!(sel("(all())").is_all());
        assert!(Selector::all().is_all());
        assert_eq!(Selector::all().to_string(), "all()");
        assert_eq!(sel("").to_string(), "all()");
        assert_eq!(sel("").unique_id(), Selector::all().unique_id());
        assert_eq!("has(a)".parse::<Selector>().unwrap(), sel("has( a )"));
        assert_eq!(sel("has(a)").unique_id().len(), 40);
    }

    #[test]
    fn global_helpers() {
        assert!(sel("global()").is_global_only());
        assert!(sel(" global( ) ").is_global_only());
        assert!(!sel("global() && has(a)").is_global_only());
        assert!(sel("has(a) && !(global() || has(b))").uses_global());
        assert!(!sel("global == 'x'").uses_global());
        assert!(!sel("all()").uses_global());
    }

    /// Counts this thread's allocations, to show that matching allocates nothing.
    mod counting {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            pub static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
        }

        pub struct Counting;

        fn count() {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        }

        // SAFETY: every call is forwarded unchanged to the system allocator.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                count();
                unsafe { System.alloc(layout) }
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                count();
                unsafe { System.alloc_zeroed(layout) }
            }
            unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
                count();
                unsafe { System.realloc(ptr, layout, new_size) }
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;
    }

    #[test]
    fn matching_allocates_nothing() {
        let s = sel(
            "(kubernetes.io/os == 'linux' && app in {'web','db','cache'} && !has(skip)) \
             || tier starts with 'front' || name ends with '-x' || zone contains 'eu' \
             || (rack != 'r9' && team not in {'a','b'} && global() && all())",
        );
        let pods: Vec<BTreeMap<String, String>> = (0..1000)
            .map(|i| {
                labels(&[
                    (
                        "kubernetes.io/os",
                        if i % 2 == 0 { "linux" } else { "windows" },
                    ),
                    ("app", ["web", "db", "cache", "other"][i % 4]),
                    ("tier", "backend"),
                    ("rack", "r9"),
                ])
            })
            .collect();
        let hashed: Vec<HashMap<String, String>> = pods
            .iter()
            .map(|p| p.clone().into_iter().collect())
            .collect();
        let before = counting::ALLOCATIONS.with(|c| c.get());
        let mut n = 0;
        for p in &pods {
            n += usize::from(s.matches(p));
            n += usize::from(s.matches_in(p, Scope::Namespaced));
        }
        for p in &hashed {
            n += usize::from(s.matches_in(p, Scope::NonNamespaced));
        }
        let after = counting::ALLOCATIONS.with(|c| c.get());
        assert_eq!(after - before, 0, "matching allocated");
        assert_eq!(n, 3 * 500);
    }

    // -----------------------------------------------------------------------------------------
    // Property tests

    /// Selector text built from the grammar, with random spacing and quoting.
    fn selector_text() -> impl Strategy<Value = String> {
        let ws = || "[ \t]{0,2}";
        let label = "[a-zA-Z0-9_./-]{1,10}";
        let value = prop_oneof![
            "[^'\"]{0,6}".prop_map(|v| format!("'{v}'")),
            "[^'\"]{0,6}".prop_map(|v| format!("\"{v}\"")),
            "[^'\"]{0,3}\"[^'\"]{0,3}".prop_map(|v| format!("'{v}'")),
            "[^'\"]{0,3}'[^'\"]{0,3}".prop_map(|v| format!("\"{v}\"")),
        ];
        let op = prop_oneof![
            Just("==".to_string()),
            Just("!=".to_string()),
            " contains",
            " starts[ \t]{0,2}with",
            " ends[ \t]{0,2}with",
        ];
        let set_op = prop_oneof![Just(" in"), Just(" not in"), Just(" notin")];
        let set = (prop::collection::vec(value.clone(), 0..4), any::<bool>()).prop_map(
            |(members, trailing)| {
                let mut s = format!("{{{}", members.join(","));
                if trailing && !members.is_empty() {
                    s.push(',');
                }
                s.push('}');
                s
            },
        );
        let leaf = prop_oneof![
            (ws(), label, ws()).prop_map(|(a, l, b)| format!("has({a}{l}{b})")),
            ws().prop_map(|a| format!("all({a})")),
            ws().prop_map(|a| format!("global({a})")),
            (label, op, ws(), value).prop_map(|(l, o, w, v)| format!("{l}{o}{w}{v}")),
            (label, set_op, ws(), set).prop_map(|(l, o, w, s)| format!("{l}{o}{w}{s}")),
        ];
        let leaf = (ws(), leaf, ws()).prop_map(|(a, l, b)| format!("{a}{l}{b}"));
        leaf.prop_recursive(6, 48, 4, move |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| format!("({e})")),
                (1..4usize, inner.clone()).prop_map(|(n, e)| format!("{}{e}", "!".repeat(n))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(|es| es.join("&&")),
                prop::collection::vec(inner, 2..4).prop_map(|es| es.join("||")),
            ]
        })
    }

    /// Strings made of the selector language's pieces, mostly invalid.
    fn selector_soup() -> impl Strategy<Value = String> {
        "(has\\(|all\\(|global\\(| in | not in | contains | starts with | ends with |==|!=|&&|\\|\\||[()!{},'\" \t=&|a-c%é\n])*"
    }

    fn check_any_input(text: &str) -> Result<(), TestCaseError> {
        match Selector::parse_detailed(text) {
            Ok(s) => {
                let canon = s.to_string();
                let again = Selector::parse(&canon);
                prop_assert_eq!(again.as_ref(), Ok(&s), "canonical {:?}", canon);
                prop_assert_eq!(again.unwrap().to_string(), canon);
                let l = labels(&[("a", "b"), ("b", "'"), ("c", "\"")]);
                let _ = s.matches(&l);
                let _ = s.matches_in(&l, Scope::Namespaced);
                prop_assert_eq!(s.unique_id().len(), 40);
            }
            Err(e) => {
                prop_assert!(e.offset <= text.chars().count(), "{:?}: {}", text, e);
                prop_assert!(!e.message.is_empty());
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn grammar_selectors_parse_and_round_trip(text in selector_text()) {
            let s = Selector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            check_any_input(&text)?;
            // Whitespace around the whole selector is insignificant.
            prop_assert_eq!(Selector::parse(&format!(" \t{text}\t ")), Ok(s));
        }

        #[test]
        fn arbitrary_strings_never_panic(text in any::<String>()) {
            check_any_input(&text)?;
        }

        #[test]
        fn selector_soup_never_panics(text in selector_soup()) {
            check_any_input(&text)?;
        }
    }
}
