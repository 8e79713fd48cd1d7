//! Secrets: password hashes (argon2id) and API token hashes.
//!
//! Never log or serialize what passes through here.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Hashes a password with `hasher` (argon2id with checked parameters) and a fresh
/// salt, into a PHC string.
pub(crate) fn hash_with(hasher: &argon2::Argon2<'static>, password: &str) -> String {
    let salt = SaltString::generate(&mut rand_core::OsRng);
    hasher
        .hash_password(password.as_bytes(), &salt)
        .expect("INVARIANT: argon2 hashing with checked parameters cannot fail")
        .to_string()
}

/// Whether `password` matches the PHC string `hash`. A malformed hash matches nothing.
pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// The prefix of every token secret, so leaked tokens are easy to recognise.
pub const TOKEN_PREFIX: &str = "pct_";

/// A new token secret (32 random bytes, hex) and its hash.
pub(crate) fn new_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("INVARIANT: the OS random source is available");
    let mut secret = String::with_capacity(TOKEN_PREFIX.len() + 64);
    secret.push_str(TOKEN_PREFIX);
    for byte in bytes {
        secret.push_str(&format!("{byte:02x}"));
    }
    let hash = token_hash(&secret);
    (secret, hash)
}

/// The stored form of a token secret. A fast hash is right here: the secret has 256
/// bits of entropy, so there is nothing to brute-force.
pub(crate) fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Compares two hashes in constant time.
pub(crate) fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let hash = hash_with(&argon2::Argon2::default(), "correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("Correct horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert!(hashes_equal(&token_hash(&a), &hash_a));
        assert!(!hashes_equal(&token_hash(&b), &hash_a));
    }
}
