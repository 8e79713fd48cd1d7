//! Portcullis sign-in, a crate above the engine: passwords (argon2id, a policy,
//! must-change), login with lockout, second factors (TOTP, emailed and SMS codes,
//! recovery codes, passkeys), reset links, housekeeping, and the password backends
//! (local, and whatever the embedding program plugs in: LDAP).
//!
//! No HTTP, no mail, no clock here: every call takes `now`, and what must be sent to a
//! person (a reset token, an emailed code) is handed back as a [`Delivery`] for the
//! caller to send. Secrets, codes and hashes are never logged, never part of an
//! entity, an export, the operation log or an answer, except the TOTP secret and the
//! recovery codes, which an enrolment returns once.
//!
//! Entity changes (a password, `must_change_password`, `mfa`, `active`, `last_login`)
//! go through [`Engine::write`] and so reach the operation log; the rest of the state
//! is this crate's side records (`tables.rs`), which it changes only through
//! [`Engine::write_with`]: in the engine's writer, in a write's transaction, so every
//! read-modify-write of them is serialized with every other write, and in a cluster
//! every node's (a lockout, a used TOTP step or recovery code holds on every node).
//! This crate opens no transaction of its own. Every attempt, lockout, password and
//! MFA change is also recorded in the sign-in event log ([`Auth::events_since`]) and,
//! as an `Operation::Event` record, in the operation log, in one write; neither ever
//! holds a secret or a code.
//!
//! The lockout holds under concurrency: an attempt is counted toward its lock key
//! before its password is evaluated, in the one write that also checks the lock, so
//! however many attempts arrive at once, at most `max_failures` are evaluated before
//! the lock. A wrong password or code leaves the attempt counted, as its failure, and
//! sets the lock when the window is full; a sign-in clears the count; a right
//! password that signs nobody in (an inactive or expired user, a code still to come)
//! gives the attempt back; an attempt that ends in an error stays counted. Counting
//! is a durable write like any other; the writer's group commit shares one disk
//! flush among the attempts and writes waiting at once.
//!
//! Design choices the issue leaves open:
//! - A denial's reason never tells whether a login name exists: an unknown name and a
//!   wrong password both give `invalid_credentials`, after the same argon2 work (a
//!   dummy hash made with the configured parameters), and unknown names are locked
//!   out after the same number of failures as real accounts. `user_inactive` and
//!   `user_expired` are only said after a correct password.
//! - "Admins" in the global MFA policy are users holding the `system-admin` system
//!   role.
//! - A user whose MFA is required but who has no factor yet gets
//!   `mfa_enrollment_required`: their password was right, and they may enrol (and
//!   change their password) with it alone.
//! - Changes spanning an entity and this crate's records (confirming TOTP turns the
//!   user's `mfa` on) write this crate's records first, so a crash in between leaves
//!   a harmless state and a retry completes it.

mod backend;
mod mfa;
mod passkey;
mod settings;
mod tables;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHash, PasswordVerifier};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use backend::{BackendError, PasswordBackend};
pub use settings::{AuthSettings, LockoutSettings, MfaPolicy, PasskeySettings, SmsLimits};

use portcullis_engine::{
    Actor, CredentialPolicy, Engine, EntityKind, Error, Id, Mfa, NotFound, Op, Password, SideTable,
    SideTxn, Source, Spec, StoreError, Time, User, UserSpec, ValidationError,
};
use settings::{DAY, MINUTE};
use tables::{
    CEREMONIES, CeremonyKind, CeremonyRecord, EMAIL_CODES, EVENTS, EmailCodeRecord, FAILURES,
    Failures, MFA_POLICY, PASSKEY_IDS, PASSKEYS, PasskeyRecord, PasskeysRecord, RECOVERY, RESETS,
    RecoveryRecord, ResetRecord, SMS_CODES, SMS_SENDS, Sends, TOTP, TotpRecord,
};

/// The most characters of a login name or a code looked at; longer input is refused
/// before any work.
const MAX_INPUT_CHARS: usize = 1024;
/// Wrong codes tried against one emailed or SMS code before it is dropped.
const EMAIL_CODE_ATTEMPTS: u32 = 5;
/// The most passkeys one user may register.
const MAX_PASSKEYS: usize = 20;
/// The longest passkey name, in characters.
const MAX_PASSKEY_NAME: usize = 64;
/// The role whose holders the `admins` MFA policy covers.
const ADMIN_ROLE: &str = "system-admin";

/// A sign-in attempt.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// A username or an email address.
    pub login: String,
    pub password: String,
    /// A TOTP code, an emailed or SMS code, or a recovery code.
    #[serde(default)]
    pub code: Option<String>,
    /// Without a code: ask for this method (`email` and `sms` send a code, `passkey`
    /// starts a passkey ceremony).
    #[serde(default)]
    pub method: Option<MfaMethod>,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// Credentials for the self-service calls: the same as a login.
pub type Credentials = LoginRequest;

/// A second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MfaMethod {
    Totp,
    Email,
    RecoveryCode,
    /// A WebAuthn credential (an authenticator with user verification).
    Passkey,
    /// A code sent by SMS to the user's `phone`.
    Sms,
}

impl MfaMethod {
    /// Every method, in the order they are offered by default: the strongest first.
    pub const ALL: [MfaMethod; 5] = [
        MfaMethod::Passkey,
        MfaMethod::Totp,
        MfaMethod::Sms,
        MfaMethod::Email,
        MfaMethod::RecoveryCode,
    ];

    pub fn code(self) -> &'static str {
        match self {
            MfaMethod::Totp => "totp",
            MfaMethod::Email => "email",
            MfaMethod::RecoveryCode => "recovery_code",
            MfaMethod::Passkey => "passkey",
            MfaMethod::Sms => "sms",
        }
    }
}

/// A user's own MFA policy, set by an administrator: it narrows the global one
/// ([`AuthSettings::mfa_methods`], [`AuthSettings::mfa_required_methods`]), never
/// widens it. `None` leaves the global setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserMfaPolicy {
    /// The methods this user may enrol and use, in the order offered (those the
    /// global policy allows).
    #[serde(default)]
    pub methods: Option<Vec<MfaMethod>>,
    /// When MFA is required of this user, one of these must be used.
    #[serde(default)]
    pub required: Option<Vec<MfaMethod>>,
}

/// A passkey ceremony's first half: the token that names it in the second call, and
/// the options for the browser's `navigator.credentials.create()` or `.get()` (the
/// WebAuthn JSON, `{"publicKey": {...}}`).
#[derive(Clone)]
pub struct PasskeyChallenge {
    pub ceremony: String,
    pub options: serde_json::Value,
}

impl std::fmt::Debug for PasskeyChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasskeyChallenge").finish_non_exhaustive()
    }
}

/// One of a user's passkeys, as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasskeyInfo {
    pub id: Id,
    pub name: String,
    pub created_at: Time,
    pub last_used_at: Option<Time>,
}

impl From<&PasskeyRecord> for PasskeyInfo {
    fn from(record: &PasskeyRecord) -> PasskeyInfo {
        PasskeyInfo {
            id: record.id,
            name: record.name.clone(),
            created_at: record.created_at,
            last_used_at: record.last_used_at,
        }
    }
}

/// How a [`Delivery`] reaches its person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryChannel {
    Email,
    Sms,
}

/// Why a sign-in was refused. None of these tells whether an unknown login name
/// exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// Unknown login name or wrong password (indistinguishable on purpose).
    InvalidCredentials,
    /// Too many failures: try again later.
    Locked,
    /// The password was right; the user is deactivated.
    UserInactive,
    /// The password was right; the user has expired.
    UserExpired,
    /// The password was right; the second-factor code was wrong or used before.
    InvalidCode,
}

impl DenyReason {
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::InvalidCredentials => "invalid_credentials",
            DenyReason::Locked => "locked",
            DenyReason::UserInactive => "user_inactive",
            DenyReason::UserExpired => "user_expired",
            DenyReason::InvalidCode => "invalid_code",
        }
    }
}

/// Something to send to a person: a reset token, or a code by email or SMS. `Debug`
/// hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    pub channel: DeliveryChannel,
    /// The email address, or the phone number for SMS.
    pub to: String,
    pub username: String,
    /// The reset token or the code.
    pub secret: String,
    pub expires_at: Time,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("channel", &self.channel)
            .field("to", &self.to)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The answer to a sign-in.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    /// Signed in; `last_login` is recorded.
    Ok {
        user: Arc<User>,
    },
    /// The password was right; a second factor is needed. With `email` or `sms` asked
    /// for, `delivery` holds the code to send.
    MfaRequired {
        methods: Vec<MfaMethod>,
        delivery: Option<Delivery>,
    },
    /// The password was right and `passkey` was asked for: the challenge to answer
    /// ([`Auth::finish_passkey_login`]). Its status is `mfa_required` too.
    PasskeyRequired {
        methods: Vec<MfaMethod>,
        challenge: PasskeyChallenge,
    },
    /// The password was right; MFA is required but the user has no factor yet.
    MfaEnrollmentRequired {
        user: Arc<User>,
    },
    /// Every factor was right; the user must change their password first.
    PasswordChangeRequired {
        user: Arc<User>,
    },
    Denied {
        reason: DenyReason,
    },
}

impl LoginOutcome {
    /// `ok`, `mfa_required`, `mfa_enrollment_required`, `password_change_required` or
    /// `denied`.
    pub fn status(&self) -> &'static str {
        match self {
            LoginOutcome::Ok { .. } => "ok",
            LoginOutcome::MfaRequired { .. } | LoginOutcome::PasskeyRequired { .. } => {
                "mfa_required"
            }
            LoginOutcome::MfaEnrollmentRequired { .. } => "mfa_enrollment_required",
            LoginOutcome::PasswordChangeRequired { .. } => "password_change_required",
            LoginOutcome::Denied { .. } => "denied",
        }
    }
}

/// What a TOTP enrolment hands out, once.
#[derive(Clone)]
pub struct TotpEnrolment {
    /// The secret in base32, for typing into an app.
    pub secret: String,
    /// `otpauth://totp/...`, for a QR code.
    pub uri: String,
}

impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(..)")
    }
}

/// Why a sign-in call could not be done. A refused login is not an error (it is a
/// [`LoginOutcome::Denied`]); a refused self-service call is [`AuthError::Denied`].
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Engine(#[from] Error),
    #[error("sign-in refused: {}", .0.code())]
    Denied(DenyReason),
    /// The credentials were right but the call needs the second factor too.
    #[error("this needs a second-factor code")]
    CodeRequired,
    #[error("the password does not meet the policy: it needs {}", .0.join(", "))]
    WeakPassword(Vec<String>),
    #[error("user `{user}` signs in through `{origin}`; passwords are not kept here for it")]
    NotLocal { user: String, origin: String },
    #[error("user `{0}` has no email address")]
    NoEmail(String),
    #[error("mfa is forced for this user and cannot be turned off")]
    MfaForced,
    #[error("the global mfa policy requires a second factor for this user")]
    MfaRequiredByPolicy,
    #[error("no totp enrolment is waiting for confirmation; enrol first")]
    NoPendingEnrolment,
    #[error("the code is wrong or was used before")]
    InvalidCode,
    #[error("the reset link is unknown, used or expired")]
    InvalidResetToken,
    #[error("emailed codes are not enabled on this server")]
    EmailDisabled,
    #[error("user `{0}` has no phone number")]
    NoPhone(String),
    #[error("too many codes were sent to this user or number; try again later")]
    TooManyCodes,
    #[error("the mfa policy does not allow `{}` for this user", .0.code())]
    MethodNotAllowed(MfaMethod),
    #[error("passkeys are not configured on this server")]
    PasskeysDisabled,
    #[error("signing in with a passkey alone is not allowed on this server")]
    PasswordlessDisabled,
    #[error("the passkey ceremony is unknown, used or expired")]
    InvalidCeremony,
    #[error("the passkey was refused: {0}")]
    PasskeyRefused(String),
    #[error("the passkey is already registered")]
    PasskeyTaken,
    #[error("unknown passkey `{0}`")]
    UnknownPasskey(String),
    #[error("{field}: {message}")]
    Input {
        field: &'static str,
        message: String,
    },
}

impl From<StoreError> for AuthError {
    fn from(error: StoreError) -> AuthError {
        AuthError::Engine(Error::Store(error))
    }
}

/// One line of the sign-in event log. Never a secret, never a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEvent {
    pub seq: u64,
    pub time: Time,
    /// `login_ok`, `login_denied`, `lockout`, `password_set`, `password_changed`,
    /// `password_reset`, `reset_issued`, `mfa_enrolment_started`, `mfa_enabled`,
    /// `mfa_disabled`, `mfa_reset`, `mfa_policy_set`, `recovery_codes_issued`,
    /// `recovery_code_used`, `email_code_issued`, `sms_code_issued`, `sms_sent`,
    /// `sms_failed`, `passkey_registered`, `passkey_used`, `passkey_renamed`,
    /// `passkey_removed`, `deactivated_inactive`.
    pub event: String,
    /// Who did it: the user themselves (`user:<name>`), a token, `housekeeping`.
    pub actor: String,
    /// The user concerned, when the login name resolved to one.
    pub user: Option<Id>,
    /// The login name as typed, for attempts.
    pub login: Option<String>,
    /// A reason code (for denials) or a method.
    pub detail: Option<String>,
}

/// What a housekeeping run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HousekeepingReport {
    /// Usernames deactivated for inactivity.
    pub deactivated: Vec<String>,
    /// Expired or orphaned sign-in records and events past retention removed.
    pub purged: u64,
}

/// Where a verified password came from, internally.
enum Stage {
    /// Every factor needed was given.
    Passed(Arc<User>),
    /// The password was right; MFA is required and nothing is enrolled.
    NeedsEnrolment(Arc<User>),
    /// Stop here with this answer.
    Answer(LoginOutcome),
}

/// One sign-in attempt, as the lockout sees it.
struct Attempt<'a> {
    /// The counter it counts toward ([`lock_key`]).
    lock: [u8; 32],
    now: Time,
    /// The login name as typed (trimmed).
    login: &'a str,
    /// `login`, or the self-service call the credentials are for (`password_change`).
    purpose: &'a str,
}

/// Sign-in over an [`Engine`]. Cheap to share (`Arc` it).
pub struct Auth {
    engine: Arc<Engine>,
    settings: AuthSettings,
    hasher: argon2::Argon2<'static>,
    /// A hash of a random password made with the configured parameters: verified
    /// against when there is no real hash, so every attempt costs the same.
    dummy_hash: String,
    backends: Vec<Box<dyn PasswordBackend>>,
    verifications: AtomicU64,
    /// The WebAuthn relying party, when `[passkeys]` is configured.
    relying_party: Option<passkey::RelyingParty>,
}

impl Auth {
    /// Sign-in for `engine` with `settings`. Sets the engine's credential policy from `settings`.
    pub fn new(engine: Arc<Engine>, settings: AuthSettings) -> Result<Auth, AuthError> {
        let hasher = settings
            .argon2
            .hasher()
            .map_err(|message| AuthError::Input {
                field: "argon2",
                message,
            })?;
        if settings.lockout.max_failures == 0 {
            return Err(AuthError::Input {
                field: "lockout.max_failures",
                message: "must be at least 1".to_owned(),
            });
        }
        let relying_party = settings
            .passkeys
            .as_ref()
            .map(passkey::RelyingParty::new)
            .transpose()
            .map_err(|message| AuthError::Input {
                field: "passkeys",
                message,
            })?;
        if settings.passwordless && relying_party.is_none() {
            return Err(AuthError::Input {
                field: "passwordless",
                message: "needs passkeys ([passkeys] rp_id and origins)".to_owned(),
            });
        }
        // Every door's passwords meet the same policy: the engine's, set from these
        // settings (see `CredentialPolicy`).
        let policy = CredentialPolicy::new(settings.password_policy, &settings.argon2)
            .map_err(|message| AuthError::Input {
                field: "argon2",
                message,
            })?
            .with_default_expiry_days(settings.default_expiry_days);
        let dummy_hash = policy.decoy_hash();
        engine.set_credential_policy(policy);
        Ok(Auth {
            engine,
            settings,
            hasher,
            dummy_hash,
            backends: Vec::new(),
            verifications: AtomicU64::new(0),
            relying_party,
        })
    }

    /// Adds a password backend, tried after the local one (see
    /// [`AuthSettings::restrict_to_source`]).
    pub fn with_backend(mut self, backend: Box<dyn PasswordBackend>) -> Auth {
        self.backends.push(backend);
        self
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// How many argon2 verifications this instance has run: lets tests see that an
    /// unknown user costs the same work as a wrong password.
    #[doc(hidden)]
    pub fn argon2_verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    // ----- login --------------------------------------------------------------------

    /// Signs a user in. A refusal is an answer, not an error; errors are for when no
    /// answer can be given (storage failures, input over the limits).
    pub fn login(&self, request: &LoginRequest, now: Time) -> Result<LoginOutcome, AuthError> {
        let stage = self.authenticate(request, now, "login")?;
        self.conclude(stage, now)
    }

    /// The answer to a sign-in that got as far as `stage`: records the login when
    /// every factor was given.
    fn conclude(&self, stage: Stage, now: Time) -> Result<LoginOutcome, AuthError> {
        match stage {
            Stage::Answer(outcome) => Ok(outcome),
            Stage::NeedsEnrolment(user) => {
                self.own_event(now, "login_mfa_enrollment_required", &user, None)?;
                Ok(LoginOutcome::MfaEnrollmentRequired { user })
            }
            Stage::Passed(user) if user.must_change_password => {
                self.own_event(now, "login_password_change_required", &user, None)?;
                Ok(LoginOutcome::PasswordChangeRequired { user })
            }
            Stage::Passed(user) => {
                self.engine.write(
                    &Actor::system(actor_of(&user)),
                    vec![Op::RecordLogin {
                        user: user.id.to_string(),
                        at: now,
                    }],
                )?;
                self.own_event(now, "login_ok", &user, None)?;
                let user = self
                    .engine
                    .snapshot()
                    .user(&user.id.to_string())
                    .unwrap_or(user);
                Ok(LoginOutcome::Ok { user })
            }
        }
    }

    /// Checks credentials as a login does (failures count toward the lockout) without
    /// recording a login.
    ///
    /// The attempt is counted first, in the same transaction as the lock check
    /// ([`Auth::reserve_attempt`]), and only then evaluated: however many attempts
    /// arrive at once, at most `max_failures` of them are evaluated before the lock.
    fn authenticate(
        &self,
        request: &LoginRequest,
        now: Time,
        purpose: &str,
    ) -> Result<Stage, AuthError> {
        check_input("login", &request.login)?;
        check_input("password", &request.password)?;
        if let Some(code) = &request.code {
            check_input("code", code)?;
        }
        let login = request.login.trim();
        let user = self.find_login(login);
        let attempt = Attempt {
            lock: lock_key(user.as_deref(), login),
            now,
            login,
            purpose,
        };
        if !self.reserve_attempt(&attempt)? {
            // The same work as any attempt, so a lock says nothing by its timing.
            self.burn(&request.password);
            self.deny(&attempt, user.as_deref(), DenyReason::Locked)?;
            return Ok(Stage::Answer(denied(DenyReason::Locked)));
        }
        // An attempt that ends in an error (storage) keeps its reservation: it counts as
        // a failure, as a directory that does not answer does.
        self.evaluate(request, user, &attempt)
    }

    /// The user a login name (username or email) names.
    fn find_login(&self, login: &str) -> Option<Arc<User>> {
        self.engine.snapshot().user_by_login(login)
    }

    /// Evaluates an attempt [`Auth::reserve_attempt`] has counted: a wrong password or
    /// code leaves it counted ([`Auth::fail`]), a full sign-in clears the count, and a
    /// right password that signs nobody in gives the attempt back.
    fn evaluate(
        &self,
        request: &LoginRequest,
        user: Option<Arc<User>>,
        attempt: &Attempt<'_>,
    ) -> Result<Stage, AuthError> {
        let now = attempt.now;
        let verified = self.verify_password(user.as_deref(), &request.password)?;
        let Some(user) = user.clone().filter(|_| verified) else {
            self.fail(attempt, user.as_deref(), DenyReason::InvalidCredentials)?;
            return Ok(Stage::Answer(denied(DenyReason::InvalidCredentials)));
        };
        if !user.active || user.expires_at.is_some_and(|expires| now >= expires) {
            let reason = if user.active {
                DenyReason::UserExpired
            } else {
                DenyReason::UserInactive
            };
            self.give_back(attempt)?;
            self.deny(attempt, Some(&user), reason)?;
            return Ok(Stage::Answer(denied(reason)));
        }
        if !self.mfa_required(&user) {
            self.clear_failures(&attempt.lock)?;
            return Ok(Stage::Passed(user));
        }
        let methods = self.methods(&user)?;
        if methods.is_empty() {
            self.clear_failures(&attempt.lock)?;
            return Ok(Stage::NeedsEnrolment(user));
        }
        let Some(code) = request
            .code
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        else {
            // A right password without its code neither fails nor clears the count
            // (clearing would let a password holder guess codes without end).
            self.give_back(attempt)?;
            let asked = request.method.filter(|method| methods.contains(method));
            let delivery = match asked {
                Some(MfaMethod::Email) => Some(self.issue_email_code(&user, now)?),
                Some(MfaMethod::Sms) => Some(self.issue_sms_code(&user, now)?),
                _ => None,
            };
            if asked == Some(MfaMethod::Passkey) {
                let challenge = self.passkey_challenge(Some(&user), attempt.login, false, now)?;
                return Ok(Stage::Answer(LoginOutcome::PasskeyRequired {
                    methods,
                    challenge,
                }));
            }
            return Ok(Stage::Answer(LoginOutcome::MfaRequired {
                methods,
                delivery,
            }));
        };
        match self.verify_code(&user, code, &methods, now)? {
            Some(method) => {
                self.clear_failures(&attempt.lock)?;
                if method == MfaMethod::RecoveryCode {
                    self.own_event(now, "recovery_code_used", &user, None)?;
                }
                Ok(Stage::Passed(user))
            }
            None => {
                self.fail(attempt, Some(&user), DenyReason::InvalidCode)?;
                Ok(Stage::Answer(denied(DenyReason::InvalidCode)))
            }
        }
    }

    /// Whether `password` is the user's, by the backends in order. Runs exactly one
    /// argon2 verification locally whatever the user (a dummy one when there is no
    /// local hash), then the other backends that apply.
    fn verify_password(&self, user: Option<&User>, password: &str) -> Result<bool, AuthError> {
        let local_applies = user.is_some_and(|u| {
            !self.settings.restrict_to_source || !matches!(u.source, Source::Ldap(_))
        });
        let hash = match user {
            Some(user) if local_applies && user.has_password => {
                self.engine.password_hash(user.id)?
            }
            _ => None,
        };
        let local = match &hash {
            Some(hash) => self.verify_hash(password, hash),
            None => {
                self.burn(password);
                false
            }
        };
        if local {
            return Ok(true);
        }
        // An empty password never goes to a backend: an LDAP simple bind with one is
        // an "unauthenticated bind", which many servers answer with success.
        let Some(user) = user.filter(|_| !password.is_empty()) else {
            return Ok(false);
        };
        for backend in &self.backends {
            if self.settings.restrict_to_source && backend.source() != user.source {
                continue;
            }
            if !backend.handles(user) {
                continue;
            }
            match backend.verify(user, password) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                // A directory that does not answer is a failed attempt for this
                // backend, not an error of the whole login: the next backend may know.
                Err(error) => tracing_free_note(&error),
            }
        }
        Ok(false)
    }

    fn verify_hash(&self, password: &str, hash: &str) -> bool {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        PasswordHash::new(hash).is_ok_and(|parsed| {
            self.hasher
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }

    /// An argon2 verification whose answer is thrown away.
    fn burn(&self, password: &str) {
        let _ = self.verify_hash(password, &self.dummy_hash);
    }

    fn mfa_required(&self, user: &User) -> bool {
        user.mfa != Mfa::Disabled
            || match self.settings.mfa_policy {
                MfaPolicy::None => false,
                MfaPolicy::Admins => user.system_roles.iter().any(|r| r == ADMIN_ROLE),
                MfaPolicy::Everyone => true,
            }
    }

    /// The second factors `user` can use now, in the order offered: those enrolled
    /// (a phone number or an email address counts, when codes are sent that way)
    /// that the policy allows, and, when it requires some, only those.
    pub fn methods(&self, user: &User) -> Result<Vec<MfaMethod>, AuthError> {
        let (allowed, required) = self.policy_of(user)?;
        let mut methods = Vec::new();
        for method in allowed {
            if !required.is_empty() && !required.contains(&method) {
                continue;
            }
            let enrolled = match method {
                MfaMethod::Totp => {
                    let totp: Option<TotpRecord> =
                        tables::read(&self.engine, TOTP, &tables::key(user.id))?;
                    totp.is_some_and(|t| t.secret.is_some())
                }
                MfaMethod::Email => self.settings.email_codes && user.email.is_some(),
                MfaMethod::Sms => self.settings.sms_codes && user.phone.is_some(),
                MfaMethod::RecoveryCode => {
                    let recovery: Option<RecoveryRecord> =
                        tables::read(&self.engine, RECOVERY, &tables::key(user.id))?;
                    recovery.is_some_and(|r| !r.hashes.is_empty())
                }
                MfaMethod::Passkey => {
                    self.relying_party.is_some() && !self.passkey_records(user.id)?.is_empty()
                }
            };
            if enrolled {
                methods.push(method);
            }
        }
        Ok(methods)
    }

    /// The methods `user` may enrol and use, in the order offered, and those the
    /// policy requires (empty: any of them).
    fn policy_of(&self, user: &User) -> Result<(Vec<MfaMethod>, Vec<MfaMethod>), AuthError> {
        let own: UserMfaPolicy =
            tables::read(&self.engine, MFA_POLICY, &tables::key(user.id))?.unwrap_or_default();
        let global = &self.settings.mfa_methods;
        let allowed: Vec<MfaMethod> = match &own.methods {
            Some(methods) => methods
                .iter()
                .copied()
                .filter(|m| global.contains(m))
                .collect(),
            None => global.clone(),
        };
        let required = own
            .required
            .unwrap_or_else(|| self.settings.mfa_required_methods.clone());
        Ok((allowed, required))
    }

    /// Refuses an enrolment in `method` when the policy does not let `user` use it.
    fn check_allowed(&self, user: &User, method: MfaMethod) -> Result<(), AuthError> {
        let (allowed, _) = self.policy_of(user)?;
        if allowed.contains(&method) {
            Ok(())
        } else {
            Err(AuthError::MethodNotAllowed(method))
        }
    }

    /// A user's own MFA policy (the default one when none was set).
    pub fn mfa_policy(&self, user: &str) -> Result<UserMfaPolicy, AuthError> {
        let user = self.user(user)?;
        Ok(tables::read(&self.engine, MFA_POLICY, &tables::key(user.id))?.unwrap_or_default())
    }

    /// Sets a user's own MFA policy (an administrator's call); the default one
    /// removes it.
    pub fn set_mfa_policy(
        &self,
        actor: &str,
        user: &str,
        policy: &UserMfaPolicy,
        now: Time,
    ) -> Result<(), AuthError> {
        let user = self.user(user)?;
        let (id, record) = (user.id, policy.clone());
        self.side(move |txn| {
            if record == UserMfaPolicy::default() {
                txn.remove(MFA_POLICY, &tables::key(id))?;
            } else {
                tables::put(txn, MFA_POLICY, &tables::key(id), &record);
            }
            Ok(())
        })?;
        let names = |methods: &Option<Vec<MfaMethod>>| {
            methods.as_ref().map_or_else(
                || "global".to_owned(),
                |m| m.iter().map(|m| m.code()).collect::<Vec<_>>().join(","),
            )
        };
        let detail = format!(
            "methods={} required={}",
            names(&policy.methods),
            names(&policy.required)
        );
        self.event(
            now,
            "mfa_policy_set",
            actor,
            Some(&user),
            None,
            Some(&detail),
        )
    }

    /// Which factor `code` is, if it is a valid one of `methods`; consumes it (a TOTP
    /// step, an emailed or SMS code, a recovery code are each good once).
    fn verify_code(
        &self,
        user: &User,
        code: &str,
        methods: &[MfaMethod],
        now: Time,
    ) -> Result<Option<MfaMethod>, AuthError> {
        let methods = methods.to_vec();
        let (user, code) = (user.id, code.to_owned());
        self.side(move |txn| {
            let allows = |method: MfaMethod| methods.contains(&method);
            let key = tables::key(user);
            if mfa::looks_like_recovery_code(&code) {
                if !allows(MfaMethod::RecoveryCode) {
                    return Ok(None);
                }
                let Some(mut record) = tables::get::<RecoveryRecord>(txn, RECOVERY, &key)? else {
                    return Ok(None);
                };
                let hash = mfa::recovery_hash(&code);
                let before = record.hashes.len();
                record
                    .hashes
                    .retain(|stored| !mfa::hashes_equal(stored, &hash));
                if record.hashes.len() == before {
                    return Ok(None);
                }
                tables::put(txn, RECOVERY, &key, &record);
                return Ok(Some(MfaMethod::RecoveryCode));
            }
            if allows(MfaMethod::Totp) {
                if let Some(mut record) = tables::get::<TotpRecord>(txn, TOTP, &key)? {
                    let current = mfa::step_of(unix_secs(now));
                    let step = (record.secret.as_ref())
                        .and_then(|secret| mfa::matching_step(secret, &code, current));
                    if let Some(step) = step.filter(|step| *step > record.last_step) {
                        record.last_step = step;
                        tables::put(txn, TOTP, &key, &record);
                        return Ok(Some(MfaMethod::Totp));
                    }
                }
            }
            for (method, table) in [(MfaMethod::Email, EMAIL_CODES), (MfaMethod::Sms, SMS_CODES)] {
                if allows(method) && take_code(txn, table, user, &code, now)? {
                    return Ok(Some(method));
                }
            }
            Ok(None)
        })
    }

    fn issue_email_code(&self, user: &User, now: Time) -> Result<Delivery, AuthError> {
        let to = user
            .email
            .clone()
            .ok_or_else(|| AuthError::NoEmail(user.username.clone()))?;
        let (code, hash) = mfa::new_email_code(&user.id);
        let expires_at = now.add_micros(i64::from(self.settings.email_code_minutes) * MINUTE);
        let record = EmailCodeRecord {
            hash,
            expires_at,
            attempts: 0,
        };
        let id = user.id;
        self.side(move |txn| {
            tables::put(txn, EMAIL_CODES, &tables::key(id), &record);
            Ok(())
        })?;
        self.own_event(now, "email_code_issued", user, None)?;
        Ok(Delivery {
            channel: DeliveryChannel::Email,
            to,
            username: user.username.clone(),
            secret: code,
            expires_at,
        })
    }

    /// A six-digit code for `user`, to send by SMS to their phone: stored hashed,
    /// good once until it expires, and refused ([`AuthError::TooManyCodes`]) past the
    /// limits per user and per number, which count the codes issued in the window.
    fn issue_sms_code(&self, user: &User, now: Time) -> Result<Delivery, AuthError> {
        let to = user
            .phone
            .clone()
            .filter(|phone| !phone.trim().is_empty())
            .ok_or_else(|| AuthError::NoPhone(user.username.clone()))?;
        let limits = self.settings.sms_limits;
        let window_start = now.add_micros(-i64::from(limits.window_minutes) * MINUTE);
        let number: String = to
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        let keys = [
            (send_key("user", user.id.as_bytes()), limits.per_user),
            (send_key("number", number.as_bytes()), limits.per_number),
        ];
        let (code, hash) = mfa::new_email_code(&user.id);
        let expires_at = now.add_micros(i64::from(self.settings.sms_code_minutes) * MINUTE);
        let id = user.id;
        self.side(move |txn| {
            let mut records = Vec::new();
            for (key, limit) in &keys {
                let mut record: Sends = tables::get(txn, SMS_SENDS, key)?.unwrap_or_default();
                record.recent.retain(|t| *t > window_start);
                if record.recent.len() >= *limit as usize {
                    // Nothing written: a refused edit writes nothing.
                    return Err(AuthError::TooManyCodes);
                }
                record.recent.push(now);
                records.push(record);
            }
            for ((key, _), record) in keys.iter().zip(records) {
                tables::put(txn, SMS_SENDS, key, &record);
            }
            let record = EmailCodeRecord {
                hash,
                expires_at,
                attempts: 0,
            };
            tables::put(txn, SMS_CODES, &tables::key(id), &record);
            Ok(())
        })?;
        self.own_event(now, "sms_code_issued", user, None)?;
        Ok(Delivery {
            channel: DeliveryChannel::Sms,
            to,
            username: user.username.clone(),
            secret: code,
            expires_at,
        })
    }

    /// Records how sending a code by SMS went (`sms_sent`, or `sms_failed` with
    /// `detail`, which the caller keeps free of the code and the secret of its
    /// sender). The sender is the embedding program's, so it reports here.
    pub fn record_sms(
        &self,
        username: &str,
        sent: Result<(), &str>,
        now: Time,
    ) -> Result<(), AuthError> {
        let user = self.user(username)?;
        let actor = actor_of(&user);
        match sent {
            Ok(()) => self.event(now, "sms_sent", &actor, Some(&user), None, None),
            Err(detail) => self.event(now, "sms_failed", &actor, Some(&user), None, Some(detail)),
        }
    }

    // ----- lockout ------------------------------------------------------------------

    /// Counts `attempt` toward its lock key before it is evaluated, in one write
    /// transaction with the lock check: writes are serialized, so no two attempts can
    /// both find room for one more. Refused (`false`, nothing written) while a lock is
    /// in force, or while the window already holds `max_failures` attempts, failed or
    /// still being evaluated. A counted attempt is a failure unless a sign-in clears
    /// the count or it is given back ([`Auth::give_back`]).
    fn reserve_attempt(&self, attempt: &Attempt<'_>) -> Result<bool, AuthError> {
        let window_start = self.window_start(attempt.now);
        let most = self.settings.lockout.max_failures as usize;
        let now = attempt.now;
        self.change_failures(&attempt.lock, move |record| {
            record.recent.retain(|t| *t > window_start);
            let room =
                record.locked_until.is_none_or(|until| now >= until) && record.recent.len() < most;
            if !room {
                return Change::Nothing;
            }
            record.recent.push(now);
            Change::Write
        })
    }

    /// A wrong password or code: the attempt stays counted, as its failure. Locks when
    /// the window holds `max_failures` of them and no lock is in force yet (attempts
    /// evaluated beside it then find the lock set and set nothing).
    fn fail(
        &self,
        attempt: &Attempt<'_>,
        user: Option<&User>,
        reason: DenyReason,
    ) -> Result<(), AuthError> {
        let locked = self.lock_if_full(attempt)?;
        self.deny(attempt, user, reason)?;
        if locked {
            let actor = user.map_or_else(|| "anonymous".to_owned(), actor_of);
            self.event(
                attempt.now,
                "lockout",
                &actor,
                user,
                Some(attempt.login),
                None,
            )?;
        }
        Ok(())
    }

    /// Sets the lock when the window is full and none is in force; whether it did.
    fn lock_if_full(&self, attempt: &Attempt<'_>) -> Result<bool, AuthError> {
        let lockout = self.settings.lockout;
        let now = attempt.now;
        let window_start = self.window_start(now);
        self.change_failures(&attempt.lock, move |record| {
            record.recent.retain(|t| *t > window_start);
            let full = record.locked_until.is_none_or(|until| now >= until)
                && record.recent.len() >= lockout.max_failures as usize;
            if !full {
                return Change::Nothing;
            }
            record.recent.clear();
            record.locked_until = Some(now.add_micros(i64::from(lockout.lock_minutes) * MINUTE));
            Change::Write
        })
    }

    /// Takes back the count of an attempt whose password was right but which signed
    /// nobody in (an inactive or expired user, a code still to come): that is neither
    /// a failure nor a sign-in that clears the count. Counted attempts are only their
    /// times, so any one counted at the same instant is as good as this one's; none
    /// left means a lock set meanwhile has cleared the window, and the lock stays.
    fn give_back(&self, attempt: &Attempt<'_>) -> Result<(), AuthError> {
        let now = attempt.now;
        self.change_failures(&attempt.lock, move |record| {
            let Some(counted) = record.recent.iter().position(|t| *t == now) else {
                return Change::Nothing;
            };
            record.recent.remove(counted);
            // Nothing left to keep: leave no record behind, as before the attempt was
            // counted.
            let lock_in_force = record.locked_until.is_some_and(|until| now < until);
            if record.recent.is_empty() && !lock_in_force {
                Change::Remove
            } else {
                Change::Write
            }
        })?;
        Ok(())
    }

    /// Changes the failure record of `lock` (an empty one when it has none) in one
    /// write: `change` edits it and says what to store. Nothing is written when it
    /// says [`Change::Nothing`]; whether something was.
    fn change_failures(
        &self,
        lock: &[u8; 32],
        change: impl FnOnce(&mut Failures) -> Change + Send + 'static,
    ) -> Result<bool, AuthError> {
        let lock = *lock;
        self.side(move |txn| {
            let mut record: Failures = tables::get(txn, FAILURES, &lock)?.unwrap_or_default();
            Ok(match change(&mut record) {
                Change::Nothing => false,
                Change::Write => {
                    tables::put(txn, FAILURES, &lock, &record);
                    true
                }
                Change::Remove => txn.remove(FAILURES, &lock)?,
            })
        })
    }

    /// Forgets a lock key's failures and lock: after a sign-in (which its own attempt
    /// was counted toward), an unlock or a password reset.
    fn clear_failures(&self, lock: &[u8; 32]) -> Result<(), AuthError> {
        self.change_failures(lock, |_| Change::Remove)?;
        Ok(())
    }

    /// One write of sign-in state: `edit` runs in the engine's writer on the side
    /// records as every write before it left them (in a cluster: every node's), so
    /// two attempts never both find room for one more, and a code is good once
    /// across the cluster. Nothing is written when it fails or changes nothing.
    fn side<R: Send + 'static>(
        &self,
        edit: impl FnOnce(&mut SideTxn<'_>) -> Result<R, AuthError> + Send + 'static,
    ) -> Result<R, AuthError> {
        let (_, value) = self
            .engine
            .write_with(&Actor::system("sign-in"), Vec::new(), edit)?;
        Ok(value)
    }

    /// The oldest failure time still inside the window at `now` (exclusive).
    fn window_start(&self, now: Time) -> Time {
        now.add_micros(-i64::from(self.settings.lockout.window_minutes) * MINUTE)
    }

    fn deny(
        &self,
        attempt: &Attempt<'_>,
        user: Option<&User>,
        reason: DenyReason,
    ) -> Result<(), AuthError> {
        let actor = user.map_or_else(|| "anonymous".to_owned(), actor_of);
        let detail = if attempt.purpose == "login" {
            reason.code().to_owned()
        } else {
            format!("{} ({})", reason.code(), attempt.purpose)
        };
        self.event(
            attempt.now,
            "login_denied",
            &actor,
            user,
            Some(attempt.login),
            Some(&detail),
        )
    }

    /// Lifts a lockout on a user at once (an administrator's call).
    pub fn unlock(&self, actor: &str, user: &str, now: Time) -> Result<(), AuthError> {
        let user = self.user(user)?;
        self.clear_failures(&lock_key(Some(&user), &user.username))?;
        self.event(now, "unlocked", actor, Some(&user), None, None)
    }

    // ----- passwords ----------------------------------------------------------------

    /// Hashes `password` under the engine's credential policy (which `new` set from
    /// these settings): the same check and parameters as every other door.
    fn new_hash(&self, password: &str) -> Result<Password, AuthError> {
        let policy = self.engine.credential_policy();
        policy
            .prepare(Password::new(password))
            .map_err(|error| match error {
                ValidationError::WeakPassword { missing } => AuthError::WeakPassword(missing),
                other => AuthError::Input {
                    field: "password",
                    message: other.to_string(),
                },
            })
    }

    fn user(&self, reference: &str) -> Result<Arc<User>, AuthError> {
        self.engine
            .snapshot()
            .user(reference)
            .ok_or_else(|| Error::from(NotFound::new(EntityKind::User, reference)).into())
    }

    fn write_password(
        &self,
        actor: &str,
        user: &User,
        hash: Password,
        must_change: bool,
    ) -> Result<(), AuthError> {
        if matches!(user.source, Source::Ldap(_) | Source::Scim) {
            return Err(AuthError::NotLocal {
                user: user.username.clone(),
                origin: user.source.to_string(),
            });
        }
        self.modify_user(actor, user, move |spec| {
            spec.password = Some(hash);
            spec.must_change_password = must_change;
        })
    }

    /// Changes `user`'s spec by `edit`, in the writer (so no concurrent change is lost),
    /// as the write of `actor`.
    fn modify_user(
        &self,
        actor: &str,
        user: &User,
        edit: impl FnOnce(&mut UserSpec) + Send + 'static,
    ) -> Result<(), AuthError> {
        let edit = move |spec: &mut Spec| {
            if let Spec::User(spec) = spec {
                edit(spec);
            }
            Ok(())
        };
        self.engine.write(
            &Actor::system(actor),
            vec![Op::Modify {
                kind: EntityKind::User,
                target: user.id.to_string(),
                edit: Box::new(edit),
            }],
        )?;
        Ok(())
    }

    /// Sets a user's password as an administrator. With `must_change`, the user must
    /// choose a new one at their next sign-in. The policy applies.
    pub fn set_password(
        &self,
        actor: &str,
        user: &str,
        password: &str,
        must_change: bool,
        now: Time,
    ) -> Result<(), AuthError> {
        check_input("password", password)?;
        let user = self.user(user)?;
        let hash = self.new_hash(password)?;
        self.write_password(actor, &user, hash, must_change)?;
        self.drop_resets(user.id)?;
        self.event(now, "password_set", actor, Some(&user), None, None)
    }

    /// Changes a user's own password: the current credentials (and second factor, if
    /// enrolled) prove who they are. Clears `must_change_password`.
    pub fn change_password(
        &self,
        credentials: &Credentials,
        new_password: &str,
        now: Time,
    ) -> Result<(), AuthError> {
        check_input("new_password", new_password)?;
        let user = self.passed(credentials, now, "password_change")?;
        if new_password == credentials.password {
            return Err(AuthError::Input {
                field: "new_password",
                message: "must differ from the current password".to_owned(),
            });
        }
        let hash = self.new_hash(new_password)?;
        let actor = actor_of(&user);
        self.write_password(&actor, &user, hash, false)?;
        self.drop_resets(user.id)?;
        self.event(now, "password_changed", &actor, Some(&user), None, None)
    }

    /// The user behind `credentials` when they pass every factor they have (or have
    /// none yet while MFA is required): what the self-service calls need.
    fn passed(
        &self,
        credentials: &Credentials,
        now: Time,
        purpose: &str,
    ) -> Result<Arc<User>, AuthError> {
        match self.authenticate(credentials, now, purpose)? {
            Stage::Passed(user) | Stage::NeedsEnrolment(user) => Ok(user),
            Stage::Answer(LoginOutcome::Denied { reason }) => Err(AuthError::Denied(reason)),
            Stage::Answer(_) => Err(AuthError::CodeRequired),
        }
    }

    // ----- reset links --------------------------------------------------------------

    /// A reset token for the user `login` names (username or email), to send to their
    /// email address. `None` (and nothing stored) when the name is unknown, the user
    /// has no email address or is not local: the caller answers the same either way.
    pub fn request_reset(&self, login: &str, now: Time) -> Result<Option<Delivery>, AuthError> {
        check_input("login", login)?;
        let login = login.trim();
        let user = self.engine.snapshot().user_by_login(login);
        let Some(user) = user.filter(|u| {
            u.email.is_some()
                && !matches!(u.source, Source::Ldap(_) | Source::Scim)
                && u.is_valid_at(now)
        }) else {
            return Ok(None);
        };
        self.issue_reset(&actor_of(&user), &user, now).map(Some)
    }

    /// A reset token for `user`, at an administrator's request (a new user without a
    /// password gets one this way).
    pub fn issue_reset_for(
        &self,
        actor: &str,
        user: &str,
        now: Time,
    ) -> Result<Delivery, AuthError> {
        let user = self.user(user)?;
        if matches!(user.source, Source::Ldap(_) | Source::Scim) {
            return Err(AuthError::NotLocal {
                user: user.username.clone(),
                origin: user.source.to_string(),
            });
        }
        self.issue_reset(actor, &user, now)
    }

    fn issue_reset(&self, actor: &str, user: &User, now: Time) -> Result<Delivery, AuthError> {
        let to = user
            .email
            .clone()
            .ok_or_else(|| AuthError::NoEmail(user.username.clone()))?;
        let token = hex(&mfa::random_bytes::<32>());
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let expires_at = now.add_micros(i64::from(self.settings.reset_link_minutes) * MINUTE);
        let record = ResetRecord {
            user: user.id,
            expires_at,
        };
        self.side(move |txn| {
            tables::put(txn, RESETS, &hash, &record);
            Ok(())
        })?;
        self.event(now, "reset_issued", actor, Some(user), None, None)?;
        Ok(Delivery {
            channel: DeliveryChannel::Email,
            to,
            username: user.username.clone(),
            secret: token,
            expires_at,
        })
    }

    /// Sets a new password with a reset token. The token is good once, until it
    /// expires; a password refused by the policy does not use it up.
    pub fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        now: Time,
    ) -> Result<(), AuthError> {
        check_input("token", token)?;
        check_input("new_password", new_password)?;
        let hash = self.new_hash(new_password)?;
        let token_hash: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        // Taken out first, in its own write, so two uses cannot both pass; put back if
        // the password cannot be stored.
        let taken: Option<Vec<u8>> = self.side(move |txn| {
            let taken = txn.get(RESETS, &token_hash)?;
            txn.remove(RESETS, &token_hash)?;
            Ok(taken)
        })?;
        let record: Option<ResetRecord> = taken
            .as_deref()
            .map(|bytes| tables::decode(RESETS, bytes))
            .transpose()?;
        let user = record
            .filter(|r| now < r.expires_at)
            .and_then(|r| self.engine.snapshot().user(&r.user.to_string()))
            .ok_or(AuthError::InvalidResetToken)?;
        let actor = actor_of(&user);
        if let Err(error) = self.write_password(&actor, &user, hash, false) {
            if let Some(bytes) = taken {
                self.side(move |txn| {
                    txn.put(RESETS, &token_hash, bytes);
                    Ok(())
                })?;
            }
            return Err(error);
        }
        self.drop_resets(user.id)?;
        self.clear_failures(&lock_key(Some(&user), &user.username))?;
        self.event(now, "password_reset", &actor, Some(&user), None, None)
    }

    fn drop_resets(&self, user: Id) -> Result<(), AuthError> {
        self.side(move |txn| {
            txn.retain(RESETS, |_, value| {
                tables::decode::<ResetRecord>(RESETS, value).is_ok_and(|r| r.user != user)
            })?;
            Ok(())
        })
    }

    // ----- MFA ----------------------------------------------------------------------

    /// Starts a TOTP enrolment: a new secret, waiting for a first code
    /// ([`Auth::confirm_totp`]). A user with a confirmed TOTP keeps it until then.
    pub fn enrol_totp(
        &self,
        credentials: &Credentials,
        now: Time,
    ) -> Result<TotpEnrolment, AuthError> {
        let user = self.passed(credentials, now, "mfa_enrol")?;
        self.check_allowed(&user, MfaMethod::Totp)?;
        let secret = mfa::new_secret();
        let (key, pending) = (tables::key(user.id), secret.clone());
        self.side(move |txn| {
            let mut record: TotpRecord = tables::get(txn, TOTP, &key)?.unwrap_or_default();
            record.pending = Some(pending);
            tables::put(txn, TOTP, &key, &record);
            Ok(())
        })?;
        self.own_event(now, "mfa_enrolment_started", &user, Some("totp"))?;
        Ok(TotpEnrolment {
            secret: mfa::totp(&secret).get_secret_base32(),
            uri: mfa::otpauth_uri(&secret, &self.settings.totp_issuer, &user.username),
        })
    }

    /// Confirms the waiting enrolment with a code from it; turns the user's MFA on
    /// and returns fresh recovery codes (shown this once).
    pub fn confirm_totp(
        &self,
        credentials: &Credentials,
        totp_code: &str,
        now: Time,
    ) -> Result<Vec<String>, AuthError> {
        check_input("totp_code", totp_code)?;
        let user = self.passed(credentials, now, "mfa_confirm")?;
        let (id, code) = (user.id, totp_code.trim().to_owned());
        let codes = self.side(move |txn| {
            let key = tables::key(id);
            let mut record: TotpRecord = tables::get(txn, TOTP, &key)?.unwrap_or_default();
            let pending = record.pending.take().ok_or(AuthError::NoPendingEnrolment)?;
            let current = mfa::step_of(unix_secs(now));
            let step =
                mfa::matching_step(&pending, &code, current).ok_or(AuthError::InvalidCode)?;
            record.secret = Some(pending);
            record.last_step = step;
            tables::put(txn, TOTP, &key, &record);
            Ok(new_recovery_codes(txn, id))
        })?;
        if user.mfa == Mfa::Disabled {
            self.set_mfa(&actor_of(&user), &user, Mfa::Enabled)?;
        }
        self.own_event(now, "mfa_enabled", &user, Some("totp"))?;
        self.own_event(now, "recovery_codes_issued", &user, None)?;
        Ok(codes)
    }

    /// Replaces the user's recovery codes with fresh ones (shown this once).
    pub fn new_recovery_codes(
        &self,
        credentials: &Credentials,
        now: Time,
    ) -> Result<Vec<String>, AuthError> {
        let user = self.passed(credentials, now, "recovery_codes")?;
        let id = user.id;
        let codes = self.side(move |txn| Ok(new_recovery_codes(txn, id)))?;
        self.own_event(now, "recovery_codes_issued", &user, None)?;
        Ok(codes)
    }

    /// Turns the user's own MFA off and forgets their factors. Refused when it is
    /// forced on them, or the global policy covers them.
    pub fn disable_mfa(&self, credentials: &Credentials, now: Time) -> Result<(), AuthError> {
        let user = self.passed(credentials, now, "mfa_disable")?;
        if user.mfa == Mfa::Forced {
            return Err(AuthError::MfaForced);
        }
        if self.mfa_required(&User {
            mfa: Mfa::Disabled,
            ..(*user).clone()
        }) {
            return Err(AuthError::MfaRequiredByPolicy);
        }
        self.forget_factors(user.id)?;
        if user.mfa != Mfa::Disabled {
            self.set_mfa(&actor_of(&user), &user, Mfa::Disabled)?;
        }
        self.own_event(now, "mfa_disabled", &user, None)
    }

    /// Forgets a user's factors at an administrator's request (a lost phone). Their
    /// `mfa` setting stays: if MFA is required, they enrol again at the next sign-in.
    pub fn reset_mfa(&self, actor: &str, user: &str, now: Time) -> Result<(), AuthError> {
        let user = self.user(user)?;
        self.forget_factors(user.id)?;
        self.event(now, "mfa_reset", actor, Some(&user), None, None)
    }

    fn forget_factors(&self, user: Id) -> Result<(), AuthError> {
        self.side(move |txn| {
            let key = tables::key(user);
            let passkeys: Option<PasskeysRecord> = tables::get(txn, PASSKEYS, &key)?;
            for key in passkeys.map(|r| r.keys).unwrap_or_default() {
                txn.remove(PASSKEY_IDS, &key.credential_id)?;
            }
            for table in [TOTP, RECOVERY, EMAIL_CODES, SMS_CODES, PASSKEYS] {
                txn.remove(table, &key)?;
            }
            Ok(())
        })
    }

    fn set_mfa(&self, actor: &str, user: &User, mfa: Mfa) -> Result<(), AuthError> {
        self.modify_user(actor, user, move |spec| spec.mfa = mfa)
    }

    // ----- passkeys -----------------------------------------------------------------

    fn relying_party(&self) -> Result<&passkey::RelyingParty, AuthError> {
        self.relying_party
            .as_ref()
            .ok_or(AuthError::PasskeysDisabled)
    }

    fn passkey_records(&self, user: Id) -> Result<Vec<PasskeyRecord>, AuthError> {
        let record: Option<PasskeysRecord> =
            tables::read(&self.engine, PASSKEYS, &tables::key(user))?;
        Ok(record.map(|r| r.keys).unwrap_or_default())
    }

    /// Keeps a ceremony's state under a new random token, which is returned.
    fn store_ceremony(&self, record: &CeremonyRecord) -> Result<String, AuthError> {
        let token = hex(&mfa::random_bytes::<32>());
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let record = tables::encode(record);
        self.side(move |txn| {
            txn.put(CEREMONIES, &hash, record);
            Ok(())
        })?;
        Ok(token)
    }

    /// Takes the ceremony `token` names out (it is good once), if it has not expired.
    fn take_ceremony(&self, token: &str, now: Time) -> Result<CeremonyRecord, AuthError> {
        check_input("ceremony", token)?;
        let hash: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        let taken: Option<Vec<u8>> = self.side(move |txn| {
            let taken = txn.get(CEREMONIES, &hash)?;
            txn.remove(CEREMONIES, &hash)?;
            Ok(taken)
        })?;
        taken
            .map(|bytes| tables::decode::<CeremonyRecord>(CEREMONIES, &bytes))
            .transpose()?
            .filter(|record| now < record.expires_at)
            .ok_or(AuthError::InvalidCeremony)
    }

    fn ceremony_expiry(&self, now: Time) -> Time {
        now.add_micros(i64::from(self.settings.ceremony_minutes) * MINUTE)
    }

    /// A passkey sign-in challenge for `user`'s passkeys, or a decoy one (see
    /// [`passkey::RelyingParty::decoy`]) when there is no such user or they have none.
    fn passkey_challenge(
        &self,
        user: Option<&User>,
        login: &str,
        passwordless: bool,
        now: Time,
    ) -> Result<PasskeyChallenge, AuthError> {
        let party = self.relying_party()?;
        // The same reads whoever asks: the nil id has no passkeys.
        let keys = self.passkey_records(user.map_or(Id::NIL, |u| u.id))?;
        let (options, state) = if keys.is_empty() {
            party.decoy(login)
        } else {
            party.start_authentication(&keys)
        }
        .map_err(ceremony_error)?;
        let ceremony = self.store_ceremony(&CeremonyRecord {
            user: user.filter(|_| !keys.is_empty()).map(|u| u.id),
            login: login.chars().take(256).collect(),
            kind: CeremonyKind::Authentication { passwordless },
            state,
            expires_at: self.ceremony_expiry(now),
        })?;
        Ok(PasskeyChallenge { ceremony, options })
    }

    /// Starts registering a passkey named `name` for the user behind `credentials`
    /// (every factor they have is needed). Finish with
    /// [`Auth::finish_passkey_registration`].
    pub fn start_passkey_registration(
        &self,
        credentials: &Credentials,
        name: &str,
        now: Time,
    ) -> Result<PasskeyChallenge, AuthError> {
        let party = self.relying_party()?;
        let name = passkey_name(name)?;
        let user = self.passed(credentials, now, "passkey_register")?;
        self.check_allowed(&user, MfaMethod::Passkey)?;
        let keys = self.passkey_records(user.id)?;
        if keys.len() >= MAX_PASSKEYS {
            return Err(AuthError::Input {
                field: "passkeys",
                message: format!("at most {MAX_PASSKEYS} passkeys per user"),
            });
        }
        let (options, state) = party
            .start_registration(&user, &keys)
            .map_err(ceremony_error)?;
        let ceremony = self.store_ceremony(&CeremonyRecord {
            user: Some(user.id),
            login: user.username.clone(),
            kind: CeremonyKind::Registration { name },
            state,
            expires_at: self.ceremony_expiry(now),
        })?;
        self.own_event(now, "mfa_enrolment_started", &user, Some("passkey"))?;
        Ok(PasskeyChallenge { ceremony, options })
    }

    /// Registers the passkey the client made for `ceremony`. The first factor of a
    /// user turns their MFA on, as a confirmed TOTP does, and a user without recovery
    /// codes gets them (shown this once).
    pub fn finish_passkey_registration(
        &self,
        ceremony: &str,
        credential: &serde_json::Value,
        now: Time,
    ) -> Result<(PasskeyInfo, Option<Vec<String>>), AuthError> {
        let party = self.relying_party()?;
        let record = self.take_ceremony(ceremony, now)?;
        let CeremonyKind::Registration { name } = record.kind else {
            return Err(AuthError::InvalidCeremony);
        };
        let user = record
            .user
            .and_then(|id| self.engine.snapshot().user(&id.to_string()))
            .ok_or(AuthError::InvalidCeremony)?;
        let (credential_id, passkey) = party
            .finish_registration(&record.state, credential)
            .map_err(ceremony_error)?;
        let key = PasskeyRecord {
            id: Id::random(),
            name,
            created_at: now,
            last_used_at: None,
            credential_id,
            passkey,
        };
        let (id, added) = (user.id, key.clone());
        let codes = self.side(move |txn| {
            let user_key = tables::key(id);
            if txn.get(PASSKEY_IDS, &added.credential_id)?.is_some() {
                return Err(AuthError::PasskeyTaken);
            }
            txn.put(PASSKEY_IDS, &added.credential_id, user_key.to_vec());
            let mut record: PasskeysRecord =
                tables::get(txn, PASSKEYS, &user_key)?.unwrap_or_default();
            record.keys.push(added);
            tables::put(txn, PASSKEYS, &user_key, &record);
            let recovery: Option<RecoveryRecord> = tables::get(txn, RECOVERY, &user_key)?;
            Ok(recovery
                .is_none_or(|r| r.hashes.is_empty())
                .then(|| new_recovery_codes(txn, id)))
        })?;
        if user.mfa == Mfa::Disabled {
            self.set_mfa(&actor_of(&user), &user, Mfa::Enabled)?;
        }
        let actor = actor_of(&user);
        self.event(
            now,
            "passkey_registered",
            &actor,
            Some(&user),
            None,
            Some(&key.id.to_string()),
        )?;
        if codes.is_some() {
            self.event(
                now,
                "recovery_codes_issued",
                &actor,
                Some(&user),
                None,
                None,
            )?;
        }
        Ok((PasskeyInfo::from(&key), codes))
    }

    /// Starts a sign-in with a passkey alone (no password), where the global policy
    /// allows it. Whether `login` names a user with a passkey or not, the answer is a
    /// challenge of the same shape, and the same name gets the same credential ids.
    pub fn start_passwordless(
        &self,
        login: &str,
        now: Time,
    ) -> Result<PasskeyChallenge, AuthError> {
        if !self.settings.passwordless {
            return Err(AuthError::PasswordlessDisabled);
        }
        check_input("login", login)?;
        let login = login.trim();
        let user = self
            .find_login(login)
            .filter(|user| user.is_valid_at(now))
            .filter(|user| self.check_allowed(user, MfaMethod::Passkey).is_ok());
        self.passkey_challenge(user.as_deref(), login, true, now)
    }

    /// Finishes a passkey sign-in, after a password (the challenge came from a login
    /// with `method: passkey`) or without one ([`Auth::start_passwordless`]). The
    /// attempt counts toward the lockout like a password's; the sign count the
    /// authenticator reports must have grown (a cloned authenticator's does not), and
    /// the passkey must still be registered and allowed.
    pub fn finish_passkey_login(
        &self,
        ceremony: &str,
        credential: &serde_json::Value,
        now: Time,
    ) -> Result<LoginOutcome, AuthError> {
        let party = self.relying_party()?;
        let record = self.take_ceremony(ceremony, now)?;
        let CeremonyKind::Authentication { passwordless } = record.kind else {
            return Err(AuthError::InvalidCeremony);
        };
        let user = record
            .user
            .and_then(|id| self.engine.snapshot().user(&id.to_string()));
        let attempt = Attempt {
            lock: lock_key(user.as_deref(), &record.login),
            now,
            login: &record.login,
            purpose: "login",
        };
        let refusal = if passwordless {
            DenyReason::InvalidCredentials
        } else {
            DenyReason::InvalidCode
        };
        if !self.reserve_attempt(&attempt)? {
            self.deny(&attempt, user.as_deref(), DenyReason::Locked)?;
            return Ok(denied(DenyReason::Locked));
        }
        let keys = self.passkey_records(user.as_ref().map_or(Id::NIL, |u| u.id))?;
        let verified = party.finish_authentication(&record.state, credential, |id| {
            keys.iter()
                .find(|key| key.credential_id == id)
                .map(|key| key.passkey.clone())
        });
        let (user, credential_id, updated) = match (user, verified) {
            (Some(user), Ok((id, Some(updated)))) => (user, id, updated),
            (_, Err(passkey::CeremonyError::Malformed(message))) => {
                self.give_back(&attempt)?;
                return Err(AuthError::Input {
                    field: "credential",
                    message,
                });
            }
            (user, _) => {
                self.fail(&attempt, user.as_deref(), refusal)?;
                return Ok(denied(refusal));
            }
        };
        if !user.is_valid_at(now) {
            let reason = if user.active {
                DenyReason::UserExpired
            } else {
                DenyReason::UserInactive
            };
            self.give_back(&attempt)?;
            self.deny(&attempt, Some(&user), reason)?;
            return Ok(denied(reason));
        }
        if !self.methods(&user)?.contains(&MfaMethod::Passkey) {
            self.fail(&attempt, Some(&user), refusal)?;
            return Ok(denied(refusal));
        }
        let used = self.edit_passkeys(user.id, move |keys| {
            let key = keys.iter_mut().find(|k| k.credential_id == credential_id);
            Ok(key.map(|key| {
                key.passkey = updated;
                key.last_used_at = Some(now);
                key.id
            }))
        })?;
        let Some(used) = used else {
            // Removed meanwhile.
            self.fail(&attempt, Some(&user), refusal)?;
            return Ok(denied(refusal));
        };
        self.clear_failures(&attempt.lock)?;
        self.own_event(now, "passkey_used", &user, Some(&used.to_string()))?;
        self.conclude(Stage::Passed(user), now)
    }

    /// Changes a user's passkeys in one transaction (the credential-id index with
    /// them).
    fn edit_passkeys<R>(
        &self,
        user: Id,
        edit: impl FnOnce(&mut Vec<PasskeyRecord>) -> Result<R, AuthError> + Send + 'static,
    ) -> Result<R, AuthError>
    where
        R: Send + 'static,
    {
        self.side(move |txn| {
            let key = tables::key(user);
            let mut record: PasskeysRecord = tables::get(txn, PASSKEYS, &key)?.unwrap_or_default();
            let before: Vec<Vec<u8>> = record
                .keys
                .iter()
                .map(|k| k.credential_id.clone())
                .collect();
            let answer = edit(&mut record.keys)?;
            for id in before {
                if !record.keys.iter().any(|k| k.credential_id == id) {
                    txn.remove(PASSKEY_IDS, &id)?;
                }
            }
            if record.keys.is_empty() {
                txn.remove(PASSKEYS, &key)?;
            } else {
                tables::put(txn, PASSKEYS, &key, &record);
            }
            Ok(answer)
        })
    }

    /// The passkeys of the user behind `credentials`.
    pub fn passkeys(
        &self,
        credentials: &Credentials,
        now: Time,
    ) -> Result<Vec<PasskeyInfo>, AuthError> {
        let user = self.passed(credentials, now, "passkey_list")?;
        Ok(self
            .passkey_records(user.id)?
            .iter()
            .map(PasskeyInfo::from)
            .collect())
    }

    /// A user's passkeys (an administrator's view).
    pub fn passkeys_of(&self, user: &str) -> Result<Vec<PasskeyInfo>, AuthError> {
        let user = self.user(user)?;
        Ok(self
            .passkey_records(user.id)?
            .iter()
            .map(PasskeyInfo::from)
            .collect())
    }

    /// Renames one of the passkeys of the user behind `credentials`.
    pub fn rename_passkey(
        &self,
        credentials: &Credentials,
        passkey: &str,
        name: &str,
        now: Time,
    ) -> Result<(), AuthError> {
        let name = passkey_name(name)?;
        let user = self.passed(credentials, now, "passkey_rename")?;
        let wanted = passkey.to_owned();
        self.edit_passkeys(user.id, move |keys| {
            let key = keys
                .iter_mut()
                .find(|k| k.id.to_string() == wanted)
                .ok_or(AuthError::UnknownPasskey(wanted))?;
            key.name = name;
            Ok(())
        })?;
        self.own_event(now, "passkey_renamed", &user, Some(passkey))
    }

    /// Removes one of the passkeys of the user behind `credentials`.
    pub fn remove_passkey(
        &self,
        credentials: &Credentials,
        passkey: &str,
        now: Time,
    ) -> Result<(), AuthError> {
        let user = self.passed(credentials, now, "passkey_remove")?;
        self.drop_passkey(&actor_of(&user), &user, passkey, now)
    }

    /// Removes one of a user's passkeys (an administrator's call: a lost device).
    pub fn remove_passkey_of(
        &self,
        actor: &str,
        user: &str,
        passkey: &str,
        now: Time,
    ) -> Result<(), AuthError> {
        let user = self.user(user)?;
        self.drop_passkey(actor, &user, passkey, now)
    }

    fn drop_passkey(
        &self,
        actor: &str,
        user: &User,
        passkey: &str,
        now: Time,
    ) -> Result<(), AuthError> {
        check_input("passkey", passkey)?;
        let unwanted = passkey.to_owned();
        self.edit_passkeys(user.id, move |keys| {
            let before = keys.len();
            keys.retain(|k| k.id.to_string() != unwanted);
            if keys.len() == before {
                return Err(AuthError::UnknownPasskey(unwanted));
            }
            Ok(())
        })?;
        self.event(
            now,
            "passkey_removed",
            actor,
            Some(user),
            None,
            Some(passkey),
        )
    }

    // ----- housekeeping and the event log -------------------------------------------

    /// Deactivates users idle for longer than `inactivity_days` (when set) and removes
    /// expired or orphaned sign-in records. Safe to run at any interval.
    pub fn housekeeping(&self, now: Time) -> Result<HousekeepingReport, AuthError> {
        let mut report = HousekeepingReport::default();
        let snapshot = self.engine.snapshot();
        if let Some(days) = self.settings.inactivity_days {
            let cutoff = now.add_micros(-i64::from(days) * DAY);
            let idle: Vec<Arc<User>> = snapshot
                .estate()
                .users
                .into_iter()
                .filter(|u| u.active && u.last_login.unwrap_or(u.created_at) < cutoff)
                .map(Arc::new)
                .collect();
            if !idle.is_empty() {
                let ops = idle
                    .iter()
                    .map(|user| Op::Modify {
                        kind: EntityKind::User,
                        target: user.id.to_string(),
                        edit: Box::new(|spec: &mut Spec| {
                            if let Spec::User(spec) = spec {
                                spec.active = false;
                            }
                            Ok::<(), ValidationError>(())
                        }),
                    })
                    .collect();
                self.engine.write(&Actor::system("housekeeping"), ops)?;
                for user in &idle {
                    self.event(
                        now,
                        "deactivated_inactive",
                        "housekeeping",
                        Some(user),
                        None,
                        Some(&days.to_string()),
                    )?;
                    report.deactivated.push(user.username.clone());
                }
            }
        }
        let sms_window_start =
            now.add_micros(-i64::from(self.settings.sms_limits.window_minutes) * MINUTE);
        let window_start = self.window_start(now);
        let oldest = now.add_micros(-i64::from(self.settings.event_retention_days) * DAY);
        report.purged = self.side(move |txn| {
            let exists = |key: &[u8]| {
                tables::id_of(key).is_some_and(|id| snapshot.user(&id.to_string()).is_some())
            };
            let mut purged = txn.retain(RESETS, |_, value| {
                tables::decode::<ResetRecord>(RESETS, value)
                    .is_ok_and(|r| now < r.expires_at && exists(r.user.as_bytes()))
            })?;
            // Emailed and texted codes: one record shape, one rule.
            for table in [EMAIL_CODES, SMS_CODES] {
                purged += txn.retain(table, |key, value| {
                    exists(key)
                        && tables::decode::<EmailCodeRecord>(table, value)
                            .is_ok_and(|r| now < r.expires_at)
                })?;
            }
            purged += txn.retain(SMS_SENDS, |_, value| {
                tables::decode::<Sends>(SMS_SENDS, value)
                    .is_ok_and(|r| r.recent.iter().any(|t| *t > sms_window_start))
            })?;
            purged += txn.retain(CEREMONIES, |_, value| {
                tables::decode::<CeremonyRecord>(CEREMONIES, value)
                    .is_ok_and(|r| now < r.expires_at)
            })?;
            purged += txn.retain(PASSKEY_IDS, |_, user| exists(user))?;
            for table in [TOTP, RECOVERY, PASSKEYS, MFA_POLICY] {
                purged += txn.retain(table, |key, _| exists(key))?;
            }
            purged += txn.retain(FAILURES, |_, value| {
                tables::decode::<Failures>(FAILURES, value).is_ok_and(|r| {
                    r.locked_until.is_some_and(|until| now < until)
                        || r.recent.iter().any(|t| *t > window_start)
                })
            })?;
            purged += txn.retain(EVENTS, |_, value| {
                serde_json::from_slice::<AuthEvent>(value).is_ok_and(|e| e.time >= oldest)
            })?;
            Ok(purged)
        })?;
        Ok(report)
    }

    /// Sign-in events with a sequence above `since`, oldest first, at most `limit`.
    pub fn events_since(&self, since: u64, limit: usize) -> Result<Vec<AuthEvent>, AuthError> {
        let rows = self
            .engine
            .side_records(EVENTS, Some(&since.to_be_bytes()), limit)?;
        rows.iter()
            .map(|(_, value)| {
                serde_json::from_slice(value).map_err(|error| {
                    AuthError::from(StoreError::Corrupt {
                        table: EVENTS.name(),
                        key: "(event)".to_owned(),
                        message: error.to_string(),
                    })
                })
            })
            .collect()
    }

    /// An event `user` caused themselves (a sign-in, an enrolment), without a login
    /// name.
    fn own_event(
        &self,
        now: Time,
        event: &str,
        user: &User,
        detail: Option<&str>,
    ) -> Result<(), AuthError> {
        self.event(now, event, &actor_of(user), Some(user), None, detail)
    }

    fn event(
        &self,
        now: Time,
        event: &str,
        actor: &str,
        user: Option<&User>,
        login: Option<&str>,
        detail: Option<&str>,
    ) -> Result<(), AuthError> {
        // The operation log holds every sign-in event too (issue #7): what happened,
        // to whom, by whom; never a password or a code. A user that was deleted
        // meanwhile is recorded under the nil id rather than failing the sign-in.
        let login = login.map(|l| l.chars().take(256).collect::<String>());
        let what = serde_json::json!({
            "event": event,
            "login": login,
            "detail": detail,
        });
        let record = AuthEvent {
            seq: 0,
            time: now,
            event: event.to_owned(),
            actor: actor.to_owned(),
            user: user.map(|u| u.id),
            login,
            detail: detail.map(str::to_owned),
        };
        let record_event = |user: Option<Id>, record: AuthEvent| {
            let ops = vec![Op::RecordEvent {
                user,
                what: what.clone(),
            }];
            // The event log and the operation log in one write.
            self.engine
                .write_with(&Actor::system(actor), ops, move |txn| {
                    let seq = match txn.last(EVENTS)? {
                        Some((key, _)) => <[u8; 8]>::try_from(key.as_slice())
                            .map(u64::from_be_bytes)
                            .map_err(|_| StoreError::Corrupt {
                                table: EVENTS.name(),
                                key: hex(&key),
                                message: "an event's key is 8 bytes".to_owned(),
                            })?,
                        None => 0,
                    } + 1;
                    let record = AuthEvent { seq, ..record };
                    let json = serde_json::to_vec(&record).expect("INVARIANT: events serialize");
                    txn.put(EVENTS, &seq.to_be_bytes(), json);
                    Ok::<(), AuthError>(())
                })
        };
        match record_event(user.map(|u| u.id), record.clone()) {
            Err(AuthError::Engine(Error::Validation(ValidationError::NotFound(_)))) => {
                record_event(None, record)?;
            }
            other => {
                other?;
            }
        }
        Ok(())
    }
}

fn new_recovery_codes(txn: &mut SideTxn<'_>, user: Id) -> Vec<String> {
    let (codes, hashes): (Vec<String>, Vec<[u8; 32]>) = (0..mfa::RECOVERY_CODES)
        .map(|_| mfa::new_recovery_code())
        .unzip();
    tables::put(
        txn,
        RECOVERY,
        &tables::key(user),
        &RecoveryRecord { hashes },
    );
    codes
}

/// Whether `code` is the user's one-time code in `table` (emailed or SMS), still
/// good: a match uses it up; a miss counts against it, and it is dropped after a few
/// misses or once expired.
fn take_code(
    txn: &mut SideTxn<'_>,
    table: SideTable,
    user: Id,
    code: &str,
    now: Time,
) -> Result<bool, AuthError> {
    let key = tables::key(user);
    let Some(mut record) = tables::get::<EmailCodeRecord>(txn, table, &key)? else {
        return Ok(false);
    };
    let hash = mfa::email_code_hash(&user, code);
    if now < record.expires_at && mfa::hashes_equal(&record.hash, &hash) {
        txn.remove(table, &key)?;
        return Ok(true);
    }
    record.attempts += 1;
    if record.attempts >= EMAIL_CODE_ATTEMPTS || now >= record.expires_at {
        txn.remove(table, &key)?;
    } else {
        tables::put(txn, table, &key, &record);
    }
    Ok(false)
}

/// A passkey's name, trimmed and checked.
fn passkey_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_PASSKEY_NAME
        || name.chars().any(char::is_control)
    {
        return Err(AuthError::Input {
            field: "name",
            message: format!("1 to {MAX_PASSKEY_NAME} characters, no control characters"),
        });
    }
    Ok(name.to_owned())
}

fn ceremony_error(error: passkey::CeremonyError) -> AuthError {
    match error {
        passkey::CeremonyError::Malformed(message) => AuthError::Input {
            field: "credential",
            message,
        },
        passkey::CeremonyError::Refused(message) => AuthError::PasskeyRefused(message),
    }
}

fn denied(reason: DenyReason) -> LoginOutcome {
    LoginOutcome::Denied { reason }
}

fn actor_of(user: &User) -> String {
    format!("user:{}", user.username)
}

/// The SMS send counter of a user or a number.
fn send_key(scope: &str, value: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update(b":");
    hasher.update(value);
    hasher.finalize().into()
}

/// The lockout counter an attempt counts toward: the user's, or the login name's when
/// it names nobody (so unknown names lock like real ones).
fn lock_key(user: Option<&User>, login: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    match user {
        Some(user) => {
            hasher.update(b"user:");
            hasher.update(user.id.as_bytes());
        }
        None => {
            hasher.update(b"name:");
            hasher.update(login.to_lowercase().as_bytes());
        }
    }
    hasher.finalize().into()
}

/// What [`Auth::change_failures`] stores of the record it was given.
enum Change {
    /// Nothing: the transaction is dropped.
    Nothing,
    /// The record as changed.
    Write,
    /// No record: the lock key has nothing counted.
    Remove,
}

fn check_input(field: &'static str, value: &str) -> Result<(), AuthError> {
    if value.chars().count() > MAX_INPUT_CHARS {
        return Err(AuthError::Input {
            field,
            message: format!("at most {MAX_INPUT_CHARS} characters"),
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_secs(now: Time) -> u64 {
    u64::try_from(now.as_micros() / 1_000_000).unwrap_or(0)
}

/// A backend error is not reported to the client (it would tell that the user exists
/// and where it lives); the engine has no logger, so it is dropped here. The embedding
/// program's backend logs it itself.
fn tracing_free_note(_error: &BackendError) {}
