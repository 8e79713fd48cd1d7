//! Signing in and out of the console, and each user's own profile: password change,
//! TOTP enrolment and removal, recovery codes.
//!
//! Every decision is the engine's sign-in (`Auth`), called through the API's own
//! runner (`crate::signin::run`: the blocking pool, the concurrency limit): password,
//! TOTP or emailed/SMS code, recovery codes, forced password change, lockout. The
//! console only turns an `ok` into a session cookie.

use axum::Extension;
use axum::extract::Request;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};
use portcullis_engine::{EntityKind, Time};
use portcullis_signin::{Auth, AuthError, DenyReason, LoginOutcome, LoginRequest};

use super::html::{
    Console, Fields, Refusal, Viewer, input, notice, page_response, problem, public_page, redirect,
    text,
};
use super::{SESSION_COOKIE, csrf, session};
use crate::AppState;
use crate::auth::Access;
use crate::error::ApiError;
use crate::routes::Route;

fn cookie_header(state: &AppState, name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let secure = if state.sessions().settings().secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let age = max_age.map_or(String::new(), |age| format!("; Max-Age={age}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict{secure}{age}"
    ))
    .expect("INVARIANT: cookie names and hex values are header-safe")
}

/// A page of the sign-in flow, before any session: it sets the double-submit CSRF
/// cookie its forms repeat.
fn public_form(
    state: &AppState,
    token: &str,
    status: StatusCode,
    title: &str,
    content: Markup,
) -> Response {
    let mut response = public_page(status, title, content);
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(state, csrf::COOKIE, token, None),
    );
    response
}

/// The sign-in form, with its double-submit CSRF token (a cookie of this page).
fn login_form(
    state: &AppState,
    token: &str,
    status: StatusCode,
    login: &str,
    message: Option<&str>,
    note: Option<&str>,
    ask_code: bool,
) -> Response {
    public_form(
        state,
        token,
        status,
        "Sign in",
        html! {
            (notice(note))
            (problem(message))
            form method="post" action="/ui/login" {
                input type="hidden" name=(csrf::FIELD) value=(token);
                (input("Username or email", "login", "text", login))
                p.field {
                    label for="f-password" { "Password" }
                    input id="f-password" type="password" name="password" autocomplete="current-password";
                }
                p.field {
                    label for="f-code" { "Code (authenticator app, emailed code or recovery code)" }
                    input id="f-code" type="text" name="code" autocomplete="one-time-code" inputmode="numeric" autofocus[ask_code];
                }
                p { button type="submit" { "Sign in" } }
            }
        },
    )
}

/// The double-submit token of this browser, or a new one.
fn form_token(request_headers: &axum::http::HeaderMap) -> String {
    super::cookie(request_headers, csrf::COOKIE)
        .filter(|token| token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()))
        .map_or_else(session::random_secret, str::to_owned)
}

async fn login_page(State(state): State<AppState>, request: Request) -> Response {
    if request.extensions().get::<Viewer>().is_some() {
        return redirect("/ui/");
    }
    let token = form_token(request.headers());
    let note = request
        .uri()
        .query()
        .filter(|query| query.contains("changed=1"))
        .map(|_| "Your password was changed: sign in with the new one.");
    login_form(&state, &token, StatusCode::OK, "", None, note, false)
}

fn deny_message(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::InvalidCredentials => "Wrong username or password.",
        DenyReason::Locked => "Too many failed attempts: this account is locked for a while.",
        DenyReason::UserInactive => "This account is deactivated.",
        DenyReason::UserExpired => "This account has expired.",
        DenyReason::InvalidCode => "The code is wrong, expired or already used.",
    }
}

fn credentials(fields: &Fields, login: &str) -> LoginRequest {
    LoginRequest {
        login: login.to_owned(),
        password: fields
            .0
            .iter()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        code: fields.get("code").map(str::to_owned),
        method: None,
    }
}

/// A sign-in form's submission (before any session): its fields, the double-submit
/// CSRF token of its cookie, the login name, and the credentials it carries.
struct SignInForm {
    fields: Fields,
    token: String,
    login: String,
    request: LoginRequest,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for SignInForm {
    type Rejection = axum::extract::rejection::FormRejection;

    async fn from_request(request: Request, state: &S) -> Result<SignInForm, Self::Rejection> {
        let token = form_token(request.headers());
        let fields = Fields::from_request(request, state).await?;
        let login = fields.get("login").unwrap_or("").to_owned();
        let request = credentials(&fields, &login);
        Ok(SignInForm {
            fields,
            token,
            login,
            request,
        })
    }
}

async fn login(
    State(state): State<AppState>,
    SignInForm {
        token,
        login,
        request,
        ..
    }: SignInForm,
) -> Result<Response, Refusal> {
    let outcome = crate::signin::run(&state, move |auth, now| auth.login(&request, now)).await?;
    let form = |status, message: &str, ask_code| {
        login_form(
            &state,
            &token,
            status,
            &login,
            Some(message),
            None,
            ask_code,
        )
    };
    Ok(match outcome {
        LoginOutcome::Ok { user } => {
            let fingerprint = state.engine().password_fingerprint(user.id)?;
            let secret = state.sessions().open(user.id, fingerprint);
            let mut response = redirect("/ui/");
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(&state, SESSION_COOKIE, &secret, None),
            );
            response
        }
        LoginOutcome::MfaRequired { methods, delivery } => {
            let sent = delivery.is_some();
            if let Some(delivery) = delivery {
                crate::signin::send(&state, delivery, false).await?;
            }
            let names: Vec<&str> = methods.iter().map(|m| m.code()).collect();
            let message = if sent {
                "A code was sent to you: enter it with your password.".to_owned()
            } else {
                format!(
                    "Enter your password again with a code ({}).",
                    names.join(", ")
                )
            };
            form(StatusCode::UNAUTHORIZED, &message, true)
        }
        LoginOutcome::PasskeyRequired { .. } => form(
            StatusCode::UNAUTHORIZED,
            "This account signs in with a passkey, which this console does not offer: use a code or ask an administrator.",
            true,
        ),
        LoginOutcome::MfaEnrollmentRequired { .. } => enrol_at_sign_in(&login, &token, &state),
        LoginOutcome::PasswordChangeRequired { .. } => forced_change(&state, &token, &login, None),
        LoginOutcome::Denied { reason } => form(
            StatusCode::UNAUTHORIZED,
            deny_message(reason),
            reason == DenyReason::InvalidCode,
        ),
    })
}

/// A labelled input of a credential, with the browser's autocomplete hint.
fn credential_input(label: &str, kind: &str, name: &str, id: &str, autocomplete: &str) -> Markup {
    html! {
        p.field {
            label for=(id) { (label) }
            input id=(id) type=(kind) name=(name) autocomplete=(autocomplete);
        }
    }
}

fn password_fields() -> Markup {
    html! {
        (credential_input("Current password", "password", "password", "f-password", "current-password"))
        (credential_input("Code, if you have a second factor", "text", "code", "f-code", "one-time-code"))
    }
}

fn new_password_fields() -> Markup {
    html! {
        (credential_input("New password", "password", "new_password", "f-new", "new-password"))
        (credential_input("New password again", "password", "repeat", "f-repeat", "new-password"))
    }
}

/// The sign-in's forced password change (`must_change_password`).
fn forced_change(state: &AppState, token: &str, login: &str, message: Option<&str>) -> Response {
    public_form(
        state,
        token,
        if message.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        "Choose a new password",
        html! {
            p { "Your password must be changed before you sign in." }
            (problem(message))
            form method="post" action="/ui/login/password" {
                input type="hidden" name=(csrf::FIELD) value=(token);
                input type="hidden" name="login" value=(login);
                (password_fields())
                (new_password_fields())
                p { button type="submit" { "Change password" } }
            }
        },
    )
}

async fn forced_change_submit(
    State(state): State<AppState>,
    SignInForm {
        fields,
        token,
        login,
        ..
    }: SignInForm,
) -> Result<Response, Refusal> {
    match change_password(&state, &fields, &login).await {
        Ok(()) => Ok(redirect("/ui/login?changed=1")),
        Err(message) => Ok(forced_change(&state, &token, &login, Some(&message))),
    }
}

/// Changes `login`'s password with the form's current and new passwords; the
/// engine's words when it refuses.
async fn change_password(state: &AppState, fields: &Fields, login: &str) -> Result<(), String> {
    let new_password = fields
        .0
        .iter()
        .find(|(k, _)| k == "new_password")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let repeat = fields
        .0
        .iter()
        .find(|(k, _)| k == "repeat")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if new_password != repeat {
        return Err("The two new passwords differ.".to_owned());
    }
    let request = credentials(fields, login);
    crate::signin::run(state, move |auth, now| {
        auth.change_password(&request, &new_password, now)
    })
    .await
    .map_err(|error| error.message())
}

/// MFA is required and the user has no factor: enrol TOTP before signing in.
fn enrol_at_sign_in(login: &str, token: &str, state: &AppState) -> Response {
    public_form(
        state,
        token,
        StatusCode::OK,
        "Set up a second factor",
        html! {
            p { "This account needs a second factor. Enter your password again to set up an authenticator app." }
            form method="post" action="/ui/login/totp" {
                input type="hidden" name=(csrf::FIELD) value=(token);
                input type="hidden" name="login" value=(login);
                (password_fields())
                p { button type="submit" { "Set up an authenticator app" } }
            }
        },
    )
}

/// The secret and QR code of a TOTP enrolment, with the form that confirms it.
fn enrolment(hidden: Markup, action: &str, secret: &str, uri: &str) -> Markup {
    use base64::Engine as _;
    let qr = crate::qr::png(uri).map(|png| {
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(png)
        )
    });
    html! {
        p { "Scan this code with your authenticator app, or type the secret, then enter the first code it shows." }
        @if let Some(qr) = qr {
            img src=(qr) alt="QR code of the authenticator secret";
        }
        p { "Secret: " code id="totp-secret" { (secret) } }
        form method="post" action=(action) {
            (hidden)
            (password_fields())
            p.field {
                label for="f-totp" { "First code from the app" }
                input id="f-totp" type="text" name="totp_code" autocomplete="one-time-code" inputmode="numeric";
            }
            p { button type="submit" { "Confirm" } }
        }
    }
}

fn recovery_codes(codes: &[String]) -> Markup {
    html! {
        p { "Your recovery codes, shown this once. Each signs you in once when your authenticator is not at hand: keep them somewhere safe." }
        ul.codes id="recovery-codes" { @for code in codes { li { (code) } } }
    }
}

async fn enrol_at_sign_in_submit(
    State(state): State<AppState>,
    SignInForm {
        token,
        login,
        request,
        ..
    }: SignInForm,
) -> Result<Response, Refusal> {
    let enrolled =
        crate::signin::run(&state, move |auth, now| auth.enrol_totp(&request, now)).await?;
    let hidden = html! {
        input type="hidden" name=(csrf::FIELD) value=(token);
        input type="hidden" name="login" value=(login);
    };
    Ok(public_page(
        StatusCode::OK,
        "Set up a second factor",
        enrolment(
            hidden,
            "/ui/login/totp/confirm",
            &enrolled.secret,
            &enrolled.uri,
        ),
    ))
}

async fn confirm_at_sign_in(
    State(state): State<AppState>,
    SignInForm {
        fields, request, ..
    }: SignInForm,
) -> Result<Response, Refusal> {
    let totp = fields.get("totp_code").unwrap_or("").to_owned();
    let codes = crate::signin::run(&state, move |auth, now| {
        auth.confirm_totp(&request, &totp, now)
    })
    .await?;
    Ok(public_page(
        StatusCode::OK,
        "Second factor set up",
        html! {
            (recovery_codes(&codes))
            p { a href="/ui/login" { "Sign in" } }
        },
    ))
}

async fn logout(State(state): State<AppState>, Extension(viewer): Extension<Viewer>) -> Response {
    state.sessions().close(&viewer.session);
    let mut response = redirect("/ui/login");
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&state, SESSION_COOKIE, "", Some(0)),
    );
    response
}

async fn home(Extension(viewer): Extension<Viewer>) -> Response {
    if viewer.may("users.view") {
        redirect("/ui/users")
    } else {
        redirect("/ui/me/assets")
    }
}

// ----- my profile ---------------------------------------------------------------

#[derive(serde::Deserialize)]
struct ProfileQuery {
    #[serde(default)]
    done: Option<String>,
}

fn profile(
    state: &AppState,
    viewer: &Viewer,
    message: Option<&str>,
    note: Option<&str>,
) -> Result<Response, Refusal> {
    let user = state
        .snapshot()
        .entity_json(EntityKind::User, viewer.username())?;
    let mfa = text(&user, "mfa");
    let csrf = viewer.csrf_field();
    Ok(page_response(
        viewer,
        "My profile",
        html! {
            (notice(note))
            (problem(message))
            table {
                tr { th { "Username" } td { (text(&user, "username")) } }
                tr { th { "Name" } td { (text(&user, "name")) } }
                tr { th { "Email" } td { (text(&user, "email")) } }
                tr { th { "Second factor" } td id="mfa-state" { (mfa) } }
                tr { th { "Last sign-in" } td { (text(&user, "last_login")) } }
            }
            h2 { "Change my password" }
            p.muted { "Every session of yours ends when the password changes: you sign in again." }
            form method="post" action="/ui/me/password" {
                (csrf)
                (password_fields())
                (new_password_fields())
                p { button type="submit" { "Change password" } }
            }
            h2 { "Authenticator app (TOTP)" }
            form method="post" action="/ui/me/totp" {
                (csrf)
                (password_fields())
                p { button type="submit" { "Set up an authenticator app" } }
            }
            h2 { "Remove my second factors" }
            form method="post" action="/ui/me/mfa/disable" {
                (csrf)
                (password_fields())
                p { button type="submit" { "Remove second factors" } }
            }
            h2 { "Recovery codes" }
            form method="post" action="/ui/me/recovery-codes" {
                (csrf)
                (password_fields())
                p { button type="submit" { "Make new recovery codes" } }
            }
        },
    ))
}

async fn profile_page(
    Console { state, viewer }: Console,
    Query(query): Query<ProfileQuery>,
) -> Result<Response, Refusal> {
    let note = match query.done.as_deref() {
        Some("mfa-removed") => Some("Your second factors were removed."),
        _ => None,
    };
    profile(&state, &viewer, None, note)
}

fn refused_on_profile(
    state: &AppState,
    viewer: &Viewer,
    error: ApiError,
) -> Result<Response, Refusal> {
    let mut response = profile(state, viewer, Some(&error.message()), None)?;
    // The session is signed in: wrong credentials in the form are a field's problem
    // (422), not a missing sign-in (401).
    *response.status_mut() = match error.status() {
        StatusCode::UNAUTHORIZED => StatusCode::UNPROCESSABLE_ENTITY,
        status => status,
    };
    Ok(response)
}

async fn my_password(
    Console { state, viewer }: Console,
    fields: Fields,
) -> Result<Response, Refusal> {
    match change_password(&state, &fields, viewer.username()).await {
        Ok(()) => {
            if let crate::auth::Principal::User { id, .. } = &viewer.caller.principal {
                state.sessions().close_all(*id);
            }
            let mut response = redirect("/ui/login?changed=1");
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie_header(&state, SESSION_COOKIE, "", Some(0)),
            );
            Ok(response)
        }
        Err(message) => {
            let mut response = profile(&state, &viewer, Some(&message), None)?;
            *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            Ok(response)
        }
    }
}

/// Runs a self-service call with the form's credentials as the signed-in user: what
/// `shown` makes of its answer, or the profile with the engine's refusal.
async fn self_service<T: Send + 'static>(
    state: &AppState,
    viewer: &Viewer,
    fields: &Fields,
    call: impl FnOnce(&Auth, &LoginRequest, Time) -> Result<T, AuthError> + Send + 'static,
    shown: impl FnOnce(T) -> Response,
) -> Result<Response, Refusal> {
    let request = credentials(fields, viewer.username());
    match crate::signin::run(state, move |auth, now| call(auth, &request, now)).await {
        Ok(answer) => Ok(shown(answer)),
        Err(error) => refused_on_profile(state, viewer, error),
    }
}

/// New recovery codes, shown once.
fn codes_page(viewer: &Viewer, title: &str, codes: &[String]) -> Response {
    page_response(
        viewer,
        title,
        html! {
            (recovery_codes(codes))
            p { a href="/ui/me" { "Back to my profile" } }
        },
    )
}

async fn my_totp(Console { state, viewer }: Console, fields: Fields) -> Result<Response, Refusal> {
    let call = |auth: &Auth, request: &LoginRequest, now| auth.enrol_totp(request, now);
    self_service(&state, &viewer, &fields, call, |enrolled| {
        let form = enrolment(
            viewer.csrf_field(),
            "/ui/me/totp/confirm",
            &enrolled.secret,
            &enrolled.uri,
        );
        page_response(&viewer, "Set up an authenticator app", form)
    })
    .await
}

async fn my_totp_confirm(
    Console { state, viewer }: Console,
    fields: Fields,
) -> Result<Response, Refusal> {
    let totp = fields.get("totp_code").unwrap_or("").to_owned();
    let call =
        move |auth: &Auth, request: &LoginRequest, now| auth.confirm_totp(request, &totp, now);
    self_service(&state, &viewer, &fields, call, |codes| {
        codes_page(&viewer, "Authenticator app set up", &codes)
    })
    .await
}

async fn my_mfa_disable(
    Console { state, viewer }: Console,
    fields: Fields,
) -> Result<Response, Refusal> {
    let call = |auth: &Auth, request: &LoginRequest, now| auth.disable_mfa(request, now);
    self_service(&state, &viewer, &fields, call, |()| {
        redirect("/ui/me?done=mfa-removed")
    })
    .await
}

async fn my_recovery_codes(
    Console { state, viewer }: Console,
    fields: Fields,
) -> Result<Response, Refusal> {
    let call = |auth: &Auth, request: &LoginRequest, now| auth.new_recovery_codes(request, now);
    self_service(&state, &viewer, &fields, call, |codes| {
        codes_page(&viewer, "New recovery codes", &codes)
    })
    .await
}

pub(crate) fn routes() -> Vec<Route> {
    use super::route;
    let any = || Access::Authenticated;
    let mut routes = super::assets::routes();
    routes.extend([
        route(Method::GET, "/ui", any(), "The console's home", home),
        route(
            Method::GET,
            "/ui/",
            any(),
            "The console's home: users for administrators and auditors, one's assets for others",
            home,
        ),
        route(
            Method::GET,
            "/ui/login",
            Access::Public,
            "The sign-in form",
            login_page,
        ),
        route(
            Method::POST,
            "/ui/login",
            Access::Public,
            "Sign in (form): the engine's sign-in, then a session cookie",
            login,
        ),
        route(
            Method::POST,
            "/ui/login/password",
            Access::Public,
            "The forced password change of a sign-in (form)",
            forced_change_submit,
        ),
        route(
            Method::POST,
            "/ui/login/totp",
            Access::Public,
            "Start the TOTP enrolment a sign-in requires (form)",
            enrol_at_sign_in_submit,
        ),
        route(
            Method::POST,
            "/ui/login/totp/confirm",
            Access::Public,
            "Confirm the TOTP enrolment of a sign-in (form): recovery codes",
            confirm_at_sign_in,
        ),
        route(
            Method::POST,
            "/ui/logout",
            any(),
            "Sign out: the session ends",
            logout,
        ),
        route(Method::GET, "/ui/me", any(), "My profile", profile_page),
        route(
            Method::POST,
            "/ui/me/password",
            any(),
            "Change my password (form); my sessions end",
            my_password,
        ),
        route(
            Method::POST,
            "/ui/me/totp",
            any(),
            "Start a TOTP enrolment (form)",
            my_totp,
        ),
        route(
            Method::POST,
            "/ui/me/totp/confirm",
            any(),
            "Confirm a TOTP enrolment (form): recovery codes",
            my_totp_confirm,
        ),
        route(
            Method::POST,
            "/ui/me/mfa/disable",
            any(),
            "Remove my second factors (form)",
            my_mfa_disable,
        ),
        route(
            Method::POST,
            "/ui/me/recovery-codes",
            any(),
            "New recovery codes (form)",
            my_recovery_codes,
        ),
    ]);
    routes
}
