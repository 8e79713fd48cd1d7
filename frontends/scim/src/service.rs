//! The service provider's operations, apart from HTTP: what a route or a bulk
//! operation asks, answered from a snapshot or written through the engine as one
//! write (one transaction).
//!
//! Only users and groups whose source is `scim` exist here, and those the adoption
//! policy (`ScimSettings::adopt`) lets SCIM take over: SCIM neither sees nor changes
//! anything else an administrator, an import or a directory sync created (a userName
//! taken by one of them is a 409 saying why it is not adopted). An adoptable entity
//! is shown as a SCIM resource (so an identity provider's search finds it); the first
//! write to it (PUT, PATCH, DELETE), or a POST whose entry matches it
//! (`portcullis_engine::find_match`), adopts it in the same write (`Op::Adopt`), and
//! the answer names its old source in `X-Portcullis-Adopted-From`. Read-modify-write (PUT, PATCH, DELETE) computes
//! its write from a snapshot, `If-Match` and every SCIM refusal included, and writes
//! it behind an `Op::Expect` on the version of the resource it read: a concurrent
//! change makes the engine refuse the whole write, and the service reads again and
//! retries, so a concurrent change is never lost. Everything here may block on a
//! commit: call it from `spawn_blocking`.

use std::cmp::Ordering;
use std::sync::Arc;

use axum::http::StatusCode;
use portcullis_engine::{
    Actor, AdoptionEntry, AdoptionPolicy, Engine, EntityKind, Error, Group, GroupSpec, Id,
    ListQuery, Op, Password, Snapshot, Source, Spec, Time, User, UserSpec, ValidationError,
    WriteOutcome, find_match,
};
use serde_json::{Map, Value, json};

use crate::ScimSettings;
use crate::error::{ScimError, ScimType};
use crate::filter::{Filter, Limits, parse_filter_with, parse_path_with};
use crate::patch;
use crate::query::{Projection, SortKey, compare_keys, matches, resolve, sort_value, validate};
use crate::resource::{
    Fields, apply_group_view, apply_user_view, decorate, etag, take_password, view_from_body,
};
use crate::schema::{LIST_RESPONSE, ResourceKind};

/// What an operation answers: a status, maybe a resource, and the headers that go
/// with it.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Option<Value>,
    /// For `Location` (a created resource).
    pub location: Option<String>,
    /// For `ETag`.
    pub version: Option<String>,
    /// The revision the answer reflects (a write's own revision).
    pub revision: u64,
    /// The source the write took the resource over from, if it adopted it.
    pub adopted_from: Option<Source>,
}

/// Who asks, and where the resources live for them.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The name recorded in the operation log.
    pub actor: Actor,
    /// The absolute URL of the SCIM root, for `Location`, `meta.location`, `$ref`.
    pub base: String,
}

/// A list or search request (RFC 7644 §3.4.2, §3.4.3).
#[derive(Debug, Clone, Default)]
pub(crate) struct ListRequest {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub projection: Projection,
}

/// An edit of a resource's spec, given the snapshot names are resolved with and the
/// resource's current SCIM fields. Returns a password to set, if any.
type Edit<'a> = &'a dyn Fn(&mut Spec, &Snapshot, &Fields) -> Result<Option<String>, ScimError>;

/// How many times a write is computed again from a newer snapshot when a concurrent
/// write changed its resource first: each retry means another write to the resource
/// committed, so this bounds the writers racing on one resource, not the time taken.
const ATTEMPTS: usize = 64;

/// A stored resource: its SCIM fields and times.
struct Loaded {
    fields: Fields,
    created: Time,
    modified: Time,
}

/// Whether SCIM sees the entity `id` of `kind` whose source is `source`: it is
/// SCIM's, or `policy` lets SCIM adopt it. `Some(None)`: SCIM's; `Some(Some(from))`:
/// adoptable from `from`; `None`: not SCIM's to see.
fn visibility(
    snapshot: &Snapshot,
    policy: &AdoptionPolicy,
    kind: EntityKind,
    id: Id,
    source: &Source,
) -> Option<Option<Source>> {
    if source == &Source::Scim {
        return Some(None);
    }
    (policy.adopts() && policy.may_adopt(snapshot, kind, id, &Source::Scim).is_ok())
        .then(|| Some(source.clone()))
}

impl Loaded {
    fn from_json(
        kind: ResourceKind,
        json: Value,
        snapshot: &Snapshot,
        policy: &AdoptionPolicy,
    ) -> Option<Loaded> {
        match kind {
            ResourceKind::User => {
                Loaded::user(&serde_json::from_value(json).ok()?, snapshot, policy)
            }
            ResourceKind::Group => {
                Loaded::group(&serde_json::from_value(json).ok()?, snapshot, policy)
            }
        }
    }

    /// A user, if it is SCIM's or SCIM may adopt it.
    fn user(user: &User, snapshot: &Snapshot, policy: &AdoptionPolicy) -> Option<Loaded> {
        visibility(snapshot, policy, EntityKind::User, user.id, &user.source)?;
        Some(Loaded {
            fields: Fields::from_user(user, snapshot),
            created: user.created_at,
            modified: user.updated_at,
        })
    }

    /// A group, if it is SCIM's or SCIM may adopt it.
    fn group(group: &Group, snapshot: &Snapshot, policy: &AdoptionPolicy) -> Option<Loaded> {
        visibility(snapshot, policy, EntityKind::Group, group.id, &group.source)?;
        Some(Loaded {
            fields: Fields::from_group(group),
            created: group.created_at,
            modified: group.updated_at,
        })
    }

    /// The full resource and its version.
    fn resource(&self, base: &str) -> (Map<String, Value>, String) {
        let view = self.fields.view();
        let version = etag(&view);
        let resource = decorate(
            self.fields.kind(),
            view,
            base,
            self.created,
            self.modified,
            &version,
        );
        (resource, version)
    }
}

fn load(
    snapshot: &Snapshot,
    policy: &AdoptionPolicy,
    kind: ResourceKind,
    id: &str,
) -> Result<Loaded, ScimError> {
    let not_found = || ScimError::not_found(kind.name(), id);
    let parsed = Id::parse(id).ok_or_else(not_found)?;
    // By id only: a username or group name that looks like an id is not this one.
    let reference = parsed.to_string();
    let loaded = match kind {
        ResourceKind::User => snapshot
            .user(&reference)
            .filter(|user| user.id == parsed)
            .and_then(|user| Loaded::user(&user, snapshot, policy)),
        ResourceKind::Group => snapshot
            .group(&reference)
            .filter(|group| group.id == parsed)
            .and_then(|group| Loaded::group(&group, snapshot, policy)),
    };
    loaded.ok_or_else(not_found)
}

/// Whether an `If-Match`/`If-None-Match` header names `version` (weakly compared,
/// as SCIM's weak ETags ask), or is `*`.
pub(crate) fn etag_matches(header: &str, version: &str) -> bool {
    let bare = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    header
        .split(',')
        .any(|tag| tag.trim() == "*" || bare(tag) == bare(version))
}

/// The current SCIM fields of `spec`, if it is the SCIM resource `id` (SCIM's, or
/// adoptable under `policy`) and `If-Match` (if any) names its version; and the
/// source an adoption would take it from.
fn checked(
    kind: ResourceKind,
    id: Id,
    spec: &Spec,
    snapshot: &Snapshot,
    policy: &AdoptionPolicy,
    if_match: Option<&str>,
) -> Result<(Fields, Option<Source>), ScimError> {
    let not_found = || ScimError::not_found(kind.name(), &id.to_string());
    let (fields, adopt_from) = match spec {
        Spec::User(user) if user.id == Some(id) => (
            Fields::from_user_spec(id, user, snapshot),
            visibility(snapshot, policy, EntityKind::User, id, &user.source)
                .ok_or_else(not_found)?,
        ),
        Spec::Group(group) if group.id == Some(id) => (
            Fields::from_group_spec(id, group, snapshot),
            visibility(snapshot, policy, EntityKind::Group, id, &group.source)
                .ok_or_else(not_found)?,
        ),
        _ => return Err(not_found()),
    };
    if let Some(if_match) = if_match {
        if !etag_matches(if_match, &etag(&fields.view())) {
            return Err(ScimError::PreconditionFailed);
        }
    }
    Ok((fields, adopt_from))
}

/// The resource `id` as `snapshot` holds it, which the write computed from it
/// expects.
struct Current {
    spec: Spec,
    /// Its SCIM fields (it is SCIM's or adoptable, and `If-Match`, if any, names
    /// its version).
    fields: Fields,
    /// Its engine version.
    version: Time,
    /// The source SCIM adopts it from with this write, if it is not SCIM's yet.
    adopt_from: Option<Source>,
}

fn current(
    snapshot: &Snapshot,
    policy: &AdoptionPolicy,
    kind: ResourceKind,
    id: Id,
    if_match: Option<&str>,
) -> Result<Current, ScimError> {
    let target = id.to_string();
    let not_found = || ScimError::not_found(kind.name(), &target);
    let spec = snapshot
        .spec(kind.engine_kind(), &target)
        .map_err(|_| not_found())?;
    let version = snapshot
        .version(kind.engine_kind(), &target)
        .map_err(|_| not_found())?;
    let (fields, adopt_from) = checked(kind, id, &spec, snapshot, policy, if_match)?;
    Ok(Current {
        spec,
        fields,
        version,
        adopt_from,
    })
}

/// A whole resource to write over an existing one.
struct Put<'a> {
    view: &'a Map<String, Value>,
    password: Option<String>,
    if_match: Option<&'a str>,
    /// The answer's status: 200 for a PUT, 201 for a POST that adopted.
    status: StatusCode,
}

pub(crate) struct Service {
    pub engine: Arc<Engine>,
    pub settings: std::sync::Arc<ScimSettings>,
}

impl Service {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_len: self.settings.max_filter_len,
            max_depth: self.settings.max_filter_depth,
        }
    }

    fn policy(&self) -> &AdoptionPolicy {
        &self.settings.adopt
    }

    #[expect(clippy::too_many_arguments, reason = "an answer's parts, named")]
    fn answer(
        &self,
        kind: ResourceKind,
        id: Id,
        status: StatusCode,
        revision: u64,
        adopted_from: Option<Source>,
        context: &Context,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        let snapshot = self.engine.snapshot();
        let loaded = load(&snapshot, self.policy(), kind, &id.to_string())?;
        let (resource, version) = loaded.resource(&context.base);
        let location = resource["meta"]["location"].as_str().map(str::to_owned);
        Ok(Answer {
            status,
            body: Some(Value::Object(projection.apply(kind, resource))),
            location: (status == StatusCode::CREATED)
                .then_some(location)
                .flatten(),
            version: Some(version),
            revision,
            adopted_from,
        })
    }

    /// The error of a write: a 404 for the target, else the engine's.
    fn write_error(error: Error, kind: ResourceKind, target: &str) -> ScimError {
        match error {
            Error::Validation(ValidationError::NotFound(missing))
                if missing.kind == kind.engine_kind() && missing.reference == target =>
            {
                ScimError::not_found(kind.name(), target)
            }
            other => ScimError::from_engine(other),
        }
    }

    pub(crate) fn get(
        &self,
        kind: ResourceKind,
        id: &str,
        context: &Context,
        projection: &Projection,
        if_none_match: Option<&str>,
    ) -> Result<Answer, ScimError> {
        let snapshot = self.engine.snapshot();
        let loaded = load(&snapshot, self.policy(), kind, id)?;
        let (resource, version) = loaded.resource(&context.base);
        if if_none_match.is_some_and(|header| etag_matches(header, &version)) {
            return Ok(Answer {
                status: StatusCode::NOT_MODIFIED,
                body: None,
                location: None,
                version: Some(version),
                revision: snapshot.revision(),
                adopted_from: None,
            });
        }
        Ok(Answer {
            status: StatusCode::OK,
            body: Some(Value::Object(projection.apply(kind, resource))),
            location: None,
            version: Some(version),
            revision: snapshot.revision(),
            adopted_from: None,
        })
    }

    pub(crate) fn create(
        &self,
        kind: ResourceKind,
        body: Value,
        context: &Context,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        let mut view = view_from_body(kind, body)?;
        let password = take_password(kind, &mut view)?;
        let snapshot = self.engine.snapshot();
        let spec = match kind {
            ResourceKind::User => {
                let mut spec = UserSpec::new(String::new());
                apply_user_view(&view, &mut spec)?;
                spec.password = password.clone().map(Password::new);
                Spec::User(spec)
            }
            ResourceKind::Group => {
                let mut spec = GroupSpec::new(String::new());
                apply_group_view(&view, &mut spec, &snapshot, &[])?;
                Spec::Group(spec)
            }
        };
        if let Some(existing) = self.adoptable_match(&snapshot, &spec)? {
            // The entry names an account SCIM may take over: adopt it, and apply the
            // request to it as a PUT would, in one write.
            let put = Put {
                view: &view,
                password,
                if_match: None,
                status: StatusCode::CREATED,
            };
            return self.put(kind, existing, put, context, projection);
        }
        let outcome = self
            .engine
            .write(&context.actor, vec![Op::Create(spec)])
            .map_err(ScimError::from_engine)?;
        let id = *outcome
            .ids
            .first()
            .ok_or_else(|| ScimError::Internal("a create produced no id".to_owned()))?;
        self.answer(
            kind,
            id,
            StatusCode::CREATED,
            outcome.revision,
            None,
            context,
            projection,
        )
    }

    /// The existing user or group a created `spec` names that SCIM adopts: `None`
    /// when it names none, or one that is SCIM's already (the engine refuses the
    /// duplicate). A match SCIM may not adopt, or an ambiguous one, is a 409 saying
    /// why. `externalId` is matched only when the policy adopts at all: without it,
    /// a new resource with a known `externalId` is created as before.
    fn adoptable_match(&self, snapshot: &Snapshot, spec: &Spec) -> Result<Option<Id>, ScimError> {
        let policy = self.policy();
        let (kind, entry) = match spec {
            Spec::User(user) => (
                EntityKind::User,
                AdoptionEntry {
                    name: &user.username,
                    email: user.email.as_deref(),
                    external_id: user.external_id.as_deref().filter(|_| policy.adopts()),
                },
            ),
            Spec::Group(group) => (
                EntityKind::Group,
                AdoptionEntry {
                    name: &group.name,
                    email: None,
                    external_id: group.external_id.as_deref().filter(|_| policy.adopts()),
                },
            ),
            _ => return Ok(None),
        };
        let refused = |refusal: portcullis_engine::AdoptionRefusal| {
            ScimError::from_engine(Error::Validation(ValidationError::Adoption(refusal)))
        };
        let Some(matched) = find_match(snapshot, kind, &entry).map_err(refused)? else {
            return Ok(None);
        };
        if matched.source == Source::Scim {
            return Ok(None);
        }
        policy
            .may_adopt(snapshot, kind, matched.id, &Source::Scim)
            .map_err(refused)?;
        Ok(Some(matched.id))
    }

    pub(crate) fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        body: Value,
        if_match: Option<String>,
        context: &Context,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        let mut view = view_from_body(kind, body)?;
        let password = take_password(kind, &mut view)?;
        let parsed = Id::parse(id).ok_or_else(|| ScimError::not_found(kind.name(), id))?;
        let put = Put {
            view: &view,
            password,
            if_match: if_match.as_deref(),
            status: StatusCode::OK,
        };
        self.put(kind, parsed, put, context, projection)
    }

    /// Sets the resource `id` to what `put` says (a PUT, or a POST that adopts).
    fn put(
        &self,
        kind: ResourceKind,
        id: Id,
        put: Put<'_>,
        context: &Context,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        let edit: Edit = &|spec, snapshot, fields| {
            apply_view(put.view, spec, snapshot, fields)?;
            Ok(put.password.clone())
        };
        let (id, outcome, adopted_from) =
            self.modify_id(kind, id, put.if_match, edit, &context.actor)?;
        self.answer(
            kind,
            id,
            put.status,
            outcome.revision,
            adopted_from,
            context,
            projection,
        )
    }

    pub(crate) fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        if_match: Option<String>,
        context: &Context,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        let limits = self.limits();
        let operations = patch::parse(body, limits)?;
        let edit: Edit = &|spec, snapshot, fields| {
            let mut view = fields.view();
            patch::apply(kind, &mut view, &operations, limits)?;
            let password = take_password(kind, &mut view)?;
            apply_view(&view, spec, snapshot, fields)?;
            Ok(password)
        };
        let (id, outcome, adopted_from) =
            self.modify(kind, id, if_match.as_deref(), edit, &context.actor)?;
        self.answer(
            kind,
            id,
            StatusCode::OK,
            outcome.revision,
            adopted_from,
            context,
            projection,
        )
    }

    pub(crate) fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<String>,
        context: &Context,
    ) -> Result<Answer, ScimError> {
        let parsed = Id::parse(id).ok_or_else(|| ScimError::not_found(kind.name(), id))?;
        let target = parsed.to_string();
        let adopted_from = std::cell::Cell::new(None);
        let outcome = self.write_current(kind, &target, &context.actor, |snapshot| {
            let current = current(snapshot, self.policy(), kind, parsed, if_match.as_deref())?;
            let mut ops = vec![expect(kind, &target, current.version)];
            ops.extend(self.adopt(kind, &target, &current));
            ops.push(Op::Delete {
                kind: kind.engine_kind(),
                target: target.clone(),
            });
            adopted_from.set(current.adopt_from);
            Ok(ops)
        })?;
        Ok(Answer {
            status: StatusCode::NO_CONTENT,
            body: None,
            location: None,
            version: None,
            revision: outcome.revision,
            adopted_from: adopted_from.into_inner(),
        })
    }

    /// The adoption a write to `current` begins with, if it is not SCIM's yet.
    fn adopt(&self, kind: ResourceKind, target: &str, current: &Current) -> Option<Op> {
        current.adopt_from.as_ref().map(|_| Op::Adopt {
            kind: kind.engine_kind(),
            target: target.to_owned(),
            source: Source::Scim,
            policy: self.policy().clone(),
        })
    }

    /// Applies `edit` to the resource as the current snapshot holds it and replaces
    /// it with the result, expecting the version it read (`write_current`). A
    /// password is hashed on this thread by `Engine::write`, never in the writer.
    fn modify(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&str>,
        edit: Edit,
        actor: &Actor,
    ) -> Result<(Id, WriteOutcome, Option<Source>), ScimError> {
        let parsed = Id::parse(id).ok_or_else(|| ScimError::not_found(kind.name(), id))?;
        self.modify_id(kind, parsed, if_match, edit, actor)
    }

    /// [`Service::modify`] of the resource `parsed`; an adoptable one is adopted in
    /// the same write, and the source it came from returned.
    fn modify_id(
        &self,
        kind: ResourceKind,
        parsed: Id,
        if_match: Option<&str>,
        edit: Edit,
        actor: &Actor,
    ) -> Result<(Id, WriteOutcome, Option<Source>), ScimError> {
        let target = parsed.to_string();
        let adopted_from = std::cell::Cell::new(None);
        let outcome = self.write_current(kind, &target, actor, |snapshot| {
            let current = current(snapshot, self.policy(), kind, parsed, if_match)?;
            let mut spec = current.spec.clone();
            let password = edit(&mut spec, snapshot, &current.fields)?;
            if let (Some(password), Spec::User(user)) = (password, &mut spec) {
                user.password = Some(Password::new(password));
            }
            let mut ops = vec![expect(kind, &target, current.version)];
            ops.extend(self.adopt(kind, &target, &current));
            ops.push(Op::Replace {
                target: target.clone(),
                spec,
            });
            adopted_from.set(current.adopt_from);
            Ok(ops)
        })?;
        Ok((parsed, outcome, adopted_from.into_inner()))
    }

    /// Writes what `plan` makes of the current snapshot: operations that begin with
    /// an `Op::Expect` on the version of the resource `target` it read, so that the
    /// engine refuses the whole write if a concurrent one changed the resource since.
    /// Then reads the newer snapshot and plans again (SCIM applies a PUT or PATCH to
    /// the current state, and checks `If-Match` against it), at most `ATTEMPTS`
    /// times. Every SCIM refusal is `plan`'s, decided before the write.
    fn write_current(
        &self,
        kind: ResourceKind,
        target: &str,
        actor: &Actor,
        plan: impl Fn(&Snapshot) -> Result<Vec<Op>, ScimError>,
    ) -> Result<WriteOutcome, ScimError> {
        for _ in 0..ATTEMPTS {
            let ops = plan(&self.engine.snapshot())?;
            match self.engine.write(actor, ops) {
                Ok(outcome) => return Ok(outcome),
                // The snapshot that shows the change is published before the write
                // that met it is answered: the next read sees it.
                Err(Error::Validation(ValidationError::VersionMismatch { .. })) => continue,
                Err(error) => return Err(Service::write_error(error, kind, target)),
            }
        }
        Err(ScimError::Refused {
            status: StatusCode::CONFLICT,
            detail: format!(
                "{} `{target}` was changed by {ATTEMPTS} concurrent writes while this request was applied; try again",
                kind.name()
            ),
        })
    }

    /// Lists (or searches) resources of `kinds` (both, for a search at the root).
    pub(crate) fn list(
        &self,
        kinds: &[ResourceKind],
        request: &ListRequest,
        context: &Context,
    ) -> Result<Answer, ScimError> {
        let snapshot = self.engine.snapshot();
        let filter = match request.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(
                parse_filter_with(text, self.limits())
                    .map_err(|error| ScimError::invalid_filter(&error))?,
            ),
        };
        // At the root, a filter need only make sense for one of the kinds.
        let mut searched = Vec::new();
        let mut first_error = None;
        for &kind in kinds {
            match filter.as_ref().map(|f| validate(kind, f)).unwrap_or(Ok(())) {
                Ok(()) => searched.push(kind),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        if searched.is_empty() {
            return Err(first_error.unwrap_or_else(|| {
                ScimError::Internal("a search over no resource type".to_owned())
            }));
        }
        let descending = match request.sort_order.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(order) if order.eq_ignore_ascii_case("ascending") => false,
            Some(order) if order.eq_ignore_ascii_case("descending") => true,
            Some(order) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder `{order}` is neither `ascending` nor `descending`"
                )));
            }
        };
        let sort_path = match request.sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => {
                let path = parse_path_with(text, self.limits())
                    .ok()
                    .filter(|p| p.filter.is_none())
                    .ok_or_else(|| {
                        ScimError::invalid_value(format!("sortBy `{text}` is not an attribute"))
                    })?;
                Some(path.attr)
            }
        };

        struct Found {
            key: Option<SortKey>,
            created: Time,
            id: Id,
            kind: ResourceKind,
            resource: Map<String, Value>,
        }
        let mut found = Vec::new();
        for &kind in &searched {
            let sort_target = match &sort_path {
                None => None,
                Some(path) => match resolve(kind, path) {
                    Ok(target) => Some(target),
                    Err(_) if kinds.len() > 1 => None,
                    Err(detail) => {
                        return Err(ScimError::invalid_value(format!("sortBy: {detail}")));
                    }
                },
            };
            for json in candidates(&snapshot, self.policy(), kind, filter.as_ref()) {
                let Some(loaded) = Loaded::from_json(kind, json, &snapshot, self.policy()) else {
                    continue;
                };
                let (resource, _) = loaded.resource(&context.base);
                if filter
                    .as_ref()
                    .is_some_and(|f| !matches(kind, f, &resource))
                {
                    continue;
                }
                found.push(Found {
                    key: sort_target.as_ref().and_then(|t| sort_value(&resource, t)),
                    created: loaded.created,
                    id: loaded.fields.id(),
                    kind,
                    resource,
                });
            }
        }
        if sort_path.is_some() && found.len() > self.settings.max_sort {
            return Err(ScimError::bad(
                ScimType::TooMany,
                format!(
                    "the filter matches {} resources; sorting is limited to {}: narrow the filter",
                    found.len(),
                    self.settings.max_sort
                ),
            ));
        }
        // A stable order: creation time, then id; sortBy before both.
        let by_default = |a: &Found, b: &Found| a.created.cmp(&b.created).then(a.id.cmp(&b.id));
        found.sort_by(|a, b| {
            let keyed = match (&sort_path, descending) {
                (None, _) => Ordering::Equal,
                // Missing values go last ascending, and so first descending.
                (Some(_), false) => compare_keys(&a.key, &b.key),
                (Some(_), true) => compare_keys(&a.key, &b.key).reverse(),
            };
            keyed.then_with(|| by_default(a, b))
        });
        let total = found.len();
        let start =
            usize::try_from(request.start_index.unwrap_or(1).max(1) - 1).unwrap_or(usize::MAX);
        let count = match request.count {
            None => self.settings.max_results,
            Some(count) => usize::try_from(count.max(0))
                .unwrap_or(usize::MAX)
                .min(self.settings.max_results),
        };
        let page: Vec<Value> = found
            .into_iter()
            .skip(start)
            .take(count)
            .map(|f| Value::Object(request.projection.apply(f.kind, f.resource)))
            .collect();
        Ok(Answer {
            status: StatusCode::OK,
            body: Some(json!({
                "schemas": [LIST_RESPONSE],
                "totalResults": total,
                "itemsPerPage": page.len(),
                "startIndex": start.saturating_add(1),
                "Resources": page,
            })),
            location: None,
            version: None,
            revision: snapshot.revision(),
            adopted_from: None,
        })
    }
}

/// The precondition of a write computed from `version` of the resource `target`.
fn expect(kind: ResourceKind, target: &str, version: Time) -> Op {
    Op::Expect {
        kind: kind.engine_kind(),
        target: target.to_owned(),
        version: Some(version),
    }
}

fn apply_view(
    view: &Map<String, Value>,
    spec: &mut Spec,
    snapshot: &Snapshot,
    fields: &Fields,
) -> Result<(), ScimError> {
    match spec {
        Spec::User(user) => apply_user_view(view, user),
        Spec::Group(group) => apply_group_view(view, group, snapshot, fields.members()),
        Spec::Node(_) | Spec::Asset(_) | Spec::Rule(_) | Spec::Role(_) | Spec::Token(_) => Err(
            ScimError::Internal("a SCIM edit reached a spec of another kind".to_owned()),
        ),
    }
}

/// The entities a filter can match, as model JSON: one lookup when the filter pins
/// an indexed attribute with `eq` (what identity providers send to find a resource),
/// else every entity of the kind from SCIM or a source `policy` adopts from. The
/// filter itself, and whether SCIM sees each one (`Loaded`), is applied afterwards.
fn candidates(
    snapshot: &Snapshot,
    policy: &AdoptionPolicy,
    kind: ResourceKind,
    filter: Option<&Filter>,
) -> Vec<Value> {
    let sources: Vec<String> = std::iter::once(Source::Scim)
        .chain(policy.sources.iter().cloned())
        .map(|source| source.to_string())
        .collect();
    let of_sources = |fields: Vec<(String, String)>| {
        let mut items = Vec::new();
        for source in &sources {
            let mut fields = fields.clone();
            fields.push(("source".to_owned(), source.clone()));
            items.extend(
                snapshot
                    .list_json(
                        kind.engine_kind(),
                        &ListQuery {
                            search: None,
                            fields,
                            expired: None,
                            offset: 0,
                            limit: usize::MAX,
                        },
                    )
                    .items,
            );
        }
        items
    };
    let every = || of_sources(Vec::new());
    let Some((attribute, value)) = filter.and_then(|f| pinned(kind, f)) else {
        return every();
    };
    let engine_kind: EntityKind = kind.engine_kind();
    match attribute {
        "id" => Id::parse(&value)
            .and_then(|id| snapshot.entity_json(engine_kind, &id.to_string()).ok())
            .into_iter()
            .collect(),
        // Names resolve case-insensitively, like `userName` and `displayName`; an id
        // would be resolved as an id, so it takes the long way.
        "userName" | "displayName" if Id::parse(&value).is_none() => snapshot
            .entity_json(engine_kind, &value)
            .ok()
            .into_iter()
            .collect(),
        "externalId" => of_sources(vec![("external_id".to_owned(), value)]),
        _ => every(),
    }
}

/// An attribute the filter requires to equal a string, if one is indexed.
fn pinned(kind: ResourceKind, filter: &Filter) -> Option<(&'static str, String)> {
    match filter {
        Filter::Compare {
            path,
            op: crate::filter::CompareOp::Eq,
            value: crate::filter::CompValue::String(value),
        } => {
            let target = resolve(kind, path).ok()?;
            if target.extension.is_some() || target.sub.is_some() {
                return None;
            }
            let name = target.attribute.name;
            let indexed = matches!(
                (kind, name),
                (_, "id" | "externalId")
                    | (ResourceKind::User, "userName")
                    | (ResourceKind::Group, "displayName")
            );
            indexed.then(|| (name, value.clone()))
        }
        Filter::And(operands) => operands.iter().find_map(|f| pinned(kind, f)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly() {
        assert!(etag_matches("W/\"abc\"", "W/\"abc\""));
        assert!(etag_matches("\"abc\"", "W/\"abc\""));
        assert!(etag_matches("W/\"x\", W/\"abc\"", "W/\"abc\""));
        assert!(etag_matches("*", "W/\"abc\""));
        assert!(!etag_matches("W/\"abd\"", "W/\"abc\""));
    }
}
