//! Seeded synthetic estates for the Portcullis benches.
//!
//! [`Synthetic::new`] draws the whole shape of an estate (who is in which group,
//! which asset sits where, what each rule names) as compact numbers, once, from a
//! fixed seed. The specs themselves are made batch by batch when loading
//! ([`Synthetic::batches`], [`Synthetic::ops`]), so a million users never exist as
//! specs all at once.
//!
//! Random numbers come from `rand_chacha::ChaCha8Rng` (through `rand` 0.8): its
//! stream is specified and portable, so the same seed gives the same estate on every
//! machine and with every `rand` release, unlike `StdRng` or `SmallRng`.
//!
//! Besides the random part, every estate holds a few designated entities the benches
//! rely on: the heavy user ([`HEAVY_USER`], who reaches about a tenth of the assets),
//! the mover ([`MOVER_USER`], whose membership of [`WRITE_GROUP`] the write bench
//! toggles) and one large flat group ([`BIG_GROUP`]).
//!
//! This crate is a dev tool: it panics on a refused write instead of returning it.

use portcullis_engine::Actor;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_engine::{
    AccountSelector, AccountSpec, Actions, AssetIdx, AssetSpec, Effect, Engine, EntityKind,
    Evaluator, GroupSpec, Id, MemberSpec, NodeSpec, Op, Protocol, ProtocolFilter, Query, RuleSpec,
    Snapshot, Spec, SubgroupSpec, Time, UserIdx, UserSpec,
};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The allocator the `portcullis` binary runs on, for a bench binary to declare with
/// [`server_allocator!`]: figures measured with another allocator would not be the
/// server's. mimalloc maps its arenas on transparent huge pages where the kernel
/// allows it (`madvise` mode), which at the large estate is the difference between
/// a TLB miss on every dependent read of a check and almost none (docs/snapshot.md).
pub use mimalloc::MiMalloc as ServerAllocator;

/// Declares [`ServerAllocator`] as the global allocator of the bench binary.
#[macro_export]
macro_rules! server_allocator {
    () => {
        #[global_allocator]
        static GLOBAL: $crate::ServerAllocator = $crate::ServerAllocator;
    };
}

/// The seed of every estate unless a custom shape says otherwise.
pub const SEED: u64 = 0x5EED_0FC0_FFEE;

/// Bump when the generator changes what it produces, so cached stores are rebuilt.
pub const GENERATOR_VERSION: u32 = 2;

/// The instant every bench query is asked at: 2026-06-01T00:00:00Z. Expiries and
/// rule windows are drawn around it, so some have passed and some have not.
pub const AT: Time = Time::from_secs(1_780_272_000);

/// When ordinary rules start: 2020-01-01T00:00:00Z.
const RULES_START: Time = Time::from_secs(1_577_836_800);

const DAY: i64 = 86_400 * 1_000_000;

/// The user who reaches about a tenth of all assets (for the list bench).
pub const HEAVY_USER: &str = "heavy";
/// The user the write bench adds to and removes from [`WRITE_GROUP`].
pub const MOVER_USER: &str = "mover";
/// A group of ordinary size whose only rule grants one leaf node over ssh.
pub const WRITE_GROUP: &str = "write-team";
/// The heavy user's group.
pub const HEAVY_GROUP: &str = "heavy-team";
/// A large flat group (2% of all users), as directories push them ("all staff").
pub const BIG_GROUP: &str = "all-staff";

/// Ops per `Engine::write` call when loading.
pub const DEFAULT_BATCH: usize = 50_000;

const MIB: f64 = 1024.0 * 1024.0;

/// The three standard sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EstateSize {
    /// 1k users, 100 groups, 1k assets, 100 rules.
    Small,
    /// 100k users, 10k groups, 100k assets, 10k rules.
    Medium,
    /// 1M users, 100k groups, 1M assets, 10k rules.
    Large,
}

impl EstateSize {
    pub const ALL: [EstateSize; 3] = [EstateSize::Small, EstateSize::Medium, EstateSize::Large];

    pub fn name(self) -> &'static str {
        match self {
            EstateSize::Small => "small",
            EstateSize::Medium => "medium",
            EstateSize::Large => "large",
        }
    }

    pub fn parse(text: &str) -> Option<EstateSize> {
        EstateSize::ALL
            .into_iter()
            .find(|size| size.name() == text.trim())
    }

    pub fn shape(self) -> Shape {
        match self {
            EstateSize::Small => Shape::custom("small", 1_000, 100, 1_000, 100),
            EstateSize::Medium => Shape::custom("medium", 100_000, 10_000, 100_000, 10_000),
            EstateSize::Large => Shape::custom("large", 1_000_000, 100_000, 1_000_000, 10_000),
        }
    }

    /// The sizes a bench binary should run: every size when run as a benchmark
    /// (`--bench`), only `small` otherwise (`cargo test` runs bench
    /// binaries once each, in test mode, and must stay fast). `PORTCULLIS_BENCH_SIZES`
    /// (`small,medium`) overrides either.
    pub fn selected(wanted: &[EstateSize]) -> Vec<EstateSize> {
        let chosen: Vec<EstateSize> = match std::env::var("PORTCULLIS_BENCH_SIZES") {
            Ok(list) => list.split(',').filter_map(EstateSize::parse).collect(),
            Err(_) if bench_mode() => EstateSize::ALL.to_vec(),
            Err(_) => vec![EstateSize::Small],
        };
        chosen
            .into_iter()
            .filter(|size| wanted.contains(size))
            .collect()
    }
}

/// Whether the process was started by `cargo bench` (which passes `--bench`).
pub fn bench_mode() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// The numbers that decide an estate.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// Names the estate in bench ids and cache files.
    pub label: String,
    pub n_users: u32,
    pub n_groups: u32,
    pub n_assets: u32,
    pub n_rules: u32,
    /// Levels of nodes below `/Default`.
    pub node_depth: u32,
    /// Children per node.
    pub node_fanout: u32,
    /// The mean number of groups a user is directly in.
    pub groups_per_user: u32,
    /// The share of all assets the heavy user reaches.
    pub heavy_share: f64,
    pub seed: u64,
}

impl Shape {
    /// A shape with the standard proportions: a tree 6 deep whose leaves hold about
    /// 250 assets each (at least 2 children per node), users in ~3 groups.
    pub fn custom(label: &str, n_users: u32, n_groups: u32, n_assets: u32, n_rules: u32) -> Shape {
        let node_depth = 6;
        let wanted_leaves = (f64::from(n_assets) / 250.0).max(1.0);
        let mut node_fanout = 2;
        while f64::from(node_fanout).powi(node_depth as i32) < wanted_leaves {
            node_fanout += 1;
        }
        Shape {
            label: label.to_owned(),
            n_users: n_users.max(10),
            n_groups: n_groups.max(10),
            n_assets: n_assets.max(10),
            n_rules: n_rules.max(10),
            node_depth,
            node_fanout,
            groups_per_user: 3,
            heavy_share: 0.1,
            seed: SEED,
        }
    }

    /// Leaf nodes in the tree.
    pub fn n_leaves(&self) -> u32 {
        self.node_fanout.pow(self.node_depth)
    }

    /// Nodes in the tree, the root included.
    pub fn n_nodes(&self) -> u32 {
        (0..=self.node_depth)
            .map(|level| self.node_fanout.pow(level))
            .sum()
    }

    /// A file name that changes whenever the estate would.
    pub fn cache_key(&self) -> String {
        format!(
            "{}-u{}-g{}-a{}-r{}-d{}-f{}-s{:x}-v{}",
            self.label,
            self.n_users,
            self.n_groups,
            self.n_assets,
            self.n_rules,
            self.node_depth,
            self.node_fanout,
            self.seed,
            GENERATOR_VERSION
        )
    }
}

// ----- the plan ------------------------------------------------------------------

/// A user's state, relative to [`AT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UserState {
    Active,
    Inactive,
    /// Expired before `AT`.
    Expired,
    /// Expires after `AT`.
    Expiring,
}

/// A membership's (or nesting edge's) expiry, relative to [`AT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Expiry {
    #[default]
    Never,
    Before,
    After,
}

impl Expiry {
    fn time(self, salt: u32) -> Option<Time> {
        let days = i64::from(salt % 300) + 1;
        match self {
            Expiry::Never => None,
            Expiry::Before => Some(AT.add_micros(-days * DAY)),
            Expiry::After => Some(AT.add_micros(days * DAY)),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct GroupPlan {
    members: Vec<(u32, Expiry)>,
    subgroups: Vec<(u32, Expiry)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Linux,
    Windows,
    Database,
}

/// Account usernames an asset may have (a bit each in `AssetPlan::accounts`).
const ACCOUNTS: [&str; 6] = ["root", "admin", "deploy", "ubuntu", "Administrator", "dba"];
/// Protocols an asset may offer (a bit each in `AssetPlan::protocols`).
const PROTOCOLS: [(&str, u16); 6] = [
    ("ssh", 22),
    ("sftp", 22),
    ("rdp", 3389),
    ("vnc", 5900),
    ("mysql", 3306),
    ("postgresql", 5432),
];

#[derive(Debug, Clone, Copy)]
struct AssetPlan {
    platform: Platform,
    accounts: u8,
    protocols: u8,
    leaf: u32,
    /// `u32::MAX`: none.
    second_leaf: u32,
    active: bool,
}

/// A node: its level (0 is `/Default`) and its position within the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeRef {
    level: u32,
    index: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Always,
    /// Started, expires after `AT`.
    Open,
    /// Starts after `AT`.
    NotStarted,
    /// Expired before `AT`.
    Expired,
}

#[derive(Debug, Clone)]
struct RulePlan {
    name: String,
    effect: Effect,
    users: Vec<String>,
    groups: Vec<String>,
    assets: Vec<u32>,
    nodes: Vec<NodeRef>,
    accounts: Vec<AccountSelector>,
    /// `None`: all.
    protocols: Option<Vec<&'static str>>,
    actions: Actions,
    window: Window,
    /// Plan indexes of the groups it names (for the query sampler).
    group_indexes: Vec<u32>,
    /// Plan indexes of the users it names.
    user_indexes: Vec<u32>,
}

/// What the write bench toggles and checks.
#[derive(Debug, Clone)]
pub struct WriteProbe {
    pub group: String,
    pub user: String,
    pub asset: String,
    pub account: &'static str,
    pub protocol: &'static str,
}

/// One sampled access question and the fast evaluator's answer to it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub user: String,
    pub asset: String,
    pub account: String,
    pub protocol: &'static str,
    pub action: Actions,
    pub allowed: bool,
}

impl Sample {
    pub fn query(&self) -> Query<'_> {
        Query {
            user: &self.user,
            asset: &self.asset,
            account: &self.account,
            protocol: self.protocol,
            action: self.action,
            at: AT,
        }
    }
}

/// A sample resolved to dense indexes in one snapshot lineage.
#[derive(Debug, Clone)]
pub struct IdxSample {
    pub user: UserIdx,
    pub asset: AssetIdx,
    pub account: String,
    pub protocol: &'static str,
    pub action: Actions,
    pub allowed: bool,
}

/// One step of loading: a kind of entity and a range of positions in its creation
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    Nodes,
    Users(Range<u32>),
    Groups(Range<u32>),
    Assets(Range<u32>),
    Rules(Range<u32>),
}

impl Batch {
    pub fn kind(&self) -> EntityKind {
        match self {
            Batch::Nodes => EntityKind::Node,
            Batch::Users(_) => EntityKind::User,
            Batch::Groups(_) => EntityKind::Group,
            Batch::Assets(_) => EntityKind::Asset,
            Batch::Rules(_) => EntityKind::Rule,
        }
    }
}

/// How long loading took, per kind of entity.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// (kind, ops, time making the ops, time in `Engine::write`).
    pub phases: Vec<(EntityKind, usize, Duration, Duration)>,
}

impl LoadStats {
    fn add(&mut self, kind: EntityKind, ops: usize, make: Duration, write: Duration) {
        match self.phases.iter_mut().find(|phase| phase.0 == kind) {
            Some(phase) => {
                phase.1 += ops;
                phase.2 += make;
                phase.3 += write;
            }
            None => self.phases.push((kind, ops, make, write)),
        }
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|phase| phase.2 + phase.3).sum()
    }
}

impl std::fmt::Display for LoadStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (kind, ops, make, write) in &self.phases {
            let rate = *ops as f64 / write.as_secs_f64().max(1e-9);
            writeln!(
                f,
                "  {kind:<6} {ops:>9} ops  make {:>8.2} s  write {:>8.2} s  ({rate:>9.0} ops/s)",
                make.as_secs_f64(),
                write.as_secs_f64()
            )?;
        }
        write!(f, "  total  {:.2} s", self.total().as_secs_f64())
    }
}

/// A synthetic estate: its shape and every random choice, drawn once.
pub struct Synthetic {
    pub shape: Shape,
    users: Vec<UserState>,
    groups: Vec<GroupPlan>,
    assets: Vec<AssetPlan>,
    rules: Vec<RulePlan>,
    /// Members of the big group.
    big_group: Vec<u32>,
    /// Members of the write group.
    write_group: Vec<u32>,
    /// The asset the write bench checks.
    write_asset: u32,
}

/// The username of the `index`th generated user.
pub fn user_name(index: u32) -> String {
    format!("u{index:07}")
}

fn group_name(index: u32) -> String {
    format!("g{index:06}")
}

/// The name of the `index`th generated asset.
pub fn asset_name(index: u32) -> String {
    format!("a{index:07}")
}

/// A stable id per entity: the estate is the same on every run, ids included.
///
/// Shaped as the engine's own ids are (UUIDv7, `Id::random`): a millisecond clock
/// then random bits, so ids of one kind increase in the order the entities are
/// created, as they do when an import, a directory sync or an identity provider
/// creates them. The clock is made from the kind and the index (a thousand entities
/// a millisecond, the counter in `rand_a`), starting at 2026-01-01.
fn id_of(seed: u64, kind: u64, index: u64) -> Id {
    fn splitmix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
    const EPOCH_MS: u64 = 1_767_225_600_000;
    const PER_MS: u64 = 1_000;
    debug_assert!(index < 1 << 44, "an index fits beside the kind");
    let sequence = (kind << 44) | index;
    let millis = EPOCH_MS + sequence / PER_MS;
    let high = (millis << 16) | 0x7000 | (sequence % PER_MS);
    let random = splitmix(seed ^ (kind << 56) ^ index);
    let low = 0x8000_0000_0000_0000 | (random >> 2);
    Id::from_u128((u128::from(high) << 64) | u128::from(low))
}

const KIND_USER: u64 = 1;
const KIND_GROUP: u64 = 2;
const KIND_NODE: u64 = 3;
const KIND_ASSET: u64 = 4;
const KIND_RULE: u64 = 5;
const KIND_ACCOUNT: u64 = 6;

impl Synthetic {
    /// Draws the estate. Takes a few seconds at the large size.
    pub fn new(shape: Shape) -> Synthetic {
        let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
        let n_users = shape.n_users;
        let n_groups = shape.n_groups;

        let users: Vec<UserState> = (0..n_users)
            .map(|_| match rng.gen_range(0..1000) {
                0..10 => UserState::Inactive,
                10..20 => UserState::Expired,
                20..40 => UserState::Expiring,
                _ => UserState::Active,
            })
            .collect();

        // Groups: departments (1%), teams (9%) nested in departments, squads (the
        // rest), some nested in teams: up to three levels.
        let departments = (n_groups / 100).max(1);
        let teams = (n_groups / 10).max(2);
        let mut groups = vec![GroupPlan::default(); n_groups as usize];
        let edge_expiry = |rng: &mut ChaCha8Rng| match rng.gen_range(0..100) {
            0 => Expiry::Before,
            1 => Expiry::After,
            _ => Expiry::Never,
        };
        for child in departments..n_groups {
            let parent = if child < teams {
                rng.gen_bool(0.8).then(|| rng.gen_range(0..departments))
            } else {
                rng.gen_bool(0.3).then(|| rng.gen_range(departments..teams))
            };
            if let Some(parent) = parent {
                let expiry = edge_expiry(&mut rng);
                groups[parent as usize].subgroups.push((child, expiry));
            }
        }
        for user in 0..n_users {
            let count =
                rng.gen_range(shape.groups_per_user.saturating_sub(1)..=shape.groups_per_user + 1);
            let mut chosen: Vec<u32> = Vec::with_capacity(count as usize);
            while chosen.len() < count as usize {
                let group = rng.gen_range(0..n_groups);
                if !chosen.contains(&group) {
                    chosen.push(group);
                }
            }
            for group in chosen {
                let expiry = match rng.gen_range(0..100) {
                    0 | 1 => Expiry::Before,
                    2 | 3 => Expiry::After,
                    _ => Expiry::Never,
                };
                groups[group as usize].members.push((user, expiry));
            }
        }

        let n_leaves = shape.n_leaves();
        let assets: Vec<AssetPlan> = (0..shape.n_assets)
            .map(|_| {
                let platform = match rng.gen_range(0..100) {
                    0..65 => Platform::Linux,
                    65..90 => Platform::Windows,
                    _ => Platform::Database,
                };
                // Bits of ACCOUNTS and PROTOCOLS.
                let (first, extra, mut protocols): (u8, &[u8], u8) = match platform {
                    Platform::Linux => (0, &[1, 2, 3], 0b1),
                    Platform::Windows => (4, &[1, 2], 0b100),
                    Platform::Database => (0, &[2, 5], 0b1),
                };
                let mut accounts = 1 << first;
                for _ in 0..rng.gen_range(0..=2) {
                    accounts |= 1 << extra[rng.gen_range(0..extra.len())];
                }
                match platform {
                    Platform::Linux if rng.gen_bool(0.5) => protocols |= 0b10,
                    Platform::Windows if rng.gen_bool(0.2) => protocols |= 0b1000,
                    Platform::Database => {
                        protocols |= if rng.gen_bool(0.5) {
                            0b1_0000
                        } else {
                            0b10_0000
                        }
                    }
                    _ => {}
                }
                AssetPlan {
                    platform,
                    accounts,
                    protocols,
                    leaf: rng.gen_range(0..n_leaves),
                    second_leaf: if rng.gen_bool(0.05) {
                        rng.gen_range(0..n_leaves)
                    } else {
                        u32::MAX
                    },
                    active: rng.gen_range(0..100) != 0,
                }
            })
            .collect();

        let mut rules: Vec<RulePlan> = (0..shape.n_rules)
            .map(|i| random_rule(&mut rng, &shape, i))
            .collect();

        // The designated entities.
        let big_group = {
            let mut members: Vec<u32> = (0..n_users).collect();
            members.shuffle(&mut rng);
            members.truncate((n_users / 50).max(2) as usize);
            members.sort_unstable();
            members
        };
        let write_group = {
            let mut members: Vec<u32> = (0..30.min(n_users))
                .map(|_| rng.gen_range(0..n_users))
                .collect();
            members.sort_unstable();
            members.dedup();
            members
        };
        let write_asset = (0..shape.n_assets)
            .find(|&i| {
                let a = &assets[i as usize];
                a.active && a.platform == Platform::Linux
            })
            .expect("some asset is an active linux host");
        let leaf = NodeRef {
            level: shape.node_depth,
            index: assets[write_asset as usize].leaf,
        };
        let heavy_leaves =
            ((f64::from(n_leaves) * shape.heavy_share).ceil() as u32).clamp(1, n_leaves);
        let heavy_nodes = cover(&shape, 0, heavy_leaves);
        let base = RulePlan {
            name: String::new(),
            effect: Effect::Allow,
            users: Vec::new(),
            groups: Vec::new(),
            assets: Vec::new(),
            nodes: Vec::new(),
            accounts: vec![AccountSelector::All],
            protocols: None,
            actions: Actions::ALL,
            window: Window::Always,
            group_indexes: Vec::new(),
            user_indexes: Vec::new(),
        };
        rules.push(RulePlan {
            name: "heavy-access".to_owned(),
            groups: vec![HEAVY_GROUP.to_owned()],
            nodes: heavy_nodes,
            ..base.clone()
        });
        rules.push(RulePlan {
            name: "heavy-deny-transfer".to_owned(),
            effect: Effect::Deny,
            groups: vec![HEAVY_GROUP.to_owned()],
            nodes: vec![NodeRef {
                level: shape.node_depth,
                index: 0,
            }],
            actions: Actions::TRANSFER,
            ..base.clone()
        });
        rules.push(RulePlan {
            name: "write-access".to_owned(),
            groups: vec![WRITE_GROUP.to_owned()],
            nodes: vec![leaf],
            accounts: vec![AccountSelector::All, AccountSelector::Input],
            protocols: Some(vec!["ssh"]),
            actions: Actions::CONNECT.union(Actions::TRANSFER),
            ..base.clone()
        });
        rules.push(RulePlan {
            name: "all-staff-input".to_owned(),
            groups: vec![BIG_GROUP.to_owned()],
            nodes: vec![NodeRef {
                level: 3.min(shape.node_depth),
                index: 1,
            }],
            accounts: vec![AccountSelector::Input],
            actions: Actions::CONNECT,
            ..base
        });

        Synthetic {
            shape,
            users,
            groups,
            assets,
            rules,
            big_group,
            write_group,
            write_asset,
        }
    }

    /// The standard estate of `size`.
    pub fn of(size: EstateSize) -> Synthetic {
        Synthetic::new(size.shape())
    }

    /// The loading steps, in an order that only refers to what exists: nodes, users,
    /// groups (nested ones first), assets, rules; each at most `max_ops` ops.
    pub fn batches(&self, max_ops: usize) -> Vec<Batch> {
        let max_ops = u32::try_from(max_ops.max(1)).unwrap_or(u32::MAX);
        let chunks = |total: u32| {
            (0..total.div_ceil(max_ops)).map(move |i| i * max_ops..((i + 1) * max_ops).min(total))
        };
        let mut batches = vec![Batch::Nodes];
        batches.extend(chunks(self.shape.n_users + 2).map(Batch::Users));
        batches.extend(chunks(self.shape.n_groups + 3).map(Batch::Groups));
        batches.extend(chunks(self.shape.n_assets).map(Batch::Assets));
        batches.extend(chunks(self.rules.len() as u32).map(Batch::Rules));
        batches
    }

    /// The ops of one loading step.
    pub fn ops(&self, batch: &Batch) -> Vec<Op> {
        match batch {
            Batch::Nodes => self.node_ops(),
            Batch::Users(range) => range
                .clone()
                .map(|i| Op::Create(Spec::User(self.user_spec(i))))
                .collect(),
            Batch::Groups(range) => range
                .clone()
                .map(|i| Op::Create(Spec::Group(self.group_spec(i))))
                .collect(),
            Batch::Assets(range) => range
                .clone()
                .map(|i| Op::Create(Spec::Asset(self.asset_spec(i))))
                .collect(),
            Batch::Rules(range) => range
                .clone()
                .map(|i| Op::Create(Spec::Rule(self.rule_spec(i))))
                .collect(),
        }
    }

    /// Writes the whole estate into `engine`, `max_ops` ops per write. With `progress`,
    /// prints a line per batch to stderr.
    pub fn load(&self, engine: &Engine, max_ops: usize, progress: bool) -> LoadStats {
        let mut stats = LoadStats::default();
        for batch in self.batches(max_ops) {
            let started = Instant::now();
            let ops = self.ops(&batch);
            let n_ops = ops.len();
            let made = started.elapsed();
            let started = Instant::now();
            if let Err(error) = engine.write(&Actor::system("bench-loader"), ops) {
                panic!("loading {batch:?} of {} failed: {error}", self.shape.label);
            }
            let written = started.elapsed();
            if progress {
                let file = engine
                    .path()
                    .and_then(|path| std::fs::metadata(path).ok())
                    .map(|meta| format!(", store file {:.1} MiB", meta.len() as f64 / MIB))
                    .unwrap_or_default();
                eprintln!(
                    "[{}] {batch:?}: {n_ops} ops, make {:.2} s, write {:.2} s{file}",
                    self.shape.label,
                    made.as_secs_f64(),
                    written.as_secs_f64()
                );
            }
            stats.add(batch.kind(), n_ops, made, written);
        }
        stats
    }

    /// An in-memory engine holding the estate.
    pub fn in_memory_engine(&self, progress: bool) -> (Engine, LoadStats) {
        let engine = Engine::in_memory().expect("an in-memory engine starts");
        let stats = self.load(&engine, DEFAULT_BATCH, progress);
        (engine, stats)
    }

    // ----- specs ---------------------------------------------------------------

    fn node_path(&self, node: NodeRef) -> String {
        let fanout = self.shape.node_fanout;
        let mut digits = Vec::with_capacity(node.level as usize);
        let mut rest = node.index;
        for _ in 0..node.level {
            digits.push(rest % fanout);
            rest /= fanout;
        }
        let mut path = String::from("/Default");
        for (level, digit) in digits.iter().rev().enumerate() {
            path.push_str(&format!("/L{}-{digit}", level + 1));
        }
        path
    }

    fn node_ops(&self) -> Vec<Op> {
        let mut ops = Vec::with_capacity(self.shape.n_nodes() as usize);
        for level in 1..=self.shape.node_depth {
            for index in 0..self.shape.node_fanout.pow(level) {
                let node = NodeRef { level, index };
                let parent = self.node_path(NodeRef {
                    level: level - 1,
                    index: index / self.shape.node_fanout,
                });
                let mut spec = NodeSpec::new(
                    format!("L{level}-{}", index % self.shape.node_fanout),
                    parent,
                );
                spec.id = Some(id_of(
                    self.shape.seed,
                    KIND_NODE,
                    (u64::from(level) << 32) | u64::from(index),
                ));
                debug_assert_eq!(
                    format!("{}/{}", spec.parent, spec.name),
                    self.node_path(node),
                    "paths agree with the parent links"
                );
                ops.push(Op::Create(Spec::Node(spec)));
            }
        }
        ops
    }

    /// Position `i` in user creation order: the regular users, then heavy and mover.
    fn user_spec(&self, i: u32) -> UserSpec {
        let n = self.shape.n_users;
        let username = if i < n {
            user_name(i)
        } else if i == n {
            HEAVY_USER.to_owned()
        } else {
            MOVER_USER.to_owned()
        };
        let mut spec = UserSpec::new(username.clone());
        spec.id = Some(id_of(self.shape.seed, KIND_USER, u64::from(i)));
        spec.name = format!("User {username}");
        spec.email = Some(format!("{username}@example.com"));
        if let Some(state) = self.users.get(i as usize) {
            match state {
                UserState::Active => {}
                UserState::Inactive => spec.active = false,
                UserState::Expired => spec.expires_at = Expiry::Before.time(i),
                UserState::Expiring => spec.expires_at = Expiry::After.time(i),
            }
        }
        spec
    }

    fn member(&self, user: u32, expiry: Expiry) -> MemberSpec {
        match expiry.time(user) {
            None => MemberSpec::Name(user_name(user)),
            Some(expires_at) => MemberSpec::Detailed {
                user: user_name(user),
                expires_at: Some(expires_at),
                source: None,
            },
        }
    }

    /// Position `i` in group creation order: regular groups from the last one down
    /// (a subgroup always has a higher index than its parent), then the designated
    /// ones.
    fn group_spec(&self, i: u32) -> GroupSpec {
        let n = self.shape.n_groups;
        let (name, members, subgroups): (String, Vec<MemberSpec>, Vec<SubgroupSpec>) = if i < n {
            let index = n - 1 - i;
            let plan = &self.groups[index as usize];
            let members = plan
                .members
                .iter()
                .map(|&(user, expiry)| self.member(user, expiry))
                .collect();
            let subgroups = plan
                .subgroups
                .iter()
                .map(|&(group, expiry)| match expiry.time(group) {
                    None => SubgroupSpec::Name(group_name(group)),
                    Some(expires_at) => SubgroupSpec::Detailed {
                        group: group_name(group),
                        expires_at: Some(expires_at),
                        source: None,
                    },
                })
                .collect();
            (group_name(index), members, subgroups)
        } else {
            match i - n {
                0 => (
                    HEAVY_GROUP.to_owned(),
                    vec![MemberSpec::Name(HEAVY_USER.to_owned())],
                    Vec::new(),
                ),
                1 => (
                    WRITE_GROUP.to_owned(),
                    self.write_group
                        .iter()
                        .map(|&user| self.member(user, Expiry::Never))
                        .collect(),
                    Vec::new(),
                ),
                _ => (
                    BIG_GROUP.to_owned(),
                    self.big_group
                        .iter()
                        .map(|&user| self.member(user, Expiry::Never))
                        .collect(),
                    Vec::new(),
                ),
            }
        };
        let mut spec = GroupSpec::new(name);
        spec.id = Some(id_of(self.shape.seed, KIND_GROUP, u64::from(i)));
        spec.members = members;
        spec.subgroups = subgroups;
        spec
    }

    fn asset_spec(&self, i: u32) -> AssetSpec {
        let plan = &self.assets[i as usize];
        let mut spec = AssetSpec::new(asset_name(i));
        spec.id = Some(id_of(self.shape.seed, KIND_ASSET, u64::from(i)));
        spec.address = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        spec.platform = match plan.platform {
            Platform::Linux => "linux",
            Platform::Windows => "windows",
            Platform::Database => "database",
        }
        .to_owned();
        spec.protocols = PROTOCOLS
            .iter()
            .enumerate()
            .filter(|(bit, _)| plan.protocols & (1 << bit) != 0)
            .map(|(_, (name, port))| Protocol::new(name, *port).expect("valid protocol"))
            .collect();
        spec.nodes = vec![self.node_path(NodeRef {
            level: self.shape.node_depth,
            index: plan.leaf,
        })];
        if plan.second_leaf != u32::MAX && plan.second_leaf != plan.leaf {
            spec.nodes.push(self.node_path(NodeRef {
                level: self.shape.node_depth,
                index: plan.second_leaf,
            }));
        }
        spec.accounts = ACCOUNTS
            .iter()
            .enumerate()
            .filter(|(bit, _)| plan.accounts & (1 << bit) != 0)
            .map(|(bit, username)| {
                let mut account = AccountSpec::new(*username);
                account.id = Some(id_of(
                    self.shape.seed,
                    KIND_ACCOUNT,
                    (u64::from(i) << 8) | bit as u64,
                ));
                account.privileged = matches!(*username, "root" | "Administrator");
                account
            })
            .collect();
        spec.active = plan.active;
        spec
    }

    fn rule_spec(&self, i: u32) -> RuleSpec {
        let plan = &self.rules[i as usize];
        let mut spec = RuleSpec::new(plan.name.clone());
        spec.id = Some(id_of(self.shape.seed, KIND_RULE, u64::from(i)));
        spec.effect = plan.effect;
        spec.users = plan.users.clone();
        spec.groups = plan.groups.clone();
        spec.assets = plan.assets.iter().map(|&a| asset_name(a)).collect();
        spec.nodes = plan.nodes.iter().map(|&n| self.node_path(n)).collect();
        spec.accounts = plan.accounts.clone();
        spec.protocols = match &plan.protocols {
            None => ProtocolFilter::All,
            Some(names) => ProtocolFilter::from_names(names).expect("valid protocol names"),
        };
        spec.actions = plan.actions;
        let (starts_at, expires_at) = match plan.window {
            Window::Always => (RULES_START, None),
            Window::Open => (AT.add_micros(-30 * DAY), Some(AT.add_micros(30 * DAY))),
            Window::NotStarted => (AT.add_micros(DAY), Some(AT.add_micros(60 * DAY))),
            Window::Expired => (AT.add_micros(-60 * DAY), Some(AT.add_micros(-DAY))),
        };
        spec.starts_at = Some(starts_at);
        spec.expires_at = expires_at;
        spec
    }

    // ----- what the benches use -------------------------------------------------------

    /// The membership change the write bench makes, and the check that must see it.
    pub fn write_probe(&self) -> WriteProbe {
        WriteProbe {
            group: WRITE_GROUP.to_owned(),
            user: MOVER_USER.to_owned(),
            asset: asset_name(self.write_asset),
            account: "root",
            protocol: "ssh",
        }
    }

    /// A change to the big group ([`BIG_GROUP`], 2% of all users) adding or removing
    /// the mover, and a check that sees it (through the group's `@INPUT` rule).
    pub fn big_group_probe(&self) -> WriteProbe {
        let node = NodeRef {
            level: 3.min(self.shape.node_depth),
            index: 1,
        };
        let span = self
            .shape
            .node_fanout
            .pow(self.shape.node_depth - node.level);
        let leaves = node.index * span..(node.index + 1) * span;
        let write_leaf = self.assets[self.write_asset as usize].leaf;
        let asset = (0..self.shape.n_assets)
            .find(|&i| {
                let a = &self.assets[i as usize];
                a.active
                    && a.protocols & 1 != 0
                    && leaves.contains(&a.leaf)
                    && a.leaf != write_leaf
                    && a.second_leaf != write_leaf
            })
            .expect("the big group's node holds an active ssh asset");
        WriteProbe {
            group: BIG_GROUP.to_owned(),
            user: MOVER_USER.to_owned(),
            asset: asset_name(asset),
            account: "@INPUT",
            protocol: "ssh",
        }
    }

    /// `n` queries on users and assets that rules cover, about half of them allowed,
    /// each with the fast evaluator's answer. Deterministic for a given estate.
    pub fn queries(&self, snapshot: &Snapshot, n: usize) -> Vec<Sample> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.shape.seed ^ 0x51E5);
        let mut leaf_assets: Vec<Vec<u32>> = vec![Vec::new(); self.shape.n_leaves() as usize];
        for (i, asset) in self.assets.iter().enumerate() {
            leaf_assets[asset.leaf as usize].push(i as u32);
            if asset.second_leaf != u32::MAX {
                leaf_assets[asset.second_leaf as usize].push(i as u32);
            }
        }
        let regular = &self.rules[..self.shape.n_rules as usize];
        let want_allowed = n / 2;
        let want_denied = n - want_allowed;
        let (mut allowed, mut denied) = (Vec::new(), Vec::new());
        let mut tries = 0;
        while (allowed.len() < want_allowed || denied.len() < want_denied) && tries < n * 200 {
            tries += 1;
            let rule = &regular[rng.gen_range(0..regular.len())];
            let Some(user) = self.pick_subject(&mut rng, rule) else {
                continue;
            };
            let Some(asset) = self.pick_object(&mut rng, rule, &leaf_assets) else {
                continue;
            };
            let plan = &self.assets[asset as usize];
            let accounts: Vec<&str> = ACCOUNTS
                .iter()
                .enumerate()
                .filter(|(bit, _)| plan.accounts & (1 << bit) != 0)
                .map(|(_, name)| *name)
                .collect();
            let account = match rng.gen_range(0..10) {
                0..7 => accounts[rng.gen_range(0..accounts.len())].to_owned(),
                7 => "@INPUT".to_owned(),
                _ => ACCOUNTS[rng.gen_range(0..ACCOUNTS.len())].to_owned(),
            };
            let offered: Vec<&'static str> = PROTOCOLS
                .iter()
                .enumerate()
                .filter(|(bit, _)| plan.protocols & (1 << bit) != 0)
                .map(|(_, (name, _))| *name)
                .collect();
            let protocol = if rng.gen_range(0..10) < 8 {
                offered[rng.gen_range(0..offered.len())]
            } else {
                PROTOCOLS[rng.gen_range(0..PROTOCOLS.len())].0
            };
            let action = match rng.gen_range(0..10) {
                0..6 => Actions::CONNECT,
                6 => Actions::UPLOAD,
                7 => Actions::DOWNLOAD,
                8 => Actions::COPY,
                _ => Actions::DELETE,
            };
            let mut sample = Sample {
                user: user_name(user),
                asset: asset_name(asset),
                account,
                protocol,
                action,
                allowed: false,
            };
            sample.allowed = snapshot
                .check(&sample.query())
                .expect("sampled names exist")
                .allowed;
            if sample.allowed && allowed.len() < want_allowed {
                allowed.push(sample);
            } else if !sample.allowed && denied.len() < want_denied {
                denied.push(sample);
            }
        }
        // Interleave, so any prefix is mixed too.
        let mut samples = Vec::with_capacity(n);
        let (mut a, mut d) = (allowed.into_iter(), denied.into_iter());
        loop {
            match (a.next(), d.next()) {
                (None, None) => break,
                (x, y) => samples.extend(x.into_iter().chain(y)),
            }
        }
        samples
    }

    fn pick_subject(&self, rng: &mut ChaCha8Rng, rule: &RulePlan) -> Option<u32> {
        if !rule.user_indexes.is_empty() && (rule.group_indexes.is_empty() || rng.gen_bool(0.5)) {
            return Some(rule.user_indexes[rng.gen_range(0..rule.user_indexes.len())]);
        }
        let mut group = *rule
            .group_indexes
            .get(rng.gen_range(0..rule.group_indexes.len().max(1)))?;
        // Sometimes go down into a nested group.
        for _ in 0..2 {
            let plan = &self.groups[group as usize];
            if plan.subgroups.is_empty() || (!plan.members.is_empty() && rng.gen_bool(0.5)) {
                break;
            }
            group = plan.subgroups[rng.gen_range(0..plan.subgroups.len())].0;
        }
        let members = &self.groups[group as usize].members;
        (!members.is_empty()).then(|| members[rng.gen_range(0..members.len())].0)
    }

    fn pick_object(
        &self,
        rng: &mut ChaCha8Rng,
        rule: &RulePlan,
        leaf_assets: &[Vec<u32>],
    ) -> Option<u32> {
        if !rule.assets.is_empty() && (rule.nodes.is_empty() || rng.gen_bool(0.5)) {
            return Some(rule.assets[rng.gen_range(0..rule.assets.len())]);
        }
        let node = *rule.nodes.get(rng.gen_range(0..rule.nodes.len().max(1)))?;
        let below = self.shape.node_depth - node.level;
        let span = self.shape.node_fanout.pow(below);
        let leaf = node.index * span + rng.gen_range(0..span);
        let assets = &leaf_assets[leaf as usize];
        (!assets.is_empty()).then(|| assets[rng.gen_range(0..assets.len())])
    }
}

/// Resolves samples to dense indexes in `snapshot`.
pub fn resolve(snapshot: &Snapshot, samples: &[Sample]) -> Vec<IdxSample> {
    samples
        .iter()
        .map(|s| IdxSample {
            user: snapshot.user_idx(&s.user).expect("sampled user exists"),
            asset: snapshot.asset_idx(&s.asset).expect("sampled asset exists"),
            account: s.account.clone(),
            protocol: s.protocol,
            action: s.action,
            allowed: s.allowed,
        })
        .collect()
}

/// The fewest aligned subtrees that cover leaves `start..end`.
fn cover(shape: &Shape, start: u32, end: u32) -> Vec<NodeRef> {
    let mut nodes = Vec::new();
    let mut position = start;
    while position < end {
        let mut level = shape.node_depth;
        let mut span = 1;
        while level > 1 {
            let wider = span * shape.node_fanout;
            if position % wider != 0 || position + wider > end {
                break;
            }
            span = wider;
            level -= 1;
        }
        nodes.push(NodeRef {
            level,
            index: position / span,
        });
        position += span;
    }
    nodes
}

fn random_rule(rng: &mut ChaCha8Rng, shape: &Shape, i: u32) -> RulePlan {
    let effect = if rng.gen_range(0..100) < 3 {
        Effect::Deny
    } else {
        Effect::Allow
    };
    let (mut users, mut user_indexes, mut groups, mut group_indexes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    if rng.gen_range(0..100) < 5 {
        for _ in 0..rng.gen_range(1..=3) {
            let user = rng.gen_range(0..shape.n_users);
            if !user_indexes.contains(&user) {
                user_indexes.push(user);
                users.push(user_name(user));
            }
        }
    } else {
        let count = if rng.gen_range(0..100) < 85 { 1 } else { 2 };
        for _ in 0..count {
            let group = rng.gen_range(0..shape.n_groups);
            if !group_indexes.contains(&group) {
                group_indexes.push(group);
                groups.push(group_name(group));
            }
        }
    }
    let (mut assets, mut nodes) = (Vec::new(), Vec::new());
    if rng.gen_range(0..100) < 10 {
        for _ in 0..rng.gen_range(1..=5) {
            let asset = rng.gen_range(0..shape.n_assets);
            if !assets.contains(&asset) {
                assets.push(asset);
            }
        }
    } else {
        for _ in 0..rng.gen_range(1..=2) {
            let depth = shape.node_depth;
            let level = match rng.gen_range(0..100) {
                0..10 => depth.saturating_sub(3).max(1),
                10..35 => depth.saturating_sub(2).max(1),
                35..70 => depth.saturating_sub(1).max(1),
                _ => depth,
            };
            let node = NodeRef {
                level,
                index: rng.gen_range(0..shape.node_fanout.pow(level)),
            };
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
    }
    let named =
        |rng: &mut ChaCha8Rng| ["root", "admin", "deploy", "Administrator"][rng.gen_range(0..4)];
    let accounts = match rng.gen_range(0..100) {
        0..40 => vec![AccountSelector::All],
        40..60 => vec![AccountSelector::Named(named(rng).into())],
        60..75 => vec![
            AccountSelector::All,
            AccountSelector::Excluded("root".into()),
        ],
        75..85 => vec![AccountSelector::Input],
        85..95 => vec![AccountSelector::All, AccountSelector::Input],
        _ => vec![AccountSelector::SameAsUser],
    };
    let protocols = if rng.gen_range(0..100) < 35 {
        None
    } else {
        let pick = |rng: &mut ChaCha8Rng| match rng.gen_range(0..100) {
            0..45 => "ssh",
            45..75 => "rdp",
            75..85 => "sftp",
            85..90 => "vnc",
            90..95 => "mysql",
            _ => "postgresql",
        };
        let mut list = vec![pick(rng)];
        if rng.gen_bool(0.4) {
            let second = pick(rng);
            if !list.contains(&second) {
                list.push(second);
            }
        }
        Some(list)
    };
    let actions = match effect {
        Effect::Deny => match rng.gen_range(0..3) {
            0 => Actions::TRANSFER,
            1 => Actions::DELETE,
            _ => Actions::ALL,
        },
        Effect::Allow => match rng.gen_range(0..100) {
            0..30 => Actions::CONNECT,
            30..55 => Actions::CONNECT.union(Actions::TRANSFER),
            55..70 => Actions::CONNECT.union(Actions::CLIPBOARD),
            _ => Actions::ALL,
        },
    };
    let window = match rng.gen_range(0..100) {
        0..5 => Window::Open,
        5..7 => Window::NotStarted,
        7..9 => Window::Expired,
        _ => Window::Always,
    };
    RulePlan {
        name: format!("r{i:05}"),
        effect,
        users,
        groups,
        assets,
        nodes,
        accounts,
        protocols,
        actions,
        window,
        group_indexes,
        user_indexes,
    }
}

// ----- stores on disk ----------------------------------------------------------------

/// Where built stores are kept between bench binaries and runs:
/// `PORTCULLIS_BENCH_CACHE`, else `target/bench-estates` in the workspace.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("PORTCULLIS_BENCH_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-estates"),
    }
}

/// A redb file holding the estate, built on first use and reused afterwards (its
/// name carries the shape and [`GENERATOR_VERSION`]). Building the large one takes
/// minutes; every bench binary after the first opens it instead.
///
/// Open it with [`Engine::open`] only when nothing will be written; copy it first
/// otherwise ([`copy_store`]).
pub fn cached_store(synthetic: &Synthetic) -> PathBuf {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).expect("the bench cache directory can be created");
    let path = dir.join(format!("{}.redb", synthetic.shape.cache_key()));
    if path.exists() {
        return path;
    }
    let building = dir.join(format!(
        "{}.redb.building-{}",
        synthetic.shape.cache_key(),
        std::process::id()
    ));
    let started = Instant::now();
    {
        let engine = Engine::open(&building).expect("a new store opens");
        let stats = synthetic.load(&engine, DEFAULT_BATCH, true);
        engine.close();
        eprintln!(
            "built the {} store in {:.1} s ({})\n{stats}",
            synthetic.shape.label,
            started.elapsed().as_secs_f64(),
            path.display()
        );
    }
    std::fs::rename(&building, &path).expect("the built store can be renamed into place");
    // The snapshot image the close wrote goes with its store.
    let image = |store: &Path| {
        let mut name = store.as_os_str().to_owned();
        name.push(".image");
        PathBuf::from(name)
    };
    if image(&building).exists() {
        std::fs::rename(image(&building), image(&path))
            .expect("the built store's image can be renamed into place");
    }
    path
}

/// A private copy of `store` in `dir`, to open and write to.
pub fn copy_store(store: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("store.redb");
    std::fs::copy(store, &copy).expect("the store can be copied");
    copy
}

/// The process's resident set size, in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The CPU time (user + system) the process has used, all threads together, in
/// 10 ms ticks (Linux; zero elsewhere). Unlike wall time it does not grow when other
/// work on the machine takes the cores.
pub fn process_cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 here), in
    // USER_HZ ticks, which is 100 on Linux.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

impl WriteProbe {
    /// The `Op::Modify` that adds the probe's user to its group, or removes them.
    pub fn op(&self, add: bool) -> Op {
        membership_op(&self.group, &self.user, add)
    }
}

/// `Op::AddMember` or `Op::RemoveMember` of `user` in `group`: one membership, as the
/// member routes write it.
pub fn membership_op(group: &str, user: &str, add: bool) -> Op {
    if add {
        Op::AddMember {
            group: group.to_owned(),
            member: MemberSpec::Name(user.to_owned()),
        }
    } else {
        Op::RemoveMember {
            group: group.to_owned(),
            user: user.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use portcullis_engine::Reference;

    use super::*;

    fn tiny() -> Synthetic {
        Synthetic::new(Shape::custom("tiny", 300, 40, 400, 60))
    }

    #[test]
    fn a_small_estate_loads_and_queries_are_half_allowed() {
        let synthetic = tiny();
        let (engine, _) = synthetic.in_memory_engine(false);
        let snapshot = engine.snapshot();
        let counts = snapshot.counts();
        assert_eq!(counts.users, 302);
        assert_eq!(counts.groups, 43);
        assert_eq!(counts.assets, 400);
        assert_eq!(counts.rules, 64);
        assert_eq!(u64::from(synthetic.shape.n_nodes()), counts.nodes);
        let samples = synthetic.queries(&snapshot, 200);
        assert_eq!(samples.len(), 200);
        let allowed = samples.iter().filter(|s| s.allowed).count();
        assert_eq!(allowed, 100);
        // The reference evaluator agrees on every sample.
        let estate = snapshot.estate();
        let reference = Reference::new(&estate, snapshot.revision());
        for sample in &samples {
            assert_eq!(
                reference.check(&sample.query()).unwrap().allowed,
                sample.allowed,
                "{sample:?}"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_estate() {
        let (a, b) = (tiny(), tiny());
        for batch in a.batches(100) {
            assert_eq!(
                format!("{:?}", a.ops(&batch)),
                format!("{:?}", b.ops(&batch))
            );
        }
    }

    #[test]
    fn heavy_user_reaches_about_a_tenth_and_the_write_probe_toggles() {
        let synthetic = Synthetic::new(Shape::custom("tiny", 300, 40, 4_000, 60));
        let (engine, _) = synthetic.in_memory_engine(false);
        let snapshot = engine.snapshot();
        let heavy = snapshot.user_idx(HEAVY_USER).unwrap();
        let reached = snapshot.user_asset_count(heavy, AT);
        assert!((200..=800).contains(&reached), "heavy reaches {reached}");

        let check = |engine: &Engine, probe: &WriteProbe| {
            let snapshot = engine.snapshot();
            let query = Query {
                user: &probe.user,
                asset: &probe.asset,
                account: probe.account,
                protocol: probe.protocol,
                action: Actions::CONNECT,
                at: AT,
            };
            snapshot.check(&query).unwrap().allowed
        };
        for probe in [synthetic.write_probe(), synthetic.big_group_probe()] {
            assert!(!check(&engine, &probe));
            engine
                .write(&Actor::system("test"), vec![probe.op(true)])
                .unwrap();
            assert!(check(&engine, &probe));
            engine
                .write(&Actor::system("test"), vec![probe.op(false)])
                .unwrap();
            assert!(!check(&engine, &probe));
        }
    }

    #[test]
    fn cover_spans_exactly_the_leaves() {
        let shape = Shape::custom("t", 10, 10, 100_000, 10);
        let fanout = shape.node_fanout;
        for end in [1, 7, 64, 100, 410, shape.n_leaves()] {
            let nodes = cover(&shape, 0, end);
            let covered: u32 = nodes
                .iter()
                .map(|n| fanout.pow(shape.node_depth - n.level))
                .sum();
            assert_eq!(covered, end);
        }
    }
}
