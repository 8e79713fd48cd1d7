//! The write path against an independent model of it ([`model::Model`]): random
//! scripts of writes run on a real engine (a redb file in a temporary directory) and
//! on the model, and after every write the two must agree on
//!
//! - the outcome: both accept, or both refuse, the engine with one of the rules the
//!   model says the write broke (compared by error variant, never by message);
//! - the estate, entity by entity and field by field: engine ids are bound to model
//!   ids by name (a binding, once made, must hold for good, so replaces and renames
//!   keep ids), timestamps by the write that set them;
//! - the revision, and that a refused write published nothing;
//! - decisions and effective roles: the fast path (`Snapshot`) against the reference
//!   evaluator run on the **model's** estate, so a wrong but self-consistent write
//!   cannot pass.
//!
//! It is the safety net for rewrites of the snapshot and the write path: the model
//! knows nothing of either. A coverage check at the end asserts that every kind of
//! operation and every refusal variant happened during the run.

mod model;
mod script;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use portcullis_engine::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use model::{Model, REFUSAL_VARIANTS, Refusal};
use script::{Act, Script};

/// Scripts per `cargo test`.
const SCRIPTS: u32 = 1000;
/// Writes per script after the prelude, at most.
const MAX_WRITES: usize = 24;
/// Questions asked after each write (rotating through the script's twelve); all of
/// them after the last.
const ASKS_PER_WRITE: usize = 3;
const ACTOR: &str = "model-test";
/// Threads the scripts are spread over.
const THREADS: u32 = 4;

/// How often each operation and each refusal happened across the run.
static COVERAGE: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn count(what: String) {
    *COVERAGE.lock().unwrap().entry(what).or_default() += 1;
}

type Outcome = Result<(), TestCaseError>;

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

/// Engine ids bound to model ids, one to one.
#[derive(Default)]
struct Ids {
    to_model: HashMap<Id, Id>,
    to_engine: HashMap<Id, Id>,
}

impl Ids {
    fn bind(&mut self, engine: Id, model: Id, what: &str) -> Outcome {
        let known_model = self.to_model.get(&engine).copied();
        let known_engine = self.to_engine.get(&model).copied();
        match (known_model, known_engine) {
            (Some(m), _) if m != model => Err(fail(format!(
                "{what}: engine id {engine} was bound to another entity before"
            ))),
            (_, Some(e)) if e != engine => {
                Err(fail(format!("{what}: its id changed from {e} to {engine}")))
            }
            _ => {
                // Ids a spec asked for are the engine's too.
                let requested = model.as_bytes()[0] == 0 && model != Id::from_u128(0);
                if requested && engine != model {
                    return Err(fail(format!("{what}: asked for id {model}, got {engine}")));
                }
                self.to_model.insert(engine, model);
                self.to_engine.insert(model, engine);
                Ok(())
            }
        }
    }

    fn model(&self, engine: Id) -> Result<Id, TestCaseError> {
        self.to_model.get(&engine).copied().ok_or_else(|| {
            fail(format!(
                "the engine refers to {engine}, which it does not hold"
            ))
        })
    }

    fn models(&self, engine: &[Id]) -> Result<Vec<Id>, TestCaseError> {
        engine.iter().map(|id| self.model(*id)).collect()
    }
}

/// A real engine on a redb file, the model, and what binds them.
struct Run {
    dir: tempfile::TempDir,
    engine: Engine,
    model: Model,
    ids: Ids,
    /// The engine's clock at each write, by the write's number.
    times: BTreeMap<u64, Time>,
    /// The tokens writes act as, by `script::ACTOR_TOKENS` index: (engine id, model
    /// id), bound once the prelude is written.
    actors: Vec<(Id, Id)>,
}

fn engine_path(n: &std::path::Path) -> std::path::PathBuf {
    n.join("store.redb")
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(engine_path(dir.path())).unwrap();
        Run {
            dir,
            engine,
            model: Model::new(),
            ids: Ids::default(),
            times: BTreeMap::new(),
            actors: Vec::new(),
        }
    }

    fn script(&mut self, script: &Script) -> Outcome {
        self.compare_estates("the new store")?;
        for (n, write) in script.writes.iter().enumerate() {
            if n == script.prelude {
                self.bind_actors();
            }
            let actor = script.actors[n];
            self.write(write, actor)
                .map_err(|e| fail(format!("write {n} by {actor:?} {write:?}: {e}")))?;
            if n + 1 < script.prelude {
                continue;
            }
            for k in 0..ASKS_PER_WRITE {
                let ask = &script.asks[(n * ASKS_PER_WRITE + k) % script.asks.len()];
                self.ask(ask)
                    .map_err(|e| fail(format!("after write {n}, {ask:?}: {e}")))?;
            }
        }
        for ask in &script.asks {
            self.ask(ask)
                .map_err(|e| fail(format!("at the end, {ask:?}: {e}")))?;
        }
        Ok(())
    }

    /// The tokens the prelude made for writes to act as. One whose creation was
    /// refused gets an id nothing holds: writes as it are refused, as a deleted one's.
    fn bind_actors(&mut self) {
        self.actors = (0..script::ACTOR_TOKENS)
            .map(|i| {
                let name = script::TOKENS[i];
                match self.model.token(name) {
                    Some(model) => (self.ids.to_engine[&model], model),
                    None => {
                        let nobody = Id::from_u128(0xDEAD_0000 + i as u128);
                        (nobody, nobody)
                    }
                }
            })
            .collect();
    }

    fn write(&mut self, acts: &[Act], actor: Option<usize>) -> Outcome {
        for act in acts {
            count(act.label());
        }
        if let [Act::Reopen] = acts {
            // The store's lock goes with the engine: drop it before opening again.
            let placeholder = Engine::in_memory().map_err(|e| fail(e.to_string()))?;
            drop(std::mem::replace(&mut self.engine, placeholder));
            self.engine = Engine::open(engine_path(self.dir.path()))
                .map_err(|e| fail(format!("reopening: {e}")))?;
            self.model.reopened();
            return self.compare_estates("after reopening");
        }
        let ops = |model: &Model| -> Vec<Op> {
            acts.iter().filter_map(|a| script::op(a, model)).collect()
        };
        let (engine_actor, writer) = match actor {
            None => (
                Actor::system(ACTOR),
                model::Writer {
                    name: ACTOR.to_owned(),
                    token: None,
                },
            ),
            Some(i) => {
                let name = script::TOKENS[i];
                let (engine_id, model_id) = self.actors[i];
                count("write as a token".to_owned());
                (
                    Actor::token(engine_id, name),
                    model::Writer {
                        name: format!("token:{name}"),
                        token: Some(model_id),
                    },
                )
            }
        };
        let before = self.engine.snapshot();
        let token = matches!(acts, [Act::CreateToken(_)]);
        let engine_result = match (token, ops(&self.model)) {
            (true, mut ops) => match ops.pop() {
                Some(Op::Create(Spec::Token(spec))) => self
                    .engine
                    .create_token(&engine_actor, spec)
                    .map(|(outcome, _)| outcome),
                _ => unreachable!("a token act makes one token create"),
            },
            (false, ops) => self.engine.write(&engine_actor, ops),
        };
        let model_result = self.model.write(&writer, ops(&self.model), token);
        match (engine_result, model_result) {
            (Ok(outcome), Ok(())) => {
                if outcome.revision != self.model.revision {
                    return Err(fail(format!(
                        "the engine wrote revision {}, the model counts {}",
                        outcome.revision, self.model.revision
                    )));
                }
            }
            (Err(Error::Validation(error)), Err((op, problems))) => {
                let refusal = Refusal::of(&error);
                if !problems.contains(&refusal) {
                    return Err(fail(format!(
                        "the engine refused with {refusal:?} (`{error}`); the model found op {op} breaks {problems:?}"
                    )));
                }
                count(format!("refused: {}", refusal.variant()));
                count(format!("refused in detail: {refusal:?}"));
                let after = self.engine.snapshot();
                if !std::sync::Arc::ptr_eq(&before, &after) {
                    return Err(fail("a refused write published a snapshot".to_owned()));
                }
            }
            (Ok(_), Err((op, problems))) => {
                return Err(fail(format!(
                    "the engine accepted what the model refuses: op {op} breaks {problems:?}"
                )));
            }
            (Err(error), Ok(())) => {
                return Err(fail(format!(
                    "the engine refused what the model accepts: {error:?}"
                )));
            }
            (Err(error), Err(_)) => return Err(fail(format!("not a refusal: {error}"))),
        }
        self.compare_estates("after the write")
    }

    /// The engine's estate, entity by entity, against the model's.
    fn compare_estates(&mut self, when: &str) -> Outcome {
        let snapshot = self.engine.snapshot();
        if snapshot.revision() != self.model.revision {
            return Err(fail(format!(
                "{when}: engine at revision {}, model at {}",
                snapshot.revision(),
                self.model.revision
            )));
        }
        let engine = snapshot.estate();
        let model = &self.model;

        // Bind ids by name (paths for nodes), and check the clock write by write.
        let engine_paths = node_paths(&engine.nodes);
        macro_rules! bind {
            ($list:ident, $records:ident, $key:expr, $model_key:expr) => {{
                let mut engine_keys: Vec<String> = engine.$list.iter().map($key).collect();
                let mut model_keys: Vec<String> = model.$records.values().map(|r| $model_key(&r.value)).collect();
                engine_keys.sort();
                model_keys.sort();
                if engine_keys != model_keys {
                    return Err(fail(format!(
                        "{when}: the engine holds {} {engine_keys:?}, the model {model_keys:?}",
                        stringify!($list)
                    )));
                }
                for entity in &engine.$list {
                    let key = $key(entity);
                    let record = model
                        .$records
                        .values()
                        .find(|r| $model_key(&r.value) == key)
                        .expect("same keys");
                    self.ids.bind(entity.id, record.value.id, &format!("{} `{key}`", stringify!($list)))?;
                    for (write, at, what) in [
                        (record.created_in, entity.created_at, "created_at"),
                        (record.updated_in, entity.updated_at, "updated_at"),
                    ] {
                        let known = *self.times.entry(write).or_insert(at);
                        if known != at {
                            return Err(fail(format!(
                                "{when}: {} `{key}` has {what} {at}, other entities stamped in write {write} have {known}",
                                stringify!($list)
                            )));
                        }
                    }
                }
            }};
        }
        bind!(users, users, |u: &User| u.username.clone(), |u: &User| u
            .username
            .clone());
        bind!(groups, groups, |g: &Group| g.name.clone(), |g: &Group| g
            .name
            .clone());
        bind!(
            nodes,
            nodes,
            |n: &Node| engine_paths[&n.id].clone(),
            |n: &Node| model.node_path(n.id)
        );
        bind!(assets, assets, |a: &Asset| a.name.clone(), |a: &Asset| a
            .name
            .clone());
        bind!(rules, rules, |r: &Rule| r.name.clone(), |r: &Rule| r
            .name
            .clone());
        bind!(roles, roles, |r: &Role| r.name.clone(), |r: &Role| r
            .name
            .clone());
        bind!(tokens, tokens, |t: &Token| t.name.clone(), |t: &Token| t
            .name
            .clone());
        for asset in &engine.assets {
            let model_asset = &model.assets[&self.ids.model(asset.id)?].value;
            for account in &asset.accounts {
                if let Some(twin) = model_asset.account(&account.username) {
                    let what = format!("account `{}` of `{}`", account.username, asset.name);
                    self.ids.bind(account.id, twin.id, &what)?;
                }
            }
        }

        // Then every entity, references and all, in the model's ids.
        let times = &self.times;
        let expected = model.estate(|write| times[&write]);
        let ids = &self.ids;
        let mut actual = engine.clone();
        for user in &mut actual.users {
            user.id = ids.model(user.id)?;
        }
        for group in &mut actual.groups {
            group.id = ids.model(group.id)?;
            for member in &mut group.members {
                member.user = ids.model(member.user)?;
            }
            for edge in &mut group.subgroups {
                edge.group = ids.model(edge.group)?;
            }
        }
        for node in &mut actual.nodes {
            node.id = ids.model(node.id)?;
            node.parent = node.parent.map(|p| ids.model(p)).transpose()?;
        }
        for asset in &mut actual.assets {
            asset.id = ids.model(asset.id)?;
            asset.nodes = ids.models(&asset.nodes)?;
            for account in &mut asset.accounts {
                account.id = ids.model(account.id)?;
            }
        }
        for rule in &mut actual.rules {
            rule.id = ids.model(rule.id)?;
            rule.users = ids.models(&rule.users)?;
            rule.groups = ids.models(&rule.groups)?;
            rule.assets = ids.models(&rule.assets)?;
            rule.nodes = ids.models(&rule.nodes)?;
        }
        for role in &mut actual.roles {
            role.id = ids.model(role.id)?;
        }
        for token in &mut actual.tokens {
            token.id = ids.model(token.id)?;
            token.user = token.user.map(|u| ids.model(u)).transpose()?;
        }
        same_entities(when, "user", &actual.users, &expected.users, |u| u.id)?;
        same_entities(when, "group", &actual.groups, &expected.groups, |g| g.id)?;
        same_entities(when, "node", &actual.nodes, &expected.nodes, |n| n.id)?;
        same_entities(when, "asset", &actual.assets, &expected.assets, |a| a.id)?;
        same_entities(when, "rule", &actual.rules, &expected.rules, |r| r.id)?;
        same_entities(when, "role", &actual.roles, &expected.roles, |r| r.id)?;
        same_entities(when, "token", &actual.tokens, &expected.tokens, |t| t.id)?;
        Ok(())
    }

    /// The fast path on the engine's snapshot against the reference evaluator on the
    /// model's estate.
    fn ask(&self, ask: &Ask) -> Outcome {
        let snapshot = self.engine.snapshot();
        let estate = self.model.estate(|write| self.times[&write]);
        let reference = Reference::new(&estate, self.model.revision);
        let (user, asset, account, protocol, action) = ask.resolve(&self.model);
        let query = Query {
            user: &user,
            asset: &asset,
            account: &account,
            protocol: &protocol,
            action,
            at: ask.at,
        };
        count("ask".to_owned());
        match (snapshot.check(&query), reference.check(&query)) {
            (Ok(fast), Ok(expected)) => {
                let mut rules = self.ids.models(&fast.rules.sorted())?;
                rules.sort();
                let same = fast.allowed == expected.allowed
                    && fast.actions == expected.actions
                    && rules == expected.rules.sorted()
                    && fast.valid_until == expected.valid_until
                    && fast.revision == expected.revision;
                if !same {
                    return Err(fail(format!(
                        "the fast path says {fast:?}, the reference on the model {expected:?}"
                    )));
                }
                if fast.allowed {
                    count("ask allowed".to_owned());
                } else if !fast.actions.is_empty() {
                    count("ask granted other actions".to_owned());
                }
            }
            (Err(fast), Err(expected)) if fast.kind == expected.kind => {
                count(format!("ask unknown {:?}", fast.kind));
            }
            (fast, expected) => {
                return Err(fail(format!(
                    "the fast path says {fast:?}, the reference on the model {expected:?}"
                )));
            }
        }
        let fast = snapshot.effective_roles(query.user, ask.scope, ask.at);
        let expected = reference.effective_roles(query.user, ask.scope, ask.at);
        if fast.as_ref().ok() != expected.as_ref().ok() {
            return Err(fail(format!(
                "effective roles on `{}`: fast {fast:?}, reference on the model {expected:?}",
                ask.scope
            )));
        }
        Ok(())
    }
}

use script::Ask;

/// Each node's path, from the parents in `nodes`.
fn node_paths(nodes: &[Node]) -> HashMap<Id, String> {
    fn path(nodes: &[Node], id: Id) -> String {
        let node = nodes.iter().find(|n| n.id == id).expect("parent exists");
        match node.parent {
            None => format!("/{}", node.name),
            Some(parent) => format!("{}/{}", path(nodes, parent), node.name),
        }
    }
    nodes.iter().map(|n| (n.id, path(nodes, n.id))).collect()
}

fn same_entities<T: PartialEq + std::fmt::Debug>(
    when: &str,
    kind: &str,
    actual: &[T],
    expected: &[T],
    id: impl Fn(&T) -> Id,
) -> Outcome {
    for want in expected {
        let got = actual.iter().find(|a| id(a) == id(want));
        if got != Some(want) {
            return Err(fail(format!(
                "{when}: {kind} differs\n engine: {got:?}\n  model: {want:?}"
            )));
        }
    }
    Ok(())
}

#[test]
fn the_engine_writes_what_the_model_writes() {
    // WRITE_MODEL_SCRIPTS overrides the count, for a quick look or a long soak.
    let scripts = std::env::var("WRITE_MODEL_SCRIPTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SCRIPTS);
    // The scripts run on a few threads: a write waits for its fsync, not for a core.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runners: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(move || {
                    let config = Config {
                        cases: scripts.div_ceil(THREADS),
                        failure_persistence: None,
                        ..Config::default()
                    };
                    TestRunner::new(config)
                        .run(&script::script(MAX_WRITES), |script| {
                            Run::new().script(&script)
                        })
                        .err()
                        .map(|error| error.to_string())
                })
            })
            .collect();
        runners
            .into_iter()
            .filter_map(|runner| runner.join().expect("runners return their failures"))
            .collect()
    });
    if let Some(failure) = failures.first() {
        panic!("{failure}");
    }

    let coverage = COVERAGE.lock().unwrap().clone();
    eprintln!("write model coverage: {coverage:#?}");
    let mut missing: Vec<String> = Vec::new();
    let kinds = ["user", "group", "node", "asset", "rule", "role", "token"];
    for kind in kinds {
        for verb in ["create", "replace", "modify", "delete"] {
            missing.push(format!("{verb} {kind}"));
        }
    }
    missing.retain(|label| label != "create token");
    missing.extend(
        [
            "create token (create_token)",
            "move node",
            "add member (op)",
            "add member (edit)",
            "remove member (op)",
            "remove member (edit)",
            "write as a token",
            "add subgroup",
            "record login",
            "reopen",
            "ask allowed",
        ]
        .map(str::to_owned),
    );
    missing.extend(REFUSAL_VARIANTS.iter().map(|v| format!("refused: {v}")));
    missing.retain(|label| coverage.get(label).copied().unwrap_or(0) == 0);
    assert!(missing.is_empty(), "never happened: {missing:?}");
}
