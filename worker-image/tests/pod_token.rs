//! `zop-worker pod` sends its projected token as the file holds it at each request: the
//! kubelet rotates the file while a long assignment runs. A local HTTPS gateway rotates
//! it after the first result and checks which token each request carried.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use zop_operator::gateway::protocol::{self, FragmentSpan, ResultsResponse, Work};
use zop_operator::gateway::tls;
use zop_worker::engine::{DeviceArg, EngineArgs};
use zop_worker::pod::{self, PodArgs, PodAuth};
use zop_worker::shutdown::Shutdown;
use zop_worker::work::Outcome;

/// The fake gateway: where the token lives and which route saw which token.
#[derive(Debug)]
struct Gateway {
    token_file: PathBuf,
    seen: Mutex<Vec<(&'static str, String)>>,
}

impl Gateway {
    fn record(&self, route: &'static str, headers: &HeaderMap) {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_start_matches("Bearer ")
            .to_string();
        self.seen.lock().unwrap().push((route, bearer));
    }
}

async fn work(State(g): State<Arc<Gateway>>, headers: HeaderMap) -> Json<Work> {
    g.record("work", &headers);
    let spec = serde_json::from_value(serde_json::json!({
        "type": "data-processing",
        "dataProcessing": {"operation": "sha256", "bytes": 131072, "seed": 1},
        "fragments": {"size": 65536},
    }))
    .unwrap();
    let span = |index: u32| FragmentSpan {
        index,
        start: u64::from(index) * 65536,
        end: u64::from(index + 1) * 65536,
    };
    Json(Work {
        assignment: "a-1".into(),
        task_namespace: "default".into(),
        task: "hash".into(),
        spec,
        fragments: vec![span(0), span(1)],
    })
}

async fn results(State(g): State<Arc<Gateway>>, headers: HeaderMap) -> Json<ResultsResponse> {
    g.record("results", &headers);
    // What the kubelet does at 80% of the token's lifetime.
    std::fs::write(&g.token_file, "token-2\n").unwrap();
    Json(ResultsResponse {
        accepted: 1,
        completed: false,
        challenges: Vec::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_sent_with_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "token-1\n").unwrap();
    let pem = tls::self_signed(&[]).unwrap();
    let ca_cert = dir.path().join("ca.pem");
    std::fs::write(&ca_cert, &pem.cert).unwrap();

    let gateway = Arc::new(Gateway {
        token_file: token_file.clone(),
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route(protocol::WORK, get(work))
        .route(protocol::RESULTS, post(results))
        .with_state(gateway.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let rustls =
        axum_server::tls_rustls::RustlsConfig::from_config(tls::server_config(&pem).unwrap());
    let server = axum_server::tls_rustls::from_tcp_rustls(listener, rustls).unwrap();
    tokio::spawn(server.serve(app.into_make_service()));

    let args = PodArgs {
        assignment: "a-1".into(),
        auth: PodAuth {
            gateway: format!("https://127.0.0.1:{port}"),
            token_file,
            ca_cert,
        },
        engine: EngineArgs {
            device: DeviceArg::Cpu,
            metrics_bind: None,
        },
    };
    let outcome = pod::run(args, Shutdown::new()).await.unwrap();
    assert_eq!(outcome, Outcome::Done { fragments: 2 });
    let seen = gateway.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("work", "token-1".to_string()),
            ("results", "token-1".to_string()),
            ("results", "token-2".to_string()),
        ]
    );
}
