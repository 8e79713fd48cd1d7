//! Helpers: an engine on a redb file, a source from TOML, one run.

use std::sync::Arc;

use portcullis_engine::{Engine, EntityKind, Group, User};
use portcullis_ldap::testing::Slapd;
use portcullis_ldap::{RunOptions, RunReport, Source, SyncError};

pub struct World {
    pub slapd: Slapd,
    pub engine: Arc<Engine>,
    pub data: tempfile::TempDir,
}

impl World {
    pub fn new() -> World {
        let slapd = Slapd::start();
        let data = tempfile::tempdir().unwrap();
        let engine = Arc::new(Engine::open(data.path().join("portcullis.redb")).unwrap());
        World {
            slapd,
            engine,
            data,
        }
    }

    /// The source `corp` with these extra lines in its table.
    pub fn source(&self, extra: &str) -> Source {
        source_from(&portcullis_ldap::testing::source_toml(
            &self.slapd,
            "corp",
            extra,
        ))
    }

    pub fn sync(&self, source: &Source, options: RunOptions) -> Result<RunReport, SyncError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(portcullis_ldap::run(
            &self.engine,
            source,
            &self.data.path().join("ldap"),
            &options,
        ))
    }

    pub fn run(&self, source: &Source) -> RunReport {
        self.sync(source, RunOptions::default())
            .unwrap_or_else(|error| panic!("sync failed: {error}"))
    }

    pub fn user(&self, username: &str) -> Option<User> {
        self.engine
            .snapshot()
            .estate()
            .users
            .into_iter()
            .find(|u| u.username == username)
    }

    pub fn group(&self, name: &str) -> Option<Group> {
        self.engine
            .snapshot()
            .estate()
            .groups
            .into_iter()
            .find(|g| g.name == name)
    }

    /// The usernames of a group's direct members.
    pub fn members(&self, group: &str) -> Vec<String> {
        let estate = self.engine.snapshot().estate();
        let group = estate
            .groups
            .iter()
            .find(|g| g.name == group)
            .unwrap_or_else(|| panic!("no group `{group}`"));
        let mut names: Vec<String> = group
            .members
            .iter()
            .map(|m| {
                estate
                    .users
                    .iter()
                    .find(|u| u.id == m.user)
                    .unwrap()
                    .username
                    .clone()
            })
            .collect();
        names.sort();
        names
    }

    pub fn subgroups(&self, group: &str) -> Vec<String> {
        let estate = self.engine.snapshot().estate();
        let group = estate.groups.iter().find(|g| g.name == group).unwrap();
        let mut names: Vec<String> = group
            .subgroups
            .iter()
            .map(|m| {
                estate
                    .groups
                    .iter()
                    .find(|g| g.id == m.group)
                    .unwrap()
                    .name
                    .clone()
            })
            .collect();
        names.sort();
        names
    }

    pub fn revision(&self) -> u64 {
        self.engine.snapshot().revision()
    }

    pub fn count(&self, kind: EntityKind) -> usize {
        let estate = self.engine.snapshot().estate();
        match kind {
            EntityKind::User => estate.users.len(),
            EntityKind::Group => estate.groups.len(),
            _ => unreachable!("only users and groups are counted"),
        }
    }
}

pub fn source_from(toml: &str) -> Source {
    let sources = portcullis_ldap::sources_from_toml(toml).unwrap();
    let (name, config) = sources.iter().next().unwrap();
    Source::resolve(name, config).unwrap()
}
