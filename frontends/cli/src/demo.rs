//! The demo estate (`demo.json`), loaded in one write into an empty store.

use portcullis_engine::Actor;
use portcullis_engine::{Engine, EntityKind, Op, Snapshot, Spec};
use serde_json::Value;

use crate::error::CliError;

const DEMO: &str = include_str!("demo.json");

/// In creation order: what later entities refer to comes first.
const ORDER: [(&str, EntityKind); 6] = [
    ("roles", EntityKind::Role),
    ("nodes", EntityKind::Node),
    ("users", EntityKind::User),
    ("groups", EntityKind::Group),
    ("assets", EntityKind::Asset),
    ("rules", EntityKind::Rule),
];

/// Whether the store holds nothing but what every store starts with (the root node,
/// the built-in roles, tokens).
pub fn is_empty(snapshot: &Snapshot) -> bool {
    let counts = snapshot.counts();
    counts.users == 0
        && counts.groups == 0
        && counts.assets == 0
        && counts.rules == 0
        && counts.nodes <= 1
}

/// The operations that create the demo estate.
pub fn operations() -> Result<Vec<Op>, CliError> {
    let demo: Value = serde_json::from_str(DEMO)
        .map_err(|error| CliError::System(format!("demo.json: {error}")))?;
    let mut ops = Vec::new();
    for (section, kind) in ORDER {
        let Some(entries) = demo[section].as_array() else {
            continue;
        };
        for entry in entries {
            let spec = Spec::from_json(kind, entry.clone())
                .map_err(|error| CliError::System(format!("demo.json, {section}: {error}")))?;
            ops.push(Op::Create(spec));
        }
    }
    Ok(ops)
}

/// Loads the demo estate when the store is empty; returns whether it did.
pub fn load(engine: &Engine) -> Result<Option<u64>, CliError> {
    if !is_empty(&engine.snapshot()) {
        return Ok(None);
    }
    let outcome = engine.write(&Actor::system("demo"), operations()?)?;
    Ok(Some(outcome.revision))
}

#[cfg(test)]
mod tests {
    use portcullis_engine::{Actions, Evaluator, Query, Time};

    use super::*;

    fn at(text: &str) -> Time {
        text.parse().unwrap()
    }

    /// The demo shows what the README says it shows.
    #[test]
    fn the_demo_estate_tells_its_stories() {
        let engine = Engine::in_memory().unwrap();
        assert!(load(&engine).unwrap().is_some());
        assert!(load(&engine).unwrap().is_none(), "loaded once only");
        let snapshot = engine.snapshot();
        let now = Time::now();
        let cases = [
            ("alice", "web-01", "root", "ssh", "connect", now, true),
            ("alice", "web-01", "root", "ssh", "share", now, true),
            ("alice", "web-02", "deploy", "ssh", "upload", now, true),
            (
                "alice",
                "web-02",
                "deploy",
                "ssh",
                "upload",
                at("2031-06-01T00:00:00Z"),
                false,
            ),
            ("alice", "db-01", "root", "ssh", "connect", now, false),
            (
                "bob",
                "db-01",
                "postgres",
                "postgresql",
                "connect",
                now,
                true,
            ),
            ("bob", "db-01", "root", "ssh", "connect", now, false),
            ("bob", "web-01", "deploy", "ssh", "connect", now, true),
            ("carol", "dev-01", "dev", "ssh", "connect", now, true),
            ("carol", "web-01", "root", "ssh", "connect", now, false),
            ("dave", "dev-01", "dev", "ssh", "connect", now, true),
            (
                "dave",
                "dev-01",
                "dev",
                "ssh",
                "connect",
                at("2030-06-01T00:00:00Z"),
                false,
            ),
            ("frank", "win-01", "@INPUT", "rdp", "paste", now, true),
            (
                "frank",
                "win-01",
                "Administrator",
                "rdp",
                "connect",
                now,
                false,
            ),
        ];
        for (user, asset, account, protocol, action, at, expected) in cases {
            let query = Query {
                user,
                asset,
                account,
                protocol,
                action: Actions::parse_name(action).unwrap(),
                at,
            };
            let decision = snapshot.check(&query).unwrap();
            assert_eq!(decision.allowed, expected, "{query:?}");
        }
        assert!(
            snapshot
                .has_permission("bob", "/Default/Prod/DB", "assets.change", now)
                .unwrap()
        );
        assert!(
            !snapshot
                .has_permission("bob", "*", "assets.change", now)
                .unwrap()
        );
        assert!(
            snapshot
                .has_permission("erin", "*", "users.view", now)
                .unwrap()
        );
    }
}
