//! Calico label selectors: `all()`, `has(k)`, `k == 'v'`, `k != 'v'`, `k in {'a','b'}`,
//! `k not in {...}`, `k contains 'x'`, `k starts with 'x'`, `k ends with 'x'`, `!e`,
//! `e && e`, `e || e` and parentheses; single or double quotes.
//!
//! As in Calico, `!=` and `not in` also match when the label is absent.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed selector together with its source text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    text: String,
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    All,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Selector {
    /// Parses a selector; an empty (or blank) selector is `all()`.
    pub fn parse(text: &str) -> Result<Selector, String> {
        if text.trim().is_empty() {
            return Ok(Selector {
                text: text.to_string(),
                expr: Expr::All,
            });
        }
        let tokens = tokenize(text)?;
        let mut p = Parser { tokens, pos: 0 };
        let expr = p.or()?;
        if let Some(t) = p.peek() {
            return Err(format!("unexpected {} in selector", t.describe()));
        }
        Ok(Selector {
            text: text.to_string(),
            expr,
        })
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

    /// True for `all()` and the empty selector.
    pub fn is_all(&self) -> bool {
        self.expr == Expr::All
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.expr.eval(labels)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Selector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl std::str::FromStr for Selector {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl Expr {
    fn eval(&self, labels: &BTreeMap<String, String>) -> bool {
        let get = |k: &String| labels.get(k).map(String::as_str);
        match self {
            Expr::All => true,
            Expr::Has(k) => labels.contains_key(k),
            Expr::Eq(k, v) => get(k) == Some(v),
            Expr::Ne(k, v) => get(k) != Some(v),
            Expr::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Expr::NotIn(k, vs) => !get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Expr::Contains(k, v) => get(k).is_some_and(|l| l.contains(v.as_str())),
            Expr::StartsWith(k, v) => get(k).is_some_and(|l| l.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => get(k).is_some_and(|l| l.ends_with(v.as_str())),
            Expr::Not(e) => !e.eval(labels),
            Expr::And(a, b) => a.eval(labels) && b.eval(labels),
            Expr::Or(a, b) => a.eval(labels) || b.eval(labels),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Not,
    And,
    Or,
    EqEq,
    NotEq,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBrace => "'{'".into(),
            Tok::RBrace => "'}'".into(),
            Tok::Comma => "','".into(),
            Tok::Not => "'!'".into(),
            Tok::And => "'&&'".into(),
            Tok::Or => "'||'".into(),
            Tok::EqEq => "'=='".into(),
            Tok::NotEq => "'!='".into(),
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '{' => {
                out.push(Tok::LBrace);
                i += 1
            }
            '}' => {
                out.push(Tok::RBrace);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '!' if next == Some('=') => {
                out.push(Tok::NotEq);
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '=' if next == Some('=') => {
                out.push(Tok::EqEq);
                i += 2
            }
            '&' if next == Some('&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if next == Some('|') => {
                out.push(Tok::Or);
                i += 2
            }
            '\'' | '"' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == c)
                    .ok_or_else(|| format!("unterminated string starting at offset {i}"))?;
                out.push(Tok::Str(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
            }
            c if is_ident_char(c) => {
                let start = i;
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            '=' => return Err("use '==' to compare labels, not '='".into()),
            '&' => return Err("use '&&' for \"and\"".into()),
            '|' => return Err("use '||' for \"or\"".into()),
            other => return Err(format!("unexpected character {other:?} in selector")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: Tok) -> Result<(), String> {
        match self.next() {
            Some(t) if t == want => Ok(()),
            Some(t) => Err(format!(
                "expected {} in selector, found {}",
                want.describe(),
                t.describe()
            )),
            None => Err(format!(
                "expected {} in selector, found the end",
                want.describe()
            )),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn string(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            Some(t) => Err(format!(
                "expected a quoted value in selector, found {}",
                t.describe()
            )),
            None => Err("expected a quoted value in selector, found the end".into()),
        }
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        self.expect(Tok::LBrace)?;
        let mut out = Vec::new();
        if self.peek() == Some(&Tok::RBrace) {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.push(self.string()?);
            match self.next() {
                Some(Tok::Comma) => continue,
                Some(Tok::RBrace) => return Ok(out),
                Some(t) => return Err(format!("expected ',' or '}}', found {}", t.describe())),
                None => return Err("unterminated '{' in selector".into()),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Ident(id)) if id == "all" && self.peek() == Some(&Tok::LParen) => {
                self.pos += 1;
                self.expect(Tok::RParen)?;
                Ok(Expr::All)
            }
            Some(Tok::Ident(id)) if id == "has" && self.peek() == Some(&Tok::LParen) => {
                self.pos += 1;
                let key = match self.next() {
                    Some(Tok::Ident(k)) => k,
                    Some(t) => return Err(format!("expected a label key, found {}", t.describe())),
                    None => return Err("expected a label key, found the end".into()),
                };
                self.expect(Tok::RParen)?;
                Ok(Expr::Has(key))
            }
            Some(Tok::Ident(key)) => match self.next() {
                Some(Tok::EqEq) => Ok(Expr::Eq(key, self.string()?)),
                Some(Tok::NotEq) => Ok(Expr::Ne(key, self.string()?)),
                Some(Tok::Ident(op)) if op == "in" => Ok(Expr::In(key, self.set()?)),
                Some(Tok::Ident(op)) if op == "contains" => {
                    Ok(Expr::Contains(key, self.string()?))
                }
                Some(Tok::Ident(op)) if op == "not" => {
                    match self.next() {
                        Some(Tok::Ident(op)) if op == "in" => {}
                        _ => return Err("expected 'in' after 'not'".into()),
                    }
                    Ok(Expr::NotIn(key, self.set()?))
                }
                Some(Tok::Ident(op)) if op == "starts" || op == "ends" => {
                    match self.next() {
                        Some(Tok::Ident(w)) if w == "with" => {}
                        _ => return Err(format!("expected 'with' after '{op}'")),
                    }
                    let v = self.string()?;
                    Ok(if op == "starts" {
                        Expr::StartsWith(key, v)
                    } else {
                        Expr::EndsWith(key, v)
                    })
                }
                Some(t) => Err(format!(
                    "expected an operator (==, !=, in, not in, contains, starts with, ends with) after '{key}', found {}",
                    t.describe()
                )),
                None => Err(format!(
                    "expected an operator after '{key}' (did you mean has({key})?)"
                )),
            },
            Some(t) => Err(format!("unexpected {} in selector", t.describe())),
            None => Err("selector ends too early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn m(sel: &str, l: &BTreeMap<String, String>) -> bool {
        Selector::parse(sel)
            .unwrap_or_else(|e| panic!("{sel}: {e}"))
            .matches(l)
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
    }

    #[test]
    fn boolean_structure() {
        let l = labels(&[("a", "1"), ("b", "2")]);
        assert!(m("a == '1' && b == '2'", &l));
        assert!(!m("a == '1' && b == '3'", &l));
        assert!(m("a == '9' || b == '2'", &l));
        // && binds tighter than ||
        assert!(m("a == '1' || b == '9' && has(c)", &l));
        assert!(!m("(a == '1' || b == '9') && has(c)", &l));
        assert!(m("!(a == '2')", &l));
        assert!(!m("!!has(c)", &l));
        assert!(m("route-reflector != 'true' && !has(c)", &l));
    }

    #[test]
    fn errors() {
        for bad in [
            "a = 'x'",
            "a == x",
            "a ==",
            "has(a",
            "(a == 'x'",
            "a in {'x'",
            "a == 'x' b",
            "a",
            "a & b",
            "a == 'x",
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad} should fail");
        }
        assert!(Selector::parse("a").unwrap_err().contains("has(a)"));
    }

    #[test]
    fn display_and_all() {
        let s = Selector::parse("rack == 'r1'").unwrap();
        assert_eq!(s.to_string(), "rack == 'r1'");
        assert!(!s.is_all());
        assert!(Selector::parse(" all() ").unwrap().is_all());
        assert!(Selector::all().is_all());
    }
}
