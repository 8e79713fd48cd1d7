//! Search filters (RFC 4511 §4.5.1, RFC 4515): a decoded `LdapFilter` compiled once
//! per search against the schema and the snapshot, then evaluated on each entry in
//! three-valued logic (an unknown attribute type or a value that is not of its
//! syntax is Undefined, and only True returns an entry).
//!
//! The in-chain matching rule of Active Directory (`1.2.840.113556.1.4.1941`) on
//! `memberOf` and `member` is resolved at compile time into the set of entries it
//! matches, so evaluation stays a lookup.

use std::collections::HashSet;

use ldap3_proto::LdapFilter;
use ldap3_proto::proto::{LdapMatchingRuleAssertion, LdapSubstringFilter};
use portcullis_engine::Id;

use crate::directory::{Entry, View, members_in_chain};
use crate::dn::{self, Place};
use crate::schema::{self, AttributeType, Normal, Syntax};

/// LDAP_MATCHING_RULE_IN_CHAIN.
pub const IN_CHAIN: &str = "1.2.840.113556.1.4.1941";

/// A compiled filter.
#[derive(Debug)]
pub(crate) enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Equal(&'static AttributeType, Normal),
    Substrings {
        kind: &'static AttributeType,
        initial: Option<String>,
        any: Vec<String>,
        last: Option<String>,
    },
    AtLeast(&'static AttributeType, Normal),
    AtMost(&'static AttributeType, Normal),
    Present(&'static AttributeType),
    /// Entries whose user or group id is in the set.
    Ids(HashSet<Id>),
    /// Entries whose DN has an RDN `type=value` (the `dnAttributes` flag).
    DnHas(String, String),
    /// Always this answer: `(objectClass=*)` on any entry is True, an unknown
    /// attribute Undefined, an empty set False.
    Constant(Truth),
}

/// Three-valued logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truth {
    True,
    False,
    Undefined,
}

/// Why a filter was refused before any entry was looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FilterError {
    TooDeep(usize),
    TooLarge(usize),
}

/// The limits a filter is compiled under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FilterLimits {
    pub(crate) depth: usize,
    pub(crate) terms: usize,
}

/// Compiles `filter` for `view`.
pub(crate) fn compile(
    filter: &LdapFilter,
    view: &View<'_>,
    limits: FilterLimits,
) -> Result<Filter, FilterError> {
    let mut terms = 0;
    compile_at(filter, view, limits, 1, &mut terms)
}

fn compile_at(
    filter: &LdapFilter,
    view: &View<'_>,
    limits: FilterLimits,
    depth: usize,
    terms: &mut usize,
) -> Result<Filter, FilterError> {
    if depth > limits.depth {
        return Err(FilterError::TooDeep(limits.depth));
    }
    *terms += 1;
    if *terms > limits.terms {
        return Err(FilterError::TooLarge(limits.terms));
    }
    let mut list = |filters: &[LdapFilter]| -> Result<Vec<Filter>, FilterError> {
        filters
            .iter()
            .map(|f| compile_at(f, view, limits, depth + 1, terms))
            .collect()
    };
    Ok(match filter {
        LdapFilter::And(filters) => Filter::And(list(filters)?),
        LdapFilter::Or(filters) => Filter::Or(list(filters)?),
        LdapFilter::Not(inner) => {
            Filter::Not(Box::new(compile_at(inner, view, limits, depth + 1, terms)?))
        }
        LdapFilter::Equality(name, value) | LdapFilter::Approx(name, value) => {
            assertion(name, value, Filter::Equal)
        }
        LdapFilter::GreaterOrEqual(name, value) => ordering(name, value, Filter::AtLeast),
        LdapFilter::LessOrEqual(name, value) => ordering(name, value, Filter::AtMost),
        LdapFilter::Present(name) => match schema::lookup(name) {
            Some(kind) if kind.name == "objectClass" => Filter::Constant(Truth::True),
            Some(kind) => Filter::Present(kind),
            None => Filter::Constant(Truth::False),
        },
        LdapFilter::Substring(name, pieces) => substrings(name, pieces),
        LdapFilter::Extensible(assertion) => extensible(assertion, view),
    })
}

fn assertion(
    name: &str,
    value: &str,
    make: fn(&'static AttributeType, Normal) -> Filter,
) -> Filter {
    let Some(kind) = schema::lookup(name) else {
        return Filter::Constant(Truth::Undefined);
    };
    match schema::normal(kind.syntax, value) {
        Some(normal) => make(kind, normal),
        None => Filter::Constant(Truth::Undefined),
    }
}

fn ordering(name: &str, value: &str, make: fn(&'static AttributeType, Normal) -> Filter) -> Filter {
    match schema::lookup(name) {
        // No ordering rule for DNs.
        Some(kind) if kind.syntax == Syntax::Dn => Filter::Constant(Truth::Undefined),
        _ => assertion(name, value, make),
    }
}

fn substrings(name: &str, pieces: &LdapSubstringFilter) -> Filter {
    let Some(kind) = schema::lookup(name) else {
        return Filter::Constant(Truth::Undefined);
    };
    if matches!(kind.syntax, Syntax::Integer | Syntax::Dn | Syntax::Time) {
        return Filter::Constant(Truth::Undefined);
    }
    let piece = |text: &str| -> String { substring_normal(kind.syntax, text) };
    Filter::Substrings {
        kind,
        initial: pieces.initial.as_deref().map(piece),
        any: pieces.any.iter().map(|p| piece(p)).collect(),
        last: pieces.final_.as_deref().map(piece),
    }
}

/// A substring piece or a value, as substring matching compares them: like equality
/// but without dropping the spaces at the ends of a piece.
fn substring_normal(syntax: Syntax, text: &str) -> String {
    match syntax {
        Syntax::CaseIgnore => text.to_lowercase(),
        Syntax::Telephone => text
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect(),
        _ => text.to_owned(),
    }
}

fn extensible(assertion: &LdapMatchingRuleAssertion, view: &View<'_>) -> Filter {
    let rule = assertion.matching_rule.as_deref();
    let kind = assertion.type_.as_deref().and_then(schema::lookup);
    let value = assertion.match_value.as_str();
    let base = match (rule, kind) {
        (Some(IN_CHAIN), Some(kind)) => in_chain(kind, value, view),
        (Some(IN_CHAIN), None) => Filter::Constant(Truth::Undefined),
        // A named matching rule this directory knows: the attribute's own rule, which
        // for every attribute here is the one its syntax names.
        (Some("2.5.13.2" | "caseIgnoreMatch"), Some(kind)) => {
            match schema::normal(Syntax::CaseIgnore, value) {
                Some(normal) => Filter::Equal(kind, normal),
                None => Filter::Constant(Truth::Undefined),
            }
        }
        (Some(_), _) => Filter::Constant(Truth::Undefined),
        (None, Some(kind)) => match schema::normal(kind.syntax, value) {
            Some(normal) => Filter::Equal(kind, normal),
            None => Filter::Constant(Truth::Undefined),
        },
        (None, None) => Filter::Constant(Truth::Undefined),
    };
    match (assertion.dn_attributes, assertion.type_.as_deref()) {
        (true, Some(name)) => Filter::Or(vec![
            base,
            Filter::DnHas(name.to_ascii_lowercase(), dn::fold(value)),
        ]),
        _ => base,
    }
}

/// `memberOf:IN_CHAIN:=G`: every user and group inside G through any chain of
/// memberships; `member:IN_CHAIN:=X`: every group X sits in through any chain.
fn in_chain(kind: &AttributeType, value: &str, view: &View<'_>) -> Filter {
    let Ok(rdns) = dn::parse(value) else {
        return Filter::Constant(Truth::Undefined);
    };
    let place = view.base.place(&rdns);
    match (kind.name, place) {
        ("memberOf", Place::Group(name)) => match view.group_named(&name) {
            Some(group) => Filter::Ids(members_in_chain(view.snapshot, group.id, view.at)),
            None => Filter::Constant(Truth::False),
        },
        ("member", Place::User(name)) => match view.user_named(&name) {
            Some(user) => Filter::Ids(
                view.snapshot
                    .user_groups(&user.id.to_string(), view.at)
                    .into_iter()
                    .map(|g| g.id)
                    .collect(),
            ),
            None => Filter::Constant(Truth::False),
        },
        ("member", Place::Group(name)) => match view.group_named(&name) {
            Some(group) => Filter::Ids(
                view.snapshot
                    .group_groups(&group.id.to_string(), view.at)
                    .into_iter()
                    .map(|g| g.id)
                    .collect(),
            ),
            None => Filter::Constant(Truth::False),
        },
        ("memberOf" | "member", _) => Filter::Constant(Truth::False),
        _ => Filter::Constant(Truth::Undefined),
    }
}

impl Filter {
    pub(crate) fn matches(&self, entry: &Entry) -> bool {
        self.eval(entry) == Truth::True
    }

    fn eval(&self, entry: &Entry) -> Truth {
        match self {
            Filter::And(filters) => {
                let mut truth = Truth::True;
                for filter in filters {
                    match filter.eval(entry) {
                        Truth::False => return Truth::False,
                        Truth::Undefined => truth = Truth::Undefined,
                        Truth::True => {}
                    }
                }
                truth
            }
            Filter::Or(filters) => {
                let mut truth = Truth::False;
                for filter in filters {
                    match filter.eval(entry) {
                        Truth::True => return Truth::True,
                        Truth::Undefined => truth = Truth::Undefined,
                        Truth::False => {}
                    }
                }
                truth
            }
            Filter::Not(inner) => match inner.eval(entry) {
                Truth::True => Truth::False,
                Truth::False => Truth::True,
                Truth::Undefined => Truth::Undefined,
            },
            Filter::Equal(kind, wanted) => any_value(entry, kind, |v| v == *wanted),
            Filter::AtLeast(kind, bound) => any_value(entry, kind, |v| v >= *bound),
            Filter::AtMost(kind, bound) => any_value(entry, kind, |v| v <= *bound),
            Filter::Present(kind) => truth(entry.get(kind).is_some()),
            Filter::Substrings {
                kind,
                initial,
                any,
                last,
            } => {
                let Some(values) = entry.get(kind) else {
                    return Truth::False;
                };
                truth(values.iter().any(|value| {
                    let value = substring_normal(kind.syntax, value);
                    substrings_match(&value, initial.as_deref(), any, last.as_deref())
                }))
            }
            Filter::Ids(ids) => truth(entry.id.is_some_and(|id| ids.contains(&id))),
            Filter::DnHas(kind, value) => {
                let rdns = dn::parse(&entry.dn).unwrap_or_default();
                truth(
                    rdns.iter()
                        .any(|rdn| rdn.kind == *kind && dn::fold(&rdn.value) == *value),
                )
            }
            Filter::Constant(truth) => *truth,
        }
    }

    /// The username every entry this filter can match has, when the filter says so
    /// (`(uid=X)`, alone or in an `&`): lets a search look at one user, not all.
    pub(crate) fn only_username(&self) -> Option<&str> {
        match self {
            Filter::Equal(kind, Normal::Text(value)) if kind.name == "uid" => Some(value),
            Filter::And(filters) => filters.iter().find_map(Filter::only_username),
            _ => None,
        }
    }
}

fn truth(value: bool) -> Truth {
    if value { Truth::True } else { Truth::False }
}

fn any_value(entry: &Entry, kind: &AttributeType, test: impl Fn(Normal) -> bool) -> Truth {
    let Some(values) = entry.get(kind) else {
        return Truth::False;
    };
    truth(
        values
            .iter()
            .filter_map(|value| schema::normal(kind.syntax, value))
            .any(test),
    )
}

fn substrings_match(
    value: &str,
    initial: Option<&str>,
    any: &[String],
    last: Option<&str>,
) -> bool {
    let mut rest = value;
    if let Some(initial) = initial {
        let Some(after) = rest.strip_prefix(initial) else {
            return false;
        };
        rest = after;
    }
    for piece in any {
        let Some(at) = rest.find(piece.as_str()) else {
            return false;
        };
        rest = &rest[at + piece.len()..];
    }
    last.is_none_or(|last| rest.ends_with(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substrings_do_not_overlap() {
        assert!(substrings_match("alice", Some("al"), &[], Some("ice")));
        assert!(!substrings_match("alce", Some("al"), &[], Some("lce")));
        assert!(substrings_match(
            "a-b-c",
            None,
            &["-".into(), "-".into()],
            None
        ));
        assert!(!substrings_match(
            "a-b",
            None,
            &["-".into(), "-".into()],
            None
        ));
    }
}
