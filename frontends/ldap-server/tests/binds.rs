//! Binds: users through sign-in, services with tokens, anonymous, and the refusals.

use portcullis_engine::{EntityKind, Op};

use crate::support::{Directory, PASSWORD, group_dn, token_dn, user_dn};

#[test]
fn a_user_binds_with_their_password_and_whoami_names_them() {
    let directory = Directory::start(|_| {});
    let run = directory
        .run(
            "ldapwhoami",
            &["-x", "-D", &user_dn("alice"), "-w", PASSWORD],
        )
        .ok();
    assert_eq!(run.stdout.trim(), format!("dn:{}", user_dn("alice")));
    // Any spelling of the DN names the same user.
    let run = directory
        .run(
            "ldapwhoami",
            &[
                "-x",
                "-D",
                "UID=Alice, OU=People, DC=Example, DC=Org",
                "-w",
                PASSWORD,
            ],
        )
        .ok();
    assert_eq!(run.stdout.trim(), format!("dn:{}", user_dn("alice")));
    // The sign-in reached the operation log: a login_ok event for alice.
    let changes = directory.engine.changes_since(0, 1000).unwrap();
    let events: Vec<String> = changes
        .iter()
        .filter_map(|change| change.after.as_ref())
        .filter_map(|after| {
            after
                .get("event")
                .and_then(|e| e.as_str())
                .map(str::to_owned)
        })
        .collect();
    assert!(
        events.iter().filter(|e| *e == "login_ok").count() >= 2,
        "{events:?}"
    );
}

#[test]
fn wrong_and_unknown_credentials_are_invalid_credentials_after_the_same_work() {
    let directory = Directory::start(|_| {});
    let before = directory.auth.argon2_verifications();
    let wrong = directory.run(
        "ldapwhoami",
        &["-x", "-D", &user_dn("alice"), "-w", "Wrong-Horse-42"],
    );
    assert_eq!(wrong.code, 49, "{wrong:?}");
    let after_wrong = directory.auth.argon2_verifications();
    let unknown = directory.run(
        "ldapwhoami",
        &["-x", "-D", &user_dn("nobody"), "-w", PASSWORD],
    );
    assert_eq!(unknown.code, 49, "{unknown:?}");
    let after_unknown = directory.auth.argon2_verifications();
    // One argon2 verification each: the unknown name costs what a wrong password does.
    assert_eq!(after_wrong - before, 1);
    assert_eq!(after_unknown - after_wrong, 1);
    // The same words for both.
    assert_eq!(
        wrong.stderr.replace("alice", "X"),
        unknown.stderr.replace("nobody", "X")
    );
}

#[test]
fn inactive_forced_mfa_and_locked_users_cannot_bind() {
    let directory = Directory::start(|_| {});
    // dave is inactive: refused even with his right password.
    let dave = directory.run(
        "ldapwhoami",
        &["-x", "-D", &user_dn("dave"), "-w", PASSWORD],
    );
    assert_eq!(dave.code, 49, "{dave:?}");
    // carol's MFA is forced: a password alone is not enough.
    let carol = directory.run(
        "ldapwhoami",
        &["-x", "-D", &user_dn("carol"), "-w", PASSWORD],
    );
    assert_eq!(carol.code, 49, "{carol:?}");
    assert!(carol.stderr.contains("second factor"), "{carol:?}");
    // Five failures lock erin out: then even her right password is refused.
    for _ in 0..5 {
        let run = directory.run(
            "ldapwhoami",
            &["-x", "-D", &user_dn("erin"), "-w", "Nope-Nope-12"],
        );
        assert_eq!(run.code, 49);
    }
    let erin = directory.run(
        "ldapwhoami",
        &["-x", "-D", &user_dn("erin"), "-w", PASSWORD],
    );
    assert_eq!(erin.code, 49, "{erin:?}");
}

#[test]
fn a_token_binds_as_a_service_and_reads_only_with_users_view() {
    let directory = Directory::start(|_| {});
    let reader = directory.token("sssd", &["system-auditor"]);
    let checker = directory.token("bastion", &["checker"]);
    let run = directory
        .run(
            "ldapwhoami",
            &["-x", "-D", &token_dn("sssd"), "-w", &reader],
        )
        .ok();
    assert_eq!(run.stdout.trim(), format!("dn:{}", token_dn("sssd")));
    let run = directory
        .search_as(
            &token_dn("sssd"),
            &reader,
            &["-b", crate::support::BASE, "(uid=bob)", "uid"],
        )
        .ok();
    assert_eq!(run.dns(), vec![user_dn("bob")]);
    // A token under another token's name is refused.
    let run = directory.run(
        "ldapwhoami",
        &["-x", "-D", &token_dn("bastion"), "-w", &reader],
    );
    assert_eq!(run.code, 49);
    // The checker token binds, but its roles lack users.view: 50 on a search.
    directory
        .run(
            "ldapwhoami",
            &["-x", "-D", &token_dn("bastion"), "-w", &checker],
        )
        .ok();
    let run = directory.search_as(
        &token_dn("bastion"),
        &checker,
        &["-b", crate::support::BASE, "(uid=bob)"],
    );
    assert_eq!(run.code, 50, "{run:?}");
    // Revoked: no longer binds.
    directory.write(vec![Op::Delete {
        kind: EntityKind::Token,
        target: "sssd".to_owned(),
    }]);
    let run = directory.run(
        "ldapwhoami",
        &["-x", "-D", &token_dn("sssd"), "-w", &reader],
    );
    assert_eq!(run.code, 49);
}

#[test]
fn anonymous_sees_the_root_dse_and_nothing_else() {
    let directory = Directory::start(|_| {});
    let run = directory
        .run("ldapsearch", &["-x", "-b", "", "-s", "base", "+"])
        .ok();
    assert_eq!(run.values("namingContexts"), vec![crate::support::BASE]);
    assert_eq!(run.values("supportedLDAPVersion"), vec!["3"]);
    assert!(
        run.values("supportedControl")
            .contains(&"1.2.840.113556.1.4.319".to_owned())
    );
    assert!(
        run.values("supportedExtension")
            .contains(&"1.3.6.1.4.1.4203.1.11.3".to_owned())
    );
    let run = directory.run(
        "ldapsearch",
        &["-x", "-b", crate::support::BASE, "(objectClass=*)"],
    );
    assert_eq!(run.code, 50, "{run:?}");
    assert!(run.dns().is_empty());
    let run = directory.run("ldapwhoami", &["-x"]).ok();
    assert_eq!(run.stdout.trim(), "anonymous");
    // A name without a password is an unauthenticated bind: refused (RFC 4513).
    let run = directory.run("ldapwhoami", &["-x", "-D", &user_dn("alice"), "-w", ""]);
    assert_eq!(run.code, 53, "{run:?}");
    // A DN outside people and tokens never binds.
    let run = directory.run(
        "ldapwhoami",
        &["-x", "-D", &group_dn("ops"), "-w", PASSWORD],
    );
    assert_eq!(run.code, 49);
}
