//! Instants. Every evaluation takes one; the engine never reads the clock on its own
//! except where a caller asks for "now".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, in whole microseconds since the Unix epoch (UTC).
///
/// Microseconds keep comparisons a single integer compare on the hot path while
/// representing every RFC 3339 time an administrator would type. Finer fractions are
/// truncated on parse.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(i64);

impl Time {
    /// The earliest representable instant.
    pub const MIN: Time = Time(i64::MIN);
    /// Stands for "never" where a time bounds something from above.
    pub const MAX: Time = Time(i64::MAX);

    /// The current wall-clock time.
    pub fn now() -> Time {
        Time(jiff::Timestamp::now().as_microsecond())
    }

    pub const fn from_micros(micros: i64) -> Time {
        Time(micros)
    }

    pub const fn from_secs(secs: i64) -> Time {
        Time(secs.saturating_mul(1_000_000))
    }

    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// `self` moved by `micros` microseconds, saturating at the ends of the range.
    pub const fn add_micros(self, micros: i64) -> Time {
        Time(self.0.saturating_add(micros))
    }

    fn to_timestamp(self) -> Option<jiff::Timestamp> {
        jiff::Timestamp::from_microsecond(self.0).ok()
    }
}

/// The text of a time that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RFC 3339 time such as `2027-01-01T00:00:00Z`")]
pub struct TimeParseError(pub String);

impl FromStr for Time {
    type Err = TimeParseError;

    fn from_str(text: &str) -> Result<Time, TimeParseError> {
        let timestamp: jiff::Timestamp = text
            .trim()
            .parse()
            .map_err(|_| TimeParseError(text.to_owned()))?;
        Ok(Time(timestamp.as_microsecond()))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_timestamp() {
            Some(timestamp) => write!(f, "{timestamp}"),
            None if self.0 > 0 => f.write_str("9999-12-31T23:59:59.999999Z"),
            None => f.write_str("-9999-01-01T00:00:00Z"),
        }
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// RFC 3339 text in human-readable formats (JSON), an integer in binary ones (the store).
impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Time, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            i64::deserialize(deserializer).map(Time)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_through_json() {
        let time: Time = "2027-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(time.as_micros(), 1_798_761_600_000_000);
        let json = serde_json::to_string(&time).unwrap();
        assert_eq!(json, "\"2027-01-01T00:00:00Z\"");
        assert_eq!(serde_json::from_str::<Time>(&json).unwrap(), time);
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let time: Time = "2027-01-01T02:00:00+02:00".parse().unwrap();
        assert_eq!(time.to_string(), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn garbage_is_refused_with_the_text() {
        let error = "next tuesday".parse::<Time>().unwrap_err();
        assert!(error.to_string().contains("`next tuesday`"));
    }

    #[test]
    fn binary_form_is_an_integer() {
        let time = Time::from_micros(42);
        let bytes = postcard::to_allocvec(&time).unwrap();
        assert_eq!(postcard::from_bytes::<Time>(&bytes).unwrap(), time);
    }
}
