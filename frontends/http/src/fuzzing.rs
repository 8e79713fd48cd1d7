//! Entry points for the `check_json` fuzz target (`fuzz/`) and the test that replays
//! its corpus: arbitrary bytes as the body of `POST /api/v1/check`, parsed as the
//! route parses it, and, when it parses, checked and explained against a small fixed
//! estate by both evaluators. Nothing may panic, whatever the bytes; the fast
//! evaluator's answer must equal the reference evaluator's.
//!
//! The estate ([`fixture`]) is built once per process in an in-memory engine: nested
//! groups, a temporary membership, an inactive and an expiring user, an inactive
//! asset, deny rules, rule windows, `@ALL` with an exclusion, `@USER`, `@INPUT`,
//! `@ANON`, and names whose lower case is not a plain ASCII fold (`Émile`, `straße`,
//! `İlker`, `WIN-Ω`). Its users and assets have fixed ids (`ID_*`), so seeds can name
//! them by id. Nothing in it depends on the clock (every rule names its `starts_at`,
//! which otherwise defaults to the moment of creation), and a body that names no `at`
//! is evaluated at [`DEFAULT_AT`], not at the clock, so a crash input replays the same
//! way on any day.

use portcullis_engine::Actor;
use std::sync::{Arc, OnceLock};

use portcullis_engine::{
    Actions, Decision, Engine, EntityKind, Estate, Evaluator, Explanation, Id, NotFound, Op, Query,
    Reason, Reference, RuleVerdict, Snapshot, Spec, Time,
};
use serde_json::{Value, json};

use crate::decisions::{CheckRequest, decision_json, explanation_json};
use crate::extract::parse_json;

/// The instant of a body that names none: 2026-06-01T00:00:00Z.
pub const DEFAULT_AT: Time = Time::from_secs(1_780_272_000);

/// The ids of the estate's users and assets.
pub const ID_ALICE: Id = Id::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0001);
pub const ID_EMILE: Id = Id::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0003);
pub const ID_WEB_01: Id = Id::from_u128(0x0000_0002_0000_4000_8000_0000_0000_0001);
pub const ID_DB_01: Id = Id::from_u128(0x0000_0002_0000_4000_8000_0000_0000_0002);

/// The estate: in creation order, `(kind, spec)`.
fn estate_specs() -> Vec<(EntityKind, Value)> {
    let user = |n: u128| Id::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0000 + n);
    let asset = |n: u128| Id::from_u128(0x0000_0002_0000_4000_8000_0000_0000_0000 + n);
    vec![
        (EntityKind::Node, json!({"name": "Prod"})),
        (
            EntityKind::Node,
            json!({"name": "DB", "parent": "/Default/Prod"}),
        ),
        (EntityKind::Node, json!({"name": "Dev"})),
        (
            EntityKind::User,
            json!({"id": ID_ALICE, "username": "alice"}),
        ),
        (EntityKind::User, json!({"id": user(2), "username": "bob"})),
        (
            EntityKind::User,
            json!({"id": ID_EMILE, "username": "Émile"}),
        ),
        (
            EntityKind::User,
            json!({"id": user(4), "username": "straße"}),
        ),
        (
            EntityKind::User,
            json!({"id": user(5), "username": "İlker"}),
        ),
        (
            EntityKind::User,
            json!({"id": user(6), "username": "carol", "active": false}),
        ),
        (
            EntityKind::User,
            json!({"id": user(7), "username": "dave", "expires_at": "2027-01-01T00:00:00Z"}),
        ),
        (EntityKind::User, json!({"id": user(8), "username": "erin"})),
        (
            EntityKind::Group,
            json!({"name": "dba", "members": ["bob"]}),
        ),
        (
            EntityKind::Group,
            json!({"name": "ops", "members": ["alice"], "subgroups": ["dba"]}),
        ),
        (
            EntityKind::Group,
            json!({"name": "devs", "members": ["Émile", "carol", "dave",
                {"user": "erin", "expires_at": "2026-09-01T00:00:00Z"}],
                "subgroups": [{"group": "ops", "expires_at": "2028-01-01T00:00:00Z"}]}),
        ),
        (
            EntityKind::Asset,
            json!({"id": ID_WEB_01, "name": "web-01", "protocols": ["ssh/22", "sftp/22"],
                "nodes": ["/Default/Prod"],
                "accounts": [{"username": "root", "privileged": true}, {"username": "deploy"},
                    {"username": "alice"}]}),
        ),
        (
            EntityKind::Asset,
            json!({"id": ID_DB_01, "name": "db-01", "protocols": ["ssh/22", "postgresql/5432"],
                "nodes": ["/Default/Prod/DB"],
                "accounts": [{"username": "root", "privileged": true}, {"username": "postgres"}]}),
        ),
        (
            EntityKind::Asset,
            json!({"id": asset(3), "name": "dev-01", "protocols": ["ssh/22"],
                "nodes": ["/Default/Dev"], "accounts": [{"username": "dev"}]}),
        ),
        (
            EntityKind::Asset,
            json!({"id": asset(4), "name": "WIN-Ω", "protocols": ["rdp/3389"],
                "nodes": ["/Default/Dev"], "accounts": [{"username": "Administrator"}]}),
        ),
        (
            EntityKind::Asset,
            json!({"id": asset(5), "name": "old-01", "protocols": ["ssh/22"],
                "nodes": ["/Default/Prod"], "accounts": [{"username": "root"}], "active": false}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "alice-web", "users": ["alice"], "assets": ["web-01"],
                "accounts": ["root"], "protocols": ["ssh"], "actions": ["all"],
                "starts_at": "2020-01-01T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "ops-prod", "groups": ["ops"], "nodes": ["/Default/Prod"],
                "accounts": ["@ALL", "!root"], "protocols": ["ssh", "sftp"],
                "actions": ["connect", "transfer"], "expires_at": "2031-01-01T00:00:00Z",
                "starts_at": "2020-01-01T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "dba-db", "groups": ["dba"], "nodes": ["/Default/Prod/DB"],
                "accounts": ["postgres", "root"], "actions": ["all"],
                "starts_at": "2020-01-01T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "no-root-on-db", "effect": "deny", "groups": ["ops"],
                "nodes": ["/Default/Prod/DB"], "accounts": ["root"], "actions": ["all"],
                "starts_at": "2020-01-01T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "devs-dev", "groups": ["devs"], "nodes": ["/Default/Dev"],
                "accounts": ["@USER", "@INPUT"], "actions": ["connect", "clipboard"],
                "starts_at": "2026-03-01T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "kiosk", "users": ["straße", "İlker", "Émile"], "assets": ["WIN-Ω"],
                "accounts": ["@ANON"], "protocols": ["rdp"], "actions": ["connect", "paste"],
                "starts_at": "2026-01-01T00:00:00Z", "expires_at": "2026-12-31T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "no-devs-upload", "effect": "deny", "groups": ["devs"],
                "assets": ["dev-01"], "accounts": ["@ALL"], "actions": ["upload"],
                "starts_at": "2026-07-01T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "switched-off", "users": ["bob"], "assets": ["web-01"],
                "accounts": ["@ALL"], "actions": ["all"], "active": false,
                "starts_at": "2020-01-01T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "later", "users": ["erin", "dave"], "nodes": ["/Default"],
                "accounts": ["@ALL", "@INPUT"], "actions": ["connect", "share"],
                "starts_at": "2030-01-01T00:00:00Z"}),
        ),
        (
            EntityKind::Rule,
            json!({"name": "old", "users": ["alice"], "assets": ["old-01"],
                "accounts": ["root"], "actions": ["all"],
                "starts_at": "2020-01-01T00:00:00Z"}),
        ),
    ]
}

/// The operations that create the estate, in one write into an empty store (the
/// corpus test loads them into a served store too).
///
/// # Panics
///
/// When a spec is malformed: a bug in this module, not an input.
pub fn estate_ops() -> Vec<Op> {
    estate_specs()
        .into_iter()
        .map(|(kind, spec)| {
            let parsed = Spec::from_json(kind, spec.clone())
                .unwrap_or_else(|error| panic!("the fuzz estate's {spec}: {error}"));
            Op::Create(parsed)
        })
        .collect()
}

/// The estate's snapshot and its plain form, for the two evaluators.
pub struct Fixture {
    pub snapshot: Arc<Snapshot>,
    pub estate: Estate,
    /// Kept, never dropped: dropping an engine flushes its store, which takes seconds
    /// in an unoptimised, instrumented fuzz build and would count against the first
    /// input's time limit.
    _engine: Engine,
}

/// The estate, built on first use (the fuzz target builds it before the first input).
///
/// # Panics
///
/// When the estate cannot be built: a bug in this module, not an input.
pub fn fixture() -> &'static Fixture {
    static ESTATE: OnceLock<Fixture> = OnceLock::new();
    ESTATE.get_or_init(|| {
        let engine = Engine::in_memory().expect("INVARIANT: an in-memory engine starts");
        engine
            .write(&Actor::system("fuzzing"), estate_ops())
            .unwrap_or_else(|error| panic!("the fuzz estate is refused: {error}"));
        let snapshot = engine.snapshot();
        let estate = snapshot.estate();
        Fixture {
            snapshot,
            estate,
            _engine: engine,
        }
    })
}

/// What [`check_json`] made of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not a check body: the route answers 400 or 422.
    Refused,
    /// A well-formed body naming a user or asset the estate does not have: 404.
    NotFound,
    /// A decision: 200.
    Decided { allowed: bool },
}

/// Parses `body` as `POST /api/v1/check` does and, when it parses, checks and
/// explains it with both evaluators against [`fixture`]'s estate.
///
/// # Panics
///
/// When the evaluators disagree: the check's decision (rule ids compared as sets), the
/// explanation, or which reference they fail to resolve. That is the property the
/// fuzz target exists to test.
pub fn check_json(body: &[u8]) -> Outcome {
    let Ok(request) = parse_json::<CheckRequest>(body) else {
        return Outcome::Refused;
    };
    let Ok((action, protocol)) = request.action_and_protocol() else {
        return Outcome::Refused;
    };
    let query = request.query(action, &protocol, || DEFAULT_AT);
    let fixture = fixture();
    let reference = Reference::new(&fixture.estate, fixture.snapshot.revision());

    let fast = fixture.snapshot.check(&query);
    let expected = reference.check(&query);
    assert_eq!(
        fast.as_ref().map(sorted),
        expected.as_ref().map(sorted),
        "check: the fast and the reference decisions differ for {query:?}"
    );
    let fast_explanation = fixture.snapshot.explain(&query);
    let expected_explanation = reference.explain(&query);
    assert_eq!(
        fast_explanation.as_ref().map(explanation_sorted),
        expected_explanation.as_ref().map(explanation_sorted),
        "explain: the fast and the reference explanations differ for {query:?}"
    );
    answer(&query, fast, fast_explanation)
}

/// The outcome of an agreed answer, after rendering it as the routes do.
fn answer(
    query: &Query<'_>,
    decision: Result<Decision, NotFound>,
    explanation: Result<Explanation, NotFound>,
) -> Outcome {
    match (decision, explanation) {
        (Ok(decision), Ok(explanation)) => {
            let body = decision_json(&decision);
            assert_eq!(body["allowed"], json!(decision.allowed), "{query:?}");
            let explained = explanation_json(&explanation);
            assert_eq!(explained["allowed"], body["allowed"], "{query:?}");
            Outcome::Decided {
                allowed: decision.allowed,
            }
        }
        (Err(_), Err(_)) => Outcome::NotFound,
        (decision, explanation) => panic!(
            "check and explain disagree on whether {query:?} resolves: \
             {decision:?} / {explanation:?}"
        ),
    }
}

/// A decision as the two evaluators must agree on it: rule ids as a set.
#[derive(Debug, PartialEq)]
struct Compared {
    allowed: bool,
    actions: Actions,
    rules: Vec<Id>,
    revision: u64,
    valid_until: Option<Time>,
}

fn sorted(decision: &Decision) -> Compared {
    Compared {
        allowed: decision.allowed,
        actions: decision.actions,
        rules: decision.rules.sorted(),
        revision: decision.revision,
        valid_until: decision.valid_until,
    }
}

/// An explanation as the two evaluators must agree on it: each `via` cut down to its
/// length, since they may pick different shortest group chains (as in the engine's
/// differential tests).
#[derive(Debug, PartialEq)]
struct Explained {
    decision: Compared,
    reasons: Vec<Reason>,
    rules: Vec<(RuleVerdict, usize)>,
}

fn explanation_sorted(explanation: &Explanation) -> Explained {
    let rules = explanation
        .rules
        .iter()
        .map(|verdict| {
            let length = verdict.via.len();
            let cut = RuleVerdict {
                via: Vec::new(),
                ..verdict.clone()
            };
            (cut, length)
        })
        .collect();
    Explained {
        decision: sorted(&explanation.decision),
        reasons: explanation.reasons.clone(),
        rules,
    }
}
