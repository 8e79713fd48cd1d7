//! For tests of programs that use sign-in (feature `testing`): settings that make
//! argon2 cheap, and the code an authenticator app would show. The code is computed
//! from the Key URI an enrolment hands out, with `totp-rs` directly, not through this
//! crate's own TOTP code, so a test that signs in with it checks that code.

use portcullis_engine::{Argon2Settings, Time};

use crate::AuthSettings;

/// The default settings with the cheapest argon2 parameters: for tests that count
/// verifications and outcomes, never for tests that time them.
pub fn cheap_settings() -> AuthSettings {
    AuthSettings {
        argon2: Argon2Settings {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..AuthSettings::default()
    }
}

/// The six-digit code an authenticator app would show at `at` for the Key URI `uri`
/// (`otpauth://totp/…?secret=…`: SHA-1, 30-second steps, as the enrolment says).
///
/// # Panics
///
/// When `uri` has no base32 `secret`.
pub fn authenticator_code(uri: &str, at: Time) -> String {
    let secret = uri
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .expect("a secret in the URI");
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("a base32 secret");
    let step = u64::try_from(at.as_micros() / 1_000_000).expect("an instant after 1970");
    totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes).generate(step)
}
