//! Protocol names and the `name/port` pairs an asset offers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A protocol an asset offers, written `ssh/22`. The name is lowercase ASCII
/// letters, digits, `-` and `_`; the port is 1–65535.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol {
    name: Box<str>,
    port: u16,
}

/// Why a protocol text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed protocol `{0}` (expected a name and a port, such as `ssh/22`)")]
    Malformed(String),
    #[error("malformed protocol name `{0}` (letters, digits, `-` and `_`, at most 32)")]
    BadName(String),
    #[error("protocol port `{0}` is not between 1 and 65535")]
    BadPort(String),
}

/// Checks a protocol name and returns its canonical (lowercase) form.
pub fn protocol_name(text: &str) -> Result<Box<str>, ProtocolError> {
    let name = text.trim();
    let valid = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(name.to_ascii_lowercase().into_boxed_str())
    } else {
        Err(ProtocolError::BadName(text.to_owned()))
    }
}

impl Protocol {
    pub fn new(name: &str, port: u16) -> Result<Protocol, ProtocolError> {
        if port == 0 {
            return Err(ProtocolError::BadPort(port.to_string()));
        }
        Ok(Protocol {
            name: protocol_name(name)?,
            port,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for Protocol {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Protocol, ProtocolError> {
        let (name, port) = text
            .split_once('/')
            .ok_or_else(|| ProtocolError::Malformed(text.to_owned()))?;
        let port: u16 = port
            .trim()
            .parse()
            .map_err(|_| ProtocolError::BadPort(port.to_owned()))?;
        Protocol::new(name, port)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.port)
    }
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `ssh/22` in JSON; `(name, port)` in binary formats.
impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            (&*self.name, self.port).serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Protocol, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            let (name, port) = <(String, u16)>::deserialize(deserializer)?;
            Ok(Protocol {
                name: name.into_boxed_str(),
                port,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_port() {
        let protocol: Protocol = "SSH/22".parse().unwrap();
        assert_eq!((protocol.name(), protocol.port()), ("ssh", 22));
        assert_eq!(protocol.to_string(), "ssh/22");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "ssh",
            "ssh/",
            "ssh/0",
            "ssh/70000",
            "/22",
            "s h/22",
            "ssh/22/1",
            "*/22",
        ] {
            assert!(bad.parse::<Protocol>().is_err(), "{bad} was accepted");
        }
    }
}
