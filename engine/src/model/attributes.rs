//! Free-form attributes: what a front-end keeps on a user or group beyond the model's
//! fields (SCIM's enterprise extension, name parts, extra emails …), so that it
//! round-trips. The engine stores them and never reads them: no decision depends on
//! them.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The most bytes the attributes of one entity take as JSON text.
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;

/// A JSON object of attributes, by convention keyed by the front-end that owns them
/// (`{"scim": {...}}`), so that front-ends do not overwrite each other's.
///
/// In JSON (the API, the operation log) it is the object itself; in the store's binary
/// records (postcard, which cannot hold self-describing values) it is JSON text.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Attributes(Map<String, Value>);

impl Attributes {
    pub fn new(map: Map<String, Value>) -> Attributes {
        Attributes(map)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Sets `key`, or removes it when `value` is null.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        if value.is_null() {
            self.0.remove(&key);
        } else {
            self.0.insert(key, value);
        }
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// The size of the JSON text, for the limit.
    pub(crate) fn encoded_len(&self) -> usize {
        serde_json::to_vec(&self.0).map_or(usize::MAX, |text| text.len())
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<Map<String, Value>> for Attributes {
    fn from(map: Map<String, Value>) -> Attributes {
        Attributes(map)
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.0.serialize(serializer)
        } else {
            let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(&text)
        }
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        if deserializer.is_human_readable() {
            Map::deserialize(deserializer).map(Attributes)
        } else {
            let text = String::deserialize(deserializer)?;
            serde_json::from_str(&text)
                .map(Attributes)
                .map_err(de::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn attributes_are_an_object_in_json_and_text_in_postcard() {
        let Value::Object(map) = json!({"scim": {"title": "DBA", "emails": [{"value": "a@x"}]}})
        else {
            unreachable!()
        };
        let attributes = Attributes::new(map);
        let json = serde_json::to_value(&attributes).unwrap();
        assert_eq!(json["scim"]["title"], json!("DBA"));
        let bytes = postcard::to_allocvec(&attributes).unwrap();
        let back: Attributes = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, attributes);
        let from_json: Attributes = serde_json::from_value(json).unwrap();
        assert_eq!(from_json, attributes);
    }

    #[test]
    fn setting_null_removes() {
        let mut attributes = Attributes::default();
        attributes.set("scim", json!({"a": 1}));
        assert!(!attributes.is_empty());
        attributes.set("scim", Value::Null);
        assert!(attributes.is_empty());
    }
}
