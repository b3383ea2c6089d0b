//! Executing an assignment, shared by pod and agent modes: pull it from the gateway,
//! run its fragments one by one, and report each result as soon as it exists (that is
//! the progress stream). A stop request ends any wait on the gateway at once; the
//! fragment in hand is finished and its report gets [`REPORT_GRACE`], and the rest is
//! handed back by simply not doing it.

use crate::client::{Bearer, GatewayClient, GatewayError};
use crate::engine::Engine;
use crate::execute;
use crate::shutdown::Shutdown;
use backon::{ExponentialBuilder, Retryable};
use std::sync::Arc;
use std::time::Duration;
use zop_api::protocol::ResultsRequest;

/// How an assignment ended for this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// There was no assignment to do.
    Idle,
    /// Every fragment was executed and reported.
    Done {
        /// Fragments executed.
        fragments: u32,
    },
    /// Stopped early; the remaining fragments go back to the scheduler.
    HandedBack {
        /// Fragments executed before the stop.
        fragments: u32,
    },
    /// The gateway closed the assignment (lost, cancelled, or completed elsewhere).
    Closed,
}

/// How long after a stop request the result of the fragment in hand may still take to
/// reach the gateway; past it the fragment is left for reassignment.
pub const REPORT_GRACE: Duration = Duration::from_secs(3);

/// Retries of a call to the gateway that may succeed later: about 30 s in all.
pub(crate) fn retry() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .with_max_times(8)
}

/// Runs CPU-bound `f` off the async threads; a panic in it ends the assignment.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, GatewayError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GatewayError::Refused {
            status: 500,
            reason: "WorkerPanicked".into(),
            message: e.to_string(),
        })
}

/// Answers a result's challenges (the result stays unpaid until they verify).
async fn prove(
    client: &GatewayClient,
    bearer: Bearer<'_>,
    assignment: &str,
    commitment: zop_kernels::fragment::Committed,
    challenge: zop_api::protocol::FragmentChallenge,
) -> Result<(), GatewayError> {
    let (fragment, rows) = (challenge.fragment, challenge.rows.len());
    let req = crate::prove::compute(assignment, commitment, challenge).await?;
    let verdict = (|| crate::prove::post(client, bearer, &req))
        .retry(retry())
        .when(GatewayError::is_transient)
        .await;
    match verdict {
        Ok(v) if v.verified => {
            tracing::debug!(fragment, rows, "challenged rows verified");
            Ok(())
        }
        Ok(v) => {
            let why = v.rejection.map(|r| format!("{}: {}", r.reason, r.message));
            tracing::error!(
                fragment,
                rows,
                why = why.unwrap_or_default(),
                "the operator rejected this fragment's proof"
            );
            Ok(())
        }
        Err(GatewayError::Refused { status: 410, .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Pulls and executes one assignment (`assignment` names it; `None` asks for the
/// device's next one) on `engine`, reporting every fragment. Returns early when `stop`
/// is requested.
pub async fn run_one(
    engine: &Arc<Engine>,
    client: &GatewayClient,
    bearer: Bearer<'_>,
    assignment: Option<&str>,
    stop: &Shutdown,
) -> Result<Outcome, GatewayError> {
    let work = (|| client.work(bearer, assignment))
        .retry(retry())
        .when(GatewayError::is_transient);
    let Some(work) = stop.race(work).await else {
        return Ok(Outcome::HandedBack { fragments: 0 });
    };
    let work = match work {
        Ok(Some(w)) => w,
        Ok(None) => return Ok(Outcome::Idle),
        Err(GatewayError::Refused { status: 410, .. }) => return Ok(Outcome::Closed),
        Err(e) => return Err(e),
    };
    tracing::info!(
        assignment = %work.assignment,
        task = %format!("{}/{}", work.task_namespace, work.task),
        fragments = work.fragments.len(),
        "executing assignment"
    );
    // The task's spec, mapped once; a spec the kernels cannot describe fails its first
    // fragment like any other refusal.
    let kind = execute::kind(&work.spec).map(Arc::new);
    let label = kind.as_ref().map_or("unknown", |k| k.name());
    let mut done = 0u32;
    for span in work.fragments {
        if stop.is_triggered() {
            return Ok(Outcome::HandedBack { fragments: done });
        }
        let result = match &kind {
            Ok(k) => {
                let (k, e) = (k.clone(), engine.clone());
                blocking(move || execute::fragment(&e.executor, &k, &span)).await?
            }
            Err(e) => Err(e.clone()),
        };
        let (result, commitment) = match result {
            Ok((r, mut run)) => {
                if let Some(why) = &run.gpu_fallback {
                    tracing::warn!(error = %why, "GPU path failed; the fragment ran on the CPU");
                }
                engine.metrics.completed(label, &run, r.work_units);
                let commitment = run.commitment.take();
                (r, commitment)
            }
            Err(e) => {
                // A fragment this worker cannot execute is left for reassignment.
                tracing::error!(error = %e, "fragment failed");
                engine.metrics.failed(label);
                return Ok(Outcome::HandedBack { fragments: done });
            }
        };
        let fragment = result.fragment;
        let req = ResultsRequest {
            assignment: work.assignment.clone(),
            results: vec![result],
        };
        let report = (|| client.results(bearer, &req))
            .retry(retry())
            .when(GatewayError::is_transient);
        match stop.grace(REPORT_GRACE, report).await {
            None => {
                tracing::warn!("stopping: the gateway did not take the last result in time");
                return Ok(Outcome::HandedBack { fragments: done });
            }
            Some(Ok(resp)) => {
                done += 1;
                let challenge = resp.challenges.into_iter().find(|c| c.fragment == fragment);
                if let (Some(c), Some(commitment)) = (challenge, commitment) {
                    prove(client, bearer, &work.assignment, commitment, c).await?;
                }
            }
            Some(Err(GatewayError::Refused { status: 410, .. })) => return Ok(Outcome::Closed),
            Some(Err(e)) => return Err(e),
        }
    }
    Ok(Outcome::Done { fragments: done })
}
