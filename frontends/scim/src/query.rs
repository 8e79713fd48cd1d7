//! What a filter, a sort and an attribute selection mean for a resource, judged
//! against the schemas: attribute names case-insensitive, string comparisons
//! case-insensitive unless the attribute is `caseExact`, `dateTime` compared as
//! instants, a multi-valued attribute matching when any of its values does.

use std::cmp::Ordering;

use portcullis_engine::Time;
use serde_json::{Map, Value};

use crate::error::{ScimError, ScimType};
use crate::filter::{AttrPath, CompValue, CompareOp, Filter, PatchPath};
use crate::schema::{Attribute, Kind, Located, ResourceKind, Returned, Schema};

/// An attribute path, resolved against a resource type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub extension: Option<&'static Schema>,
    pub attribute: &'static Attribute,
    pub sub: Option<&'static Attribute>,
}

impl Target {
    /// The attribute whose values a comparison looks at: the sub-attribute, or the
    /// implicit `value` of a multi-valued complex attribute.
    fn leaf(&self) -> Option<&'static Attribute> {
        match self.sub {
            Some(sub) => Some(sub),
            None if self.attribute.kind != Kind::Complex => Some(self.attribute),
            None if self.attribute.multi => self.attribute.sub_attribute("value"),
            None => None,
        }
    }

    /// The object holding the attribute: the resource, or its extension object.
    fn container<'a>(&self, resource: &'a Map<String, Value>) -> Option<&'a Map<String, Value>> {
        match self.extension {
            None => Some(resource),
            Some(extension) => resource.get(extension.id)?.as_object(),
        }
    }
}

fn unknown(path: &AttrPath) -> String {
    format!("unknown attribute `{path}`")
}

/// Resolves `path` (with its optional sub-attribute) in `kind`.
pub(crate) fn resolve(kind: ResourceKind, path: &AttrPath) -> Result<Target, String> {
    let Located::Attribute {
        extension,
        attribute,
    } = kind.locate(path.uri.as_deref(), &path.name)
    else {
        return Err(unknown(path));
    };
    let sub = match &path.sub {
        None => None,
        Some(name) => Some(
            attribute
                .sub_attribute(name)
                .ok_or_else(|| format!("`{}` has no sub-attribute `{name}`", attribute.name))?,
        ),
    };
    Ok(Target {
        extension,
        attribute,
        sub,
    })
}

fn filter_error(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidFilter, detail)
}

/// Refuses filters naming unknown attributes, ordering booleans, or comparing a
/// complex attribute as a whole.
pub(crate) fn validate(kind: ResourceKind, filter: &Filter) -> Result<(), ScimError> {
    match filter {
        Filter::And(operands) | Filter::Or(operands) => {
            operands.iter().try_for_each(|f| validate(kind, f))
        }
        Filter::Not(inner) => validate(kind, inner),
        Filter::Present(path) => resolve(kind, path).map(|_| ()).map_err(filter_error),
        Filter::Compare { path, op, value } => {
            let target = resolve(kind, path).map_err(filter_error)?;
            let leaf = target.leaf().ok_or_else(|| {
                filter_error(format!("`{path}` is complex: name a sub-attribute"))
            })?;
            check_comparison(leaf, *op, value, &path.to_string())
        }
        Filter::ValuePath { path, filter } => {
            let target = resolve(kind, path).map_err(filter_error)?;
            if target.attribute.kind != Kind::Complex {
                return Err(filter_error(format!(
                    "`{path}` is not complex: a value filter needs sub-attributes"
                )));
            }
            validate_element(target.attribute, filter)
        }
    }
}

fn check_comparison(
    leaf: &Attribute,
    op: CompareOp,
    value: &CompValue,
    path: &str,
) -> Result<(), ScimError> {
    if op.is_ordering() && matches!(leaf.kind, Kind::Boolean | Kind::Binary) {
        return Err(filter_error(format!(
            "`{path}` is {}: it cannot be ordered",
            if leaf.kind == Kind::Boolean {
                "a boolean"
            } else {
                "binary"
            }
        )));
    }
    if op.is_ordering() && matches!(value, CompValue::Null | CompValue::Bool(_)) {
        return Err(filter_error(format!(
            "`{path}`: ordering needs a string, number or time"
        )));
    }
    Ok(())
}

/// Validates the filter inside `parent[…]`, whose paths name sub-attributes.
fn validate_element(parent: &'static Attribute, filter: &Filter) -> Result<(), ScimError> {
    match filter {
        Filter::And(operands) | Filter::Or(operands) => operands
            .iter()
            .try_for_each(|f| validate_element(parent, f)),
        Filter::Not(inner) => validate_element(parent, inner),
        Filter::Present(path) => element_attribute(parent, path).map(|_| ()),
        Filter::Compare { path, op, value } => {
            let leaf = element_attribute(parent, path)?;
            check_comparison(leaf, *op, value, &path.to_string())
        }
        Filter::ValuePath { path, .. } => Err(filter_error(format!(
            "`{path}`: value filters cannot be nested"
        ))),
    }
}

fn element_attribute(parent: &Attribute, path: &AttrPath) -> Result<&'static Attribute, ScimError> {
    if path.sub.is_some() || path.uri.is_some() {
        return Err(filter_error(format!(
            "`{path}`: inside `{}[…]` name a sub-attribute of `{}`",
            parent.name, parent.name
        )));
    }
    parent.sub_attribute(&path.name).ok_or_else(|| {
        filter_error(format!(
            "`{}` has no sub-attribute `{}`",
            parent.name, path.name
        ))
    })
}

/// The values `target` designates in `resource` (every value of a multi-valued
/// attribute; the sub-attribute's or the implicit `value`).
fn values<'a>(resource: &'a Map<String, Value>, target: &Target) -> Vec<&'a Value> {
    let Some(value) = target
        .container(resource)
        .and_then(|c| c.get(target.attribute.name))
    else {
        return Vec::new();
    };
    let pick = |element: &'a Value| -> Option<&'a Value> {
        match (target.sub, target.attribute.kind) {
            (Some(sub), _) => element.get(sub.name),
            (None, Kind::Complex) if target.attribute.multi => element.get("value"),
            (None, _) => Some(element),
        }
    };
    match value {
        Value::Array(elements) if target.attribute.multi => {
            elements.iter().filter_map(pick).collect()
        }
        Value::Null => Vec::new(),
        other => pick(other).into_iter().collect(),
    }
}

fn present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => items.iter().any(present),
        Value::Object(fields) => fields.values().any(present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

/// Whether `resource` (a view: canonical attribute names) matches `filter`, which
/// [`validate`] accepted for `kind`.
pub(crate) fn matches(kind: ResourceKind, filter: &Filter, resource: &Map<String, Value>) -> bool {
    match filter {
        Filter::And(operands) => operands.iter().all(|f| matches(kind, f, resource)),
        Filter::Or(operands) => operands.iter().any(|f| matches(kind, f, resource)),
        Filter::Not(inner) => !matches(kind, inner, resource),
        Filter::Present(path) => {
            let Ok(target) = resolve(kind, path) else {
                return false;
            };
            if target.sub.is_none() && target.attribute.kind == Kind::Complex {
                return target
                    .container(resource)
                    .and_then(|c| c.get(target.attribute.name))
                    .is_some_and(present);
            }
            values(resource, &target).into_iter().any(present)
        }
        Filter::Compare { path, op, value } => {
            let Ok(target) = resolve(kind, path) else {
                return false;
            };
            let Some(leaf) = target.leaf() else {
                return false;
            };
            compare_all(&values(resource, &target), *op, value, leaf)
        }
        Filter::ValuePath { path, filter } => {
            let Ok(target) = resolve(kind, path) else {
                return false;
            };
            let Some(value) = target
                .container(resource)
                .and_then(|c| c.get(target.attribute.name))
            else {
                return false;
            };
            match value {
                Value::Array(elements) => elements
                    .iter()
                    .any(|e| element_matches(target.attribute, filter, e)),
                Value::Object(_) => element_matches(target.attribute, filter, value),
                _ => false,
            }
        }
    }
}

/// Whether one value of the complex attribute `parent` matches a value filter.
pub(crate) fn element_matches(parent: &Attribute, filter: &Filter, element: &Value) -> bool {
    match filter {
        Filter::And(operands) => operands.iter().all(|f| element_matches(parent, f, element)),
        Filter::Or(operands) => operands.iter().any(|f| element_matches(parent, f, element)),
        Filter::Not(inner) => !element_matches(parent, inner, element),
        Filter::Present(path) => parent
            .sub_attribute(&path.name)
            .and_then(|sub| element.get(sub.name))
            .is_some_and(present),
        Filter::Compare { path, op, value } => {
            let Some(sub) = parent.sub_attribute(&path.name) else {
                return false;
            };
            let found: Vec<&Value> = element.get(sub.name).into_iter().collect();
            compare_all(&found, *op, value, sub)
        }
        Filter::ValuePath { .. } => false,
    }
}

/// `ne` is "no value equals"; every other operator is "some value satisfies".
fn compare_all(found: &[&Value], op: CompareOp, expected: &CompValue, leaf: &Attribute) -> bool {
    let equal_some = || {
        if matches!(expected, CompValue::Null) {
            return found.iter().all(|v| v.is_null());
        }
        found
            .iter()
            .any(|v| compare(v, CompareOp::Eq, expected, leaf))
    };
    match op {
        CompareOp::Eq => equal_some(),
        CompareOp::Ne => !equal_some(),
        _ => found.iter().any(|v| compare(v, op, expected, leaf)),
    }
}

fn fold(text: &str, case_exact: bool) -> String {
    if case_exact {
        text.to_owned()
    } else {
        text.to_lowercase()
    }
}

fn order(op: CompareOp, ordering: Ordering) -> bool {
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn compare(actual: &Value, op: CompareOp, expected: &CompValue, leaf: &Attribute) -> bool {
    match leaf.kind {
        Kind::Boolean => {
            let wanted = match expected {
                CompValue::Bool(flag) => *flag,
                CompValue::String(text) if text.eq_ignore_ascii_case("true") => true,
                CompValue::String(text) if text.eq_ignore_ascii_case("false") => false,
                _ => return false,
            };
            actual
                .as_bool()
                .is_some_and(|flag| order(op, flag.cmp(&wanted)))
        }
        Kind::Integer => {
            let (Some(actual), CompValue::Number(wanted)) = (actual.as_f64(), expected) else {
                return false;
            };
            let wanted = wanted.as_f64().unwrap_or(f64::NAN);
            actual
                .partial_cmp(&wanted)
                .is_some_and(|ordering| order(op, ordering))
        }
        Kind::DateTime if op != CompareOp::Co && op != CompareOp::Sw && op != CompareOp::Ew => {
            let (Some(actual), CompValue::String(wanted)) = (actual.as_str(), expected) else {
                return false;
            };
            match (actual.parse::<Time>(), wanted.parse::<Time>()) {
                (Ok(actual), Ok(wanted)) => order(op, actual.cmp(&wanted)),
                _ => false,
            }
        }
        Kind::String | Kind::Reference | Kind::Binary | Kind::DateTime | Kind::Complex => {
            let Some(actual) = actual.as_str() else {
                return false;
            };
            let wanted = match expected {
                CompValue::String(text) => text.clone(),
                CompValue::Number(number) => number.to_string(),
                CompValue::Bool(flag) => flag.to_string(),
                CompValue::Null => return false,
            };
            let actual = fold(actual, leaf.case_exact);
            let wanted = fold(&wanted, leaf.case_exact);
            match op {
                CompareOp::Co => actual.contains(&wanted),
                CompareOp::Sw => actual.starts_with(&wanted),
                CompareOp::Ew => actual.ends_with(&wanted),
                _ => order(op, actual.cmp(&wanted)),
            }
        }
    }
}

/// The value a resource is sorted by.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub(crate) enum SortKey {
    Bool(bool),
    Number(f64),
    Time(Time),
    Text(String),
}

fn sort_key(value: &Value, leaf: &Attribute) -> Option<SortKey> {
    match value {
        Value::Bool(flag) => Some(SortKey::Bool(*flag)),
        Value::Number(number) => number.as_f64().map(SortKey::Number),
        Value::String(text) if leaf.kind == Kind::DateTime => text
            .parse::<Time>()
            .ok()
            .map(SortKey::Time)
            .or_else(|| Some(SortKey::Text(text.clone()))),
        Value::String(text) => Some(SortKey::Text(fold(text, leaf.case_exact))),
        _ => None,
    }
}

/// The sort key of `resource` for `sortBy`: of a multi-valued attribute, the primary
/// value or else the first.
pub(crate) fn sort_value(resource: &Map<String, Value>, target: &Target) -> Option<SortKey> {
    let leaf = target.leaf()?;
    let container = target.container(resource)?;
    let value = container.get(target.attribute.name)?;
    let chosen = match value {
        Value::Array(elements) => {
            let element = elements
                .iter()
                .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| elements.first())?;
            match (target.sub, target.attribute.kind) {
                (Some(sub), _) => element.get(sub.name)?,
                (None, Kind::Complex) => element.get("value")?,
                (None, _) => element,
            }
        }
        Value::Object(fields) => fields.get(target.sub?.name)?,
        other => other,
    };
    sort_key(chosen, leaf)
}

/// Orders two optional keys: missing values last.
pub(crate) fn compare_keys(a: &Option<SortKey>, b: &Option<SortKey>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => a.partial_cmp(b).unwrap_or_else(|| rank(a).cmp(&rank(b))),
    }
}

fn rank(key: &SortKey) -> u8 {
    match key {
        SortKey::Bool(_) => 0,
        SortKey::Number(_) => 1,
        SortKey::Time(_) => 2,
        SortKey::Text(_) => 3,
    }
}

/// `attributes` and `excludedAttributes` (RFC 7644 §3.9).
#[derive(Debug, Clone, Default)]
pub(crate) struct Projection {
    attributes: Vec<AttrPath>,
    excluded: Vec<AttrPath>,
}

fn attribute_list(text: &str) -> Result<Vec<AttrPath>, ScimError> {
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            let path: PatchPath = crate::filter::parse_path(name).map_err(|error| {
                ScimError::invalid_value(format!("invalid attribute name `{name}`: {error}"))
            })?;
            if path.filter.is_some() {
                return Err(ScimError::invalid_value(format!(
                    "invalid attribute name `{name}`: filters are not allowed here"
                )));
            }
            Ok(path.attr)
        })
        .collect()
}

impl Projection {
    pub(crate) fn parse(
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Projection, ScimError> {
        Ok(Projection {
            attributes: attributes
                .map(attribute_list)
                .transpose()?
                .unwrap_or_default(),
            excluded: excluded
                .map(attribute_list)
                .transpose()?
                .unwrap_or_default(),
        })
    }

    pub(crate) fn from_lists(
        attributes: Vec<String>,
        excluded: Vec<String>,
    ) -> Result<Projection, ScimError> {
        Projection::parse(
            (!attributes.is_empty())
                .then(|| attributes.join(","))
                .as_deref(),
            (!excluded.is_empty())
                .then(|| excluded.join(","))
                .as_deref(),
        )
    }

    /// Applies the selection to a full resource. Names that resolve to nothing are
    /// ignored; attributes returned `always` stay.
    pub(crate) fn apply(
        &self,
        kind: ResourceKind,
        resource: Map<String, Value>,
    ) -> Map<String, Value> {
        let mut resource = resource;
        if !self.attributes.is_empty() {
            let mut kept = Map::new();
            for key in ["schemas", "id"] {
                if let Some(value) = resource.get(key) {
                    kept.insert(key.to_owned(), value.clone());
                }
            }
            for path in &self.attributes {
                let Ok(target) = resolve(kind, path) else {
                    continue;
                };
                copy_selected(&resource, &mut kept, &target);
            }
            resource = kept;
        }
        for path in &self.excluded {
            let Ok(target) = resolve(kind, path) else {
                continue;
            };
            if target.attribute.returned == Returned::Always {
                continue;
            }
            remove_selected(&mut resource, &target);
        }
        resource
    }
}

fn copy_selected(from: &Map<String, Value>, to: &mut Map<String, Value>, target: &Target) {
    let name = target.attribute.name;
    let (source, destination) = match target.extension {
        None => (Some(from), to),
        Some(extension) => {
            let source = from.get(extension.id).and_then(Value::as_object);
            if source.is_none() {
                return;
            }
            let slot = to
                .entry(extension.id.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(destination) = slot else {
                return;
            };
            (source, destination)
        }
    };
    let Some(value) = source.and_then(|s| s.get(name)) else {
        return;
    };
    let Some(sub) = target.sub else {
        destination.insert(name.to_owned(), value.clone());
        return;
    };
    let pick = |element: &Value| -> Value {
        let mut picked = Map::new();
        if let Some(found) = element.get(sub.name) {
            picked.insert(sub.name.to_owned(), found.clone());
        }
        Value::Object(picked)
    };
    let selected = match value {
        Value::Array(elements) => Value::Array(elements.iter().map(pick).collect()),
        other => pick(other),
    };
    // Two selections of one attribute (`emails.value,emails.type`) merge.
    match (destination.get_mut(name), selected) {
        (Some(Value::Array(existing)), Value::Array(new)) => {
            for (old, new) in existing.iter_mut().zip(new) {
                if let (Value::Object(old), Value::Object(new)) = (old, new) {
                    old.extend(new);
                }
            }
        }
        (Some(Value::Object(existing)), Value::Object(new)) => existing.extend(new),
        (_, selected) => {
            destination.insert(name.to_owned(), selected);
        }
    }
}

fn remove_selected(resource: &mut Map<String, Value>, target: &Target) {
    let container = match target.extension {
        None => Some(resource),
        Some(extension) => resource
            .get_mut(extension.id)
            .and_then(Value::as_object_mut),
    };
    let Some(container) = container else {
        return;
    };
    match target.sub {
        None => {
            container.remove(target.attribute.name);
        }
        Some(sub) => match container.get_mut(target.attribute.name) {
            Some(Value::Array(elements)) => {
                for element in elements {
                    if let Value::Object(fields) = element {
                        fields.remove(sub.name);
                    }
                }
            }
            Some(Value::Object(fields)) => {
                fields.remove(sub.name);
            }
            _ => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::parse_filter;
    use serde_json::json;

    fn user() -> Map<String, Value> {
        json!({
            "id": "2819c223-7f76-453a-919d-413861904646",
            "userName": "BJensen",
            "displayName": "Babs Jensen",
            "active": true,
            "externalId": "Ext-1",
            "emails": [{"value": "bjensen@example.com", "type": "work"}],
            "meta": {"created": "2024-01-02T03:04:05Z", "lastModified": "2024-02-02T03:04:05Z"},
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn check(filter: &str) -> bool {
        let filter = parse_filter(filter).unwrap();
        validate(ResourceKind::User, &filter).unwrap();
        matches(ResourceKind::User, &filter, &user())
    }

    fn refused(filter: &str) -> ScimError {
        let filter = parse_filter(filter).unwrap();
        validate(ResourceKind::User, &filter).unwrap_err()
    }

    #[test]
    fn attribute_names_and_case_sensitivity() {
        assert!(check(r#"username eq "bjensen""#));
        assert!(check(r#"USERNAME EQ "BJENSEN""#));
        assert!(check(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "bj""#
        ));
        // externalId and id are caseExact.
        assert!(check(r#"externalId eq "Ext-1""#));
        assert!(!check(r#"externalId eq "ext-1""#));
        assert!(!check(r#"id eq "2819C223-7F76-453A-919D-413861904646""#));
    }

    #[test]
    fn operators() {
        assert!(check(r#"displayName co "jens""#));
        assert!(check(r#"displayName ew "SEN""#));
        assert!(check(r#"userName gt "a" and userName lt "c""#));
        assert!(check(r#"userName ge "bjensen" and userName le "bjensen""#));
        assert!(check(r#"userName ne "other""#));
        assert!(!check(r#"userName ne "bjensen""#));
        assert!(check("title ne \"x\""), "a missing attribute is not equal");
        assert!(check("active eq true"));
        assert!(!check("active eq false"));
        assert!(check("displayName pr"));
        assert!(!check("title pr"));
        assert!(check("title eq null"));
        assert!(check("meta.lastModified gt \"2024-02-01T00:00:00Z\""));
        assert!(!check("meta.created lt \"2024-01-02T04:00:00+01:00\""));
        assert!(check("meta.created le \"2024-01-02T04:04:05+01:00\""));
    }

    #[test]
    fn multi_valued_and_value_paths() {
        assert!(check(r#"emails co "example.com""#));
        assert!(check(r#"emails.value ew "@example.com""#));
        assert!(check(r#"emails[type eq "work" and value co "@example"]"#));
        assert!(!check(r#"emails[type eq "home"]"#));
        assert!(check(r#"emails[not (type eq "home")]"#));
        assert!(check("emails pr"));
        assert!(!check("phoneNumbers pr"));
    }

    #[test]
    fn precedence_is_honoured() {
        // `or` binds looser than `and`: true or (false and false).
        assert!(check(
            r#"userName eq "bjensen" or title pr and nickName pr"#
        ));
        // Grouped, it is (true or false) and false.
        assert!(!check(
            r#"(userName eq "bjensen" or title pr) and nickName pr"#
        ));
        assert!(!check(r#"not (userName eq "bjensen") or title pr"#));
    }

    #[test]
    fn invalid_combinations_are_refused() {
        for filter in [
            "bogus eq \"x\"",
            "active gt true",
            "name eq \"x\"",
            "emails[bogus eq \"x\"]",
            "userName[value eq \"x\"]",
            "userName.value eq \"x\"",
            "userName gt null",
        ] {
            assert!(
                matches!(
                    refused(filter),
                    ScimError::BadRequest {
                        scim_type: ScimType::InvalidFilter,
                        ..
                    }
                ),
                "{filter}"
            );
        }
    }

    #[test]
    fn projection_selects_and_excludes() {
        let kind = ResourceKind::User;
        let only = Projection::parse(Some("userName,emails.value"), None)
            .unwrap()
            .apply(kind, user());
        assert_eq!(
            Value::Object(only),
            json!({
                "id": "2819c223-7f76-453a-919d-413861904646",
                "userName": "BJensen",
                "emails": [{"value": "bjensen@example.com"}],
            })
        );
        let without = Projection::parse(None, Some("emails,ID,meta.created"))
            .unwrap()
            .apply(kind, user());
        assert!(!without.contains_key("emails"));
        assert!(without.contains_key("id"), "id is always returned");
        assert!(without["meta"].get("created").is_none());
    }
}
