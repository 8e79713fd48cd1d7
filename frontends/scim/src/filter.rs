//! The SCIM filter language (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2), parsed.
//!
//! ```text
//! FILTER    = attrExp / logExp / valuePath / *1"not" "(" FILTER ")"
//! valuePath = attrPath "[" valFilter "]"
//! attrExp   = (attrPath SP "pr") / (attrPath SP compareOp SP compValue)
//! logExp    = FILTER SP ("and" / "or") SP FILTER
//! attrPath  = [URI ":"] ATTRNAME *1subAttr
//! PATH      = attrPath / valuePath [subAttr]
//! ```
//!
//! Precedence, loosest first: `or`, `and`, then `not`, grouping and single
//! expressions. Keywords and operators are case-insensitive. `and`/`or` chains become
//! one n-ary node, so a long chain is a wide tree, not a deep one; nesting (groups,
//! `not`, value paths) is bounded by [`Limits::max_depth`] and the text by
//! [`Limits::max_len`], so no input can exhaust the stack.
//!
//! This module only parses: what a path means (which attribute, which type, whether
//! it is case-exact) is decided against the schemas elsewhere.

use std::fmt;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every operand matches (two or more).
    And(Vec<Filter>),
    /// Some operand matches (two or more).
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// `attrPath pr`
    Present(AttrPath),
    /// `attrPath op value`
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `attrPath[valFilter]`: some value of a multi-valued attribute matches the inner
    /// filter, whose paths name sub-attributes.
    ValuePath {
        path: AttrPath,
        filter: Box<Filter>,
    },
}

/// `[URI ":"] ATTRNAME ["." ATTRNAME]`, names as written (matching is
/// case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URI, when the path is qualified (`urn:…:enterprise:2.0:User`).
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Lt,
    Ge,
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "lt" => CompareOp::Lt,
            "ge" => CompareOp::Ge,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }

    /// Whether the operator orders values (`gt`, `lt`, `ge`, `le`).
    pub fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Lt | CompareOp::Ge | CompareOp::Le
        )
    }
}

/// `false / null / true / number / string`, as in JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
}

/// A PATCH operation's `path`: `attrPath`, or `attrPath[valFilter]` with an optional
/// `.subAttr`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    /// The value filter, for `attrPath[valFilter]`.
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter (`emails[type eq "work"].value`).
    pub sub: Option<String>,
}

impl PatchPath {
    /// The sub-attribute the path ends in, written either way (`name.givenName` or
    /// `emails[…].value`).
    pub fn sub_attribute(&self) -> Option<&str> {
        self.sub.as_deref().or(self.attr.sub.as_deref())
    }
}

// Printing: the text of a parsed filter or path, which parses back to the same value
// (the fuzz targets check this round trip). Keywords and operators come out lowercase
// and single-spaced, strings as JSON literals, and a group only where the structure
// needs one (an `and` or `or` operand of its own kind, or an `or` under `and`), so the
// text nests no deeper than any text that parses to the same filter.

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Lt => "lt",
            CompareOp::Ge => "ge",
            CompareOp::Le => "le",
        })
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(value) => write!(f, "{value}"),
            CompValue::Number(number) => write!(f, "{number}"),
            // A JSON string literal is exactly what the tokenizer decodes.
            CompValue::String(text) => {
                f.write_str(&serde_json::to_string(text).map_err(|_| fmt::Error)?)
            }
        }
    }
}

impl Filter {
    /// Writes one operand of an `and` (`within_and`) or an `or`.
    fn fmt_operand(&self, f: &mut fmt::Formatter<'_>, within_and: bool) -> fmt::Result {
        // `a and b or c` already reads as `(a and b) or c`: an `and` under `or` needs
        // no group. Any other `and` or `or` operand does, or it would join its parent.
        let grouped = match self {
            Filter::And(_) => within_and,
            Filter::Or(_) => true,
            _ => false,
        };
        if grouped {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::And(operands) | Filter::Or(operands) => {
                let within_and = matches!(self, Filter::And(_));
                let joiner = if within_and { " and " } else { " or " };
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        f.write_str(joiner)?;
                    }
                    operand.fmt_operand(f, within_and)?;
                }
                Ok(())
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::ValuePath { path, filter } => write!(f, "{path}[{filter}]"),
        }
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// Bounds on what the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest text, in bytes.
    pub max_len: usize,
    /// The deepest nesting of groups, `not` and value paths.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_len: 4096,
            max_depth: 16,
        }
    }
}

/// Why a filter or path was refused, with the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for FilterError {}

fn error(offset: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        offset,
        message: message.into(),
    }
}

/// Parses a filter with the default [`Limits`].
pub fn parse_filter(text: &str) -> Result<Filter, FilterError> {
    parse_filter_with(text, Limits::default())
}

/// Parses a filter (the `filter` query parameter or a search request's).
pub fn parse_filter_with(text: &str, limits: Limits) -> Result<Filter, FilterError> {
    let mut parser = Parser::new(text, limits)?;
    if parser.tokens.is_empty() {
        return Err(error(0, "the filter is empty"));
    }
    let filter = parser.or(0, false)?;
    parser.finish()?;
    Ok(filter)
}

/// Parses a PATCH path with the default [`Limits`].
pub fn parse_path(text: &str) -> Result<PatchPath, FilterError> {
    parse_path_with(text, Limits::default())
}

/// Parses a PATCH operation's `path`.
pub fn parse_path_with(text: &str, limits: Limits) -> Result<PatchPath, FilterError> {
    let mut parser = Parser::new(text, limits)?;
    let (attr, offset) = match parser.next() {
        Some(Token {
            kind: TokenKind::Word(word),
            offset,
        }) => (attr_path(&word, offset)?, offset),
        Some(token) => return Err(error(token.offset, "expected an attribute path")),
        None => return Err(error(0, "the path is empty")),
    };
    let mut path = PatchPath {
        attr,
        filter: None,
        sub: None,
    };
    if parser.peek_is(|kind| matches!(kind, TokenKind::LBracket)) {
        let bracket = parser.next().map_or(offset, |t| t.offset);
        if path.attr.sub.is_some() {
            return Err(error(
                bracket,
                "a value filter follows an attribute, not a sub-attribute",
            ));
        }
        path.filter = Some(parser.or(1, true)?);
        parser.expect(|k| matches!(k, TokenKind::RBracket), "`]`")?;
        if let Some(token) = parser.next() {
            match token.kind {
                TokenKind::Word(word) if word.starts_with('.') => {
                    let name = &word[1..];
                    check_name(name, token.offset + 1)?;
                    path.sub = Some(name.to_owned());
                }
                _ => {
                    return Err(error(
                        token.offset,
                        "expected `.subAttribute` or the end of the path",
                    ));
                }
            }
        }
    }
    parser.finish()?;
    Ok(path)
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A JSON string literal, decoded.
    String(String),
    /// An attribute path, a keyword, an operator, a number, `true`, `false`, `null`.
    Word(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: TokenKind,
    offset: usize,
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b':' | b'.' | b'_' | b'-' | b'$' | b'+')
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        let kind = match byte {
            b' ' | b'\t' | b'\r' | b'\n' => {
                at += 1;
                continue;
            }
            b'(' => TokenKind::LParen,
            b')' => TokenKind::RParen,
            b'[' => TokenKind::LBracket,
            b']' => TokenKind::RBracket,
            b'"' => {
                let start = at;
                at += 1;
                loop {
                    match bytes.get(at) {
                        None => return Err(error(start, "unterminated string")),
                        Some(b'\\') => at += 2,
                        Some(b'"') => break,
                        Some(_) => at += 1,
                    }
                }
                at += 1;
                let literal = &text[start..at];
                let decoded: String = serde_json::from_str(literal)
                    .map_err(|_| error(start, "invalid string literal"))?;
                tokens.push(Token {
                    kind: TokenKind::String(decoded),
                    offset: start,
                });
                continue;
            }
            byte if is_word_byte(byte) => {
                let start = at;
                while at < bytes.len() && is_word_byte(bytes[at]) {
                    at += 1;
                }
                tokens.push(Token {
                    kind: TokenKind::Word(text[start..at].to_owned()),
                    offset: start,
                });
                continue;
            }
            _ => {
                let shown = text[at..].chars().next().unwrap_or('?');
                return Err(error(at, format!("unexpected character `{shown}`")));
            }
        };
        tokens.push(Token { kind, offset: at });
        at += 1;
    }
    Ok(tokens)
}

/// `ALPHA *(ALPHA / DIGIT / "-" / "_")`, and `$ref`, which the RFC's own schemas use.
fn check_name(name: &str, offset: usize) -> Result<(), FilterError> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        Some('$') => name == "$ref",
        Some(first) if first.is_ascii_alphabetic() => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(error(offset, format!("`{name}` is not an attribute name")))
    }
}

/// Splits `urn:…:name.sub`, `name.sub` or `name` into an [`AttrPath`].
fn attr_path(word: &str, offset: usize) -> Result<AttrPath, FilterError> {
    let (uri, rest, rest_offset) = if word.len() > 4 && word[..4].eq_ignore_ascii_case("urn:") {
        match word.rfind(':') {
            Some(colon) if colon > 4 => (
                Some(word[..colon].to_owned()),
                &word[colon + 1..],
                offset + colon + 1,
            ),
            _ => return Err(error(offset, format!("`{word}` is not an attribute path"))),
        }
    } else {
        (None, word, offset)
    };
    let mut parts = rest.splitn(3, '.');
    let name = parts.next().unwrap_or_default();
    check_name(name, rest_offset)?;
    let sub = match parts.next() {
        Some(sub) => {
            check_name(sub, rest_offset + name.len() + 1)?;
            Some(sub.to_owned())
        }
        None => None,
    };
    if parts.next().is_some() {
        return Err(error(
            offset,
            format!("`{word}` goes deeper than one sub-attribute"),
        ));
    }
    Ok(AttrPath {
        uri,
        name: name.to_owned(),
        sub,
    })
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    limits: Limits,
    len: usize,
}

impl Parser {
    fn new(text: &str, limits: Limits) -> Result<Parser, FilterError> {
        if text.len() > limits.max_len {
            return Err(error(
                limits.max_len,
                format!("longer than {} bytes", limits.max_len),
            ));
        }
        Ok(Parser {
            tokens: tokenize(text)?,
            position: 0,
            limits,
            len: text.len(),
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn peek_is(&self, test: impl Fn(&TokenKind) -> bool) -> bool {
        self.peek().is_some_and(|t| test(&t.kind))
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        self.peek_is(|kind| matches!(kind, TokenKind::Word(w) if w.eq_ignore_ascii_case(keyword)))
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        if token.is_some() {
            self.position += 1;
        }
        token
    }

    fn offset(&self) -> usize {
        self.peek().map_or(self.len, |t| t.offset)
    }

    fn expect(&mut self, test: impl Fn(&TokenKind) -> bool, what: &str) -> Result<(), FilterError> {
        match self.next() {
            Some(token) if test(&token.kind) => Ok(()),
            Some(token) => Err(error(token.offset, format!("expected {what}"))),
            None => Err(error(self.len, format!("expected {what} before the end"))),
        }
    }

    fn finish(&self) -> Result<(), FilterError> {
        match self.peek() {
            None => Ok(()),
            Some(token) => Err(error(token.offset, "unexpected text after the expression")),
        }
    }

    fn deeper(&self, depth: usize) -> Result<usize, FilterError> {
        if depth >= self.limits.max_depth {
            return Err(error(
                self.offset(),
                format!("nested deeper than {} levels", self.limits.max_depth),
            ));
        }
        Ok(depth + 1)
    }

    fn or(&mut self, depth: usize, in_brackets: bool) -> Result<Filter, FilterError> {
        let mut operands = vec![self.and(depth, in_brackets)?];
        while self.peek_keyword("or") {
            self.position += 1;
            operands.push(self.and(depth, in_brackets)?);
        }
        Ok(if operands.len() == 1 {
            operands.pop().expect("one operand")
        } else {
            Filter::Or(operands)
        })
    }

    fn and(&mut self, depth: usize, in_brackets: bool) -> Result<Filter, FilterError> {
        let mut operands = vec![self.unary(depth, in_brackets)?];
        while self.peek_keyword("and") {
            self.position += 1;
            operands.push(self.unary(depth, in_brackets)?);
        }
        Ok(if operands.len() == 1 {
            operands.pop().expect("one operand")
        } else {
            Filter::And(operands)
        })
    }

    fn unary(&mut self, depth: usize, in_brackets: bool) -> Result<Filter, FilterError> {
        let is_not = self.peek_keyword("not")
            && matches!(
                self.tokens.get(self.position + 1).map(|t| &t.kind),
                Some(TokenKind::LParen)
            );
        if is_not {
            let depth = self.deeper(depth)?;
            self.position += 2;
            let inner = self.or(depth, in_brackets)?;
            self.expect(|k| matches!(k, TokenKind::RParen), "`)`")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        let Some(token) = self.next() else {
            return Err(error(self.len, "expected an expression before the end"));
        };
        match token.kind {
            TokenKind::LParen => {
                let depth = self.deeper(depth)?;
                let inner = self.or(depth, in_brackets)?;
                self.expect(|k| matches!(k, TokenKind::RParen), "`)`")?;
                Ok(inner)
            }
            TokenKind::Word(word) => {
                let path = attr_path(&word, token.offset)?;
                if self.peek_is(|k| matches!(k, TokenKind::LBracket)) {
                    let bracket = self.offset();
                    if in_brackets {
                        return Err(error(bracket, "value filters cannot be nested"));
                    }
                    if path.sub.is_some() {
                        return Err(error(
                            bracket,
                            "a value filter follows an attribute, not a sub-attribute",
                        ));
                    }
                    let depth = self.deeper(depth)?;
                    self.position += 1;
                    let inner = self.or(depth, true)?;
                    self.expect(|k| matches!(k, TokenKind::RBracket), "`]`")?;
                    return Ok(Filter::ValuePath {
                        path,
                        filter: Box::new(inner),
                    });
                }
                self.comparison(path)
            }
            _ => Err(error(
                token.offset,
                "expected an attribute path, `(` or `not (`",
            )),
        }
    }

    fn comparison(&mut self, path: AttrPath) -> Result<Filter, FilterError> {
        let offset = self.offset();
        let operator = match self.next() {
            Some(Token {
                kind: TokenKind::Word(word),
                ..
            }) => word,
            _ => {
                return Err(error(
                    offset,
                    format!("expected an operator after `{path}`"),
                ));
            }
        };
        if operator.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::parse(&operator)
            .ok_or_else(|| error(offset, format!("`{operator}` is not an operator")))?;
        let value_offset = self.offset();
        let value = match self.next().map(|t| t.kind) {
            Some(TokenKind::String(text)) => CompValue::String(text),
            Some(TokenKind::Word(word)) => match word.to_ascii_lowercase().as_str() {
                "true" => CompValue::Bool(true),
                "false" => CompValue::Bool(false),
                "null" => CompValue::Null,
                _ => CompValue::Number(
                    serde_json::from_str::<serde_json::Number>(&word)
                        .map_err(|_| error(value_offset, format!("`{word}` is not a value")))?,
                ),
            },
            _ => {
                return Err(error(
                    value_offset,
                    format!("expected a value after `{path} {operator}`"),
                ));
            }
        };
        Ok(Filter::Compare { path, op, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> AttrPath {
        attr_path(text, 0).unwrap()
    }

    fn eq(attr: &str, value: &str) -> Filter {
        Filter::Compare {
            path: path(attr),
            op: CompareOp::Eq,
            value: CompValue::String(value.to_owned()),
        }
    }

    fn fails(text: &str) -> FilterError {
        parse_filter(text).expect_err(text)
    }

    #[test]
    fn simple_comparisons() {
        assert_eq!(
            parse_filter(r#"userName eq "bjensen""#),
            Ok(eq("userName", "bjensen"))
        );
        assert_eq!(parse_filter("title pr"), Ok(Filter::Present(path("title"))));
        assert_eq!(
            parse_filter("meta.lastModified gt \"2011-05-13T04:42:34Z\""),
            Ok(Filter::Compare {
                path: path("meta.lastModified"),
                op: CompareOp::Gt,
                value: CompValue::String("2011-05-13T04:42:34Z".to_owned()),
            })
        );
        assert_eq!(
            parse_filter("active EQ True"),
            Ok(Filter::Compare {
                path: path("active"),
                op: CompareOp::Eq,
                value: CompValue::Bool(true),
            })
        );
        assert_eq!(
            parse_filter("x le -1.5e3").map(|f| matches!(
                f,
                Filter::Compare {
                    value: CompValue::Number(_),
                    ..
                }
            )),
            Ok(true)
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let filter = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
        assert_eq!(
            filter,
            Filter::Or(vec![
                eq("a", "1"),
                Filter::And(vec![eq("b", "2"), eq("c", "3")])
            ])
        );
        let grouped = parse_filter(r#"(a eq "1" or b eq "2") and c eq "3""#).unwrap();
        assert_eq!(
            grouped,
            Filter::And(vec![
                Filter::Or(vec![eq("a", "1"), eq("b", "2")]),
                eq("c", "3")
            ])
        );
    }

    #[test]
    fn not_takes_a_group() {
        assert_eq!(
            parse_filter(r#"not (a eq "1") and b eq "2""#).unwrap(),
            Filter::And(vec![Filter::Not(Box::new(eq("a", "1"))), eq("b", "2")])
        );
        assert_eq!(
            parse_filter(r#"NOT(a eq "1")"#).unwrap(),
            Filter::Not(Box::new(eq("a", "1")))
        );
    }

    #[test]
    fn value_paths_and_urns() {
        let filter = parse_filter(r#"emails[type eq "work" and value co "@example.com"]"#).unwrap();
        assert_eq!(
            filter,
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(Filter::And(vec![
                    eq("type", "work"),
                    Filter::Compare {
                        path: path("value"),
                        op: CompareOp::Co,
                        value: CompValue::String("@example.com".to_owned()),
                    }
                ])),
            }
        );
        let urn = parse_filter(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName co "O'Malley""#,
        )
        .unwrap();
        let Filter::Compare { path, .. } = urn else {
            panic!("a comparison")
        };
        assert_eq!(
            path.uri.as_deref(),
            Some("urn:ietf:params:scim:schemas:core:2.0:User")
        );
        assert_eq!(
            (path.name.as_str(), path.sub.as_deref()),
            ("name", Some("familyName"))
        );
    }

    #[test]
    fn string_escapes_are_json() {
        assert_eq!(
            parse_filter(r#"userName eq "a\"b\u0041""#),
            Ok(eq("userName", "a\"bA"))
        );
    }

    #[test]
    fn malformed_filters_are_refused() {
        for text in [
            "",
            "userName",
            "userName eq",
            "userName xx \"a\"",
            "userName eq \"a",
            "(userName eq \"a\"",
            "userName eq \"a\")",
            "userName eq \"a\" and",
            "not userName eq \"a\"",
            "emails[type eq \"work\"",
            "emails[type[value eq \"x\"] eq \"y\"]",
            "a.b.c eq \"x\"",
            "1abc eq \"x\"",
            "userName eq bareword",
            "userName eq \"a\" junk",
            "userName eq \"\u{1}\"",
        ] {
            fails(text);
        }
    }

    #[test]
    fn depth_and_length_are_bounded() {
        let deep = format!("{}a pr{}", "(".repeat(17), ")".repeat(17));
        assert!(fails(&deep).message.contains("nested deeper"));
        let ok = format!("{}a pr{}", "(".repeat(15), ")".repeat(15));
        assert!(parse_filter(&ok).is_ok());
        let long = format!("userName eq \"{}\"", "x".repeat(5000));
        assert!(fails(&long).message.contains("longer than"));
        // A long chain is wide, not deep.
        let chain = vec!["a pr"; 400].join(" and ");
        assert!(matches!(parse_filter(&chain), Ok(Filter::And(v)) if v.len() == 400));
    }

    #[test]
    fn patch_paths() {
        assert_eq!(
            parse_path("members").unwrap(),
            PatchPath {
                attr: path("members"),
                filter: None,
                sub: None
            }
        );
        let work = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(work.filter, Some(eq("type", "work")));
        assert_eq!(work.sub_attribute(), Some("value"));
        assert_eq!(
            parse_path("name.givenName").unwrap().sub_attribute(),
            Some("givenName")
        );
        let urn =
            parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
                .unwrap();
        assert_eq!(urn.attr.name, "department");
        for bad in [
            "",
            "emails[",
            "emails[type eq \"work\"]value",
            "emails[type eq \"work\"].",
            "name.givenName[type eq \"x\"]",
            "members[value eq \"1\"] extra",
            "a b",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    /// Parses `text`, prints it, and checks the print: `expected`, and parsing back to
    /// the same filter.
    fn prints(text: &str, expected: &str) {
        let filter = parse_filter(text).unwrap();
        let printed = filter.to_string();
        assert_eq!(printed, expected, "{text}");
        assert_eq!(parse_filter(&printed), Ok(filter), "{text} → {printed}");
    }

    #[test]
    fn filters_print_as_text_that_parses_back() {
        prints(r#"userName Eq "bjensen""#, r#"userName eq "bjensen""#);
        prints("title  PR", "title pr");
        prints("active eq TRUE", "active eq true");
        prints("manager eq NULL", "manager eq null");
        prints("x le -1.5e3", "x le -1500.0");
        prints("x gt 10", "x gt 10");
        prints(r#"a eq "q\"u\u0041\n""#, r#"a eq "q\"uA\n""#);
        // Groups only where the structure needs one.
        prints(
            r#"a eq "1" or (b eq "2" and c eq "3")"#,
            r#"a eq "1" or b eq "2" and c eq "3""#,
        );
        prints("(a pr or b pr) and c pr", "(a pr or b pr) and c pr");
        prints("(a pr and b pr) and c pr", "(a pr and b pr) and c pr");
        prints("a pr or (b pr or c pr)", "a pr or (b pr or c pr)");
        prints("((((a pr))))", "a pr");
        prints("NOT(a pr)", "not (a pr)");
        prints("not (a pr or b pr) and c pr", "not (a pr or b pr) and c pr");
        prints(
            r#"emails[type eq "work" and (value co "@" or primary eq true)]"#,
            r#"emails[type eq "work" and (value co "@" or primary eq true)]"#,
        );
        prints(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName co "O'Malley""#,
            r#"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName co "O'Malley""#,
        );
        // Keywords are names too where the grammar expects a name.
        prints("and pr and not pr or or pr", "and pr and not pr or or pr");
    }

    #[test]
    fn patch_paths_print_as_text_that_parses_back() {
        for (text, expected) in [
            ("members", "members"),
            ("name.givenName", "name.givenName"),
            (
                r#"emails[type EQ "work"].value"#,
                r#"emails[type eq "work"].value"#,
            ),
            (
                r#"members[value eq "1" or (value eq "2")]"#,
                r#"members[value eq "1" or value eq "2"]"#,
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
            ),
        ] {
            let path = parse_path(text).unwrap();
            let printed = path.to_string();
            assert_eq!(printed, expected, "{text}");
            assert_eq!(parse_path(&printed), Ok(path), "{text} → {printed}");
        }
    }
}
