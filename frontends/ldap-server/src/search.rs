//! Searches: the base entry and scope, the filter, the size and time limits, and the
//! attributes an answer carries.

use std::time::Instant;

use ldap3_proto::proto::{LdapPartialAttribute, LdapSearchResultEntry, LdapSearchScope};

use crate::directory::{Entry, EntryRef, View};
use crate::filter::Filter;
use crate::schema::{self, AttributeType};

/// Which entries a search looked at and which matched.
pub(crate) struct Found {
    pub(crate) matches: Vec<EntryRef>,
    /// The search stopped at its time limit.
    pub(crate) timed_out: bool,
    /// It stopped at `limit + 1` matches: more than the limit.
    pub(crate) over_limit: bool,
}

/// How often (in entries looked at) the time limit is checked.
const CLOCK_EVERY: usize = 256;

/// The entries under `base` in `scope` that `filter` matches, in tree order: at most
/// `limit + 1`, and only until `deadline`.
pub(crate) fn find(
    view: &View<'_>,
    base: EntryRef,
    scope: &LdapSearchScope,
    filter: &Filter,
    limit: usize,
    deadline: Instant,
) -> Found {
    let mut found = Found {
        matches: Vec::new(),
        timed_out: false,
        over_limit: false,
    };
    let mut looked = 0usize;
    let mut consider = |reference: EntryRef, found: &mut Found| -> bool {
        looked += 1;
        if looked % CLOCK_EVERY == 0 && Instant::now() >= deadline {
            found.timed_out = true;
            return false;
        }
        if let Some(entry) = view.entry(reference) {
            if filter.matches(&entry) {
                found.matches.push(reference);
                if found.matches.len() > limit {
                    found.over_limit = true;
                    return false;
                }
            }
        }
        true
    };
    // `(uid=X)`: only that user can match; look at it alone.
    if let Some(username) = filter.only_username() {
        let user = view
            .user_named(username)
            .map(|user| EntryRef::User(user.id));
        let in_scope = |user: EntryRef| match (scope, base) {
            (LdapSearchScope::Base, base) => base == user,
            (LdapSearchScope::OneLevel, base) => base == EntryRef::People,
            (_, EntryRef::Base | EntryRef::People) => true,
            (_, base) => base == user,
        };
        if let Some(user) = user.filter(|user| in_scope(*user)) {
            consider(user, &mut found);
        }
        return found;
    }
    match scope {
        LdapSearchScope::Base => {
            consider(base, &mut found);
        }
        LdapSearchScope::OneLevel => {
            for child in view.children(base) {
                if !consider(child, &mut found) {
                    break;
                }
            }
        }
        LdapSearchScope::Subtree | LdapSearchScope::Children => {
            let mut stack = vec![base];
            let mut first = true;
            while let Some(reference) = stack.pop() {
                let skip = first && matches!(scope, LdapSearchScope::Children);
                first = false;
                if !skip && !consider(reference, &mut found) {
                    break;
                }
                let children: Vec<EntryRef> = view.children(reference).collect();
                stack.extend(children.into_iter().rev());
            }
        }
    }
    found
}

/// Which attributes an answer carries (RFC 4511 §4.5.1.8, RFC 3673 for `+`).
#[derive(Debug, Default)]
pub(crate) struct Selection {
    user: bool,
    operational: bool,
    named: Vec<&'static AttributeType>,
    types_only: bool,
}

impl Selection {
    pub(crate) fn new(attrs: &[String], types_only: bool) -> Selection {
        let mut selection = Selection {
            types_only,
            ..Selection::default()
        };
        if attrs.is_empty() {
            selection.user = true;
        }
        for attr in attrs {
            match attr.trim() {
                "*" => selection.user = true,
                "+" => selection.operational = true,
                // `1.1` alone asks for no attributes; beside others it means nothing.
                "1.1" => {}
                name => selection.named.extend(schema::lookup(name)),
            }
        }
        selection
    }

    pub(crate) fn render(&self, entry: Entry) -> LdapSearchResultEntry {
        let attributes = entry
            .attributes
            .into_iter()
            .filter(|(kind, _)| {
                if kind.operational {
                    self.operational || self.named.iter().any(|n| std::ptr::eq(*n, *kind))
                } else {
                    self.user || self.named.iter().any(|n| std::ptr::eq(*n, *kind))
                }
            })
            .map(|(kind, values)| LdapPartialAttribute {
                atype: kind.name.to_owned(),
                vals: if self.types_only {
                    Vec::new()
                } else {
                    values.into_iter().map(String::into_bytes).collect()
                },
            })
            .collect();
        LdapSearchResultEntry {
            dn: entry.dn,
            attributes,
        }
    }
}
