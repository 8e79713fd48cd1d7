//! Sign-in settings: argon2 parameters, the password policy, lockout, the global MFA
//! policy (who, which methods, in which order), SMS codes, passkeys, lifetimes and
//! housekeeping. Plain data with defaults; the server reads them
//! from its TOML file (`[auth]`) and `PORTCULLIS_*` variables.

use portcullis_engine::{Argon2Settings, PasswordPolicy};
use serde::{Deserialize, Serialize};

/// Everything sign-in can be told. `Default` is what a server without an
/// `[auth]` section runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub argon2: Argon2Settings,
    pub password_policy: PasswordPolicy,
    pub lockout: LockoutSettings,
    /// Who must use a second factor besides the users whose own `mfa` says so.
    pub mfa_policy: MfaPolicy,
    /// The second factors users may enrol and sign in with, in the order they are
    /// offered. A user's own policy ([`crate::UserMfaPolicy`]) can narrow it, never
    /// widen it.
    pub mfa_methods: Vec<crate::MfaMethod>,
    /// When not empty, a user who must use a second factor must use one of these: the
    /// others are neither offered nor accepted, and a user with none of them enrolled
    /// is asked to enrol one (`mfa_enrollment_required`).
    pub mfa_required_methods: Vec<crate::MfaMethod>,
    /// Whether a passkey alone (login name, then the passkey; no password) may sign a
    /// user in. Needs `[passkeys]`.
    pub passwordless: bool,
    /// The issuer shown by authenticator apps (`otpauth://totp/<issuer>:<user>`).
    pub totp_issuer: String,
    /// Whether one-time codes may be sent by email (needs a mail server, which the
    /// server configures; the engine only makes the codes).
    pub email_codes: bool,
    /// How long an emailed one-time code is good for.
    pub email_code_minutes: u32,
    /// Whether one-time codes may be sent by SMS to the user's `phone` (needs a
    /// sender, which the server configures: `[sms]`).
    pub sms_codes: bool,
    /// How long an SMS code is good for.
    pub sms_code_minutes: u32,
    /// How many SMS codes are sent per user and per phone number.
    pub sms_limits: SmsLimits,
    /// Passkeys (WebAuthn): the relying party and the origins it accepts. `None`: no
    /// passkeys.
    pub passkeys: Option<PasskeySettings>,
    /// How long a passkey ceremony (its challenge) is good for.
    pub ceremony_minutes: u32,
    /// How long a password reset link is good for.
    pub reset_link_minutes: u32,
    /// Users who have not signed in for this many days (counted from their creation
    /// when they never did) are deactivated by housekeeping. `None`: never.
    pub inactivity_days: Option<u32>,
    /// New users created without an expiry get one this many days ahead. `None`: none.
    pub default_expiry_days: Option<u32>,
    /// Verify a user only with the backend of their own source (`ldap:corp` users
    /// against that directory, everyone else locally). Off: every backend is tried in
    /// order, the local one first.
    pub restrict_to_source: bool,
    /// Housekeeping drops sign-in events older than this many days.
    pub event_retention_days: u32,
}

impl Default for AuthSettings {
    fn default() -> AuthSettings {
        AuthSettings {
            argon2: Argon2Settings::default(),
            password_policy: PasswordPolicy::default(),
            lockout: LockoutSettings::default(),
            mfa_policy: MfaPolicy::None,
            mfa_methods: crate::MfaMethod::ALL.to_vec(),
            mfa_required_methods: Vec::new(),
            passwordless: false,
            totp_issuer: "Portcullis".to_owned(),
            email_codes: false,
            email_code_minutes: 10,
            sms_codes: false,
            sms_code_minutes: 5,
            sms_limits: SmsLimits::default(),
            passkeys: None,
            ceremony_minutes: 5,
            reset_link_minutes: 60,
            inactivity_days: None,
            default_expiry_days: None,
            restrict_to_source: false,
            event_retention_days: 365,
        }
    }
}

/// After `max_failures` failed attempts within `window_minutes`, the account (or the
/// unknown login name) is locked for `lock_minutes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutSettings {
    pub max_failures: u32,
    pub window_minutes: u32,
    pub lock_minutes: u32,
}

impl Default for LockoutSettings {
    fn default() -> LockoutSettings {
        LockoutSettings {
            max_failures: 5,
            window_minutes: 15,
            lock_minutes: 15,
        }
    }
}

/// At most `per_user` SMS codes to one user, and `per_number` to one phone number
/// (whoever's it is), in each `window_minutes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsLimits {
    pub per_user: u32,
    pub per_number: u32,
    pub window_minutes: u32,
}

impl Default for SmsLimits {
    fn default() -> SmsLimits {
        SmsLimits {
            per_user: 3,
            per_number: 3,
            window_minutes: 15,
        }
    }
}

/// The WebAuthn relying party: its id (a domain, such as `example.com`), the name
/// authenticators show, and the origins (`https://portcullis.example.com`) whose
/// ceremonies are accepted; a ceremony from any other origin is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeySettings {
    pub rp_id: String,
    #[serde(default = "default_rp_name")]
    pub rp_name: String,
    pub origins: Vec<String>,
}

fn default_rp_name() -> String {
    "Portcullis".to_owned()
}

/// Who must sign in with a second factor, whatever their own `mfa` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaPolicy {
    /// Only users whose `mfa` is `enabled` or `forced`.
    #[default]
    None,
    /// Also every user holding the `system-admin` system role.
    Admins,
    /// Everyone.
    Everyone,
}

pub(crate) const MINUTE: i64 = 60 * 1_000_000;
pub(crate) const DAY: i64 = 24 * 60 * MINUTE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_with_defaults_and_refuse_unknown_keys() {
        let settings: AuthSettings = serde_json::from_value(
            serde_json::json!({"lockout": {"max_failures": 3}, "mfa_policy": "admins"}),
        )
        .unwrap();
        assert_eq!(settings.lockout.max_failures, 3);
        assert_eq!(settings.lockout.window_minutes, 15);
        assert_eq!(settings.mfa_policy, MfaPolicy::Admins);
        assert!(
            serde_json::from_value::<AuthSettings>(serde_json::json!({"lockouts": {}})).is_err()
        );
    }
}
