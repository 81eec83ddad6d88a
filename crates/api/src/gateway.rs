//! The gateway in the server: a request no control-plane route serves is decided by the route
//! rules (credentials, route match on the normalised path, auth / groups / permission / policy)
//! and, when allowed, forwarded to the route's backend with identity headers; the forward-auth
//! endpoint `/auth` answers the same decision to nginx, Envoy and Traefik. Everything here reads
//! memory; denials are queued for the audit trail's writer ([`crate::audit_queue`]), never waited
//! for.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_authn::UserEntry;
use portcullis_authz::route_rules;
use portcullis_gateway::forward_auth::{self, Flavour};
use portcullis_gateway::{
    Backend, CallerHeaders, Forward, Identity, IdentityFields, IdentityHeaders,
};
use portcullis_model::{OrgId, UserId};
use serde_json::{Map, Value, json};

use crate::ApiError;
use crate::auth::Authenticated;
use crate::client_ip::client_of;
use crate::rbac::rond::RequestSpec;
use crate::rbac::routes::{RouteCaller, RouteVerdict};
use crate::state::AppState;

/// Gateway settings (`gateway:` in the configuration).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Backends by name.
    pub backends: Vec<Backend>,
    /// The backend of routes that name none.
    pub default_backend: Option<String>,
    /// Largest request body forwarded.
    pub max_body_bytes: u64,
    /// Largest JSON body a Rego policy reads; on a route with a policy, a larger one is a 413.
    pub policy_body_bytes: u64,
    /// Alias identity headers.
    pub aliases: IdentityHeaders,
    /// Audit one allowed request in this many (0: none); denials are always audited.
    pub audit_allowed_every: u64,
    /// Gateway audit records that may wait for the database; more are counted, not kept
    /// (bounds memory under a flood of refusals).
    pub audit_queue: usize,
    /// Lifetime of the identity assertion JWT, in seconds.
    pub assertion_seconds: u64,
    /// Write an access-log event per gateway request (target `portcullis::access`).
    pub access_log: bool,
    /// Threads serving connections (0: one per CPU).
    pub workers: usize,
    /// Largest request head (request line and headers) a client may send; more is a 431.
    pub max_header_bytes: usize,
    /// Forward client headers whose names contain `_` (nginx's `underscores_in_headers`);
    /// by default they are removed, as many backends read `_` as `-`.
    pub underscores_in_headers: bool,
    /// How long a client connection may do nothing (send no request head, hold no open
    /// HTTP/2 stream, not finish its TLS handshake) before it is closed.
    pub idle_timeout: std::time::Duration,
    /// Most client connections held at once, over every listener (0: derived from the
    /// process's open-file limit, see [`crate::workers::derived_max_connections`]).
    pub max_connections: usize,
    /// Most streams an HTTP/2 client may have open at once on one connection (nginx's
    /// `http2_max_concurrent_streams`). A stream forwarding beside another of its connection's
    /// also takes a place under `max_connections`, as it holds a backend connection of its own.
    pub http2_max_streams: u32,
    /// How long an upgraded (websocket) connection may carry nothing either way before it
    /// is closed.
    pub websocket_idle_timeout: std::time::Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            backends: Vec::new(),
            default_backend: None,
            max_body_bytes: 64 * 1024 * 1024,
            policy_body_bytes: 1024 * 1024,
            aliases: IdentityHeaders::default(),
            audit_allowed_every: 0,
            audit_queue: 65_536,
            assertion_seconds: 60,
            access_log: true,
            workers: 0,
            max_header_bytes: 64 * 1024,
            underscores_in_headers: false,
            idle_timeout: std::time::Duration::from_secs(30),
            max_connections: 0,
            http2_max_streams: 128,
            websocket_idle_timeout: portcullis_gateway::DEFAULT_UPGRADED_IDLE,
        }
    }
}

/// Marks a response the login redirect must leave alone (forward-auth answers, and a backend's
/// 401 to a signed-in caller).
#[derive(Debug, Clone, Copy)]
pub struct KeepStatus;

/// Counts allowed requests for sampled auditing.
static ALLOWED: AtomicU64 = AtomicU64::new(0);

/// What the gateway prepares once per caller: who they are to the route rules and their groups.
/// Reused while the user's directory entry and the RBAC snapshot are the ones it was made from,
/// and for at most half an assertion's life, so that an assertion signed from it
/// ([`caller_headers`]) never outlives it by more than that.
struct CallerContext {
    /// The directory entry it was made from (a changed user is a new entry).
    user: Arc<UserEntry>,
    generation: u64,
    /// Milliseconds after which the context is made again.
    refresh_after: i64,
    caller: RouteCaller,
    /// The org (slug) the caller acts in.
    org: Option<String>,
}

/// A caller: the user, and the org their credential is bound to.
type CallerKey = (UserId, Option<OrgId>);

/// Callers kept per thread before the cache starts over.
const CONTEXTS_PER_THREAD: usize = 16 * 1024;

thread_local! {
    /// Prepared callers, per thread: each worker prepares its own, so that serving a caller
    /// never touches memory another worker is writing — no lock, and no reference count shared
    /// between threads.
    // Keyed by server-made ids: a fast hasher will do.
    static CONTEXTS: std::cell::RefCell<
        HashMap<CallerKey, Arc<CallerContext>, foldhash::fast::RandomState>,
    > = std::cell::RefCell::new(HashMap::default());
}

/// The caller's groups in their org (names).
fn groups_of(state: &AppState, user_ref: &str, org: Option<&str>) -> Vec<String> {
    let Some(o) = org else { return Vec::new() };
    let prefix = format!("group:{o}/");
    state
        .rbac
        .snapshot()
        .groups_of_user(user_ref)
        .into_iter()
        .filter_map(|g| g.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

/// The prepared context of `auth`'s caller; none when the credential names no active member.
fn caller_context(state: &AppState, auth: &Authenticated) -> Option<Arc<CallerContext>> {
    let principal = &auth.principal;
    let key = (principal.user.id, principal.credential_org);
    let generation = state.rbac.generation();
    let now = state.clock.now_millis();
    let cached = CONTEXTS.with(|map| {
        map.borrow()
            .get(&key)
            .filter(|ctx| {
                Arc::ptr_eq(&ctx.user, &principal.user)
                    && ctx.generation == generation
                    && now < ctx.refresh_after
            })
            .cloned()
    });
    if cached.is_some() {
        return cached;
    }
    let ctx = Arc::new(build_context(state, auth, generation, now)?);
    CONTEXTS.with(|map| {
        let mut map = map.borrow_mut();
        if map.len() >= CONTEXTS_PER_THREAD {
            map.clear();
        }
        map.insert(key, ctx.clone());
    });
    Some(ctx)
}

fn build_context(
    state: &AppState,
    auth: &Authenticated,
    generation: u64,
    now: i64,
) -> Option<CallerContext> {
    let user_ref = crate::rbac::user_ref(&auth.principal)?;
    let user = &auth.principal.user;
    let org = user_ref
        .strip_prefix("user:")
        .and_then(|r| r.split_once('/'))
        .map(|(o, _)| o.to_owned());
    let groups = groups_of(state, &user_ref, org.as_deref());
    let lifetime = state.gateway.assertion_seconds as i64;
    Some(CallerContext {
        user: user.clone(),
        generation,
        refresh_after: now + lifetime * 1000 / 2,
        caller: RouteCaller {
            user_ref,
            user_id: user.id.to_string(),
            username: user.username.clone(),
            properties: json!({ "email": user.email, "username": user.username }),
            groups: Some(groups),
        },
        org,
    })
}

/// Who receives a caller's identity headers, which names the `aud` of their assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Recipient<'a> {
    /// A configured backend (by name): its `audience`, or its name.
    Backend(&'a str),
    /// An application behind a proxy asking forward-auth, by the host the request was for.
    Host(&'a str),
}

impl Recipient<'_> {
    /// The assertion's `aud` for this recipient.
    fn audience(self, state: &AppState) -> String {
        match self {
            Recipient::Backend(name) => state
                .gateway
                .backends
                .iter()
                .find(|b| b.name == name)
                .map_or(name, |b| b.audience())
                .to_owned(),
            Recipient::Host(host) => host.to_ascii_lowercase(),
        }
    }

    fn to_owned(self) -> OwnedRecipient {
        match self {
            Recipient::Backend(name) => OwnedRecipient::Backend(name.into()),
            Recipient::Host(host) => OwnedRecipient::Host(host.into()),
        }
    }
}

/// A [`Recipient`] kept in the cache.
#[derive(Debug, PartialEq, Eq)]
enum OwnedRecipient {
    Backend(Box<str>),
    Host(Box<str>),
}

impl OwnedRecipient {
    fn as_ref(&self) -> Recipient<'_> {
        match self {
            OwnedRecipient::Backend(name) => Recipient::Backend(name),
            OwnedRecipient::Host(host) => Recipient::Host(host),
        }
    }
}

/// A caller's identity headers for one recipient, signed once per prepared caller.
struct SignedHeaders {
    context: Arc<CallerContext>,
    recipient: OwnedRecipient,
    headers: Arc<CallerHeaders>,
}

/// Signed headers kept per thread before the cache starts over.
const SIGNED_PER_THREAD: usize = 16 * 1024;

thread_local! {
    /// By a seeded hash of (prepared caller, audience), per thread as the callers are.
    static SIGNED: std::cell::RefCell<HashMap<u64, SignedHeaders, foldhash::fast::RandomState>> =
        std::cell::RefCell::new(HashMap::default());
}

/// Seeded per process: recipients can be hosts a client names.
static AUDIENCE_SEED: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);

/// The identity headers of `context`'s caller with an assertion for `recipient` (its `aud`
/// claim), so that an assertion one backend received is refused by another. Signing costs
/// tens of microseconds: once per prepared caller and audience.
fn caller_headers(
    state: &AppState,
    context: &Arc<CallerContext>,
    recipient: Recipient<'_>,
) -> Arc<CallerHeaders> {
    use std::hash::BuildHasher;
    let key = AUDIENCE_SEED.hash_one((Arc::as_ptr(context) as usize, recipient));
    let hit = SIGNED.with(|cache| {
        cache.borrow().get(&key).and_then(|e| {
            (Arc::ptr_eq(&e.context, context) && e.recipient.as_ref() == recipient)
                .then(|| e.headers.clone())
        })
    });
    if let Some(headers) = hit {
        return headers;
    }
    let audience = recipient.audience(state);
    let now = state.clock.now_millis();
    let caller = &context.caller;
    let user = &context.user;
    let groups = caller.groups.clone().unwrap_or_default();
    let claims = json!({
        "iss": state.keys.issuer(),
        "aud": audience,
        "sub": caller.user_id,
        "iat": now / 1000,
        "exp": now / 1000 + state.gateway.assertion_seconds as i64,
        "org": context.org,
        "user": {
            "userId": caller.user_id,
            "username": user.username,
            "email": user.email,
            "groups": groups,
        },
    });
    let assertion = match state.keys.sign(&claims, now) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "could not sign an identity assertion");
            None
        }
    };
    let signed = assertion.is_some();
    let headers = Arc::new(CallerHeaders::new(&IdentityFields {
        user: caller.username.clone(),
        user_id: caller.user_id.clone(),
        groups,
        org: context.org.clone(),
        properties: caller.properties.clone(),
        assertion,
    }));
    // Headers without an assertion are not kept: the next request tries to sign again.
    if signed {
        SIGNED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() >= SIGNED_PER_THREAD {
                cache.clear();
            }
            cache.insert(
                key,
                SignedHeaders {
                    context: context.clone(),
                    recipient: recipient.to_owned(),
                    headers: headers.clone(),
                },
            );
        });
    }
    headers
}

/// Headers as Rönd hands them to a policy (lower-case names, lists of values).
fn header_map(headers: &HeaderMap) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let Ok(v) = value.to_str() else { continue };
        if let Value::Array(list) = out
            .entry(name.as_str().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(Value::String(v.to_owned()));
        }
    }
    out
}

/// The query as Rönd hands it to a policy (Go's `URL.Query()`): names and values form-decoded
/// (`+` is a space, `%XX` a byte), as the backend will read them; `?%66orce=1` is `force`.
fn query_map(query: Option<&str>) -> Map<String, Value> {
    let decode = |s: &str| portcullis_authz::route_match::percent_decode(&s.replace('+', " "));
    let mut out: Map<String, Value> = Map::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if let Value::Array(list) = out
            .entry(decode(k))
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(Value::String(decode(v)));
        }
    }
    out
}

/// Optional authentication: no credential is an anonymous caller; a wrong one is a 401.
async fn optional_auth(
    parts: &axum::http::request::Parts,
    state: &AppState,
) -> Result<Option<Authenticated>, ApiError> {
    let Some(credential) = crate::auth::presented(&parts.headers) else {
        return Ok(None);
    };
    let auth = crate::auth::authenticate_presented(parts, state, Some(credential)).await?;
    if let Some(session) = auth.principal.session()
        && session.stage != portcullis_store::SessionStage::Active
    {
        return Err(ApiError::StepRequired {
            code: "login_incomplete",
            message: "finish signing in at /web-login first".into(),
        });
    }
    Ok(Some(auth))
}

fn deny_response(verdict: &RouteVerdict) -> Response {
    let status = StatusCode::from_u16(verdict.status).unwrap_or(StatusCode::FORBIDDEN);
    let body = verdict.body.clone().unwrap_or_else(|| json!({}));
    (status, axum::Json(body)).into_response()
}

fn audit_decision(
    state: &AppState,
    auth: Option<&Authenticated>,
    request_id: &HeaderValue,
    method: &str,
    path: &str,
    verdict: &RouteVerdict,
) {
    let allowed = verdict.status == 200;
    if allowed {
        let every = state.gateway.audit_allowed_every;
        if every == 0
            || !ALLOWED
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every)
        {
            return;
        }
    }
    let mut actor = auth
        .map(Authenticated::actor)
        .unwrap_or_else(|| portcullis_store::Actor {
            user_id: None,
            name: "anonymous".into(),
            impersonator: None,
            request_id: None,
        });
    // The id is taken here, for the requests that are audited, rather than carried in every
    // request's extensions (`request_id_of` made it short printable text).
    actor.request_id = request_id.to_str().ok().map(str::to_owned);
    // The request path never waits on the database: the record is queued for the writer on
    // the runtime that owns the pool.
    state.audit.push(portcullis_store::NewAuditRecord {
        at: portcullis_model::Timestamp(state.clock.now_millis()),
        actor,
        action: "gateway.request",
        // Without the query: query strings carry tokens (`?access_token=`), and the trail
        // keeps what it is given for good.
        target: format!("{method} {}", path.split_once('?').map_or(path, |(p, _)| p)),
        outcome: if allowed { "success" } else { "denied" },
        details: Some(json!({
            "status": verdict.status,
            "result": verdict.result,
            "route": verdict.route,
            "deniedBy": verdict.denied_by,
        })),
    });
}

/// The check that keeps an upgraded connection (websocket) open: the same credential must still
/// authenticate an active user, and the route rules must still let that user make the upgrade
/// request (a caller removed from the group a route needs loses the connection too); from
/// memory.
fn still_valid(
    state: &AppState,
    auth: &Authenticated,
    parts: &axum::http::request::Parts,
) -> portcullis_gateway::proxy::StillValid {
    enum Held {
        Session(portcullis_model::SessionId),
        Key(String),
    }
    let held = match &auth.principal.credential {
        portcullis_authn::Credential::Session(session) => Held::Session(session.id),
        // The key as `auth` read it.
        portcullis_authn::Credential::ApiKey(_) => {
            Held::Key(match crate::auth::presented(&parts.headers) {
                Some(crate::auth::Presented::ApiKey(key)) => key.to_owned(),
                _ => String::new(),
            })
        }
    };
    let state = state.clone();
    let method = parts.method.clone();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    let headers = parts.headers.clone();
    // A session idle as this replica knows it is read from the store once before the
    // connection is ended: another replica may have served its requests.
    let reread = Arc::new(std::sync::atomic::AtomicU8::new(REREAD_NONE));
    std::sync::Arc::new(move || {
        use std::sync::atomic::Ordering;
        let principal = match &held {
            Held::Session(id) => {
                match state.directory.session_watch(*id, state.clock.now_millis()) {
                    portcullis_authn::SessionWatch::Live(principal) => {
                        reread.store(REREAD_NONE, Ordering::Relaxed);
                        Some(principal)
                    }
                    portcullis_authn::SessionWatch::Ended => None,
                    portcullis_authn::SessionWatch::IdleHere => {
                        match reread.compare_exchange(
                            REREAD_NONE,
                            REREAD_ASKED,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            // Kept until the store has answered (the next checks).
                            Ok(_) => {
                                let (state, id, reread) = (state.clone(), *id, reread.clone());
                                tokio::spawn(async move {
                                    let _ = state.directory.load_session(&state.store, id).await;
                                    reread.store(REREAD_DONE, Ordering::Release);
                                });
                                return true;
                            }
                            Err(REREAD_ASKED) => return true,
                            // Read again and still idle: over.
                            Err(_) => None,
                        }
                    }
                }
            }
            Held::Key(key) => state
                .directory
                .authenticate_api_key(key, state.clock.now_millis())
                .filter(|p| crate::rbac::user_ref(p).is_some()),
        };
        let Some(principal) = principal else {
            return false;
        };
        if state.rbac.routes().is_none() {
            return true;
        }
        let auth = Authenticated {
            principal,
            request_id: None,
        };
        let Some(context) = caller_context(&state, &auth) else {
            return false;
        };
        decide_cached(&state, Some(&context), &method, &target, &headers, None)
            .is_ok_and(|verdict| verdict.status == 200)
    })
}

/// Where a websocket's watcher is with reading its idle-looking session from the store.
const REREAD_NONE: u8 = 0;
const REREAD_ASKED: u8 = 1;
const REREAD_DONE: u8 = 2;

/// Decides one request against the route rules.
fn decide(
    state: &AppState,
    caller: Option<&RouteCaller>,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Result<(RouteVerdict, bool), ApiError> {
    let Some(rules) = state.rbac.routes() else {
        return Err(ApiError::NotFound("no such endpoint".into()));
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // Headers are copied only for the checks that read them: a Rego policy (with the query
    // and body too) and a `groups` expression comparing the client type.
    let (for_policy, for_client_type) = if rules.any_policy() || rules.any_client_type() {
        rules.find(method, path).map_or((false, false), |m| {
            (m.rule.policy().is_some(), m.rule.reads_client_type())
        })
    } else {
        (false, false)
    };
    let spec = RequestSpec {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: if for_policy || for_client_type {
            header_map(headers)
        } else {
            Map::new()
        },
        query: if for_policy {
            query_map(query)
        } else {
            Map::new()
        },
        path_params: Map::new(),
        body: if for_policy { body } else { None },
    };
    let verdict = state.rbac.evaluate_route(rules, caller, &spec, false);
    crate::observability::gateway_decision(verdict.result);
    // A verdict that read the request's headers is not the caller's alone: not cached.
    Ok((verdict, !(for_policy || for_client_type)))
}

/// Verdicts a worker thread made, by prepared caller and request: a route decision without a
/// Rego policy depends on nothing else (the caller's groups and permissions are fixed for the
/// life of their prepared context, which a change to users or RBAC data replaces). Per thread,
/// so no request waits on another for it.
struct VerdictCache {
    /// By a seeded hash of the key (already well mixed).
    entries: HashMap<u64, CachedVerdict, foldhash::fast::RandomState>,
}

struct CachedVerdict {
    rbac: Arc<crate::rbac::Rbac>,
    context: Arc<CallerContext>,
    method: axum::http::Method,
    path: Box<str>,
    verdict: Arc<RouteVerdict>,
}

/// Verdicts kept per thread before the cache starts over.
const VERDICTS_PER_THREAD: usize = 4096;

thread_local! {
    static VERDICTS: std::cell::RefCell<VerdictCache> = std::cell::RefCell::new(VerdictCache {
        entries: HashMap::default(),
    });
}

/// [`decide`], reusing this thread's verdict for the same prepared caller, method and path.
fn decide_cached(
    state: &AppState,
    context: Option<&Arc<CallerContext>>,
    method: &axum::http::Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Result<Arc<RouteVerdict>, ApiError> {
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p);
    // Only a prepared caller's verdicts are kept (anonymous requests are decided each time).
    let key = context.map(|context| {
        use std::hash::BuildHasher;
        // Seeded per process (paths are the caller's to choose), and several times faster
        // than SipHash on a request's few short keys.
        static SEED: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);
        SEED.hash_one((
            Arc::as_ptr(&state.rbac) as usize,
            Arc::as_ptr(context) as usize,
            method.as_str(),
            path,
        ))
    });
    if let (Some(key), Some(context)) = (key, context) {
        let hit = VERDICTS.with(|cache| {
            cache.borrow().entries.get(&key).and_then(|e| {
                (Arc::ptr_eq(&e.rbac, &state.rbac)
                    && Arc::ptr_eq(&e.context, context)
                    && e.method == *method
                    && *e.path == *path)
                    .then(|| e.verdict.clone())
            })
        });
        if let Some(verdict) = hit {
            crate::observability::gateway_decision(verdict.result);
            return Ok(verdict);
        }
    }
    let caller = context.map(|c| &c.caller);
    let (verdict, cacheable) = decide(
        state,
        caller,
        method.as_str(),
        path_and_query,
        headers,
        body,
    )?;
    let verdict = Arc::new(verdict);
    if let (true, Some(key), Some(context)) = (cacheable, key, context) {
        VERDICTS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.entries.len() >= VERDICTS_PER_THREAD {
                cache.entries.clear();
            }
            cache.entries.insert(
                key,
                CachedVerdict {
                    rbac: state.rbac.clone(),
                    context: context.clone(),
                    method: method.clone(),
                    path: path.into(),
                    verdict: verdict.clone(),
                },
            );
        });
    }
    Ok(verdict)
}

/// The gateway for a request axum routed to its fallback (a path under a control-plane prefix
/// that no control-plane route serves).
pub async fn proxy(State(state): State<AppState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let secure = req
        .extensions()
        .get::<crate::front::OverTls>()
        .is_some_and(|tls| tls.0);
    proxy_request(&state, state.proxy.as_deref(), req, peer, secure).await
}

/// The gateway: every request no control-plane route serves, straight from the listener.
pub async fn proxy_request(
    state: &AppState,
    proxy: Option<&portcullis_gateway::Proxy>,
    req: Request,
    peer: SocketAddr,
    secure: bool,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = crate::observability::request_id_of(req.headers());
    let wants_login = crate::routes::login::wants_login_page(&req);
    let mut seen = Seen::of(state, req.method(), req.uri(), req.headers(), peer.ip());
    let hop = Hop {
        ip: peer.ip(),
        secure,
    };
    let mut response = match proxy_inner(state, proxy, req, hop, &request_id, &mut seen).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if response.status() == StatusCode::UNAUTHORIZED
        && response.extensions().get::<KeepStatus>().is_none()
        && let Some(target) = wants_login
    {
        response = crate::routes::login::login_page_redirect(&target);
    }
    response
        .headers_mut()
        .insert(crate::observability::REQUEST_ID, request_id.clone());
    finish(
        state,
        &seen,
        response.status().as_u16(),
        started,
        &request_id,
        peer,
    );
    response
}

/// Counts and logs, as a gateway request without a route, a request the front door refused
/// before any route was looked at (a bad `Host`, framing it cannot honour).
pub(crate) fn finish_refused(
    state: &AppState,
    req: &Request,
    status: u16,
    request_id: &HeaderValue,
    peer: SocketAddr,
) {
    let seen = Seen::of(state, req.method(), req.uri(), req.headers(), peer.ip());
    finish(
        state,
        &seen,
        status,
        std::time::Instant::now(),
        request_id,
        peer,
    );
}

/// Counts a gateway request in the metrics and writes its access-log event.
fn finish(
    state: &AppState,
    seen: &Seen,
    status: u16,
    started: std::time::Instant,
    request_id: &HeaderValue,
    peer: SocketAddr,
) {
    let elapsed = started.elapsed();
    crate::observability::gateway_request(seen.template(), seen.backend(state), status, elapsed);
    if state.gateway.access_log {
        // The access log: one event per request (JSON lines with log.format json).
        tracing::info!(
            target: "portcullis::access",
            method = %seen.method,
            path = %seen.path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            route = %seen.template().unwrap_or("(none)"),
            backend = %seen.backend(state).unwrap_or("(none)"),
            user = %seen.user.as_deref().unwrap_or("-"),
            request_id = %request_id.to_str().unwrap_or(""),
            client = %seen.client.unwrap_or(peer.ip()),
            peer = %peer.ip(),
            "gateway request"
        );
    }
}

/// What the access log and the metrics learn while a request is handled.
#[derive(Debug, Default)]
struct Seen {
    method: String,
    path: String,
    /// The decision (its route template names the route in metrics); shared, not copied.
    verdict: Option<Arc<RouteVerdict>>,
    /// The request went to a backend: the route's, or the default one.
    forwarded: bool,
    user: Option<String>,
    /// The client's address: the peer's, or behind trusted proxies the one they name.
    client: Option<IpAddr>,
}

impl Seen {
    /// What the access log learns from the request itself (nothing when it is off: the request
    /// path copies no text for a log that is not written).
    fn of(
        state: &AppState,
        method: &axum::http::Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        peer: IpAddr,
    ) -> Self {
        if !state.gateway.access_log {
            return Self::default();
        }
        Self {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            client: Some(client_of(headers, peer, &state.web.trusted_proxies)),
            ..Self::default()
        }
    }

    /// The matched route's template.
    fn template(&self) -> Option<&str> {
        self.verdict.as_deref()?.template.as_deref()
    }

    /// The backend the request went to.
    fn backend<'a>(&'a self, state: &'a AppState) -> Option<&'a str> {
        if !self.forwarded {
            return None;
        }
        backend_of(self.verdict.as_deref()?, state)
    }
}

async fn proxy_inner(
    state: &AppState,
    proxy: Option<&portcullis_gateway::Proxy>,
    req: Request,
    hop: Hop,
    request_id: &HeaderValue,
    seen: &mut Seen,
) -> Result<Response, ApiError> {
    let Some(proxy) = proxy else {
        return Err(ApiError::NotFound("no such endpoint".into()));
    };
    // A tunnel names a host, not a path a route could decide on.
    if req.method() == axum::http::Method::CONNECT {
        return Err(ApiError::MethodNotAllowed(
            "CONNECT is not forwarded: the gateway proxies requests, not tunnels".into(),
        ));
    }
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.gateway.max_body_bytes) {
        discard_in_background(body);
        return Err(portcullis_gateway::GatewayError::TooLarge {
            limit: state.gateway.max_body_bytes,
        }
        .into());
    }
    let auth = optional_auth(&parts, state).await?;
    // A websocket handshake is a GET, so the cross-site check of changes does not see it; yet
    // the connection acts as the cookie's owner (cross-site websocket hijacking). Browsers
    // always send `Origin` with one.
    if auth.is_some()
        && portcullis_gateway::proxy::is_upgrade(parts.version, &parts.headers)
        && matches!(
            crate::auth::presented(&parts.headers),
            Some(crate::auth::Presented::Cookie(_))
        )
    {
        crate::auth::require_same_site(
            &parts.headers,
            None,
            &state.web.public_url,
            crate::auth::CookieUse::Websocket,
        )?;
    }
    let PolicyBody {
        body,
        json,
        refused,
    } = policy_body(state, &parts, body, declared, auth.as_ref()).await?;
    let admitted = match admit(state, &parts, auth, request_id, (json, refused), seen)? {
        Ok(a) => a,
        Err(refusal) => {
            // An HTTP/1 client still sending a body reads its refusal: the body is taken and
            // thrown away (as the 413's), where hyper would read one buffer of it and close.
            // (HTTP/2 ends the stream alone: nothing is taken in for it.)
            if parts.version < axum::http::Version::HTTP_2
                && !axum::body::HttpBody::is_end_stream(&body)
            {
                discard_in_background(body);
            }
            return Ok(refusal);
        }
    };
    let still_valid = if portcullis_gateway::proxy::is_upgrade(parts.version, &parts.headers) {
        admitted
            .auth
            .as_ref()
            .map(|a| still_valid(state, a, &parts))
    } else {
        None
    };
    // The URI is shared (reference counts), so the request can move on without a copy.
    let uri = parts.uri.clone();
    let signed_in = admitted.auth.is_some();
    let mut forward = admitted.forward(state, &uri, hop, request_id);
    forward.still_valid = still_valid;
    // An HTTP/2 stream holds a place under the connection cap while it forwards.
    if let Some(place) = parts.extensions.get::<Arc<crate::workers::StreamPlace>>()
        && !place.take()
    {
        // Not forwarded: no backend is to blame in the metrics and the access log.
        seen.forwarded = false;
        return Err(ApiError::Overloaded(
            "the server holds as many connections and streams as gateway.max_connections \
             allows; try again shortly"
                .into(),
        ));
    }
    let upstream = axum::http::Request::from_parts(parts, body);
    Ok(backend_answer(
        proxy.forward(upstream, forward).await?,
        signed_in,
    ))
}

/// A backend's answer to a caller. A signed-in caller's 401 is the backend's own refusal, not a
/// missing sign-in: it reaches the browser as it is (with its `WWW-Authenticate`), rather than a
/// login redirect that would end the caller's session and bring it back to the same 401.
fn backend_answer(mut response: Response, signed_in: bool) -> Response {
    if signed_in && response.status() == StatusCode::UNAUTHORIZED {
        response.extensions_mut().insert(KeepStatus);
    }
    response
}

/// Whether a `Content-Type` names JSON: `application/json`, or a structured `+json` type
/// (`application/merge-patch+json`, ...), which backends read as JSON too.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .len()
                .checked_sub(5)
                .and_then(|at| subtype.get(at..))
                .is_some_and(|tail| tail.eq_ignore_ascii_case("+json")))
}

/// The JSON body a Rego policy decides on, read (and kept for the backend) when the request's
/// route has a policy, its method carries a body (POST, PUT, PATCH, DELETE, as Rönd) and it
/// says it is JSON. A policy must see the body the backend will read, so such a body is never
/// forwarded unseen: one that is larger than `policy_body_bytes` (declared, or met while
/// reading a chunked one) is a 413, and one that does not parse is a 400. When no loaded policy
/// reads `input.request.body` at all, or the route's OpenAPI operation sets Rönd's
/// `requestFlow.preventBodyLoad`, bodies stream to the backend unread, of any size. Nor is a
/// body read for a request the checks before the policy refuse (a caller not signed in, a
/// `groups` expression, a permission): the decision then refuses it whatever the body says, so
/// a caller who may not reach the policy cannot make the gateway wait for and hold a body.
async fn policy_body(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: Body,
    declared: Option<u64>,
    auth: Option<&Authenticated>,
) -> Result<PolicyBody, ApiError> {
    let unread = |body, refused| PolicyBody {
        body,
        json: None,
        refused,
    };
    let method = parts.method.as_str();
    let Some(rules) = state.rbac.routes() else {
        return Ok(unread(body, None));
    };
    let may_read = matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
        && declared != Some(0)
        && state.rbac.rego().is_some_and(|r| r.reads_request_body())
        && rules.any_policy();
    let matched = if may_read {
        rules.find(method, parts.uri.path()).ok()
    } else {
        None
    };
    // Rönd's `requestFlow.preventBodyLoad`: the policy decides without it.
    let Some(rule) = matched.map(|m| m.rule).filter(|rule| {
        rule.policy().is_some() && !rule.rond().is_some_and(|flow| flow.prevent_body_load)
    }) else {
        return Ok(unread(body, None));
    };
    if let Some(refusal) =
        refusal_before_policy(state, rules, parts, auth, rule.reads_client_type())
    {
        return Ok(unread(body, Some(refusal)));
    }
    // Where a policy reads JSON bodies, the body's type must be one: with two (two fields, or
    // a list in one), the policy could see no JSON while the backend reads the body as JSON.
    let mut types = parts.headers.get_all(header::CONTENT_TYPE).iter();
    let content_type = types.next().map(|v| v.to_str().unwrap_or_default());
    if types.next().is_some()
        || content_type.is_some_and(|t| t.split(';').next().unwrap_or("").contains(','))
    {
        discard_in_background(body);
        return Err(ApiError::BadRequest(
            "a request body has one Content-Type, and this request names several".into(),
        ));
    }
    if !content_type.is_some_and(is_json_media_type) {
        return Ok(unread(body, None));
    }
    let limit = state.gateway.policy_body_bytes;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "a JSON body on a route with a policy is read by the policy, up to {limit} bytes \
             (gateway.policy_body_kb); this one is larger"
        ))
    };
    if declared.is_some_and(|n| n > limit) {
        discard_in_background(body);
        return Err(too_large());
    }
    let idle = state.gateway.idle_timeout;
    let bytes = match read_body(body, limit, declared, idle).await {
        Ok(bytes) => bytes,
        Err(BodyRead::TooLarge) => return Err(too_large()),
        Err(BodyRead::Stalled) => {
            return Err(ApiError::RequestTimeout(format!(
                "the request body stopped coming: nothing arrived for {idle:?}"
            )));
        }
        Err(BodyRead::Broken) => {
            return Err(ApiError::BadRequest(
                "the request body could not be read to its end".into(),
            ));
        }
    };
    // A chunked request that sent no data has no body, as one saying `Content-Length: 0`.
    if bytes.is_empty() {
        return Ok(unread(Body::from(bytes), None));
    }
    let parsed = serde_json::from_slice::<Value>(&bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "the request body says it is JSON but is not ({e}): a route with a policy decides on it"
        ))
    })?;
    Ok(PolicyBody {
        body: Body::from(bytes),
        json: Some(parsed),
        refused: None,
    })
}

/// A request's body as the gateway goes on with it.
struct PolicyBody {
    /// The body to forward (read whole if a policy reads it).
    body: Body,
    /// The JSON a policy decides on.
    json: Option<Value>,
    /// The refusal of a check before the route's policy, which decided without the body.
    refused: Option<RouteVerdict>,
}

/// Why a body a policy reads could not be read.
enum BodyRead {
    /// Larger than the policy reads.
    TooLarge,
    /// Nothing came for the idle time.
    Stalled,
    /// Garbled framing, or the client went away.
    Broken,
}

/// Reads a body of at most `limit` bytes. Each read has the idle time (nginx's
/// `client_body_timeout`), not the whole body: a client on a slow link sending a large order
/// steadily is not cut off, one that stops is.
async fn read_body(
    mut body: Body,
    limit: u64,
    declared: Option<u64>,
    idle: std::time::Duration,
) -> Result<bytes::Bytes, BodyRead> {
    use http_body_util::BodyExt;
    let mut read = bytes::BytesMut::with_capacity(
        usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0),
    );
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(BodyRead::Stalled),
            Ok(None) => return Ok(read.freeze()),
            Ok(Some(Err(_))) => return Err(BodyRead::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        // Trailers are not data (and are not forwarded).
        if let Ok(data) = frame.into_data() {
            if (read.len() + data.len()) as u64 > limit {
                return Err(BodyRead::TooLarge);
            }
            read.extend_from_slice(&data);
        }
    }
}

/// The refusal of the checks of the request's route that come before its policy, if they
/// refuse it (see [`crate::rbac::Rbac::refusal_before_policy`]).
/// `reads_client_type`: the rule's `groups` expression compares the client type, which a
/// header carries.
fn refusal_before_policy(
    state: &AppState,
    rules: &route_rules::RouteRules,
    parts: &axum::http::request::Parts,
    auth: Option<&Authenticated>,
    reads_client_type: bool,
) -> Option<RouteVerdict> {
    let context = auth.and_then(|a| caller_context(state, a));
    let spec = RequestSpec {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        headers: if reads_client_type {
            header_map(&parts.headers)
        } else {
            Map::new()
        },
        ..RequestSpec::default()
    };
    state
        .rbac
        .refusal_before_policy(rules, context.as_ref().map(|c| &c.caller), &spec)
}

/// The hop a request came over: the peer's address and whether the connection was TLS.
#[derive(Debug, Clone, Copy)]
struct Hop {
    ip: IpAddr,
    secure: bool,
}

/// A request the route rules let through, with what forwarding it needs.
struct Admitted {
    auth: Option<Authenticated>,
    verdict: Arc<RouteVerdict>,
    identity: Option<Identity>,
}

/// The backend an allowed request goes to: its route's, or the default one.
fn backend_of<'a>(verdict: &'a RouteVerdict, state: &'a AppState) -> Option<&'a str> {
    verdict
        .backend
        .as_deref()
        .or(state.gateway.default_backend.as_deref())
}

impl Admitted {
    /// The backend it goes to.
    fn backend<'a>(&'a self, state: &'a AppState) -> Option<&'a str> {
        backend_of(&self.verdict, state)
    }

    /// How it is forwarded.
    fn forward<'a>(
        &'a self,
        state: &'a AppState,
        uri: &'a axum::http::Uri,
        hop: Hop,
        request_id: &'a HeaderValue,
    ) -> Forward<'a> {
        // The hop this request came from: appended to a trusted proxy's X-Forwarded-For, or
        // the whole of it otherwise.
        let peer_trusted = state.web.trusted_proxies.iter().any(|c| c.contains(hop.ip));
        Forward {
            backend: self.backend(state).unwrap_or_default(),
            path: self.verdict.path.as_deref().unwrap_or("/"),
            // Where the query begins was found when the target was parsed.
            query: uri.query(),
            client_ip: hop.ip,
            peer_trusted,
            // The client's scheme: its connection's, or the public URL's when Portcullis sits
            // behind something that terminates TLS.
            proto: if hop.secure || state.web.cookie_secure {
                "https"
            } else {
                "http"
            },
            identity: self.identity.as_ref(),
            aliases: state.gateway.aliases,
            request_id: request_id.to_str().unwrap_or(""),
            still_valid: None,
            underscores_in_headers: state.gateway.underscores_in_headers,
        }
    }
}

/// Decides a request (credentials already read): the refusal to send, or what forwarding it
/// needs. Audits the decision and tells `seen` what the access log and metrics need.
fn admit(
    state: &AppState,
    parts: &axum::http::request::Parts,
    auth: Option<Authenticated>,
    request_id: &HeaderValue,
    (json_body, decided): (Option<Value>, Option<RouteVerdict>),
    seen: &mut Seen,
) -> Result<Result<Admitted, Response>, ApiError> {
    let method = parts.method.as_str();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let context = auth.as_ref().and_then(|a| caller_context(state, a));
    let caller = context.as_ref().map(|c| &c.caller);
    // A refusal already decided (before the policy, without the body) is the decision: made
    // again, a grant landing in between could let through a body no policy read.
    let verdict = match decided {
        Some(verdict) => {
            crate::observability::gateway_decision(verdict.result);
            Arc::new(verdict)
        }
        None => decide_cached(
            state,
            context.as_ref(),
            &parts.method,
            path_and_query,
            &parts.headers,
            json_body,
        )?,
    };
    audit_decision(
        state,
        auth.as_ref(),
        request_id,
        method,
        path_and_query,
        &verdict,
    );
    seen.verdict = Some(verdict.clone());
    if state.gateway.access_log {
        seen.user = caller.map(|c| c.user_ref.clone());
    }
    if verdict.status != 200 {
        return Ok(Err(deny_response(&verdict)));
    }
    let Some(backend) = backend_of(&verdict, state) else {
        return Ok(Err(deny_response(&RouteVerdict {
            status: 404,
            result: "NOT_FOUND",
            body: Some(route_rules::not_found_body(method, path_and_query)),
            ..RouteVerdict::clone(&verdict)
        })));
    };
    seen.forwarded = true;
    let identity = context.as_ref().map(|c| Identity {
        caller: caller_headers(state, c, Recipient::Backend(backend)),
        tool: tool_of(&verdict),
    });
    Ok(Ok(Admitted {
        auth,
        verdict,
        identity,
    }))
}

/// Toolforge's tool: the project the matched route's path names (`{tool}` or `{project}`),
/// when it is spelled as a project name is (a slug). Another segment names no project, and a
/// backend could read it as one: `admin%20` arrives as `admin ` and header parsers trim the
/// space, `ADMIN` meets a case-blind comparison, `a%2Cb` reads as a list; yet none of them
/// matched a route written for `/tools/admin/*`.
fn tool_of(verdict: &RouteVerdict) -> Option<String> {
    verdict
        .params
        .get("tool")
        .or_else(|| verdict.params.get("project"))
        .filter(|name| portcullis_model::names::validate_slug("tool", name).is_ok())
        .cloned()
}

/// The gateway for a request without a body read by the raw HTTP/1.1 lane: decided like any
/// other and forwarded by the raw exchange when its backend allows (by hyper's client
/// otherwise); the answer is written to `client`. Returns whether the client's connection may
/// carry another request.
pub(crate) async fn serve_bodiless<W>(
    front: &crate::front::Front,
    parts: axum::http::request::Parts,
    client: &mut W,
    out: &mut Vec<u8>,
    client_close: bool,
) -> bool
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    let (state, proxy, peer) = (front.state(), front.proxy(), front.peer());
    let started = std::time::Instant::now();
    let request_id = crate::observability::request_id_of(&parts.headers);
    let wants_login =
        crate::routes::login::wants_login_page_of(&parts.method, &parts.uri, &parts.headers);
    let head_request = parts.method == axum::http::Method::HEAD;
    let mut seen = Seen::of(state, &parts.method, &parts.uri, &parts.headers, peer.ip());
    let intercept = wants_login.is_some();
    let outcome = bodiless_inner(
        state,
        proxy,
        parts,
        Hop {
            ip: peer.ip(),
            secure: front.secure(),
        },
        &request_id,
        &mut seen,
        (client, out),
        client_close,
        intercept,
    )
    .await;
    let (status, reusable) = match outcome {
        Ok(Outcome::Sent(portcullis_gateway::proxy::Answered::Sent { status, reusable })) => {
            (status, reusable)
        }
        other => {
            let mut response = match other {
                Ok(Outcome::Response(r)) => r,
                Err(e) => e.into_response(),
                // The backend's 401, left unsent for the login redirect below.
                Ok(Outcome::Sent(_)) => StatusCode::UNAUTHORIZED.into_response(),
            };
            if response.status() == StatusCode::UNAUTHORIZED
                && response.extensions().get::<KeepStatus>().is_none()
                && let Some(target) = &wants_login
            {
                response = crate::routes::login::login_page_redirect(target);
            }
            response
                .headers_mut()
                .insert(crate::observability::REQUEST_ID, request_id.clone());
            let status = response.status().as_u16();
            let reusable =
                crate::http1::write_response(client, response, head_request, client_close, out)
                    .await;
            (status, reusable)
        }
    };
    finish(state, &seen, status, started, &request_id, peer);
    reusable
}

/// What the raw lane's decision and forwarding came to.
enum Outcome {
    /// A response still to be written (a refusal, or an answer by hyper's client).
    Response(Response),
    /// The raw exchange wrote the backend's answer (or left a 401 to the caller).
    Sent(portcullis_gateway::proxy::Answered),
}

#[allow(clippy::too_many_arguments)]
async fn bodiless_inner<W>(
    state: &AppState,
    proxy: Option<&portcullis_gateway::Proxy>,
    parts: axum::http::request::Parts,
    hop: Hop,
    request_id: &HeaderValue,
    seen: &mut Seen,
    (client, out): (&mut W, &mut Vec<u8>),
    client_close: bool,
    intercept_unauthorized: bool,
) -> Result<Outcome, ApiError>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    let Some(proxy) = proxy else {
        return Err(ApiError::NotFound("no such endpoint".into()));
    };
    let auth = optional_auth(&parts, state).await?;
    let admitted = match admit(state, &parts, auth, request_id, (None, None), seen)? {
        Ok(a) => a,
        Err(refusal) => return Ok(Outcome::Response(refusal)),
    };
    let raw = admitted
        .backend(state)
        .is_some_and(|b| proxy.forwards_raw(b));
    let signed_in = admitted.auth.is_some();
    let uri = parts.uri.clone();
    let forward = admitted.forward(state, &uri, hop, request_id);
    if !raw {
        let upstream = axum::http::Request::from_parts(parts, Body::empty());
        let answer = proxy.forward(upstream, forward).await?;
        return Ok(Outcome::Response(backend_answer(answer, signed_in)));
    }
    let request = portcullis_gateway::proxy::BodilessRequest {
        parts,
        forward,
        client_close,
        // A signed-in caller gets the backend's 401 as it is (see `backend_answer`).
        intercept_unauthorized: intercept_unauthorized && !signed_in,
    };
    Ok(Outcome::Sent(
        proxy.forward_bodiless(request, client, out).await?,
    ))
}

/// At most this much of a refused request body is read and thrown away.
const DISCARD_BYTES: u64 = 64 * 1024 * 1024;
/// For at most this long.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and throws away a refused request's body (up to a bound) while the refusal is sent,
/// as nginx's lingering close does: a client still writing its body then reads the 413 instead
/// of meeting a closed connection.
fn discard_in_background(body: Body) {
    use http_body_util::BodyExt;
    tokio::spawn(async move {
        let mut body = body;
        let mut left = DISCARD_BYTES;
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                if n > left {
                    return;
                }
                left -= n;
            }
        })
        .await;
    });
}

/// Forward-auth for nginx `auth_request`, Envoy `ext_authz` and Traefik `forwardAuth`: 200 with
/// the identity headers, 401 or 403; a browser is sent to the login page where the proxy passes
/// the answer on (302), or told where it is (nginx: 401 with `X-Portcullis-Login`).
pub async fn forward_auth(State(state): State<AppState>, req: Request) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    forward_auth_request(&state, req, peer).await
}

/// Forward-auth straight from the listener.
pub async fn forward_auth_request(state: &AppState, req: Request, peer: SocketAddr) -> Response {
    let started = std::time::Instant::now();
    let request_id = crate::observability::request_id_of(req.headers());
    let mut seen = Seen::default();
    let mut response = match forward_auth_inner(state, req, peer.ip(), &request_id, &mut seen).await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(KeepStatus);
    response
        .headers_mut()
        .insert(crate::observability::REQUEST_ID, request_id.clone());
    // Counted and logged like a gateway request (no backend), under the request asked about.
    finish(
        state,
        &seen,
        response.status().as_u16(),
        started,
        &request_id,
        peer,
    );
    response
}

async fn forward_auth_inner(
    state: &AppState,
    req: Request,
    peer: IpAddr,
    request_id: &HeaderValue,
    seen: &mut Seen,
) -> Result<Response, ApiError> {
    let (parts, _body) = req.into_parts();
    let peer_trusted = state.web.trusted_proxies.iter().any(|c| c.contains(peer));
    let own = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/auth");
    *seen = Seen::of(state, &parts.method, &parts.uri, &parts.headers, peer);
    let original =
        forward_auth::original_request(&parts.method, own, "/auth", &parts.headers, peer_trusted)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if state.gateway.access_log {
        seen.method.clone_from(&original.method);
        seen.path = original
            .uri
            .split_once('?')
            .map_or(original.uri.as_str(), |(p, _)| p)
            .to_owned();
    }
    let original_method = axum::http::Method::from_bytes(original.method.as_bytes()).ok();
    // A browser is sent to the login page only from a page load, as on the gateway.
    let wants_html = original_method
        .as_ref()
        .is_some_and(|m| *m == axum::http::Method::GET || *m == axum::http::Method::HEAD)
        && parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    let unauthenticated = |message: &str| -> Response {
        if wants_html && original.flavour != Flavour::Nginx {
            // Relative, so that the browser stays on the origin (and scheme) it is on; Traefik
            // passes it on as it is with `preserveLocationHeader` (see the example).
            return crate::routes::login::login_page_redirect(&original.uri);
        }
        let login = format!(
            "/web-login?redirect={}",
            crate::routes::login::encode_param(&crate::routes::login::checked_redirect(
                Some(&original.uri),
                "/"
            ))
        );
        let mut r = ApiError::Unauthenticated(message.to_owned()).into_response();
        if let Ok(v) = HeaderValue::from_str(&login) {
            r.headers_mut().insert("x-portcullis-login", v);
        }
        r
    };
    let auth = match optional_auth(&parts, state).await {
        Ok(a) => a,
        Err(ApiError::Unauthenticated(m)) => return Ok(unauthenticated(&m)),
        Err(e) => return Err(e),
    };
    // The call itself is a GET whatever the client did: the cross-site check a cookie-borne
    // request that changes something must pass is made on the original method, at the host
    // the client asked for; so is the one a cookie-borne websocket handshake (a GET) must
    // pass, known by its `Sec-WebSocket-Key`, an end-to-end header the proxies pass on where
    // they drop `Upgrade`.
    let cookie_use = if !original_method
        .as_ref()
        .is_some_and(axum::http::Method::is_safe)
    {
        Some(crate::auth::CookieUse::Change)
    } else if parts.headers.contains_key(header::SEC_WEBSOCKET_KEY)
        || portcullis_gateway::proxy::names_websocket(&parts.headers)
    {
        Some(crate::auth::CookieUse::Websocket)
    } else {
        None
    };
    if let Some(cookie_use) = cookie_use
        && auth.is_some()
        && matches!(
            crate::auth::presented(&parts.headers),
            Some(crate::auth::Presented::Cookie(_))
        )
    {
        crate::auth::require_same_site(
            &parts.headers,
            original.host.as_deref(),
            &state.web.public_url,
            cookie_use,
        )?;
    }
    let context = auth.as_ref().and_then(|a| caller_context(state, a));
    if state.rbac.routes().is_some() {
        // The proxy forwards the target as the client sent it: one it could read otherwise
        // than the decision would is refused, before the verdict cache (which the gateway's
        // own, normalised, requests share) is asked.
        let named = portcullis_authz::route_match::check_named_uri(&original.uri);
        let verdict = match (
            named,
            axum::http::Method::from_bytes(original.method.as_bytes()),
        ) {
            (Err(e), _) => {
                let verdict = crate::rbac::routes::RouteVerdict::bad_path(&e);
                crate::observability::gateway_decision(verdict.result);
                Arc::new(verdict)
            }
            (Ok(()), Ok(method)) => decide_cached(
                state,
                context.as_ref(),
                &method,
                &original.uri,
                &parts.headers,
                None,
            )?,
            // Not a method token: decided as it is, without the cache.
            (Ok(()), Err(_)) => Arc::new(
                decide(
                    state,
                    context.as_ref().map(|c| &c.caller),
                    &original.method,
                    &original.uri,
                    &parts.headers,
                    None,
                )?
                .0,
            ),
        };
        audit_decision(
            state,
            auth.as_ref(),
            request_id,
            &original.method,
            &original.uri,
            &verdict,
        );
        seen.verdict = Some(verdict.clone());
        if state.gateway.access_log {
            seen.user = context.as_ref().map(|c| c.caller.user_ref.clone());
        }
        match verdict.status {
            200 => {}
            401 => return Ok(unauthenticated("this route needs a signed-in caller")),
            // nginx's auth_request turns anything but 2xx, 401 and 403 into a 500: an unknown
            // route is a refusal there.
            _ if original.flavour == Flavour::Nginx => {
                let mut body = verdict.body.clone().unwrap_or_else(|| json!({}));
                body["statusCode"] = json!(403);
                return Ok((StatusCode::FORBIDDEN, axum::Json(body)).into_response());
            }
            _ => return Ok(deny_response(&verdict)),
        }
    } else if auth.is_none() {
        return Ok(unauthenticated("missing credentials"));
    } else if context.is_none() {
        // A credential whose user is an active member of no org opens nothing.
        return Ok(unauthenticated(
            "the credential's user is not an active member of any org",
        ));
    }
    let mut response = StatusCode::OK.into_response();
    let identity = context.as_ref().map(|c| {
        // The route's backend when it names one; otherwise the application the proxy
        // serves at the host the request was for.
        let recipient = match seen.verdict.as_ref().and_then(|v| v.backend.as_deref()) {
            Some(backend) => Recipient::Backend(backend),
            None => Recipient::Host(
                original
                    .host
                    .as_deref()
                    .or_else(|| {
                        parts
                            .headers
                            .get(header::HOST)
                            .and_then(|h| h.to_str().ok())
                    })
                    .unwrap_or(""),
            ),
        };
        Identity {
            caller: caller_headers(state, c, recipient),
            tool: seen.verdict.as_deref().and_then(tool_of),
        }
    });
    *response.headers_mut() =
        portcullis_gateway::identity::answer(identity.as_ref(), state.gateway.aliases);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_reads_the_query_as_the_backend_will() {
        let q = query_map(Some("%66orce=true&tag=a+b&tag=c%26d&empty&x=%2B1&bad=%zz"));
        assert_eq!(q["force"], json!(["true"]));
        assert_eq!(q["tag"], json!(["a b", "c&d"]));
        assert_eq!(q["empty"], json!([""]));
        assert_eq!(q["x"], json!(["+1"]));
        assert_eq!(q["bad"], json!(["%zz"]));
        assert!(query_map(None).is_empty());
    }
}
