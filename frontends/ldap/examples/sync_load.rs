//! A bounded load run of the LDAP sync against a real slapd: a full sync of 10,000
//! users and 1,000 groups, then an incremental (syncrepl) run after 100 changes.
//!
//! ```sh
//! cargo run -p portcullis-ldap --features testing --example sync_load --release
//! ```
//!
//! Prints the two durations (wall clock of `portcullis_ldap::run`, directory reads,
//! planning and the engine write included). Needs slapd and ldap-utils.

use std::sync::Arc;
use std::time::Instant;

use portcullis_ldap::testing::{Slapd, group_dn, group_of_names, person, person_dn, source_toml};
use portcullis_ldap::{RunOptions, Source};

const N_USERS: usize = 10_000;
const N_GROUPS: usize = 1_000;
const N_CHANGES: usize = 100;

fn main() {
    let slapd = Slapd::start();
    let mut ldif = String::with_capacity(N_USERS * 150);
    for i in 0..N_USERS {
        ldif.push_str(&person(
            &format!("user{i:05}"),
            &format!("User {i}"),
            Some(&format!("user{i:05}@example.org")),
        ));
    }
    // Each group: 20 users; every tenth group also nests the next one, so groups are
    // written last first (a nested group must exist before it is named).
    for g in (0..N_GROUPS).rev() {
        let mut members: Vec<String> = (0..20)
            .map(|k| person_dn(&format!("user{:05}", (g * 10 + k) % N_USERS)))
            .collect();
        if g % 10 == 0 && g + 1 < N_GROUPS {
            members.push(group_dn(&format!("group{:04}", g + 1)));
        }
        ldif.push_str(&group_of_names(&format!("group{g:04}"), &members));
    }
    let loading = Instant::now();
    slapd.add(&ldif);
    eprintln!(
        "loaded {N_USERS} users and {N_GROUPS} groups into slapd in {:?}",
        loading.elapsed()
    );

    let data = tempfile::tempdir().unwrap();
    let engine =
        Arc::new(portcullis_engine::Engine::open(data.path().join("portcullis.redb")).unwrap());
    let toml = source_toml(&slapd, "corp", "page_size = 500");
    let sources = portcullis_ldap::sources_from_toml(&toml).unwrap();
    let source = Source::resolve("corp", &sources["corp"]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state_dir = data.path().join("ldap");
    let run = |label: &str| {
        let started = Instant::now();
        let report = runtime
            .block_on(portcullis_ldap::run(
                &engine,
                &source,
                &state_dir,
                &RunOptions::default(),
            ))
            .unwrap();
        let elapsed = started.elapsed();
        println!(
            "{label}: {:?} mode, {:.3} s; users +{} ~{} -{}, groups +{} ~{}, memberships +{} -{}",
            report.mode,
            elapsed.as_secs_f64(),
            report.counts.users_added,
            report.counts.users_changed,
            report.counts.users_deactivated,
            report.counts.groups_added,
            report.counts.groups_changed,
            report.counts.memberships_added,
            report.counts.memberships_removed,
        );
    };
    run("full sync");

    // 100 changes: 40 modified users, 20 new users, 20 deleted users, 20 group edits.
    let mut changes = String::new();
    for i in 0..40 {
        changes.push_str(&format!(
            "dn: {}\nchangetype: modify\nreplace: cn\ncn: Renamed {i}\n\n",
            person_dn(&format!("user{i:05}"))
        ));
    }
    for i in 0..20 {
        changes.push_str(&format!(
            "dn: uid=new{i:03},ou=people,dc=example,dc=org\nchangetype: add\nobjectClass: inetOrgPerson\nuid: new{i:03}\ncn: New {i}\nsn: New\n\n"
        ));
    }
    for i in 0..20 {
        changes.push_str(&format!(
            "dn: {}\nchangetype: delete\n\n",
            person_dn(&format!("user{:05}", 9_000 + i))
        ));
    }
    for g in 0..20 {
        changes.push_str(&format!(
            "dn: {}\nchangetype: modify\nadd: member\nmember: uid=new{g:03},ou=people,dc=example,dc=org\n\n",
            group_dn(&format!("group{:04}", 500 + g))
        ));
    }
    slapd.modify(&changes);
    assert_eq!(40 + 20 + 20 + 20, N_CHANGES);
    run("incremental after 100 changes");
}
