//! `POST /v1/proofs`: a worker answers the challenges of a committed result. The body
//! is read only after the caller is authenticated (it may be megabytes) and holds one
//! of `--gateway-proof-concurrency` permits until its verdict, the answers are checked
//! on a blocking thread against the recorded commitment (compute-proof rows with a
//! fresh Freivalds secret, `zop_kernels::compute_proof::challenge::check`; chunks and
//! samples recomputed from the seed, `zop_kernels::spot::check`), and the verdict is
//! written into the record before it moves the device's reputation. Each
//! result is judged once: answering again returns the verdict on record.

use super::checks::{draw_replay, foreign, provider_of};
use super::protocol::{self, ApiError, Check, ErrorBody, ProofsResponse};
use super::routes::caller;
use super::work::{Loaded, allowed, busy, load, write};
use super::{ClientAddr, GatewayState};
use crate::api::protocol::ChallengedRow;
use crate::devices::reputation::Outcome;
use crate::tasks::assignment::Assignment;
use crate::verifier::Evidence;
use crate::verify::challenge;
use crate::verify::challenge::Target;
use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use k8s_openapi::jiff::Timestamp;
use std::sync::Arc;
use std::time::Instant;
use zop_kernels::compute_proof::challenge::{Failure, Fragment, RowAnswer, true_row};
use zop_kernels::merkle::Hash;
use zop_kernels::spot::{self, Leaves, SpotFailure};

type Result<T> = std::result::Result<T, ApiError>;

fn answer(fragment: u32, check: &Check) -> Option<ProofsResponse> {
    match check {
        Check::Verified { .. } => Some(ProofsResponse {
            fragment,
            verified: true,
            rejection: None,
        }),
        Check::Rejected { reason, detail, .. } => Some(ProofsResponse {
            fragment,
            verified: false,
            rejection: Some(ErrorBody {
                reason: reason.clone(),
                message: detail.clone(),
            }),
        }),
        Check::Challenged { .. } => None,
    }
}

/// The handler; see the module docs.
pub async fn proofs(
    AxState(state): AxState<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ProofsResponse>> {
    let who = caller(&state, &headers, addr).await?;
    // Bodies of megabytes and checks of milliseconds: a few at a time, the rest queue.
    let _permit = state
        .proof_permits
        .acquire()
        .await
        .map_err(|_| ApiError::internal())?;
    let bytes = axum::body::to_bytes(body, state.config.proof_body_limit)
        .await
        .map_err(|_| ApiError {
            status: 413,
            reason: "BodyTooLarge",
            message: format!(
                "answers are limited to {} bytes",
                state.config.proof_body_limit
            ),
        })?;
    let (req, answers) = protocol::decode_proofs(&bytes)?;
    let answers = Arc::new(answers);
    for _ in 0..5 {
        let Loaded {
            mut a,
            version,
            facts,
            ..
        } = load(&state, &req.assignment, false).await?;
        if !allowed(&who, &req.assignment, &a) {
            foreign(&state, &who, &req.assignment, &a).await;
            return Err(ApiError {
                status: 404,
                reason: "AssignmentNotFound",
                message: "no such assignment for this caller".into(),
            });
        }
        let Some(result) = a.result(req.fragment) else {
            return Err(ApiError::invalid("fragment", "has no result to prove"));
        };
        let (rows, digest) = match &result.check {
            Some(Check::Challenged { rows, .. }) => (rows.clone(), result.digest.clone()),
            Some(done) => {
                return answer(req.fragment, done)
                    .map(Json)
                    .ok_or_else(ApiError::internal);
            }
            None => return Err(ApiError::invalid("fragment", "was not challenged")),
        };
        let target = challenge::target(&facts.spec, &facts.slicing, req.fragment)
            .ok_or_else(ApiError::internal)?;
        let mut root = [0u8; 32];
        hex::decode_to_slice(&digest, &mut root).map_err(|_| ApiError::internal())?;
        let secret = super::secrets::random_u64()?;
        let (answers2, started) = (answers.clone(), Instant::now());
        let checked =
            tokio::task::spawn_blocking(move || verify(&target, &root, &rows, &answers2, secret))
                .await
                .map_err(|_| ApiError::internal())?;
        state
            .verifier
            .metrics
            .check_seconds
            .observe(started.elapsed().as_secs_f64());
        let at_ms = Timestamp::now().as_millisecond();
        let (check, outcome) = match &checked {
            Ok(()) => (Check::Verified { at_ms }, Outcome::Verified),
            Err((reason, detail)) => (
                Check::Rejected {
                    reason: (*reason).into(),
                    detail: detail.clone(),
                    at_ms,
                },
                Outcome::Rejected,
            ),
        };
        a.judge(req.fragment, check.clone());
        if checked.is_ok() && !a.replay && draw_replay(&state, &facts, &a.device)? {
            a.want_replay(req.fragment, at_ms);
        }
        if !write(&state, &req.assignment, version, &a).await? {
            continue;
        }
        if checked.is_ok() {
            let units = a.result(req.fragment).map_or(0, |r| r.work_units);
            state
                .verifier
                .payable(&provider_of(&state, &a.device), units);
        }
        let (reason, detail) = checked.clone().err().unwrap_or(("Verified", String::new()));
        state
            .verifier
            .outcome(
                &a.device,
                outcome,
                &evidence_of(&a, req.fragment, reason, detail),
            )
            .await;
        return answer(req.fragment, &check)
            .map(Json)
            .ok_or_else(ApiError::internal);
    }
    Err(busy())
}

fn evidence_of(a: &Assignment, fragment: u32, reason: &str, detail: String) -> Evidence {
    Evidence {
        task: format!("{}/{}", a.task_namespace, a.task),
        fragment,
        reason: reason.into(),
        detail,
    }
}

/// Checks the answers to the challenged `rows` of a fragment with `target` against its
/// committed `root`: Freivalds' check of compute-proof rows with `secret`, or the
/// recomputed leaves of a spot check. The failure's reason and evidence.
fn verify(
    target: &Target,
    root: &[u8; 32],
    rows: &[ChallengedRow],
    answers: &[RowAnswer],
    secret: u64,
) -> std::result::Result<(), (&'static str, String)> {
    match target {
        Target::Rows(f) => zop_kernels::compute_proof::challenge::check(
            f,
            root,
            &challenge::refs(rows),
            answers,
            secret,
        )
        .map_err(|e| (e.reason(), evidence(f, root, &e, answers))),
        Target::Leaves(l) => {
            let drawn: Vec<u64> = rows.iter().map(|r| u64::from(r.row)).collect();
            let proofs: Vec<(u64, Vec<Hash>)> = answers
                .iter()
                .map(|a| (u64::from(a.at.row), a.product_proof.clone()))
                .collect();
            spot::check(l, root, &drawn, &proofs).map_err(|e| {
                let item = match l {
                    Leaves::Chunks { .. } => "chunk",
                    Leaves::Samples { .. } => "sample",
                };
                let detail = match &e {
                    SpotFailure::NotCommitted(i) => format!(
                        "expected {item} {i}'s leaf, recomputed from the seed, with a proof into the committed root {}, received a proof that leads elsewhere or none",
                        hex::encode(root)
                    ),
                    other => format!("expected a {item} of the fragment: {other}"),
                };
                (e.reason(), detail)
            })
        }
    }
}

/// What was expected and what was received, for a failed check.
fn evidence(f: &Fragment, root: &[u8; 32], e: &Failure, answers: &[RowAnswer]) -> String {
    let root = hex::encode(root);
    match e {
        Failure::WrongRow(at) => {
            let sent = answers.iter().find(|a| a.at == *at);
            let truth = true_row(f, *at).ok();
            let first = sent.zip(truth.as_ref()).and_then(|(s, t)| {
                s.values
                    .iter()
                    .zip(t)
                    .enumerate()
                    .find(|(_, (x, y))| x != y)
                    .map(|(j, (x, y))| (j, *y, *x))
            });
            match first {
                Some((j, expected, received)) => format!(
                    "{e}: expected C[{}, {j}] = {expected} in product {}, received {received}",
                    at.row, at.product
                ),
                None => format!("{e}: expected the row of A·B, received another"),
            }
        }
        Failure::NotCommitted(at) => format!(
            "expected row {} of product {} with a proof into the committed root {root}, received a row and proof that lead elsewhere",
            at.row, at.product
        ),
        Failure::Unanswered(_) | Failure::Unchallenged(_) | Failure::Length { .. } => {
            format!(
                "expected one answer of {} values per challenged row, received otherwise: {e}",
                f.n
            )
        }
        Failure::Shape(_) => format!("expected a fragment the kernels can check: {e}"),
    }
}
