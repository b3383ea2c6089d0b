//! Who is calling: a device (its `zdt_` token, checked against the hashed token Secret)
//! or an in-cluster worker pod (its projected service-account token, checked by the API
//! server through TokenReview with the gateway's audience).

use super::protocol::ApiError;
use super::secrets::{self, TOKEN_PREFIX};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A device holding its token.
    Device(String),
    /// A worker pod.
    WorkerPod {
        /// Its namespace.
        namespace: String,
        /// Its service account.
        service_account: String,
        /// Its name, when the token is bound to the pod.
        pod: Option<String>,
        /// The node it runs on, when the token carries it.
        node: Option<String>,
    },
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

/// Authenticates callers.
pub struct Authenticator {
    client: Client,
    namespace: String,
    audience: String,
    tokens: Store<Secret>,
    reviews: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over the token Secret store.
    pub fn new(client: Client, namespace: String, audience: String, tokens: Store<Secret>) -> Self {
        Self {
            client,
            namespace,
            audience,
            tokens,
            reviews: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates `token`.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        if token.starts_with(TOKEN_PREFIX) {
            self.device(token).await
        } else if token.starts_with(secrets::KEY_PREFIX) {
            Err(ApiError::unauthorized(
                "Unauthorized",
                "a Group Key only registers; use the device token",
            ))
        } else {
            self.review(token).await
        }
    }

    async fn device(&self, token: &str) -> Result<Principal, ApiError> {
        let device = token_device(token)
            .ok_or_else(|| ApiError::unauthorized("Unauthorized", "malformed device token"))?;
        let name = secrets::token_secret_name(device);
        let cached = self
            .tokens
            .get(&ObjectRef::new(&name).within(&self.namespace));
        // A token issued a moment ago may not be in the store yet: ask the API server.
        let secret = match cached {
            Some(s) => Some((*s).clone()),
            None => Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
                .get_opt(&name)
                .await
                .map_err(|_| ApiError::internal())?,
        };
        let valid = secret
            .as_ref()
            .and_then(secrets::parse_token_secret)
            .is_some_and(|(d, hash)| d == device && secrets::token_matches(&hash, token));
        if !valid {
            // The store may hold the hash of a rotated token; confirm before refusing.
            let fresh = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
                .get_opt(&name)
                .await
                .map_err(|_| ApiError::internal())?;
            let ok = fresh
                .as_ref()
                .and_then(secrets::parse_token_secret)
                .is_some_and(|(d, hash)| d == device && secrets::token_matches(&hash, token));
            if !ok {
                return Err(ApiError::unauthorized(
                    "Unauthorized",
                    "unknown or rotated device token",
                ));
            }
        }
        Ok(Principal::Device(device.to_string()))
    }

    async fn review(&self, token: &str) -> Result<Principal, ApiError> {
        let key = secrets::hash(token);
        if let Ok(cache) = self.reviews.lock()
            && let Some((p, at)) = cache.get(&key)
            && at.elapsed() < REVIEW_TTL
        {
            return Ok(p.clone());
        }
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
        let status = out.status.unwrap_or_default();
        let audience_ok = status
            .audiences
            .as_ref()
            .is_some_and(|a| a.contains(&self.audience));
        let user = status.user.unwrap_or_default();
        let username = user.username.unwrap_or_default();
        let (true, true, Some(rest)) = (
            status.authenticated.unwrap_or(false),
            audience_ok,
            username.strip_prefix("system:serviceaccount:"),
        ) else {
            return Err(ApiError::unauthorized(
                "Unauthorized",
                "the token is not a service-account token for this gateway",
            ));
        };
        let (namespace, sa) = rest.split_once(':').unwrap_or((rest, ""));
        let extra = user.extra.unwrap_or_default();
        let first = |k: &str| extra.get(k).and_then(|v| v.first().cloned());
        let principal = Principal::WorkerPod {
            namespace: namespace.into(),
            service_account: sa.into(),
            pod: first("authentication.kubernetes.io/pod-name"),
            node: first("authentication.kubernetes.io/node-name"),
        };
        if let Ok(mut cache) = self.reviews.lock() {
            cache.retain(|_, (_, at)| at.elapsed() < REVIEW_TTL);
            cache.insert(key, (principal.clone(), Instant::now()));
        }
        Ok(principal)
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
