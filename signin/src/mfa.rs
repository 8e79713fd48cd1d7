//! Second factors as pure functions: TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30-second
//! steps, ±1 step of clock skew), recovery codes and emailed one-time codes.

use portcullis_engine::Id;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

/// Seconds per TOTP step.
pub(crate) const STEP_SECS: u64 = 30;
const DIGITS: usize = 6;
/// The secret's length: 160 bits, as RFC 4226 recommends for HMAC-SHA1.
const SECRET_BYTES: usize = 20;
/// How many recovery codes an enrolment hands out.
pub(crate) const RECOVERY_CODES: usize = 10;
/// Base32 without the look-alikes `0 1 8 9` is not needed: RFC 4648's alphabet has
/// none of `0 1 8 9`, so codes are unambiguous to read out.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("INVARIANT: the OS random source is available");
    bytes
}

pub(crate) fn new_secret() -> Vec<u8> {
    random_bytes::<SECRET_BYTES>().to_vec()
}

/// The TOTP generator of `secret`.
pub(crate) fn totp(secret: &[u8]) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 1, STEP_SECS, secret.to_vec())
}

/// The Key URI authenticator apps read (Google Authenticator's `otpauth://` format):
/// `otpauth://totp/<issuer>:<account>?secret=<base32>&issuer=<issuer>`. SHA-1, six
/// digits and 30 seconds are the defaults, so they are left out. Colons, not allowed
/// inside the label's parts, become underscores.
pub(crate) fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let issuer = percent_encode(&issuer.replace(':', "_"));
    let account = percent_encode(&account.replace(':', "_"));
    format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}",
        totp(secret).get_secret_base32()
    )
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The step of a Unix time in seconds.
pub(crate) fn step_of(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// The step among `current - 1 ..= current + 1` whose code is `code`, if any. Every
/// candidate is compared (in constant time) so the answer does not hint which matched.
pub(crate) fn matching_step(secret: &[u8], code: &str, current: u64) -> Option<u64> {
    let generator = totp(secret);
    let mut found = None;
    for step in current.saturating_sub(1)..=current.saturating_add(1) {
        let expected = generator.generate(step * STEP_SECS);
        let equal: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        if equal && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// A recovery code, `XXXX-XXXX-XXXX-XXXX` (80 bits), and the hash that is stored.
pub(crate) fn new_recovery_code() -> (String, [u8; 32]) {
    let bytes = random_bytes::<16>();
    let mut code = String::with_capacity(19);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        code.push(ALPHABET[usize::from(*byte & 31)] as char);
    }
    let hash = recovery_hash(&code);
    (code, hash)
}

/// What a recovery code is compared by: upper case, without dashes or spaces. A fast
/// hash is right: 80 random bits leave nothing to brute-force.
pub(crate) fn recovery_hash(code: &str) -> [u8; 32] {
    let normal: String = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Sha256::digest(normal.as_bytes()).into()
}

/// Whether `code` has the shape of a recovery code rather than a TOTP or emailed code.
pub(crate) fn looks_like_recovery_code(code: &str) -> bool {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).count() == 16
}

/// Whether two stored code hashes are equal, compared in constant time.
pub(crate) fn hashes_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// A six-digit emailed code and its stored hash (salted with the user id, so equal
/// codes of two users differ at rest).
pub(crate) fn new_email_code(user: &Id) -> (String, [u8; 32]) {
    let n = u32::from_le_bytes(random_bytes::<4>()) % 1_000_000;
    let code = format!("{n:06}");
    let hash = email_code_hash(user, &code);
    (code, hash)
}

pub(crate) fn email_code_hash(user: &Id, code: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(user.as_bytes());
    hasher.update(code.trim().as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (8 digits, the 20-byte ASCII secret).
    #[test]
    fn rfc6238_test_vectors() {
        let generator =
            TOTP::new_unchecked(Algorithm::SHA1, 8, 1, 30, b"12345678901234567890".to_vec());
        for (time, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(generator.generate(time), code, "at {time}");
        }
    }

    #[test]
    fn a_code_matches_its_step_and_the_neighbours_only() {
        let secret = new_secret();
        let generator = totp(&secret);
        let code = generator.generate(1000 * STEP_SECS);
        assert_eq!(matching_step(&secret, &code, 1000), Some(1000));
        assert_eq!(matching_step(&secret, &code, 999), Some(1000));
        assert_eq!(matching_step(&secret, &code, 1001), Some(1000));
        assert_eq!(matching_step(&secret, &code, 1002), None);
        assert_eq!(matching_step(&secret, &code, 998), None);
        assert_eq!(matching_step(&secret, "12345", 1000), None);
    }

    #[test]
    fn the_key_uri_encodes_its_label() {
        let uri = otpauth_uri(b"12345678901234567890", "Example Corp", "a:b@c d");
        assert_eq!(
            uri,
            "otpauth://totp/Example%20Corp:a_b%40c%20d?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Corp"
        );
    }

    #[test]
    fn recovery_codes_are_random_and_compared_loosely() {
        let (code, hash) = new_recovery_code();
        let (other, _) = new_recovery_code();
        assert_ne!(code, other);
        assert_eq!(code.len(), 19);
        assert!(looks_like_recovery_code(&code));
        assert!(!looks_like_recovery_code("123456"));
        assert_eq!(recovery_hash(&code.to_lowercase().replace('-', " ")), hash);
    }
}
