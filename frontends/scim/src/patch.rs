//! PATCH (RFC 7644 §3.5.2), applied to a resource view.
//!
//! Operations apply in order, each to the result of the one before; the first failure
//! fails the request and nothing is written. What identity providers send beyond the
//! letter of the RFC is accepted: `Add`/`Replace`/`Remove` capitalised, booleans as
//! `"False"`, no-path values whose keys are paths (`name.givenName`, URN-qualified
//! extension attributes), `remove` of `members` with a `value` listing the members
//! to remove, and a `replace` through an equality filter that matches nothing
//! (`emails[type eq "work"].value`) adding the value it describes.

use serde_json::{Map, Value};

use crate::error::{ScimError, ScimType};
use crate::filter::{CompValue, CompareOp, Filter, Limits, PatchPath, parse_path_with};
use crate::query::element_matches;
use crate::resource::{normalize, normalize_single};
use crate::schema::{Attribute, Kind, Located, Mutability, ResourceKind, Schema};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One parsed PATCH operation.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub op: OpKind,
    pub path: Option<(String, PatchPath)>,
    pub value: Option<Value>,
}

fn field<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

/// Parses a PatchOp body.
pub(crate) fn parse(body: &Value, limits: Limits) -> Result<Vec<Operation>, ScimError> {
    let Value::Object(body) = body else {
        return Err(ScimError::invalid_syntax(
            "the body must be a PatchOp object",
        ));
    };
    if let Some(schemas) = field(body, "schemas") {
        let listed = schemas.as_array().is_some_and(|items| {
            items.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(crate::schema::PATCH_OP))
            })
        });
        if !listed {
            return Err(ScimError::invalid_syntax(format!(
                "`schemas` must list `{}`",
                crate::schema::PATCH_OP
            )));
        }
    }
    let Some(Value::Array(operations)) = field(body, "Operations") else {
        return Err(ScimError::invalid_syntax("`Operations` must be an array"));
    };
    if operations.is_empty() {
        return Err(ScimError::invalid_syntax("`Operations` is empty"));
    }
    operations
        .iter()
        .map(|operation| {
            let Value::Object(operation) = operation else {
                return Err(ScimError::invalid_syntax(
                    "each operation must be an object",
                ));
            };
            let op = match field(operation, "op").and_then(Value::as_str) {
                Some(op) if op.eq_ignore_ascii_case("add") => OpKind::Add,
                Some(op) if op.eq_ignore_ascii_case("remove") => OpKind::Remove,
                Some(op) if op.eq_ignore_ascii_case("replace") => OpKind::Replace,
                Some(op) => {
                    return Err(ScimError::invalid_syntax(format!(
                        "`{op}` is not an operation (add, remove, replace)"
                    )));
                }
                None => return Err(ScimError::invalid_syntax("an operation needs an `op`")),
            };
            let path = match field(operation, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(text)) if text.trim().is_empty() => None,
                Some(Value::String(text)) => Some((
                    text.clone(),
                    parse_path_with(text, limits).map_err(|e| ScimError::invalid_path(text, &e))?,
                )),
                Some(_) => return Err(ScimError::invalid_syntax("`path` must be a string")),
            };
            let value = field(operation, "value").cloned();
            match (op, &path, &value) {
                (OpKind::Remove, None, _) => Err(ScimError::bad(
                    ScimType::NoTarget,
                    "`remove` needs a `path`",
                )),
                (OpKind::Add | OpKind::Replace, _, None) => Err(ScimError::invalid_syntax(
                    "`add` and `replace` need a `value`",
                )),
                (OpKind::Add | OpKind::Replace, None, Some(value)) if !value.is_object() => {
                    Err(ScimError::invalid_syntax(
                        "without a `path`, the `value` must be an object of attributes",
                    ))
                }
                _ => Ok(Operation { op, path, value }),
            }
        })
        .collect()
}

/// What a path designates, resolved.
struct Resolved<'a> {
    extension: Option<&'static Schema>,
    /// `None`: the whole extension object.
    attribute: Option<&'static Attribute>,
    sub: Option<&'static Attribute>,
    filter: Option<&'a Filter>,
    text: &'a str,
}

fn resolve<'a>(
    kind: ResourceKind,
    text: &'a str,
    path: &'a PatchPath,
) -> Result<Resolved<'a>, ScimError> {
    let invalid = |detail: String| ScimError::bad(ScimType::InvalidPath, detail);
    let (extension, attribute) = match kind.locate(path.attr.uri.as_deref(), &path.attr.name) {
        Located::Attribute {
            extension,
            attribute,
        } => (extension, Some(attribute)),
        Located::Extension(extension) if path.attr.sub.is_none() && path.filter.is_none() => {
            (Some(extension), None)
        }
        Located::Extension(_) | Located::Unknown => {
            return Err(invalid(format!(
                "`{text}` names no attribute of a {}",
                kind.name()
            )));
        }
    };
    let sub = match (attribute, path.sub_attribute()) {
        (_, None) => None,
        (Some(attribute), Some(name)) => Some(attribute.sub_attribute(name).ok_or_else(|| {
            invalid(format!(
                "`{}` has no sub-attribute `{name}`",
                attribute.name
            ))
        })?),
        (None, Some(_)) => return Err(invalid(format!("`{text}` names no attribute"))),
    };
    if let (Some(attribute), Some(filter)) = (attribute, &path.filter) {
        if attribute.kind != Kind::Complex || !attribute.multi {
            return Err(invalid(format!(
                "`{}` is not multi-valued and complex: it takes no value filter",
                attribute.name
            )));
        }
        crate::query::validate(
            kind,
            &Filter::ValuePath {
                path: path.attr.clone(),
                filter: Box::new(filter.clone()),
            },
        )?;
    }
    let read_only = attribute.is_some_and(|a| a.mutability == Mutability::ReadOnly)
        || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly);
    if read_only {
        return Err(ScimError::bad(
            ScimType::Mutability,
            format!("`{text}` is read-only"),
        ));
    }
    Ok(Resolved {
        extension,
        attribute,
        sub,
        filter: path.filter.as_ref(),
        text,
    })
}

/// Applies `operations` to `view`, in order.
pub(crate) fn apply(
    kind: ResourceKind,
    view: &mut Map<String, Value>,
    operations: &[Operation],
    limits: Limits,
) -> Result<(), ScimError> {
    for operation in operations {
        match (&operation.path, operation.op) {
            (Some((text, path)), op) => {
                let target = resolve(kind, text, path)?;
                apply_one(view, &target, op, operation.value.clone())?;
            }
            (None, op) => {
                let Some(Value::Object(fields)) = &operation.value else {
                    continue;
                };
                for (key, value) in fields {
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    // A no-path value's keys are paths (`name.givenName`, URNs).
                    let Ok(path) = parse_path_with(key, limits) else {
                        return Err(ScimError::invalid_value(format!(
                            "`{key}` is not an attribute"
                        )));
                    };
                    match resolve(kind, key, &path) {
                        Ok(target) => apply_one(view, &target, op, Some(value.clone()))?,
                        // Read-only attributes inside a value are ignored (RFC 7643
                        // §2.2), like the `id` Okta sends with a rename; so are names
                        // no schema defines.
                        Err(ScimError::BadRequest {
                            scim_type: ScimType::Mutability | ScimType::InvalidPath,
                            ..
                        }) => {}
                        Err(other) => return Err(other),
                    }
                }
            }
        }
    }
    Ok(())
}

/// The object holding the target: the view, or its extension object.
fn container<'v>(
    view: &'v mut Map<String, Value>,
    target: &Resolved<'_>,
) -> &'v mut Map<String, Value> {
    let Some(extension) = target.extension else {
        return view;
    };
    let slot = view
        .entry(extension.id.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("an object")
}

fn apply_one(
    view: &mut Map<String, Value>,
    target: &Resolved<'_>,
    op: OpKind,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let Some(attribute) = target.attribute else {
        // The whole extension: its attributes, one by one.
        let extension = target.extension.expect("an extension");
        let holder = container(view, target);
        match (op, value) {
            (OpKind::Remove, _) => holder.clear(),
            (_, Some(Value::Object(fields))) => {
                for (key, value) in fields {
                    if let Some(attribute) = extension.attribute(&key) {
                        let value = normalize(attribute, value)?;
                        set(holder, attribute, op, value);
                    }
                }
            }
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "`{}` takes an object",
                    target.text
                )));
            }
        }
        tidy(view, target);
        return Ok(());
    };
    if op == OpKind::Remove && attribute.required && target.filter.is_none() && target.sub.is_none()
    {
        return Err(ScimError::invalid_value(format!(
            "`{}` is required: it cannot be removed",
            attribute.name
        )));
    }
    let holder = container(view, target);
    match (op, target.filter, target.sub) {
        (OpKind::Remove, None, None) => remove_whole(holder, attribute, value.as_ref()),
        (OpKind::Remove, None, Some(sub)) => {
            for element in elements(holder, attribute) {
                element.remove(sub.name);
            }
        }
        (OpKind::Remove, Some(filter), sub) => {
            if let Some(Value::Array(items)) = holder.get_mut(attribute.name) {
                match sub {
                    None => items.retain(|item| !element_matches(attribute, filter, item)),
                    Some(sub) => {
                        for item in items.iter_mut() {
                            if element_matches(attribute, filter, item) {
                                if let Value::Object(fields) = item {
                                    fields.remove(sub.name);
                                }
                            }
                        }
                    }
                }
            }
        }
        (OpKind::Add | OpKind::Replace, None, None) => {
            let value = normalize(attribute, value.unwrap_or(Value::Null))?;
            set(holder, attribute, op, value);
        }
        (OpKind::Add | OpKind::Replace, None, Some(sub)) => {
            let value = normalize_single(sub, value.unwrap_or(Value::Null))?;
            if attribute.multi {
                let elements = elements(holder, attribute);
                if elements.is_empty() {
                    holder.insert(
                        attribute.name.to_owned(),
                        Value::Array(vec![single_field(sub, value)]),
                    );
                } else {
                    for element in elements {
                        element.insert(sub.name.to_owned(), value.clone());
                    }
                }
            } else {
                let slot = holder
                    .entry(attribute.name.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                slot[sub.name] = value;
            }
        }
        (OpKind::Add | OpKind::Replace, Some(filter), sub) => {
            let value = match sub {
                Some(sub) => normalize_single(sub, value.unwrap_or(Value::Null))?,
                None => normalize_single(attribute, value.unwrap_or(Value::Null))?,
            };
            let slot = holder
                .entry(attribute.name.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            let items = slot.as_array_mut().expect("an array");
            let mut matched = false;
            for item in items.iter_mut() {
                if element_matches(attribute, filter, item) {
                    matched = true;
                    merge_into(item, sub, value.clone(), target.text)?;
                }
            }
            if !matched {
                // An equality filter describes the value to add.
                let Some(mut item) = described_by(attribute, filter) else {
                    return Err(ScimError::bad(
                        ScimType::NoTarget,
                        format!("`{}` matches no value", target.text),
                    ));
                };
                merge_into(&mut item, sub, value, target.text)?;
                items.push(item);
            }
        }
    }
    tidy(view, target);
    Ok(())
}

/// `{sub: value}`.
fn single_field(sub: &Attribute, value: Value) -> Value {
    let mut fields = Map::new();
    fields.insert(sub.name.to_owned(), value);
    Value::Object(fields)
}

/// Sets `sub` of `item` to `value`, or merges an object `value` into it.
fn merge_into(
    item: &mut Value,
    sub: Option<&Attribute>,
    value: Value,
    path: &str,
) -> Result<(), ScimError> {
    let Value::Object(fields) = item else {
        return Ok(());
    };
    match (sub, value) {
        (Some(sub), value) => {
            fields.insert(sub.name.to_owned(), value);
        }
        (None, Value::Object(new)) => fields.extend(new),
        (None, _) => {
            return Err(ScimError::invalid_value(format!(
                "`{path}` selects complex values: the value must be an object"
            )));
        }
    }
    Ok(())
}

/// The value an equality filter (`type eq "work"`, joined by `and`) describes.
fn described_by(parent: &Attribute, filter: &Filter) -> Option<Value> {
    let mut fields = Map::new();
    let mut add = |filter: &Filter| -> bool {
        let Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } = filter
        else {
            return false;
        };
        let Some(sub) = parent.sub_attribute(&path.name) else {
            return false;
        };
        let value = match value {
            CompValue::String(text) => Value::String(text.clone()),
            CompValue::Bool(flag) => Value::Bool(*flag),
            CompValue::Number(number) => Value::Number(number.clone()),
            CompValue::Null => return false,
        };
        fields.insert(sub.name.to_owned(), value);
        true
    };
    let described = match filter {
        Filter::And(operands) => operands.iter().all(&mut add),
        single => add(single),
    };
    described.then_some(Value::Object(fields))
}

/// The object values of a multi-valued attribute, or the object of a single one.
fn elements<'v>(
    holder: &'v mut Map<String, Value>,
    attribute: &Attribute,
) -> Vec<&'v mut Map<String, Value>> {
    match holder.get_mut(attribute.name) {
        Some(Value::Array(items)) => items.iter_mut().filter_map(Value::as_object_mut).collect(),
        Some(Value::Object(fields)) => vec![fields],
        _ => Vec::new(),
    }
}

/// `add` appends to a multi-valued attribute (skipping values already there) and
/// merges into a complex one; `replace` sets, merging into a single complex value.
fn set(holder: &mut Map<String, Value>, attribute: &Attribute, op: OpKind, value: Value) {
    if value.is_null() {
        if op == OpKind::Replace {
            holder.remove(attribute.name);
        }
        return;
    }
    let existing = holder.get_mut(attribute.name);
    match (op, existing, value) {
        (OpKind::Add, Some(Value::Array(items)), Value::Array(new)) if attribute.multi => {
            for item in new {
                if !items.iter().any(|old| same_value(old, &item)) {
                    items.push(item);
                }
            }
        }
        (_, Some(Value::Object(fields)), Value::Object(new))
            if attribute.kind == Kind::Complex && !attribute.multi =>
        {
            fields.extend(new);
        }
        (_, _, value) => {
            holder.insert(attribute.name.to_owned(), value);
        }
    }
}

/// Two values of a multi-valued attribute are the same when their `value`s are (or,
/// without one, when they are equal).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.get("value"), b.get("value")) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

/// Removes the attribute; with a `value` listing values of a multi-valued attribute
/// (what Entra ID sends to remove members), removes only those.
fn remove_whole(holder: &mut Map<String, Value>, attribute: &Attribute, value: Option<&Value>) {
    let listed: Option<Vec<Value>> = match value {
        Some(Value::Array(items)) if attribute.multi => Some(items.clone()),
        Some(item @ Value::Object(_)) if attribute.multi => Some(vec![item.clone()]),
        _ => None,
    };
    let Some(listed) = listed else {
        holder.remove(attribute.name);
        return;
    };
    let listed: Vec<Value> = listed
        .into_iter()
        .filter_map(|item| normalize_single(attribute, item).ok())
        .collect();
    if let Some(Value::Array(items)) = holder.get_mut(attribute.name) {
        items.retain(|item| !listed.iter().any(|gone| same_value(item, gone)));
    }
}

/// Drops what became empty: a multi-valued attribute with no values, a complex value
/// with no sub-attributes, an empty extension.
fn tidy(view: &mut Map<String, Value>, target: &Resolved<'_>) {
    let empty = |value: &Value| match value {
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.values().all(Value::is_null),
        Value::Null => true,
        _ => false,
    };
    if let Some(attribute) = target.attribute {
        let holder = container(view, target);
        if holder.get(attribute.name).is_some_and(empty) {
            holder.remove(attribute.name);
        }
    }
    if let Some(extension) = target.extension {
        if view.get(extension.id).is_some_and(empty) {
            view.remove(extension.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(kind: ResourceKind, start: Value, operations: Value) -> Result<Value, ScimError> {
        let mut view = start.as_object().unwrap().clone();
        let body = json!({"schemas": [crate::schema::PATCH_OP], "Operations": operations});
        let operations = parse(&body, Limits::default())?;
        apply(kind, &mut view, &operations, Limits::default())?;
        Ok(Value::Object(view))
    }

    fn user(start: Value, operations: Value) -> Value {
        patched(ResourceKind::User, start, operations).unwrap()
    }

    #[test]
    fn add_replace_remove_simple_attributes() {
        let start = json!({"userName": "a", "active": true});
        assert_eq!(
            user(
                start.clone(),
                json!([{"op": "Replace", "path": "active", "value": "False"}])
            ),
            json!({"userName": "a", "active": false})
        );
        assert_eq!(
            user(
                start.clone(),
                json!([{"op": "add", "path": "DisplayName", "value": "A"}])
            ),
            json!({"userName": "a", "active": true, "displayName": "A"})
        );
        assert_eq!(
            user(
                start,
                json!([{"op": "remove", "path": "displayName"}, {"op": "remove", "path": "title"}])
            ),
            json!({"userName": "a", "active": true})
        );
    }

    #[test]
    fn no_path_values_hold_paths() {
        let start = json!({"userName": "a", "name": {"givenName": "x", "familyName": "y"}});
        let out = user(
            start,
            json!([{"op": "replace", "value": {
                "name.givenName": "Ann",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops",
                "emails[type eq \"work\"].value": "ann@x.test",
                "id": "ignored",
                "active": false,
            }}]),
        );
        assert_eq!(
            out,
            json!({
                "userName": "a",
                "active": false,
                "name": {"givenName": "Ann", "familyName": "y"},
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"},
                "emails": [{"type": "work", "value": "ann@x.test"}],
            })
        );
    }

    #[test]
    fn value_filters_select_and_add() {
        let start = json!({"userName": "a", "emails": [
            {"value": "a@x.test", "type": "work"},
            {"value": "a@home.test", "type": "home"},
        ]});
        assert_eq!(
            user(
                start.clone(),
                json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x.test"}])
            ),
            json!({"userName": "a", "emails": [
                {"value": "b@x.test", "type": "work"},
                {"value": "a@home.test", "type": "home"},
            ]})
        );
        assert_eq!(
            user(
                start.clone(),
                json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])
            ),
            json!({"userName": "a", "emails": [{"value": "a@x.test", "type": "work"}]})
        );
        assert_eq!(
            user(
                start.clone(),
                json!([{"op": "remove", "path": "emails[type eq \"work\"].type"}])
            ),
            json!({"userName": "a", "emails": [
                {"value": "a@x.test"},
                {"value": "a@home.test", "type": "home"},
            ]})
        );
        let error = patched(
            ResourceKind::User,
            start,
            json!([{"op": "replace", "path": "emails[value co \"zzz\"].value", "value": "q"}]),
        )
        .unwrap_err();
        assert!(matches!(
            error,
            ScimError::BadRequest {
                scim_type: ScimType::NoTarget,
                ..
            }
        ));
    }

    #[test]
    fn members_are_added_and_removed_by_value() {
        let start = json!({"displayName": "g", "members": [
            {"value": "1", "type": "User"}, {"value": "2", "type": "User"}, {"value": "3", "type": "User"},
        ]});
        let group = |operations| patched(ResourceKind::Group, start.clone(), operations).unwrap();
        assert_eq!(
            group(
                json!([{"op": "Remove", "path": "members", "value": [{"value": "1"}, {"value": "3"}]}])
            ),
            json!({"displayName": "g", "members": [{"value": "2", "type": "User"}]})
        );
        assert_eq!(
            group(json!([{"op": "remove", "path": "members[value eq \"2\"]"}])),
            json!({"displayName": "g", "members": [{"value": "1", "type": "User"}, {"value": "3", "type": "User"}]})
        );
        assert_eq!(
            group(
                json!([{"op": "add", "path": "members", "value": [{"value": "3"}, {"value": "4"}]}])
            )["members"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            group(json!([{"op": "remove", "path": "members"}])),
            json!({"displayName": "g"})
        );
    }

    #[test]
    fn errors_carry_their_scim_type() {
        let start = json!({"userName": "a"});
        let kind = |operations| match patched(ResourceKind::User, start.clone(), operations) {
            Err(ScimError::BadRequest { scim_type, .. }) => scim_type,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(json!([{"op": "remove"}])), ScimType::NoTarget);
        assert_eq!(
            kind(json!([{"op": "move", "path": "x"}])),
            ScimType::InvalidSyntax
        );
        assert_eq!(
            kind(json!([{"op": "add", "path": "emails[", "value": 1}])),
            ScimType::InvalidPath
        );
        assert_eq!(
            kind(json!([{"op": "add", "path": "bogus", "value": 1}])),
            ScimType::InvalidPath
        );
        assert_eq!(
            kind(json!([{"op": "replace", "path": "id", "value": "x"}])),
            ScimType::Mutability
        );
        assert_eq!(
            kind(json!([{"op": "replace", "path": "emails[bogus eq \"x\"]", "value": {}}])),
            ScimType::InvalidFilter
        );
        assert_eq!(
            kind(json!([{"op": "replace", "path": "active", "value": "perhaps"}])),
            ScimType::InvalidValue
        );
        assert_eq!(kind(json!("nope")), ScimType::InvalidSyntax);
        assert_eq!(kind(json!([])), ScimType::InvalidSyntax);
    }
}
