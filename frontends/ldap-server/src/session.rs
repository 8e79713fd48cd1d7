//! One connection: the message loop, binds, searches (paged or not), the root DSE,
//! whoami, StartTLS, and the refusal of every write.
//!
//! Requests are answered one at a time, in order. While a search sends its entries,
//! the connection's input is looked at every few entries, so an abandon of that
//! search stops it and an unbind closes the connection; other requests read then
//! wait their turn.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapBindResponse, LdapCompareRequest, LdapExtendedRequest,
    LdapExtendedResponse, LdapFilter, LdapMsg, LdapOp, LdapResult, LdapResultCode,
    LdapSearchRequest, LdapSearchScope,
};
use portcullis_engine::{Snapshot, Time};
use portcullis_signin::{LoginOutcome, LoginRequest};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::LdapServer;
use crate::directory::{Entry, EntryRef, View};
use crate::dn::{self, Place};
use crate::error::{LdapError, success, with_code};
use crate::filter::{self, FilterError, FilterLimits};
use crate::search::{self, Selection};

/// The byte stream of a connection, plain or TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
pub(crate) type Io = Box<dyn Stream>;

const OID_WHOAMI: &str = "1.3.6.1.4.1.4203.1.11.3";
const OID_STARTTLS: &str = "1.3.6.1.4.1.1466.20037";
const OID_NOTICE_OF_DISCONNECTION: &str = "1.3.6.1.4.1.1466.20036";
const OID_PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
const OID_PASSWORD_MODIFY: &str = "1.3.6.1.4.1.4203.1.11.1";
/// "All operational attributes" (`+`, RFC 3673).
const OID_ALL_OPERATIONAL: &str = "1.3.6.1.4.1.4203.1.5.1";

/// The permission a token needs to read the directory.
pub const READ_PERMISSION: &str = "users.view";

/// How many entries are sent between two looks at the input.
const INPUT_EVERY: usize = 32;
/// How many requests read during a search may wait; past this, input is not read
/// until the search ends.
const MAX_WAITING: usize = 16;
/// How many paged searches a connection may keep open; a new one drops the oldest.
/// Each keeps what it matched (24 bytes an entry) and its snapshot.
const MAX_PAGED: usize = 2;

/// Who the connection is bound as.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Anonymous,
    User {
        id: portcullis_engine::Id,
        dn: String,
    },
    Token {
        id: portcullis_engine::Id,
        dn: String,
    },
}

/// A paged search between two pages: what matched, from the snapshot and instant of
/// its first page, so every page comes from one state of the directory.
struct Paged {
    /// The request it belongs to (base, scope, filter, attributes).
    request: String,
    snapshot: Arc<Snapshot>,
    at: Time,
    remaining: VecDeque<EntryRef>,
    total: usize,
}

/// What to do after a request.
enum Flow {
    Continue,
    Close,
    StartTls,
}

pub(crate) struct Session {
    server: Arc<LdapServer>,
    peer: SocketAddr,
    identity: Identity,
    tls: bool,
    paged: HashMap<u64, Paged>,
    /// Cookies in the order their searches began (for dropping the oldest).
    paged_order: VecDeque<u64>,
    next_cookie: u64,
    /// Requests read while a search was being sent.
    waiting: VecDeque<LdapMsg>,
}

type Conn = Framed<Io, LdapCodec>;

/// Tells a connection over the limit that the server is busy, and closes it.
pub(crate) async fn refuse_busy(stream: tokio::net::TcpStream) {
    let io: Io = Box::new(stream);
    let mut conn = Framed::new(io, LdapCodec::default());
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        conn.send(notice(LdapResultCode::Busy, "too many connections")),
    )
    .await;
}

/// A notice of disconnection (RFC 4511 §4.4.1).
fn notice(code: LdapResultCode, message: &str) -> LdapMsg {
    LdapMsg::new(
        0,
        LdapOp::ExtendedResponse(LdapExtendedResponse {
            res: with_code(code, message),
            name: Some(OID_NOTICE_OF_DISCONNECTION.to_owned()),
            value: None,
        }),
    )
}

impl Session {
    pub(crate) fn new(server: Arc<LdapServer>, peer: SocketAddr, tls: bool) -> Session {
        Session {
            server,
            peer,
            identity: Identity::Anonymous,
            tls,
            paged: HashMap::new(),
            paged_order: VecDeque::new(),
            next_cookie: 1,
            waiting: VecDeque::new(),
        }
    }

    fn codec(&self) -> LdapCodec {
        LdapCodec::new(Some(self.server.settings.max_message_bytes), None)
    }

    pub(crate) async fn run(mut self, io: Io) {
        let mut conn = Framed::new(io, self.codec());
        loop {
            let message = match self.waiting.pop_front() {
                Some(message) => message,
                None => {
                    let idle = self.server.settings.idle_timeout;
                    match tokio::time::timeout(idle, conn.next()).await {
                        Err(_) => {
                            let _ = conn
                                .send(notice(LdapResultCode::Unavailable, "idle too long"))
                                .await;
                            return;
                        }
                        Ok(None) => return,
                        Ok(Some(Err(error))) => {
                            let (code, message) = match error.kind() {
                                std::io::ErrorKind::OutOfMemory => (
                                    LdapResultCode::AdminLimitExceeded,
                                    "the message is larger than this server accepts",
                                ),
                                _ => (LdapResultCode::ProtocolError, "malformed message"),
                            };
                            tracing::debug!(peer = %self.peer, %error, "ldap: bad input");
                            let _ = conn.send(notice(code, message)).await;
                            return;
                        }
                        Ok(Some(Ok(message))) => message,
                    }
                }
            };
            // A request that cannot be answered in this time (a client that stops
            // reading its entries, a bind queued behind too many) ends the connection.
            let settings = &self.server.settings;
            let budget = settings.time_limit + settings.idle_timeout;
            let handled = tokio::time::timeout(budget, self.handle(message, &mut conn)).await;
            match handled.unwrap_or(Ok(Flow::Close)) {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close) | Err(_) => return,
                Ok(Flow::StartTls) => match self.start_tls(conn).await {
                    Some(upgraded) => conn = upgraded,
                    None => return,
                },
            }
        }
    }

    async fn start_tls(&mut self, conn: Conn) -> Option<Conn> {
        let parts = conn.into_parts();
        if !parts.read_buf.is_empty() {
            // Data after the StartTLS request, before the handshake: not TLS.
            return None;
        }
        let acceptor = self.server.tls.clone()?;
        let handshake = acceptor.accept(parts.io);
        let tls = match tokio::time::timeout(Duration::from_secs(10), handshake).await {
            Ok(Ok(tls)) => tls,
            _ => {
                tracing::debug!(peer = %self.peer, "ldap: StartTLS handshake failed");
                return None;
            }
        };
        self.tls = true;
        let io: Io = Box::new(tls);
        Some(Framed::new(io, self.codec()))
    }

    async fn handle(&mut self, message: LdapMsg, conn: &mut Conn) -> std::io::Result<Flow> {
        let id = message.msgid;
        let reply = |op| LdapMsg::new(id, op);
        let refused = "this directory is read-only: change users and groups through Portcullis";
        let flow = match message.op {
            LdapOp::BindRequest(request) => {
                let result = self.bind(&request).await;
                conn.send(reply(LdapOp::BindResponse(LdapBindResponse {
                    res: result,
                    saslcreds: None,
                })))
                .await?;
                Flow::Continue
            }
            LdapOp::UnbindRequest => Flow::Close,
            LdapOp::SearchRequest(request) => {
                return self.search(id, &request, &message.ctrl, conn).await;
            }
            LdapOp::CompareRequest(request) => {
                let result = self.compare(&request);
                conn.send(reply(LdapOp::CompareResult(result))).await?;
                Flow::Continue
            }
            LdapOp::ExtendedRequest(request) => return self.extended(id, &request, conn).await,
            LdapOp::AbandonRequest(_) => Flow::Continue,
            LdapOp::AddRequest(_) => {
                let result = LdapError::UnwillingToPerform(refused).result();
                conn.send(reply(LdapOp::AddResponse(result))).await?;
                Flow::Continue
            }
            LdapOp::ModifyRequest(_) => {
                let result = LdapError::UnwillingToPerform(refused).result();
                conn.send(reply(LdapOp::ModifyResponse(result))).await?;
                Flow::Continue
            }
            LdapOp::DelRequest(_) => {
                let result = LdapError::UnwillingToPerform(refused).result();
                conn.send(reply(LdapOp::DelResponse(result))).await?;
                Flow::Continue
            }
            LdapOp::ModifyDNRequest(_) => {
                let result = LdapError::UnwillingToPerform(refused).result();
                conn.send(reply(LdapOp::ModifyDNResponse(result))).await?;
                Flow::Continue
            }
            // A response or intermediate message from a client is a protocol error.
            _ => {
                conn.send(notice(LdapResultCode::ProtocolError, "not a request"))
                    .await?;
                Flow::Close
            }
        };
        Ok(flow)
    }

    // ----- binds ----------------------------------------------------------------------

    async fn bind(&mut self, request: &LdapBindRequest) -> LdapResult {
        // A bind starts afresh: whatever it ends in, the old identity is gone.
        self.identity = Identity::Anonymous;
        match self.bind_as(request).await {
            Ok(identity) => {
                self.identity = identity;
                success()
            }
            Err(error) => error.result(),
        }
    }

    async fn bind_as(&self, request: &LdapBindRequest) -> Result<Identity, LdapError> {
        if request.version != 3 {
            return Err(LdapError::Protocol(
                "only LDAP version 3 is supported".into(),
            ));
        }
        let password = match &request.cred {
            LdapBindCred::Simple(password) => password.as_str(),
            _ => return Err(LdapError::AuthMethodNotSupported),
        };
        let name = request.dn.trim();
        if name.is_empty() {
            return if password.is_empty() {
                Ok(Identity::Anonymous)
            } else {
                Err(LdapError::UnwillingToPerform(
                    "a password without a name is not a bind",
                ))
            };
        }
        if password.is_empty() {
            // RFC 4513 §5.1.2: an unauthenticated bind, refused.
            return Err(LdapError::UnwillingToPerform(
                "unauthenticated binds (a name without a password) are refused",
            ));
        }
        if !self.tls && !self.server.settings.plain_binds {
            return Err(LdapError::ConfidentialityRequired);
        }
        let rdns = dn::parse(name).map_err(|error| LdapError::InvalidDn(error.to_string()))?;
        match self.server.settings.base_dn.place(&rdns) {
            Place::User(username) => self.bind_user(username, password.to_owned()).await,
            Place::Token(token) => self.bind_token(&token, password),
            _ => Err(LdapError::InvalidCredentials("invalid credentials")),
        }
    }

    /// A user's bind: one sign-in, as `POST /api/v1/auth/login` makes it.
    async fn bind_user(&self, username: String, password: String) -> Result<Identity, LdapError> {
        let _permit = self
            .server
            .binds
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LdapError::Unavailable("the server is stopping"))?;
        let auth = self.server.auth.clone();
        let request = LoginRequest {
            login: username.clone(),
            password,
            code: None,
            method: None,
        };
        let outcome = tokio::task::spawn_blocking(move || auth.login(&request, Time::now()))
            .await
            .map_err(|error| LdapError::Operations(format!("sign-in task failed: {error}")))?;
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::warn!(%error, "ldap bind: sign-in failed");
                return Err(LdapError::Operations("sign-in failed".into()));
            }
        };
        match outcome {
            // The login name may also be an email: only the user whose username the
            // DN names binds as that DN.
            LoginOutcome::Ok { user } if dn::fold(&user.username) == dn::fold(&username) => {
                Ok(Identity::User {
                    id: user.id,
                    dn: self.server.settings.base_dn.user(&user.username),
                })
            }
            LoginOutcome::Ok { .. } | LoginOutcome::Denied { .. } => {
                Err(LdapError::InvalidCredentials("invalid credentials"))
            }
            LoginOutcome::MfaRequired { .. }
            | LoginOutcome::PasskeyRequired { .. }
            | LoginOutcome::MfaEnrollmentRequired { .. } => Err(LdapError::InvalidCredentials(
                "this user signs in with a second factor",
            )),
            LoginOutcome::PasswordChangeRequired { .. } => Err(LdapError::InvalidCredentials(
                "the password must be changed first",
            )),
        }
    }

    /// A service's bind: the token named by the DN, its secret as the password.
    fn bind_token(&self, name: &str, secret: &str) -> Result<Identity, LdapError> {
        let now = Time::now();
        let refused = LdapError::InvalidCredentials("invalid credentials");
        let token = self
            .server
            .engine
            .authenticate_token(secret, now)
            .ok_or(refused.clone())?;
        if dn::fold(&token.name) != dn::fold(name) {
            return Err(refused);
        }
        let snapshot = self.server.engine.snapshot();
        if token
            .user
            .is_some_and(|user| !snapshot.user_valid_at(user, now))
        {
            return Err(refused);
        }
        Ok(Identity::Token {
            id: token.id,
            dn: self.server.settings.base_dn.token(&token.name),
        })
    }

    /// Whether the bound identity may read the directory now: a user still active
    /// and unexpired, a token still valid whose roles carry `users.view`.
    fn may_read(&self, snapshot: &Snapshot, now: Time) -> Result<(), LdapError> {
        match &self.identity {
            Identity::Anonymous => Err(LdapError::InsufficientAccess(
                "bind first: anonymous clients see only the root DSE",
            )),
            Identity::User { id, .. } => {
                if snapshot.user_valid_at(*id, now) {
                    Ok(())
                } else {
                    Err(LdapError::InsufficientAccess(
                        "the bound user is no longer active",
                    ))
                }
            }
            Identity::Token { id, .. } => {
                let token = snapshot
                    .token(&id.to_string())
                    .filter(|token| token.expires_at.is_none_or(|expires| now < expires))
                    .filter(|token| token.user.is_none_or(|u| snapshot.user_valid_at(u, now)))
                    .ok_or(LdapError::InsufficientAccess(
                        "the bound token is no longer valid",
                    ))?;
                let allowed = token.roles.iter().any(|role| {
                    snapshot
                        .role_permissions(role)
                        .is_some_and(|p| p.iter().any(|p| p == READ_PERMISSION))
                });
                if allowed {
                    Ok(())
                } else {
                    Err(LdapError::InsufficientAccess(
                        "this token's roles lack `users.view`",
                    ))
                }
            }
        }
    }

    fn dn(&self) -> Option<&str> {
        match &self.identity {
            Identity::Anonymous => None,
            Identity::User { dn, .. } | Identity::Token { dn, .. } => Some(dn),
        }
    }

    // ----- extended operations ----------------------------------------------------------

    async fn extended(
        &mut self,
        id: i32,
        request: &LdapExtendedRequest,
        conn: &mut Conn,
    ) -> std::io::Result<Flow> {
        let response = |res: LdapResult, name: Option<&str>, value: Option<Vec<u8>>| {
            LdapMsg::new(
                id,
                LdapOp::ExtendedResponse(LdapExtendedResponse {
                    res,
                    name: name.map(str::to_owned),
                    value,
                }),
            )
        };
        match request.name.as_str() {
            OID_WHOAMI => {
                let value = self.dn().map(|dn| format!("dn:{dn}")).unwrap_or_default();
                conn.send(response(success(), None, Some(value.into_bytes())))
                    .await?;
                Ok(Flow::Continue)
            }
            OID_STARTTLS => {
                let refusal = if self.server.tls.is_none() {
                    Some(LdapError::Unavailable("this server has no TLS certificate"))
                } else if self.tls {
                    Some(LdapError::Operations("TLS is already in use".into()))
                } else {
                    None
                };
                if let Some(refusal) = refusal {
                    conn.send(response(refusal.result(), Some(OID_STARTTLS), None))
                        .await?;
                    return Ok(Flow::Continue);
                }
                conn.send(response(success(), Some(OID_STARTTLS), None))
                    .await?;
                Ok(Flow::StartTls)
            }
            OID_PASSWORD_MODIFY => {
                let refusal = LdapError::UnwillingToPerform(
                    "change passwords through Portcullis sign-in (POST /api/v1/auth/password/change)",
                );
                conn.send(response(refusal.result(), None, None)).await?;
                Ok(Flow::Continue)
            }
            other => {
                let refusal =
                    LdapError::Protocol(format!("unsupported extended operation `{other}`"));
                conn.send(response(refusal.result(), None, None)).await?;
                Ok(Flow::Continue)
            }
        }
    }

    // ----- compare -------------------------------------------------------------------

    fn compare(&self, request: &LdapCompareRequest) -> LdapResult {
        let snapshot = self.server.engine.snapshot();
        let now = Time::now();
        if let Err(error) = self.may_read(&snapshot, now) {
            return error.result();
        }
        let numbers = self.server.numbers(&snapshot);
        let view = self.view(&snapshot, now, &numbers);
        let entry = match self.base_entry(&view, &request.dn) {
            Ok(reference) => view.entry(reference),
            Err(error) => return error.result(),
        };
        let Some(entry) = entry else {
            return LdapError::NoSuchObject {
                matched: String::new(),
            }
            .result();
        };
        let value = String::from_utf8_lossy(&request.val).into_owned();
        let filter = LdapFilter::Equality(request.atype.clone(), value);
        let Ok(compiled) = filter::compile(&filter, &view, self.limits()) else {
            return LdapError::AdminLimitExceeded("the assertion is too large".into()).result();
        };
        if crate::schema::lookup(&request.atype).is_none_or(|kind| entry.get(kind).is_none()) {
            return with_code(LdapResultCode::NoSuchAttribute, "no such attribute");
        }
        if compiled.matches(&entry) {
            with_code(LdapResultCode::CompareTrue, "")
        } else {
            with_code(LdapResultCode::CompareFalse, "")
        }
    }

    // ----- search --------------------------------------------------------------------

    fn limits(&self) -> FilterLimits {
        FilterLimits {
            depth: self.server.settings.max_filter_depth,
            terms: self.server.settings.max_filter_terms,
        }
    }

    fn view<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        at: Time,
        numbers: &'a crate::numbers::Numbers,
    ) -> View<'a> {
        View {
            snapshot,
            at,
            base: &self.server.settings.base_dn,
            numbers,
            posix: &self.server.settings.posix,
        }
    }

    /// The entry a request's base DN names.
    fn base_entry(&self, view: &View<'_>, base: &str) -> Result<EntryRef, LdapError> {
        let rdns = dn::parse(base).map_err(|error| LdapError::InvalidDn(error.to_string()))?;
        let place = self.server.settings.base_dn.place(&rdns);
        let settings = &self.server.settings.base_dn;
        view.resolve(&place).ok_or_else(|| {
            let matched = match place {
                Place::User(_) => settings.people(),
                Place::Group(_) => settings.groups(),
                Place::Outside | Place::RootDse => String::new(),
                _ => settings.as_str().to_owned(),
            };
            LdapError::NoSuchObject { matched }
        })
    }

    fn root_dse(&self) -> Entry {
        let mut extensions = vec![OID_WHOAMI.to_owned()];
        if self.server.tls.is_some() {
            extensions.push(OID_STARTTLS.to_owned());
        }
        let mut entry = Entry {
            dn: String::new(),
            id: None,
            attributes: Vec::new(),
        };
        entry.add("objectClass", vec!["top".to_owned()]);
        entry.add(
            "namingContexts",
            vec![self.server.settings.base_dn.as_str().to_owned()],
        );
        entry.add("supportedLDAPVersion", vec!["3".to_owned()]);
        entry.add("supportedControl", vec![OID_PAGED_RESULTS.to_owned()]);
        entry.add("supportedExtension", extensions);
        entry.add("supportedFeatures", vec![OID_ALL_OPERATIONAL.to_owned()]);
        entry.add("vendorName", vec!["Portcullis".to_owned()]);
        entry.add("vendorVersion", vec![env!("CARGO_PKG_VERSION").to_owned()]);
        entry
    }

    async fn search(
        &mut self,
        id: i32,
        request: &LdapSearchRequest,
        controls: &[LdapControl],
        conn: &mut Conn,
    ) -> std::io::Result<Flow> {
        let done = |result: LdapResult, controls: Vec<LdapControl>| {
            LdapMsg::new_with_ctrls(id, LdapOp::SearchResultDone(result), controls)
        };
        let mut paging = None;
        for control in controls {
            match control {
                LdapControl::SimplePagedResults { size, cookie } => {
                    paging = Some((*size, cookie.clone()));
                }
                LdapControl::Unknown {
                    oid,
                    criticality: true,
                    ..
                } => {
                    let refusal = LdapError::UnavailableCriticalExtension(oid.clone());
                    conn.send(done(refusal.result(), Vec::new())).await?;
                    return Ok(Flow::Continue);
                }
                LdapControl::SyncRequest {
                    criticality: true, ..
                } => {
                    let refusal = LdapError::UnavailableCriticalExtension(
                        "1.3.6.1.4.1.4203.1.9.1.1".to_owned(),
                    );
                    conn.send(done(refusal.result(), Vec::new())).await?;
                    return Ok(Flow::Continue);
                }
                _ => {}
            }
        }
        let selection = Selection::new(&request.attrs, request.typesonly);
        // The root DSE: anyone may read it.
        if request.base.trim().is_empty() && request.scope == LdapSearchScope::Base {
            let view_numbers = crate::numbers::Numbers::default();
            let snapshot = self.server.engine.snapshot();
            let view = self.view(&snapshot, Time::now(), &view_numbers);
            let entry = self.root_dse();
            match filter::compile(&request.filter, &view, self.limits()) {
                Ok(filter) => {
                    if filter.matches(&entry) {
                        // The root DSE's attributes are all operational but objectClass;
                        // they are shown by default, as most servers do.
                        let all = Selection::new(&["*".to_owned(), "+".to_owned()], false);
                        let chosen = if request.attrs.is_empty() {
                            &all
                        } else {
                            &selection
                        };
                        conn.send(LdapMsg::new(
                            id,
                            LdapOp::SearchResultEntry(chosen.render(entry)),
                        ))
                        .await?;
                    }
                    conn.send(done(success(), Vec::new())).await?;
                }
                Err(error) => {
                    conn.send(done(filter_refusal(&error).result(), Vec::new()))
                        .await?;
                }
            }
            return Ok(Flow::Continue);
        }
        let now = Time::now();
        let snapshot = self.server.engine.snapshot();
        if let Err(error) = self.may_read(&snapshot, now) {
            conn.send(done(error.result(), Vec::new())).await?;
            return Ok(Flow::Continue);
        }
        let fingerprint = format!(
            "{}|{:?}|{:?}|{:?}|{}",
            dn::normalize(&request.base).unwrap_or_default(),
            request.scope,
            request.filter,
            request.attrs,
            request.typesonly
        );
        let settings = &self.server.settings;
        let client_seconds = u64::try_from(request.timelimit).unwrap_or(0);
        let time_limit = match client_seconds {
            0 => settings.time_limit,
            seconds => settings.time_limit.min(Duration::from_secs(seconds)),
        };
        let deadline = Instant::now() + time_limit;
        let client_size = usize::try_from(request.sizelimit).unwrap_or(0);

        // A later page of a paged search: from its own snapshot and instant.
        if let Some((size, cookie)) = &paging {
            if !cookie.is_empty() {
                let key = cookie_key(cookie);
                let Some(mut paged) = key.and_then(|key| self.paged.remove(&key)) else {
                    let refusal = LdapError::UnwillingToPerform("unknown paged-results cookie");
                    conn.send(done(refusal.result(), Vec::new())).await?;
                    return Ok(Flow::Continue);
                };
                if paged.request != fingerprint {
                    let refusal =
                        LdapError::UnwillingToPerform("the cookie belongs to another search");
                    conn.send(done(refusal.result(), Vec::new())).await?;
                    return Ok(Flow::Continue);
                }
                // RFC 2696 §3: a size of zero abandons the search.
                if *size <= 0 {
                    self.forget(key.unwrap_or_default());
                    let control = paged_control(0, Vec::new());
                    conn.send(done(success(), vec![control])).await?;
                    return Ok(Flow::Continue);
                }
                let numbers = self.server.numbers(&paged.snapshot);
                let page_size = page_size(*size, settings.size_limit);
                let page: Vec<EntryRef> = (0..page_size)
                    .map_while(|_| paged.remaining.pop_front())
                    .collect();
                let total = paged.total;
                let more = !paged.remaining.is_empty();
                let key = key.unwrap_or_default();
                let (snapshot, at) = (paged.snapshot.clone(), paged.at);
                if more {
                    self.paged.insert(key, paged);
                } else {
                    self.forget(key);
                }
                let view = self.view(&snapshot, at, &numbers);
                let entries = render(&view, &page, &selection);
                let next = if more {
                    key.to_be_bytes().to_vec()
                } else {
                    Vec::new()
                };
                return self
                    .send_entries(
                        id,
                        entries,
                        conn,
                        done(success(), vec![paged_control(total, next)]),
                    )
                    .await;
            }
        }

        let numbers = self.server.numbers(&snapshot);
        let view = self.view(&snapshot, now, &numbers);
        let base = match self.base_entry(&view, &request.base) {
            Ok(base) => base,
            Err(error) => {
                conn.send(done(error.result(), Vec::new())).await?;
                return Ok(Flow::Continue);
            }
        };
        let filter = match filter::compile(&request.filter, &view, self.limits()) {
            Ok(filter) => filter,
            Err(error) => {
                conn.send(done(filter_refusal(&error).result(), Vec::new()))
                    .await?;
                return Ok(Flow::Continue);
            }
        };
        match paging {
            Some((size, _)) => {
                let limit = if client_size == 0 {
                    usize::MAX - 1
                } else {
                    client_size
                };
                let found = search::find(&view, base, &request.scope, &filter, limit, deadline);
                if found.timed_out {
                    let entries = render(&view, &found.matches, &selection);
                    let result =
                        with_code(LdapResultCode::TimeLimitExceeded, "time limit exceeded");
                    return self
                        .send_entries(id, entries, conn, done(result, Vec::new()))
                        .await;
                }
                let total = found.matches.len();
                let mut remaining: VecDeque<EntryRef> = found.matches.into();
                let page_size = page_size(size, settings.size_limit);
                let page: Vec<EntryRef> = (0..page_size)
                    .map_while(|_| remaining.pop_front())
                    .collect();
                let entries = render(&view, &page, &selection);
                let next = if remaining.is_empty() {
                    Vec::new()
                } else {
                    let key = self.remember(Paged {
                        request: fingerprint,
                        snapshot: snapshot.clone(),
                        at: now,
                        remaining,
                        total,
                    });
                    key.to_be_bytes().to_vec()
                };
                self.send_entries(
                    id,
                    entries,
                    conn,
                    done(success(), vec![paged_control(total, next)]),
                )
                .await
            }
            None => {
                let limit = match client_size {
                    0 => settings.size_limit,
                    size => size.min(settings.size_limit),
                };
                let mut found = search::find(&view, base, &request.scope, &filter, limit, deadline);
                let result = if found.timed_out {
                    with_code(LdapResultCode::TimeLimitExceeded, "time limit exceeded")
                } else if found.over_limit {
                    found.matches.truncate(limit);
                    with_code(LdapResultCode::SizeLimitExceeded, "size limit exceeded")
                } else {
                    success()
                };
                let entries = render(&view, &found.matches, &selection);
                self.send_entries(id, entries, conn, done(result, Vec::new()))
                    .await
            }
        }
    }

    fn remember(&mut self, paged: Paged) -> u64 {
        let key = self.next_cookie;
        self.next_cookie += 1;
        if self.paged_order.len() >= MAX_PAGED {
            if let Some(oldest) = self.paged_order.pop_front() {
                self.paged.remove(&oldest);
            }
        }
        self.paged.insert(key, paged);
        self.paged_order.push_back(key);
        key
    }

    fn forget(&mut self, key: u64) {
        self.paged.remove(&key);
        self.paged_order.retain(|k| *k != key);
    }

    /// Sends a search's entries then its `done`, looking at the input every few
    /// entries: an abandon of this search stops it (no `done`, as RFC 4511 §4.11
    /// says), an unbind or a broken input closes the connection.
    async fn send_entries(
        &mut self,
        id: i32,
        entries: Vec<ldap3_proto::proto::LdapSearchResultEntry>,
        conn: &mut Conn,
        done: LdapMsg,
    ) -> std::io::Result<Flow> {
        for (sent, entry) in entries.into_iter().enumerate() {
            conn.feed(LdapMsg::new(id, LdapOp::SearchResultEntry(entry)))
                .await?;
            if (sent + 1) % INPUT_EVERY == 0 {
                conn.flush().await?;
                while self.waiting.len() < MAX_WAITING {
                    let Some(input) = conn.next().now_or_never() else {
                        break;
                    };
                    match input {
                        Some(Ok(message)) => match message.op {
                            LdapOp::AbandonRequest(target) if target == id => {
                                return Ok(Flow::Continue);
                            }
                            LdapOp::UnbindRequest => return Ok(Flow::Close),
                            _ => self.waiting.push_back(message),
                        },
                        // Bad input mid-search: the connection ends.
                        Some(Err(_)) | None => return Ok(Flow::Close),
                    }
                }
            }
        }
        conn.send(done).await?;
        Ok(Flow::Continue)
    }
}

fn render(
    view: &View<'_>,
    references: &[EntryRef],
    selection: &Selection,
) -> Vec<ldap3_proto::proto::LdapSearchResultEntry> {
    references
        .iter()
        .filter_map(|reference| view.entry(*reference))
        .map(|entry| selection.render(entry))
        .collect()
}

fn filter_refusal(error: &FilterError) -> LdapError {
    LdapError::AdminLimitExceeded(match error {
        FilterError::TooDeep(depth) => format!("the filter nests deeper than {depth}"),
        FilterError::TooLarge(terms) => format!("the filter has more than {terms} terms"),
    })
}

fn page_size(asked: i64, limit: usize) -> usize {
    usize::try_from(asked).unwrap_or(1).clamp(1, limit.max(1))
}

fn cookie_key(cookie: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(cookie.try_into().ok()?))
}

fn paged_control(total: usize, cookie: Vec<u8>) -> LdapControl {
    LdapControl::SimplePagedResults {
        size: i64::try_from(total).unwrap_or(i64::MAX),
        cookie,
    }
}
