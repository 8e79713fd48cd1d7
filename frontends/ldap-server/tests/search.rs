//! Searches with `ldapsearch`: scopes, every kind of filter, in-chain, attribute
//! selection, limits, paging, expiry at the instant, and writes refused.

use std::time::Duration;

use portcullis_engine::{EntityKind, Op};
use serde_json::json;

use crate::support::{BASE, Directory, group_dn, now_plus, sorted, user_dn, user_spec};

/// The DNs a sub-tree search from the base with `filter` returns, sorted.
fn matching(directory: &Directory, filter: &str) -> Vec<String> {
    let run = directory.search(&["-b", BASE, filter, "1.1"]).ok();
    sorted(run.dns())
}

fn dns(names: &[&str]) -> Vec<String> {
    sorted(
        names
            .iter()
            .map(|name| match name.strip_prefix("g:") {
                Some(group) => group_dn(group),
                None => user_dn(name),
            })
            .collect(),
    )
}

#[test]
fn every_scope_returns_its_entries() {
    let directory = Directory::start(|_| {});
    let base = directory
        .search(&["-b", BASE, "-s", "base", "(objectClass=*)", "1.1"])
        .ok();
    assert_eq!(base.dns(), vec![BASE]);
    let one = directory
        .search(&["-b", BASE, "-s", "one", "(objectClass=*)", "1.1"])
        .ok();
    assert_eq!(
        sorted(one.dns()),
        sorted(vec![
            format!("ou=groups,{BASE}"),
            format!("ou=people,{BASE}")
        ])
    );
    let people = format!("ou=people,{BASE}");
    let users = directory
        .search(&["-b", &people, "-s", "one", "(objectClass=*)", "1.1"])
        .ok();
    // dave is inactive: not shown.
    assert_eq!(sorted(users.dns()), dns(&["alice", "bob", "carol", "erin"]));
    let sub = directory
        .search(&["-b", BASE, "-s", "sub", "(objectClass=*)", "1.1"])
        .ok();
    assert_eq!(sub.dns().len(), 1 + 2 + 4 + 3);
    let missing = directory.search(&["-b", &user_dn("dave"), "-s", "base", "(objectClass=*)"]);
    assert_eq!(missing.code, 32, "{missing:?}");
    let outside = directory.search(&["-b", "dc=elsewhere", "(objectClass=*)"]);
    assert_eq!(outside.code, 32, "{outside:?}");
    let bad = directory.search(&["-b", "not a dn", "(objectClass=*)"]);
    assert_eq!(bad.code, 34, "{bad:?}");
}

#[test]
fn a_user_entry_carries_the_posix_and_person_attributes() {
    let directory = Directory::start(|_| {});
    let run = directory
        .search(&["-b", &user_dn("alice"), "-s", "base", "(objectClass=*)"])
        .ok();
    let one = |attribute: &str| -> String {
        let values = run.values(attribute);
        assert_eq!(values.len(), 1, "{attribute}: {run:?}");
        values[0].clone()
    };
    assert_eq!(one("uid"), "alice");
    assert_eq!(one("cn"), "Alice Liddell");
    assert_eq!(one("sn"), "Liddell");
    assert_eq!(one("givenName"), "Alice");
    assert_eq!(one("mail"), "alice@example.org");
    assert_eq!(one("telephoneNumber"), "+1 555-0100");
    assert_eq!(one("homeDirectory"), "/home/alice");
    assert_eq!(one("loginShell"), "/bin/bash");
    let uid: u32 = one("uidNumber").parse().unwrap();
    assert!((65_536..2_147_483_647).contains(&uid));
    assert_eq!(one("gidNumber"), uid.to_string());
    let alice = directory.engine.snapshot().user("alice").unwrap();
    assert_eq!(one("entryUUID"), alice.id.to_string());
    assert_eq!(
        sorted(run.values("memberOf")),
        sorted(vec![group_dn("devs"), group_dn("ops")])
    );
    assert_eq!(
        sorted(run.values("objectClass")),
        sorted(
            [
                "inetOrgPerson",
                "organizationalPerson",
                "person",
                "posixAccount",
                "top"
            ]
            .map(str::to_owned)
            .to_vec()
        )
    );
    // Operational attributes only when asked for.
    assert!(run.values("createTimestamp").is_empty());
    let plus = directory
        .search(&[
            "-b",
            &user_dn("alice"),
            "-s",
            "base",
            "(objectClass=*)",
            "+",
        ])
        .ok();
    assert_eq!(plus.values("createTimestamp").len(), 1);
    assert_eq!(plus.values("modifyTimestamp").len(), 1);
    assert!(plus.values("uid").is_empty());
    // Numbers are the same on the next search, and differ between entities.
    let again = directory
        .search(&["-b", BASE, "(uid=alice)", "uidNumber"])
        .ok();
    assert_eq!(again.values("uidNumber"), vec![uid.to_string()]);
    let all = directory
        .search(&["-b", BASE, "(|(uidNumber=*)(gidNumber=*))", "gidNumber"])
        .ok();
    let mut numbers = all.values("gidNumber");
    let count = numbers.len();
    numbers.sort();
    numbers.dedup();
    assert_eq!(
        numbers.len(),
        count,
        "every user and group has its own number"
    );
}

#[test]
fn a_group_entry_lists_users_and_nested_groups() {
    let directory = Directory::start(|_| {});
    let run = directory
        .search(&["-b", &group_dn("ops"), "-s", "base", "(objectClass=*)"])
        .ok();
    // dave is inactive: neither a member DN nor a memberUid.
    assert_eq!(
        sorted(run.values("member")),
        sorted(vec![user_dn("alice"), group_dn("dba")])
    );
    assert_eq!(run.values("memberUid"), vec!["alice"]);
    assert_eq!(run.values("cn"), vec!["ops"]);
    assert!(sorted(run.values("objectClass")).contains(&"posixGroup".to_owned()));
    let dba = directory
        .search(&[
            "-b",
            &group_dn("dba"),
            "-s",
            "base",
            "(objectClass=*)",
            "memberOf",
        ])
        .ok();
    assert_eq!(dba.values("memberOf"), vec![group_dn("ops")]);
}

#[test]
fn filters_of_every_kind() {
    let directory = Directory::start(|_| {});
    let cases: &[(&str, &[&str])] = &[
        ("(uid=alice)", &["alice"]),
        ("(UID=ALICE)", &["alice"]),
        ("(cn=alice liddell)", &["alice"]),
        ("(mail=*@example.org)", &["alice", "bob"]),
        ("(cn=*o*)", &["bob", "carol", "g:ops"]),
        ("(uid=a*e)", &["alice"]),
        ("(cn=Ali*dd*ll)", &["alice"]),
        ("(telephoneNumber=+15550100)", &["alice"]),
        ("(mail=*)", &["alice", "bob"]),
        (
            "(&(objectClass=posixAccount)(!(mail=*)))",
            &["carol", "erin"],
        ),
        ("(|(uid=bob)(cn=dba))", &["bob", "g:dba"]),
        ("(uid~=BOB)", &["bob"]),
        ("(cn>=e)", &["erin", "g:ops"]),
        (
            "(&(objectClass=groupOfNames)(cn<=dz))",
            &["g:dba", "g:devs"],
        ),
        ("(description=developers)", &["g:devs"]),
        ("(memberUid=alice)", &["g:devs", "g:ops"]),
        (&*format!("(member={})", user_dn("bob")), &["g:dba"]),
        (
            &*format!("(memberOf={})", group_dn("ops")),
            &["alice", "g:dba"],
        ),
        // An unknown attribute is Undefined: neither it nor its negation matches.
        ("(noSuchAttribute=x)", &[]),
        ("(&(uid=bob)(!(noSuchAttribute=x)))", &[]),
        ("(uidNumber=not-a-number)", &[]),
        ("(uid:=bob)", &["bob"]),
    ];
    for (filter, expected) in cases {
        assert_eq!(matching(&directory, filter), dns(expected), "{filter}");
    }
    // Ordering on numbers is numeric, not textual.
    let alice_number: u64 = directory
        .search(&["-b", BASE, "(uid=alice)", "uidNumber"])
        .ok()
        .values("uidNumber")[0]
        .parse()
        .unwrap();
    let at_least = matching(
        &directory,
        &format!("(&(uid=alice)(uidNumber>={alice_number}))"),
    );
    assert_eq!(at_least, dns(&["alice"]));
    let above = matching(
        &directory,
        &format!("(&(uid=alice)(uidNumber>={}))", alice_number + 1),
    );
    assert!(above.is_empty());
}

#[test]
fn in_chain_answers_transitive_membership() {
    let directory = Directory::start(|_| {});
    // bob is in dba, which is in ops: ops holds him through the chain, not directly.
    let direct = matching(&directory, &format!("(memberOf={})", group_dn("ops")));
    assert_eq!(direct, dns(&["alice", "g:dba"]));
    let chained = matching(
        &directory,
        &format!("(memberOf:1.2.840.113556.1.4.1941:={})", group_dn("ops")),
    );
    assert_eq!(chained, dns(&["alice", "bob", "g:dba"]));
    // Every group bob sits in, through any chain.
    let groups = matching(
        &directory,
        &format!("(member:1.2.840.113556.1.4.1941:={})", user_dn("bob")),
    );
    assert_eq!(groups, dns(&["g:dba", "g:ops"]));
    let none = matching(
        &directory,
        &format!("(memberOf:1.2.840.113556.1.4.1941:={})", group_dn("nosuch")),
    );
    assert!(none.is_empty());
}

#[test]
fn attribute_selection_and_types_only() {
    let directory = Directory::start(|_| {});
    let run = directory
        .search(&["-b", BASE, "(uid=bob)", "uid", "MAIL"])
        .ok();
    assert_eq!(run.values("uid"), vec!["bob"]);
    assert_eq!(run.values("mail"), vec!["bob@example.org"]);
    assert!(run.values("cn").is_empty());
    let none = directory.search(&["-b", BASE, "(uid=bob)", "1.1"]).ok();
    assert_eq!(none.stdout.trim(), format!("dn: {}", user_dn("bob")));
    let both = directory.search(&["-b", BASE, "(uid=bob)", "*", "+"]).ok();
    assert_eq!(both.values("uid"), vec!["bob"]);
    assert_eq!(both.values("entryDN"), vec![user_dn("bob")]);
    let types = directory
        .search(&["-A", "-b", BASE, "(uid=bob)", "uid"])
        .ok();
    assert!(
        types.stdout.lines().any(|l| l.trim() == "uid:"),
        "{types:?}"
    );
}

#[test]
fn size_limits_and_paging() {
    let directory = Directory::start(|settings| settings.size_limit = 3);
    let people = format!("ou=people,{BASE}");
    // The server's limit (3 entries) on an unpaged search: 4 sizeLimitExceeded.
    let run = directory.search(&["-b", &people, "-s", "one", "(objectClass=*)", "1.1"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.dns().len(), 3);
    // The client's own smaller limit.
    let run = directory.search(&[
        "-z",
        "2",
        "-b",
        &people,
        "-s",
        "one",
        "(objectClass=*)",
        "1.1",
    ]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.dns().len(), 2);
    // Paged by 2: every entry, each once, past the server's size limit.
    let run = directory
        .search(&["-E", "pr=2/noprompt", "-b", BASE, "(objectClass=*)", "1.1"])
        .ok();
    let all = run.dns();
    assert_eq!(all.len(), 10, "{run:?}");
    assert_eq!(sorted(all.clone()).len(), {
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        unique.len()
    });
    // ldapsearch prints a control line per page: ten entries by two are five pages.
    let pages = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("# pagedresults"))
        .count();
    assert!(pages == 0 || pages == 5, "{run:?}");
}

#[test]
fn a_temporary_member_drops_out_when_the_clock_passes_the_expiry() {
    let directory = Directory::start(|_| {});
    directory.write(vec![Op::AddMember {
        group: "devs".to_owned(),
        member: serde_json::from_value(json!({"user":"erin","expires_at": now_plus(2)})).unwrap(),
    }]);
    let members = |directory: &Directory| {
        directory
            .search(&[
                "-b",
                &group_dn("devs"),
                "-s",
                "base",
                "(objectClass=*)",
                "memberUid",
            ])
            .ok()
            .values("memberUid")
    };
    assert_eq!(sorted(members(&directory)), vec!["alice", "erin"]);
    assert_eq!(
        matching(&directory, &format!("(memberOf={})", group_dn("devs"))),
        dns(&["alice", "erin"])
    );
    std::thread::sleep(Duration::from_millis(2500));
    // No write happened: the same snapshot, read at a later instant.
    assert_eq!(members(&directory), vec!["alice"]);
    assert_eq!(
        matching(&directory, &format!("(memberOf={})", group_dn("devs"))),
        dns(&["alice"])
    );
}

#[test]
fn changes_show_at_once_and_users_who_leave_disappear() {
    let directory = Directory::start(|_| {});
    directory.write(vec![user_spec(json!({"username":"frank","name":"Frank"}))]);
    assert_eq!(matching(&directory, "(uid=frank)"), dns(&["frank"]));
    directory.write(vec![Op::Delete {
        kind: EntityKind::User,
        target: "frank".to_owned(),
    }]);
    assert!(matching(&directory, "(uid=frank)").is_empty());
    // A user expiring in two seconds is shown, then not.
    directory.write(vec![user_spec(
        json!({"username":"gina","expires_at": now_plus(2)}),
    )]);
    assert_eq!(matching(&directory, "(uid=gina)"), dns(&["gina"]));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(matching(&directory, "(uid=gina)").is_empty());
}

#[test]
fn writes_are_refused() {
    let directory = Directory::start(|_| {});
    let path = directory.dir.path().join("change.ldif");
    let ldif = format!(
        "dn: {}\nchangetype: modify\nreplace: mail\nmail: evil@example.org\n\n",
        user_dn("bob")
    );
    std::fs::write(&path, ldif).unwrap();
    let run = directory.run(
        "ldapmodify",
        &[
            "-x",
            "-D",
            &user_dn("alice"),
            "-w",
            crate::support::PASSWORD,
            "-f",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 53, "{run:?}");
    let add = format!(
        "dn: {}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: mallory\ncn: m\nsn: m\n\ndn: {}\nchangetype: delete\n\n",
        user_dn("mallory"),
        user_dn("bob")
    );
    std::fs::write(&path, add).unwrap();
    let run = directory.run(
        "ldapmodify",
        &[
            "-x",
            "-D",
            &user_dn("alice"),
            "-w",
            crate::support::PASSWORD,
            "-c",
            "-f",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 53, "{run:?}");
    // Nothing changed.
    let bob = directory.engine.snapshot().user("bob").unwrap();
    assert_eq!(bob.email.as_deref(), Some("bob@example.org"));
    assert!(directory.engine.snapshot().user("mallory").is_none());
}

#[test]
fn numbers_stay_across_writes_and_a_new_user_gets_one_of_its_own() {
    let directory = Directory::start(|_| {});
    let numbers = |directory: &Directory| {
        let run = directory
            .search(&[
                "-b",
                BASE,
                "(|(objectClass=posixAccount)(objectClass=posixGroup))",
                "gidNumber",
            ])
            .ok();
        run.dns()
            .into_iter()
            .zip(run.values("gidNumber"))
            .collect::<Vec<_>>()
    };
    let before = numbers(&directory);
    // Binds (sign-in events), an edit and a new user: new revisions.
    directory.write(vec![user_spec(json!({"username":"hana"}))]);
    directory.write(vec![Op::Modify {
        kind: EntityKind::User,
        target: "bob".to_owned(),
        edit: Box::new(|spec| {
            if let portcullis_engine::Spec::User(user) = spec {
                user.name = "Robert Stone".to_owned();
            }
            Ok(())
        }),
    }]);
    let after = numbers(&directory);
    for entry in &before {
        assert!(after.contains(entry), "{entry:?} kept its number");
    }
    let hana = after.iter().find(|(dn, _)| *dn == user_dn("hana")).unwrap();
    assert_eq!(
        after.iter().filter(|(_, n)| *n == hana.1).count(),
        1,
        "{after:?}"
    );
}
