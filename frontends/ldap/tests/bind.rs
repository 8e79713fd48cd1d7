//! Sign-in pass-through: users synced from slapd sign in with their directory
//! password, through the engine's sign-in and the LDAP password backend.

use std::sync::Arc;

use portcullis_engine::Time;
use portcullis_ldap::LdapPasswordBackend;
use portcullis_ldap::testing::{person, person_dn};
use portcullis_signin::{Auth, AuthSettings, LoginOutcome, LoginRequest};

use crate::support::World;

fn with_password(ldif: &str, password: &str) -> String {
    format!("{}\nuserPassword: {password}\n\n", ldif.trim_end())
}

fn login(auth: &Auth, login: &str, password: &str) -> LoginOutcome {
    auth.login(
        &LoginRequest {
            login: login.to_owned(),
            password: password.to_owned(),
            code: None,
            method: None,
        },
        Time::now(),
    )
    .expect("a login answers")
}

fn signed_in(outcome: &LoginOutcome) -> bool {
    matches!(outcome, LoginOutcome::Ok { .. })
}

#[test]
fn synced_users_sign_in_with_their_directory_password() {
    let world = World::new();
    world.slapd.add(&with_password(
        &person("alice", "Alice Liddell", Some("alice@example.org")),
        "wonderland-42",
    ));
    world.slapd.add(&with_password(
        &person("bob", "Bob Builder", None),
        "can-we-fix-it",
    ));
    let source = world.source("");
    world.run(&source);
    let auth = Auth::new(world.engine.clone(), AuthSettings::default())
        .unwrap()
        .with_backend(Box::new(LdapPasswordBackend::new(source.clone())));
    let auth = Arc::new(auth);

    let first = login(&auth, "alice", "wonderland-42");
    assert!(signed_in(&first), "{first:?}");
    assert!(
        signed_in(&login(&auth, "alice@example.org", "wonderland-42")),
        "by email"
    );
    assert!(
        !signed_in(&login(&auth, "alice", "wonderland-43")),
        "a wrong password"
    );
    assert!(
        !signed_in(&login(&auth, "alice", "can-we-fix-it")),
        "another user's password"
    );
    assert!(signed_in(&login(&auth, "bob", "can-we-fix-it")));
    let alice = world.user("alice").unwrap();
    assert!(alice.last_login.is_some(), "the login is recorded");
    assert!(
        !alice.has_password,
        "no password is stored for a directory user"
    );

    // A password changed in the directory takes effect at once, without a sync.
    world.slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: userPassword\nuserPassword: through-the-looking-glass\n\n",
        person_dn("alice")
    ));
    assert!(!signed_in(&login(&auth, "alice", "wonderland-42")));
    assert!(signed_in(&login(
        &auth,
        "alice",
        "through-the-looking-glass"
    )));

    // An entry that replaced the synced one (same uid, another entryUUID) is not bound
    // as: the engine user still stands for the entry it was synced from.
    world.slapd.delete(&person_dn("bob"));
    world.slapd.add(&with_password(
        &person("bob", "Another Bob", None),
        "impostor-1",
    ));
    assert!(!signed_in(&login(&auth, "bob", "impostor-1")));
}

#[test]
fn an_unreachable_directory_denies_without_panicking() {
    let mut world = World::new();
    world.slapd.add(&with_password(
        &person("carol", "Carol", None),
        "pw-carol-1",
    ));
    let source = world.source("");
    world.run(&source);
    let auth = Auth::new(world.engine.clone(), AuthSettings::default())
        .unwrap()
        .with_backend(Box::new(LdapPasswordBackend::new(source)));
    world.slapd.stop();
    let outcome = login(&auth, "carol", "pw-carol-1");
    assert!(
        matches!(outcome, LoginOutcome::Denied { .. }),
        "{outcome:?}"
    );
}
