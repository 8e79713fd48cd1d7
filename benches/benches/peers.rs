//! Portcullis against the embedded policy engines people use today: Cedar
//! (`cedar-policy`) and casbin (`casbin`, RBAC with role links), on one estate and the
//! same questions.
//!
//! For each rule count (100, 1,000, 10,000) the bench draws one estate from a fixed
//! seed ([`PeerEstate::new`]): a node tree 3 deep, assets under its leaves, groups (a
//! tenth of them departments holding the others as nested teams), users in 2–4 groups,
//! and group→node rules with an account condition (`@ALL` or one named account), a
//! protocol condition (all, or one or two named) and an action set; 5% are deny rules.
//! The estate is written into Portcullis through `Engine::write`, then translated into
//! a Cedar policy set and entities and a casbin model with its policy and role links.
//!
//! Before anything is timed, all three must give the same decision on a mixed sample
//! of requests (half allowed, by Portcullis' answer): a disagreement panics with the
//! request and the three answers. The same goes for "list a user's assets" on a few
//! users where the peers are asked it (they have no reverse query, so the list is a
//! scan of every asset; see BENCHMARKS.md).
//!
//! Check latency is timed with criterion (group `peers-check`); the list, which is
//! far too slow in the peers for criterion's minimum iteration count at the larger
//! sizes, is timed by a bounded loop and written with the estate's figures to
//! `target/bench-report/peers.json` for `benches/report`.
//!
//! Run by `cargo test` (no `--bench`; the target is `test = true`), it builds only the 100-rule
//! estate, asserts agreement and runs each check once.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use casbin::prelude::*;
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, EntityUid, PolicySet, Request,
    RestrictedExpression,
};
use criterion::{BenchmarkId, Criterion};
use portcullis_benches::{AT, bench_mode};
use portcullis_engine::{
    AccountSelector, AccountSpec, Actions, Actor, AssetSpec, Effect, Engine, Evaluator, GroupSpec,
    MemberSpec, NodeSpec, Op, Protocol, ProtocolFilter, Query, RuleSpec, Snapshot, Spec,
    SubgroupSpec, Time, UserSpec,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

portcullis_benches::server_allocator!();

const SEED: u64 = 0x9EE2_5EED;
/// When every rule starts (2020-01-01), so that all are in force at [`AT`].
const RULES_START: Time = Time::from_secs(1_577_836_800);
/// The requests asked of all three before timing, and cycled through when timing.
const N_SAMPLES: usize = 512;
/// Users whose asset list is compared across the three engines.
const N_LIST_USERS: usize = 4;
/// The most wall time one engine's list loop may take per rule count (a tenth of it
/// in test mode).
fn list_budget() -> Duration {
    if bench_mode() {
        Duration::from_secs(3)
    } else {
        Duration::from_millis(300)
    }
}

const ACCOUNTS: [&str; 4] = ["root", "admin", "deploy", "dba"];
const PROTOCOLS: [(&str, u16); 5] = [
    ("ssh", 22),
    ("sftp", 22),
    ("rdp", 3389),
    ("mysql", 3306),
    ("postgresql", 5432),
];
const ACTIONS: [(&str, Actions); 3] = [
    ("connect", Actions::CONNECT),
    ("upload", Actions::UPLOAD),
    ("download", Actions::DOWNLOAD),
];

// ----- the estate ----------------------------------------------------------------------

struct NodeP {
    name: String,
    path: String,
    parent: Option<usize>,
}

struct AssetP {
    name: String,
    leaf: usize,
    accounts: Vec<&'static str>,
    protocols: Vec<&'static str>,
}

struct GroupP {
    name: String,
    /// The department a team sits in (a nested group).
    department: Option<usize>,
}

struct UserP {
    name: String,
    groups: Vec<usize>,
}

struct RuleP {
    name: String,
    deny: bool,
    group: usize,
    node: usize,
    /// `None`: `@ALL`.
    account: Option<&'static str>,
    /// `None`: every protocol.
    protocols: Option<Vec<&'static str>>,
    /// Indexes into [`ACTIONS`].
    actions: Vec<usize>,
}

/// One estate, as plain data every engine is built from.
struct PeerEstate {
    nodes: Vec<NodeP>,
    assets: Vec<AssetP>,
    groups: Vec<GroupP>,
    users: Vec<UserP>,
    rules: Vec<RuleP>,
    /// Assets under each node (the node's subtree), for the sampler.
    assets_under: Vec<Vec<usize>>,
    /// Users reaching each group (direct members, and members of its teams).
    members_of: Vec<Vec<usize>>,
}

#[derive(Clone, Debug)]
struct Req {
    user: String,
    asset: String,
    account: &'static str,
    protocol: &'static str,
    action: usize,
}

impl PeerEstate {
    fn new(n_rules: usize) -> PeerEstate {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ n_rules as u64);
        let n_users = n_rules;
        let n_groups = (n_rules / 5).max(20);
        let n_assets = n_rules.max(100);
        // A tree 3 deep whose leaves hold about 8 assets each.
        let depth = 3;
        let mut fanout = 2usize;
        while fanout.pow(depth) * 8 < n_assets {
            fanout += 1;
        }
        let mut nodes = vec![NodeP {
            name: "Default".to_owned(),
            path: "/Default".to_owned(),
            parent: None,
        }];
        let mut level_start = 0;
        let mut level_len = 1;
        for level in 1..=depth {
            let start = nodes.len();
            for parent in level_start..level_start + level_len {
                for child in 0..fanout {
                    let index = (parent - level_start) * fanout + child;
                    let name = format!("n{level}-{index}");
                    let path = format!("{}/{name}", nodes[parent].path);
                    nodes.push(NodeP {
                        name,
                        path,
                        parent: Some(parent),
                    });
                }
            }
            level_start = start;
            level_len = nodes.len() - start;
        }
        let leaves: Vec<usize> = (level_start..nodes.len()).collect();

        let assets: Vec<AssetP> = (0..n_assets)
            .map(|i| {
                let n_accounts = rng.gen_range(1..=2);
                let mut accounts: Vec<&'static str> = ACCOUNTS
                    .choose_multiple(&mut rng, n_accounts)
                    .copied()
                    .collect();
                accounts.sort_unstable();
                let n_protocols = rng.gen_range(1..=2);
                let mut protocols: Vec<&'static str> = PROTOCOLS
                    .choose_multiple(&mut rng, n_protocols)
                    .map(|(name, _)| *name)
                    .collect();
                protocols.sort_unstable();
                AssetP {
                    name: format!("a{i}"),
                    leaf: leaves[rng.gen_range(0..leaves.len())],
                    accounts,
                    protocols,
                }
            })
            .collect();

        let n_departments = n_groups / 10;
        let groups: Vec<GroupP> = (0..n_groups)
            .map(|i| GroupP {
                name: format!("g{i}"),
                department: (i >= n_departments).then(|| rng.gen_range(0..n_departments)),
            })
            .collect();
        let users: Vec<UserP> = (0..n_users)
            .map(|i| {
                let mut groups: Vec<usize> = (0..rng.gen_range(2..=4))
                    .map(|_| rng.gen_range(n_departments..n_groups))
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                UserP {
                    name: format!("u{i}"),
                    groups,
                }
            })
            .collect();

        let rules: Vec<RuleP> = (0..n_rules)
            .map(|i| {
                let deny = rng.gen_bool(0.05);
                let group = if rng.gen_bool(0.2) {
                    rng.gen_range(0..n_departments)
                } else {
                    rng.gen_range(n_departments..n_groups)
                };
                // Levels 1 to 3; deeper nodes are likelier.
                let level = *[1usize, 2, 2, 3, 3, 3].choose(&mut rng).expect("non-empty");
                let first = (1..level).map(|l| fanout.pow(l as u32)).sum::<usize>() + 1;
                let node = first + rng.gen_range(0..fanout.pow(level as u32));
                let account = rng
                    .gen_bool(0.5)
                    .then(|| *ACCOUNTS.choose(&mut rng).expect("non-empty"));
                let protocols = rng.gen_bool(0.6).then(|| {
                    let n_listed = rng.gen_range(1..=2);
                    let mut list: Vec<&'static str> = PROTOCOLS
                        .choose_multiple(&mut rng, n_listed)
                        .map(|(name, _)| *name)
                        .collect();
                    list.sort_unstable();
                    list
                });
                // Every allow rule grants connect and a deny rule denies every action
                // the estate uses, so "some action" and "connect" reach the same assets.
                let actions = if deny || rng.gen_bool(0.5) {
                    vec![0, 1, 2]
                } else {
                    vec![0]
                };
                RuleP {
                    name: format!("r{i}"),
                    deny,
                    group,
                    node,
                    account,
                    protocols,
                    actions,
                }
            })
            .collect();

        let mut assets_under = vec![Vec::new(); nodes.len()];
        for (index, asset) in assets.iter().enumerate() {
            let mut node = Some(asset.leaf);
            while let Some(n) = node {
                assets_under[n].push(index);
                node = nodes[n].parent;
            }
        }
        let mut members_of = vec![Vec::new(); groups.len()];
        for (index, user) in users.iter().enumerate() {
            for &group in &user.groups {
                members_of[group].push(index);
                if let Some(department) = groups[group].department {
                    members_of[department].push(index);
                }
            }
        }
        for members in &mut members_of {
            members.sort_unstable();
            members.dedup();
        }
        PeerEstate {
            nodes,
            assets,
            groups,
            users,
            rules,
            assets_under,
            members_of,
        }
    }

    /// Requests drawn from allow rules (a member of the rule's group, an asset under
    /// its node), with the account, protocol and action then varied; kept at exactly
    /// half allowed by `decide`.
    fn sample(&self, n: usize, decide: impl Fn(&Req) -> bool) -> Vec<(Req, bool)> {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ 0xA5A5 ^ self.rules.len() as u64);
        let (mut allowed, mut denied) = (Vec::new(), Vec::new());
        let mut tries = 0;
        while (allowed.len() < n / 2 || denied.len() < n - n / 2) && tries < n * 1000 {
            tries += 1;
            let rule = &self.rules[rng.gen_range(0..self.rules.len())];
            let (members, under) = (&self.members_of[rule.group], &self.assets_under[rule.node]);
            if members.is_empty() || under.is_empty() {
                continue;
            }
            let user = &self.users[members[rng.gen_range(0..members.len())]];
            let asset = &self.assets[under[rng.gen_range(0..under.len())]];
            let account = if rng.gen_bool(0.7) {
                *asset
                    .accounts
                    .choose(&mut rng)
                    .expect("an asset has accounts")
            } else {
                *ACCOUNTS.choose(&mut rng).expect("non-empty")
            };
            let protocol = if rng.gen_bool(0.7) {
                *asset
                    .protocols
                    .choose(&mut rng)
                    .expect("an asset has protocols")
            } else {
                PROTOCOLS.choose(&mut rng).expect("non-empty").0
            };
            let req = Req {
                user: user.name.clone(),
                asset: asset.name.clone(),
                account,
                protocol,
                action: rng.gen_range(0..ACTIONS.len()),
            };
            let answer = decide(&req);
            match answer {
                true if allowed.len() < n / 2 => allowed.push((req, true)),
                false if denied.len() < n - n / 2 => denied.push((req, false)),
                _ => {}
            }
        }
        assert!(
            allowed.len() == n / 2 && denied.len() == n - n / 2,
            "the sampler found only {} allowed and {} denied requests",
            allowed.len(),
            denied.len()
        );
        // Interleave, so any prefix is mixed too.
        allowed
            .into_iter()
            .zip(denied)
            .flat_map(|(a, d)| [a, d])
            .collect()
    }
}

// ----- Portcullis ------------------------------------------------------------------------

fn write(engine: &Engine, ops: Vec<Op>) {
    if ops.is_empty() {
        return;
    }
    engine
        .write(&Actor::system("peers-bench"), ops)
        .expect("the peer estate is valid");
}

fn build_portcullis(estate: &PeerEstate) -> Engine {
    let engine = Engine::in_memory().expect("an in-memory engine starts");
    write(
        &engine,
        estate
            .nodes
            .iter()
            .filter_map(|node| {
                let parent = &estate.nodes[node.parent?];
                Some(Op::Create(Spec::Node(NodeSpec::new(
                    node.name.clone(),
                    parent.path.clone(),
                ))))
            })
            .collect(),
    );
    write(
        &engine,
        estate
            .users
            .iter()
            .map(|user| Op::Create(Spec::User(UserSpec::new(user.name.clone()))))
            .collect(),
    );
    let mut members: Vec<Vec<MemberSpec>> = vec![Vec::new(); estate.groups.len()];
    for user in &estate.users {
        for &group in &user.groups {
            members[group].push(MemberSpec::Name(user.name.clone()));
        }
    }
    let mut teams: Vec<Vec<SubgroupSpec>> = vec![Vec::new(); estate.groups.len()];
    for group in &estate.groups {
        if let Some(department) = group.department {
            teams[department].push(SubgroupSpec::Name(group.name.clone()));
        }
    }
    // Teams first, so that departments can name them.
    let mut group_ops: Vec<(bool, Op)> = estate
        .groups
        .iter()
        .zip(members.into_iter().zip(teams))
        .map(|(group, (members, subgroups))| {
            let mut spec = GroupSpec::new(group.name.clone());
            spec.members = members;
            spec.subgroups = subgroups;
            (group.department.is_none(), Op::Create(Spec::Group(spec)))
        })
        .collect();
    group_ops.sort_by_key(|(department, _)| *department);
    write(&engine, group_ops.into_iter().map(|(_, op)| op).collect());
    write(
        &engine,
        estate
            .assets
            .iter()
            .map(|asset| {
                let mut spec = AssetSpec::new(asset.name.clone());
                spec.nodes = vec![estate.nodes[asset.leaf].path.clone()];
                spec.accounts = asset
                    .accounts
                    .iter()
                    .map(|a| AccountSpec::new(*a))
                    .collect();
                spec.protocols = asset
                    .protocols
                    .iter()
                    .map(|name| {
                        let port = PROTOCOLS
                            .iter()
                            .find(|(n, _)| n == name)
                            .expect("a known protocol")
                            .1;
                        Protocol::new(name, port).expect("a valid protocol")
                    })
                    .collect();
                Op::Create(Spec::Asset(spec))
            })
            .collect(),
    );
    write(
        &engine,
        estate
            .rules
            .iter()
            .map(|rule| {
                let mut spec = RuleSpec::new(rule.name.clone());
                spec.effect = if rule.deny {
                    Effect::Deny
                } else {
                    Effect::Allow
                };
                spec.groups = vec![estate.groups[rule.group].name.clone()];
                spec.nodes = vec![estate.nodes[rule.node].path.clone()];
                spec.accounts = vec![match rule.account {
                    None => AccountSelector::All,
                    Some(name) => AccountSelector::Named(name.into()),
                }];
                spec.protocols = match &rule.protocols {
                    None => ProtocolFilter::All,
                    Some(list) => ProtocolFilter::from_names(list).expect("valid protocols"),
                };
                spec.actions = rule
                    .actions
                    .iter()
                    .fold(Actions::NONE, |all, &a| all.union(ACTIONS[a].1));
                spec.starts_at = Some(RULES_START);
                Op::Create(Spec::Rule(spec))
            })
            .collect(),
    );
    engine
}

fn portcullis_check(snapshot: &Snapshot, req: &Req) -> bool {
    snapshot
        .check(&Query {
            user: &req.user,
            asset: &req.asset,
            account: req.account,
            protocol: req.protocol,
            action: ACTIONS[req.action].1,
            at: AT,
        })
        .expect("the request names existing entities")
        .allowed
}

fn portcullis_list(snapshot: &Snapshot, user: &str) -> BTreeSet<String> {
    snapshot
        .user_assets_page(user, None, AT, 0, usize::MAX)
        .expect("the user exists")
        .items
        .iter()
        .map(|asset| asset.name.clone())
        .collect()
}

// ----- Cedar ---------------------------------------------------------------------------

struct CedarPeer {
    authorizer: Authorizer,
    policies: PolicySet,
    entities: Entities,
}

fn cedar_string_set(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("\"{item}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// One policy per rule: `permit` or `forbid` of the rule's actions to principals in
/// its group on resources in its node, when the asset has the account and offers the
/// protocol asked for and the rule's account and protocol conditions hold.
fn cedar_policies(estate: &PeerEstate) -> String {
    let mut text = String::new();
    for rule in &estate.rules {
        let actions: Vec<String> = rule
            .actions
            .iter()
            .map(|&a| format!("Action::\"{}\"", ACTIONS[a].0))
            .collect();
        let mut conditions = vec![
            "resource.accounts.contains(context.account)".to_owned(),
            "resource.protocols.contains(context.protocol)".to_owned(),
        ];
        if let Some(account) = rule.account {
            conditions.push(format!("context.account == \"{account}\""));
        }
        if let Some(protocols) = &rule.protocols {
            conditions.push(format!(
                "{}.contains(context.protocol)",
                cedar_string_set(protocols)
            ));
        }
        text.push_str(&format!(
            "@id(\"{}\")\n{}(principal in Group::\"{}\", action in [{}], resource in Node::\"{}\")\nwhen {{ {} }};\n",
            rule.name,
            if rule.deny { "forbid" } else { "permit" },
            estate.groups[rule.group].name,
            actions.join(", "),
            estate.nodes[rule.node].name,
            conditions.join(" && "),
        ));
    }
    text
}

fn cedar_entities(estate: &PeerEstate) -> serde_json::Value {
    use serde_json::json;
    let mut entities = Vec::new();
    for node in &estate.nodes {
        let parents: Vec<_> = node
            .parent
            .map(|p| json!({"type": "Node", "id": estate.nodes[p].name}))
            .into_iter()
            .collect();
        entities.push(
            json!({"uid": {"type": "Node", "id": node.name}, "attrs": {}, "parents": parents}),
        );
    }
    for asset in &estate.assets {
        entities.push(json!({
            "uid": {"type": "Asset", "id": asset.name},
            "attrs": {"accounts": asset.accounts, "protocols": asset.protocols},
            "parents": [{"type": "Node", "id": estate.nodes[asset.leaf].name}],
        }));
    }
    for group in &estate.groups {
        let parents: Vec<_> = group
            .department
            .map(|d| json!({"type": "Group", "id": estate.groups[d].name}))
            .into_iter()
            .collect();
        entities.push(
            json!({"uid": {"type": "Group", "id": group.name}, "attrs": {}, "parents": parents}),
        );
    }
    for user in &estate.users {
        let parents: Vec<_> = user
            .groups
            .iter()
            .map(|&g| json!({"type": "Group", "id": estate.groups[g].name}))
            .collect();
        entities.push(
            json!({"uid": {"type": "User", "id": user.name}, "attrs": {}, "parents": parents}),
        );
    }
    serde_json::Value::Array(entities)
}

fn build_cedar(estate: &PeerEstate) -> CedarPeer {
    let policies = PolicySet::from_str(&cedar_policies(estate)).expect("the policies parse");
    let entities =
        Entities::from_json_value(cedar_entities(estate), None).expect("the entities parse");
    CedarPeer {
        authorizer: Authorizer::new(),
        policies,
        entities,
    }
}

fn cedar_uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_str(&format!("{kind}::\"{id}\"")).expect("a valid entity uid")
}

/// A request as a caller builds it from the strings of the question.
fn cedar_request(req: &Req) -> Request {
    let context = Context::from_pairs([
        (
            "account".to_owned(),
            RestrictedExpression::new_string(req.account.to_owned()),
        ),
        (
            "protocol".to_owned(),
            RestrictedExpression::new_string(req.protocol.to_owned()),
        ),
    ])
    .expect("a valid context");
    Request::new(
        cedar_uid("User", &req.user),
        cedar_uid("Action", ACTIONS[req.action].0),
        cedar_uid("Asset", &req.asset),
        context,
        None,
    )
    .expect("a valid request")
}

impl CedarPeer {
    fn check(&self, request: &Request) -> bool {
        self.authorizer
            .is_authorized(request, &self.policies, &self.entities)
            .decision()
            == CedarDecision::Allow
    }
}

// ----- casbin --------------------------------------------------------------------------

/// `g`: user → group and team → department; `g2`: asset → leaf node and node →
/// parent; `g3`: asset → each account it has; `g4`: asset → each protocol it offers.
/// One policy line per rule, action and listed protocol; `*` stands for `@ALL` and
/// for every protocol. Deny overrides allow.
const CASBIN_MODEL: &str = r#"
[request_definition]
r = sub, obj, act, acc, proto

[policy_definition]
p = sub, obj, act, acc, proto, eft

[role_definition]
g = _, _
g2 = _, _
g3 = _, _
g4 = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = r.act == p.act && (p.acc == "*" || p.acc == r.acc) && (p.proto == "*" || p.proto == r.proto) && g(r.sub, p.sub) && g2(r.obj, p.obj) && g3(r.obj, r.acc) && g4(r.obj, r.proto)
"#;

fn build_casbin(estate: &PeerEstate, runtime: &tokio::runtime::Runtime) -> (Enforcer, usize) {
    runtime.block_on(async {
        let model = DefaultModel::from_str(CASBIN_MODEL)
            .await
            .expect("the model parses");
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
            .await
            .expect("an enforcer starts");
        let mut lines = Vec::new();
        for rule in &estate.rules {
            let protocols = match &rule.protocols {
                None => vec!["*"],
                Some(list) => list.clone(),
            };
            for &action in &rule.actions {
                for protocol in &protocols {
                    lines.push(vec![
                        estate.groups[rule.group].name.clone(),
                        estate.nodes[rule.node].name.clone(),
                        ACTIONS[action].0.to_owned(),
                        rule.account.unwrap_or("*").to_owned(),
                        (*protocol).to_owned(),
                        if rule.deny { "deny" } else { "allow" }.to_owned(),
                    ]);
                }
            }
        }
        let n_lines = lines.len();
        enforcer.add_policies(lines).await.expect("policies add");
        let pair = |a: &str, b: &str| vec![a.to_owned(), b.to_owned()];
        let mut g = Vec::new();
        for user in &estate.users {
            for &group in &user.groups {
                g.push(pair(&user.name, &estate.groups[group].name));
            }
        }
        for group in &estate.groups {
            if let Some(department) = group.department {
                g.push(pair(&group.name, &estate.groups[department].name));
            }
        }
        let mut g2 = Vec::new();
        let (mut g3, mut g4) = (Vec::new(), Vec::new());
        for node in &estate.nodes {
            if let Some(parent) = node.parent {
                g2.push(pair(&node.name, &estate.nodes[parent].name));
            }
        }
        for asset in &estate.assets {
            g2.push(pair(&asset.name, &estate.nodes[asset.leaf].name));
            g3.extend(asset.accounts.iter().map(|a| pair(&asset.name, a)));
            g4.extend(asset.protocols.iter().map(|p| pair(&asset.name, p)));
        }
        for (name, links) in [("g", g), ("g2", g2), ("g3", g3), ("g4", g4)] {
            enforcer
                .add_named_grouping_policies(name, links)
                .await
                .expect("role links add");
        }
        (enforcer, n_lines)
    })
}

fn casbin_check(enforcer: &Enforcer, req: &Req) -> bool {
    enforcer
        .enforce((
            &req.user,
            &req.asset,
            ACTIONS[req.action].0,
            req.account,
            req.protocol,
        ))
        .expect("the matcher evaluates")
}

// ----- the peer list: a scan -----------------------------------------------------------

/// Neither peer answers "which assets may this user reach": the caller asks for
/// `connect` on every asset with each of the asset's accounts and protocols.
fn scan_list(
    estate: &PeerEstate,
    user: &str,
    check: &mut dyn FnMut(&Req) -> bool,
) -> BTreeSet<String> {
    let mut reached = BTreeSet::new();
    for asset in &estate.assets {
        let hit = asset.accounts.iter().any(|&account| {
            asset.protocols.iter().any(|&protocol| {
                check(&Req {
                    user: user.to_owned(),
                    asset: asset.name.clone(),
                    account,
                    protocol,
                    action: 0,
                })
            })
        });
        if hit {
            reached.insert(asset.name.clone());
        }
    }
    reached
}

/// Runs `list` for each user in turn until [`list_budget`] is spent (at least one
/// list): the median time of one list, and how many were timed.
fn time_lists(users: &[String], mut list: impl FnMut(&str) -> usize) -> (f64, usize) {
    let started = Instant::now();
    let mut times = Vec::new();
    while times.is_empty() || (started.elapsed() < list_budget() && times.len() < 200) {
        let user = &users[times.len() % users.len()];
        let one = Instant::now();
        black_box(list(user));
        times.push(one.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times.len())
}

// ----- the bench -----------------------------------------------------------------------

fn rule_counts() -> Vec<usize> {
    match std::env::var("PORTCULLIS_PEERS_RULES") {
        Ok(list) => list
            .split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect(),
        Err(_) if bench_mode() => vec![100, 1_000, 10_000],
        Err(_) => vec![100],
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime starts");
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    let mut report = Vec::new();
    for n_rules in rule_counts() {
        let started = Instant::now();
        let estate = PeerEstate::new(n_rules);
        let engine = build_portcullis(&estate);
        let snapshot = engine.snapshot();
        let built_portcullis = started.elapsed();
        let started = Instant::now();
        let cedar = build_cedar(&estate);
        let built_cedar = started.elapsed();
        let started = Instant::now();
        let (enforcer, n_lines) = build_casbin(&estate, &runtime);
        let built_casbin = started.elapsed();
        eprintln!(
            "[peers] {n_rules} rules: {} users, {} groups, {} assets, {} nodes; casbin {n_lines} policy lines; built in {:.2} / {:.2} / {:.2} s",
            estate.users.len(),
            estate.groups.len(),
            estate.assets.len(),
            estate.nodes.len(),
            built_portcullis.as_secs_f64(),
            built_cedar.as_secs_f64(),
            built_casbin.as_secs_f64()
        );

        // INVARIANT: nothing is timed unless all three agree on every sampled request.
        let samples = estate.sample(N_SAMPLES, |req| portcullis_check(&snapshot, req));
        let requests: Vec<Request> = samples.iter().map(|(req, _)| cedar_request(req)).collect();
        for ((req, allowed), request) in samples.iter().zip(&requests) {
            let by_cedar = cedar.check(request);
            let by_casbin = casbin_check(&enforcer, req);
            assert!(
                by_cedar == *allowed && by_casbin == *allowed,
                "the engines disagree at {n_rules} rules on {req:?}: portcullis {allowed}, cedar {by_cedar}, casbin {by_casbin}"
            );
        }
        let n_allowed = samples.iter().filter(|(_, allowed)| *allowed).count();
        eprintln!(
            "[peers] {n_rules} rules: all three agree on {} requests ({n_allowed} allowed)",
            samples.len()
        );

        let mut group = criterion.benchmark_group("peers-check");
        let mask = samples.len() - 1;
        group.bench_function(BenchmarkId::new("portcullis", n_rules), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                black_box(portcullis_check(&snapshot, &samples[i & mask].0))
            });
        });
        group.bench_function(BenchmarkId::new("cedar", n_rules), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                black_box(cedar.check(&requests[i & mask]))
            });
        });
        group.bench_function(BenchmarkId::new("casbin", n_rules), |b| {
            let mut i = 0;
            b.iter(|| {
                i += 1;
                black_box(casbin_check(&enforcer, &samples[i & mask].0))
            });
        });
        group.finish();

        // The list: the users of the first sampled requests.
        let mut list_users: Vec<String> = samples.iter().map(|(req, _)| req.user.clone()).collect();
        list_users.dedup();
        list_users.truncate(N_LIST_USERS);
        let checks_per_scan: usize = estate
            .assets
            .iter()
            .map(|a| a.accounts.len() * a.protocols.len())
            .sum();
        // A scan's cost, estimated from one timed pass over the first 64 samples.
        let per_check = |check: &mut dyn FnMut(&Req) -> bool| {
            let one = Instant::now();
            for (req, _) in &samples[..64] {
                black_box(check(req));
            }
            one.elapsed().as_secs_f64() / 64.0
        };
        let cedar_per_check = per_check(&mut |req: &Req| cedar.check(&cedar_request(req)));
        let casbin_per_check = per_check(&mut |req: &Req| casbin_check(&enforcer, req));
        let mut lists = serde_json::Map::new();
        let (median, runs) = time_lists(&list_users, |user| portcullis_list(&snapshot, user).len());
        lists.insert(
            "portcullis".into(),
            serde_json::json!({"median_s": median, "runs": runs}),
        );
        for (name, per_check) in [("cedar", cedar_per_check), ("casbin", casbin_per_check)] {
            let estimate = per_check * checks_per_scan as f64;
            let entry = if estimate * N_LIST_USERS as f64 > list_budget().as_secs_f64() * 2.0 {
                eprintln!(
                    "[peers] {n_rules} rules: {name} list not run (about {estimate:.2} s per list)"
                );
                serde_json::json!({"skipped": true, "estimated_s": estimate})
            } else {
                let scan = |user: &str| -> BTreeSet<String> {
                    match name {
                        "cedar" => scan_list(&estate, user, &mut |req: &Req| {
                            cedar.check(&cedar_request(req))
                        }),
                        _ => {
                            scan_list(&estate, user, &mut |req: &Req| casbin_check(&enforcer, req))
                        }
                    }
                };
                for user in &list_users {
                    let expected = portcullis_list(&snapshot, user);
                    let got = scan(user);
                    assert!(
                        got == expected,
                        "the engines disagree at {n_rules} rules on the assets of `{user}`: portcullis {expected:?}, {name} {got:?}"
                    );
                }
                let (median, runs) = time_lists(&list_users, |user| scan(user).len());
                serde_json::json!({"median_s": median, "runs": runs})
            };
            lists.insert(name.into(), entry);
        }
        let mean_list: f64 = list_users
            .iter()
            .map(|user| portcullis_list(&snapshot, user).len() as f64)
            .sum::<f64>()
            / list_users.len() as f64;
        eprintln!(
            "[peers] {n_rules} rules: lists {}",
            serde_json::Value::Object(lists.clone())
        );
        report.push(serde_json::json!({
            "rules": n_rules,
            "users": estate.users.len(),
            "groups": estate.groups.len(),
            "assets": estate.assets.len(),
            "nodes": estate.nodes.len(),
            "casbin_policy_lines": n_lines,
            "samples": samples.len(),
            "samples_allowed": n_allowed,
            "checks_per_scan": checks_per_scan,
            "list_users": list_users.len(),
            "mean_list_len": mean_list,
            "build_s": {
                "portcullis": built_portcullis.as_secs_f64(),
                "cedar": built_cedar.as_secs_f64(),
                "casbin": built_casbin.as_secs_f64(),
            },
            "list": lists,
        }));
    }
    criterion.final_summary();
    if bench_mode() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report");
        std::fs::create_dir_all(&dir).expect("the report directory can be created");
        let out = serde_json::json!({
            "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "rule_counts": report,
        });
        std::fs::write(
            dir.join("peers.json"),
            serde_json::to_string_pretty(&out).expect("json"),
        )
        .expect("the report can be written");
    }
}
