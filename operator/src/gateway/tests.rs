//! In-process router tests for the paths that end before any Kubernetes call.

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

fn state(body_limit: usize) -> Arc<GatewayState> {
    // An address nothing listens on: these tests must never reach an API server.
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = Client::try_from(config).unwrap();
    let gw = GatewayConfig {
        namespace: "zoptoken-system".into(),
        bind: "127.0.0.1:0".parse().unwrap(),
        tls_secret: "t".into(),
        dns_names: vec![],
        audience: "zoptoken-gateway".into(),
        heartbeat_seconds: 10,
        rate_per_second: 1,
        burst: 2,
        body_limit,
        proof_body_limit: 1024,
        proof_concurrency: 1,
        lookup_rate: 1,
        lookup_burst: 2,
        max_connections: 16,
        header_timeout_seconds: 5,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let (keys, _) = kube::runtime::reflector::store();
    let (tokens, _) = kube::runtime::reflector::store();
    let (devices, _) = kube::runtime::reflector::store();
    let verifier = Arc::new(crate::verifier::Verifier::new(
        client.clone(),
        &mut registry,
    ));
    Arc::new(GatewayState::new(
        client,
        gw,
        keys,
        tokens,
        devices,
        GatewayMetrics::new(&mut registry),
        verifier,
    ))
}

async fn call(
    state: Arc<GatewayState>,
    path: &str,
    auth: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, protocol::ErrorBody) {
    let mut req = Request::post(path).header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = router(state)
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}")),
    )
}

#[tokio::test]
async fn an_oversized_body_is_413_with_a_reason() {
    let (status, body) = call(
        state(64),
        protocol::REGISTER,
        Some("Bearer zgk_x"),
        vec![b' '; 1000],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body.reason, "PayloadTooLarge");
}

#[tokio::test]
async fn registering_without_a_group_key_is_401_with_a_reason() {
    let (status, body) = call(state(1024), protocol::REGISTER, None, b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body.reason, "InvalidGroupKey");
}

#[tokio::test]
async fn a_heartbeat_with_a_malformed_token_is_401() {
    let (status, body) = call(
        state(1024),
        protocol::HEARTBEAT,
        Some("Bearer zdt_garbage"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body.reason, "Unauthorized");
}

#[tokio::test]
async fn bad_input_names_the_field_before_any_lookup() {
    let (status, body) = call(
        state(1024),
        protocol::HEARTBEAT,
        Some("Bearer x"),
        br#"{"load": 900}"#.to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.message.starts_with("load:"), "{}", body.message);
}

#[tokio::test]
async fn a_burst_past_the_limit_is_429() {
    let s = state(1024);
    let mut last = StatusCode::OK;
    for _ in 0..4 {
        last = call(
            s.clone(),
            protocol::REGISTER,
            Some("Bearer zgk_same"),
            b"{".to_vec(),
        )
        .await
        .0;
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}
