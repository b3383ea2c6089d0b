//! Who is calling: a device (its `zdt_` token, checked against the hashed token Secret)
//! or a worker Pod the operator created (its projected service-account token, checked by
//! the API server through TokenReview with the gateway's audience). A pod token counts
//! only when it is bound to a Pod of the `zop-worker` ServiceAccount in the operator's
//! namespace, where no tenant can create one; any other service-account token is refused.
//!
//! Lookups cost the API server a TokenReview or a Secret read, so they are rationed: a
//! token that failed is refused from memory for a while, and lookups are limited per
//! client address before anything about the caller is known.

use super::protocol::ApiError;
use super::secrets::{self, TOKEN_PREFIX};
use crate::tasks::worker_pod::SERVICE_ACCOUNT;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A device holding its token.
    Device(String),
    /// A worker Pod in the operator's namespace, running as `zop-worker`.
    WorkerPod {
        /// Its name: the name of the assignment it was created for.
        pod: String,
        /// Its UID, which the assignment record must carry.
        uid: String,
        /// The node it runs on, when the token carries it.
        node: Option<String>,
    },
}

impl Principal {
    /// The key of its per-caller rate limit.
    pub fn limit_key(&self) -> String {
        match self {
            Self::Device(d) => format!("device/{d}"),
            Self::WorkerPod { uid, .. } => format!("pod/{uid}"),
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 8192)
}

/// The device a `zdt_<device>_<random>` token names.
pub fn token_device(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (device, random) = rest.rsplit_once('_')?;
    (!device.is_empty() && random.len() == 64).then_some(device)
}

/// How long a successful TokenReview is trusted.
const REVIEW_TTL: Duration = Duration::from_secs(60);
/// How long a token that failed is refused without a lookup.
const FAILURE_TTL: Duration = Duration::from_secs(30);
/// Most tokens each cache remembers; past it the cache starts over, so memory stays
/// bounded whatever a caller sends.
const CACHE_ENTRIES: usize = 16_384;

/// How lookups are rationed.
#[derive(Debug, Clone, Copy)]
pub struct LookupLimits {
    /// Lookups per second per client address.
    pub per_second: u32,
    /// Burst of lookups per client address.
    pub burst: u32,
}

/// Authenticates callers.
pub struct Authenticator {
    client: Client,
    namespace: String,
    audience: String,
    tokens: Store<Secret>,
    reviews: Mutex<HashMap<String, (Principal, Instant)>>,
    failures: Mutex<HashMap<String, Instant>>,
    lookups: DefaultKeyedRateLimiter<IpAddr>,
    /// Lookups made (TokenReviews and Secret reads), for the metric.
    pub lookup_count: prometheus_client::metrics::counter::Counter,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn refused(message: &str) -> ApiError {
    ApiError::unauthorized("Unauthorized", message)
}

impl Authenticator {
    /// An authenticator over the token Secret store.
    pub fn new(
        client: Client,
        namespace: String,
        audience: String,
        tokens: Store<Secret>,
        limits: LookupLimits,
    ) -> Self {
        let rate = NonZeroU32::new(limits.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
        Self {
            client,
            namespace,
            audience,
            tokens,
            reviews: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            lookups: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            lookup_count: Default::default(),
        }
    }

    /// Forgets idle per-address limiters.
    pub fn retain_recent(&self) {
        self.lookups.retain_recent();
    }

    /// Admits one lookup for a caller at `addr`, or refuses it (429).
    pub fn admit_lookup(&self, addr: IpAddr) -> Result<(), ApiError> {
        self.lookups.check_key(&addr).map_err(|_| ApiError {
            status: 429,
            reason: "RateLimited",
            message: "too many unauthenticated requests from this address; slow down".into(),
        })
    }

    /// Authenticates `token` from a caller at `addr`.
    pub async fn authenticate(&self, token: &str, addr: IpAddr) -> Result<Principal, ApiError> {
        let key = secrets::hash(token);
        if recent(&self.failures, &key, FAILURE_TTL) {
            return Err(refused("the token was refused recently"));
        }
        let outcome = if token.starts_with(TOKEN_PREFIX) {
            self.device(token, addr).await
        } else if token.starts_with(secrets::KEY_PREFIX) {
            return Err(refused(
                "a Group Key only registers and asks the ledger; use the device token",
            ));
        } else {
            self.review(token, &key, addr).await
        };
        if let Err(e) = &outcome
            && e.status == 401
            && let Ok(mut failures) = self.failures.lock()
        {
            if failures.len() >= CACHE_ENTRIES {
                failures.retain(|_, at| at.elapsed() < FAILURE_TTL);
                if failures.len() >= CACHE_ENTRIES {
                    failures.clear();
                }
            }
            failures.insert(key, Instant::now());
        }
        outcome
    }

    async fn device(&self, token: &str, addr: IpAddr) -> Result<Principal, ApiError> {
        let device = token_device(token).ok_or_else(|| refused("malformed device token"))?;
        let name = secrets::token_secret_name(device);
        let matches = |s: Option<&Secret>| {
            s.and_then(secrets::parse_token_secret)
                .is_some_and(|(d, hash)| d == device && secrets::token_matches(&hash, token))
        };
        let cached = self
            .tokens
            .get(&ObjectRef::new(&name).within(&self.namespace));
        if matches(cached.as_deref()) {
            return Ok(Principal::Device(device.to_string()));
        }
        // A token issued a moment ago may not be in the store yet, or the store may hold
        // a rotated token's hash: ask the API server, within the lookup ration.
        self.admit_lookup(addr)?;
        self.lookup_count.inc();
        let fresh = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(&name)
            .await
            .map_err(|_| ApiError::internal())?;
        if matches(fresh.as_ref()) {
            Ok(Principal::Device(device.to_string()))
        } else {
            Err(refused("unknown or rotated device token"))
        }
    }

    async fn review(&self, token: &str, key: &str, addr: IpAddr) -> Result<Principal, ApiError> {
        if let Ok(cache) = self.reviews.lock()
            && let Some((p, at)) = cache.get(key)
            && at.elapsed() < REVIEW_TTL
        {
            return Ok(p.clone());
        }
        self.admit_lookup(addr)?;
        self.lookup_count.inc();
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..Default::default()
        };
        let out = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|_| ApiError::internal())?;
        let principal = worker_pod(
            out.status.unwrap_or_default(),
            &self.audience,
            &self.namespace,
        )
        .map_err(refused)?;
        if let Ok(mut cache) = self.reviews.lock() {
            cache.retain(|_, (_, at)| at.elapsed() < REVIEW_TTL);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key.to_string(), (principal.clone(), Instant::now()));
        }
        Ok(principal)
    }
}

fn recent(cache: &Mutex<HashMap<String, Instant>>, key: &str, ttl: Duration) -> bool {
    cache
        .lock()
        .ok()
        .and_then(|c| c.get(key).copied())
        .is_some_and(|at| at.elapsed() < ttl)
}

/// The worker Pod a TokenReview's status proves, or why it proves none: the token must
/// be authenticated for `audience`, belong to ServiceAccount `zop-worker` of `namespace`
/// (the operator's), and be bound to a Pod (name and UID). The API server refuses a bound
/// token whose Pod is gone or was recreated, so the Pod exists with that UID.
pub fn worker_pod(
    status: k8s_openapi::api::authentication::v1::TokenReviewStatus,
    audience: &str,
    namespace: &str,
) -> Result<Principal, &'static str> {
    let audience_ok = status
        .audiences
        .as_ref()
        .is_some_and(|a| a.iter().any(|x| x == audience));
    if !status.authenticated.unwrap_or(false) || !audience_ok {
        return Err("the token is not valid for this gateway");
    }
    let user = status.user.unwrap_or_default();
    let expected = format!("system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}");
    if user.username.as_deref() != Some(expected.as_str()) {
        return Err("only the operator's worker pods may use a service-account token");
    }
    let extra = user.extra.unwrap_or_default();
    let first = |k: &str| {
        extra
            .get(k)
            .and_then(|v| v.first().cloned())
            .filter(|v| !v.is_empty())
    };
    match (
        first("authentication.kubernetes.io/pod-name"),
        first("authentication.kubernetes.io/pod-uid"),
    ) {
        (Some(pod), Some(uid)) => Ok(Principal::WorkerPod {
            pod,
            uid,
            node: first("authentication.kubernetes.io/node-name"),
        }),
        _ => Err("the token is not bound to a pod"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_token_names_its_device() {
        let t = format!("zdt_agent-alice-box-1_{}", "a".repeat(64));
        assert_eq!(token_device(&t), Some("agent-alice-box-1"));
        assert_eq!(token_device("zdt_nodevice"), None);
        assert_eq!(token_device(&format!("zdt__{}", "a".repeat(64))), None);
        assert_eq!(token_device("zgk_x"), None);
    }

    fn review(
        username: &str,
        extra: &[(&str, &str)],
    ) -> k8s_openapi::api::authentication::v1::TokenReviewStatus {
        use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
        TokenReviewStatus {
            authenticated: Some(true),
            audiences: Some(vec!["zoptoken-gateway".into()]),
            user: Some(UserInfo {
                username: Some(username.into()),
                extra: Some(
                    extra
                        .iter()
                        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const BOUND: [(&str, &str); 2] = [
        ("authentication.kubernetes.io/pod-name", "zop-abc-0-0"),
        ("authentication.kubernetes.io/pod-uid", "u-1"),
    ];

    #[test]
    fn only_bound_worker_pod_tokens_of_the_operator_namespace_are_accepted() {
        let ok = review("system:serviceaccount:zoptoken-system:zop-worker", &BOUND);
        assert_eq!(
            worker_pod(ok.clone(), "zoptoken-gateway", "zoptoken-system"),
            Ok(Principal::WorkerPod {
                pod: "zop-abc-0-0".into(),
                uid: "u-1".into(),
                node: None
            })
        );
        // A fresh ServiceAccount of a tenant, or a tenant's own zop-worker.
        for user in [
            "system:serviceaccount:team-a:default",
            "system:serviceaccount:team-a:zop-worker",
            "system:serviceaccount:zoptoken-system:default",
            "alice",
        ] {
            assert!(
                worker_pod(review(user, &BOUND), "zoptoken-gateway", "zoptoken-system").is_err(),
                "{user}"
            );
        }
        // Not bound to a pod, or for another audience, or not authenticated.
        let unbound = review("system:serviceaccount:zoptoken-system:zop-worker", &[]);
        assert!(worker_pod(unbound, "zoptoken-gateway", "zoptoken-system").is_err());
        assert!(worker_pod(ok.clone(), "other", "zoptoken-system").is_err());
        let mut no = ok;
        no.authenticated = Some(false);
        assert!(worker_pod(no, "zoptoken-gateway", "zoptoken-system").is_err());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h), None);
    }
}
