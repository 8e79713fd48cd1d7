//! Random write scripts for the model test: acts drawn from small pools of names, so
//! that references mostly hit, with look-alike, case-folded and malformed names mixed
//! in so that refusals happen too. An act becomes an `Op` only when it runs, against
//! the model's estate (node paths, mostly); the engine and the model get the same op.

use portcullis_engine::*;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::model::Model;

/// Names per kind: the common ones first, then case variants and look-alikes
/// (Cyrillic `а`, `о`, `е`, `Р`), which the engine must refuse next to the originals.
pub const USERS: [&str; 7] = ["ann", "bob", "cat", "dee", "Ann", "\u{430}nn", "ann@e.io"];
pub const GROUPS: [&str; 6] = ["ops", "dev", "sec", "db", "OPS", "\u{43e}ps"];
pub const NODES: [&str; 6] = ["Prod", "Dev", "DB", "Web", "prod", "\u{420}rod"];
pub const ASSETS: [&str; 6] = ["web", "db1", "cache", "jump", "WEB", "w\u{435}b"];
pub const RULES: [&str; 6] = ["r-ops", "r-web", "r-db", "r-deny", "R-OPS", "r-\u{43e}ps"];
/// Custom roles first, then built-in ones (which cannot be changed).
pub const ROLES: [&str; 6] = [
    "auditor",
    "operator",
    "Auditor",
    "\u{430}uditor",
    "system-admin",
    "checker",
];
pub const TOKENS: [&str; 3] = ["tok-a", "tok-b", "TOK-A"];
const COMMON_USERS: usize = 4;
const COMMON_GROUPS: usize = 4;
const COMMON_NODES: usize = 4;
const COMMON_ASSETS: usize = 4;
const COMMON_RULES: usize = 4;
const COMMON_ROLES: usize = 2;

/// Names no entity may have: empty, padded, a control character, too long.
fn bad_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        String::new(),
        " pad".to_owned(),
        "ctl\u{7}x".to_owned(),
        "x".repeat(129),
    ])
}

const EMAILS: [&str; 9] = [
    "ann@e.io",
    "bob@e.io",
    "ANN@E.io",
    "\u{430}nn@e.io",
    "no-at-sign",
    "",
    " cat@e.io ",
    "eve@e.io",
    "dee@e.io",
];
pub const ACCOUNTS: [&str; 5] = ["root", "admin", "ann", "bob", "@bad"];
const PROTOCOLS: [&str; 4] = ["ssh/22", "rdp/3389", "vnc/5900", "ssh/2222"];
const SELECTORS: [&str; 8] = [
    "@ALL", "@USER", "@INPUT", "@ANON", "root", "admin", "!root", "ann",
];
const PERMISSIONS: [&str; 5] = ["users.view", "rules.change", "decisions.check", "*", "x.y"];
const SCOPES: [&str; 3] = ["*", "prod", "dev"];
/// Ids scripts ask for: a second create with one is refused, and the nil id always.
pub const EXPLICIT_IDS: [u128; 4] = [0xE1, 0xE2, 0xE3, 0];

/// The centre of every random time: 2030-01-01T00:00:00Z.
pub const T0: Time = Time::from_secs(1_893_456_000);
const HOUR: i64 = 3_600_000_000;
/// 2020-01-01: before any rule created now, so an expiry then is before its start.
const PAST: Time = Time::from_secs(1_577_836_800);

pub fn hours(h: i64) -> Time {
    T0.add_micros(h * HOUR)
}

/// An index into a pool of `all` names, mostly among the first `common`.
fn index(common: usize, all: usize) -> BoxedStrategy<usize> {
    if common == all {
        return (0..all).boxed();
    }
    prop_oneof![12 => 0..common, 1 => common..all].boxed()
}

/// A name of a kind's pool, now and then a malformed one.
fn name(pool: &'static [&'static str], common: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        40 => index(common, pool.len()).prop_map(move |i| pool[i].to_owned()),
        1 => bad_name(),
    ]
}

fn expiry() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![3 => Just(None), 2 => (-3i64..=3).prop_map(Some)]
}

fn time(hours_from_t0: Option<i64>) -> Value {
    json!(hours_from_t0.map(hours))
}

fn some_of(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(pool.to_vec()), 0..=max)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

/// Role names: mostly distinct ones that exist, now and then one that may not.
fn roles_of(
    existing: &'static [&'static str],
    other: &'static str,
) -> impl Strategy<Value = Vec<String>> {
    (
        prop::sample::subsequence(existing.to_vec(), 0..=2),
        prop::bool::weighted(0.1),
    )
        .prop_map(move |(roles, add)| {
            let mut roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
            if add {
                roles.push(other.to_owned());
            }
            roles
        })
}

fn users(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(index(COMMON_USERS, USERS.len()), 0..=max)
        .prop_map(|v| v.into_iter().map(|i| USERS[i].to_owned()).collect())
}

fn groups(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(index(COMMON_GROUPS, GROUPS.len()), 0..=max)
        .prop_map(|v| v.into_iter().map(|i| GROUPS[i].to_owned()).collect())
}

fn assets(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(index(COMMON_ASSETS, ASSETS.len()), 0..=max)
        .prop_map(|v| v.into_iter().map(|i| ASSETS[i].to_owned()).collect())
}

/// A node, by the name of one: resolved to its path when the act runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    Root,
    Named(usize),
    /// A path no node has.
    Missing,
}

fn node_ref() -> impl Strategy<Value = NodeRef> {
    prop_oneof![
        3 => Just(NodeRef::Root),
        12 => index(COMMON_NODES, NODES.len()).prop_map(NodeRef::Named),
        1 => Just(NodeRef::Missing),
    ]
}

fn node_refs(max: usize) -> impl Strategy<Value = Vec<NodeRef>> {
    prop::collection::vec(node_ref(), 0..=max)
}

/// A node's path as it stands in `model` (the first node of that name).
pub fn path(model: &Model, node: &NodeRef) -> String {
    match node {
        NodeRef::Root => "/Default".to_owned(),
        NodeRef::Missing => "/Default/nowhere".to_owned(),
        NodeRef::Named(i) => model
            .nodes
            .values()
            .find(|r| r.value.name == NODES[*i])
            .map_or_else(
                || format!("/Default/{}", NODES[*i]),
                |r| model.node_path(r.value.id),
            ),
    }
}

/// What a spec says, with nodes still by name.
#[derive(Debug, Clone)]
pub enum Body {
    User(Value),
    Group(Value),
    Node { name: String, parent: NodeRef },
    Asset { json: Value, nodes: Vec<NodeRef> },
    Rule { json: Value, nodes: Vec<NodeRef> },
    Role(Value),
    Token(Value),
}

impl Body {
    pub fn kind(&self) -> EntityKind {
        match self {
            Body::User(_) => EntityKind::User,
            Body::Group(_) => EntityKind::Group,
            Body::Node { .. } => EntityKind::Node,
            Body::Asset { .. } => EntityKind::Asset,
            Body::Rule { .. } => EntityKind::Rule,
            Body::Role(_) => EntityKind::Role,
            Body::Token(_) => EntityKind::Token,
        }
    }

    fn json(&self, model: &Model) -> Value {
        let paths = |nodes: &[NodeRef]| nodes.iter().map(|n| path(model, n)).collect::<Vec<_>>();
        match self {
            Body::User(json) | Body::Group(json) | Body::Role(json) | Body::Token(json) => {
                json.clone()
            }
            Body::Node { name, parent } => json!({"name": name, "parent": path(model, parent)}),
            Body::Asset { json, nodes } => {
                let mut json = json.clone();
                if !nodes.is_empty() {
                    json["nodes"] = json!(paths(nodes));
                }
                json
            }
            Body::Rule { json, nodes } => {
                let mut json = json.clone();
                json["nodes"] = json!(paths(nodes));
                json
            }
        }
    }

    pub fn spec(&self, model: &Model) -> Spec {
        Spec::from_json(self.kind(), self.json(model)).expect("scripts write well-formed specs")
    }
}

fn explicit_id() -> impl Strategy<Value = Option<Id>> {
    prop_oneof![
        6 => Just(None),
        1 => prop::sample::select(EXPLICIT_IDS.to_vec()).prop_map(|i| Some(Id::from_u128(i))),
    ]
}

fn user_body() -> impl Strategy<Value = Body> {
    (
        name(&USERS, COMMON_USERS),
        prop_oneof![2 => Just(None), 3 => prop::sample::select(EMAILS.to_vec()).prop_map(Some)],
        prop::bool::weighted(0.85),
        expiry(),
        roles_of(&["user", "checker", "auditor"], "ghost-role"),
        prop::bool::weighted(0.01),
        explicit_id(),
    )
        .prop_map(|(username, email, active, expires, roles, password, id)| {
            let mut json = json!({"username": username, "email": email, "active": active,
                "expires_at": time(expires), "id": id});
            if !roles.is_empty() {
                json["system_roles"] = json!(roles);
            }
            if password {
                json["password"] = json!("Correct-Horse-42");
            }
            Body::User(json)
        })
}

fn member() -> impl Strategy<Value = Value> {
    (index(COMMON_USERS, USERS.len()), expiry(), prop::bool::ANY).prop_map(|(u, e, long)| {
        if long || e.is_some() {
            json!({"user": USERS[u], "expires_at": time(e)})
        } else {
            json!(USERS[u])
        }
    })
}

fn subgroup() -> impl Strategy<Value = Value> {
    (index(COMMON_GROUPS, GROUPS.len()), expiry())
        .prop_map(|(g, e)| json!({"group": GROUPS[g], "expires_at": time(e)}))
}

fn assignments() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            prop_oneof![10 => prop::sample::select(SCOPES.to_vec()), 1 => Just(" bad")],
            roles_of(&["auditor", "checker", "system-auditor"], "operator"),
        )
            .prop_map(|(scope, roles)| json!({"scope": scope, "roles": roles})),
        0..=2,
    )
    .prop_map(|v| json!(v))
}

fn group_body() -> impl Strategy<Value = Body> {
    (
        name(&GROUPS, COMMON_GROUPS),
        prop::collection::vec(member(), 0..=3),
        prop::collection::vec(subgroup(), 0..=2),
        prop_oneof![3 => Just(json!([])), 1 => assignments()],
        explicit_id(),
    )
        .prop_map(|(name, members, subgroups, roles, id)| {
            Body::Group(
                json!({"name": name, "members": members, "subgroups": subgroups,
                "roles": roles, "id": id}),
            )
        })
}

fn node_body() -> impl Strategy<Value = Body> {
    (
        prop_oneof![20 => name(&NODES, COMMON_NODES), 1 => Just("a/b".to_owned())],
        node_ref(),
    )
        .prop_map(|(name, parent)| Body::Node { name, parent })
}

fn account() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            12 => prop::sample::select(ACCOUNTS[..4].to_vec()),
            1 => Just(ACCOUNTS[4]),
        ],
        prop::bool::ANY,
        prop_oneof![10 => Just(None), 1 => prop::sample::select(vec![0xA1u128, 0xA2]).prop_map(Some)],
    )
        .prop_map(|(username, privileged, id)| {
            json!({"username": username, "privileged": privileged, "id": id.map(Id::from_u128)})
        })
}

fn asset_body() -> impl Strategy<Value = Body> {
    (
        name(&ASSETS, COMMON_ASSETS),
        node_refs(2),
        prop::collection::vec(account(), 0..=3),
        prop_oneof![
            6 => prop::sample::subsequence(PROTOCOLS[..3].to_vec(), 0..=3)
                .prop_map(|v| v.into_iter().map(str::to_owned).collect()),
            1 => some_of(&PROTOCOLS, 2),
        ],
        prop::bool::weighted(0.9),
        explicit_id(),
    )
        .prop_map(
            |(name, nodes, accounts, protocols, active, id)| Body::Asset {
                json: json!({"name": name, "accounts": accounts, "protocols": protocols,
                "active": active, "address": "10.0.0.1", "id": id}),
                nodes,
            },
        )
}

fn rule_body() -> impl Strategy<Value = Body> {
    (
        (
            name(&RULES, COMMON_RULES),
            prop::bool::weighted(0.25),
            users(2),
            groups(2),
            assets(2),
            node_refs(2),
        ),
        (
            some_of(&SELECTORS, 3),
            prop_oneof![2 => Just(vec!["all".to_owned()]), 3 => some_of(&["ssh", "rdp", "vnc"], 2)],
            1u8..128,
            prop_oneof![3 => Just(None), 1 => (-3i64..=1).prop_map(Some)],
            prop_oneof![2 => Just(None), 3 => (1i64..=4).prop_map(|h| Some(hours(h))), 1 => Just(Some(PAST))],
            prop::bool::weighted(0.9),
            explicit_id(),
        ),
    )
        .prop_map(
            |(
                (name, deny, users, groups, assets, nodes),
                (accounts, protocols, actions, starts, expires_at, active, id),
            )| Body::Rule {
                json: json!({
                    "name": name, "effect": if deny { "deny" } else { "allow" },
                    "users": users, "groups": groups, "assets": assets,
                    "accounts": accounts, "protocols": protocols,
                    "actions": Actions::from_bits(actions).names().collect::<Vec<_>>(),
                    "starts_at": time(starts), "expires_at": expires_at,
                    "active": active, "id": id,
                }),
                nodes,
            },
        )
}

fn role_body() -> impl Strategy<Value = Body> {
    (
        name(&ROLES, COMMON_ROLES),
        some_of(&PERMISSIONS, 3),
        prop_oneof![20 => Just(""), 1 => Just("a\u{1}b")],
    )
        .prop_map(|(name, permissions, description)| {
            Body::Role(
                json!({"name": name, "permissions": permissions, "description": description}),
            )
        })
}

fn token_body() -> impl Strategy<Value = Body> {
    (
        prop::sample::select(TOKENS.to_vec()),
        prop::option::weighted(0.6, index(COMMON_USERS, USERS.len())),
        roles_of(&["checker", "system-auditor", "auditor"], "operator"),
        expiry(),
    )
        .prop_map(|(name, user, roles, expires)| {
            Body::Token(json!({"name": name, "user": user.map(|u| USERS[u]),
                "roles": roles, "expires_at": time(expires)}))
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        4 => user_body(),
        4 => group_body(),
        3 => node_body(),
        3 => asset_body(),
        4 => rule_body(),
        1 => role_body(),
        1 => token_body(),
    ]
}

/// A target of its kind's pool: a name (a path for nodes).
#[derive(Debug, Clone)]
pub enum Target {
    Name(EntityKind, String),
    Node(NodeRef),
}

impl Target {
    pub fn kind(&self) -> EntityKind {
        match self {
            Target::Name(kind, _) => *kind,
            Target::Node(_) => EntityKind::Node,
        }
    }

    pub fn reference(&self, model: &Model) -> String {
        match self {
            Target::Name(_, name) => name.clone(),
            Target::Node(node) => path(model, node),
        }
    }
}

fn target_of(kind: EntityKind) -> BoxedStrategy<Target> {
    let named = move |pool: &'static [&'static str], common: usize| {
        index(common, pool.len())
            .prop_map(move |i| Target::Name(kind, pool[i].to_owned()))
            .boxed()
    };
    match kind {
        EntityKind::User => named(&USERS, COMMON_USERS),
        EntityKind::Group => named(&GROUPS, COMMON_GROUPS),
        EntityKind::Node => node_ref().prop_map(Target::Node).boxed(),
        EntityKind::Asset => named(&ASSETS, COMMON_ASSETS),
        EntityKind::Rule => named(&RULES, COMMON_RULES),
        EntityKind::Role => named(&ROLES, ROLES.len()),
        EntityKind::Token => named(&TOKENS, TOKENS.len()),
    }
}

fn any_target() -> impl Strategy<Value = Target> {
    prop::sample::select(EntityKind::ALL.to_vec()).prop_flat_map(target_of)
}

/// A JSON merge patch (RFC 7386) of one kind's spec.
fn patch_of(kind: EntityKind) -> BoxedStrategy<Value> {
    match kind {
        EntityKind::User => prop_oneof![
            prop::bool::ANY.prop_map(|b| json!({"active": b})),
            prop_oneof![
                Just(Value::Null),
                prop::sample::select(EMAILS.to_vec()).prop_map(|e| json!(e))
            ]
            .prop_map(|e| json!({"email": e})),
            expiry().prop_map(|e| json!({"expires_at": time(e)})),
            roles_of(&["user", "checker", "auditor"], "ghost-role")
                .prop_map(|r| json!({"system_roles": r})),
            name(&USERS, COMMON_USERS).prop_map(|n| json!({"username": n})),
            Just(json!({"name": "Display Name", "description": "two\nlines", "mfa": "enabled"})),
        ]
        .boxed(),
        EntityKind::Group => prop_oneof![
            prop::collection::vec(member(), 0..=3).prop_map(|m| json!({"members": m})),
            prop::collection::vec(subgroup(), 0..=2).prop_map(|s| json!({"subgroups": s})),
            name(&GROUPS, COMMON_GROUPS).prop_map(|n| json!({"name": n})),
            assignments().prop_map(|r| json!({"roles": r})),
            Just(json!({"description": "on call", "source": "scim"})),
        ]
        .boxed(),
        EntityKind::Node => prop_oneof![
            name(&NODES, COMMON_NODES).prop_map(|n| json!({"name": n})),
            Just(json!({"description": "moved"})),
        ]
        .boxed(),
        EntityKind::Asset => prop_oneof![
            prop::collection::vec(account(), 0..=3).prop_map(|a| json!({"accounts": a})),
            name(&ASSETS, COMMON_ASSETS).prop_map(|n| json!({"name": n})),
            prop::bool::ANY.prop_map(|b| json!({"active": b})),
            some_of(&PROTOCOLS, 2).prop_map(|p| json!({"protocols": p})),
        ]
        .boxed(),
        EntityKind::Rule => prop_oneof![
            users(2).prop_map(|u| json!({"users": u})),
            groups(2).prop_map(|g| json!({"groups": g})),
            assets(2).prop_map(|a| json!({"assets": a})),
            prop_oneof![
                Just(None),
                (1i64..=4).prop_map(|h| Some(hours(h))),
                Just(Some(PAST))
            ]
            .prop_map(|e| json!({"expires_at": e})),
            prop_oneof![Just(None), (-3i64..=5).prop_map(Some)]
                .prop_map(|s| json!({"starts_at": time(s)})),
            some_of(&SELECTORS, 3).prop_map(|a| json!({"accounts": a})),
            name(&RULES, COMMON_RULES).prop_map(|n| json!({"name": n})),
            prop::bool::ANY
                .prop_map(|d| json!({"effect": if d { "deny" } else { "allow" }, "active": !d})),
            Just(json!({"actions": ["sudo"]})),
        ]
        .boxed(),
        EntityKind::Role => prop_oneof![
            name(&ROLES, COMMON_ROLES).prop_map(|n| json!({"name": n})),
            some_of(&PERMISSIONS, 3).prop_map(|p| json!({"permissions": p})),
        ]
        .boxed(),
        EntityKind::Token => prop_oneof![
            some_of(&["checker", "system-auditor", "auditor", "operator"], 2)
                .prop_map(|r| json!({"roles": r})),
            prop::option::of(index(COMMON_USERS, USERS.len()))
                .prop_map(|u| json!({"user": u.map(|u| USERS[u])})),
            prop::sample::select(TOKENS.to_vec()).prop_map(|n| json!({"name": n})),
        ]
        .boxed(),
    }
}

/// One operation of a script, before it is resolved against the estate.
#[derive(Debug, Clone)]
pub enum Act {
    Create(Body),
    /// A token created through `Engine::create_token`, the door that brings a secret.
    CreateToken(Body),
    Replace(Target, Body),
    /// A merge patch of the target's spec.
    Patch(Target, Value),
    /// A node moved under another.
    Move(NodeRef, NodeRef),
    /// A membership added (or its expiry changed) or removed: by `Op::AddMember` and
    /// `Op::RemoveMember` when `op`, else by an edit of the group.
    AddMember {
        op: bool,
        group: String,
        user: String,
        expires: Option<i64>,
        /// Given only to the op (an edit keeps the membership's source).
        source: Option<Source>,
    },
    RemoveMember {
        op: bool,
        group: String,
        user: String,
    },
    AddSubgroup {
        group: String,
        subgroup: String,
    },
    Delete(Target),
    Login(String),
    /// Close the engine and open its store again.
    Reopen,
}

impl Act {
    /// What the act is, for the coverage count.
    pub fn label(&self) -> String {
        let kind = |k: EntityKind| format!("{k:?}").to_lowercase();
        match self {
            Act::Create(body) => format!("create {}", kind(body.kind())),
            Act::CreateToken(_) => "create token (create_token)".to_owned(),
            Act::Replace(target, _) => format!("replace {}", kind(target.kind())),
            Act::Patch(target, _) => format!("modify {}", kind(target.kind())),
            Act::Move(..) => "move node".to_owned(),
            Act::AddMember { op: true, .. } => "add member (op)".to_owned(),
            Act::AddMember { op: false, .. } => "add member (edit)".to_owned(),
            Act::RemoveMember { op: true, .. } => "remove member (op)".to_owned(),
            Act::RemoveMember { op: false, .. } => "remove member (edit)".to_owned(),
            Act::AddSubgroup { .. } => "add subgroup".to_owned(),
            Act::Delete(target) => format!("delete {}", kind(target.kind())),
            Act::Login(_) => "record login".to_owned(),
            Act::Reopen => "reopen".to_owned(),
        }
    }
}

fn act() -> impl Strategy<Value = Act> {
    let group = || index(COMMON_GROUPS, GROUPS.len()).prop_map(|g| GROUPS[g].to_owned());
    let user = || index(COMMON_USERS, USERS.len()).prop_map(|u| USERS[u].to_owned());
    prop_oneof![
        10 => body().prop_map(|b| match b {
            Body::Token(_) => Act::CreateToken(b),
            other => Act::Create(other),
        }),
        1 => token_body().prop_map(Act::Create),
        5 => body().prop_flat_map(|b| target_of(b.kind()).prop_map(move |t| Act::Replace(t, b.clone()))),
        7 => any_target().prop_flat_map(|t| patch_of(t.kind()).prop_map(move |p| Act::Patch(t.clone(), p))),
        2 => (node_ref(), node_ref()).prop_map(|(n, p)| Act::Move(n, p)),
        4 => (prop::bool::ANY, group(), user(), expiry(), prop::option::weighted(0.2, Just(Source::Scim)))
            .prop_map(|(op, group, user, expires, source)| Act::AddMember { op, group, user, expires, source }),
        2 => (prop::bool::ANY, group(), user())
            .prop_map(|(op, group, user)| Act::RemoveMember { op, group, user }),
        2 => (group(), group()).prop_map(|(group, subgroup)| Act::AddSubgroup { group, subgroup }),
        4 => any_target().prop_map(Act::Delete),
        1 => user().prop_map(Act::Login),
        1 => Just(Act::Reopen),
    ]
}

/// One write: one act, sometimes two or three applied atomically. `create_token` and
/// reopening stand alone.
fn write() -> impl Strategy<Value = Vec<Act>> {
    prop_oneof![
        6 => act().prop_map(|a| vec![a]),
        1 => prop::collection::vec(act(), 2..=3).prop_map(|acts| {
            acts.into_iter()
                .filter(|a| !matches!(a, Act::CreateToken(_) | Act::Reopen))
                .collect::<Vec<_>>()
        }).prop_filter("an empty write", |acts| !acts.is_empty()),
    ]
}

/// A question for both evaluators.
#[derive(Debug, Clone)]
pub struct Ask {
    pub user: usize,
    pub asset: usize,
    pub account: &'static str,
    pub protocol: &'static str,
    pub action: Actions,
    pub at: Time,
    pub scope: &'static str,
    /// Aim at this rule of the pool: its user, asset, account, protocol and action,
    /// as the model holds them when asked (so that many answers grant something).
    pub aim: Option<usize>,
}

impl Ask {
    /// The query, aimed at a rule when it exists: (user, asset, account, protocol,
    /// action).
    pub fn resolve(&self, model: &Model) -> (String, String, String, String, Actions) {
        let plain = (
            USERS[self.user].to_owned(),
            ASSETS[self.asset].to_owned(),
            self.account.to_owned(),
            self.protocol.to_owned(),
            self.action,
        );
        let Some(rule) = self
            .aim
            .and_then(|i| model.rules.values().find(|r| r.value.name == RULES[i]))
        else {
            return plain;
        };
        let rule = &rule.value;
        let user = rule
            .users
            .first()
            .or_else(|| {
                let group = &model.groups.get(rule.groups.first()?)?.value;
                group.members.first().map(|m| &m.user)
            })
            .map(|id| model.users[id].value.username.clone());
        let asset = rule.assets.first().copied().or_else(|| {
            let node = *rule.nodes.first()?;
            model
                .assets
                .values()
                .find(|a| a.value.nodes.contains(&node))
                .map(|a| a.value.id)
        });
        let target = asset.map(|id| &model.assets[&id].value);
        // An account and a protocol both the rule and the asset name, when there is one.
        let account = rule
            .accounts
            .iter()
            .find_map(|a| match a {
                AccountSelector::Named(name) => Some(name.to_string()),
                AccountSelector::Input => Some("@INPUT".to_owned()),
                AccountSelector::SameAsUser => user.clone(),
                _ => None,
            })
            .or_else(|| Some(target?.accounts.first()?.username.clone()));
        let protocol = match &rule.protocols {
            ProtocolFilter::Only(names) => names
                .iter()
                .find(|n| target.is_some_and(|t| t.protocols.iter().any(|p| p.name() == &***n)))
                .or(names.first())
                .map(|n| n.to_string()),
            ProtocolFilter::All => target
                .and_then(|t| t.protocols.first())
                .map(|p| p.name().to_owned()),
        };
        let action = Actions::SINGLE
            .iter()
            .map(|(_, a)| *a)
            .find(|a| rule.actions.contains(*a));
        (
            user.unwrap_or(plain.0),
            asset.map_or(plain.1, |id| model.assets[&id].value.name.clone()),
            account.unwrap_or(plain.2),
            protocol.unwrap_or(plain.3),
            action.unwrap_or(plain.4),
        )
    }
}

fn ask() -> impl Strategy<Value = Ask> {
    (
        index(COMMON_USERS, USERS.len()),
        index(COMMON_ASSETS, ASSETS.len()),
        prop::sample::select(vec!["root", "admin", "ann", "bob", "@INPUT", "@ANON"]),
        prop::sample::select(vec!["ssh", "rdp", "vnc"]),
        prop::sample::select(Actions::SINGLE.iter().map(|(_, a)| *a).collect::<Vec<_>>()),
        ((-4i64..=5), (-1i64..=1)).prop_map(|(h, d)| hours(h).add_micros(d)),
        prop::sample::select(SCOPES.to_vec()),
        prop::option::weighted(0.6, 0..COMMON_RULES),
    )
        .prop_map(
            |(user, asset, account, protocol, action, at, scope, aim)| Ask {
                aim,
                user,
                asset,
                account,
                protocol,
                action,
                at,
                scope,
            },
        )
}

/// A script: a prelude that builds an estate worth writing to, random writes after
/// it, and the questions asked after each.
#[derive(Debug, Clone)]
pub struct Script {
    /// How many of the writes build the estate (no questions asked meanwhile).
    pub prelude: usize,
    pub writes: Vec<Vec<Act>>,
    /// Who makes each write: the operator (`None`), or the token of `ACTOR_TOKENS`
    /// that the prelude created.
    pub actors: Vec<Option<usize>>,
    pub asks: Vec<Ask>,
}

/// The tokens the prelude creates for writes to act as.
pub const ACTOR_TOKENS: usize = 2;

pub fn script(max_writes: usize) -> impl Strategy<Value = Script> {
    let actor = prop_oneof![3 => Just(None), 1 => (0..ACTOR_TOKENS).prop_map(Some)];
    (
        prelude(),
        prop::collection::vec((actor, write()), 1..max_writes),
        prop::collection::vec(ask(), 12),
    )
        .prop_map(|(prelude, writes, asks)| Script {
            prelude: prelude.len(),
            actors: std::iter::repeat_n(None, prelude.len())
                .chain(writes.iter().map(|(actor, _)| *actor))
                .collect(),
            writes: prelude
                .into_iter()
                .chain(writes.into_iter().map(|(_, write)| write))
                .collect(),
            asks,
        })
}

/// A token for writes to act as: one or two roles, from none to every permission,
/// now and then one that expired long ago.
fn actor_token(name: &'static str) -> impl Strategy<Value = Body> {
    (
        prop::sample::subsequence(
            vec![
                "system-admin",
                "auditor",
                "checker",
                "system-auditor",
                "scim",
                "user",
            ],
            1..=2,
        ),
        prop_oneof![9 => Just(None), 1 => Just(Some(PAST))],
    )
        .prop_map(move |(roles, expires_at)| {
            Body::Token(json!({"name": name, "roles": roles, "expires_at": expires_at}))
        })
}

/// `body` named `name`: the prelude writes each common name of a pool once.
fn named(mut body: Body, name: &str) -> Body {
    match &mut body {
        Body::User(json) => {
            json["username"] = json!(name);
            json["id"] = Value::Null;
            if !json["email"].is_null() {
                json["email"] = json!(format!("{name}@e.io"));
            }
        }
        Body::Asset { json, nodes } => {
            nodes.dedup();
            nodes.retain(|n| *n != NodeRef::Missing);
            json["name"] = json!(name);
            json["id"] = Value::Null;
            let mut seen = Vec::new();
            let accounts = json["accounts"].as_array_mut().expect("a list");
            accounts.retain(|a| {
                let username = a["username"].clone();
                let fresh = !seen.contains(&username) && username != ACCOUNTS[4];
                seen.push(username);
                fresh && a["id"].is_null()
            });
        }
        Body::Node { name: n, parent } => {
            *n = name.to_owned();
            *parent = NodeRef::Root;
        }
        Body::Group(json) if json.get("members").is_some() => {
            json["name"] = json!(name);
            json["subgroups"] = json!([]);
        }
        Body::Group(json) | Body::Role(json) | Body::Token(json) => json["name"] = json!(name),
        Body::Rule { json, nodes } => {
            json["name"] = json!(name);
            json["id"] = Value::Null;
            nodes.dedup();
            nodes.retain(|n| *n != NodeRef::Missing);
            for field in ["users", "groups", "assets"] {
                let mut list: Vec<String> =
                    serde_json::from_value(json[field].take()).expect("names");
                list.sort();
                list.dedup();
                json[field] = json!(list);
            }
            if json["expires_at"] == json!(PAST) {
                json["expires_at"] = Value::Null;
            }
        }
    }
    body
}

fn each(
    pool: &'static [&'static str],
    common: usize,
    body: impl Fn() -> BoxedStrategy<Body>,
) -> impl Strategy<Value = Vec<Body>> {
    (0..common)
        .map(|i| body().prop_map(move |b| named(b, pool[i])))
        .collect::<Vec<_>>()
}

/// Every common name of each pool written once, in an order where references can
/// hit (users, nodes, groups, assets, rules), plus a custom role and the tokens
/// writes act as (`ACTOR_TOKENS`): most later writes then find what they name. A
/// prelude write may still be refused.
fn prelude() -> impl Strategy<Value = Vec<Vec<Act>>> {
    (
        each(&USERS, COMMON_USERS, || user_body().boxed()),
        each(&NODES, COMMON_NODES, || node_body().boxed()),
        each(&GROUPS, COMMON_GROUPS, || group_body().boxed()),
        each(&ASSETS, COMMON_ASSETS, || asset_body().boxed()),
        each(&RULES, COMMON_RULES, || rule_body().boxed()),
        role_body().prop_map(|b| named(b, ROLES[0])),
        (0..ACTOR_TOKENS)
            .map(|i| actor_token(TOKENS[i]))
            .collect::<Vec<_>>(),
    )
        .prop_map(|(users, nodes, groups, assets, rules, role, tokens)| {
            std::iter::once(role)
                .chain(users)
                .chain(nodes)
                .chain(groups)
                .chain(assets)
                .chain(rules)
                .map(|b| vec![Act::Create(b)])
                .chain(tokens.into_iter().map(|b| vec![Act::CreateToken(b)]))
                .collect()
        })
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            let object = target.as_object_mut().expect("made an object");
            for (key, value) in fields {
                if value.is_null() {
                    object.remove(key);
                } else {
                    merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn edit_group(group: &str, edit: impl FnOnce(&mut GroupSpec) + Send + 'static) -> Op {
    Op::Modify {
        kind: EntityKind::Group,
        target: group.to_owned(),
        edit: Box::new(move |spec| {
            if let Spec::Group(group) = spec {
                edit(group);
            }
            Ok(())
        }),
    }
}

/// The op an act stands for, resolved against `model`. (None: reopening, no op.)
pub fn op(act: &Act, model: &Model) -> Option<Op> {
    Some(match act {
        Act::Create(body) | Act::CreateToken(body) => Op::Create(body.spec(model)),
        Act::Replace(target, body) => Op::Replace {
            target: target.reference(model),
            spec: body.spec(model),
        },
        Act::Patch(target, patch) => {
            let kind = target.kind();
            let patch = patch.clone();
            Op::Modify {
                kind,
                target: target.reference(model),
                edit: Box::new(move |spec| {
                    let mut json = spec.to_json();
                    merge_patch(&mut json, &patch);
                    *spec =
                        Spec::from_json(kind, json).map_err(|error| ValidationError::Invalid {
                            field: "patch",
                            message: error.to_string(),
                        })?;
                    Ok(())
                }),
            }
        }
        Act::Move(node, parent) => {
            let parent = path(model, parent);
            Op::Modify {
                kind: EntityKind::Node,
                target: path(model, node),
                edit: Box::new(move |spec| {
                    if let Spec::Node(node) = spec {
                        node.parent = parent;
                    }
                    Ok(())
                }),
            }
        }
        Act::AddMember {
            op: true,
            group,
            user,
            expires,
            source,
        } => Op::AddMember {
            group: group.clone(),
            member: match (expires, source) {
                (None, None) => MemberSpec::Name(user.clone()),
                _ => MemberSpec::Detailed {
                    user: user.clone(),
                    expires_at: expires.map(hours),
                    source: source.clone(),
                },
            },
        },
        Act::RemoveMember {
            op: true,
            group,
            user,
        } => Op::RemoveMember {
            group: group.clone(),
            user: user.clone(),
        },
        Act::AddMember {
            op: false,
            group,
            user,
            expires,
            ..
        } => {
            let (user, expires_at) = (user.clone(), expires.map(hours));
            edit_group(group, move |spec| {
                match spec.members.iter_mut().find(|m| m.user() == user) {
                    Some(member) => {
                        let source = match member {
                            MemberSpec::Detailed { source, .. } => source.clone(),
                            MemberSpec::Name(_) => None,
                        };
                        *member = MemberSpec::Detailed {
                            user,
                            expires_at,
                            source,
                        };
                    }
                    None => spec.members.push(MemberSpec::Detailed {
                        user,
                        expires_at,
                        source: None,
                    }),
                }
            })
        }
        Act::RemoveMember {
            op: false,
            group,
            user,
        } => {
            let user = user.clone();
            edit_group(group, move |spec| spec.members.retain(|m| m.user() != user))
        }
        Act::AddSubgroup { group, subgroup } => {
            let subgroup = subgroup.clone();
            edit_group(group, move |spec| {
                spec.subgroups.push(SubgroupSpec::Name(subgroup));
            })
        }
        Act::Delete(target) => Op::Delete {
            kind: target.kind(),
            target: target.reference(model),
        },
        Act::Login(user) => Op::RecordLogin {
            user: user.clone(),
            at: hours(-1),
        },
        Act::Reopen => return None,
    })
}
