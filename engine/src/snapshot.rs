//! The in-memory snapshot: dense indexes, roaring bitmaps and name maps over the
//! whole estate, published immutably.
//!
//! INVARIANT: a published `Snapshot` never changes. Writers clone it (cheaply: every
//! table shares its chunks), change the clone, and publish the clone.
//!
//! Dense indexes are never reused within a process: a deleted entity leaves an empty
//! slot, so a stale index can never name a different entity. A rebuild from the store
//! compacts them; an open from the snapshot image keeps the empty slots (a pointer's
//! width each), as the image keeps every index.
//!
//! The snapshot does not depend on the clock. Expiring memberships, rule windows and
//! user expiry are kept as instants and judged at evaluation time, so an answer for
//! any instant, past or future, is exact without a refresh.

mod cow_map;
mod cow_vec;
mod flat;
mod footprint;
mod invariants;
mod look_alike;
mod members;
mod name_index;
mod packed;
mod rule_set;
mod sparse_bitmap;
mod symbols;
mod views;

use std::sync::Arc;

use roaring::RoaringBitmap;
use smallvec::SmallVec;

use crate::model::{
    AccountSelector, Actions, Asset, Effect, EntityKind, Group, Id, Node, ProtocolFilter,
    ROOT_NODE_ID, Role, Rule, Time, Token, User, UserMember,
};

pub(crate) use cow_map::CowMap;
pub(crate) use cow_vec::CowVec;
pub(crate) use flat::TableError;
pub use footprint::Footprint;
pub use invariants::Canonical;
pub(crate) use look_alike::looks_alike;
pub use look_alike::name_folds;
pub(crate) use members::Member;
pub(crate) use name_index::{EMAIL_INLINE, NameIndex, same_name};
pub(crate) use packed::Packed;
pub(crate) use rule_set::{RuleSet, UserRules};
pub(crate) use sparse_bitmap::SparseBitmap;
pub(crate) use symbols::Symbols;
pub use views::{ListQuery, UserGroup};

/// A map keyed by entity id.
pub(crate) type IdMap<V> = CowMap<Id, V, flat::Seeded>;

/// Where an id lives: its kind and dense index. Packed to 5 bytes, so an id map entry
/// is 21 bytes, not 24 (two million entries at the large estate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, packed)]
pub(crate) struct Slot {
    pub(crate) kind: EntityKind,
    pub(crate) index: u32,
}

#[derive(Clone)]
pub(crate) struct UserEntry {
    pub(crate) id: Id,
    /// The user as written (cold: read for views, writes and names).
    pub(crate) record: Packed<User>,
    /// Groups the user is a direct member of, with the membership's end (`Time::MAX`:
    /// none).
    pub(crate) direct_groups: SmallVec<[GroupLink; 4]>,
    /// Rules that name the user.
    pub(crate) direct_rules: SparseBitmap,
}

/// A user's direct membership of a group: the group's index and until when the
/// membership counts (`Time::MAX`: for good). Packed to 12 bytes (`(u32, Time)` pads
/// to 16), so four sit inline in a user's entry in 48.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(C, packed(4))]
pub(crate) struct GroupLink {
    pub(crate) group: u32,
    until: Time,
}

impl GroupLink {
    pub(crate) fn new(group: u32, until: Time) -> GroupLink {
        GroupLink { group, until }
    }

    pub(crate) fn until(&self) -> Time {
        self.until
    }
}

/// What a check reads of a user, in its own vector by dense index
/// ([`Snapshot::user_checks`]): a check reads this record and the rule slice it points
/// to, and nothing else of the user (but its name, for `@USER`).
#[derive(Clone)]
pub(crate) struct UserCheck {
    /// The user is valid before this instant: `Time::MIN` when inactive or deleted,
    /// else the expiry or `Time::MAX` (`User::is_valid_at`).
    pub(crate) valid_until: Time,
    // Derived (recomputed when the user is marked dirty):
    /// Every rule that names the user or a group in `UserEntry::groups`, at any
    /// instant.
    pub(crate) rules: UserRules,
    /// For rules in `rules` reached only through expiring memberships: until when.
    /// Sorted by rule index. Rules absent here reach the user forever.
    pub(crate) rule_until: Box<[(u32, Time)]>,
    /// [`UserCheck::name_hash`] of the username: a `@USER` rule compares it with the
    /// account's before reading the username itself, three dependent reads away.
    pub(crate) username_hash: u64,
}

impl UserCheck {
    /// The record of a deleted user: never valid, reached by nothing.
    pub(crate) fn absent() -> UserCheck {
        UserCheck {
            valid_until: Time::MIN,
            rules: UserRules::default(),
            rule_until: Box::default(),
            username_hash: 0,
        }
    }

    /// The record of a new `user`, reached by no rule until a settle derives its rules.
    pub(crate) fn of(user: &User) -> UserCheck {
        UserCheck {
            valid_until: UserCheck::valid_until_of(user),
            username_hash: UserCheck::name_hash(&user.username),
            ..UserCheck::absent()
        }
    }

    /// A fixed-seed hash of a name's exact bytes (an account is compared with a
    /// username exactly, not case-folded). Equal hashes are confirmed on the names.
    #[inline]
    pub(crate) fn name_hash(name: &str) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::default().hash_one(name)
    }

    pub(crate) fn valid_until_of(user: &User) -> Time {
        if user.active {
            user.expires_at.unwrap_or(Time::MAX)
        } else {
            Time::MIN
        }
    }

    /// Until when `rule` reaches the user by membership (`Time::MAX`: always).
    #[inline]
    pub(crate) fn rule_until(&self, rule: u32) -> Time {
        if self.rule_until.is_empty() {
            return Time::MAX;
        }
        match self.rule_until.binary_search_by_key(&rule, |(r, _)| *r) {
            Ok(position) => self.rule_until[position].1,
            Err(_) => Time::MAX,
        }
    }
}

#[derive(Clone)]
pub(crate) struct GroupEntry {
    /// The group as written, but its members (always empty here: they are
    /// `memberships`; [`Snapshot::group_record`] puts them back).
    pub(crate) group: Arc<Group>,
    /// Direct user memberships, in the group's order.
    pub(crate) memberships: Arc<[Member]>,
    /// Direct subgroups, whatever their expiry.
    pub(crate) subgroups: SmallVec<[u32; 4]>,
    /// Groups this one is a subgroup of, with the edge's end.
    pub(crate) parents: SmallVec<[(u32, Time); 2]>,
    /// Rules that name the group.
    pub(crate) rules: SparseBitmap,
}

#[derive(Clone)]
pub(crate) struct NodeEntry {
    pub(crate) node: Arc<Node>,
    pub(crate) parent: Option<u32>,
    pub(crate) children: SmallVec<[u32; 4]>,
    /// Assets sitting directly in this node.
    pub(crate) assets: RoaringBitmap,
    /// Rules that name the node.
    pub(crate) rules: RoaringBitmap,
}

#[derive(Clone)]
pub(crate) struct AssetEntry {
    pub(crate) id: Id,
    /// The asset as written (cold: a check reads its [`AssetCheck`]).
    pub(crate) record: Packed<Asset>,
    pub(crate) nodes: SmallVec<[u32; 2]>,
    /// Rules that name the asset.
    pub(crate) direct_rules: SparseBitmap,
}

/// What a check reads of an asset, in its own vector by dense index
/// ([`Snapshot::asset_checks`]): whether it is active, the symbols of the protocol
/// names it offers and of its account usernames, and the rules reaching it.
#[derive(Clone)]
pub(crate) struct AssetCheck {
    pub(crate) active: bool,
    /// How many of `names` are protocols: the rest are account usernames.
    protocol_count: u32,
    /// The protocol symbols, then the account symbols, each in the asset's order:
    /// one list, so the record is 56 bytes instead of 72.
    names: SmallVec<[u32; 6]>,
    // Derived:
    /// Every rule that names the asset or a node above it.
    pub(crate) rules: RuleSet,
}

impl AssetCheck {
    /// The record of a deleted asset: inactive, reached by nothing.
    pub(crate) fn absent() -> AssetCheck {
        AssetCheck::new(false, [], [], RuleSet::default())
    }

    pub(crate) fn new(
        active: bool,
        protocols: impl IntoIterator<Item = u32>,
        accounts: impl IntoIterator<Item = u32>,
        rules: RuleSet,
    ) -> AssetCheck {
        let mut names: SmallVec<[u32; 6]> = protocols.into_iter().collect();
        let protocol_count =
            u32::try_from(names.len()).expect("INVARIANT: lists are bounded (MAX_LIST_LEN)");
        names.extend(accounts);
        AssetCheck {
            active,
            protocol_count,
            names,
            rules,
        }
    }

    /// The symbols of the protocol names the asset offers.
    #[inline]
    pub(crate) fn protocols(&self) -> &[u32] {
        &self.names[..self.protocol_count as usize]
    }

    /// The symbols of the asset's account usernames.
    #[inline]
    pub(crate) fn accounts(&self) -> &[u32] {
        &self.names[self.protocol_count as usize..]
    }

    /// Whether the name list spilled to the heap (for the footprint).
    pub(crate) fn names_on_heap(&self) -> usize {
        usize::from(self.names.spilled()) * self.names.capacity() * 4
    }

    /// The record of `asset` as written, its names interned in `symbols`, holding
    /// `rules` until the settle derives the asset's rule set anew.
    pub(crate) fn of(asset: &Asset, rules: RuleSet, symbols: &mut Symbols) -> AssetCheck {
        let protocols: SmallVec<[u32; 4]> = asset
            .protocols
            .iter()
            .map(|p| symbols.intern(p.name()))
            .collect();
        let accounts = asset.accounts.iter().map(|a| symbols.intern(&a.username));
        AssetCheck::new(asset.active, protocols, accounts, rules)
    }
}

/// The account of a query, as a check compares it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AccountRef {
    Input,
    Anonymous,
    /// A name some asset or rule has used.
    Known(u32),
    /// A name no asset has: it can only match `@USER`.
    Unknown,
}

impl AccountRef {
    #[inline]
    pub(crate) fn of(account: &str, symbols: &Symbols) -> AccountRef {
        match account {
            crate::model::INPUT_ACCOUNT => AccountRef::Input,
            crate::model::ANON_ACCOUNT => AccountRef::Anonymous,
            _ => symbols
                .get(account)
                .map_or(AccountRef::Unknown, AccountRef::Known),
        }
    }
}

/// A rule's accounts spec, compiled for matching.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub(crate) struct AccountMatcher {
    pub(crate) all: bool,
    pub(crate) same_as_user: bool,
    pub(crate) input: bool,
    pub(crate) anonymous: bool,
    pub(crate) named: Box<[Box<str>]>,
    pub(crate) excluded: Box<[Box<str>]>,
    /// `named` and `excluded` as symbols.
    pub(crate) named_symbols: SmallVec<[u32; 2]>,
    pub(crate) excluded_symbols: SmallVec<[u32; 2]>,
}

impl AccountMatcher {
    pub(crate) fn new(selectors: &[AccountSelector], symbols: &mut Symbols) -> AccountMatcher {
        let mut matcher = AccountMatcher::default();
        let mut named = Vec::new();
        let mut excluded = Vec::new();
        for selector in selectors {
            match selector {
                AccountSelector::All => matcher.all = true,
                AccountSelector::SameAsUser => matcher.same_as_user = true,
                AccountSelector::Input => matcher.input = true,
                AccountSelector::Anonymous => matcher.anonymous = true,
                AccountSelector::Named(name) => named.push(name.clone()),
                AccountSelector::Excluded(name) => excluded.push(name.clone()),
            }
        }
        matcher.named_symbols = named.iter().map(|n| symbols.intern(n)).collect();
        matcher.excluded_symbols = excluded.iter().map(|n| symbols.intern(n)).collect();
        matcher.named = named.into();
        matcher.excluded = excluded.into();
        matcher
    }

    /// [`AccountMatcher::matches`] on symbols: `accounts` are the asset's account
    /// symbols, and `is_username` says whether the account is the user's own name.
    #[inline]
    pub(crate) fn matches_symbol(
        &self,
        account: AccountRef,
        accounts: &[u32],
        is_username: impl FnOnce() -> bool,
    ) -> bool {
        match account {
            AccountRef::Input => self.input,
            AccountRef::Anonymous => self.anonymous,
            AccountRef::Unknown => self.same_as_user && is_username(),
            AccountRef::Known(symbol) => {
                if self.same_as_user && is_username() {
                    return true;
                }
                if !accounts.contains(&symbol) {
                    return false;
                }
                self.named_symbols.contains(&symbol)
                    || (self.all && !self.excluded_symbols.contains(&symbol))
            }
        }
    }

    /// Whether account `account` on `asset` matches for a user named `username`.
    #[inline]
    pub(crate) fn matches(&self, account: &str, asset: &Asset, username: &str) -> bool {
        match account {
            crate::model::INPUT_ACCOUNT => self.input,
            crate::model::ANON_ACCOUNT => self.anonymous,
            _ => {
                if self.same_as_user && account == username {
                    return true;
                }
                let exists = || asset.accounts.iter().any(|a| a.username == account);
                if self.named.iter().any(|n| &**n == account) && exists() {
                    return true;
                }
                self.all && !self.excluded.iter().any(|n| &**n == account) && exists()
            }
        }
    }

    /// Whether some account of `asset` (real or virtual) can match for some user.
    pub(crate) fn matches_some_account(&self, asset: &Asset) -> bool {
        self.same_as_user
            || self.input
            || self.anonymous
            || asset.accounts.iter().any(|account| {
                self.named.iter().any(|n| **n == account.username)
                    || (self.all && !self.excluded.iter().any(|n| **n == account.username))
            })
    }
}

/// What a check reads of a rule, kept inline in the entry so a check does not
/// follow a pointer to the rule itself.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct CompiledRule {
    pub(crate) id: Id,
    /// `Rule::is_complete`: everything of "in force" but the clock.
    pub(crate) complete: bool,
    pub(crate) effect: Effect,
    pub(crate) actions: Actions,
    pub(crate) starts_at: Time,
    pub(crate) expires_at: Option<Time>,
    pub(crate) protocols: ProtocolFilter,
    /// `protocols` as symbols; `None`: every protocol.
    pub(crate) protocol_symbols: Option<SmallVec<[u32; 4]>>,
    pub(crate) accounts: AccountMatcher,
}

impl CompiledRule {
    pub(crate) fn new(rule: &Rule, symbols: &mut Symbols) -> CompiledRule {
        CompiledRule {
            protocol_symbols: match &rule.protocols {
                ProtocolFilter::All => None,
                ProtocolFilter::Only(names) => {
                    Some(names.iter().map(|n| symbols.intern(n)).collect())
                }
            },
            id: rule.id,
            complete: rule.is_complete(),
            effect: rule.effect,
            actions: rule.actions,
            starts_at: rule.starts_at,
            expires_at: rule.expires_at,
            protocols: rule.protocols.clone(),
            accounts: AccountMatcher::new(&rule.accounts, symbols),
        }
    }

    #[inline]
    pub(crate) fn allows_protocol(&self, protocol: u32) -> bool {
        self.protocol_symbols
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&protocol))
    }
}

#[derive(Clone)]
pub(crate) struct RuleEntry {
    pub(crate) rule: Arc<Rule>,
    pub(crate) compiled: CompiledRule,
    pub(crate) users: Box<[u32]>,
    pub(crate) groups: Box<[u32]>,
    pub(crate) assets: Box<[u32]>,
    pub(crate) nodes: Box<[u32]>,
    // Derived:
    /// Assets the rule names (directly or through nodes) on which some account and
    /// some protocol can match: where it can grant something to someone.
    pub(crate) objects: RoaringBitmap,
}

impl RuleEntry {
    /// Whether the rule can match some account and protocol on `asset`.
    pub(crate) fn effective_on(&self, asset: &Asset) -> bool {
        asset
            .protocols
            .iter()
            .any(|protocol| self.compiled.protocols.allows(protocol.name()))
            && self.compiled.accounts.matches_some_account(asset)
    }
}

#[derive(Clone)]
pub(crate) struct TokenEntry {
    pub(crate) token: Arc<Token>,
    pub(crate) hash: [u8; 32],
}

/// An immutable view of the whole estate at one revision. Cheap to clone; every
/// question the engine answers is answered from one of these.
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) revision: u64,
    pub(crate) users: CowVec<Option<Arc<UserEntry>>>,
    /// What checks read of each user, by the same index as `users`.
    pub(crate) user_checks: CowVec<UserCheck>,
    pub(crate) groups: CowVec<Option<Arc<GroupEntry>>>,
    pub(crate) nodes: CowVec<Option<Arc<NodeEntry>>>,
    pub(crate) assets: CowVec<Option<Arc<AssetEntry>>>,
    /// What checks read of each asset, by the same index as `assets`.
    pub(crate) asset_checks: CowVec<AssetCheck>,
    pub(crate) rules: CowVec<Option<Arc<RuleEntry>>>,
    pub(crate) roles: CowVec<Option<Arc<Role>>>,
    pub(crate) tokens: CowVec<Option<TokenEntry>>,
    pub(crate) ids: IdMap<Slot>,
    pub(crate) user_names: NameIndex,
    /// Emails keep no folded form inline: 16-byte entries (see `EMAIL_INLINE`).
    pub(crate) user_emails: NameIndex<EMAIL_INLINE>,
    pub(crate) group_names: NameIndex,
    pub(crate) asset_names: NameIndex,
    pub(crate) rule_names: NameIndex,
    pub(crate) role_names: NameIndex,
    pub(crate) token_names: NameIndex,
    pub(crate) token_hashes: CowMap<[u8; 32], u32, foldhash::fast::RandomState>,
    pub(crate) symbols: Symbols,
    /// The asset holding each account, by account id.
    // INVARIANT: an account id is one account's, and no entity's.
    pub(crate) account_ids: IdMap<u32>,
    /// Active assets.
    pub(crate) active_assets: Arc<RoaringBitmap>,
    pub(crate) next_node_number: u64,
    pub(crate) counts: Counts,
}

/// How many live entities of each kind a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub users: u64,
    pub groups: u64,
    pub nodes: u64,
    pub assets: u64,
    pub rules: u64,
    pub roles: u64,
    pub tokens: u64,
}

impl Counts {
    /// Live entities of every kind.
    pub(crate) fn total(&self) -> u64 {
        self.users + self.groups + self.nodes + self.assets + self.rules + self.roles + self.tokens
    }

    pub(crate) fn get_mut(&mut self, kind: EntityKind) -> &mut u64 {
        match kind {
            EntityKind::User => &mut self.users,
            EntityKind::Group => &mut self.groups,
            EntityKind::Node => &mut self.nodes,
            EntityKind::Asset => &mut self.assets,
            EntityKind::Rule => &mut self.rules,
            EntityKind::Role => &mut self.roles,
            EntityKind::Token => &mut self.tokens,
        }
    }
}

macro_rules! entry_getters {
    ($($get:ident, $field:ident, $entry:ty);* $(;)?) => {$(
        #[inline]
        pub(crate) fn $get(&self, index: u32) -> Option<&$entry> {
            self.$field.get(index as usize).and_then(|slot| slot.as_deref())
        }
    )*};
}

/// How many entries a snapshot's large maps will hold, to size them before they fill
/// (a rebuild counts them in the estate; an image's open knows the groups').
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MapSizes {
    pub(crate) ids: u64,
    pub(crate) users: u64,
    pub(crate) groups: u64,
    pub(crate) assets: u64,
    pub(crate) accounts: u64,
}

impl MapSizes {
    fn get(size: u64) -> usize {
        usize::try_from(size).unwrap_or(usize::MAX)
    }
}

impl Snapshot {
    /// An empty snapshot (before the root node and built-in roles exist) whose maps
    /// are sized for `sizes` entries.
    pub(crate) fn sized(sizes: MapSizes) -> Snapshot {
        Snapshot {
            revision: 0,
            users: CowVec::new(),
            user_checks: CowVec::new(),
            groups: CowVec::new(),
            nodes: CowVec::new(),
            assets: CowVec::new(),
            asset_checks: CowVec::new(),
            rules: CowVec::new(),
            roles: CowVec::new(),
            tokens: CowVec::new(),
            ids: CowMap::with_capacity_and_hasher(MapSizes::get(sizes.ids), Default::default()),
            user_names: NameIndex::with_capacity(MapSizes::get(sizes.users)),
            user_emails: NameIndex::with_capacity(MapSizes::get(sizes.users)),
            group_names: NameIndex::with_capacity(MapSizes::get(sizes.groups)),
            asset_names: NameIndex::with_capacity(MapSizes::get(sizes.assets)),
            rule_names: NameIndex::new(),
            role_names: NameIndex::new(),
            token_names: NameIndex::new(),
            token_hashes: CowMap::with_hasher(Default::default()),
            symbols: Symbols::new(),
            account_ids: CowMap::with_capacity_and_hasher(
                MapSizes::get(sizes.accounts),
                Default::default(),
            ),
            active_assets: Arc::new(RoaringBitmap::new()),
            next_node_number: 1,
            counts: Counts::default(),
        }
    }

    entry_getters!(
        user_entry, users, UserEntry;
        group_entry, groups, GroupEntry;
        node_entry, nodes, NodeEntry;
        asset_entry, assets, AssetEntry;
        rule_entry, rules, RuleEntry;
        role_entry, roles, Role;
    );

    /// What a check reads of user `index` (a deleted user's record is never valid).
    #[inline]
    pub(crate) fn user_check(&self, index: u32) -> Option<&UserCheck> {
        self.user_checks.get(index as usize)
    }

    /// What a check reads of asset `index` (a deleted asset's record is inactive).
    #[inline]
    pub(crate) fn asset_check(&self, index: u32) -> Option<&AssetCheck> {
        self.asset_checks.get(index as usize)
    }

    pub(crate) fn token_entry(&self, index: u32) -> Option<&TokenEntry> {
        self.tokens.get(index as usize).and_then(Option::as_ref)
    }

    /// The store revision this snapshot reflects.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// How many entities of each kind it holds.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub(crate) fn slot(&self, id: Id) -> Option<Slot> {
        self.ids.get(&id)
    }

    /// The dense index of `id` if it is an entity of `kind`.
    pub(crate) fn slot_of(&self, kind: EntityKind, id: Id) -> Option<u32> {
        self.slot(id)
            .filter(|slot| slot.kind == kind)
            .map(|slot| slot.index)
    }

    /// The dense index of a user, by id or username (case-insensitive).
    #[inline]
    pub(crate) fn user_index(&self, reference: &str) -> Option<u32> {
        if let Some(id) = Id::parse(reference) {
            if let Some(index) = self.slot_of(EntityKind::User, id) {
                return Some(index);
            }
        }
        self.user_names.get(reference, |i| self.username_at(i))
    }

    pub(crate) fn username_at(&self, index: u32) -> Option<&str> {
        self.user_entry(index).map(|e| e.record.username())
    }

    fn asset_name_at(&self, index: u32) -> Option<&str> {
        self.asset_entry(index).map(|e| e.record.name())
    }

    /// The dense indexes of a check's user and asset, as [`Snapshot::user_index`] and
    /// [`Snapshot::asset_index`] find them. Both names are hashed before either index is
    /// read, so the two lookups' cache misses overlap instead of queueing: at a million
    /// users each miss is most of a lookup's cost.
    #[inline]
    pub(crate) fn user_and_asset(&self, user: &str, asset: &str) -> (Option<u32>, Option<u32>) {
        let by_id = |kind: EntityKind, reference: &str| {
            Id::parse(reference).and_then(|id| self.slot_of(kind, id))
        };
        let user_key = self.user_names.key(user);
        let asset_key = self.asset_names.key(asset);
        let user_index = by_id(EntityKind::User, user).or_else(|| {
            self.user_names
                .find(&user_key, user, |i| self.username_at(i))
        });
        let asset_index = by_id(EntityKind::Asset, asset).or_else(|| {
            self.asset_names
                .find(&asset_key, asset, |i| self.asset_name_at(i))
        });
        (user_index, asset_index)
    }

    /// The dense index of an asset, by id or name (case-insensitive).
    #[inline]
    pub(crate) fn asset_index(&self, reference: &str) -> Option<u32> {
        if let Some(id) = Id::parse(reference) {
            if let Some(index) = self.slot_of(EntityKind::Asset, id) {
                return Some(index);
            }
        }
        self.asset_names.get(reference, |i| self.asset_name_at(i))
    }

    /// Group `index`'s direct user memberships as its record holds them, in order.
    pub(crate) fn group_members(&self, index: u32) -> Vec<UserMember> {
        let Some(entry) = self.group_entry(index) else {
            return Vec::new();
        };
        entry
            .memberships
            .iter()
            .map(|member| {
                let user = self
                    .user_entry(member.user)
                    .expect("INVARIANT: a member is a live user")
                    .id;
                member.record(user, &self.symbols)
            })
            .collect()
    }

    /// Group `index` as written, its members included.
    pub(crate) fn group_record(&self, index: u32) -> Option<Group> {
        let entry = self.group_entry(index)?;
        Some(Group {
            members: self.group_members(index),
            ..(*entry.group).clone()
        })
    }

    pub(crate) fn group_index(&self, reference: &str) -> Option<u32> {
        if let Some(id) = Id::parse(reference) {
            if let Some(index) = self.slot_of(EntityKind::Group, id) {
                return Some(index);
            }
        }
        self.group_names.get(reference, |i| {
            self.group_entry(i).map(|e| e.group.name.as_str())
        })
    }

    pub(crate) fn rule_index(&self, reference: &str) -> Option<u32> {
        if let Some(id) = Id::parse(reference) {
            if let Some(index) = self.slot_of(EntityKind::Rule, id) {
                return Some(index);
            }
        }
        self.rule_names.get(reference, |i| {
            self.rule_entry(i).map(|e| e.rule.name.as_str())
        })
    }

    pub(crate) fn role_index(&self, reference: &str) -> Option<u32> {
        if let Some(id) = Id::parse(reference) {
            if let Some(index) = self.slot_of(EntityKind::Role, id) {
                return Some(index);
            }
        }
        self.role_names
            .get(reference, |i| self.role_entry(i).map(|r| r.name.as_str()))
    }

    pub(crate) fn token_index(&self, reference: &str) -> Option<u32> {
        if let Some(id) = Id::parse(reference) {
            if let Some(index) = self.slot_of(EntityKind::Token, id) {
                return Some(index);
            }
        }
        self.token_names.get(reference, |i| {
            self.token_entry(i).map(|e| e.token.name.as_str())
        })
    }

    pub(crate) fn user_by_email(&self, email: &str) -> Option<u32> {
        self.user_emails.get(email, |i| {
            self.user_entry(i).and_then(|e| e.record.head().email)
        })
    }

    pub(crate) fn root_node(&self) -> u32 {
        self.slot_of(EntityKind::Node, ROOT_NODE_ID)
            .expect("INVARIANT: the root node always exists")
    }

    /// The dense index of a node, by id or path (`/Default/Prod/DB`, case-insensitive
    /// per segment; a trailing `/` is ignored).
    pub(crate) fn node_index(&self, reference: &str) -> Option<u32> {
        if let Some(id) = Id::parse(reference) {
            if let Some(index) = self.slot_of(EntityKind::Node, id) {
                return Some(index);
            }
        }
        let path = reference.strip_prefix('/')?;
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = path.split('/');
        let root = self.root_node();
        let root_name = &self.node_entry(root)?.node.name;
        if !same_name(segments.next()?, root_name) {
            return None;
        }
        segments.try_fold(root, |node, segment| self.child_named(node, segment))
    }

    pub(crate) fn child_named(&self, parent: u32, name: &str) -> Option<u32> {
        self.node_entry(parent)?
            .children
            .iter()
            .copied()
            .find(|&child| {
                self.node_entry(child)
                    .is_some_and(|entry| same_name(&entry.node.name, name))
            })
    }

    /// `/Default/Prod/DB`.
    pub(crate) fn node_path(&self, index: u32) -> String {
        let mut names = Vec::new();
        let mut current = Some(index);
        while let Some(node) = current.and_then(|i| self.node_entry(i)) {
            names.push(node.node.name.as_str());
            current = node.parent;
        }
        names.reverse();
        let mut path = String::new();
        for name in names {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// `1:4:9`: the numbers of the node and its ancestors, root first.
    pub(crate) fn node_key(&self, index: u32) -> String {
        let mut numbers = Vec::new();
        let mut current = Some(index);
        while let Some(node) = current.and_then(|i| self.node_entry(i)) {
            numbers.push(node.node.number.to_string());
            current = node.parent;
        }
        numbers.reverse();
        numbers.join(":")
    }

    /// The node and its ancestors, nearest first.
    pub(crate) fn node_ancestry(&self, index: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(index), move |&i| {
            self.node_entry(i).and_then(|n| n.parent)
        })
    }

    /// The node and all its descendants.
    pub(crate) fn node_subtree(&self, index: u32) -> Vec<u32> {
        let mut nodes = vec![index];
        let mut next = 0;
        while next < nodes.len() {
            if let Some(entry) = self.node_entry(nodes[next]) {
                nodes.extend(entry.children.iter().copied());
            }
            next += 1;
        }
        nodes
    }

    /// Assets sitting in the node or any descendant.
    pub(crate) fn subtree_assets(&self, index: u32) -> RoaringBitmap {
        let mut assets = RoaringBitmap::new();
        for node in self.node_subtree(index) {
            if let Some(entry) = self.node_entry(node) {
                assets |= &entry.assets;
            }
        }
        assets
    }

    /// The group and every group nested in it, at any depth, whatever the expiry.
    pub(crate) fn group_descendants(&self, index: u32) -> Vec<u32> {
        let mut groups = vec![index];
        let mut seen = RoaringBitmap::new();
        seen.insert(index);
        let mut next = 0;
        while next < groups.len() {
            if let Some(entry) = self.group_entry(groups[next]) {
                for &child in &entry.subgroups {
                    if seen.insert(child) {
                        groups.push(child);
                    }
                }
            }
            next += 1;
        }
        groups
    }

    /// Users in the group or any nested group, whatever the expiry.
    pub(crate) fn group_all_members(&self, index: u32) -> RoaringBitmap {
        let mut users = RoaringBitmap::new();
        for group in self.group_descendants(index) {
            if let Some(entry) = self.group_entry(group) {
                users.extend(entry.memberships.iter().map(|member| member.user));
            }
        }
        users
    }

    /// Every group that `index` is nested in, at any depth (not `index` itself).
    pub(crate) fn group_ancestors(&self, index: u32) -> RoaringBitmap {
        let mut seen = RoaringBitmap::new();
        let mut stack = vec![index];
        while let Some(group) = stack.pop() {
            if let Some(entry) = self.group_entry(group) {
                for &(parent, _) in &entry.parents {
                    if seen.insert(parent) {
                        stack.push(parent);
                    }
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A million users and a million assets: every byte of an entry is a megabyte.
    /// With its `Arc` header, a user entry takes 120 bytes (mimalloc's class of 128)
    /// and an asset entry 88 (class 96): a record that may be mapped costs the entry
    /// the 8 bytes of its tag, and saves the record's own allocation.
    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<GroupLink>(), 12);
        assert_eq!(std::mem::size_of::<(Id, Slot)>(), 21);
        assert!(std::mem::size_of::<UserEntry>() <= 104);
        assert!(std::mem::size_of::<AssetEntry>() <= 72);
        assert!(std::mem::size_of::<UserCheck>() <= 56);
        assert!(std::mem::size_of::<AssetCheck>() <= 56);
    }
}
