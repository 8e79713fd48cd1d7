//! Entry points for the fuzz targets (`fuzz/`) and the corpus replay test: each
//! runs a parser on arbitrary text and, when it parses, what consumes the result.
//! None may panic, whatever the input.
//!
//! The oracle: what parses prints as text that parses back to the same value, and
//! prints the same again (parse → print → parse). A failed check panics, which the
//! fuzzer reports as a crash with the input.

use serde_json::{Value, json};

use crate::filter::{Limits, parse_filter_with, parse_path_with};
use crate::schema::ResourceKind;

/// The limits a printed text is parsed back with. The print may be longer than the
/// input (`1e3` prints as `1000.0`), though never nested deeper; the round trip is
/// about the grammar, so the length limit is lifted.
fn reparse_limits() -> Limits {
    Limits {
        max_len: usize::MAX,
        ..Limits::default()
    }
}

/// Parses `text` with `parse`; when it parses, checks the oracle (the print parses
/// back to the same value and prints the same again) and returns the value.
fn round_trip<T, E>(text: &str, parse: fn(&str, Limits) -> Result<T, E>) -> Option<T>
where
    T: PartialEq + std::fmt::Debug + std::fmt::Display,
    E: std::fmt::Display,
{
    let parsed = parse(text, Limits::default()).ok()?;
    let printed = parsed.to_string();
    match parse(&printed, reparse_limits()) {
        Ok(again) => {
            assert_eq!(again, parsed, "`{text}` printed as `{printed}`");
            assert_eq!(
                again.to_string(),
                printed,
                "`{text}`: the print is not stable"
            );
        }
        Err(error) => panic!("`{text}` printed as `{printed}`, which is refused: {error}"),
    }
    Some(parsed)
}

fn sample(kind: ResourceKind) -> serde_json::Map<String, Value> {
    let value = match kind {
        ResourceKind::User => json!({
            "schemas": [crate::schema::USER_SCHEMA],
            "id": "2819c223-7f76-453a-919d-413861904646",
            "userName": "bjensen",
            "displayName": "Barbara Jensen",
            "active": true,
            "emails": [{"value": "bjensen@example.com", "type": "work"}],
            "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
            "meta": {"created": "2024-01-01T00:00:00Z", "lastModified": "2024-01-02T00:00:00Z",
                "resourceType": "User", "version": "W/\"1\""},
        }),
        ResourceKind::Group => json!({
            "schemas": [crate::schema::GROUP_SCHEMA],
            "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "displayName": "Tour Guides",
            "members": [{"value": "2819c223-7f76-453a-919d-413861904646", "type": "User"}],
        }),
    };
    value.as_object().cloned().unwrap_or_default()
}

/// Parses `text` as a filter; if it parses, validates and evaluates it against a
/// sample user and group. Returns whether it parsed.
pub fn filter(text: &str) -> bool {
    let Some(filter) = round_trip(text, parse_filter_with) else {
        return false;
    };
    for kind in [ResourceKind::User, ResourceKind::Group] {
        if crate::query::validate(kind, &filter).is_ok() {
            crate::query::matches(kind, &filter, &sample(kind));
        }
    }
    true
}

/// Parses `text` as a PATCH path; if it parses, applies an add, a replace and a
/// remove through it to a sample user and group. Returns whether it parsed.
pub fn patch_path(text: &str) -> bool {
    if round_trip(text, parse_path_with).is_none() {
        return false;
    }
    for kind in [ResourceKind::User, ResourceKind::Group] {
        for op in ["add", "replace", "remove"] {
            let body = json!({"Operations": [{"op": op, "path": text, "value": "x"}]});
            if let Ok(operations) = crate::patch::parse(&body, Limits::default()) {
                let mut view = sample(kind);
                let _ = crate::patch::apply(kind, &mut view, &operations, Limits::default());
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_number_beyond_u64_survives_the_round_trip() {
        assert!(super::filter("ame eq 22224449999999999444444444464444"));
    }
}
