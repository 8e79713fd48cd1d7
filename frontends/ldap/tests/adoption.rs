//! Adoption by a directory (`[ldap.NAME] adopt`): a sync run against a real slapd
//! takes over the local and imported users and groups its entries name, keeping
//! their ids, rules and local members; a privileged or ambiguous match is a clash
//! with the reason; a dry run shows what would be adopted and writes nothing.

use portcullis_engine::{
    AccountSpec, Actions, Actor, AssetSpec, EntityKind, Evaluator, GroupSpec, MemberSpec, Op,
    Operation, Protocol, ProtocolFilter, Query, RuleSpec, Source as EngineSource, Spec, Time,
    UserSpec,
};
use portcullis_ldap::testing::{group_of_names, person, person_dn};
use portcullis_ldap::{Action, RunOptions};

use crate::support::World;

fn corp() -> EngineSource {
    EngineSource::Ldap("corp".into())
}

fn user(username: &str, email: Option<&str>, source: EngineSource, roles: &[&str]) -> Op {
    let mut spec = UserSpec::new(username);
    spec.email = email.map(str::to_owned);
    spec.source = source;
    if !roles.is_empty() {
        spec.system_roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }
    Op::Create(Spec::User(spec))
}

/// The directory: alice, bob, carol; `ops` (alice), `dba` (bob).
fn directory(world: &World) {
    let mut ldif = String::new();
    ldif.push_str(&person("alice", "Alice Liddell", Some("alice@example.org")));
    ldif.push_str(&person("bob", "Bob Builder", Some("bob@example.org")));
    ldif.push_str(&person("carol", "Carol Danvers", None));
    ldif.push_str(&group_of_names("dba", &[person_dn("bob")]));
    ldif.push_str(&group_of_names("ops", &[person_dn("alice")]));
    world.slapd.add(&ldif);
}

/// What was there before the directory: alice (local), bob (imported), zed (local,
/// not in the directory), carol (local, a system administrator); the local group
/// `ops` with alice and zed; `web-01` and a rule granting `ops` ssh on it, and one
/// granting bob alone rdp.
fn local_estate(world: &World) {
    let mut asset = AssetSpec::new("web-01");
    asset.protocols = vec![
        Protocol::new("ssh", 22).unwrap(),
        Protocol::new("rdp", 3389).unwrap(),
    ];
    asset.accounts = vec![AccountSpec::new("root")];
    let rule = |name: &str, users: &[&str], groups: &[&str], protocol: &str| {
        let mut rule = RuleSpec::new(name);
        rule.users = users.iter().map(|u| (*u).to_owned()).collect();
        rule.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        rule.assets = vec!["web-01".to_owned()];
        rule.accounts = vec!["@ALL".parse().unwrap()];
        rule.protocols = ProtocolFilter::Only(vec![protocol.into()]);
        rule.actions = Actions::CONNECT;
        Op::Create(Spec::Rule(rule))
    };
    world
        .engine
        .write(
            &Actor::system("admin"),
            vec![
                Op::Create(Spec::Asset(asset)),
                user("alice", Some("alice@example.org"), EngineSource::Local, &[]),
                user("bob", None, EngineSource::Import, &[]),
                user("zed", None, EngineSource::Local, &[]),
                user(
                    "carol",
                    None,
                    EngineSource::Local,
                    &["user", "system-admin"],
                ),
                Op::Create(Spec::Group(GroupSpec {
                    members: vec![
                        MemberSpec::Name("alice".to_owned()),
                        MemberSpec::Name("zed".to_owned()),
                    ],
                    ..GroupSpec::new("ops")
                })),
                rule("ops-ssh", &[], &["ops"], "ssh"),
                rule("bob-rdp", &["bob"], &[], "rdp"),
            ],
        )
        .unwrap();
}

/// Every decision for the users of the estate: (user, protocol, allowed).
fn decisions(world: &World) -> Vec<(String, String, bool)> {
    let snapshot = world.engine.snapshot();
    let mut all = Vec::new();
    for user in ["alice", "bob", "zed", "carol"] {
        for protocol in ["ssh", "rdp"] {
            let allowed = snapshot
                .check(&Query {
                    user,
                    asset: "web-01",
                    account: "root",
                    protocol,
                    action: Actions::CONNECT,
                    at: Time::now(),
                })
                .unwrap()
                .allowed;
            all.push((user.to_owned(), protocol.to_owned(), allowed));
        }
    }
    all
}

#[test]
fn a_sync_adopts_local_and_imported_accounts_keeping_ids_rules_and_local_members() {
    let world = World::new();
    directory(&world);
    local_estate(&world);
    let before = decisions(&world);
    assert!(before.contains(&("zed".to_owned(), "ssh".to_owned(), true)));
    assert!(before.contains(&("bob".to_owned(), "rdp".to_owned(), true)));
    let alice = world.user("alice").unwrap();
    let bob = world.user("bob").unwrap();
    let ops = world.group("ops").unwrap();
    let start = world.revision();

    let source = world.source("adopt = [\"local\", \"import\"]");
    let report = world.run(&source);
    assert_eq!(report.counts.users_adopted, 2, "{:?}", report.changes);
    assert_eq!(report.counts.groups_adopted, 1, "{:?}", report.changes);
    // carol is a system administrator: refused, with the reason.
    assert_eq!(report.counts.clashes, 1, "{:?}", report.clashes);
    let clash = &report.clashes[0];
    assert_eq!(
        (clash.kind, clash.value.as_str()),
        (EntityKind::User, "carol")
    );
    let reason = clash.reason.as_deref().unwrap();
    assert!(
        reason.contains("privileged") && reason.contains("system-admin"),
        "{reason}"
    );
    let mut adopted: Vec<(EntityKind, &str, &str)> = report
        .changes
        .iter()
        .filter(|c| c.action == Action::Adopted)
        .map(|c| (c.kind, c.name.as_str(), c.details[0].as_str()))
        .collect();
    adopted.sort();
    assert_eq!(
        adopted,
        [
            (EntityKind::User, "alice", "from `local`"),
            (EntityKind::User, "bob", "from `import`"),
            (EntityKind::Group, "ops", "from `local`"),
        ]
    );

    // Same ids, now the directory's; the names and emails it manages are its own.
    let alice_after = world.user("alice").unwrap();
    assert_eq!(alice_after.id, alice.id);
    assert_eq!(alice_after.source, corp());
    assert_eq!(alice_after.name, "Alice Liddell");
    assert_eq!(world.user("bob").unwrap().id, bob.id);
    assert_eq!(world.user("bob").unwrap().source, corp());
    assert_eq!(world.user("carol").unwrap().source, EngineSource::Local);
    assert_eq!(world.user("zed").unwrap().source, EngineSource::Local);
    let ops_after = world.group("ops").unwrap();
    assert_eq!(ops_after.id, ops.id);
    assert_eq!(ops_after.source, corp());
    // The local members stay, as local memberships (alice's counts for the
    // directory too, so it is not added twice).
    assert_eq!(world.members("ops"), ["alice", "zed"]);
    assert!(
        ops_after
            .members
            .iter()
            .all(|m| m.source == EngineSource::Local)
    );
    assert_eq!(world.group("dba").unwrap().source, corp());
    assert_eq!(decisions(&world), before);

    // The operation log has each adoption, before and after.
    let logged: Vec<(EntityKind, String, String)> = world
        .engine
        .changes_since(start, 1000)
        .unwrap()
        .into_iter()
        .filter(|c| c.operation == Operation::Adopt)
        .map(|c| {
            (
                c.entity,
                c.before.unwrap()["source"].as_str().unwrap().to_owned(),
                c.after.unwrap()["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        logged,
        [
            (EntityKind::User, "local".to_owned(), "ldap:corp".to_owned()),
            (
                EntityKind::User,
                "import".to_owned(),
                "ldap:corp".to_owned()
            ),
            (
                EntityKind::Group,
                "local".to_owned(),
                "ldap:corp".to_owned()
            ),
        ]
    );

    // The next run finds them as its own: nothing to adopt or change.
    let again = world.run(&source);
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.counts.users_adopted, 0);
}

#[test]
fn a_dry_run_shows_adoptions_and_refusals_and_writes_nothing() {
    let world = World::new();
    directory(&world);
    local_estate(&world);
    let revision = world.revision();
    let source = world.source("adopt = [\"local\"]");
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
    assert_eq!(world.revision(), revision);
    assert_eq!(report.counts.users_adopted, 1);
    assert_eq!(report.counts.groups_adopted, 1);
    // bob is imported, which this source may not adopt; carol is privileged.
    let mut refused: Vec<(&str, &str)> = report
        .clashes
        .iter()
        .map(|c| (c.value.as_str(), c.held_by.as_str()))
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        [("bob", "import"), ("carol", "privileged `carol`")]
    );
    assert!(report.clashes.iter().all(|c| c.reason.is_some()));
    assert_eq!(world.user("alice").unwrap().source, EngineSource::Local);

    // Named in adopt_privileged, carol is adopted; her roles stay.
    let named = world.source("adopt = [\"local\"]\nadopt_privileged = [\"carol\"]");
    let report = world.run(&named);
    assert_eq!(report.counts.users_adopted, 2, "{:?}", report.changes);
    let carol = world.user("carol").unwrap();
    assert_eq!(carol.source, corp());
    assert_eq!(carol.system_roles, ["user", "system-admin"]);
}

#[test]
fn an_entry_matching_two_accounts_is_a_clash_and_changes_neither() {
    let world = World::new();
    directory(&world);
    // `alice` by name, and another user by alice's email.
    world
        .engine
        .write(
            &Actor::system("admin"),
            vec![
                user("alice", None, EngineSource::Local, &[]),
                user(
                    "liddell",
                    Some("alice@example.org"),
                    EngineSource::Local,
                    &[],
                ),
            ],
        )
        .unwrap();
    let report = world.run(&world.source("adopt = [\"local\"]"));
    let clash = report
        .clashes
        .iter()
        .find(|c| c.value == "alice")
        .expect("a clash for alice");
    assert!(
        clash
            .reason
            .as_deref()
            .unwrap()
            .contains("matches two users"),
        "{clash:?}"
    );
    assert_eq!(world.user("alice").unwrap().source, EngineSource::Local);
    assert_eq!(world.user("liddell").unwrap().source, EngineSource::Local);
    assert_eq!(report.counts.users_adopted, 0);
}
