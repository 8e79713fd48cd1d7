//! The credential policy: what every password written through the engine must meet,
//! how it is hashed, and the expiry a new user gets, whatever door it came through
//! (the admin API, SCIM, an import, the command line, a program embedding the engine).
//!
//! `Engine::write` checks and hashes the plaintext passwords of user specs on the
//! caller's thread; the writer does the same for a password an edit (`Op::Modify`)
//! sets, and `Engine::write` gives a user created without an expiry the default one.
//! All use the engine's one policy, which sign-in's `Auth::new` (`portcullis-signin`)
//! sets from its settings (`[auth.password_policy]`, `[auth.argon2]`,
//! `default_expiry_days`) and which is otherwise the default one (no default expiry).

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::model::Time;
use crate::write::Password;

const DAY: i64 = 24 * 60 * 60 * 1_000_000;

/// The longest password accepted, in characters (the sign-in inputs' limit).
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// The password policy and the argon2id parameters new hashes are made with.
#[derive(Clone)]
pub struct CredentialPolicy {
    password: PasswordPolicy,
    hasher: argon2::Argon2<'static>,
    default_expiry_days: Option<u32>,
}

impl Default for CredentialPolicy {
    fn default() -> CredentialPolicy {
        CredentialPolicy::new(PasswordPolicy::default(), &Argon2Settings::default())
            .expect("INVARIANT: the default argon2 parameters are valid")
    }
}

/// The default policy, built once: every working copy starts from it (the writer then
/// hands it the engine's), so a write does not build argon2 parameters it discards.
pub(crate) fn default_policy() -> std::sync::Arc<CredentialPolicy> {
    static DEFAULT: std::sync::LazyLock<std::sync::Arc<CredentialPolicy>> =
        std::sync::LazyLock::new(Default::default);
    DEFAULT.clone()
}

impl CredentialPolicy {
    /// A policy, or why the argon2 parameters cannot be used.
    pub fn new(
        password: PasswordPolicy,
        argon2: &Argon2Settings,
    ) -> Result<CredentialPolicy, String> {
        Ok(CredentialPolicy {
            password,
            hasher: argon2.hasher()?,
            default_expiry_days: None,
        })
    }

    /// The same policy, giving users created without an expiry one `days` ahead
    /// (`None`: none).
    pub fn with_default_expiry_days(mut self, days: Option<u32>) -> CredentialPolicy {
        self.default_expiry_days = days;
        self
    }

    /// The expiry a user created at `now` without one gets.
    pub fn default_expiry(&self, now: Time) -> Option<Time> {
        self.default_expiry_days
            .map(|days| now.add_micros(i64::from(days) * DAY))
    }

    /// `password` checked against the policy and hashed if it is plaintext: for a
    /// front-end that hashes ahead of a write whose edit runs in the writer (argon2 is
    /// slow, and the writer must not wait on it). `Engine::write` does this itself.
    pub fn prepare(&self, password: Password) -> Result<Password, ValidationError> {
        password.hashed_under(self)
    }

    /// A hash of a random password under the policy's argon2 parameters: for a sign-in
    /// to verify against when there is no real hash, so every attempt costs the same.
    pub fn decoy_hash(&self) -> String {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).expect("INVARIANT: the OS random source is available");
        let random: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
        crate::secrets::hash_with(&self.hasher, &random)
    }

    /// The argon2id hash of a new plaintext password, or what the password lacks.
    pub(crate) fn hash_new(&self, plain: &str) -> Result<String, ValidationError> {
        self.check(plain)?;
        Ok(crate::secrets::hash_with(&self.hasher, plain))
    }

    /// Whether a new plaintext password meets the policy, without hashing it.
    pub(crate) fn check(&self, plain: &str) -> Result<(), ValidationError> {
        if plain.chars().count() > MAX_PASSWORD_CHARS {
            return Err(ValidationError::invalid(
                "password",
                format!("at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        let missing = self.password.violations(plain);
        if !missing.is_empty() {
            return Err(ValidationError::WeakPassword { missing });
        }
        Ok(())
    }
}

/// argon2id cost parameters. The defaults are OWASP's first recommendation
/// (19 MiB, 2 iterations, 1 lane). Stored hashes carry their own parameters, so
/// changing these affects new hashes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Settings {
    fn default() -> Argon2Settings {
        Argon2Settings {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Argon2Settings {
    /// The argon2id hasher these parameters make, or why they cannot be used.
    pub fn hasher(&self) -> Result<argon2::Argon2<'static>, String> {
        let params = argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|error| format!("argon2 parameters: {error}"))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }
}

/// What a new password must have. Length counts characters, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicy {
    pub min_length: usize,
    /// Longer passwords are refused: argon2 hashes anything, but an unbounded input is
    /// an easy way to make the server work.
    pub max_length: usize,
    pub upper: bool,
    pub lower: bool,
    pub digit: bool,
    /// At least one character that is neither a letter, a digit nor a space.
    pub special: bool,
}

impl Default for PasswordPolicy {
    fn default() -> PasswordPolicy {
        PasswordPolicy {
            min_length: 12,
            max_length: 256,
            upper: true,
            lower: true,
            digit: true,
            special: false,
        }
    }
}

impl PasswordPolicy {
    /// What `password` lacks, as short phrases; empty when it passes.
    pub fn violations(&self, password: &str) -> Vec<String> {
        let mut missing = Vec::new();
        let length = password.chars().count();
        if length < self.min_length {
            missing.push(format!("at least {} characters", self.min_length));
        }
        if length > self.max_length {
            missing.push(format!("at most {} characters", self.max_length));
        }
        if self.upper && !password.chars().any(char::is_uppercase) {
            missing.push("an upper-case letter".to_owned());
        }
        if self.lower && !password.chars().any(char::is_lowercase) {
            missing.push("a lower-case letter".to_owned());
        }
        if self.digit && !password.chars().any(|c| c.is_ascii_digit()) {
            missing.push("a digit".to_owned());
        }
        if self.special
            && !password
                .chars()
                .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
        {
            missing.push("a special character".to_owned());
        }
        if password.chars().any(char::is_control) {
            missing.push("no control characters".to_owned());
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_names_what_is_missing() {
        let policy = PasswordPolicy {
            special: true,
            ..PasswordPolicy::default()
        };
        assert_eq!(
            policy.violations("short"),
            [
                "at least 12 characters",
                "an upper-case letter",
                "a digit",
                "a special character"
            ]
        );
        assert!(policy.violations("Correct-horse-42").is_empty());
        assert_eq!(
            policy.violations("Correct horse 42"),
            ["a special character"]
        );
        assert_eq!(
            PasswordPolicy::default().violations(&"Aa1".repeat(100)),
            ["at most 256 characters"]
        );
    }
}
