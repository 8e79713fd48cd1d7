//! Distinguished names (RFC 4514): parsing, the normal form names are compared in,
//! escaping for output, and where a name sits in the served tree.
//!
//! Every attribute of an RDN in this tree matches case-insensitively, so the normal
//! form lowercases types and values; two spellings of one DN normalise alike.

/// One relative distinguished name, `type=value`, type lowercased, value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rdn {
    pub(crate) kind: String,
    pub(crate) value: String,
}

/// The most RDNs a DN may have: deeper names are refused before any work.
const MAX_RDNS: usize = 64;

/// Parses `text` into its RDNs, leftmost first. The empty DN is the root DSE (no
/// RDNs). Multi-valued RDNs (`a=1+b=2`) are refused: this tree has none.
pub(crate) fn parse(text: &str) -> Result<Vec<Rdn>, DnError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut rdns = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        if rdns.len() == MAX_RDNS {
            return Err(DnError::TooDeep);
        }
        let mut kind = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            kind.push(c);
        }
        let kind = kind.trim().to_ascii_lowercase();
        if kind.is_empty()
            || !kind
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(DnError::Syntax);
        }
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut value = String::new();
        let mut ended = false;
        // Trailing spaces are dropped unless escaped: keep where the unescaped tail starts.
        let mut escaped_len = 0;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let Some(next) = chars.next() else {
                        return Err(DnError::Syntax);
                    };
                    if next.is_ascii_hexdigit() {
                        let Some(low) = chars.next().filter(char::is_ascii_hexdigit) else {
                            return Err(DnError::Syntax);
                        };
                        let byte = u8::from_str_radix(&format!("{next}{low}"), 16)
                            .map_err(|_| DnError::Syntax)?;
                        // A UTF-8 sequence in hex pairs: collect the bytes, then decode.
                        let mut bytes = vec![byte];
                        while chars.peek() == Some(&'\\') {
                            let mut ahead = chars.clone();
                            ahead.next();
                            let (Some(h), Some(l)) = (ahead.next(), ahead.next()) else {
                                break;
                            };
                            if !(h.is_ascii_hexdigit() && l.is_ascii_hexdigit()) {
                                break;
                            }
                            bytes.push(
                                u8::from_str_radix(&format!("{h}{l}"), 16)
                                    .map_err(|_| DnError::Syntax)?,
                            );
                            chars = ahead;
                        }
                        value.push_str(std::str::from_utf8(&bytes).map_err(|_| DnError::Syntax)?);
                    } else {
                        value.push(next);
                    }
                    escaped_len = value.len();
                }
                ',' | ';' => {
                    ended = true;
                    break;
                }
                '+' => return Err(DnError::MultiValued),
                _ => value.push(c),
            }
        }
        let keep = value.trim_end().len().max(escaped_len);
        value.truncate(keep);
        if value.is_empty() {
            return Err(DnError::Syntax);
        }
        rdns.push(Rdn { kind, value });
        if !ended {
            return Ok(rdns);
        }
    }
}

/// Why a DN was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DnError {
    Syntax,
    MultiValued,
    TooDeep,
}

impl std::fmt::Display for DnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DnError::Syntax => "the DN does not parse",
            DnError::MultiValued => "multi-valued RDNs are not used in this directory",
            DnError::TooDeep => "the DN has too many RDNs",
        })
    }
}

/// The case-folded form of a value, as this tree compares RDN values (and every
/// case-insensitive attribute): Unicode lowercase, inner runs of spaces as one.
pub(crate) fn fold(value: &str) -> String {
    let mut folded = String::with_capacity(value.len());
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if !folded.is_empty() {
            folded.push(' ');
        }
        folded.push_str(&word.to_lowercase());
    }
    folded
}

/// The normal form of parsed RDNs: `type=folded value` joined by commas.
pub(crate) fn normal(rdns: &[Rdn]) -> String {
    let mut out = String::new();
    for (i, rdn) in rdns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&rdn.kind);
        out.push('=');
        out.push_str(&escape(&fold(&rdn.value)));
    }
    out
}

/// The normal form of a DN, or `None` when it does not parse.
pub(crate) fn normalize(text: &str) -> Option<String> {
    parse(text).ok().map(|rdns| normal(&rdns))
}

/// `value` escaped as an RDN value (RFC 4514 §2.4).
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

/// Where a DN sits in the served tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// The empty DN.
    RootDse,
    Base,
    People,
    Groups,
    Tokens,
    /// `uid=NAME,ou=people,BASE`: the RDN value as written.
    User(String),
    /// `cn=NAME,ou=groups,BASE`.
    Group(String),
    /// `cn=NAME,ou=tokens,BASE`.
    Token(String),
    /// Under the base, but no entry of this tree can be there.
    UnderBase,
    /// Outside the base.
    Outside,
}

/// The base DN: as configured (for output) and parsed (for comparison).
#[derive(Debug, Clone)]
pub struct BaseDn {
    pub(crate) text: String,
    pub(crate) rdns: Vec<Rdn>,
}

impl BaseDn {
    /// Parses a configured base DN: at least one RDN.
    pub fn parse(text: &str) -> Result<BaseDn, String> {
        let rdns = parse(text).map_err(|error| format!("base DN `{text}`: {error}"))?;
        if rdns.is_empty() {
            return Err("the base DN must not be empty".to_owned());
        }
        let text = rdns
            .iter()
            .map(|rdn| format!("{}={}", rdn.kind, escape(&rdn.value)))
            .collect::<Vec<_>>()
            .join(",");
        Ok(BaseDn { text, rdns })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn people(&self) -> String {
        format!("ou=people,{}", self.text)
    }

    pub(crate) fn groups(&self) -> String {
        format!("ou=groups,{}", self.text)
    }

    pub(crate) fn user(&self, username: &str) -> String {
        format!("uid={},ou=people,{}", escape(username), self.text)
    }

    pub(crate) fn group(&self, name: &str) -> String {
        format!("cn={},ou=groups,{}", escape(name), self.text)
    }

    pub(crate) fn token(&self, name: &str) -> String {
        format!("cn={},ou=tokens,{}", escape(name), self.text)
    }

    /// Where parsed `rdns` sit.
    pub(crate) fn place(&self, rdns: &[Rdn]) -> Place {
        if rdns.is_empty() {
            return Place::RootDse;
        }
        if rdns.len() < self.rdns.len() {
            return Place::Outside;
        }
        let (head, tail) = rdns.split_at(rdns.len() - self.rdns.len());
        let same = tail
            .iter()
            .zip(&self.rdns)
            .all(|(a, b)| a.kind == b.kind && fold(&a.value) == fold(&b.value));
        if !same {
            return Place::Outside;
        }
        let is = |rdn: &Rdn, kind: &str, value: &str| rdn.kind == kind && fold(&rdn.value) == value;
        match head {
            [] => Place::Base,
            [ou] if is(ou, "ou", "people") => Place::People,
            [ou] if is(ou, "ou", "groups") => Place::Groups,
            [ou] if is(ou, "ou", "tokens") => Place::Tokens,
            [leaf, ou] if leaf.kind == "uid" && is(ou, "ou", "people") => {
                Place::User(leaf.value.clone())
            }
            [leaf, ou] if leaf.kind == "cn" && is(ou, "ou", "groups") => {
                Place::Group(leaf.value.clone())
            }
            [leaf, ou] if leaf.kind == "cn" && is(ou, "ou", "tokens") => {
                Place::Token(leaf.value.clone())
            }
            _ => Place::UnderBase,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(base: &str, dn: &str) -> Place {
        BaseDn::parse(base).unwrap().place(&parse(dn).unwrap())
    }

    #[test]
    fn names_in_the_tree_are_found_whatever_their_spelling() {
        let base = "dc=example,dc=org";
        assert_eq!(
            place(base, "UID=Alice, OU=People,DC=Example,dc=ORG"),
            Place::User("Alice".into())
        );
        assert_eq!(
            place(base, "cn=ops\\, night,ou=groups,dc=example,dc=org"),
            Place::Group("ops, night".into())
        );
        assert_eq!(
            place(base, "cn=bastion,ou=tokens,dc=example,dc=org"),
            Place::Token("bastion".into())
        );
        assert_eq!(place(base, "ou=people,dc=example,dc=org"), Place::People);
        assert_eq!(place(base, "dc=example,dc=org"), Place::Base);
        assert_eq!(place(base, ""), Place::RootDse);
        assert_eq!(place(base, "dc=other,dc=org"), Place::Outside);
        assert_eq!(place(base, "cn=x,dc=example,dc=org"), Place::UnderBase);
    }

    #[test]
    fn escapes_round_trip() {
        for value in ["a,b", "#x", " lead", "trail ", "a+b=c", "é\\\"<>;"] {
            let dn = format!("cn={},dc=x", escape(value));
            let rdns = parse(&dn).unwrap();
            assert_eq!(rdns[0].value, value, "{dn}");
        }
        assert_eq!(parse("cn=caf\\C3\\A9,dc=x").unwrap()[0].value, "café");
    }

    #[test]
    fn malformed_names_are_refused() {
        for dn in [
            "cn",
            "=x",
            "cn=",
            "cn=a,",
            "cn=a+sn=b",
            "cn=\\",
            "cn=\\4",
            "c n=x",
        ] {
            assert!(parse(dn).is_err(), "{dn}");
        }
        let deep = vec!["cn=a"; 100].join(",");
        assert_eq!(parse(&deep), Err(DnError::TooDeep));
    }
}
