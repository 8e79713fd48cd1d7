//! Random estates and write scripts for property tests.
//!
//! Entities come from small pools of names (`u0`…, `g0`…, `n0`…, `a0`…, `r0`…) so
//! that random references mostly hit. Times are whole hours around [`T0`], so the
//! boundaries tests probe are few and shared.

#![allow(dead_code)]

use portcullis_engine::*;
use proptest::prelude::*;
use serde_json::json;

pub const USERS: usize = 6;
pub const GROUPS: usize = 5;
pub const NODES: usize = 6;
pub const ASSETS: usize = 6;
pub const RULES: usize = 7;
pub const ACCOUNT_NAMES: [&str; 3] = ["root", "admin", "u1"];
pub const PROTOCOL_NAMES: [&str; 3] = ["ssh", "rdp", "vnc"];
const PORTS: [u16; 3] = [22, 3389, 5900];

/// The centre of every random time: 2030-01-01T00:00:00Z (after the moment the tests
/// run, so a `starts_at` left to default is always before it).
pub const T0: Time = Time::from_secs(1_893_456_000);
const HOUR: i64 = 3_600_000_000;

/// `T0` plus `hours`.
pub fn hours(hours: i64) -> Time {
    T0.add_micros(hours * HOUR)
}

/// Every instant worth probing: each whole hour in the window and one microsecond
/// either side of it.
pub fn arb_instant() -> impl Strategy<Value = Time> {
    (-4i64..=4, -1i64..=1).prop_map(|(h, d)| hours(h).add_micros(d))
}

fn arb_expiry() -> impl Strategy<Value = Option<Time>> {
    prop_oneof![3 => Just(None), 2 => (-3i64..=3).prop_map(|h| Some(hours(h)))]
}

fn user(i: usize) -> String {
    format!("u{i}")
}
fn group(i: usize) -> String {
    format!("g{i}")
}
fn asset(i: usize) -> String {
    format!("a{i}")
}
fn rule(i: usize) -> String {
    format!("r{i}")
}

/// Node `i`'s path, given where each node sits: `parents[i]` is `None` for the root
/// or `Some(j)` for node `j`, which must come before `i`.
fn node_path(i: usize, parents: &[Option<usize>]) -> String {
    match parents[i] {
        None => format!("/Default/n{i}"),
        Some(parent) => format!("{}/n{i}", node_path(parent, parents)),
    }
}

/// One step of a script.
#[derive(Debug, Clone)]
pub enum Step {
    User {
        i: usize,
        active: bool,
        expires_at: Option<Time>,
    },
    Group {
        i: usize,
        members: Vec<(usize, Option<Time>)>,
        subgroups: Vec<(usize, Option<Time>)>,
        roles: Vec<(String, String)>,
    },
    Asset {
        i: usize,
        nodes: Vec<usize>,
        accounts: Vec<usize>,
        protocols: Vec<usize>,
        active: bool,
    },
    Rule {
        i: usize,
        deny: bool,
        users: Vec<usize>,
        groups: Vec<usize>,
        assets: Vec<usize>,
        nodes: Vec<usize>,
        accounts: Vec<String>,
        protocols: Vec<usize>,
        all_protocols: bool,
        actions: u8,
        starts_at: Option<Time>,
        expires_at: Option<Time>,
        active: bool,
    },
    MoveNode {
        i: usize,
        parent: Option<usize>,
    },
    /// One membership through `Op::AddMember` (`add`) or `Op::RemoveMember`.
    Member {
        group: usize,
        user: usize,
        expires_at: Option<Time>,
        add: bool,
    },
    Delete {
        kind: EntityKind,
        i: usize,
    },
}

fn arb_accounts_spec() -> impl Strategy<Value = Vec<String>> {
    let selector = prop_oneof![
        Just("@ALL".to_owned()),
        Just("@USER".to_owned()),
        Just("@INPUT".to_owned()),
        Just("@ANON".to_owned()),
        prop::sample::select(ACCOUNT_NAMES.to_vec()).prop_map(str::to_owned),
        prop::sample::select(ACCOUNT_NAMES.to_vec()).prop_map(|n| format!("!{n}")),
    ];
    prop::collection::vec(selector, 0..4)
}

fn arb_indexes(pool: usize, max: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::btree_set(0..pool, 0..=max).prop_map(|s| s.into_iter().collect())
}

/// A user written: active or not, expiring or not.
pub fn arb_user_step() -> impl Strategy<Value = Step> {
    (0..USERS, prop::bool::weighted(0.85), arb_expiry()).prop_map(|(i, active, expires_at)| {
        Step::User {
            i,
            active,
            expires_at,
        }
    })
}

/// A group written: members and subgroups (each maybe expiring) and role assignments.
pub fn arb_group_step() -> impl Strategy<Value = Step> {
    (
        0..GROUPS,
        prop::collection::btree_map(0..USERS, arb_expiry(), 0..4),
        prop::collection::btree_map(0..GROUPS, arb_expiry(), 0..3),
        prop::collection::vec(
            (
                prop::sample::select(vec!["*", "prod", "dev"]),
                prop::sample::select(vec!["system-auditor", "checker", "scim"]),
            ),
            0..2,
        ),
    )
        .prop_map(|(i, members, subgroups, roles)| Step::Group {
            i,
            members: members.into_iter().collect(),
            subgroups: subgroups.into_iter().collect(),
            roles: roles
                .into_iter()
                .map(|(s, r)| (s.to_owned(), r.to_owned()))
                .collect(),
        })
}

/// An asset written: nodes, accounts, protocols, active or not.
pub fn arb_asset_step() -> impl Strategy<Value = Step> {
    (
        0..ASSETS,
        arb_indexes(NODES, 2),
        arb_indexes(ACCOUNT_NAMES.len(), 3),
        arb_indexes(PROTOCOL_NAMES.len(), 2),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(i, nodes, accounts, protocols, active)| Step::Asset {
            i,
            nodes,
            accounts,
            protocols,
            active,
        })
}

/// A rule written: allow or deny, with every part random (often incomplete).
pub fn arb_rule_step() -> impl Strategy<Value = Step> {
    (
        (
            0..RULES,
            prop::bool::weighted(0.25),
            arb_indexes(USERS, 2),
            arb_indexes(GROUPS, 2),
            arb_indexes(ASSETS, 2),
            arb_indexes(NODES, 2),
        ),
        (
            arb_accounts_spec(),
            arb_indexes(PROTOCOL_NAMES.len(), 2),
            prop::bool::weighted(0.4),
            0u8..128,
            prop_oneof![Just(None), (-3i64..=1).prop_map(|h| Some(hours(h)))],
            (1i64..=4).prop_map(|h| Some(hours(h))),
            prop::bool::weighted(0.9),
        ),
    )
        .prop_map(
            |(
                (i, deny, users, groups, assets, nodes),
                (accounts, protocols, all_protocols, actions, starts_at, expires_at, active),
            )| {
                let expires_at = if deny && actions % 3 == 0 {
                    None
                } else {
                    expires_at
                };
                Step::Rule {
                    i,
                    deny,
                    users,
                    groups,
                    assets,
                    nodes,
                    accounts,
                    protocols,
                    all_protocols,
                    actions,
                    starts_at,
                    expires_at,
                    active,
                }
            },
        )
}

pub fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => arb_user_step(),
        3 => arb_group_step(),
        3 => arb_asset_step(),
        4 => arb_rule_step(),
        1 => (0..NODES, prop::option::of(0..NODES)).prop_map(|(i, parent)| Step::MoveNode { i, parent }),
        2 => (0..GROUPS, 0..USERS, arb_expiry(), prop::bool::weighted(0.7))
            .prop_map(|(group, user, expires_at, add)| Step::Member { group, user, expires_at, add }),
        1 => (prop::sample::select(vec![EntityKind::User, EntityKind::Group, EntityKind::Asset, EntityKind::Rule, EntityKind::Node]), 0..7usize)
            .prop_map(|(kind, i)| Step::Delete { kind, i }),
    ]
}

/// The node tree every script starts from: `n0..n5` with random parents.
pub fn arb_tree() -> impl Strategy<Value = Vec<Option<usize>>> {
    (0..NODES)
        .map(|i| {
            if i == 0 {
                Just(None).boxed()
            } else {
                prop::option::weighted(0.8, 0..i).boxed()
            }
        })
        .collect::<Vec<_>>()
}

/// Node paths as they stand after the tree was created (moves change them; scripts
/// refer to nodes by id once created, see [`Script::node_ids`]).
pub fn tree_ops(parents: &[Option<usize>]) -> Vec<Op> {
    (0..parents.len())
        .map(|i| {
            let parent =
                parents[i].map_or_else(|| "/Default".to_owned(), |p| node_path(p, parents));
            let mut spec = NodeSpec::new(format!("n{i}"), parent);
            spec.id = Some(node_id(i));
            Op::Create(Spec::Node(spec))
        })
        .collect()
}

/// A fixed id per node index, so steps can refer to nodes wherever they have moved.
pub fn node_id(i: usize) -> Id {
    Id::from_u128(0x1000 + i as u128)
}

fn spec(kind: EntityKind, value: serde_json::Value) -> Spec {
    Spec::from_json(kind, value).expect("scripts write well-formed specs")
}

/// The operation a step stands for: a create when the entity is new, a replace when
/// it exists (judged by `snapshot`).
pub fn step_op(step: &Step, snapshot: &Snapshot) -> Op {
    let exists = |kind, name: &str| snapshot.resolve(kind, name).is_ok();
    let put = |kind, name: String, value: serde_json::Value| {
        let spec = spec(kind, value);
        if exists(kind, &name) {
            Op::Replace { target: name, spec }
        } else {
            Op::Create(spec)
        }
    };
    let nodes = |list: &[usize]| {
        list.iter()
            .map(|&n| node_id(n).to_string())
            .collect::<Vec<_>>()
    };
    // Mostly refer to what exists, so most random writes apply.
    let existing = |kind, names: Vec<String>| {
        names
            .into_iter()
            .filter(|n| exists(kind, n))
            .collect::<Vec<_>>()
    };
    match step {
        Step::User {
            i,
            active,
            expires_at,
        } => put(
            EntityKind::User,
            user(*i),
            json!({"username": user(*i), "active": active, "expires_at": expires_at, "email": format!("u{i}@example.com")}),
        ),
        Step::Group {
            i,
            members,
            subgroups,
            roles,
        } => put(
            EntityKind::Group,
            group(*i),
            json!({
                "name": group(*i),
                "members": members.iter().filter(|(u, _)| exists(EntityKind::User, &user(*u))).map(|(u, e)| json!({"user": user(*u), "expires_at": e})).collect::<Vec<_>>(),
                "subgroups": subgroups.iter().filter(|(g, _)| exists(EntityKind::Group, &group(*g))).map(|(g, e)| json!({"group": group(*g), "expires_at": e})).collect::<Vec<_>>(),
                "roles": roles.iter().map(|(s, r)| json!({"scope": s, "roles": [r]})).collect::<Vec<_>>(),
            }),
        ),
        Step::Asset {
            i,
            nodes: in_nodes,
            accounts,
            protocols,
            active,
        } => put(
            EntityKind::Asset,
            asset(*i),
            json!({
                "name": asset(*i),
                "nodes": if in_nodes.is_empty() { vec!["/Default".to_owned()] } else { nodes(in_nodes) },
                "accounts": accounts.iter().map(|&a| json!({"username": ACCOUNT_NAMES[a]})).collect::<Vec<_>>(),
                "protocols": protocols.iter().map(|&p| format!("{}/{}", PROTOCOL_NAMES[p], PORTS[p])).collect::<Vec<_>>(),
                "active": active,
            }),
        ),
        Step::Rule {
            i,
            deny,
            users,
            groups,
            assets,
            nodes: on_nodes,
            accounts,
            protocols,
            all_protocols,
            actions,
            starts_at,
            expires_at,
            active,
        } => put(
            EntityKind::Rule,
            rule(*i),
            json!({
                "name": rule(*i),
                "effect": if *deny { "deny" } else { "allow" },
                "users": existing(EntityKind::User, users.iter().map(|&u| user(u)).collect()),
                "groups": existing(EntityKind::Group, groups.iter().map(|&g| group(g)).collect()),
                "assets": existing(EntityKind::Asset, assets.iter().map(|&a| asset(a)).collect()),
                "nodes": nodes(on_nodes),
                "accounts": accounts,
                "protocols": if *all_protocols { vec!["all".to_owned()] } else { protocols.iter().map(|&p| PROTOCOL_NAMES[p].to_owned()).collect() },
                "actions": Actions::from_bits(*actions).names().collect::<Vec<_>>(),
                "starts_at": starts_at,
                "expires_at": expires_at,
                "active": active,
            }),
        ),
        Step::MoveNode { i, parent } => {
            let parent = parent.map_or_else(|| "/Default".to_owned(), |p| node_id(p).to_string());
            Op::Modify {
                kind: EntityKind::Node,
                target: node_id(*i).to_string(),
                edit: Box::new(move |spec| {
                    if let Spec::Node(node) = spec {
                        node.parent = parent;
                    }
                    Ok(())
                }),
            }
        }
        Step::Member {
            group: g,
            user: u,
            expires_at,
            add,
        } => {
            if *add {
                Op::AddMember {
                    group: group(*g),
                    member: MemberSpec::Detailed {
                        user: user(*u),
                        expires_at: *expires_at,
                        source: None,
                    },
                }
            } else {
                Op::RemoveMember {
                    group: group(*g),
                    user: user(*u),
                }
            }
        }
        Step::Delete { kind, i } => {
            let target = match kind {
                EntityKind::User => user(*i),
                EntityKind::Group => group(*i),
                EntityKind::Asset => asset(*i),
                EntityKind::Rule => rule(*i),
                _ => node_id(*i).to_string(),
            };
            Op::Delete {
                kind: *kind,
                target,
            }
        }
    }
}

/// A random estate: a node tree and a script of steps, applied one write per step.
pub fn arb_script(max_steps: usize) -> impl Strategy<Value = (Vec<Option<usize>>, Vec<Step>)> {
    (arb_tree(), prop::collection::vec(arb_step(), 1..max_steps))
}

/// `step` made to write entity `i` of its kind (moves and deletes are left as they are).
pub fn with_index(mut step: Step, index: usize) -> Step {
    match &mut step {
        Step::User { i, .. }
        | Step::Group { i, .. }
        | Step::Asset { i, .. }
        | Step::Rule { i, .. } => *i = index,
        Step::MoveNode { .. } | Step::Member { .. } | Step::Delete { .. } => {}
    }
    step
}

/// `count` steps from `step`, the `k`th writing entity `k` of its kind.
fn each<S: Strategy<Value = Step>>(
    count: usize,
    step: fn() -> S,
) -> impl Strategy<Value = Vec<Step>> {
    (0..count)
        .map(|k| step().prop_map(move |s| with_index(s, k)))
        .collect::<Vec<_>>()
}

/// The prelude of [`arb_populated_script`]: like the steps of [`arb_step`], but leaning
/// towards what grants (active, unexpired, complete, offering protocols).
fn populated_user() -> impl Strategy<Value = Step> {
    let expiry = prop_oneof![3 => Just(None), 1 => (-3i64..=3).prop_map(|h| Some(hours(h)))];
    (prop::bool::weighted(0.95), expiry).prop_map(|(active, expires_at)| Step::User {
        i: 0,
        active,
        expires_at,
    })
}

fn populated_group() -> impl Strategy<Value = Step> {
    (
        arb_group_step(),
        prop::collection::btree_map(0..USERS, arb_expiry(), 1..4),
    )
        .prop_map(|(step, members)| match step {
            Step::Group {
                i,
                subgroups,
                roles,
                ..
            } => Step::Group {
                i,
                members: members.into_iter().collect(),
                subgroups,
                roles,
            },
            other => other,
        })
}

fn populated_asset() -> impl Strategy<Value = Step> {
    let protocols = prop::collection::btree_set(0..PROTOCOL_NAMES.len(), 1..=3)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>());
    (arb_asset_step(), protocols, prop::bool::weighted(0.95)).prop_map(
        |(step, protocols, active)| match step {
            Step::Asset {
                i, nodes, accounts, ..
            } => Step::Asset {
                i,
                nodes,
                accounts,
                protocols,
                active,
            },
            other => other,
        },
    )
}

fn populated_rule() -> impl Strategy<Value = Step> {
    let selector = prop_oneof![
        3 => Just("@ALL".to_owned()),
        1 => Just("@USER".to_owned()),
        1 => Just("@INPUT".to_owned()),
        1 => Just("@ANON".to_owned()),
        2 => prop::sample::select(ACCOUNT_NAMES.to_vec()).prop_map(str::to_owned),
        1 => prop::sample::select(ACCOUNT_NAMES.to_vec()).prop_map(|n| format!("!{n}")),
    ];
    let starts_at = prop_oneof![2 => Just(None), 1 => (-3i64..=1).prop_map(|h| Some(hours(h)))];
    let expires_at = prop_oneof![1 => Just(None), 2 => (1i64..=4).prop_map(|h| Some(hours(h)))];
    (
        (
            arb_rule_step(),
            prop::bool::weighted(0.2),
            arb_indexes(USERS, 2),
            1..GROUPS,
            arb_indexes(ASSETS, 2),
            0..NODES,
        ),
        (
            prop::collection::vec(selector, 1..4),
            prop::bool::weighted(0.6),
            1u8..128,
            starts_at,
            expires_at,
            prop::bool::weighted(0.95),
        ),
    )
        .prop_map(
            |(
                (step, deny, users, group, assets, node),
                (accounts, all_protocols, actions, starts_at, expires_at, active),
            )| match step {
                Step::Rule {
                    i,
                    groups,
                    nodes,
                    protocols,
                    ..
                } => Step::Rule {
                    i,
                    deny,
                    users,
                    groups: if groups.is_empty() {
                        vec![group]
                    } else {
                        groups
                    },
                    assets,
                    nodes: if nodes.is_empty() { vec![node] } else { nodes },
                    accounts,
                    protocols,
                    all_protocols,
                    actions,
                    starts_at,
                    expires_at,
                    active,
                },
                other => other,
            },
        )
}

/// A random estate in which most entities exist and most rules could grant: every
/// user, group, asset and rule written once, in that order (leaning towards what
/// grants), then up to `max_steps` random steps over it. Where [`arb_script`] builds
/// estates in which almost every query is a denial, these grant something to many.
pub fn arb_populated_script(
    max_steps: usize,
) -> impl Strategy<Value = (Vec<Option<usize>>, Vec<Step>)> {
    (
        arb_tree(),
        (
            each(USERS, populated_user),
            each(GROUPS, populated_group),
            each(ASSETS, populated_asset),
            each(RULES, populated_rule),
        ),
        prop::collection::vec(arb_step(), 0..max_steps),
    )
        .prop_map(|(tree, (users, groups, assets, rules), steps)| {
            let prelude = users.into_iter().chain(groups).chain(assets).chain(rules);
            (tree, prelude.chain(steps).collect())
        })
}

/// Applies a script to `engine`, one write per step; refused steps are skipped.
/// Returns how many writes were accepted.
pub fn run_script(engine: &Engine, tree: &[Option<usize>], steps: &[Step]) -> usize {
    engine
        .write(&Actor::system("test"), tree_ops(tree))
        .expect("the tree is well-formed");
    steps
        .iter()
        .filter(|step| {
            engine
                .write(
                    &Actor::system("test"),
                    vec![step_op(step, &engine.snapshot())],
                )
                .is_ok()
        })
        .count()
}

/// Every user and asset name of the pools, including some that may not exist.
pub fn user_names() -> Vec<String> {
    (0..USERS).map(user).collect()
}
pub fn asset_names() -> Vec<String> {
    (0..ASSETS).map(asset).collect()
}

/// Creates one user from its JSON spec, as the system, and says its revision.
pub fn create_user(engine: &Engine, spec: serde_json::Value) -> u64 {
    let user = Spec::from_json(EntityKind::User, spec).expect("a user spec");
    engine
        .write(&Actor::system("test"), vec![Op::Create(user)])
        .expect("the user is created")
        .revision
}

/// An op that changes the user `target` by `edit`.
pub fn edit_user(target: &str, edit: impl FnOnce(&mut UserSpec) + Send + 'static) -> Op {
    Op::Modify {
        kind: EntityKind::User,
        target: target.to_owned(),
        edit: Box::new(move |spec| {
            if let Spec::User(spec) = spec {
                edit(spec);
            }
            Ok(())
        }),
    }
}
