//! The snapshot image: an engine opened from its image answers exactly as one rebuilt
//! from the store, also when the image is behind the store; a damaged, foreign or
//! future image is detected and ignored, kind of damage by kind of damage.

use std::path::{Path, PathBuf};

use portcullis_engine::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::support::{arb_script, create_user, run_script, step_op};

fn image_of(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".image");
    PathBuf::from(name)
}

fn rebuilt(path: &Path) -> Canonical {
    let options = EngineOptions {
        images: false,
        ..EngineOptions::default()
    };
    let engine = Engine::open_with(path, options).unwrap();
    assert_eq!(engine.opened_from(), &Err(ImageRejected::Missing));
    engine.snapshot().canonical()
}

/// Same answers on a sample of checks, besides the same canonical form.
fn assert_same_answers(a: &Snapshot, b: &Snapshot) {
    let at = Time::now();
    for user in crate::support::user_names() {
        for asset in crate::support::asset_names() {
            let query = Query {
                user: &user,
                asset: &asset,
                account: "root",
                protocol: "ssh",
                action: Actions::CONNECT,
                at,
            };
            let (x, y) = (a.check(&query), b.check(&query));
            assert_eq!(
                x.map(|d| d.actions),
                y.map(|d| d.actions),
                "{user} on {asset}"
            );
        }
    }
}

#[test]
fn an_image_behind_the_store_catches_up_to_the_rebuilt_snapshot() {
    let mut runner = TestRunner::deterministic();
    for case in 0..24 {
        let (tree, steps) = arb_script(60).new_tree(&mut runner).unwrap().current();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let saved = dir.path().join("saved.image");
        let halfway = steps.len() / 2;
        {
            let engine = Engine::open(&path).unwrap();
            run_script(&engine, &tree, &steps[..halfway]);
            engine.write_image();
            std::fs::copy(image_of(&path), &saved).unwrap();
            for step in &steps[halfway..] {
                let _ = engine.write(
                    &Actor::system("test"),
                    vec![step_op(step, &engine.snapshot())],
                );
            }
        }
        // The shutdown wrote a current image; put the halfway one back.
        std::fs::copy(&saved, image_of(&path)).unwrap();
        let expected = rebuilt(&path);
        let engine = Engine::open(&path).unwrap();
        let opened = engine.snapshot();
        assert!(
            engine.opened_from().is_ok(),
            "case {case}: {:?}",
            engine.opened_from()
        );
        opened.check_invariants().unwrap();
        assert_eq!(opened.canonical(), expected, "case {case}");
        let fresh = Snapshot::build(opened.estate(), &[]).unwrap();
        assert_same_answers(&opened, &fresh);
    }
}

#[test]
fn a_clean_shutdown_leaves_a_current_image_that_opens_alike() {
    let mut runner = TestRunner::deterministic();
    for _ in 0..8 {
        let (tree, steps) = arb_script(60).new_tree(&mut runner).unwrap().current();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let revision = {
            let engine = Engine::open(&path).unwrap();
            run_script(&engine, &tree, &steps);
            engine.snapshot().revision()
        };
        let expected = rebuilt(&path);
        let engine = Engine::open(&path).unwrap();
        assert_eq!(engine.opened_from(), &Ok(revision));
        assert_eq!(engine.snapshot().canonical(), expected);
        engine.snapshot().check_invariants().unwrap();
    }
}

/// A store with a few writes and a current image; returns the store's path.
fn store_with_image(dir: &Path) -> PathBuf {
    let path = dir.join("store.redb");
    let (tree, steps) = arb_script(40)
        .new_tree(&mut TestRunner::deterministic())
        .unwrap()
        .current();
    let engine = Engine::open(&path).unwrap();
    run_script(&engine, &tree, &steps);
    drop(engine);
    assert!(image_of(&path).exists(), "shutdown writes an image");
    path
}

fn damaged_image_is_ignored(
    damage: impl Fn(&Path, &Path),
    expected: impl Fn(&ImageRejected) -> bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = store_with_image(dir.path());
    damage(&path, &image_of(&path));
    let canonical = rebuilt(&path);
    let engine = Engine::open(&path).unwrap();
    match engine.opened_from() {
        Err(rejected) if expected(rejected) => {}
        other => panic!("the damage was not detected as expected: {other:?}"),
    }
    assert_eq!(engine.snapshot().canonical(), canonical);
    drop(engine);
    // The shutdown wrote a good image again.
    let engine = Engine::open(&path).unwrap();
    assert!(engine.opened_from().is_ok());
}

fn rewrite(image: &Path, change: impl Fn(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(image).unwrap();
    change(&mut bytes);
    std::fs::write(image, bytes).unwrap();
}

#[test]
fn a_truncated_image_is_ignored() {
    damaged_image_is_ignored(
        |_, image| rewrite(image, |bytes| bytes.truncate(bytes.len() - 100)),
        |r| matches!(r, ImageRejected::Truncated { .. }),
    );
    damaged_image_is_ignored(
        |_, image| rewrite(image, |bytes| bytes.truncate(20)),
        |r| matches!(r, ImageRejected::NotAnImage),
    );
}

#[test]
fn a_flipped_bit_is_ignored() {
    damaged_image_is_ignored(
        |_, image| {
            rewrite(image, |bytes| {
                let at = bytes.len() / 2;
                bytes[at] ^= 0x10;
            })
        },
        |r| *r == ImageRejected::Checksum,
    );
}

#[test]
fn another_format_version_is_ignored() {
    damaged_image_is_ignored(
        |_, image| {
            rewrite(image, |bytes| {
                bytes[8..12].copy_from_slice(&99u32.to_le_bytes())
            })
        },
        |r| *r == ImageRejected::Version { found: 99 },
    );
    damaged_image_is_ignored(
        |_, image| rewrite(image, |bytes| bytes[0] = b'X'),
        |r| *r == ImageRejected::NotAnImage,
    );
}

#[test]
fn an_image_from_the_future_is_ignored() {
    // The store is put back to an earlier copy; the image is of a later revision.
    damaged_image_is_ignored(
        |store, _| {
            let earlier = store.with_extension("earlier");
            std::fs::copy(store, &earlier).unwrap();
            {
                let engine = Engine::open(store).unwrap();
                create_user(&engine, serde_json::json!({"username": "late"}));
            }
            std::fs::copy(&earlier, store).unwrap();
        },
        |r| matches!(r, ImageRejected::Future { .. }),
    );
}

#[test]
fn another_stores_image_is_ignored() {
    damaged_image_is_ignored(
        |_, image| {
            let other = tempfile::tempdir().unwrap();
            let other_store = store_with_image(other.path());
            std::fs::copy(image_of(&other_store), image).unwrap();
        },
        |r| *r == ImageRejected::Foreign,
    );
}

/// A crash while an image is written leaves the temporary file, never a half image:
/// the open uses the previous image, and the next image replaces the leftover.
#[test]
fn a_half_written_temporary_image_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = store_with_image(dir.path());
    let mut temporary = image_of(&path).into_os_string();
    temporary.push(".tmp");
    let image = std::fs::read(image_of(&path)).unwrap();
    std::fs::write(&temporary, &image[..image.len() / 3]).unwrap();
    let expected = rebuilt(&path);
    let engine = Engine::open(&path).unwrap();
    assert!(engine.opened_from().is_ok(), "{:?}", engine.opened_from());
    assert_eq!(engine.snapshot().canonical(), expected);
    engine
        .write(
            &Actor::system("test"),
            vec![Op::Create(
                Spec::from_json(EntityKind::User, serde_json::json!({"username": "after"}))
                    .unwrap(),
            )],
        )
        .unwrap();
    let revision = engine.snapshot().revision();
    drop(engine);
    assert!(
        !std::path::Path::new(&temporary).exists(),
        "the rename consumed it"
    );
    let engine = Engine::open(&path).unwrap();
    assert_eq!(engine.opened_from(), &Ok(revision));
}

/// A group's memberships are kept as compact records in the snapshot and its image
/// (the source as a code, an LDAP source's name among the symbols, the end behind a
/// flag): every source, with and without an end, reads back exactly, in order,
/// from the image and from a rebuild.
#[test]
fn memberships_of_every_source_read_back_from_the_image_and_a_rebuild() {
    use crate::writes::{create, user, write};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let members = json!([
        {"user": "u0", "source": "ldap:corp", "expires_at": "2031-01-01T00:00:00Z"},
        {"user": "u1", "source": "scim"},
        {"user": "u2", "source": "import", "expires_at": "1970-01-01T00:00:00Z"},
        {"user": "u3"},
        {"user": "u4", "source": "ldap:ssh"},
        {"user": "u5", "source": "ldap:corp"},
    ]);
    let written = {
        let engine = Engine::open(&path).unwrap();
        let mut ops: Vec<Op> = (0..6).map(|i| user(&format!("u{i}"))).collect();
        ops.push(create(
            EntityKind::Group,
            json!({"name": "g", "source": "ldap:corp", "members": members}),
        ));
        // A protocol named like an LDAP source: symbols are shared, codes are not.
        ops.push(create(
            EntityKind::Asset,
            json!({"name": "a", "protocols": ["ssh/22"], "accounts": [{"username": "corp"}]}),
        ));
        write(&engine, ops).unwrap();
        engine
            .snapshot()
            .entity_json(EntityKind::Group, "g")
            .unwrap()
    };
    let listed = written["members"].as_array().unwrap();
    assert_eq!(listed.len(), 6);
    let usernames: Vec<&str> = ["u0", "u1", "u2", "u3", "u4", "u5"].to_vec();
    for ((member, expected), username) in listed
        .iter()
        .zip(members.as_array().unwrap())
        .zip(&usernames)
    {
        let source = expected
            .get("source")
            .and_then(|s| s.as_str())
            .unwrap_or("ldap:corp");
        assert_eq!(member["source"], source, "{username}");
        assert_eq!(
            member["expires_at"],
            expected
                .get("expires_at")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
            "{username}"
        );
    }
    let engine = Engine::open(&path).unwrap();
    assert!(engine.opened_from().is_ok(), "{:?}", engine.opened_from());
    let from_image = engine.snapshot();
    from_image.check_invariants().unwrap();
    assert_eq!(
        from_image.entity_json(EntityKind::Group, "g").unwrap(),
        written
    );
    drop(from_image);
    drop(engine);
    let expected = rebuilt(&path);
    assert_eq!(
        Engine::open(&path).unwrap().snapshot().canonical(),
        expected
    );
}
