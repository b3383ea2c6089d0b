//! The gateway: an HTTPS server (axum on rustls) inside the operator, the only door for
//! workers and agents. Agents register with a Group Key and heartbeat with a per-device
//! token; worker pods present projected service-account tokens checked by TokenReview.
//! Secrets are stored hashed; no credential is ever logged. Open connections are bounded,
//! headers must arrive within a timeout, lookups of unknown credentials are rationed per
//! client address, and authenticated callers are rate-limited per caller.

pub mod auth;
pub mod benchmark;
pub mod checks;
pub mod conn;
pub mod ledger;
pub mod metrics;
pub mod proofs;
pub mod protocol;
pub mod routes;
pub mod secrets;
pub mod tls;
pub mod work;

use crate::api::Device;
use crate::labels;
use auth::Authenticator;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client};
use metrics::{GatewayMetrics, RouteLabels};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Instant;

/// Gateway settings, as flags of `zop-operator run`.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    /// Namespace of Group Keys, device tokens and the TLS Secret (the operator's).
    #[arg(skip)]
    pub namespace: String,
    /// Address the gateway listens on.
    #[arg(
        long = "gateway-bind",
        env = "ZOP_GATEWAY_BIND",
        default_value = "0.0.0.0:8443"
    )]
    pub bind: SocketAddr,
    /// The kubernetes.io/tls Secret with the certificate; generated when absent.
    #[arg(long = "gateway-tls-secret", default_value = "zop-gateway-tls")]
    pub tls_secret: String,
    /// DNS names for a generated certificate (repeatable).
    #[arg(long = "gateway-dns-name")]
    pub dns_names: Vec<String>,
    /// Audience worker pods' projected tokens must carry.
    #[arg(long = "gateway-audience", default_value = "zoptoken-gateway")]
    pub audience: String,
    /// Seconds between agent heartbeats.
    #[arg(long = "heartbeat-seconds", default_value_t = 10)]
    pub heartbeat_seconds: u32,
    /// Requests per second allowed per authenticated caller.
    #[arg(long = "gateway-rate", default_value_t = 5)]
    pub rate_per_second: u32,
    /// Burst allowed per authenticated caller.
    #[arg(long = "gateway-burst", default_value_t = 20)]
    pub burst: u32,
    /// Credential lookups (TokenReviews, token Secret reads, registrations) per second
    /// per client address, before anything about the caller is known.
    #[arg(long = "gateway-lookup-rate", default_value_t = 20)]
    pub lookup_rate: u32,
    /// Burst of credential lookups per client address.
    #[arg(long = "gateway-lookup-burst", default_value_t = 100)]
    pub lookup_burst: u32,
    /// Most connections open at once; more are closed on arrival.
    #[arg(long = "gateway-max-connections", default_value_t = 4096)]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's headers.
    #[arg(long = "gateway-header-timeout-seconds", default_value_t = 10)]
    pub header_timeout_seconds: u64,
    /// Largest request body in bytes.
    #[arg(long = "gateway-body-limit", default_value_t = 64 * 1024)]
    pub body_limit: usize,
    /// Largest body of challenge answers in bytes, read only after the caller is
    /// authenticated (256 rows of 8192 values in base64 need about 11 MiB).
    #[arg(long = "gateway-proof-body-limit", default_value_t = 16 * 1024 * 1024)]
    pub proof_body_limit: usize,
    /// Challenge answers read and checked at once; more wait their turn. Bounds the
    /// memory (this many bodies) and the CPU the checks take.
    #[arg(long = "gateway-proof-concurrency", default_value_t = 4)]
    pub proof_concurrency: usize,
}

/// What the handlers share.
pub struct GatewayState {
    /// API client.
    pub client: Client,
    /// Settings.
    pub config: GatewayConfig,
    /// Group Key Secrets.
    pub keys: Store<Secret>,
    /// Devices.
    pub devices: Store<Device>,
    /// Caller authentication.
    pub auth: Authenticator,
    /// Per-caller rate limits, keyed by [`auth::Principal::limit_key`].
    pub limiter: DefaultKeyedRateLimiter<String>,
    /// Metrics.
    pub metrics: GatewayMetrics,
    /// Devices registered lately (by name: Group Key name, when), held while a
    /// registration runs, so a key's quota holds before the Device cache shows them.
    pub registrations: tokio::sync::Mutex<std::collections::HashMap<String, (String, Instant)>>,
    /// Each task's slicing and spec, by task UID: results are weighed and challenged
    /// with them.
    pub tasks: std::sync::Mutex<std::collections::HashMap<String, Arc<work::TaskFacts>>>,
    /// Verdicts' writes: reputation and evidence.
    pub verifier: Arc<crate::verifier::Verifier>,
    /// Permits to read and check challenge answers (`--gateway-proof-concurrency`).
    pub proof_permits: tokio::sync::Semaphore,
}

impl std::fmt::Debug for GatewayState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GatewayState {
    /// State over the given stores.
    pub fn new(
        client: Client,
        config: GatewayConfig,
        keys: Store<Secret>,
        tokens: Store<Secret>,
        devices: Store<Device>,
        metrics: GatewayMetrics,
        verifier: Arc<crate::verifier::Verifier>,
    ) -> Self {
        let proof_permits = tokio::sync::Semaphore::new(config.proof_concurrency.max(1));
        let rate = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        let mut auth = Authenticator::new(
            client.clone(),
            config.namespace.clone(),
            config.audience.clone(),
            tokens,
            auth::LookupLimits {
                per_second: config.lookup_rate,
                burst: config.lookup_burst,
            },
        );
        auth.lookup_count = metrics.auth_lookups.clone();
        Self {
            auth,
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            client,
            config,
            keys,
            devices,
            metrics,
            registrations: Default::default(),
            tasks: Default::default(),
            verifier,
            proof_permits,
        }
    }
}

/// The router.
pub fn router(state: Arc<GatewayState>) -> Router {
    Router::new()
        .route(protocol::REGISTER, post(routes::register))
        .route(protocol::HEARTBEAT, post(routes::heartbeat))
        .route("/v1/whoami", get(routes::whoami))
        .route(protocol::WORK, get(work::work))
        .route(protocol::RESULTS, post(work::results))
        .route(
            protocol::PROOFS,
            post(proofs::proofs).layer(DefaultBodyLimit::disable()),
        )
        .route(protocol::LEDGER, get(ledger::account).post(ledger::request))
        .route(protocol::BENCHMARK, post(benchmark::report))
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), timed))
        .layer(axum::middleware::from_fn(client_addr))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .with_state(state)
}

/// The caller's IP address, the key of the lookup ration.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

/// Puts the peer's [`ClientAddr`] in the request (unspecified when the server was not
/// given connection info, as in-process tests are not).
async fn client_addr(mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    req.extensions_mut().insert(ClientAddr(ip));
    next.run(req).await
}

async fn timed(State(state): State<Arc<GatewayState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .durations
        .get_or_create(&RouteLabels { route })
        .observe(start.elapsed().as_secs_f64());
    resp
}

/// Serves `pem` (from [`tls::load_or_create`]) until `shutdown` resolves, over a shared
/// Device cache; marks `ready` once it listens.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    client: Client,
    config: GatewayConfig,
    metrics: GatewayMetrics,
    verifier: Arc<crate::verifier::Verifier>,
    pem: tls::CertPem,
    devices: Store<Device>,
    ready: crate::metrics::Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    let keys = crate::controller::spawn_store(
        secrets.clone(),
        watcher::Config::default().labels(&format!("{}=true", labels::GROUP_KEY)),
    );
    let tokens =
        crate::controller::spawn_store(secrets, watcher::Config::default().labels(labels::DEVICE));
    let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls::server_config(&pem)?);
    tracing::debug!("gateway: waiting for the Group Key and token caches");
    let _ = keys.wait_until_ready().await;
    let _ = tokens.wait_until_ready().await;
    // Registration checks quotas and plausibility against the Device cache.
    tracing::debug!("gateway: waiting for the Device cache");
    let _ = devices.wait_until_ready().await;
    let bind = config.bind;
    let state = Arc::new(GatewayState::new(
        client, config, keys, tokens, devices, metrics, verifier,
    ));
    let app = router(state.clone());
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
    });
    let listening = handle.clone();
    tokio::spawn(async move {
        if listening.listening().await.is_some() {
            ready.set();
        }
    });
    // Forget idle per-credential limiters so memory follows active callers.
    let limiter_state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            limiter_state.limiter.retain_recent();
            limiter_state.auth.retain_recent();
        }
    });
    tracing::info!(%bind, "gateway listening (HTTPS)");
    let max_connections = state.config.max_connections;
    let header_timeout = std::time::Duration::from_secs(state.config.header_timeout_seconds.max(1));
    let mut server = axum_server::bind_rustls(bind, rustls)
        .map(|tls| conn::ConnLimit::new(tls, max_connections))
        .first_request_timeout(header_timeout)
        .handle(handle);
    server
        .http_builder()
        .http1()
        .header_read_timeout(header_timeout);
    server
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(|e| anyhow::anyhow!("gateway on {bind}: {e}: is the port in use?"))
}

#[cfg(test)]
mod tests;
