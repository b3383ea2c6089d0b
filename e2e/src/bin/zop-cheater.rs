//! A cheating agent, for the verification tests only: it joins with a Group Key like
//! `zop-worker agent`, heartbeats, pulls its device's assignments and reports results
//! that lie in the way `--mode` says. The shipped `zop-worker` has no cheating modes.
//!
//! Modes:
//! - `random`: a random digest, and random rows with random proofs;
//! - `copy`: the true result of another fragment (as another device computed it) and
//!   that fragment's true answers;
//! - `partial`: computes only the first half of each product's rows (the rest are left
//!   zero), commits honestly to that, and answers from what it committed;
//! - `replay`: its first result honestly, then that same old result, with its old
//!   answers, for every later fragment;
//! - `slow`: claims a faster GPU than it has (the benchmark of the model in
//!   `--claim-model`), computes honestly on the CPU and sleeps `--sleep-ms` per fragment;
//! - `foreign`: reports results on the assignment named in `--victim-file` (another
//!   device's) under its own token;
//! - `lie`: for data processing, a made-up digest, and made-up proofs for the chunks the
//!   operator spot-checks;
//! - `flatter`: for a training task, the honest gradient commitment with a flattering
//!   report: a final loss 10% lower and one more sample right than it computed.
//!
//! With `--metrics-bind` it also serves worker metrics that say it executed nothing.
//!
//! Every verdict it receives is printed as one line on stdout.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;
use zop_kernels::compute_proof::challenge::{Commitment, Fragment};
use zop_kernels::compute_proof::{self, cpu};
use zop_kernels::fragment::{Committed, FragmentKind, hex};
use zop_operator::api::device::{Benchmark, GpuInfo, Identification};
use zop_operator::api::protocol::{
    FragmentChallenge, FragmentResult, HeartbeatRequest, ProofsRequest, RegisterRequest,
    ResultQuality, ResultsRequest, RowProof, encode_row,
};
use zop_worker::client::{Bearer, GatewayClient, GatewayError};
use zop_worker::execute;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Random,
    Copy,
    Partial,
    Replay,
    Slow,
    Foreign,
    Lie,
    Flatter,
}

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    gateway: String,
    #[arg(long)]
    ca_cert: PathBuf,
    #[arg(long, env = "ZOP_GROUP_KEY")]
    group_key: String,
    #[arg(long)]
    hostname: String,
    #[arg(long, value_enum)]
    mode: Mode,
    /// The GPU model the device claims; none when empty.
    #[arg(long, default_value = "")]
    claim_model: String,
    /// The benchmark score (GOP/s) it claims.
    #[arg(long, default_value_t = 20)]
    claim_score: u64,
    /// Sleep before each result (`slow`).
    #[arg(long, default_value_t = 0)]
    sleep_ms: u64,
    /// File holding the name of another device's assignment (`foreign`).
    #[arg(long)]
    victim_file: Option<PathBuf>,
    /// Serve worker metrics here that say no work was executed, whatever was: the
    /// measurements settlement reconciles credited work against contradict the credit.
    #[arg(long)]
    metrics_bind: Option<std::net::SocketAddr>,
}

/// Serves a worker exposition whose work counter never moves.
async fn serve_idle_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let body = "# TYPE zop_worker_work_units counter\nzop_worker_work_units_total{kind=\"computeProof\",device=\"cpu\"} 0\n# EOF\n";
    loop {
        let (mut conn, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(resp.as_bytes()).await;
        });
    }
}

/// What a result and its answers are made of: the digest and the commitment (with the
/// products it was computed from) the answers come from.
#[derive(Clone)]
struct Made {
    digest: String,
    commitment: Commitment,
    products: Vec<Vec<i32>>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.metrics_bind {
        tokio::spawn(async move {
            if let Err(e) = serve_idle_metrics(addr).await {
                eprintln!("metrics: {e}");
            }
        });
    }
    let ca = std::fs::read(&args.ca_cert).context("--ca-cert")?;
    let client = GatewayClient::new(&args.gateway, &ca)?;
    let identification = Identification {
        device_type: "workstation".into(),
        os: "linux".into(),
        architecture: "amd64".into(),
        cpu_cores: 2,
        memory_mib: 4096,
        gpus: if args.claim_model.is_empty() {
            Vec::new()
        } else {
            vec![GpuInfo {
                model: args.claim_model.clone(),
                vram_mib: 24_576,
                ..Default::default()
            }]
        },
        ..Default::default()
    };
    let reg = client
        .register(
            &args.group_key,
            &RegisterRequest {
                hostname: args.hostname.clone(),
                identification,
                benchmark: Some(Benchmark {
                    score: args.claim_score,
                    memory_bandwidth_mbps: 1000,
                    fingerprint: zop_kernels::fingerprint::encode(&[1.0, 2.0, 0.5, 8.0]),
                    measured_at: None,
                    driver_version: None,
                }),
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("registering: {e}"))?;
    println!("registered {}", reg.device);
    let token = reg.token;
    let beat_client = client.clone();
    let beat_token = token.clone();
    tokio::spawn(async move {
        loop {
            let beat = HeartbeatRequest {
                load: 10,
                running_fragments: 0,
                benchmark: None,
            };
            let _ = beat_client.heartbeat(&beat_token, &beat).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let mut old: Option<Made> = None;
    loop {
        if args.mode == Mode::Foreign {
            foreign(&client, &token, &args).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let work = match client.work(Bearer::Token(&token), None).await {
            Ok(Some(w)) => w,
            Ok(None) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
        };
        let kind = execute::kind(&work.spec)?;
        if args.mode == Mode::Lie {
            lie(&client, &token, &work).await;
            continue;
        }
        if args.mode == Mode::Flatter {
            flatter(&client, &token, &work, &kind).await?;
            continue;
        }
        let FragmentKind::ComputeProof {
            dimension,
            products,
            seed,
        } = kind
        else {
            anyhow::bail!("only compute-proof tasks are cheated on");
        };
        for span in &work.fragments {
            let f = Fragment {
                seed,
                n: dimension,
                first: span.start,
                count: (span.end - span.start) as u32,
            };
            let made = match args.mode {
                Mode::Random => random(&f),
                Mode::Copy => {
                    // Another fragment's true result: the next one, or the previous.
                    let len = span.end - span.start;
                    let first = if span.end + len <= products {
                        span.end
                    } else {
                        span.start.saturating_sub(len)
                    };
                    honest(&Fragment { first, ..f }, f.n as usize)
                }
                Mode::Partial => honest(&f, f.n as usize / 2),
                Mode::Replay => match &old {
                    Some(m) => m.clone(),
                    None => honest(&f, f.n as usize),
                },
                Mode::Slow => {
                    tokio::time::sleep(Duration::from_millis(args.sleep_ms)).await;
                    honest(&f, f.n as usize)
                }
                Mode::Foreign | Mode::Lie | Mode::Flatter => continue,
            };
            let req = report(
                work.assignment.clone(),
                span.index,
                made.digest.clone(),
                None,
            );
            let resp = match client.results(Bearer::Token(&token), &req).await {
                Ok(r) => r,
                Err(e) => {
                    println!("result {} refused: {e}", span.index);
                    break;
                }
            };
            for c in resp.challenges {
                let verdict = client
                    .proofs(Bearer::Token(&token), &answers(&work.assignment, &made, &c))
                    .await;
                println!("fragment {}: {verdict:?}", c.fragment);
            }
            if args.mode == Mode::Replay && old.is_none() {
                old = Some(made);
            }
        }
    }
}

/// The products of `f` with only their first `rows` rows computed, and the commitment
/// to exactly that.
fn honest(f: &Fragment, rows: usize) -> Made {
    let n = f.n as usize;
    let mut products = Vec::new();
    let trees = (0..f.count)
        .map(|p| {
            let (a, b) = compute_proof::inputs(f.product_seed(p), n).expect("shape");
            let mut c = cpu::matmul(&a, &b, n).expect("shape");
            c[rows * n..].iter_mut().for_each(|v| *v = 0);
            let t = compute_proof::commit(&c, n).expect("shape");
            products.push(c);
            t
        })
        .collect();
    let commitment = Commitment::new(*f, trees);
    Made {
        digest: hex(&commitment.root()),
        commitment,
        products,
    }
}

/// Nothing computed: random values everywhere.
fn random(f: &Fragment) -> Made {
    let n = f.n as usize;
    let products: Vec<Vec<i32>> = (0..f.count)
        .map(|p| {
            let (a, _) = compute_proof::inputs(f.product_seed(p) ^ 0x5eed, n).expect("shape");
            a.iter().map(|v| i32::from(*v) * 977).collect()
        })
        .collect();
    let trees = products
        .iter()
        .map(|c| compute_proof::commit(c, n).expect("shape"))
        .collect();
    let commitment = Commitment::new(*f, trees);
    let mut digest = [0u8; 32];
    for (i, b) in digest.iter_mut().enumerate() {
        *b = (f.first as u8).wrapping_mul(31).wrapping_add(i as u8 * 7);
    }
    Made {
        digest: hex(&digest),
        commitment,
        products,
    }
}

/// Answers from what was committed (the cheater's own products), with its proofs: the
/// worker's own prover supplies the proofs, and the values are replaced by the rows this
/// cheater committed to.
fn answers(assignment: &str, m: &Made, c: &FragmentChallenge) -> ProofsRequest {
    let n = m.commitment.fragment().n as usize;
    let kept = Committed::Rows(m.commitment.clone());
    let mut req = zop_worker::prove::answers(assignment, &kept, c).unwrap_or(ProofsRequest {
        assignment: assignment.into(),
        fragment: c.fragment,
        answers: Vec::new(),
    });
    for a in &mut req.answers {
        let (p, i) = (a.product as usize, a.row as usize);
        if let Some(c) = m.products.get(p) {
            a.values = encode_row(&c[i * n..(i + 1) * n]);
        }
    }
    req
}

/// Reports a made-up digest for every fragment of `work`.
async fn lie(client: &GatewayClient, token: &str, work: &zop_operator::api::protocol::Work) {
    for span in &work.fragments {
        let req = report(
            work.assignment.clone(),
            span.index,
            format!("{:064x}", u64::from(span.index) * 7919 + 1),
            None,
        );
        let verdict = client.results(Bearer::Token(token), &req).await;
        println!("lie on fragment {}: {verdict:?}", span.index);
        // Spot-checked: it has no tree behind its digest, so it sends made-up proofs.
        for c in verdict.map(|v| v.challenges).unwrap_or_default() {
            let answers = c
                .rows
                .iter()
                .map(|r| RowProof {
                    product: r.product,
                    row: r.row,
                    values: String::new(),
                    row_proof: Vec::new(),
                    product_proof: vec![format!("{:064x}", r.row)],
                })
                .collect();
            let req = ProofsRequest {
                assignment: work.assignment.clone(),
                fragment: c.fragment,
                answers,
            };
            let verdict = client.proofs(Bearer::Token(token), &req).await;
            println!("proofs of the lie on fragment {}: {verdict:?}", c.fragment);
        }
    }
}

/// Computes each fragment honestly and reports a better model than it computed.
async fn flatter(
    client: &GatewayClient,
    token: &str,
    work: &zop_operator::api::protocol::Work,
    kind: &FragmentKind,
) -> anyhow::Result<()> {
    for span in &work.fragments {
        let out = zop_kernels::fragment::execute_range(kind, span.start..span.end)?;
        let honest = out.quality.context("not a model's fragment")?;
        let mut losses = honest.losses;
        if let Some(last) = losses.last_mut() {
            *last *= 0.9;
        }
        let req = report(
            work.assignment.clone(),
            span.index,
            out.digest,
            Some(ResultQuality {
                losses,
                correct: (honest.correct + 1).min(span.end - span.start),
            }),
        );
        let verdict = client.results(Bearer::Token(token), &req).await;
        println!("flattered fragment {}: {verdict:?}", span.index);
    }
    Ok(())
}

/// A report of one result: what every cheating mode sends, with its own lie.
fn report(
    assignment: impl Into<String>,
    fragment: u32,
    digest: String,
    quality: Option<ResultQuality>,
) -> ResultsRequest {
    ResultsRequest {
        assignment: assignment.into(),
        results: vec![FragmentResult {
            fragment,
            digest,
            work_units: 1,
            elapsed_ms: 1,
            received_ms: 0,
            check: None,
            replay_wanted_ms: None,
            quality,
            payable_ms: None,
        }],
    }
}

/// Reports a made-up result on another device's assignment.
async fn foreign(client: &GatewayClient, token: &str, args: &Args) {
    let Some(victim) = args
        .victim_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    else {
        return;
    };
    let req = report(victim.clone(), 0, "ab".repeat(32), None);
    match client.results(Bearer::Token(token), &req).await {
        Ok(r) => println!("foreign result on {victim} accepted: {r:?}"),
        Err(GatewayError::Refused { status, reason, .. }) => {
            println!("foreign result on {victim} refused: {status} {reason}")
        }
        Err(e) => println!("foreign result on {victim}: {e}"),
    }
}
