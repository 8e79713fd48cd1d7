//! SCIM resources ↔ engine users and groups.
//!
//! A resource has two forms here. The *view* is the resource as SCIM sees it, with
//! canonical attribute names, built from the engine's spec or model; PATCH edits it,
//! filters read it, and its hash is the ETag. Converting a view back writes only the
//! fields SCIM maps onto the spec and leaves the rest (system roles, MFA, expiry,
//! description, non-SCIM memberships) as they were.
//!
//! Mapping: `userName`↔`username`, `displayName`↔`name` (else `name.formatted`, else
//! `givenName familyName`), the primary (else `work`, else last) of `emails` and of
//! `phoneNumbers`↔`email` and `phone`, `active`↔`active`, `externalId`↔`external_id`,
//! `password`→ the argon2id hash. Groups: `displayName`↔`name`, `members` of type
//! `User`↔ members and of type `Group`↔ subgroups. Everything written gets source
//! `scim`, and so does every membership SCIM writes.
//!
//! Every other attribute a user carries (`name`, `title`, `addresses`, the enterprise
//! extension, every email and phone number …) is kept as it was sent in the engine's
//! free-form attributes under the key `scim` ([`SCIM_ATTRIBUTES`]), and returned.
//! `emails` and `phoneNumbers` are kept whole there too; they are returned as kept
//! while the one the engine chose from them is still the user's, else (an
//! administrator changed the email) as the engine's single value.

use std::collections::HashSet;

use portcullis_engine::{
    EntityKind, Group, GroupSpec, Id, MemberSpec, Snapshot, Source, SubgroupSpec, Time, User,
    UserSpec,
};
use serde_json::{Map, Value, json};

use crate::error::ScimError;
use crate::schema::{Attribute, Kind, Located, Mutability, ResourceKind};

/// A member of a group as SCIM shows it: the member's id (or, for a member the
/// snapshot cannot name, its engine reference) and whether it is a nested group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub value: String,
    pub group: bool,
}

/// The key of the engine's free-form attributes under which SCIM keeps what the model
/// has no field for.
pub(crate) const SCIM_ATTRIBUTES: &str = "scim";

/// The attributes of a user view that map onto engine fields (or are never kept):
/// everything else is kept in the free-form attributes.
const MAPPED_USER_ATTRIBUTES: &[&str] = &[
    "schemas",
    "id",
    "meta",
    "externalId",
    "userName",
    "displayName",
    "active",
    "password",
    "groups",
];

/// The fields SCIM maps, read from a spec or from the stored entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fields {
    User {
        id: Id,
        username: String,
        name: String,
        email: Option<String>,
        phone: Option<String>,
        active: bool,
        external_id: Option<String>,
        /// What SCIM keeps beyond the engine's fields.
        extras: Map<String, Value>,
        /// The SCIM groups the user is in now (read-only).
        groups: Vec<GroupOf>,
    },
    Group {
        id: Id,
        name: String,
        external_id: Option<String>,
        members: Vec<Member>,
    },
}

/// A SCIM group a user belongs to, as the user's read-only `groups` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupOf {
    pub id: Id,
    pub name: String,
    pub direct: bool,
}

/// The SCIM groups `user` belongs to now, directly or through nested groups. Groups
/// written by others are not SCIM resources and are left out, as are memberships
/// that have expired.
fn groups_of(snapshot: &Snapshot, user: Id) -> Vec<GroupOf> {
    snapshot
        .user_groups(&user.to_string(), Time::now())
        .into_iter()
        .filter(|membership| membership.source == Source::Scim)
        .map(|membership| GroupOf {
            id: membership.id,
            name: membership.name,
            direct: membership.direct,
        })
        .collect()
}

impl Fields {
    pub(crate) fn from_user(user: &User, snapshot: &Snapshot) -> Fields {
        Fields::User {
            id: user.id,
            username: user.username.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
            phone: user.phone.clone(),
            active: user.active,
            external_id: user.external_id.clone(),
            extras: scim_extras(&user.attributes),
            groups: groups_of(snapshot, user.id),
        }
    }

    pub(crate) fn from_user_spec(id: Id, spec: &UserSpec, snapshot: &Snapshot) -> Fields {
        Fields::User {
            id,
            username: spec.username.clone(),
            name: spec.name.clone(),
            email: spec.email.clone(),
            phone: spec.phone.clone(),
            active: spec.active,
            external_id: spec.external_id.clone(),
            extras: scim_extras(&spec.attributes),
            groups: groups_of(snapshot, id),
        }
    }

    /// Only memberships SCIM wrote are shown: others belong to whoever wrote them.
    pub(crate) fn from_group(group: &Group) -> Fields {
        let users = group
            .members
            .iter()
            .filter(|m| m.source == Source::Scim)
            .map(|m| Member {
                value: m.user.to_string(),
                group: false,
            });
        let groups = group
            .subgroups
            .iter()
            .filter(|m| m.source == Source::Scim)
            .map(|m| Member {
                value: m.group.to_string(),
                group: true,
            });
        Fields::Group {
            id: group.id,
            name: group.name.clone(),
            external_id: group.external_id.clone(),
            members: users.chain(groups).collect(),
        }
    }

    /// As [`Fields::from_group`], from a spec whose members are named; names are
    /// turned into ids with `snapshot`.
    pub(crate) fn from_group_spec(id: Id, spec: &GroupSpec, snapshot: &Snapshot) -> Fields {
        let is_scim =
            |source: &Option<Source>| source.as_ref().unwrap_or(&spec.source) == &Source::Scim;
        let id_of = |kind: EntityKind, reference: &str| {
            snapshot
                .resolve(kind, reference)
                .map_or_else(|_| reference.to_owned(), |id| id.to_string())
        };
        let mut members = Vec::new();
        for member in &spec.members {
            let source = match member {
                MemberSpec::Name(_) => None,
                MemberSpec::Detailed { source, .. } => source.clone(),
            };
            if is_scim(&source) {
                members.push(Member {
                    value: id_of(EntityKind::User, member.user()),
                    group: false,
                });
            }
        }
        for subgroup in &spec.subgroups {
            let source = match subgroup {
                SubgroupSpec::Name(_) => None,
                SubgroupSpec::Detailed { source, .. } => source.clone(),
            };
            if is_scim(&source) {
                members.push(Member {
                    value: id_of(EntityKind::Group, subgroup.group()),
                    group: true,
                });
            }
        }
        Fields::Group {
            id,
            name: spec.name.clone(),
            external_id: spec.external_id.clone(),
            members,
        }
    }

    pub(crate) fn kind(&self) -> ResourceKind {
        match self {
            Fields::User { .. } => ResourceKind::User,
            Fields::Group { .. } => ResourceKind::Group,
        }
    }

    /// SCIM's members of a group (none for a user).
    pub(crate) fn members(&self) -> &[Member] {
        match self {
            Fields::User { .. } => &[],
            Fields::Group { members, .. } => members,
        }
    }

    pub(crate) fn id(&self) -> Id {
        match self {
            Fields::User { id, .. } | Fields::Group { id, .. } => *id,
        }
    }

    /// The view without `meta` and `$ref`: what the ETag is a hash of.
    pub(crate) fn view(&self) -> Map<String, Value> {
        let mut view = Map::new();
        match self {
            Fields::User {
                id,
                username,
                name,
                email,
                phone,
                active,
                external_id,
                extras,
                groups,
            } => {
                let mut schemas = vec![json!(crate::schema::USER_SCHEMA)];
                schemas.extend(
                    extras
                        .keys()
                        .filter(|key| key.starts_with("urn:"))
                        .map(|key| json!(key)),
                );
                view.insert("schemas".to_owned(), Value::Array(schemas));
                view.insert("id".to_owned(), json!(id.to_string()));
                if let Some(external_id) = external_id {
                    view.insert("externalId".to_owned(), json!(external_id));
                }
                view.insert("userName".to_owned(), json!(username));
                // The engine defaults a missing name to the username: that is no name.
                if !name.is_empty() && name != username {
                    view.insert("displayName".to_owned(), json!(name));
                }
                view.insert("active".to_owned(), json!(active));
                for (key, value) in [("emails", email), ("phoneNumbers", phone)] {
                    let Some(value) = value else {
                        continue;
                    };
                    let kept = extras
                        .get(key)
                        .filter(|kept| chosen_value(Some(kept)).as_deref() == Some(value.as_str()));
                    let list = kept
                        .cloned()
                        .unwrap_or_else(|| json!([{"value": value, "type": "work"}]));
                    view.insert(key.to_owned(), list);
                }
                for (key, value) in extras {
                    if !view.contains_key(key) && key != "emails" && key != "phoneNumbers" {
                        view.insert(key.clone(), value.clone());
                    }
                }
                if !groups.is_empty() {
                    let groups = groups
                        .iter()
                        .map(|g| {
                            json!({
                                "value": g.id.to_string(),
                                "display": g.name,
                                "type": if g.direct { "direct" } else { "indirect" },
                            })
                        })
                        .collect();
                    view.insert("groups".to_owned(), Value::Array(groups));
                }
            }
            Fields::Group {
                id,
                name,
                external_id,
                members,
            } => {
                view.insert("schemas".to_owned(), json!([crate::schema::GROUP_SCHEMA]));
                view.insert("id".to_owned(), json!(id.to_string()));
                if let Some(external_id) = external_id {
                    view.insert("externalId".to_owned(), json!(external_id));
                }
                view.insert("displayName".to_owned(), json!(name));
                if !members.is_empty() {
                    let members: Vec<Value> = members
                        .iter()
                        .map(|m| {
                            json!({"value": m.value, "type": if m.group { "Group" } else { "User" }})
                        })
                        .collect();
                    view.insert("members".to_owned(), Value::Array(members));
                }
            }
        }
        view
    }
}

/// A weak ETag: a hash of the view. Two states with the same view share a version,
/// which is what a weak validator promises; any change SCIM can see changes it.
pub(crate) fn etag(view: &Map<String, Value>) -> String {
    /// FNV-1a, 64 bits: stable across builds, unlike the standard library's hasher.
    struct Fnv(u64);

    impl std::io::Write for Fnv {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            for byte in bytes {
                self.0 ^= u64::from(*byte);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let mut hash = Fnv(0xcbf2_9ce4_8422_2325);
    serde_json::to_writer(&mut hash, view).expect("a JSON map serializes");
    format!("W/\"{:016x}\"", hash.0)
}

/// The full resource: the view with `meta` and member `$ref`s, under `base` (the
/// absolute URL of `/scim/v2`).
pub(crate) fn decorate(
    kind: ResourceKind,
    mut view: Map<String, Value>,
    base: &str,
    created: Time,
    modified: Time,
    version: &str,
) -> Map<String, Value> {
    let id = view
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(Value::Array(members)) = view.get_mut("members") {
        for member in members {
            let endpoint = match member.get("type").and_then(Value::as_str) {
                Some("Group") => "Groups",
                _ => "Users",
            };
            let reference = format!(
                "{base}/{endpoint}/{}",
                member
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            member["$ref"] = Value::String(reference);
        }
    }
    if let Some(Value::Array(groups)) = view.get_mut("groups") {
        for group in groups {
            let reference = format!(
                "{base}/Groups/{}",
                group
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            group["$ref"] = Value::String(reference);
        }
    }
    view.insert(
        "meta".to_owned(),
        json!({
            "resourceType": kind.name(),
            "created": created.to_string(),
            "lastModified": modified.to_string(),
            "location": format!("{base}/{}/{id}", kind.endpoint()),
            "version": version,
        }),
    );
    view
}

/// Reads a boolean the way identity providers write them: `true`, or `"True"`.
fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) if text.eq_ignore_ascii_case("true") => Some(true),
        Value::String(text) if text.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// Brings a value written for `attribute` into the view's form: canonical
/// sub-attribute names, booleans as booleans, a single value of a multi-valued
/// attribute as a one-element array. Stored attributes are checked; the others are
/// taken as they come, since they are dropped anyway.
pub(crate) fn normalize(attribute: &Attribute, value: Value) -> Result<Value, ScimError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    if attribute.multi {
        let items = match value {
            Value::Array(items) => items,
            single => vec![single],
        };
        let items = items
            .into_iter()
            .map(|item| normalize_single(attribute, item))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Value::Array(
            items.into_iter().filter(|item| !item.is_null()).collect(),
        ));
    }
    normalize_single(attribute, value)
}

/// Normalizes one value (an element, for a multi-valued attribute).
pub(crate) fn normalize_single(attribute: &Attribute, value: Value) -> Result<Value, ScimError> {
    let wrong =
        |what: &str| ScimError::invalid_value(format!("`{}` must be {what}", attribute.name));
    match (attribute.kind, value) {
        (_, Value::Null) => Ok(Value::Null),
        (Kind::Boolean, value) => match boolean(&value) {
            Some(flag) => Ok(Value::Bool(flag)),
            None if attribute.stored => Err(wrong("a boolean")),
            None => Ok(value),
        },
        (Kind::Complex, Value::Object(fields)) => {
            let mut normalized = Map::new();
            for (key, value) in fields {
                match attribute.sub_attribute(&key) {
                    Some(sub) => {
                        let value = normalize_single(sub, value)?;
                        if !value.is_null() {
                            normalized.insert(sub.name.to_owned(), value);
                        }
                    }
                    None => {
                        normalized.insert(key, value);
                    }
                }
            }
            Ok(Value::Object(normalized))
        }
        (Kind::Complex, Value::String(text)) if attribute.multi => {
            // A bare value of a multi-valued complex attribute (`"members": ["id"]`).
            Ok(json!({ "value": text }))
        }
        (Kind::Complex, _) if attribute.stored => Err(wrong("an object")),
        (Kind::String | Kind::Reference | Kind::Binary | Kind::DateTime, value)
            if attribute.stored && !value.is_string() =>
        {
            Err(wrong("a string"))
        }
        (_, value) => Ok(value),
    }
}

/// Turns a POST or PUT body into a view: known attributes under their canonical names
/// and normalized; read-only and unknown attributes dropped (RFC 7643 §2.2: read-only
/// values in requests are ignored); extension objects kept under their URN.
pub(crate) fn view_from_body(
    kind: ResourceKind,
    body: Value,
) -> Result<Map<String, Value>, ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    };
    if let Some(schemas) = body.get("schemas") {
        let strings = schemas
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string));
        if !strings {
            return Err(ScimError::invalid_syntax(
                "`schemas` must be an array of URNs",
            ));
        }
    }
    let mut view = Map::new();
    for (key, value) in body {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if let Some(extension) = kind.extension(&key) {
            let mut object = Map::new();
            if let Value::Object(fields) = value {
                for (name, value) in fields {
                    if let Some(attribute) = extension.attribute(&name) {
                        object.insert(attribute.name.to_owned(), normalize(attribute, value)?);
                    }
                }
            }
            view.insert(extension.id.to_owned(), Value::Object(object));
            continue;
        }
        let Located::Attribute {
            extension: None,
            attribute,
        } = kind.locate(None, &key)
        else {
            continue;
        };
        if attribute.mutability == Mutability::ReadOnly {
            continue;
        }
        let value = normalize(attribute, value)?;
        if !value.is_null() {
            view.insert(attribute.name.to_owned(), value);
        }
    }
    Ok(view)
}

fn text<'a>(view: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    view.get(key).and_then(Value::as_str)
}

fn optional_text(view: &Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    match view.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ScimError::invalid_value(format!(
            "`{key}` must be a string"
        ))),
    }
}

/// The one value the engine keeps of a multi-valued attribute (`emails`,
/// `phoneNumbers`): the primary one, else the one typed `work`, else the last added.
fn chosen_value(list: Option<&Value>) -> Option<String> {
    let Some(Value::Array(items)) = list else {
        return None;
    };
    let with_value: Vec<&Value> = items
        .iter()
        .filter(|item| {
            item.get("value")
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        })
        .collect();
    let chosen = with_value
        .iter()
        .find(|item| item.get("primary").and_then(boolean) == Some(true))
        .or_else(|| {
            with_value.iter().find(|item| {
                item.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case("work"))
            })
        })
        .or_else(|| with_value.last());
    chosen
        .and_then(|item| item.get("value"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The display name a view carries: `displayName`, else `name.formatted`, else the
/// given and family names.
fn display_name(view: &Map<String, Value>) -> String {
    if let Some(name) = text(view, "displayName").filter(|n| !n.trim().is_empty()) {
        return name.to_owned();
    }
    let Some(name) = view.get("name") else {
        return String::new();
    };
    if let Some(formatted) = name.get("formatted").and_then(Value::as_str) {
        if !formatted.trim().is_empty() {
            return formatted.to_owned();
        }
    }
    let part = |key: &str| name.get(key).and_then(Value::as_str).unwrap_or_default();
    [part("givenName"), part("familyName")]
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes a user view onto `spec`. The password, if any, is taken apart by the caller.
pub(crate) fn apply_user_view(
    view: &Map<String, Value>,
    spec: &mut UserSpec,
) -> Result<(), ScimError> {
    let username = text(view, "userName")
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ScimError::invalid_value("`userName` is required"))?;
    spec.username = username.to_owned();
    spec.name = display_name(view);
    spec.active = match view.get("active") {
        None | Some(Value::Null) => true,
        Some(value) => {
            boolean(value).ok_or_else(|| ScimError::invalid_value("`active` must be a boolean"))?
        }
    };
    spec.email = chosen_value(view.get("emails"));
    spec.phone = chosen_value(view.get("phoneNumbers"));
    spec.external_id = optional_text(view, "externalId")?;
    spec.source = Source::Scim;
    let extras: Map<String, Value> = view
        .iter()
        .filter(|(key, value)| {
            !MAPPED_USER_ATTRIBUTES.contains(&key.as_str()) && !is_empty_value(value)
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    spec.attributes.set(
        SCIM_ATTRIBUTES,
        if extras.is_empty() {
            Value::Null
        } else {
            Value::Object(extras)
        },
    );
    Ok(())
}

/// What SCIM kept of an entity's free-form attributes.
fn scim_extras(attributes: &portcullis_engine::Attributes) -> Map<String, Value> {
    match attributes.get(SCIM_ATTRIBUTES) {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    }
}

/// `null`, `[]` and `{}` are no value (RFC 7643 §2.5: unassigned).
fn is_empty_value(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// The password a user view carries, removed from it (a group's view is left as it
/// is: a group has none).
pub(crate) fn take_password(
    kind: ResourceKind,
    view: &mut Map<String, Value>,
) -> Result<Option<String>, ScimError> {
    if kind == ResourceKind::Group {
        return Ok(None);
    }
    match view.remove("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(password)) if !password.is_empty() => Ok(Some(password)),
        Some(_) => Err(ScimError::invalid_value(
            "`password` must be a non-empty string",
        )),
    }
}

/// The members a group view asks for, checked against `snapshot`: each `value` must
/// be the id of a SCIM user or group (`type` says which; without it, a user is
/// looked for first). Duplicates collapse.
fn requested_members(
    view: &Map<String, Value>,
    snapshot: &Snapshot,
    existing: &[Member],
) -> Result<Vec<(Id, bool)>, ScimError> {
    let Some(members) = view.get("members") else {
        return Ok(Vec::new());
    };
    let Value::Array(members) = members else {
        return Err(ScimError::invalid_value("`members` must be an array"));
    };
    let mut seen = HashSet::new();
    let mut requested = Vec::new();
    for member in members {
        let value = member
            .get("value")
            .and_then(Value::as_str)
            .ok_or_else(|| ScimError::invalid_value("every member needs a `value`"))?;
        let wanted = member.get("type").and_then(Value::as_str);
        // A member the group already has stays, whatever became of its source.
        let known = existing.iter().find(|m| m.value == value);
        if let (Some(known), Some(id)) = (known, Id::parse(value)) {
            let same_type = wanted
                .is_none_or(|t| t.eq_ignore_ascii_case(if known.group { "Group" } else { "User" }));
            if same_type {
                if seen.insert(id) {
                    requested.push((id, known.group));
                }
                continue;
            }
        }
        let group = match wanted {
            Some(t) if t.eq_ignore_ascii_case("User") => false,
            Some(t) if t.eq_ignore_ascii_case("Group") => true,
            Some(t) => {
                return Err(ScimError::invalid_value(format!(
                    "member type `{t}` is neither `User` nor `Group`"
                )));
            }
            None => {
                scim_entity(snapshot, EntityKind::User, value).is_none()
                    && scim_entity(snapshot, EntityKind::Group, value).is_some()
            }
        };
        let kind = if group {
            EntityKind::Group
        } else {
            EntityKind::User
        };
        let id = scim_entity(snapshot, kind, value).ok_or_else(|| {
            ScimError::invalid_value(format!("member `{value}` is no SCIM {}", kind.noun()))
        })?;
        if seen.insert(id) {
            requested.push((id, group));
        }
    }
    Ok(requested)
}

/// The id of the SCIM-provisioned entity whose id is `value`.
pub(crate) fn scim_entity(snapshot: &Snapshot, kind: EntityKind, value: &str) -> Option<Id> {
    let id = Id::parse(value)?;
    let json = snapshot.entity_json(kind, &id.to_string()).ok()?;
    let same = json.get("id").and_then(Value::as_str) == Some(id.to_string().as_str());
    let scim = json.get("source").and_then(Value::as_str) == Some("scim");
    (same && scim).then_some(id)
}

/// Writes a group view onto `spec`: the name, the external id, and SCIM's
/// memberships. Memberships someone else wrote and SCIM does not name stay; one SCIM
/// names is taken over (keeping its expiry); SCIM's own that it no longer names go.
pub(crate) fn apply_group_view(
    view: &Map<String, Value>,
    spec: &mut GroupSpec,
    snapshot: &Snapshot,
    existing: &[Member],
) -> Result<(), ScimError> {
    let name = text(view, "displayName")
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ScimError::invalid_value("`displayName` is required"))?;
    spec.name = name.to_owned();
    spec.external_id = optional_text(view, "externalId")?;
    spec.source = Source::Scim;
    let requested = requested_members(view, snapshot, existing)?;
    let wanted_users: Vec<Id> = requested.iter().filter(|m| !m.1).map(|m| m.0).collect();
    let wanted_groups: Vec<Id> = requested.iter().filter(|m| m.1).map(|m| m.0).collect();
    let scim = Some(Source::Scim);

    let mut members = Vec::new();
    let mut present = HashSet::new();
    for member in std::mem::take(&mut spec.members) {
        let id = snapshot.resolve(EntityKind::User, member.user()).ok();
        let (expires_at, source) = match &member {
            MemberSpec::Name(_) => (None, None),
            MemberSpec::Detailed {
                expires_at, source, ..
            } => (*expires_at, source.clone()),
        };
        let wanted = id.is_some_and(|id| wanted_users.contains(&id));
        if wanted {
            let id = id.expect("wanted ids resolve");
            present.insert(id);
            members.push(MemberSpec::Detailed {
                user: id.to_string(),
                expires_at,
                source: scim.clone(),
            });
        } else if source.as_ref().unwrap_or(&Source::Local) != &Source::Scim {
            members.push(member);
        }
    }
    for id in &wanted_users {
        if present.insert(*id) {
            members.push(MemberSpec::Detailed {
                user: id.to_string(),
                expires_at: None,
                source: scim.clone(),
            });
        }
    }
    spec.members = members;

    let mut subgroups = Vec::new();
    let mut present = HashSet::new();
    for subgroup in std::mem::take(&mut spec.subgroups) {
        let id = snapshot.resolve(EntityKind::Group, subgroup.group()).ok();
        let (expires_at, source) = match &subgroup {
            SubgroupSpec::Name(_) => (None, None),
            SubgroupSpec::Detailed {
                expires_at, source, ..
            } => (*expires_at, source.clone()),
        };
        let wanted = id.is_some_and(|id| wanted_groups.contains(&id));
        if wanted {
            let id = id.expect("wanted ids resolve");
            present.insert(id);
            subgroups.push(SubgroupSpec::Detailed {
                group: id.to_string(),
                expires_at,
                source: scim.clone(),
            });
        } else if source.as_ref().unwrap_or(&Source::Local) != &Source::Scim {
            subgroups.push(subgroup);
        }
    }
    for id in &wanted_groups {
        if present.insert(*id) {
            subgroups.push(SubgroupSpec::Detailed {
                group: id.to_string(),
                expires_at: None,
                source: scim.clone(),
            });
        }
    }
    spec.subgroups = subgroups;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(value: Value) -> Map<String, Value> {
        view_from_body(ResourceKind::User, value).unwrap()
    }

    #[test]
    fn bodies_are_normalized() {
        let body = view(json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "USERNAME": "alice",
            "id": "ignored",
            "groups": [],
            "Active": "False",
            "emails": {"Value": "a@x.test", "Type": "work", "primary": "true"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"Department": "R&D"},
            "unknown": 1,
        }));
        assert_eq!(
            Value::Object(body),
            json!({
                "userName": "alice",
                "active": false,
                "emails": [{"value": "a@x.test", "type": "work", "primary": true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "R&D"},
            })
        );
        assert!(view_from_body(ResourceKind::User, json!({"userName": 3})).is_err());
        assert!(view_from_body(ResourceKind::User, json!({"active": "maybe"})).is_err());
        assert!(view_from_body(ResourceKind::User, json!([])).is_err());
    }

    #[test]
    fn names_and_contacts_map_onto_the_spec() {
        let mut spec = UserSpec::new("x");
        apply_user_view(
            &view(json!({
                "userName": "alice",
                "name": {"givenName": "Alice", "familyName": "Liddell"},
                "emails": [
                    {"value": "home@x.test", "type": "home"},
                    {"value": "work@x.test", "type": "work"},
                ],
                "phoneNumbers": [{"value": "+1 555", "primary": true}, {"value": "+2", "type": "work"}],
            })),
            &mut spec,
        )
        .unwrap();
        assert_eq!(spec.name, "Alice Liddell");
        assert_eq!(spec.email.as_deref(), Some("work@x.test"));
        assert_eq!(spec.phone.as_deref(), Some("+1 555"));
        assert!(spec.active);
        assert_eq!(spec.source, Source::Scim);
        let mut renamed = spec.clone();
        apply_user_view(
            &view(json!({"userName": "alice", "displayName": "Al", "name": {"formatted": "A L"}})),
            &mut renamed,
        )
        .unwrap();
        assert_eq!(renamed.name, "Al");
        assert_eq!(renamed.email, None);
    }

    #[test]
    fn the_view_hides_a_defaulted_name() {
        let fields = Fields::User {
            id: Id::from_u128(1),
            username: "alice".to_owned(),
            name: "alice".to_owned(),
            email: None,
            phone: None,
            active: true,
            external_id: None,
            extras: Map::new(),
            groups: Vec::new(),
        };
        assert!(!fields.view().contains_key("displayName"));
        assert_eq!(etag(&fields.view()), etag(&fields.view()));
        assert!(etag(&fields.view()).starts_with("W/\""));
    }
}
