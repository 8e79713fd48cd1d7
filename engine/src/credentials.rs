//! The credential policy: what every password written through the engine must meet,
//! how it is hashed, and the expiry a new user gets, whatever door it came through
//! (the admin API, SCIM, an import, the command line, a program embedding the engine).
//!
//! `Engine::write` checks and hashes the plaintext passwords of user specs on the
//! caller's thread; the writer does the same for a password an edit (`Op::Modify`)
//! sets, and `Engine::write` gives a user created without an expiry the default one.
//! All use the engine's one policy, which `Auth::new` sets from the sign-in settings
//! (`[auth.password_policy]`, `[auth.argon2]`, `default_expiry_days`) and which is
//! otherwise the default one (no default expiry).

use crate::auth::{Argon2Settings, DAY, PasswordPolicy};
use crate::error::ValidationError;
use crate::model::Time;
use crate::write::Password;

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
