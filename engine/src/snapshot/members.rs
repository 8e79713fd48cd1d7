//! A group's direct user memberships as the snapshot keeps them: 16 bytes each, in
//! the group's order, where the record's `UserMember` (an id, an optional end and a
//! source with its own allocation) took 56.

use serde::{Deserialize, Serialize};

use super::Symbols;
use crate::model::{Id, Source, Time, UserMember};

/// The bit of [`Member::source`] saying the membership has an end.
const HAS_END: u32 = 1 << 31;
const LOCAL: u32 = 0;
const SCIM: u32 = 1;
const IMPORT: u32 = 2;
/// `ldap:<name>` is this plus the symbol of the name.
const LDAP: u32 = 3;

/// One direct membership of a user in a group.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct Member {
    /// The user's dense index.
    pub(crate) user: u32,
    /// Who wrote it: local, scim, import, or `ldap:` and a name kept in the
    /// snapshot's symbols; with [`HAS_END`] when the membership ends.
    source: u32,
    /// When the membership ends, if `source` says it does.
    end: Time,
}

impl Member {
    pub(crate) fn new(
        user: u32,
        expires_at: Option<Time>,
        source: &Source,
        symbols: &mut Symbols,
    ) -> Member {
        let source = match source {
            Source::Local => LOCAL,
            Source::Scim => SCIM,
            Source::Import => IMPORT,
            Source::Ldap(name) => symbols
                .intern(name)
                .checked_add(LDAP)
                .filter(|code| code & HAS_END == 0)
                .expect("INVARIANT: fewer than 2^31 symbols"),
        };
        Member {
            user,
            source: source | if expires_at.is_some() { HAS_END } else { 0 },
            end: expires_at.unwrap_or_default(),
        }
    }

    /// The record of `member` (user `user` at dense index `index`).
    pub(crate) fn of(index: u32, member: &UserMember, symbols: &mut Symbols) -> Member {
        Member::new(index, member.expires_at, &member.source, symbols)
    }

    pub(crate) fn expires_at(&self) -> Option<Time> {
        (self.source & HAS_END != 0).then_some(self.end)
    }

    /// Until when the membership counts (`Time::MAX`: for good).
    pub(crate) fn until(&self) -> Time {
        self.expires_at().unwrap_or(Time::MAX)
    }

    pub(crate) fn source(&self, symbols: &Symbols) -> Source {
        match self.source & !HAS_END {
            LOCAL => Source::Local,
            SCIM => Source::Scim,
            IMPORT => Source::Import,
            code => Source::Ldap(symbols.name(code - LDAP).into()),
        }
    }

    /// The membership as the group's record holds it, for user `user`.
    pub(crate) fn record(&self, user: Id, symbols: &Symbols) -> UserMember {
        UserMember {
            user,
            expires_at: self.expires_at(),
            source: self.source(symbols),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_membership_reads_back_as_written() {
        let mut symbols = Symbols::new();
        symbols.intern("ssh");
        let ends = Time::from_secs(1_780_272_000);
        let sources = [
            Source::Local,
            Source::Scim,
            Source::Import,
            Source::Ldap("corp".into()),
            Source::Ldap("ssh".into()),
        ];
        for source in sources {
            for expires_at in [None, Some(ends), Some(Time::MAX), Some(Time::MIN)] {
                let written = UserMember {
                    user: Id::from_u128(7),
                    expires_at,
                    source: source.clone(),
                };
                let member = Member::of(3, &written, &mut symbols);
                assert_eq!(member.user, 3);
                assert_eq!(member.record(written.user, &symbols), written);
                assert_eq!(member.until(), expires_at.unwrap_or(Time::MAX));
            }
        }
        assert_eq!(std::mem::size_of::<Member>(), 16);
    }
}
