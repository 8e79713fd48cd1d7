//! Sync runs against a real slapd: full and incremental runs, renames, nesting, the
//! membership attribute variants, paging, removal policies, other sources' entities,
//! clashes, dry runs and failures.

use portcullis_engine::Actor;
use portcullis_engine::{
    AccountSelector, AccountSpec, Actions, AssetSpec, EntityKind, Evaluator, GroupSpec, MemberSpec,
    Op, Protocol, ProtocolFilter, Query, RuleSpec, Source as EngineSource, Spec, Time, UserSpec,
};
use portcullis_ldap::testing::{
    READER_PASSWORD, SIZE_LIMIT, group_dn, group_of_names, group_of_unique_names, person,
    person_dn, posix_group,
};
use portcullis_ldap::{Action, Mode, RunOptions, SyncError};

use crate::support::World;

fn corp() -> EngineSource {
    EngineSource::Ldap("corp".into())
}

/// alice, bob, carol, dave; `ops` (groupOfNames: alice and the group `dba`), `dba`
/// (bob), `devs` (posixGroup: carol, dave), `auditors` (groupOfUniqueNames: dave).
fn small_estate(world: &World) {
    let mut ldif = String::new();
    ldif.push_str(&person("alice", "Alice Liddell", Some("alice@example.org")));
    ldif.push_str(&person("bob", "Bob Builder", Some("bob@example.org")));
    ldif.push_str(&person("carol", "Carol Danvers", None));
    ldif.push_str(&person("dave", "Dave Lister", None));
    ldif.push_str(&group_of_names("dba", &[person_dn("bob")]));
    ldif.push_str(&group_of_names(
        "ops",
        &[person_dn("alice"), group_dn("dba")],
    ));
    ldif.push_str(&posix_group("devs", 5000, &["carol", "dave"]));
    ldif.push_str(&group_of_unique_names(
        "auditors",
        &[format!("{}#'0101'B", person_dn("dave"))],
    ));
    world.slapd.add(&ldif);
}

/// An asset and a rule granting `ops` ssh connect on it.
fn grant_ops(world: &World) {
    let mut asset = AssetSpec::new("web-01");
    asset.protocols = vec![Protocol::new("ssh", 22).unwrap()];
    asset.accounts = vec![AccountSpec::new("root")];
    let mut rule = RuleSpec::new("ops-web");
    rule.groups = vec!["ops".to_owned()];
    rule.assets = vec!["web-01".to_owned()];
    rule.accounts = vec!["@ALL".parse::<AccountSelector>().unwrap()];
    rule.protocols = ProtocolFilter::All;
    rule.actions = Actions::CONNECT;
    world
        .engine
        .write(
            &Actor::system("test"),
            vec![Op::Create(Spec::Asset(asset)), Op::Create(Spec::Rule(rule))],
        )
        .unwrap();
}

fn may_connect(world: &World, user: &str) -> bool {
    let snapshot = world.engine.snapshot();
    snapshot
        .check(&Query {
            user,
            asset: "web-01",
            account: "root",
            protocol: "ssh",
            action: Actions::CONNECT,
            at: Time::now(),
        })
        .map(|decision| decision.allowed)
        .unwrap_or(false)
}

#[test]
fn a_first_full_sync_mirrors_users_groups_nesting_and_every_membership_variant() {
    let world = World::new();
    small_estate(&world);
    let source = world.source("");
    let report = world.run(&source);
    assert_eq!(report.mode, Mode::Full);
    assert_eq!(report.counts.users_added, 4);
    assert_eq!(report.counts.groups_added, 4);
    assert!(report.clashes.is_empty(), "{:?}", report.clashes);

    let alice = world.user("alice").expect("alice synced");
    assert_eq!(alice.source, corp());
    assert_eq!(alice.name, "Alice Liddell");
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert!(alice.active);
    // The stable id is the directory's entryUUID, as ldapsearch reads it.
    assert_eq!(
        alice.external_id.as_deref(),
        Some(world.slapd.entry_uuid(&person_dn("alice")).as_str())
    );
    assert_eq!(world.members("ops"), ["alice"], "{:?}", report.warnings);
    assert_eq!(world.subgroups("ops"), ["dba"]);
    assert_eq!(world.members("dba"), ["bob"]);
    assert_eq!(world.members("devs"), ["carol", "dave"]);
    assert_eq!(world.members("auditors"), ["dave"]);
    let ops = world.group("ops").unwrap();
    assert_eq!(ops.source, corp());
    assert!(ops.members.iter().all(|m| m.source == corp()));
    assert!(ops.subgroups.iter().all(|m| m.source == corp()));

    // A second run with nothing changed in the directory changes nothing.
    let revision = world.revision();
    let again = world.run(&source);
    assert_eq!(again.mode, Mode::Incremental);
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.revision, None);
    assert_eq!(world.revision(), revision);
}

#[test]
fn directory_membership_drives_access_decisions() {
    let world = World::new();
    small_estate(&world);
    let source = world.source("");
    world.run(&source);
    grant_ops(&world);
    // bob reaches web-01 through dba, nested in ops; carol is in neither.
    assert!(may_connect(&world, "bob"));
    assert!(may_connect(&world, "alice"));
    assert!(!may_connect(&world, "carol"));

    // bob leaves dba and carol joins ops, in the directory.
    world.slapd.modify(&format!(
        "dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n-\nadd: member\nmember: {}\n\n\
         dn: {}\nchangetype: modify\nadd: member\nmember: {}\n\n",
        group_dn("dba"),
        person_dn("bob"),
        person_dn("alice"),
        group_dn("ops"),
        person_dn("carol"),
    ));
    let report = world.run(&source);
    assert_eq!(report.mode, Mode::Incremental);
    assert!(!may_connect(&world, "bob"));
    assert!(may_connect(&world, "carol"));
    assert_eq!(world.members("dba"), ["alice"]);
}

#[test]
fn an_incremental_run_follows_adds_modifies_deletes_and_renames() {
    let world = World::new();
    small_estate(&world);
    let source = world.source("");
    world.run(&source);
    let bob_before = world.user("bob").unwrap();
    let dba_before = world.group("dba").unwrap();

    world
        .slapd
        .add(&person("erin", "Erin Brockovich", Some("erin@example.org")));
    world.slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: mail\nmail: alice@corp.example.org\n-\nreplace: cn\ncn: Alice Pleasance Liddell\n\n\
         dn: {}\nchangetype: delete\n\n\
         dn: {}\nchangetype: modrdn\nnewrdn: uid=robert\ndeleteoldrdn: 1\n\n\
         dn: {}\nchangetype: modrdn\nnewrdn: cn=dbas\ndeleteoldrdn: 1\n\n\
         dn: {}\nchangetype: modify\nadd: member\nmember: {}\n\n",
        person_dn("alice"),
        person_dn("carol"),
        person_dn("bob"),
        group_dn("dba"),
        group_dn("ops"),
        person_dn("erin"),
    ));
    let report = world.run(&source);
    assert_eq!(report.mode, Mode::Incremental);

    let alice = world.user("alice").unwrap();
    assert_eq!(alice.email.as_deref(), Some("alice@corp.example.org"));
    assert_eq!(alice.name, "Alice Pleasance Liddell");
    // Same entryUUID, new uid: the same engine user, renamed.
    assert!(world.user("bob").is_none());
    let robert = world.user("robert").expect("bob renamed to robert");
    assert_eq!(robert.id, bob_before.id);
    let dbas = world.group("dbas").expect("dba renamed to dbas");
    assert_eq!(dbas.id, dba_before.id);
    assert_eq!(world.members("dbas"), ["robert"]);
    assert_eq!(world.subgroups("ops"), ["dbas"]);
    // carol is gone from the directory: deactivated (the default), out of devs.
    let carol = world.user("carol").unwrap();
    assert!(!carol.active);
    assert_eq!(world.members("devs"), ["dave"]);
    assert_eq!(world.members("ops"), ["alice", "erin"]);
    let deactivated: Vec<&str> = report
        .changes
        .iter()
        .filter(|c| c.action == Action::Deactivated)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(deactivated, ["carol"]);
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.action == Action::Added && c.name == "erin")
    );

    // carol comes back under the same uid (a new entry, a new entryUUID): the same
    // engine user takes the new entry and is active again.
    world.slapd.add(&person("carol", "Carol Danvers", None));
    world.run(&source);
    let back = world.user("carol").unwrap();
    assert_eq!(back.id, carol.id);
    assert!(back.active);
    assert_eq!(
        back.external_id.as_deref(),
        Some(world.slapd.entry_uuid(&person_dn("carol")).as_str())
    );
}

#[test]
fn vanished_users_are_deleted_when_configured() {
    let world = World::new();
    small_estate(&world);
    let source = world.source("removed_users = \"delete\"\nremoved_groups = \"delete\"");
    world.run(&source);
    world.slapd.modify(&format!(
        "dn: {}\nchangetype: delete\n\ndn: {}\nchangetype: delete\n\n",
        person_dn("carol"),
        group_dn("auditors"),
    ));
    let report = world.run(&source);
    assert!(world.user("carol").is_none());
    assert!(world.group("auditors").is_none());
    assert_eq!(report.counts.users_removed, 1);
    assert_eq!(report.counts.groups_removed, 1);
    assert_eq!(world.members("devs"), ["dave"]);
}

#[test]
fn vanished_groups_are_emptied_by_default_and_keep_their_rules() {
    let world = World::new();
    small_estate(&world);
    let source = world.source("");
    world.run(&source);
    grant_ops(&world);
    world
        .slapd
        .modify(&format!("dn: {}\nchangetype: delete\n\n", group_dn("ops")));
    world.run(&source);
    let ops = world.group("ops").expect("ops kept");
    assert!(ops.members.is_empty() && ops.subgroups.is_empty());
    assert!(!may_connect(&world, "alice"));
    assert!(!may_connect(&world, "bob"));
}

#[test]
fn entities_and_memberships_of_other_sources_are_never_touched() {
    let world = World::new();
    small_estate(&world);
    // Before any sync: a local user holding a directory username, a SCIM user, a
    // local group.
    let mut local_alice = UserSpec::new("alice");
    local_alice.email = Some("alice@local.example".to_owned());
    let mut scim_zed = UserSpec::new("zed");
    scim_zed.source = EngineSource::Scim;
    let mut local_group = GroupSpec::new("local-team");
    local_group.members = vec![MemberSpec::Name("zed".to_owned())];
    world
        .engine
        .write(
            &Actor::system("test"),
            vec![
                Op::Create(Spec::User(local_alice)),
                Op::Create(Spec::User(scim_zed)),
                Op::Create(Spec::Group(local_group)),
            ],
        )
        .unwrap();
    let local_before = world.user("alice").unwrap();

    let source = world.source("");
    let report = world.run(&source);
    // The clash is reported, and the local user left as it was.
    assert_eq!(report.counts.clashes, 1);
    let clash = &report.clashes[0];
    assert_eq!(
        (
            clash.kind,
            clash.field,
            clash.value.as_str(),
            clash.held_by.as_str()
        ),
        (EntityKind::User, "username", "alice", "local")
    );
    assert_eq!(world.user("alice").unwrap(), local_before);
    // ops holds only what resolved: the nested dba; alice is not this source's user.
    assert!(world.members("ops").is_empty());

    // An administrator adds the SCIM user to a synced group as a local membership;
    // the sync keeps it. (A member written without a source takes the group's, and
    // would be this source's to remove.)
    world
        .engine
        .write(
            &Actor::system("admin"),
            vec![Op::Modify {
                kind: EntityKind::Group,
                target: "devs".to_owned(),
                edit: Box::new(|spec| {
                    if let Spec::Group(group) = spec {
                        group.members.push(MemberSpec::Detailed {
                            user: "zed".to_owned(),
                            expires_at: None,
                            source: Some(EngineSource::Local),
                        });
                    }
                    Ok(())
                }),
            }],
        )
        .unwrap();
    world.slapd.modify(&format!(
        "dn: {}\nchangetype: modify\ndelete: memberUid\nmemberUid: carol\n\n",
        group_dn("devs")
    ));
    world.run(&source);
    assert_eq!(world.members("devs"), ["dave", "zed"]);
    let devs = world.group("devs").unwrap();
    let zed = world.user("zed").unwrap();
    let zed_membership = devs.members.iter().find(|m| m.user == zed.id).unwrap();
    assert_eq!(zed_membership.source, EngineSource::Local);
    // Untouched: the SCIM user, the local group.
    assert_eq!(zed.source, EngineSource::Scim);
    assert!(zed.active);
    assert_eq!(world.members("local-team"), ["zed"]);
    assert_eq!(
        world.group("local-team").unwrap().source,
        EngineSource::Local
    );
}

#[test]
fn a_dry_run_reports_the_diff_and_writes_nothing() {
    let world = World::new();
    small_estate(&world);
    let source = world.source("");
    let revision = world.revision();
    let report = world
        .sync(
            &source,
            RunOptions {
                dry_run: true,
                ..RunOptions::default()
            },
        )
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(report.revision, None);
    assert_eq!(report.counts.users_added, 4);
    assert_eq!(report.changes.len(), 8);
    assert_eq!(world.revision(), revision);
    assert!(world.user("alice").is_none());
    // No state saved either: the next real run is full.
    assert!(!world.data.path().join("ldap").join("corp.json").exists());
    assert_eq!(world.run(&source).mode, Mode::Full);
}

#[test]
fn paged_results_read_more_entries_than_the_server_size_limit() {
    let world = World::new();
    let n_users = 5_000;
    let mut ldif = String::with_capacity(n_users * 120);
    for i in 0..n_users {
        ldif.push_str(&person(&format!("user{i:05}"), &format!("User {i}"), None));
    }
    let members: Vec<String> = (0..1200)
        .map(|i| person_dn(&format!("user{i:05}")))
        .collect();
    ldif.push_str(&group_of_names("big", &members));
    world.slapd.add(&ldif);
    assert!(n_users > SIZE_LIMIT);

    // Without paging the server refuses the reader past its size limit...
    let unpaged = std::process::Command::new("ldapsearch")
        .args([
            "-x",
            "-H",
            &world.slapd.url(),
            "-D",
            portcullis_ldap::testing::READER_DN,
        ])
        .args([
            "-w",
            READER_PASSWORD,
            "-b",
            portcullis_ldap::testing::PEOPLE,
            "(uid=*)",
            "1.1",
        ])
        .output()
        .unwrap();
    assert_eq!(
        unpaged.status.code(),
        Some(4),
        "ldapsearch: size limit exceeded"
    );
    // ...so only pages of 500 get every entry.
    let source = world.source("page_size = 500");
    let report = world.run(&source);
    assert_eq!(report.mode, Mode::Full);
    assert_eq!(report.counts.directory_users, n_users);
    assert_eq!(report.counts.users_added, n_users);
    assert_eq!(world.count(EntityKind::User), n_users);
    assert_eq!(world.members("big").len(), 1200);
}

#[test]
fn polling_by_modify_timestamp_finds_changes_and_deletions() {
    let world = World::new();
    small_estate(&world);
    let source = world.source("incremental = \"modify_timestamp\"");
    assert_eq!(world.run(&source).mode, Mode::Full);
    world.slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: cn\ncn: Dave Lister Jr\n\n\
         dn: {}\nchangetype: delete\n\n",
        person_dn("dave"),
        person_dn("carol"),
    ));
    let report = world.run(&source);
    assert_eq!(report.mode, Mode::Incremental);
    assert_eq!(world.user("dave").unwrap().name, "Dave Lister Jr");
    assert!(!world.user("carol").unwrap().active);
    assert_eq!(world.members("devs"), ["dave"]);
}

#[test]
fn a_wrong_password_fails_the_run_and_changes_nothing() {
    let world = World::new();
    small_estate(&world);
    let wrong = world.slapd.dir().join("wrong-password");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let toml = portcullis_ldap::testing::source_toml(&world.slapd, "corp", "").replace(
        &world.slapd.password_file().display().to_string(),
        &wrong.display().to_string(),
    );
    let source = crate::support::source_from(&toml);
    let revision = world.revision();
    let error = world.sync(&source, RunOptions::default()).unwrap_err();
    assert!(matches!(error, SyncError::Bind { .. }), "{error}");
    assert!(!error.is_config());
    let message = error.to_string();
    assert!(message.contains("invalid credentials"), "{message}");
    assert!(!message.contains("not-the-password"));
    assert_eq!(world.revision(), revision);
}

#[test]
fn a_stopped_server_fails_the_run_and_changes_nothing() {
    let mut world = World::new();
    small_estate(&world);
    let source = world.source("");
    world.run(&source);
    let revision = world.revision();
    world.slapd.modify(&format!(
        "dn: {}\nchangetype: delete\n\n",
        person_dn("alice")
    ));
    world.slapd.stop();
    let error = world.sync(&source, RunOptions::default()).unwrap_err();
    assert!(matches!(error, SyncError::Connect { .. }), "{error}");
    assert!(!error.to_string().contains(READER_PASSWORD));
    assert_eq!(world.revision(), revision);
    assert!(world.user("alice").unwrap().active);
}

#[test]
fn a_base_the_server_does_not_hold_fails_the_run_clearly() {
    let world = World::new();
    small_estate(&world);
    let toml = portcullis_ldap::testing::source_toml(&world.slapd, "corp", "").replace(
        "base = \"ou=people,dc=example,dc=org\"",
        "base = \"ou=nowhere,dc=example,dc=org\"",
    );
    let source = crate::support::source_from(&toml);
    let error = world.sync(&source, RunOptions::default()).unwrap_err();
    assert!(matches!(error, SyncError::Directory { .. }), "{error}");
    assert!(error.to_string().contains("no such object"), "{error}");
    assert_eq!(world.count(EntityKind::User), 0);
}

#[test]
fn a_server_that_never_answers_times_out_and_changes_nothing() {
    let world = World::new();
    // A socket that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let toml = portcullis_ldap::testing::source_toml(&world.slapd, "corp", "")
        .replace(&world.slapd.url(), &format!("ldap://{address}"))
        .replace("timeout_secs = 10", "timeout_secs = 1");
    let source = crate::support::source_from(&toml);
    let revision = world.revision();
    let error = world.sync(&source, RunOptions::default()).unwrap_err();
    assert!(
        matches!(error, SyncError::Timeout { seconds: 1, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("timed out after 1s"), "{error}");
    assert_eq!(world.revision(), revision);
}

/// A directory name that looks like one another source holds (`alice` beside a local
/// `аlice` with a Cyrillic `а`) is a clash like a case variant: that entry is skipped
/// and reported, the rest syncs, and the engine never sees a look-alike to refuse.
#[test]
fn look_alikes_of_other_sources_names_are_clashes() {
    let world = World::new();
    small_estate(&world);
    world
        .engine
        .write(
            &Actor::system("test"),
            vec![
                Op::Create(Spec::User(UserSpec::new("\u{430}lice"))),
                Op::Create(Spec::Group(GroupSpec::new("db\u{430}"))),
            ],
        )
        .unwrap();
    let report = world.run(&world.source(""));
    let mut clashes: Vec<(EntityKind, &str, &str)> = report
        .clashes
        .iter()
        .map(|c| (c.kind, c.value.as_str(), c.held_by.as_str()))
        .collect();
    clashes.sort();
    assert_eq!(
        clashes,
        [
            (EntityKind::User, "alice", "local"),
            (EntityKind::Group, "dba", "local"),
        ]
    );
    assert!(world.user("alice").is_none());
    assert_eq!(world.user("bob").unwrap().source, corp());
    assert_eq!(
        world.user("\u{430}lice").unwrap().source,
        EngineSource::Local
    );
}
