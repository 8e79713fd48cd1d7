//! The fast evaluator against the reference on random estates, instants and queries
//! (docs/semantics.md: any disagreement is a bug in the fast path), the soundness of
//! `valid_until`, and the laws of STYLE.md §5: adding a deny never turns a deny into
//! an allow, rule order never matters, membership is transitive through nested
//! groups.
//!
//! Estates are built by random scripts ([`arb_estate`]): mostly populated ones that
//! grant something, sometimes bare ones full of deletes and dangling names. Queries
//! are drawn as seeds ([`Ask`]), most aimed at one rule's subjects, objects, accounts
//! and protocols, and resolved against what exists, so each one names a real user and
//! a real asset. A failure prints the script and the resolved query. Two plain tests
//! keep the properties honest: the random queries often grant something, and the
//! extra deny rules often take something away.

use std::fmt::Debug;
use std::sync::Arc;

use portcullis_engine::*;
use proptest::prelude::*;
use serde_json::json;

use crate::support::{
    ACCOUNT_NAMES, ASSETS, GROUPS, NODES, PROTOCOL_NAMES, RULES, Step, USERS, arb_instant,
    arb_populated_script, arb_script, asset_names, hours, node_id, run_script, step_op, user_names,
};

/// Estates per run of the differential property, and queries per estate: 3,072
/// (estate, query) comparisons per `cargo test`, each asking every question of
/// [`Evaluator`].
const ESTATES: u32 = 192;
const QUERIES: usize = 16;
/// Estates per run of each of the other properties.
const LAW_ESTATES: u32 = 48;
/// The longest script (as in the support's own properties).
const STEPS: usize = 40;
/// Permissions asked of `has_permission`.
const PERMISSIONS: [&str; 4] = [
    "users.view",
    "rules.change",
    PERMISSION_CHECK,
    PERMISSION_SCIM,
];
/// Scopes asked of `effective_roles` (the support assigns roles on these).
const SCOPES: [&str; 3] = ["*", "prod", "dev"];

// ---------------------------------------------------------------------------------
// Estates and queries

/// An estate under test: the script that built it and the engine holding it.
struct Built {
    tree: Vec<Option<usize>>,
    steps: Vec<Step>,
    engine: Engine,
    snapshot: Arc<Snapshot>,
    estate: Estate,
}

impl Built {
    fn new(tree: &[Option<usize>], steps: &[Step]) -> Built {
        let engine = Engine::in_memory().expect("an in-memory engine opens");
        run_script(&engine, tree, steps);
        let snapshot = engine.snapshot();
        let estate = snapshot.estate();
        Built {
            tree: tree.to_vec(),
            steps: steps.to_vec(),
            engine,
            snapshot,
            estate,
        }
    }

    /// Writes `ops` as one write and refreshes the snapshot; whether it was accepted.
    fn write(&mut self, ops: Vec<Op>) -> bool {
        let accepted = self.engine.write(&Actor::system("test"), ops).is_ok();
        self.snapshot = self.engine.snapshot();
        self.estate = self.snapshot.estate();
        accepted
    }

    /// Writes one more step of the script; whether it was accepted.
    fn write_step(&mut self, step: Step) -> bool {
        let accepted = self.write(vec![step_op(&step, &self.snapshot)]);
        self.steps.push(step);
        accepted
    }

    fn reference(&self) -> Reference<'_> {
        Reference::new(&self.estate, self.snapshot.revision())
    }

    /// The script, one step a line: what a failure prints.
    fn script(&self) -> String {
        let mut text = format!("estate script:\n  tree: {:?}\n", self.tree);
        for (i, step) in self.steps.iter().enumerate() {
            text.push_str(&format!("  {i:>2}: {step:?}\n"));
        }
        text
    }

    fn users(&self) -> Vec<&User> {
        user_names()
            .iter()
            .filter_map(|name| self.estate.users.iter().find(|u| &u.username == name))
            .collect()
    }

    fn assets(&self) -> Vec<&Asset> {
        asset_names()
            .iter()
            .filter_map(|name| self.estate.assets.iter().find(|a| &a.name == name))
            .collect()
    }

    /// Resolves seeds against what exists: none when the estate has no user or no
    /// asset.
    fn resolve(&self, asks: &[Ask]) -> Vec<Asked> {
        let users = self.users();
        let assets = self.assets();
        if users.is_empty() || assets.is_empty() {
            return Vec::new();
        }
        asks.iter()
            .map(|ask| self.resolve_one(ask, &users, &assets))
            .collect()
    }

    /// One seed. An aimed seed takes its user, asset, account and protocol from what
    /// one rule names, where it names any (random queries alone are almost all
    /// denials); the rest are drawn from the pools.
    fn resolve_one(&self, ask: &Ask, users: &[&User], assets: &[&Asset]) -> Asked {
        let rules = &self.estate.rules;
        let aim = ask
            .aim
            .filter(|_| !rules.is_empty())
            .map(|k| &rules[k % rules.len()]);
        let user = match aim {
            Some(rule) => pick(
                users
                    .iter()
                    .copied()
                    .filter(|u| self.names_user(rule, u.id)),
                ask.user,
            ),
            None => None,
        }
        .unwrap_or(users[ask.user % users.len()]);
        let asset = match aim {
            Some(rule) => pick(
                assets.iter().copied().filter(|a| self.names_asset(rule, a)),
                ask.asset,
            ),
            None => None,
        }
        .unwrap_or(assets[ask.asset % assets.len()]);
        let aimed_account = aim.and_then(|rule| match pick(rule.accounts.iter(), ask.account)? {
            AccountSelector::All => pick(
                asset.accounts.iter().map(|a| a.username.clone()),
                ask.account,
            ),
            AccountSelector::SameAsUser => Some(user.username.clone()),
            AccountSelector::Input => Some(INPUT_ACCOUNT.to_owned()),
            AccountSelector::Anonymous => Some(ANON_ACCOUNT.to_owned()),
            AccountSelector::Named(name) | AccountSelector::Excluded(name) => {
                Some(name.to_string())
            }
        });
        let account =
            aimed_account.unwrap_or_else(|| match ask.account % (ACCOUNT_NAMES.len() + 3) {
                i if i < ACCOUNT_NAMES.len() => ACCOUNT_NAMES[i].to_owned(),
                3 => INPUT_ACCOUNT.to_owned(),
                4 => ANON_ACCOUNT.to_owned(),
                _ => user.username.clone(),
            });
        let aimed_protocol = aim.and_then(|rule| {
            let both = asset
                .protocols
                .iter()
                .filter(|p| rule.protocols.allows(p.name()));
            pick(both.map(|p| p.name().to_owned()), ask.protocol)
        });
        let offered = asset.protocols.iter().map(|p| p.name().to_owned());
        let protocol = aimed_protocol
            .or_else(|| pick(offered, ask.protocol).filter(|_| ask.offered))
            .unwrap_or_else(|| PROTOCOL_NAMES[ask.protocol % PROTOCOL_NAMES.len()].to_owned());
        Asked {
            user: ask.by.refer(&user.username, user.id),
            username: user.username.clone(),
            user_id: user.id,
            asset: ask.by.refer(&asset.name, asset.id),
            asset_name: asset.name.clone(),
            account,
            protocol,
            action: ask.action,
            at: ask.at,
            node: ask.node,
            fraction: ask.fraction,
        }
    }

    /// The rule names the user, directly or through a group at any time.
    fn names_user(&self, rule: &Rule, user: Id) -> bool {
        let groups = &self.estate.groups;
        let mut reached: Vec<Id> = groups
            .iter()
            .filter(|g| g.members.iter().any(|m| m.user == user))
            .map(|g| g.id)
            .collect();
        let mut i = 0;
        while let Some(&group) = reached.get(i) {
            for outer in groups
                .iter()
                .filter(|g| g.subgroups.iter().any(|e| e.group == group))
            {
                if !reached.contains(&outer.id) {
                    reached.push(outer.id);
                }
            }
            i += 1;
        }
        rule.users.contains(&user) || rule.groups.iter().any(|g| reached.contains(g))
    }

    /// The rule names the asset, directly or through a node above one of its nodes.
    fn names_asset(&self, rule: &Rule, asset: &Asset) -> bool {
        rule.assets.contains(&asset.id)
            || asset
                .nodes
                .iter()
                .any(|&n| rule.nodes.iter().any(|&top| within(&self.estate, n, top)))
    }
}

/// The `index`th item (modulo their number), if there is any.
fn pick<T>(items: impl Iterator<Item = T>, index: usize) -> Option<T> {
    let items: Vec<T> = items.collect();
    let len = items.len();
    items.into_iter().nth(index % len.max(1))
}

/// How a query names its user and asset.
#[derive(Debug, Clone, Copy)]
enum By {
    Name,
    UpperName,
    Id,
}

impl By {
    fn refer(self, name: &str, id: Id) -> String {
        match self {
            By::Name => name.to_owned(),
            By::UpperName => name.to_uppercase(),
            By::Id => id.to_string(),
        }
    }
}

/// A query seed: indexes into what exists, resolved by [`Built::resolve`].
#[derive(Debug, Clone)]
struct Ask {
    /// A rule to aim at (modulo the number of rules), or none.
    aim: Option<usize>,
    user: usize,
    asset: usize,
    by: By,
    /// Into the aimed rule's accounts spec, else into `ACCOUNT_NAMES`, then `@INPUT`,
    /// `@ANON`, the user's own username.
    account: usize,
    protocol: usize,
    /// Whether to ask for a protocol the asset offers (when it offers any).
    offered: bool,
    action: Actions,
    at: Time,
    /// The node `n<node>` to narrow `user_assets_page` to.
    node: usize,
    /// How far between two instants to probe, as a fraction of `u32::MAX`.
    fraction: u32,
}

/// A random estate: mostly populated ones, which grant something to most users,
/// sometimes a bare script, which deletes and refers to what is not there more.
fn arb_estate() -> impl Strategy<Value = (Vec<Option<usize>>, Vec<Step>)> {
    prop_oneof![1 => arb_script(STEPS), 3 => arb_populated_script(STEPS / 2)]
}

fn arb_action() -> impl Strategy<Value = Actions> {
    prop_oneof![
        4 => prop::sample::select(Actions::SINGLE.to_vec()).prop_map(|(_, action)| action),
        1 => prop::sample::select(vec![Actions::TRANSFER, Actions::CLIPBOARD, Actions::ALL]),
        1 => (0u8..128).prop_map(Actions::from_bits),
    ]
}

fn arb_by() -> impl Strategy<Value = By> {
    prop_oneof![6 => Just(By::Name), 1 => Just(By::UpperName), 1 => Just(By::Id)]
}

fn arb_ask() -> impl Strategy<Value = Ask> {
    (
        (
            prop::option::weighted(0.6, 0..2 * RULES),
            0..2 * USERS,
            0..2 * ASSETS,
            arb_by(),
            0..12usize,
            0..PROTOCOL_NAMES.len(),
        ),
        (
            arb_action(),
            arb_instant(),
            0..NODES,
            any::<u32>(),
            prop::bool::weighted(0.75),
        ),
    )
        .prop_map(
            |((aim, user, asset, by, account, protocol), (action, at, node, fraction, offered))| {
                Ask {
                    aim,
                    user,
                    asset,
                    by,
                    account,
                    protocol,
                    offered,
                    action,
                    at,
                    node,
                    fraction,
                }
            },
        )
}

fn arb_asks() -> impl Strategy<Value = Vec<Ask>> {
    prop::collection::vec(arb_ask(), QUERIES)
}

/// A resolved query.
#[derive(Debug, Clone)]
struct Asked {
    /// The user as the query names it (by name, upper-cased name or id).
    user: String,
    username: String,
    user_id: Id,
    asset: String,
    asset_name: String,
    account: String,
    protocol: String,
    action: Actions,
    at: Time,
    node: usize,
    fraction: u32,
}

impl Asked {
    fn query(&self) -> Query<'_> {
        self.query_at(self.at)
    }

    fn query_at(&self, at: Time) -> Query<'_> {
        Query {
            user: &self.user,
            asset: &self.asset,
            account: &self.account,
            protocol: &self.protocol,
            action: self.action,
            at,
        }
    }
}

/// The instant `fraction` of the way from `from` towards `to`, before `to`.
fn between(from: Time, to: Time, fraction: u32) -> Time {
    let span = i128::from(to.as_micros()) - i128::from(from.as_micros());
    if span <= 0 {
        return from;
    }
    let offset = (span - 1) * i128::from(fraction) / i128::from(u32::MAX);
    from.add_micros(i64::try_from(offset).expect("within the span"))
}

fn sorted(mut ids: Vec<Id>) -> Vec<Id> {
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------
// Comparing

type Checked = Result<(), TestCaseError>;

/// One case under test: what a failure prints.
struct Case<'a> {
    built: &'a Built,
    asked: &'a dyn Debug,
}

impl Case<'_> {
    fn fail(&self, what: &str, detail: String) -> TestCaseError {
        TestCaseError::fail(format!(
            "{what}\n{detail}\nquery: {:#?}\n{}",
            self.asked,
            self.built.script()
        ))
    }

    fn that(&self, holds: bool, what: &str, detail: impl FnOnce() -> String) -> Checked {
        if holds {
            Ok(())
        } else {
            Err(self.fail(what, detail()))
        }
    }

    fn found<T>(&self, answer: Result<T, NotFound>, what: &str) -> Result<T, TestCaseError> {
        answer.map_err(|e| self.fail(what, e.to_string()))
    }

    /// Both evaluators answered, and alike; the reference's answer.
    fn agree<T: PartialEq + Debug>(
        &self,
        what: &str,
        fast: Result<T, NotFound>,
        reference: Result<T, NotFound>,
    ) -> Result<T, TestCaseError> {
        let fast = self.found(fast, what)?;
        let reference = self.found(reference, what)?;
        self.same(what, ["fast", "reference"], &fast, &reference)?;
        Ok(reference)
    }

    /// Two answers to one question are equal; `sides` say where each came from.
    fn same<T: PartialEq + Debug>(
        &self,
        what: &str,
        sides: [&str; 2],
        left: &T,
        right: &T,
    ) -> Checked {
        if left == right {
            return Ok(());
        }
        let [l, r] = sides;
        let width = l.len().max(r.len()) + 1;
        let detail = format!(
            "{:width$} {left:#?}\n{:width$} {right:#?}",
            format!("{l}:"),
            format!("{r}:")
        );
        Err(self.fail(
            &format!("{what}: the {l} and the {r} answers differ"),
            detail,
        ))
    }
}

/// A decision with its rule ids in ascending order.
#[derive(Debug, PartialEq)]
struct Compared {
    allowed: bool,
    actions: Actions,
    rules: Vec<Id>,
    revision: u64,
    valid_until: Option<Time>,
}

fn compared(decision: Decision) -> Compared {
    Compared {
        allowed: decision.allowed,
        actions: decision.actions,
        rules: decision.rules.sorted(),
        revision: decision.revision,
        valid_until: decision.valid_until,
    }
}

/// What a decision says at its instant: whether, what and by which rules.
fn outcome(decision: &Decision) -> (bool, Actions, Vec<Id>) {
    (decision.allowed, decision.actions, decision.rules.sorted())
}

/// An explanation with every `via` cut down to its length (the two evaluators may
/// pick different shortest chains; [`real_chain`] checks each is one).
#[derive(Debug, PartialEq)]
struct Explained {
    decision: Compared,
    reasons: Vec<Reason>,
    rules: Vec<(RuleVerdict, usize)>,
}

fn explained(explanation: Explanation) -> Explained {
    let rules = explanation
        .rules
        .into_iter()
        .map(|verdict| {
            let length = verdict.via.len();
            (
                RuleVerdict {
                    via: Vec::new(),
                    ..verdict
                },
                length,
            )
        })
        .collect();
    Explained {
        decision: compared(explanation.decision),
        reasons: explanation.reasons,
        rules,
    }
}

/// `via` is empty exactly when the rule names the user, and otherwise a real chain at
/// `at`: the user is a member of the first group, each group is a subgroup of the
/// next, and the rule names the last.
fn real_chain(estate: &Estate, user: Id, verdict: &RuleVerdict, at: Time) -> Result<(), String> {
    let rule = estate
        .rules
        .iter()
        .find(|r| r.id == verdict.rule)
        .ok_or("no such rule")?;
    let via = &verdict.via;
    if rule.users.contains(&user) {
        return match via.is_empty() {
            true => Ok(()),
            false => Err("the rule names the user, yet via is not empty".into()),
        };
    }
    let groups = via
        .iter()
        .map(|name| {
            let group = estate.groups.iter().find(|g| &g.name == name);
            group.ok_or_else(|| format!("via names `{name}`, no such group"))
        })
        .collect::<Result<Vec<&Group>, _>>()?;
    let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
        return Err("via is empty, yet the rule reaches the user only through groups".into());
    };
    if !first
        .members
        .iter()
        .any(|m| m.user == user && membership_counts(m.expires_at, at))
    {
        return Err(format!(
            "the user is not a member of `{}` at {at:?}",
            first.name
        ));
    }
    for pair in groups.windows(2) {
        let (inner, outer) = (pair[0], pair[1]);
        let edge = outer
            .subgroups
            .iter()
            .any(|e| e.group == inner.id && membership_counts(e.expires_at, at));
        if !edge {
            return Err(format!(
                "`{}` is not a subgroup of `{}` at {at:?}",
                inner.name, outer.name
            ));
        }
    }
    if !rule.groups.contains(&last.id) {
        return Err(format!("the rule does not name `{}`", last.name));
    }
    Ok(())
}

/// The groups `user` belongs to at `at`, and whether directly: the fixpoint of
/// "a member of a group counts, and so does a subgroup edge into a reached group",
/// computed from the estate alone.
fn groups_reached(estate: &Estate, user: Id, at: Time) -> Vec<(Id, bool)> {
    let direct: Vec<Id> = estate
        .groups
        .iter()
        .filter(|g| {
            g.members
                .iter()
                .any(|m| m.user == user && membership_counts(m.expires_at, at))
        })
        .map(|g| g.id)
        .collect();
    let mut reached = direct.clone();
    loop {
        let more: Vec<Id> = estate
            .groups
            .iter()
            .filter(|g| !reached.contains(&g.id))
            .filter(|g| {
                g.subgroups
                    .iter()
                    .any(|e| reached.contains(&e.group) && membership_counts(e.expires_at, at))
            })
            .map(|g| g.id)
            .collect();
        if more.is_empty() {
            break;
        }
        reached.extend(more);
    }
    reached
        .into_iter()
        .map(|id| (id, direct.contains(&id)))
        .collect()
}

/// Whether `node` is `ancestor` or lies below it.
fn within(estate: &Estate, node: Id, ancestor: Id) -> bool {
    let mut current = Some(node);
    for _ in 0..=estate.nodes.len() {
        match current {
            Some(id) if id == ancestor => return true,
            Some(id) => {
                current = estate
                    .nodes
                    .iter()
                    .find(|n| n.id == id)
                    .and_then(|n| n.parent)
            }
            None => return false,
        }
    }
    false
}

/// Every question of [`Evaluator`] about one query, fast path against reference.
fn compare(built: &Built, asked: &Asked) -> Checked {
    let case = Case { built, asked };
    let fast: &Snapshot = &built.snapshot;
    let reference = built.reference();
    let (query, at, user, asset) = (
        asked.query(),
        asked.at,
        asked.user.as_str(),
        asked.asset.as_str(),
    );

    let decision = case.agree(
        "check",
        fast.check(&query).map(compared),
        reference.check(&query).map(compared),
    )?;
    let user_idx = fast.user_idx(user).expect("the user resolves");
    let by_index = fast.check_idx(
        user_idx,
        fast.asset_idx(asset).expect("the asset resolves"),
        &asked.account,
        &asked.protocol,
        asked.action,
        at,
    );
    case.agree("check_idx", Ok(compared(by_index)), Ok(decision))?;

    let explanation = case.found(fast.explain(&query), "fast explain")?;
    let expected = case.found(reference.explain(&query), "reference explain")?;
    for (side, explanation) in [("fast", &explanation), ("reference", &expected)] {
        for verdict in &explanation.rules {
            if let Err(broken) = real_chain(&built.estate, asked.user_id, verdict, at) {
                let what = format!("{side} explain: the via of {} is no chain", verdict.name);
                return Err(case.fail(&what, format!("{broken}\n{verdict:#?}")));
            }
        }
    }
    case.agree(
        "explain",
        Ok(explained(explanation)),
        Ok(explained(expected)),
    )?;

    let by_id = |mut groups: Vec<(Id, bool)>| {
        groups.sort();
        groups
    };
    case.same(
        "user_groups",
        ["fast", "plain reachability"],
        &by_id(
            fast.user_groups(user, at)
                .iter()
                .map(|g| (g.id, g.direct))
                .collect(),
        ),
        &by_id(groups_reached(&built.estate, asked.user_id, at)),
    )?;

    let assets = case.agree(
        "user_assets",
        fast.user_assets(user, at).map(sorted),
        reference.user_assets(user, at).map(sorted),
    )?;
    let ids = |page: Page<Arc<Asset>>| {
        (
            page.total,
            sorted(page.items.iter().map(|a| a.id).collect()),
        )
    };
    let total = assets.len() as u64;
    case.agree(
        "user_assets_page",
        fast.user_assets_page(user, None, at, 0, usize::MAX)
            .map(ids),
        Ok((total, assets.clone())),
    )?;
    case.agree(
        "user_asset_count",
        Ok(fast.user_asset_count(user_idx, at)),
        Ok(total),
    )?;
    let node = node_id(asked.node);
    if built.estate.nodes.iter().any(|n| n.id == node) {
        let under_node = |id: &Id| {
            let asset = built
                .estate
                .assets
                .iter()
                .find(|a| a.id == *id)
                .expect("listed assets exist");
            asset.nodes.iter().any(|&n| within(&built.estate, n, node))
        };
        let under: Vec<Id> = assets.iter().copied().filter(under_node).collect();
        case.agree(
            "user_assets_page under a node",
            fast.user_assets_page(user, Some(&node.to_string()), at, 0, usize::MAX)
                .map(ids),
            Ok((under.len() as u64, under)),
        )?;
    }
    case.agree(
        "user_nodes",
        fast.user_nodes(user, at),
        reference.user_nodes(user, at),
    )?;
    case.agree(
        "user_accounts",
        fast.user_accounts(user, asset, at),
        reference.user_accounts(user, asset, at),
    )?;
    let users = case.agree(
        "asset_users",
        fast.asset_users(asset, at).map(sorted),
        reference.asset_users(asset, at).map(sorted),
    )?;
    let user_ids = |page: Page<Arc<User>>| {
        (
            page.total,
            sorted(page.items.iter().map(|u| u.id).collect()),
        )
    };
    case.agree(
        "asset_users_page",
        fast.asset_users_page(asset, at, 0, usize::MAX)
            .map(user_ids),
        Ok((users.len() as u64, users)),
    )?;

    for scope in SCOPES {
        case.agree(
            &format!("effective_roles on {scope}"),
            fast.effective_roles(user, scope, at),
            reference.effective_roles(user, scope, at),
        )?;
        for permission in PERMISSIONS {
            case.agree(
                &format!("has_permission {permission} on {scope}"),
                fast.has_permission(user, scope, permission, at),
                reference.has_permission(user, scope, permission, at),
            )?;
        }
    }
    Ok(())
}

/// `valid_until` is sound: the reference's decision (whether, what, by which rules)
/// stays the one at `at` one microsecond before it and somewhere in between; when it
/// is `None`, an hour after every time a script writes and in between.
fn valid_until_holds(built: &Built, asked: &Asked) -> Checked {
    let case = Case { built, asked };
    let reference = built.reference();
    let at = asked.at;
    let decide = |t: Time| case.found(reference.check(&asked.query_at(t)), "reference check");
    let decision = decide(at)?;
    let end = match decision.valid_until {
        Some(until) => {
            case.that(
                until > at,
                "valid_until is not after the instant asked",
                || format!("{until:?}"),
            )?;
            until
        }
        // Every time a script writes lies within four hours of T0.
        None => hours(5).add_micros(1),
    };
    for probe in [end.add_micros(-1), between(at, end, asked.fraction)] {
        let later = decide(probe)?;
        case.that(
            outcome(&later) == outcome(&decision),
            "the decision changed before valid_until",
            || format!("at {at:?}: {decision:#?}\nat {probe:?}: {later:#?}"),
        )?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ESTATES, max_global_rejects: 4096, max_shrink_iters: 1024, ..ProptestConfig::default() })]

    /// docs/semantics.md: the tests compare the fast path with the reference "on random
    /// models, times and queries. Any disagreement is a bug in the fast path."
    #[test]
    fn fast_path_agrees_with_reference((tree, steps) in arb_estate(), asks in arb_asks()) {
        let built = Built::new(&tree, &steps);
        let asked = built.resolve(&asks);
        prop_assume!(!asked.is_empty(), "no user or no asset");
        for asked in &asked {
            compare(&built, asked)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: LAW_ESTATES, max_global_rejects: 4096, max_shrink_iters: 1024, ..ProptestConfig::default() })]

    #[test]
    fn valid_until_is_sound((tree, steps) in arb_estate(), asks in arb_asks()) {
        let built = Built::new(&tree, &steps);
        let asked = built.resolve(&asks);
        prop_assume!(!asked.is_empty(), "no user or no asset");
        for asked in &asked {
            valid_until_holds(&built, asked)?;
        }
    }

    #[test]
    fn adding_a_deny_never_turns_a_deny_into_an_allow(
        (tree, steps) in arb_estate(),
        deny in arb_deny_rule(),
        asks in arb_asks(),
    ) {
        let built = Built::new(&tree, &steps);
        prop_assume!(!built.resolve(&asks).is_empty(), "no user or no asset");
        add_a_deny(built, deny, &asks)?;
    }

    #[test]
    fn rule_order_never_matters((tree, steps) in arb_estate(), asks in arb_asks()) {
        let built = Built::new(&tree, &steps);
        let asked = built.resolve(&asks);
        prop_assume!(!asked.is_empty(), "no user or no asset");
        let reversed = rules_reversed(&built);
        let case = Case { built: &built, asked: &"the estate itself" };
        case.same("estate", ["reversed", "forward"], &normalized(reversed.estate.clone()), &normalized(built.estate.clone()))?;
        let again = reversed.reference();
        for asked in &asked {
            let case = Case { built: &built, asked };
            case.same("fast path", ["reversed", "forward"], &answers(&*reversed.snapshot, asked, false), &answers(&*built.snapshot, asked, false))?;
            case.same("reference", ["reversed", "forward"], &answers(&again, asked, true), &answers(&built.reference(), asked, true))?;
        }
    }

    #[test]
    fn membership_is_transitive_through_nested_groups(
        (tree, steps) in arb_estate(),
        user in 0..USERS,
        edges in prop::collection::vec(prop::option::weighted(0.5, (-3i64..=3).prop_map(hours)), 1..=4),
        instants in prop::collection::vec(arb_instant(), 4),
    ) {
        let mut built = Built::new(&tree, &steps);
        let users = built.users();
        prop_assume!(!users.is_empty(), "no user");
        let user = users[user % users.len()].clone();
        prop_assert!(built.write(chain_ops(&user.username, &edges)), "the chain was refused\n{}", built.script());
        let asset = built.estate.assets.iter().find(|a| a.name == "ax").expect("written").id;
        let chain: Vec<String> = (1..=edges.len()).map(|i| format!("x{i}")).collect();
        for at in instants {
            let asked = (&user.username, &edges, at);
            let case = Case { built: &built, asked: &asked };
            let counts = edges.iter().all(|&e| membership_counts(e, at));
            let reaches = counts && user.is_valid_at(at);
            let query = Query { user: &user.username, asset: "ax", account: ANON_ACCOUNT, protocol: "ssh", action: Actions::CONNECT, at };
            let reference = built.reference();
            let sides: [(&str, &dyn Evaluator); 2] = [("fast", &*built.snapshot), ("reference", &reference)];
            for (side, evaluator) in sides {
                let allowed = case.found(evaluator.check(&query), side)?.allowed;
                case.that(allowed == reaches, &format!("{side}: check through the chain"), || format!("allowed {allowed}, expected {reaches}"))?;
                let listed = case.found(evaluator.user_assets(&user.username, at), side)?.contains(&asset);
                case.that(listed == reaches, &format!("{side}: user_assets through the chain"), || format!("listed {listed}, expected {reaches}"))?;
                let listed = case.found(evaluator.asset_users("ax", at), side)?.contains(&user.id);
                case.that(listed == reaches, &format!("{side}: asset_users through the chain"), || format!("listed {listed}, expected {reaches}"))?;
                let explanation = case.found(evaluator.explain(&query), side)?;
                let via = explanation.rules.iter().find(|r| r.name == "rx").map(|r| r.via.clone());
                let expected = counts.then(|| chain.clone());
                case.that(via == expected, &format!("{side}: explain through the chain"), || format!("via {via:?}, expected {expected:?}"))?;
                let roles = case.found(evaluator.effective_roles(&user.username, "prod", at), side)?;
                case.that(!counts || roles.iter().any(|r| r == "checker"), &format!("{side}: roles through the chain"), || format!("{roles:?}"))?;
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Adding a deny rule

/// One more rule, `r<RULES>`, always a deny, otherwise as random as the script's;
/// mostly aimed at a query the estate grants something, so that it bites.
#[derive(Debug, Clone)]
struct ExtraDeny {
    rule: Step,
    aim: Option<usize>,
}

impl ExtraDeny {
    /// The rule, made to name `target`'s user, asset, account and protocol and one of
    /// the actions granted there, and only nodes that exist.
    fn aimed_at(self, built: &Built, target: Option<(&Asked, Actions)>) -> Step {
        let Step::Rule {
            i,
            deny,
            mut users,
            groups,
            mut assets,
            mut nodes,
            mut accounts,
            mut protocols,
            all_protocols,
            mut actions,
            starts_at,
            expires_at,
            active,
        } = self.rule
        else {
            unreachable!("an extra deny is a rule")
        };
        // The script may have deleted some nodes; a rule naming one is refused.
        nodes.retain(|&n| built.estate.nodes.iter().any(|node| node.id == node_id(n)));
        if let Some((asked, granted)) = target {
            let index = |name: &str| {
                name[1..]
                    .parse::<usize>()
                    .expect("pool names end in their index")
            };
            users.push(index(&asked.username));
            assets.push(index(&asked.asset_name));
            let asset = built
                .estate
                .assets
                .iter()
                .find(|a| a.name == asked.asset_name)
                .expect("asked of");
            let virtual_own =
                asked.account == asked.username && asset.account(&asked.account).is_none();
            accounts.push(if virtual_own {
                "@USER".to_owned()
            } else {
                asked.account.clone()
            });
            protocols.extend(PROTOCOL_NAMES.iter().position(|p| *p == asked.protocol));
            let lowest = granted.bits() & granted.bits().wrapping_neg();
            actions |= lowest;
        }
        for list in [&mut users, &mut assets, &mut protocols] {
            list.sort();
            list.dedup();
        }
        let mut seen = std::collections::HashSet::new();
        accounts.retain(|a| seen.insert(a.clone()));
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
    }
}

fn arb_deny_rule() -> impl Strategy<Value = ExtraDeny> {
    (arb_deny_step(), prop::option::weighted(0.75, 0..QUERIES))
        .prop_map(|(rule, aim)| ExtraDeny { rule, aim })
}

fn arb_deny_step() -> impl Strategy<Value = Step> {
    let indexes = |pool: usize| {
        prop::collection::btree_set(0..pool, 0..=2).prop_map(|s| s.into_iter().collect::<Vec<_>>())
    };
    let selector = prop_oneof![
        Just("@ALL".to_owned()),
        Just("@USER".to_owned()),
        Just(INPUT_ACCOUNT.to_owned()),
        Just(ANON_ACCOUNT.to_owned()),
        prop::sample::select(ACCOUNT_NAMES.to_vec()).prop_map(str::to_owned),
        prop::sample::select(ACCOUNT_NAMES.to_vec()).prop_map(|n| format!("!{n}")),
    ];
    (
        (
            indexes(USERS),
            indexes(GROUPS),
            indexes(ASSETS),
            indexes(NODES),
        ),
        (
            prop::collection::vec(selector, 1..4),
            indexes(PROTOCOL_NAMES.len()),
            prop::bool::weighted(0.5),
            1u8..128,
            prop::option::of((-3i64..=1).prop_map(hours)),
            prop::option::of((2i64..=4).prop_map(hours)),
            prop::bool::weighted(0.9),
        ),
    )
        .prop_map(
            |(
                (users, groups, assets, nodes),
                (accounts, protocols, all_protocols, actions, starts_at, expires_at, active),
            )| {
                Step::Rule {
                    i: RULES,
                    deny: true,
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

/// Writes `deny` into the estate and checks that, for every query, neither
/// evaluator grants anything it did not grant before; how many queries lost
/// something (to tell whether the law was put to the test).
fn add_a_deny(mut built: Built, deny: ExtraDeny, asks: &[Ask]) -> Result<usize, TestCaseError> {
    let asked = built.resolve(asks);
    let before: Vec<[Seen; 2]> = asked
        .iter()
        .map(|asked| seen_by_both(&built, asked))
        .collect();
    let granting: Vec<usize> = (0..asked.len())
        .filter(|&k| !before[k][1].actions.is_empty())
        .collect();
    let target = deny
        .aim
        .and_then(|k| pick(granting.iter(), k))
        .map(|&k| (&asked[k], before[k][1].actions));
    let deny = deny.aimed_at(&built, target);
    if !built.write_step(deny) {
        return Err(TestCaseError::fail(format!(
            "the extra deny rule was refused\n{}",
            built.script()
        )));
    }
    let mut bitten = 0;
    for (asked, before) in asked.iter().zip(before) {
        let case = Case {
            built: &built,
            asked,
        };
        let after = seen_by_both(&built, asked);
        for (side, (before, after)) in ["fast", "reference"]
            .into_iter()
            .zip(before.iter().zip(&after))
        {
            case.that(
                after.within(before),
                &format!("{side}: a deny rule granted something"),
                || format!("before: {before:#?}\nafter: {after:#?}"),
            )?;
        }
        if !before[1].within(&after[1]) {
            bitten += 1;
        }
    }
    Ok(bitten)
}

#[test]
fn extra_deny_rules_often_take_something_away() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (arb_estate(), arb_deny_rule(), arb_asks());
    let (mut cases, mut bitten, mut queries) = (0, 0, 0);
    while cases < 48 {
        let ((tree, steps), deny, asks) = strategy.new_tree(&mut runner).unwrap().current();
        let built = Built::new(&tree, &steps);
        if built.resolve(&asks).is_empty() {
            continue;
        }
        cases += 1;
        let n = add_a_deny(built, deny, &asks).unwrap();
        queries += usize::from(n > 0);
        bitten += n;
    }
    eprintln!(
        "extra deny rules took something away in {queries} of {cases} estates, {bitten} queries"
    );
    assert!(
        queries * 5 > cases,
        "extra deny rules bit in only {queries} of {cases} estates"
    );
}

/// What one evaluator grants for a query, on every list that shows it.
#[derive(Debug)]
struct Seen {
    actions: Actions,
    allowed: bool,
    assets: Vec<Id>,
    users: Vec<Id>,
    /// (account, protocol, actions) from `user_accounts`.
    accounts: Vec<(String, String, Actions)>,
}

impl Seen {
    /// Everything `self` grants, `before` granted too.
    fn within(&self, before: &Seen) -> bool {
        before.actions.contains(self.actions)
            && (before.allowed || !self.allowed)
            && self.assets.iter().all(|a| before.assets.contains(a))
            && self.users.iter().all(|u| before.users.contains(u))
            && self.accounts.iter().all(|(account, protocol, actions)| {
                before.accounts.iter().any(|(a, p, granted)| {
                    a == account && p == protocol && granted.contains(*actions)
                })
            })
    }
}

fn seen(evaluator: &dyn Evaluator, asked: &Asked) -> Seen {
    let (at, user, asset) = (asked.at, asked.user.as_str(), asked.asset.as_str());
    let decision = evaluator.check(&asked.query()).expect("resolves");
    let accounts = evaluator.user_accounts(user, asset, at).expect("resolves");
    Seen {
        actions: decision.actions,
        allowed: decision.allowed,
        assets: evaluator.user_assets(user, at).expect("resolves"),
        users: evaluator.asset_users(asset, at).expect("resolves"),
        accounts: accounts
            .into_iter()
            .flat_map(|grant| {
                let username = grant.username;
                grant
                    .protocols
                    .into_iter()
                    .map(move |(protocol, actions)| (username.clone(), protocol, actions))
            })
            .collect(),
    }
}

fn seen_by_both(built: &Built, asked: &Asked) -> [Seen; 2] {
    [
        seen(&*built.snapshot, asked),
        seen(&built.reference(), asked),
    ]
}

// ---------------------------------------------------------------------------------
// Rule order

/// The same estate in a new engine, ids and all, its rules created in the reverse
/// order.
fn rules_reversed(built: &Built) -> Built {
    let spec = |kind, id: Id| built.snapshot.spec(kind, &id.to_string()).expect("exists");
    let estate = &built.estate;
    let depth = |node: &Node| {
        let mut depth = 0;
        let mut parent = node.parent;
        while let Some(above) = parent.and_then(|id| estate.nodes.iter().find(|n| n.id == id)) {
            depth += 1;
            parent = above.parent;
        }
        depth
    };
    let mut nodes: Vec<&Node> = estate
        .nodes
        .iter()
        .filter(|n| n.id != ROOT_NODE_ID)
        .collect();
    nodes.sort_by_key(|n| depth(n));
    let mut ops: Vec<Op> = nodes
        .iter()
        .map(|n| Op::Create(spec(EntityKind::Node, n.id)))
        .collect();
    ops.extend(
        estate
            .users
            .iter()
            .map(|u| Op::Create(spec(EntityKind::User, u.id))),
    );
    // Groups first without their subgroups, so that every subgroup exists when named.
    for group in &estate.groups {
        let Spec::Group(mut alone) = spec(EntityKind::Group, group.id) else {
            unreachable!("a group's spec")
        };
        alone.subgroups.clear();
        ops.push(Op::Create(Spec::Group(alone)));
    }
    for group in &estate.groups {
        ops.push(Op::Replace {
            target: group.id.to_string(),
            spec: spec(EntityKind::Group, group.id),
        });
    }
    ops.extend(
        estate
            .assets
            .iter()
            .map(|a| Op::Create(spec(EntityKind::Asset, a.id))),
    );
    let engine = Engine::in_memory().expect("an in-memory engine opens");
    engine
        .write(&Actor::system("test"), ops)
        .expect("the estate's own specs apply");
    for rule in estate.rules.iter().rev() {
        engine
            .write(
                &Actor::system("test"),
                vec![Op::Create(spec(EntityKind::Rule, rule.id))],
            )
            .expect("the estate's own rules apply");
    }
    let snapshot = engine.snapshot();
    let estate = snapshot.estate();
    Built {
        tree: built.tree.clone(),
        steps: built.steps.clone(),
        engine,
        snapshot,
        estate,
    }
}

/// The estate without what records its history (times, authors, node numbers, order).
fn normalized(mut estate: Estate) -> Estate {
    let never = Time::from_secs(0);
    for user in &mut estate.users {
        (user.created_at, user.updated_at, user.created_by) = (never, never, String::new());
    }
    for group in &mut estate.groups {
        (group.created_at, group.updated_at, group.created_by) = (never, never, String::new());
    }
    for node in &mut estate.nodes {
        (
            node.created_at,
            node.updated_at,
            node.created_by,
            node.number,
        ) = (never, never, String::new(), 0);
    }
    for asset in &mut estate.assets {
        (asset.created_at, asset.updated_at, asset.created_by) = (never, never, String::new());
    }
    for rule in &mut estate.rules {
        (rule.created_at, rule.updated_at, rule.created_by) = (never, never, String::new());
    }
    estate.users.sort_by_key(|e| e.id);
    estate.groups.sort_by_key(|e| e.id);
    estate.nodes.sort_by_key(|e| e.id);
    estate.assets.sort_by_key(|e| e.id);
    estate.rules.sort_by_key(|e| e.id);
    estate.roles.clear();
    estate.tokens.clear();
    estate
}

/// Everything an evaluator answers about a query, the revision aside (`via` cut to
/// its length unless `exact_via`).
#[derive(Debug, PartialEq)]
struct Answers {
    decision: (bool, Actions, Vec<Id>, Option<Time>),
    explanation: (Vec<Reason>, Vec<RuleVerdict>),
    assets: Vec<Id>,
    nodes: Vec<NodeGrant>,
    accounts: Vec<AccountGrant>,
    users: Vec<Id>,
}

fn answers(evaluator: &dyn Evaluator, asked: &Asked, exact_via: bool) -> Answers {
    let (at, user, asset) = (asked.at, asked.user.as_str(), asked.asset.as_str());
    let decision = evaluator.check(&asked.query()).expect("resolves");
    let explanation = evaluator.explain(&asked.query()).expect("resolves");
    let verdicts = explanation
        .rules
        .into_iter()
        .map(|verdict| match exact_via {
            true => verdict,
            false => RuleVerdict {
                via: vec![String::new(); verdict.via.len()],
                ..verdict
            },
        })
        .collect();
    Answers {
        decision: (
            decision.allowed,
            decision.actions,
            decision.rules.sorted(),
            decision.valid_until,
        ),
        explanation: (explanation.reasons, verdicts),
        assets: sorted(evaluator.user_assets(user, at).expect("resolves")),
        nodes: evaluator.user_nodes(user, at).expect("resolves"),
        accounts: evaluator.user_accounts(user, asset, at).expect("resolves"),
        users: sorted(evaluator.asset_users(asset, at).expect("resolves")),
    }
}

// ---------------------------------------------------------------------------------
// Nested groups

/// A fresh asset `ax`, a chain of fresh groups `x1 ⊂ x2 ⊂ … ⊂ xk` with `user` in
/// `x1` (one expiry per edge, the user's first), the role `checker` on `xk`, and a
/// rule `rx` granting `xk` connect to `ax`. No other rule can name `ax` or the `x`s.
fn chain_ops(user: &str, edges: &[Option<Time>]) -> Vec<Op> {
    let create =
        |kind, value| Op::Create(Spec::from_json(kind, value).expect("a well-formed spec"));
    let mut ops = vec![create(
        EntityKind::Asset,
        json!({"name": "ax", "nodes": ["/Default"], "protocols": ["ssh/22"]}),
    )];
    for (i, expires_at) in edges.iter().enumerate() {
        let name = format!("x{}", i + 1);
        let roles = if i + 1 == edges.len() {
            json!([{"scope": "*", "roles": ["checker"]}])
        } else {
            json!([])
        };
        ops.push(create(
            EntityKind::Group,
            match i {
                0 => json!({"name": name, "members": [{"user": user, "expires_at": expires_at}], "roles": roles}),
                _ => json!({"name": name, "subgroups": [{"group": format!("x{i}"), "expires_at": expires_at}], "roles": roles}),
            },
        ));
    }
    ops.push(create(
        EntityKind::Rule,
        json!({
            "name": "rx",
            "groups": [format!("x{}", edges.len())],
            "assets": ["ax"],
            "accounts": [ANON_ACCOUNT],
            "actions": ["connect"],
        }),
    ));
    ops
}

/// The properties above are only as strong as their cases: most queries must not be
/// trivial denials.
#[test]
fn random_queries_often_grant() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (arb_estate(), arb_asks());
    let (mut queries, mut granting, mut allowed, mut listing, mut nested, mut bounded) =
        (0, 0, 0, 0, 0, 0);
    while queries < 800 {
        let ((tree, steps), asks) = strategy.new_tree(&mut runner).unwrap().current();
        let built = Built::new(&tree, &steps);
        let reference = built.reference();
        for asked in built.resolve(&asks) {
            let decision = reference.check(&asked.query()).unwrap();
            let explanation = reference.explain(&asked.query()).unwrap();
            queries += 1;
            granting += usize::from(!decision.actions.is_empty());
            allowed += usize::from(decision.allowed);
            bounded += usize::from(decision.valid_until.is_some());
            listing += usize::from(
                !reference
                    .user_assets(&asked.user, asked.at)
                    .unwrap()
                    .is_empty(),
            );
            nested += usize::from(
                explanation
                    .rules
                    .iter()
                    .any(|verdict| verdict.via.len() >= 2),
            );
        }
    }
    eprintln!(
        "of {queries} queries: {granting} grant something, {allowed} allowed, {listing} list assets, \
         {nested} nested via, {bounded} valid_until"
    );
    assert!(
        granting * 15 > queries,
        "only {granting} of {queries} queries grant something"
    );
    assert!(
        allowed * 40 > queries,
        "only {allowed} of {queries} queries allowed"
    );
    assert!(
        listing * 4 > queries,
        "only {listing} of {queries} users reach an asset"
    );
    assert!(
        nested * 20 > queries,
        "only {nested} of {queries} reached through nested groups"
    );
    assert!(
        bounded * 10 > queries,
        "only {bounded} of {queries} decisions bounded in time"
    );
}
