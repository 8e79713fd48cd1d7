//! The credential policy: what every password written through the engine must meet,
//! and how it is hashed, whatever door it came through (the admin API, SCIM, an
//! import, the command line, a program embedding the engine).
//!
//! `Engine::write` checks and hashes the plaintext passwords of user specs on the
//! caller's thread; the writer does the same for a password an edit (`Op::Modify`)
//! sets. Both use the engine's one policy, which `Auth::new` sets from the sign-in
//! settings (`[auth.password_policy]`, `[auth.argon2]`) and which is otherwise the
//! default one.

use crate::auth::{Argon2Settings, PasswordPolicy};
use crate::error::ValidationError;

/// The password policy and the argon2id parameters new hashes are made with.
#[derive(Clone)]
pub struct CredentialPolicy {
    password: PasswordPolicy,
    hasher: argon2::Argon2<'static>,
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
        })
    }

    /// The argon2id hash of a new plaintext password, or what the password lacks.
    pub(crate) fn hash_new(&self, plain: &str) -> Result<String, ValidationError> {
        let missing = self.password.violations(plain);
        if !missing.is_empty() {
            return Err(ValidationError::WeakPassword { missing });
        }
        Ok(crate::secrets::hash_with(&self.hasher, plain))
    }
}
