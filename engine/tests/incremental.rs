//! The snapshot a run of writes maintains incrementally equals one built from
//! scratch, and a refused write changes nothing.

use portcullis_engine::*;
use proptest::prelude::*;

use crate::support::{arb_script, step_op, tree_ops};

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn incremental_snapshot_equals_rebuilt((tree, steps) in arb_script(40)) {
        let engine = Engine::in_memory().unwrap();
        engine.write(&Actor::system("test"), tree_ops(&tree)).unwrap();
        for step in &steps {
            let before = engine.snapshot();
            match engine.write(&Actor::system("test"), vec![step_op(step, &before)]) {
                Ok(outcome) => {
                    let after = engine.snapshot();
                    prop_assert_eq!(after.revision(), outcome.revision);
                    prop_assert_eq!(outcome.revision, before.revision() + 1);
                    if let Err(broken) = after.check_invariants() {
                        return Err(TestCaseError::fail(format!("after {step:?}: {broken}")));
                    }
                }
                Err(Error::Validation(_)) => {
                    let after = engine.snapshot();
                    prop_assert_eq!(after.revision(), before.revision());
                    prop_assert!(std::sync::Arc::ptr_eq(&before, &after), "a refused write published a snapshot");
                }
                Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
            }
        }
        let live = engine.snapshot();
        let rebuilt = Snapshot::build(live.estate(), &[]).unwrap();
        prop_assert_eq!(live.canonical(), rebuilt.canonical());
    }
}

#[test]
fn reopening_a_store_rebuilds_the_same_snapshot() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    for _ in 0..8 {
        let (tree, steps) = arb_script(60).new_tree(&mut runner).unwrap().current();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let canonical = {
            let engine = Engine::open(&path).unwrap();
            crate::support::run_script(&engine, &tree, &steps);
            let (_, secret) = engine
                .create_token(
                    &Actor::system("test"),
                    TokenSpec {
                        id: None,
                        name: "t".into(),
                        user: None,
                        roles: vec!["checker".into()],
                        expires_at: None,
                        description: String::new(),
                    },
                )
                .unwrap();
            assert!(engine.authenticate_token(&secret, Time::now()).is_some());
            engine.snapshot().canonical()
        };
        let reopened = Engine::open(&path).unwrap();
        assert_eq!(reopened.snapshot().canonical(), canonical);
        reopened.snapshot().check_invariants().unwrap();
    }
}

#[test]
fn scripts_mostly_apply() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut steps_total, mut accepted) = (0, 0);
    for _ in 0..50 {
        let (tree, steps) = arb_script(40).new_tree(&mut runner).unwrap().current();
        let engine = Engine::in_memory().unwrap();
        accepted += crate::support::run_script(&engine, &tree, &steps);
        steps_total += steps.len();
    }
    eprintln!("{accepted} of {steps_total}");
    assert!(
        accepted * 10 > steps_total * 7,
        "only {accepted} of {steps_total} random writes applied"
    );
}
