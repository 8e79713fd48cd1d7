//! The fast evaluator against the reference on random estates, instants and queries
//! (DESIGN.md: any disagreement is a bug in the fast path), the soundness of
//! `valid_until`, and the laws of STYLE.md §5: adding a deny never turns a deny into
//! an allow, rule order never matters, membership is transitive through nested
//! groups.
//!
//! Every estate is built by a random script ([`arb_script`]); queries are drawn as
//! seeds ([`Ask`]) and resolved against what exists, so each one hits a real user and
//! a real asset. A failure prints the script and the resolved query.

use std::fmt::Debug;
use std::sync::Arc;

use portcullis_engine::*;
use proptest::prelude::*;

use crate::support::{
    ACCOUNT_NAMES, PROTOCOL_NAMES, RULES, Step, T0, arb_instant, arb_script, asset_names, hours,
    node_id, run_script, user_names,
};

/// Estates per run of the differential property, and queries per estate: 2,560
/// (estate, query) comparisons per `cargo test`.
const ESTATES: u32 = 160;
const QUERIES: usize = 16;
/// The longest script (the support's own properties use 40 too).
const STEPS: usize = 40;
/// Permission strings asked of `has_permission`.
const PERMISSIONS: [&str; 4] = [
    "users.view",
    "rules.change",
    PERMISSION_CHECK,
    PERMISSION_SCIM,
];
/// Role scopes asked of `effective_roles` (the support assigns roles on these).
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

    /// Writes one more step (a law's extra rule) and refreshes the snapshot; whether
    /// the write was accepted.
    fn write(&mut self, step: Step) -> bool {
        let op = crate::support::step_op(&step, &self.snapshot);
        let accepted = self.engine.write("test", vec![op]).is_ok();
        self.snapshot = self.engine.snapshot();
        self.estate = self.snapshot.estate();
        if accepted {
            self.steps.push(step);
        }
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

    fn group_named(&self, name: &str) -> Option<&Group> {
        self.estate.groups.iter().find(|g| g.name == name)
    }

    fn rule(&self, id: Id) -> &Rule {
        self.estate
            .rules
            .iter()
            .find(|r| r.id == id)
            .expect("a verdict names an existing rule")
    }

    /// Resolves a seed against what exists; `None` when the estate has no user or no
    /// asset.
    fn resolve(&self, ask: &Ask) -> Option<Asked> {
        let users = self.users();
        let assets = self.assets();
        if users.is_empty() || assets.is_empty() {
            return None;
        }
        let user = users[ask.user % users.len()];
        let asset = assets[ask.asset % assets.len()];
        let account = match ask.account {
            i if i < ACCOUNT_NAMES.len() => ACCOUNT_NAMES[i].to_owned(),
            3 => "@INPUT".to_owned(),
            4 => "@ANON".to_owned(),
            _ => user.username.clone(),
        };
        Some(Asked {
            user: ask.by.refer(&user.username, user.id),
            user_id: user.id,
            asset: ask.by.refer(&asset.name, asset.id),
            asset_id: asset.id,
            account,
            protocol: PROTOCOL_NAMES[ask.protocol],
            action: ask.action,
            at: ask.at,
            node: ask.node,
            fraction: ask.fraction,
        })
    }
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
    user: usize,
    asset: usize,
    by: By,
    /// `ACCOUNT_NAMES`, then `@INPUT`, `@ANON`, the user's own username.
    account: usize,
    protocol: usize,
    action: Actions,
    at: Time,
    /// A node to filter `user_assets_page` by.
    node: usize,
    /// Where between two instants to probe, as a fraction of `u32::MAX`.
    fraction: u32,
}

fn arb_action() -> impl Strategy<Value = Actions> {
    prop_oneof![
        4 => prop::sample::select(Actions::SINGLE.to_vec()).prop_map(|(_, action)| action),
        1 => prop::sample::select(vec![Actions::TRANSFER, Actions::CLIPBOARD, Actions::ALL]),
        1 => (0u8..128).prop_map(Actions::from_bits),
    ]
}

fn arb_ask() -> impl Strategy<Value = Ask> {
    (
        (
            0..16usize,
            0..16usize,
            prop_oneof![6 => Just(By::Name), 1 => Just(By::UpperName), 1 => Just(By::Id)],
        ),
        (
            0..ACCOUNT_NAMES.len() + 3,
            0..PROTOCOL_NAMES.len(),
            arb_action(),
            arb_instant(),
            0..6usize,
            any::<u32>(),
        ),
    )
        .prop_map(
            |((user, asset, by), (account, protocol, action, at, node, fraction))| Ask {
                user,
                asset,
                by,
                account,
                protocol,
                action,
                at,
                node,
                fraction,
            },
        )
}

fn arb_asks(n: usize) -> impl Strategy<Value = Vec<Ask>> {
    prop::collection::vec(arb_ask(), n)
}

/// A resolved query.
#[derive(Debug, Clone)]
struct Asked {
    user: String,
    user_id: Id,
    asset: String,
    asset_id: Id,
    account: String,
    protocol: &'static str,
    action: Actions,
    at: Time,
    node: usize,
    fraction: u32,
}

impl Asked {
    fn query(&self) -> Query<'_> {
        self.at_instant(self.at)
    }

    fn at_instant(&self, at: Time) -> Query<'_> {
        Query {
            user: &self.user,
            asset: &self.asset,
            account: &self.account,
            protocol: self.protocol,
            action: self.action,
            at,
        }
    }
}

/// The instant `fraction` of the way from `from` to `to` (inclusive of `from`,
/// exclusive of `to` when they differ).
fn between(from: Time, to: Time, fraction: u32) -> Time {
    let span = i128::from(to.as_micros()) - i128::from(from.as_micros());
    if span <= 0 {
        return from;
    }
    let offset = (span - 1) * i128::from(fraction) / i128::from(u32::MAX);
    from.add_micros(i64::try_from(offset).expect("within the span"))
}

// ---------------------------------------------------------------------------------
// Comparing

type Checked = Result<(), TestCaseError>;

fn fail(what: &str, detail: String, built: &Built, asked: &dyn Debug) -> TestCaseError {
    TestCaseError::fail(format!(
        "{what}\n{detail}\nquery: {asked:#?}\n{}",
        built.script()
    ))
}

/// `fast` and `reference` are equal, or the case fails naming `what`.
fn same<T: PartialEq + Debug>(
    what: &str,
    fast: &T,
    reference: &T,
    built: &Built,
    asked: &dyn Debug,
) -> Checked {
    if fast == reference {
        return Ok(());
    }
    Err(fail(
        &format!("{what}: the fast path and the reference differ"),
        format!("fast:      {fast:#?}\nreference: {reference:#?}"),
        built,
        asked,
    ))
}

fn that(
    holds: bool,
    what: &str,
    detail: impl FnOnce() -> String,
    built: &Built,
    asked: &dyn Debug,
) -> Checked {
    if holds {
        Ok(())
    } else {
        Err(fail(what, detail(), built, asked))
    }
}

/// A decision with its rule ids in ascending order, for comparisons.
fn comparable(decision: &Decision) -> (bool, Actions, Vec<Id>, u64, Option<Time>) {
    (
        decision.allowed,
        decision.actions,
        decision.rules.sorted(),
        decision.revision,
        decision.valid_until,
    )
}

/// What a decision says, leaving out the revision and `valid_until`.
fn outcome(decision: &Decision) -> (bool, Actions, Vec<Id>) {
    (decision.allowed, decision.actions, decision.rules.sorted())
}

fn sorted(mut ids: Vec<Id>) -> Vec<Id> {
    ids.sort();
    ids
}

/// An explanation with every `via` replaced by its length.
fn without_via(explanation: &Explanation) -> (Vec<Reason>, Vec<(RuleVerdict, usize)>) {
    let rules = explanation
        .rules
        .iter()
        .map(|verdict| {
            (
                RuleVerdict {
                    via: Vec::new(),
                    ..verdict.clone()
                },
                verdict.via.len(),
            )
        })
        .collect();
    (explanation.reasons.clone(), rules)
}

/// `via` is empty exactly when the rule names the user, and otherwise a real chain at
/// `at`: the user is a member of the first group, each group is a subgroup of the
/// next, and the rule names the last.
fn real_chain(built: &Built, user: Id, verdict: &RuleVerdict, at: Time) -> Result<(), String> {
    let rule = built.rule(verdict.rule);
    let via = &verdict.via;
    if rule.users.contains(&user) {
        return if via.is_empty() {
            Ok(())
        } else {
            Err("the rule names the user, yet via is not empty".into())
        };
    }
    let groups: Vec<&Group> = via
        .iter()
        .map(|name| {
            built
                .group_named(name)
                .ok_or_else(|| format!("via names `{name}`, no such group"))
        })
        .collect::<Result<_, _>>()?;
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
        if !outer
            .subgroups
            .iter()
            .any(|e| e.group == inner.id && membership_counts(e.expires_at, at))
        {
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

/// Whether `node` is `ancestor` or below it, in `estate`.
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

/// Every question of the [`Evaluator`] trait for one query, fast against reference.
fn compare(built: &Built, asked: &Asked) -> Checked {
    let fast: &Snapshot = &built.snapshot;
    let reference = built.reference();
    let query = asked.query();
    let at = asked.at;
    let ok = |r: Result<_, NotFound>, what: &str| {
        r.map_err(|e| fail(what, format!("{e}"), built, asked))
    };

    // check
    let decision = ok(fast.check(&query), "fast check")?;
    let expected = ok(reference.check(&query), "reference check")?;
    same(
        "check",
        &comparable(&decision),
        &comparable(&expected),
        built,
        asked,
    )?;
    let by_index = fast.check_idx(
        fast.user_idx(&asked.user).expect("resolves"),
        fast.asset_idx(&asked.asset).expect("resolves"),
        &asked.account,
        asked.protocol,
        asked.action,
        at,
    );
    same(
        "check_idx",
        &comparable(&by_index),
        &comparable(&expected),
        built,
        asked,
    )?;

    // explain
    let explained = ok(fast.explain(&query), "fast explain")?;
    let expected_explained = ok(reference.explain(&query), "reference explain")?;
    same(
        "explain decision",
        &comparable(&explained.decision),
        &comparable(&expected_explained.decision),
        built,
        asked,
    )?;
    same(
        "explain",
        &without_via(&explained),
        &without_via(&expected_explained),
        built,
        asked,
    )?;
    for (side, explanation) in [("fast", &explained), ("reference", &expected_explained)] {
        for verdict in &explanation.rules {
            if let Err(broken) = real_chain(built, asked.user_id, verdict, at) {
                return Err(fail(
                    &format!("{side} explain: via of `{}` is not a chain", verdict.name),
                    format!("{broken}\n{verdict:#?}"),
                    built,
                    asked,
                ));
            }
        }
    }

    // lists
    let assets = sorted(ok(fast.user_assets(&asked.user, at), "fast user_assets")?);
    let expected_assets = sorted(ok(
        reference.user_assets(&asked.user, at),
        "reference user_assets",
    )?);
    same("user_assets", &assets, &expected_assets, built, asked)?;
    let page = ok(
        fast.user_assets_page(&asked.user, None, at, 0, usize::MAX),
        "fast user_assets_page",
    )?;
    same(
        "user_assets_page",
        &(
            page.total,
            sorted(page.items.iter().map(|a| a.id).collect()),
        ),
        &(expected_assets.len() as u64, expected_assets.clone()),
        built,
        asked,
    )?;
    same(
        "user_asset_count",
        &fast.user_asset_count(fast.user_idx(&asked.user).expect("resolves"), at),
        &(expected_assets.len() as u64),
        built,
        asked,
    )?;
    let node = node_id(asked.node);
    if built.estate.nodes.iter().any(|n| n.id == node) {
        let page = ok(
            fast.user_assets_page(&asked.user, Some(&node.to_string()), at, 0, usize::MAX),
            "fast user_assets_page under a node",
        )?;
        let under: Vec<Id> =
            expected_assets
                .iter()
                .copied()
                .filter(|id| {
                    built.estate.assets.iter().any(|a| {
                        a.id == *id && a.nodes.iter().any(|&n| within(&built.estate, n, node))
                    })
                })
                .collect();
        same(
            "user_assets_page under a node",
            &(
                page.total,
                sorted(page.items.iter().map(|a| a.id).collect()),
            ),
            &(under.len() as u64, under),
            built,
            asked,
        )?;
    }
    same(
        "user_nodes",
        &ok(fast.user_nodes(&asked.user, at), "fast user_nodes")?,
        &ok(
            reference.user_nodes(&asked.user, at),
            "reference user_nodes",
        )?,
        built,
        asked,
    )?;
    same(
        "user_accounts",
        &ok(
            fast.user_accounts(&asked.user, &asked.asset, at),
            "fast user_accounts",
        )?,
        &ok(
            reference.user_accounts(&asked.user, &asked.asset, at),
            "reference user_accounts",
        )?,
        built,
        asked,
    )?;
    let users = sorted(ok(fast.asset_users(&asked.asset, at), "fast asset_users")?);
    let expected_users = sorted(ok(
        reference.asset_users(&asked.asset, at),
        "reference asset_users",
    )?);
    same("asset_users", &users, &expected_users, built, asked)?;
    let page = ok(
        fast.asset_users_page(&asked.asset, at, 0, usize::MAX),
        "fast asset_users_page",
    )?;
    same(
        "asset_users_page",
        &(
            page.total,
            sorted(page.items.iter().map(|u| u.id).collect()),
        ),
        &(expected_users.len() as u64, expected_users),
        built,
        asked,
    )?;

    // roles
    for scope in SCOPES {
        same(
            &format!("effective_roles on {scope}"),
            &ok(
                fast.effective_roles(&asked.user, scope, at),
                "fast effective_roles",
            )?,
            &ok(
                reference.effective_roles(&asked.user, scope, at),
                "reference effective_roles",
            )?,
            built,
            asked,
        )?;
        for permission in PERMISSIONS {
            same(
                &format!("has_permission {permission} on {scope}"),
                &ok(
                    fast.has_permission(&asked.user, scope, permission, at),
                    "fast has_permission",
                )?,
                &ok(
                    reference.has_permission(&asked.user, scope, permission, at),
                    "reference has_permission",
                )?,
                built,
                asked,
            )?;
        }
    }
    Ok(())
}

/// `valid_until` is sound: the reference's decision does not change from `at` up to
/// the instant before it (probed at `at`, one microsecond before, and in between);
/// and when it is `None`, the decision long after every boundary is the one at `at`.
fn valid_until_holds(built: &Built, asked: &Asked) -> Checked {
    let reference = built.reference();
    let at = asked.at;
    let decide = |t: Time| {
        reference
            .check(&asked.at_instant(t))
            .map(|d| outcome(&d))
            .expect("resolves")
    };
    let decision = reference.check(&asked.query()).expect("resolves");
    let now = outcome(&decision);
    let (end, probes) = match decision.valid_until {
        Some(until) => {
            that(
                until > at,
                "valid_until is not after the instant asked",
                || format!("{until:?}"),
                built,
                asked,
            )?;
            (
                until,
                vec![until.add_micros(-1), between(at, until, asked.fraction)],
            )
        }
        // Every time a script writes lies within four hours of T0.
        None => (
            hours(5),
            vec![hours(5), between(at, hours(5), asked.fraction)],
        ),
    };
    for probe in probes {
        let later = decide(probe);
        that(
            later == now,
            "the decision changed before valid_until",
            || {
                format!(
                    "valid_until {:?} (ends {end:?})\nat {at:?}: {now:?}\nat {probe:?}: {later:?}",
                    decision.valid_until
                )
            },
            built,
            asked,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The differential property and valid_until

proptest! {
    #![proptest_config(ProptestConfig { cases: ESTATES, max_global_rejects: 4096, ..ProptestConfig::default() })]

    /// DESIGN.md: "the tests compare the fast path with [the reference] on random
    /// models, times and queries. Any disagreement is a bug in the fast path."
    #[test]
    fn fast_path_agrees_with_reference((tree, steps) in arb_script(STEPS), asks in arb_asks(QUERIES)) {
        let built = Built::new(&tree, &steps);
        let asked: Vec<Asked> = asks.iter().filter_map(|ask| built.resolve(ask)).collect();
        prop_assume!(!asked.is_empty(), "no user or no asset");
        for asked in &asked {
            compare(&built, asked)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_global_rejects: 4096, ..ProptestConfig::default() })]

    #[test]
    fn valid_until_is_sound((tree, steps) in arb_script(STEPS), asks in arb_asks(QUERIES)) {
        let built = Built::new(&tree, &steps);
        let asked: Vec<Asked> = asks.iter().filter_map(|ask| built.resolve(ask)).collect();
        prop_assume!(!asked.is_empty(), "no user or no asset");
        for asked in &asked {
            valid_until_holds(&built, asked)?;
        }
    }
}
