//! Sign-in over HTTP: `POST /api/v1/auth/login`, the self-service routes (password
//! change and reset, TOTP enrolment, passkeys, MFA off, recovery codes), the passkey
//! ceremonies (`/api/v1/auth/passkeys/…`), and the administrators' routes (set a
//! password, send a reset link, reset MFA, a user's MFA policy and passkeys, lift a
//! lockout, the sign-in event log, housekeeping). Codes go out by mail (`mail.rs`) or
//! SMS (`sms.rs`).
//!
//! The login and self-service routes are public: they carry the user's own
//! credentials in the body, and the engine's lockout limits guessing. A refused login
//! is an answer (200, `"status": "denied"` with a reason), like a denied check; a
//! self-service call with wrong credentials is an error (401 with the reason as code).
//! Every argon2 verification runs on the blocking pool, at most
//! `max_concurrent_logins` at once, so sign-ins cannot exhaust memory.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use portcullis_engine::{EntityKind, NotFound, Time, User};
use portcullis_signin::{
    Auth, AuthError, Delivery, DeliveryChannel, LoginOutcome, LoginRequest, MfaMethod,
    PasskeyChallenge, UserMfaPolicy,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

use crate::AppState;
use crate::auth::{Access, Caller};
use crate::error::ApiError;
use crate::extract::{ApiPath, JsonBody, Params, RawQuery, parse_json};
use crate::mail::{MailSettings, Mailer};
use crate::routes::Route;
use crate::sms::{Sms, SmsSettings};

/// Sign-in settings of the HTTP API (the engine's [`portcullis_signin::AuthSettings`]
/// hold the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInSettings {
    /// The mail server for reset links and emailed codes; `None`: no mail is sent
    /// (reset requests are accepted and dropped, administrators get 503).
    pub mail: Option<MailSettings>,
    /// The SMS sender for SMS codes; `None`: none are sent.
    pub sms: Option<SmsSettings>,
    /// A reset link is this text followed by the token, such as
    /// `https://portcullis.example.com/reset-password?token=`.
    pub reset_link_prefix: String,
    /// How many sign-in calls verify passwords at once; more wait. Each argon2
    /// verification takes `argon2.memory_kib` of memory.
    pub max_concurrent_logins: usize,
    /// How many password-reset requests are accepted per login name and per client
    /// address; past them, 429.
    pub reset_limits: ResetLimits,
}

/// The rate limits of `POST /api/v1/auth/password/reset-request`. A request is
/// accepted while both its login name (whether or not an account has it, so the
/// limit tells nothing of existence) and its client address have accepted fewer than
/// their limit in the current window; an accepted request counts toward both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetLimits {
    pub per_account: u32,
    pub per_address: u32,
    pub window: std::time::Duration,
}

impl Default for ResetLimits {
    fn default() -> ResetLimits {
        ResetLimits {
            per_account: 3,
            per_address: 20,
            window: std::time::Duration::from_secs(15 * 60),
        }
    }
}

impl Default for SignInSettings {
    fn default() -> SignInSettings {
        SignInSettings {
            mail: None,
            sms: None,
            reset_link_prefix: "http://127.0.0.1:8080/reset-password?token=".to_owned(),
            max_concurrent_logins: 8,
            reset_limits: ResetLimits::default(),
        }
    }
}

pub(crate) struct SignIn {
    pub(crate) auth: Arc<Auth>,
    mailer: Option<Mailer>,
    sms: Option<Sms>,
    settings: SignInSettings,
    permits: Arc<Semaphore>,
    reset_throttle: Throttle,
    /// Reset requests waiting for the mail thread (login names).
    resets: std::sync::mpsc::SyncSender<String>,
}

/// How many reset requests may wait for the mail thread; more are dropped (and
/// logged), still answered 202.
const RESET_QUEUE: usize = 256;

/// The most keys a throttle remembers; past it, expired windows are dropped, and when
/// every key is live, new keys are refused until some expire.
const THROTTLE_KEYS: usize = 100_000;

/// Fixed-window counters by key (a hash: keys of any length cost the same).
struct Throttle {
    windows: std::sync::Mutex<std::collections::HashMap<u64, (std::time::Instant, u32)>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Throttle {
    fn new() -> Throttle {
        Throttle {
            windows: std::sync::Mutex::default(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn key(&self, scope: &str, value: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((scope, value))
    }

    /// Counts one request under every key when all are below `limit`s; `false`
    /// (counting nothing) when any is at its limit.
    fn admit(&self, keys: &[(u64, u32)], window: std::time::Duration) -> bool {
        let now = std::time::Instant::now();
        let mut windows = self.windows.lock().expect("throttle lock");
        let live = |(start, _): &(std::time::Instant, u32)| now.duration_since(*start) < window;
        for (key, limit) in keys {
            let used = windows.get(key).filter(|w| live(w)).map_or(0, |w| w.1);
            if used >= *limit {
                return false;
            }
        }
        if windows.len() + keys.len() > THROTTLE_KEYS {
            windows.retain(|_, w| live(w));
            if windows.len() + keys.len() > THROTTLE_KEYS {
                return false;
            }
        }
        for (key, _) in keys {
            let entry = windows.entry(*key).or_insert((now, 0));
            if !live(entry) {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
        true
    }
}

impl SignIn {
    pub(crate) fn new(auth: Arc<Auth>, settings: SignInSettings) -> Result<SignIn, String> {
        if auth.settings().email_codes && settings.mail.is_none() {
            return Err(
                "emailed one-time codes (auth.email_codes) need a mail server ([mail])".to_owned(),
            );
        }
        if auth.settings().sms_codes && settings.sms.is_none() {
            return Err("SMS codes (auth.sms_codes) need an SMS sender ([sms])".to_owned());
        }
        let mailer = settings.mail.as_ref().map(Mailer::new).transpose()?;
        let sms = settings.sms.as_ref().map(Sms::new).transpose()?;
        let (resets, queue) = std::sync::mpsc::sync_channel(RESET_QUEUE);
        let worker = ResetWorker {
            auth: auth.clone(),
            mailer: mailer.clone(),
            link_prefix: settings.reset_link_prefix.clone(),
        };
        std::thread::Builder::new()
            .name("portcullis-reset-mail".to_owned())
            .spawn(move || worker.run(&queue))
            .map_err(|error| format!("cannot start the reset mail thread: {error}"))?;
        Ok(SignIn {
            auth,
            mailer,
            sms,
            permits: Arc::new(Semaphore::new(settings.max_concurrent_logins.max(1))),
            settings,
            reset_throttle: Throttle::new(),
            resets,
        })
    }
}

/// Handles reset requests off the request path, one at a time: looks the name up,
/// issues a token and mails the link. The requester's answer never waits for it, so
/// its timing says nothing of whether the account exists or how the mail went.
struct ResetWorker {
    auth: Arc<Auth>,
    mailer: Option<Mailer>,
    link_prefix: String,
}

impl ResetWorker {
    fn run(&self, queue: &std::sync::mpsc::Receiver<String>) {
        // Ends when the API's state is dropped (the sender with it).
        while let Ok(login) = queue.recv() {
            let delivery = match self.auth.request_reset(&login, Time::now()) {
                Ok(Some(delivery)) => delivery,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(%error, "a reset request failed");
                    continue;
                }
            };
            let Some(mailer) = &self.mailer else {
                tracing::warn!("a reset link was not sent: no mail server is configured");
                continue;
            };
            let (subject, body) = reset_mail(&delivery, &self.link_prefix);
            if let Err(error) = mailer.send(&delivery, subject, body) {
                tracing::warn!(to = %delivery.to, %error, "a reset link was not sent");
            }
        }
    }
}

/// The subject and body of a reset-link mail.
fn reset_mail(delivery: &Delivery, link_prefix: &str) -> (&'static str, String) {
    (
        "Reset your Portcullis password",
        format!(
            "Hello {},\r\n\r\nTo choose a new password, open this link before {}:\r\n\r\n{}{}\r\n\r\nIt works once. If you did not ask for it, ignore this message.\r\n",
            delivery.username, delivery.expires_at, link_prefix, delivery.secret
        ),
    )
}

/// Runs a sign-in call on the blocking pool, under the concurrency limit.
pub(crate) async fn run<T: Send + 'static>(
    state: &AppState,
    call: impl FnOnce(&Auth, Time) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    let signin = &state.inner.signin;
    let _permit = signin
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::Internal("the sign-in limiter is closed".to_owned()))?;
    let auth = signin.auth.clone();
    // Sign-in calls write (events, lockouts, passwords): never cut once started.
    crate::timeout::write_started();
    tokio::task::spawn_blocking(move || call(&auth, Time::now()))
        .await
        .map_err(|error| ApiError::Internal(format!("sign-in task failed: {error}")))?
        .map_err(ApiError::from)
}

/// [`run`] for a self-service call: `call` gets the caller's credentials from
/// `proof`.
async fn run_as<T: Send + 'static>(
    state: &AppState,
    proof: Proof,
    call: impl FnOnce(&Auth, &LoginRequest, Time) -> Result<T, AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    run(state, move |auth, now| {
        call(auth, &proof.credentials(), now)
    })
    .await
}

/// Sends a code by SMS and records how it went. Failures are logged without the
/// code.
async fn send_sms(state: &AppState, delivery: Delivery) -> Result<(), ApiError> {
    let Some(sms) = state.inner.signin.sms.clone() else {
        return Err(ApiError::SmsUnavailable);
    };
    let text = format!(
        "Your Portcullis sign-in code is {}. It works once, until {}.",
        delivery.secret, delivery.expires_at
    );
    let sent = sms.send(&delivery.to, &text).await;
    if let Err(error) = &sent {
        tracing::warn!(sender = sms.kind(), %error, "could not send an SMS code");
    }
    let username = delivery.username.clone();
    let detail = sent.as_ref().err().map(|_| sms.kind());
    run(state, move |auth, now| {
        auth.record_sms(&username, detail.map_or(Ok(()), Err), now)
    })
    .await?;
    sent.map_err(|_| ApiError::SmsUnavailable)
}

/// Sends a reset link or a code. Failures are logged without the secret.
pub(crate) async fn send(
    state: &AppState,
    delivery: Delivery,
    reset: bool,
) -> Result<(), ApiError> {
    if delivery.channel == DeliveryChannel::Sms {
        return send_sms(state, delivery).await;
    }
    let signin = &state.inner.signin;
    let Some(mailer) = signin.mailer.clone() else {
        return Err(ApiError::MailUnavailable);
    };
    let (subject, body) = if reset {
        reset_mail(&delivery, &signin.settings.reset_link_prefix)
    } else {
        (
            "Your Portcullis sign-in code",
            format!(
                "Hello {},\r\n\r\nYour sign-in code is {}. It works once, until {}.\r\n",
                delivery.username, delivery.secret, delivery.expires_at
            ),
        )
    };
    let to = delivery.to.clone();
    let sent = tokio::task::spawn_blocking(move || mailer.send(&delivery, subject, body))
        .await
        .map_err(|error| ApiError::Internal(format!("mail task failed: {error}")))?;
    sent.map_err(|error| {
        tracing::warn!(%to, %error, "could not send mail");
        ApiError::MailUnavailable
    })
}

fn user_json(state: &AppState, user: &User) -> Value {
    state
        .snapshot()
        .entity_json(EntityKind::User, &user.id.to_string())
        .unwrap_or(Value::Null)
}

// ----- public routes ----------------------------------------------------------------

pub(crate) async fn login(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Json<Value>, ApiError> {
    let outcome = run(&state, move |auth, now| auth.login(&request, now)).await?;
    outcome_json(&state, outcome).await.map(Json)
}

fn challenge_json(challenge: PasskeyChallenge) -> Value {
    json!({"ceremony": challenge.ceremony, "options": challenge.options})
}

/// The answer to a sign-in; sends the code it asked for.
async fn outcome_json(state: &AppState, outcome: LoginOutcome) -> Result<Value, ApiError> {
    let mut answer = json!({"status": outcome.status()});
    match outcome {
        LoginOutcome::Ok { user }
        | LoginOutcome::MfaEnrollmentRequired { user }
        | LoginOutcome::PasswordChangeRequired { user } => {
            answer["user"] = user_json(state, &user);
        }
        LoginOutcome::MfaRequired { methods, delivery } => {
            answer["methods"] = json!(methods);
            if let Some(delivery) = delivery {
                send(state, delivery, false).await?;
                answer["code_sent"] = json!(true);
            }
        }
        LoginOutcome::PasskeyRequired { methods, challenge } => {
            answer["methods"] = json!(methods);
            answer["passkey"] = challenge_json(challenge);
        }
        LoginOutcome::Denied { reason } => answer["reason"] = json!(reason.code()),
    }
    Ok(answer)
}

/// The user's own credentials, and a second-factor code if they have one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Proof {
    login: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

impl Proof {
    fn credentials(self) -> LoginRequest {
        LoginRequest {
            login: self.login,
            password: self.password,
            code: self.code,
            method: None,
        }
    }
}

/// Declares the body of a self-service route: the fields of a [`Proof`] and the
/// route's own, in one JSON object whose unknown fields are refused. `split` gives
/// the proof and a tuple of the route's fields.
macro_rules! proof_body {
    ($name:ident { $($(#[$attribute:meta])* $field:ident: $type:ty),+ $(,)? }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            login: String,
            password: String,
            #[serde(default)]
            code: Option<String>,
            $($(#[$attribute])* $field: $type,)+
        }

        impl $name {
            fn split(self) -> (Proof, ($($type,)+)) {
                let proof = Proof {
                    login: self.login,
                    password: self.password,
                    code: self.code,
                };
                (proof, ($(self.$field,)+))
            }
        }
    };
}

proof_body!(PasswordChange {
    new_password: String,
});

pub(crate) async fn change_password(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PasswordChange>,
) -> Result<Json<Value>, ApiError> {
    let (proof, (new_password,)) = body.split();
    run_as(&state, proof, move |auth, caller, now| {
        auth.change_password(caller, &new_password, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok"})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetRequest {
    login: String,
}

/// Always 202, whether the name exists or not, at once: the lookup, the token and
/// the mail happen on the reset thread. Rate-limited per login name and per client
/// address (429).
pub(crate) async fn request_reset(
    State(state): State<AppState>,
    address: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    JsonBody(body): JsonBody<ResetRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let signin = &state.inner.signin;
    let limits = &signin.settings.reset_limits;
    let login = body.login.trim().to_lowercase();
    // Behind a proxy every client shares the proxy's address (and its limit).
    let address = address.map_or_else(String::new, |Extension(info)| info.0.ip().to_string());
    let keys = [
        (
            signin.reset_throttle.key("login", &login),
            limits.per_account,
        ),
        (
            signin.reset_throttle.key("address", &address),
            limits.per_address,
        ),
    ];
    if !signin.reset_throttle.admit(&keys, limits.window) {
        return Err(ApiError::TooManyRequests);
    }
    if let Err(error) = signin.resets.try_send(body.login) {
        let full = matches!(error, std::sync::mpsc::TrySendError::Full(_));
        tracing::warn!(
            full,
            "a reset request was dropped: the reset thread is busy or gone"
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({"status": "accepted", "message": "if the account exists and has an email address, a reset link is on its way"}),
        ),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Reset {
    token: String,
    new_password: String,
}

pub(crate) async fn reset_password(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Reset>,
) -> Result<Json<Value>, ApiError> {
    run(&state, move |auth, now| {
        auth.reset_password(&body.token, &body.new_password, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok"})))
}

pub(crate) async fn enroll_totp(
    State(state): State<AppState>,
    JsonBody(proof): JsonBody<Proof>,
) -> Result<Json<Value>, ApiError> {
    let enrolment = run_as(&state, proof, |auth, caller, now| {
        auth.enrol_totp(caller, now)
    })
    .await?;
    use base64::Engine as _;
    let qr = crate::qr::png(&enrolment.uri)
        .map(|png| base64::engine::general_purpose::STANDARD.encode(png));
    Ok(Json(json!({
        "secret": enrolment.secret,
        "otpauth_uri": enrolment.uri,
        "qr_png_base64": qr,
    })))
}

proof_body!(TotpConfirm { totp_code: String });

pub(crate) async fn confirm_totp(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<TotpConfirm>,
) -> Result<Json<Value>, ApiError> {
    let (proof, (totp_code,)) = body.split();
    let codes = run_as(&state, proof, move |auth, caller, now| {
        auth.confirm_totp(caller, &totp_code, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok", "recovery_codes": codes})))
}

pub(crate) async fn disable_mfa(
    State(state): State<AppState>,
    JsonBody(proof): JsonBody<Proof>,
) -> Result<Json<Value>, ApiError> {
    run_as(&state, proof, |auth, caller, now| {
        auth.disable_mfa(caller, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok"})))
}

pub(crate) async fn recovery_codes(
    State(state): State<AppState>,
    JsonBody(proof): JsonBody<Proof>,
) -> Result<Json<Value>, ApiError> {
    let codes = run_as(&state, proof, |auth, caller, now| {
        auth.new_recovery_codes(caller, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok", "recovery_codes": codes})))
}

// ----- passkeys -------------------------------------------------------------------

proof_body!(PasskeyRegistration { name: String });

pub(crate) async fn passkey_register_start(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PasskeyRegistration>,
) -> Result<Json<Value>, ApiError> {
    let (proof, (name,)) = body.split();
    let challenge = run_as(&state, proof, move |auth, caller, now| {
        auth.start_passkey_registration(caller, &name, now)
    })
    .await?;
    Ok(Json(challenge_json(challenge)))
}

/// The second call of a ceremony: its token and the client's credential (the
/// WebAuthn JSON of `navigator.credentials.create()` or `.get()`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CeremonyAnswer {
    ceremony: String,
    credential: Value,
}

pub(crate) async fn passkey_register_finish(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CeremonyAnswer>,
) -> Result<Json<Value>, ApiError> {
    let (passkey, codes) = run(&state, move |auth, now| {
        auth.finish_passkey_registration(&body.ceremony, &body.credential, now)
    })
    .await?;
    let mut answer = json!({"status": "ok", "passkey": passkey});
    if let Some(codes) = codes {
        answer["recovery_codes"] = json!(codes);
    }
    Ok(Json(answer))
}

/// A passkey sign-in's first call: with a password, as a second factor; without,
/// passwordless (where the server allows it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeySignIn {
    login: String,
    #[serde(default)]
    password: Option<String>,
}

pub(crate) async fn passkey_authenticate_start(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PasskeySignIn>,
) -> Result<Json<Value>, ApiError> {
    let PasskeySignIn { login, password } = body;
    match password {
        Some(password) => {
            let request = LoginRequest {
                login,
                password,
                code: None,
                method: Some(MfaMethod::Passkey),
            };
            let outcome = run(&state, move |auth, now| auth.login(&request, now)).await?;
            outcome_json(&state, outcome).await.map(Json)
        }
        None => {
            let challenge = run(&state, move |auth, now| {
                auth.start_passwordless(&login, now)
            })
            .await?;
            Ok(Json(
                json!({"status": "passkey_required", "passkey": challenge_json(challenge)}),
            ))
        }
    }
}

pub(crate) async fn passkey_authenticate_finish(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CeremonyAnswer>,
) -> Result<Json<Value>, ApiError> {
    let outcome = run(&state, move |auth, now| {
        auth.finish_passkey_login(&body.ceremony, &body.credential, now)
    })
    .await?;
    outcome_json(&state, outcome).await.map(Json)
}

pub(crate) async fn passkey_list(
    State(state): State<AppState>,
    JsonBody(proof): JsonBody<Proof>,
) -> Result<Json<Value>, ApiError> {
    let passkeys = run_as(&state, proof, |auth, caller, now| {
        auth.passkeys(caller, now)
    })
    .await?;
    Ok(Json(json!({"passkeys": passkeys})))
}

proof_body!(PasskeyChange {
    passkey: String,
    /// The new name (rename only).
    #[serde(default)]
    name: Option<String>,
});

pub(crate) async fn passkey_rename(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PasskeyChange>,
) -> Result<Json<Value>, ApiError> {
    let (proof, (passkey, name)) = body.split();
    let name = name.ok_or_else(|| {
        ApiError::Auth(AuthError::Input {
            field: "name",
            message: "the new name is missing".to_owned(),
        })
    })?;
    run_as(&state, proof, move |auth, caller, now| {
        auth.rename_passkey(caller, &passkey, &name, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok"})))
}

pub(crate) async fn passkey_remove(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<PasskeyChange>,
) -> Result<Json<Value>, ApiError> {
    let (proof, (passkey, _)) = body.split();
    run_as(&state, proof, move |auth, caller, now| {
        auth.remove_passkey(caller, &passkey, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok"})))
}

pub(crate) async fn user_passkeys(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    no_query(&query)?;
    let id = target_user(&state, &user)?;
    let passkeys = run(&state, move |auth, _| auth.passkeys_of(&id)).await?;
    Ok(Json(json!({"passkeys": passkeys})))
}

pub(crate) async fn remove_user_passkey(
    State(state): State<AppState>,
    ApiPath((user, passkey)): ApiPath<(String, String)>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let id = target_user(&state, &user)?;
    let actor = caller.actor().name().to_owned();
    run(&state, move |auth, now| {
        auth.remove_passkey_of(&actor, &id, &passkey, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok"})))
}

pub(crate) async fn user_mfa_policy(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    no_query(&query)?;
    let id = target_user(&state, &user)?;
    let policy = run(&state, move |auth, _| auth.mfa_policy(&id)).await?;
    Ok(Json(json!(policy)))
}

pub(crate) async fn set_user_mfa_policy(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = target_user(&state, &user)?;
    let policy: UserMfaPolicy = parse_json(&body)?;
    let actor = caller.actor().name().to_owned();
    run(&state, move |auth, now| {
        auth.set_mfa_policy(&actor, &id, &policy, now)?;
        auth.mfa_policy(&id)
    })
    .await
    .map(|policy| Json(json!(policy)))
}

// ----- administrators' routes -------------------------------------------------------

/// Refuses a query string on a route that takes none.
fn no_query(query: &[(String, String)]) -> Result<(), ApiError> {
    match query.first() {
        Some((name, _)) => Err(ApiError::BadRequest(format!(
            "query parameter `{name}`: this route takes none"
        ))),
        None => Ok(()),
    }
}

/// The user a route names, or 404.
fn target_user(state: &AppState, reference: &str) -> Result<String, ApiError> {
    state
        .snapshot()
        .user(reference)
        .map(|user| user.id.to_string())
        .ok_or_else(|| NotFound::new(EntityKind::User, reference).into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdminPassword {
    password: String,
    #[serde(default)]
    must_change_password: bool,
}

pub(crate) async fn set_password(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = target_user(&state, &user)?;
    let body: AdminPassword = parse_json(&body)?;
    let actor = caller.actor().name().to_owned();
    run(&state, move |auth, now| {
        auth.set_password(&actor, &id, &body.password, body.must_change_password, now)
    })
    .await?;
    Ok(Json(json!({"status": "ok"})))
}

/// The body of the routes that take no parameters yet: `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoOptions {}

pub(crate) async fn send_reset_link(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = target_user(&state, &user)?;
    let NoOptions {} = parse_json(&body)?;
    if state.inner.signin.mailer.is_none() {
        return Err(ApiError::MailUnavailable);
    }
    let actor = caller.actor().name().to_owned();
    let delivery = run(&state, move |auth, now| {
        auth.issue_reset_for(&actor, &id, now)
    })
    .await?;
    let (to, expires_at) = (delivery.to.clone(), delivery.expires_at);
    send(&state, delivery, true).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "sent", "to": to, "expires_at": expires_at})),
    ))
}

/// An administrator's `action` on the sign-in state of the user the route names
/// (`DELETE .../mfa`, `DELETE .../lockout`), taken as the calling token.
async fn on_user(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<String>,
    Extension(caller): Extension<Caller>,
    action: fn(&Auth, &str, &str, Time) -> Result<(), AuthError>,
) -> Result<Json<Value>, ApiError> {
    let id = target_user(&state, &user)?;
    let actor = caller.actor().name().to_owned();
    run(&state, move |auth, now| action(auth, &actor, &id, now)).await?;
    Ok(Json(json!({"status": "ok"})))
}

pub(crate) async fn events(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (since, limit) = Params::log_page(&state, query)?;
    let events = run(&state, move |auth, _| auth.events_since(since, limit)).await?;
    let next = events.last().map_or(since, |event| event.seq);
    Ok(Json(
        json!({"since": since, "next": next, "events": events}),
    ))
}

pub(crate) async fn housekeeping(
    State(state): State<AppState>,
    JsonBody(NoOptions {}): JsonBody<NoOptions>,
) -> Result<Json<Value>, ApiError> {
    let report = run(&state, move |auth, now| auth.housekeeping(now)).await?;
    Ok(Json(json!(report)))
}

// ----- the route table and the document ---------------------------------------------

pub(crate) fn routes() -> Vec<Route> {
    use axum::http::Method;
    let change = || Access::Permission("users.change".to_owned());
    vec![
        Route::new(Method::POST, "/api/v1/auth/login", Access::Public, "sign-in", "Sign in with a username or email, a password and maybe a second-factor code: ok, mfa_required, mfa_enrollment_required, password_change_required or denied", login)
            .body("LoginRequest")
            .answers(StatusCode::OK, "LoginResponse"),
        Route::new(Method::POST, "/api/v1/auth/password/change", Access::Public, "sign-in", "Change one's own password (credentials in the body)", change_password)
            .body("PasswordChange")
            .answers(StatusCode::OK, "SignInOk"),
        Route::new(Method::POST, "/api/v1/auth/password/reset-request", Access::Public, "sign-in", "Email a reset link to the account, if it exists (always 202)", request_reset)
            .body("ResetRequest")
            .answers(StatusCode::ACCEPTED, "SignInOk"),
        Route::new(Method::POST, "/api/v1/auth/password/reset", Access::Public, "sign-in", "Set a new password with a reset token (single use, expiring)", reset_password)
            .body("PasswordReset")
            .answers(StatusCode::OK, "SignInOk"),
        Route::new(Method::POST, "/api/v1/auth/mfa/totp/enroll", Access::Public, "sign-in", "Start a TOTP enrolment: the secret, an otpauth URI and a QR code (shown once)", enroll_totp)
            .body("Proof")
            .answers(StatusCode::OK, "TotpEnrolment"),
        Route::new(Method::POST, "/api/v1/auth/mfa/totp/confirm", Access::Public, "sign-in", "Confirm TOTP with a first code; turns MFA on and returns recovery codes (shown once)", confirm_totp)
            .body("TotpConfirm")
            .answers(StatusCode::OK, "RecoveryCodes"),
        Route::new(Method::POST, "/api/v1/auth/mfa/disable", Access::Public, "sign-in", "Turn one's own MFA off (refused when forced or required by policy)", disable_mfa)
            .body("Proof")
            .answers(StatusCode::OK, "SignInOk"),
        Route::new(Method::POST, "/api/v1/auth/mfa/recovery-codes", Access::Public, "sign-in", "Replace one's recovery codes (shown once)", recovery_codes)
            .body("Proof")
            .answers(StatusCode::OK, "RecoveryCodes"),
        Route::new(Method::POST, "/api/v1/auth/passkeys/register/start", Access::Public, "sign-in", "Start registering a passkey (credentials in the body): the ceremony and the options for navigator.credentials.create()", passkey_register_start)
            .body("PasskeyRegistration")
            .answers(StatusCode::OK, "PasskeyChallenge"),
        Route::new(Method::POST, "/api/v1/auth/passkeys/register/finish", Access::Public, "sign-in", "Finish a passkey registration with the authenticator's attestation; the first factor turns MFA on and brings recovery codes (shown once)", passkey_register_finish)
            .body("CeremonyAnswer")
            .answers(StatusCode::OK, "PasskeyRegistered"),
        Route::new(Method::POST, "/api/v1/auth/passkeys/authenticate/start", Access::Public, "sign-in", "Start a passkey sign-in: with a password, as the second factor (a login answer with a passkey challenge); without, passwordless where allowed", passkey_authenticate_start)
            .body("PasskeySignIn")
            .answers(StatusCode::OK, "LoginResponse"),
        Route::new(Method::POST, "/api/v1/auth/passkeys/authenticate/finish", Access::Public, "sign-in", "Finish a passkey sign-in with the authenticator's assertion: a login answer", passkey_authenticate_finish)
            .body("CeremonyAnswer")
            .answers(StatusCode::OK, "LoginResponse"),
        Route::new(Method::POST, "/api/v1/auth/passkeys/list", Access::Public, "sign-in", "One's own passkeys: name, created, last used", passkey_list)
            .body("Proof")
            .answers(StatusCode::OK, "Passkeys"),
        Route::new(Method::POST, "/api/v1/auth/passkeys/rename", Access::Public, "sign-in", "Rename one of one's passkeys", passkey_rename)
            .body("PasskeyChange")
            .answers(StatusCode::OK, "SignInOk"),
        Route::new(Method::POST, "/api/v1/auth/passkeys/remove", Access::Public, "sign-in", "Remove one of one's passkeys", passkey_remove)
            .body("PasskeyChange")
            .answers(StatusCode::OK, "SignInOk"),
        Route::new(Method::GET, "/api/v1/users/{user}/passkeys", Access::Permission("users.view".to_owned()), "sign-in", "A user's passkeys: name, created, last used", user_passkeys)
            .answers(StatusCode::OK, "Passkeys"),
        Route::new(Method::DELETE, "/api/v1/users/{user}/passkeys/{passkey}", change(), "sign-in", "Remove one of a user's passkeys (a lost device)", remove_user_passkey)
            .parameter("passkey", "The passkey's id")
            .answers(StatusCode::OK, "SignInOk"),
        Route::new(Method::GET, "/api/v1/users/{user}/mfa/policy", Access::Permission("users.view".to_owned()), "sign-in", "A user's own MFA policy: the methods they may use, in order, and those required (null: the global setting)", user_mfa_policy)
            .answers(StatusCode::OK, "UserMfaPolicy"),
        Route::new(Method::PUT, "/api/v1/users/{user}/mfa/policy", change(), "sign-in", "Set a user's own MFA policy (it narrows the global one)", set_user_mfa_policy)
            .body("UserMfaPolicy")
            .answers(StatusCode::OK, "UserMfaPolicy"),
        Route::new(Method::GET, "/api/v1/auth/events", Access::Permission("changes.view".to_owned()), "sign-in", "The sign-in event log: attempts, lockouts, password and MFA changes (never a secret)", events)
            .query(&["since", "limit"])
            .answers(StatusCode::OK, "AuthEvents"),
        Route::new(Method::POST, "/api/v1/auth/housekeeping", change(), "sign-in", "Deactivate idle users (if configured) and purge stale sign-in records now", housekeeping)
            .body("NoOptions")
            .answers(StatusCode::OK, "Object"),
        Route::new(Method::PUT, "/api/v1/users/{user}/password", change(), "sign-in", "Set a user's password (the policy applies)", set_password)
            .body("AdminPassword")
            .answers(StatusCode::OK, "SignInOk"),
        Route::new(Method::POST, "/api/v1/users/{user}/password/reset-link", change(), "sign-in", "Email the user a reset link", send_reset_link)
            .body("NoOptions")
            .answers(StatusCode::ACCEPTED, "Object"),
        Route::new(Method::DELETE, "/api/v1/users/{user}/mfa", change(), "sign-in", "Forget the user's second factors (they enrol again if MFA is required)", |state: State<AppState>, user: ApiPath<String>, caller: Extension<Caller>| on_user(state, user, caller, Auth::reset_mfa))
            .answers(StatusCode::OK, "SignInOk"),
        Route::new(Method::DELETE, "/api/v1/users/{user}/lockout", change(), "sign-in", "Lift a lockout now", |state: State<AppState>, user: ApiPath<String>, caller: Extension<Caller>| on_user(state, user, caller, Auth::unlock))
            .answers(StatusCode::OK, "SignInOk"),
    ]
}

pub(crate) fn schemas() -> Map<String, Value> {
    let string = json!({"type": "string"});
    let proof =
        json!({"login": string, "password": {"type": "string", "writeOnly": true}, "code": string});
    let with = |extra: Value, required: &[&str]| {
        let mut properties = proof.as_object().cloned().unwrap_or_default();
        if let Value::Object(extra) = extra {
            properties.extend(extra);
        }
        json!({"type": "object", "required": required, "properties": properties, "additionalProperties": false})
    };
    let method =
        json!({"type": "string", "enum": ["passkey", "totp", "sms", "email", "recovery_code"]});
    let passkey = json!({"type": "object", "properties": {"id": string, "name": string, "created_at": string, "last_used_at": {"type": ["string", "null"]}}});
    let codes = json!({"type": "object", "properties": {"status": string, "recovery_codes": {"type": "array", "items": string, "description": "Shown this once"}}});
    let schemas = json!({
        "LoginRequest": with(json!({"method": method}), &["login", "password"]),
        "LoginResponse": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["ok", "mfa_required", "mfa_enrollment_required", "password_change_required", "passkey_required", "denied"]},
            "reason": {"type": "string", "enum": ["invalid_credentials", "locked", "user_inactive", "user_expired", "invalid_code"]},
            "methods": {"type": "array", "items": method},
            "code_sent": {"type": "boolean"},
            "passkey": {"$ref": "#/components/schemas/PasskeyChallenge"},
            "user": {"$ref": "#/components/schemas/Entity"},
        }},
        "PasskeyChallenge": {"type": "object", "properties": {
            "ceremony": {"type": "string", "description": "Names the ceremony in its second call; good once, for a few minutes"},
            "options": {"type": "object", "description": "WebAuthn options: {\"publicKey\": ...} for navigator.credentials.create() or .get()"},
        }},
        "PasskeyRegistration": with(json!({"name": string}), &["login", "password", "name"]),
        "CeremonyAnswer": {"type": "object", "required": ["ceremony", "credential"], "additionalProperties": false, "properties": {"ceremony": string, "credential": {"type": "object", "description": "The WebAuthn JSON of the credential the authenticator made"}}},
        "PasskeySignIn": {"type": "object", "required": ["login"], "additionalProperties": false, "properties": {"login": string, "password": {"type": "string", "writeOnly": true}}},
        "PasskeyRegistered": {"type": "object", "properties": {"status": string, "passkey": passkey, "recovery_codes": {"type": "array", "items": string, "description": "Shown this once, when the user had none"}}},
        "Passkeys": {"type": "object", "properties": {"passkeys": {"type": "array", "items": passkey}}},
        "PasskeyChange": with(json!({"passkey": string, "name": string}), &["login", "password", "passkey"]),
        "UserMfaPolicy": {"type": "object", "additionalProperties": false, "properties": {
            "methods": {"type": ["array", "null"], "items": method},
            "required": {"type": ["array", "null"], "items": method},
        }},
        "Proof": with(json!({}), &["login", "password"]),
        "PasswordChange": with(json!({"new_password": {"type": "string", "writeOnly": true}}), &["login", "password", "new_password"]),
        "TotpConfirm": with(json!({"totp_code": string}), &["login", "password", "totp_code"]),
        "ResetRequest": {"type": "object", "required": ["login"], "properties": {"login": string}},
        "PasswordReset": {"type": "object", "required": ["token", "new_password"], "properties": {"token": string, "new_password": {"type": "string", "writeOnly": true}}},
        "AdminPassword": {"type": "object", "required": ["password"], "properties": {"password": {"type": "string", "writeOnly": true}, "must_change_password": {"type": "boolean"}}},
        "SignInOk": {"type": "object", "properties": {"status": string}},
        "NoOptions": {"type": "object", "additionalProperties": false},
        "TotpEnrolment": {"type": "object", "properties": {"secret": string, "otpauth_uri": string, "qr_png_base64": string}},
        "RecoveryCodes": codes,
        "AuthEvents": {"type": "object", "properties": {"since": {"type": "integer"}, "next": {"type": "integer"}, "events": {"type": "array", "items": {"type": "object"}}}},
    });
    match schemas {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
