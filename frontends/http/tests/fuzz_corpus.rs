//! The `check_json` fuzz corpus (`fuzz/corpus/check_json/`), replayed: every input
//! goes through `portcullis_http::fuzzing::check_json` (no panic, and the fast and the
//! reference evaluators agree), named seeds get the outcome worked out by hand from
//! the fixture's estate, and every input is also sent to a real server holding the
//! same estate, which must answer what the fuzzing entry point says the route answers.
//! What a fuzzing run finds is minimised and added to the corpus.

use portcullis_engine::Actor;
use std::path::PathBuf;
use std::sync::Arc;

use portcullis_http::fuzzing::{self, Outcome};
use reqwest::Method;
use serde_json::Value;

use crate::support::Server;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/check_json");
    let mut inputs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("a corpus file"))
        })
        .collect();
    inputs.sort();
    inputs
}

const ALLOWED: Outcome = Outcome::Decided { allowed: true };
const DENIED: Outcome = Outcome::Decided { allowed: false };

/// Seeds and their outcomes, worked out from the estate in `fuzzing.rs` (at
/// 2026-06-01 when the body names no instant).
const EXPECTED: &[(&str, Outcome)] = &[
    ("by-name-allowed.json", ALLOWED),
    ("by-name-denied.json", DENIED),
    ("by-id.json", ALLOWED),
    ("by-id-uppercase.json", ALLOWED),
    ("by-id-braced.json", ALLOWED),
    ("by-id-simple.json", ALLOWED),
    ("nested-group.json", ALLOWED),
    ("nested-deny.json", DENIED),
    ("at-rfc3339-offset.json", ALLOWED),
    ("at-after-expiry.json", DENIED),
    ("at-nanoseconds.json", ALLOWED),
    ("at-year-9999.json", DENIED),
    ("at-year-minus-9999.json", DENIED),
    ("at-epoch.json", DENIED),
    // Beyond the range of RFC 3339 instants the engine represents: 422.
    ("at-out-of-range-late.json", Outcome::Refused),
    ("at-out-of-range-early.json", Outcome::Refused),
    ("min-revision.json", ALLOWED),
    ("unicode-case.json", ALLOWED),
    // Lower case is not case folding: `STRASSE` does not name `straße`.
    ("unicode-sharp-s.json", Outcome::NotFound),
    ("unicode-dotted-i.json", ALLOWED),
    ("unicode-dotted-i-upper.json", ALLOWED),
    ("at-user.json", ALLOWED),
    ("inactive-user.json", DENIED),
    ("expired-user.json", DENIED),
    ("inactive-asset.json", DENIED),
    ("excluded-account.json", DENIED),
    ("deny-window.json", DENIED),
    ("protocol-not-offered.json", DENIED),
    ("protocol-padded.json", ALLOWED),
    ("action-transfer.json", ALLOWED),
    ("action-clipboard.json", ALLOWED),
    ("null-at.json", ALLOWED),
    ("escapes.json", ALLOWED),
    ("unknown-user.json", Outcome::NotFound),
    ("unknown-asset.json", Outcome::NotFound),
    ("nul-in-name.json", Outcome::NotFound),
    ("unknown-action.json", Outcome::Refused),
    ("bad-protocol.json", Outcome::Refused),
    ("bad-time.json", Outcome::Refused),
    ("unknown-field.json", Outcome::Refused),
    ("missing-field.json", Outcome::Refused),
    ("wrong-type.json", Outcome::Refused),
    ("empty-strings.json", Outcome::Refused),
    ("duplicate-key.json", Outcome::Refused),
    ("lone-surrogate.json", Outcome::Refused),
    ("truncated.json", Outcome::Refused),
    ("array.json", Outcome::Refused),
    ("deep-nesting.json", Outcome::Refused),
    ("whitespace.json", Outcome::Refused),
    ("empty.json", Outcome::Refused),
    ("invalid-utf8.bin", Outcome::Refused),
];

#[test]
fn the_check_json_corpus_replays_and_the_evaluators_agree() {
    let inputs = corpus();
    assert!(inputs.len() >= EXPECTED.len(), "the seeds are there");
    let outcomes: Vec<(&str, Outcome)> = inputs
        .iter()
        .map(|(name, body)| (name.as_str(), fuzzing::check_json(body)))
        .collect();
    for (name, expected) in EXPECTED {
        let (_, outcome) = outcomes
            .iter()
            .find(|(seed, _)| seed == name)
            .unwrap_or_else(|| panic!("the seed {name} is missing"));
        assert_eq!(outcome, expected, "{name}");
    }
    // Whatever a run added keeps the mix: every kind of outcome is represented.
    for kind in [ALLOWED, DENIED, Outcome::NotFound, Outcome::Refused] {
        assert!(
            outcomes.iter().any(|(_, outcome)| *outcome == kind),
            "no input ends {kind:?}"
        );
    }
}

/// The route answers what the fuzzing entry point says it does: 400 or 422 for a
/// refused body, 404 for an unknown user or asset, 200 with the same `allowed` for a
/// decision (compared when the body names its instant; otherwise the server's is now,
/// the entry point's 2026-06-01).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_answers_as_the_fuzzing_entry_point_says() {
    let server = Server::start().await;
    let engine = Arc::clone(&server.engine);
    tokio::task::spawn_blocking(move || {
        engine.write(&Actor::system("test"), fuzzing::estate_ops())
    })
    .await
    .expect("the write task")
    .expect("the fuzz estate loads into a served store");
    let mut n_decided = 0;
    for (name, body) in corpus() {
        let outcome = fuzzing::check_json(&body);
        let admin = server.admin.clone();
        let (status, answer) = server
            .send(
                Method::POST,
                "/api/v1/check",
                Some(&admin),
                Some(body.clone()),
            )
            .await;
        match outcome {
            Outcome::Refused => {
                assert!(status == 400 || status == 422, "{name}: {status} {answer}")
            }
            Outcome::NotFound => assert_eq!(status, 404, "{name}: {answer}"),
            Outcome::Decided { allowed } => {
                assert_eq!(status, 200, "{name}: {answer}");
                let names_instant = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .is_some_and(|json| json["at"].is_string());
                if names_instant {
                    assert_eq!(answer["allowed"], Value::Bool(allowed), "{name}: {answer}");
                    n_decided += 1;
                }
            }
        }
    }
    assert!(n_decided >= 8, "{n_decided} decisions compared");
}
