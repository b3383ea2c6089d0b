//! The worker's HTTPS client for the gateway: registration with a Group Key,
//! heartbeats with a device token, work and results with either, over rustls trusting
//! only the gateway's CA. Owns the credential each request carries ([`Bearer`]) and
//! turning the gateway's JSON errors into [`GatewayError`].

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zop_api::protocol::{
    self, BenchmarkReport, BenchmarkVerdict, ErrorBody, HeartbeatRequest, HeartbeatResponse,
    LedgerAccount, LedgerRequest, LedgerRequestState, ProofsRequest, ProofsResponse,
    RegisterRequest, RegisterResponse, ResultsRequest, ResultsResponse, Work,
};

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway answered with an error body.
    #[error("gateway refused ({status}): {reason}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The stable reason, e.g. `InvalidGroupKey`.
        reason: String,
        /// Its message.
        message: String,
    },
    /// The gateway could not be reached or answered garbage.
    #[error("gateway unreachable: {0}")]
    Transport(#[from] reqwest::Error),
    /// The token file could not be read.
    #[error("reading the token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl GatewayError {
    /// Whether retrying the same request may succeed (transport errors, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Refused { status, .. } => *status == 429 || *status >= 500,
            // The kubelet replaces the token atomically: a failed read stays failed.
            Self::TokenFile { .. } => false,
        }
    }

    /// Whether the credential itself was refused (401/403): retrying cannot help.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// The credential a request carries.
#[derive(Debug, Clone, Copy)]
pub enum Bearer<'a> {
    /// A token held in memory: a Group Key or an agent's device token.
    Token(&'a str),
    /// A projected service-account token, read afresh for every request: the kubelet
    /// rotates the file in place long before an assignment may end.
    File(&'a Path),
}

impl<'a> Bearer<'a> {
    /// The token to send now.
    pub fn token(self) -> Result<Cow<'a, str>, GatewayError> {
        match self {
            Self::Token(t) => Ok(Cow::Borrowed(t)),
            Self::File(path) => std::fs::read_to_string(path)
                .map(|t| Cow::Owned(t.trim().to_string()))
                .map_err(|source| GatewayError::TokenFile {
                    path: path.to_path_buf(),
                    source,
                }),
        }
    }
}

/// A client of one gateway.
#[derive(Debug, Clone)]
pub struct GatewayClient {
    base: String,
    http: reqwest::Client,
}

impl GatewayClient {
    /// A client for `base` (`https://host:port`) trusting only the PEM CA in `ca_pem`.
    /// Every request is bounded in time, so a hung gateway costs a retry, not the worker.
    pub fn new(base: &str, ca_pem: &[u8]) -> anyhow::Result<Self> {
        let ca = reqwest::Certificate::from_pem(ca_pem)
            .map_err(|e| anyhow::anyhow!("--ca-cert is not a PEM certificate: {e}"))?;
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .https_only(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// Registers with a Group Key; the returned token is shown this once.
    pub async fn register(
        &self,
        group_key: &str,
        req: &RegisterRequest,
    ) -> Result<RegisterResponse, GatewayError> {
        self.post(protocol::REGISTER, Bearer::Token(group_key), req)
            .await
    }

    /// Sends a heartbeat with the device token.
    pub async fn heartbeat(
        &self,
        token: &str,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, GatewayError> {
        self.post(protocol::HEARTBEAT, Bearer::Token(token), req)
            .await
    }

    /// The named assignment, or for an agent (`None`) its device's next one; `None`
    /// when there is nothing to do.
    pub async fn work(
        &self,
        bearer: Bearer<'_>,
        assignment: Option<&str>,
    ) -> Result<Option<Work>, GatewayError> {
        let mut req = self
            .http
            .get(format!("{}{}", self.base, protocol::WORK))
            .bearer_auth(bearer.token()?);
        if let Some(a) = assignment {
            req = req.query(&[("assignment", a)]);
        }
        let resp = req.send().await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        decode(resp).await.map(Some)
    }

    /// Reports fragment results.
    pub async fn results(
        &self,
        bearer: Bearer<'_>,
        req: &ResultsRequest,
    ) -> Result<ResultsResponse, GatewayError> {
        self.post(protocol::RESULTS, bearer, req).await
    }

    /// Answers a committed result's challenges.
    pub async fn proofs(
        &self,
        bearer: Bearer<'_>,
        req: &ProofsRequest,
    ) -> Result<ProofsResponse, GatewayError> {
        self.post(protocol::PROOFS, bearer, req).await
    }

    /// Reports a node benchmark with the benchmark Pod's token.
    pub async fn benchmark(
        &self,
        bearer: Bearer<'_>,
        req: &BenchmarkReport,
    ) -> Result<BenchmarkVerdict, GatewayError> {
        self.post(protocol::BENCHMARK, bearer, req).await
    }

    /// The Group Key's provider's account.
    pub async fn ledger_account(&self, group_key: &str) -> Result<LedgerAccount, GatewayError> {
        let resp = self
            .http
            .get(format!("{}{}", self.base, protocol::LEDGER))
            .bearer_auth(group_key)
            .send()
            .await?;
        decode(resp).await
    }

    /// Asks the ledger for a withdrawal, a bond or an unbond for the Group Key's provider.
    pub async fn ledger_request(
        &self,
        group_key: &str,
        req: &LedgerRequest,
    ) -> Result<LedgerRequestState, GatewayError> {
        self.post(protocol::LEDGER, Bearer::Token(group_key), req)
            .await
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        bearer: Bearer<'_>,
        body: &B,
    ) -> Result<R, GatewayError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer.token()?)
            .json(body)
            .send()
            .await?;
        decode(resp).await
    }
}

/// A success body as `R`, or the refusal the error body describes.
async fn decode<R: DeserializeOwned>(resp: reqwest::Response) -> Result<R, GatewayError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp.json().await?);
    }
    let bytes = resp.bytes().await?;
    Err(refusal(status, &bytes))
}

/// The error a non-success response stands for; a body that is not the gateway's JSON
/// error still yields the status, with reason `Unknown`.
pub fn refusal(status: StatusCode, body: &[u8]) -> GatewayError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => GatewayError::Refused {
            status: status.as_u16(),
            reason: e.reason,
            message: e.message,
        },
        Err(_) => GatewayError::Refused {
            status: status.as_u16(),
            reason: "Unknown".into(),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_keep_their_reason_and_garbage_keeps_the_status() {
        let e = refusal(
            StatusCode::UNAUTHORIZED,
            br#"{"reason":"KeyRevoked","message":"the Group Key is not valid"}"#,
        );
        assert!(e.is_auth());
        assert!(e.to_string().contains("KeyRevoked"));
        let e = refusal(StatusCode::BAD_GATEWAY, b"<html>proxy</html>");
        assert!(!e.is_auth());
        assert!(
            matches!(e, GatewayError::Refused { status: 502, ref reason, .. } if reason == "Unknown")
        );
        assert!(matches!(
            refusal(StatusCode::FORBIDDEN, b""),
            GatewayError::Refused { status: 403, .. }
        ));
    }

    #[test]
    fn a_token_file_is_read_again_for_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let bearer = Bearer::File(&path);
        assert_eq!(bearer.token().unwrap(), "first");
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(bearer.token().unwrap(), "rotated");
        std::fs::remove_file(&path).unwrap();
        let e = bearer.token().unwrap_err();
        assert!(!e.is_transient() && e.to_string().contains("token"));
    }
}
