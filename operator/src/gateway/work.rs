//! The worker's side of an assignment, through the gateway: pulling it (`GET /v1/work`)
//! and reporting fragment results (`POST /v1/results`). A worker Pod may only touch the
//! assignment it was created for (same name and UID); an agent only those of its own
//! device. Every record is validated against its task before use. Results are recorded
//! into the assignment's ConfigMap with optimistic concurrency, at most once per
//! fragment, each worth the slicer's cost of its fragment whatever the worker claims.

use super::auth::Principal;
use super::checks::{
    caller_in_good_standing, device_score, draw_replay, foreign, in_good_standing, provider_of,
    timing_evidence,
};
use super::protocol::{
    self, ApiError, Check, FragmentChallenge, FragmentSpan, ResultsResponse, Work, WorkQuery,
};
use super::routes::caller;
use super::{ClientAddr, GatewayState};
use crate::api::ComputeTask;
use crate::api::task::ComputeTaskSpec;
use crate::devices::reputation::Outcome;
use crate::labels;
use crate::scheduler::slicer::{self, Slicing};
use crate::tasks::assignment::{Assignment, ReportError, State};
use crate::tasks::record;
use crate::tasks::validate::{TaskRef, validate};
use crate::verifier::Evidence;
use crate::verify::timing::{self, Timing};
use crate::verify::{challenge, quality};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use std::sync::Arc;

type Result<T> = std::result::Result<T, ApiError>;

fn gone(message: impl Into<String>) -> ApiError {
    ApiError {
        status: 410,
        reason: "AssignmentClosed",
        message: message.into(),
    }
}

fn not_found() -> ApiError {
    ApiError {
        status: 404,
        reason: "AssignmentNotFound",
        message: "no such assignment for this caller".into(),
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "{what}");
    ApiError::internal()
}

/// Whether `who` may act on assignment `name` holding `a`: an agent on its own device's
/// assignments, a worker Pod on the one it was created for, by name and UID.
pub(super) fn allowed(who: &Principal, name: &str, a: &Assignment) -> bool {
    match who {
        Principal::Device(d) => *d == a.device,
        Principal::WorkerPod { pod, uid, .. } => {
            pod == name && a.pod_uid.as_deref() == Some(uid.as_str())
        }
    }
}

/// What the gateway keeps of a task: its slicing and its spec, both fixed for the task's
/// UID (the spec's workload, fragments and verification are immutable).
#[derive(Debug, Clone)]
pub struct TaskFacts {
    /// How the task is sliced.
    pub slicing: Slicing,
    /// Its spec as first read.
    pub spec: Arc<ComputeTaskSpec>,
}

/// A loaded assignment record.
pub(super) struct Loaded {
    /// The record.
    pub a: Assignment,
    /// Its ConfigMap's version; `None` while it is still recorded only on its worker Pod
    /// (whose UID it then takes).
    pub version: Option<String>,
    /// The task, when it was read.
    pub task: Option<ComputeTask>,
    /// The task's facts.
    pub facts: Arc<TaskFacts>,
}

/// The assignment `name`, with its task (read when `need_task`, or when its facts are
/// not cached yet); only a record that validates against its task is returned.
pub(super) async fn load(state: &GatewayState, name: &str, need_task: bool) -> Result<Loaded> {
    let cms: Api<ConfigMap> = Api::namespaced(state.client.clone(), &state.config.namespace);
    let (a, version) = match cms
        .get_opt(name)
        .await
        .map_err(|e| internal("reading an assignment", e))?
    {
        Some(cm) => (
            record::from_config_map(&cm).ok_or_else(not_found)?,
            cm.resource_version(),
        ),
        None => {
            let pod = Api::<Pod>::namespaced(state.client.clone(), &state.config.namespace)
                .get_opt(name)
                .await
                .map_err(|e| internal("reading a worker pod", e))?
                .ok_or_else(not_found)?;
            let mut a = record::from_pod(&pod).ok_or_else(not_found)?;
            a.pod_uid = pod.uid();
            (a, None)
        }
    };
    // A result report needs only the task's facts, which its UID fixes: one read of the
    // task per task, not one per report.
    let cached = state
        .tasks
        .lock()
        .ok()
        .and_then(|c| c.get(&a.task_uid).cloned());
    let (task, facts) = match cached {
        Some(f) if !need_task => (None, f),
        _ => {
            let task = Api::<ComputeTask>::namespaced(state.client.clone(), &a.task_namespace)
                .get_opt(&a.task)
                .await
                .map_err(|e| internal("reading a task", e))?
                .filter(|t| t.uid().as_deref() == Some(a.task_uid.as_str()))
                .ok_or_else(|| gone("the task is gone"))?;
            let facts = facts_of(state, &task)?;
            (Some(task), facts)
        }
    };
    let of = TaskRef {
        namespace: &a.task_namespace,
        name: &a.task,
        uid: &a.task_uid,
        slicing: &facts.slicing,
    };
    let known = |d: &str| state.devices.get(&ObjectRef::new(d)).is_some();
    if let Err(e) = validate(&a, name, &of, known) {
        tracing::warn!(assignment = name, error = %e, "refusing an invalid assignment record");
        return Err(not_found());
    }
    Ok(Loaded {
        a,
        version,
        task,
        facts,
    })
}

/// The task's facts, from a bounded cache.
fn facts_of(state: &GatewayState, task: &ComputeTask) -> Result<Arc<TaskFacts>> {
    let uid = task.uid().unwrap_or_default();
    if let Ok(cache) = state.tasks.lock()
        && let Some(f) = cache.get(&uid)
    {
        return Ok(f.clone());
    }
    let slicing = slicer::slice(&task.spec).map_err(|_| gone("the task cannot be sliced"))?;
    let mut spec = task.spec.clone();
    spec.cancel = false;
    let f = Arc::new(TaskFacts {
        slicing,
        spec: Arc::new(spec),
    });
    if let Ok(mut cache) = state.tasks.lock() {
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(uid, f.clone());
    }
    Ok(f)
}

/// Writes record `a` back: replaced at `version`, or created when it was known only
/// from its Pod. `Ok(false)` means someone wrote it meanwhile (reload and retry).
pub(super) async fn write(
    state: &GatewayState,
    name: &str,
    version: Option<String>,
    a: &Assignment,
) -> Result<bool> {
    let api: Api<ConfigMap> = Api::namespaced(state.client.clone(), &state.config.namespace);
    let mut cm = record::to_config_map(&state.config.namespace, a)
        .map_err(|e| internal("encoding an assignment", e))?;
    let written = match version {
        Some(v) => {
            cm.metadata.resource_version = Some(v);
            api.replace(name, &PostParams::default(), &cm).await
        }
        None => api.create(&PostParams::default(), &cm).await,
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(internal("recording results", e)),
    }
}

/// The next live assignment of an agent's device.
async fn next_for_device(state: &GatewayState, device: &str) -> Result<Option<String>> {
    let api: Api<ConfigMap> = Api::namespaced(state.client.clone(), &state.config.namespace);
    let lp = ListParams::default().labels(&format!(
        "{}=true,{}={}",
        labels::ASSIGNMENT,
        labels::DEVICE,
        record::label_value(device)
    ));
    let mut live: Vec<(i64, String)> = api
        .list(&lp)
        .await
        .map_err(|e| internal("listing assignments", e))?
        .items
        .iter()
        .filter_map(|cm| {
            let a = record::from_config_map(cm)?;
            (a.device == device && matches!(a.state, State::Pending | State::Running))
                .then(|| (a.created_ms, cm.name_any()))
        })
        .collect();
    live.sort();
    Ok(live.into_iter().next().map(|(_, n)| n))
}

/// `GET /v1/work[?assignment=NAME]`: the assignment, with its fragments still to do;
/// 204 when an agent has none.
pub async fn work(
    AxState(state): AxState<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
    Query(q): Query<WorkQuery>,
) -> Result<Response> {
    let who = caller(&state, &headers, addr).await?;
    caller_in_good_standing(&state, &who)?;
    let name = match (&q.assignment, &who) {
        (Some(n), _) => {
            protocol::assignment_name("assignment", n)?;
            n.clone()
        }
        (None, Principal::Device(d)) => match next_for_device(&state, d).await? {
            Some(n) => n,
            None => return Ok(StatusCode::NO_CONTENT.into_response()),
        },
        (None, Principal::WorkerPod { pod, .. }) => pod.clone(),
    };
    let Loaded { a, task, facts, .. } = load(&state, &name, true).await?;
    let Some(task) = task else {
        return Err(ApiError::internal());
    };
    let slicing = facts.slicing;
    if !allowed(&who, &name, &a) {
        return Err(not_found());
    }
    in_good_standing(&state, &a.device)?;
    if !matches!(a.state, State::Pending | State::Running) {
        return Err(gone(format!("the assignment is {:?}", a.state)));
    }
    // The provider's payable-work series exists, at 0, before its first result: a
    // counter Prometheus first sees above 0 loses that first increase.
    state.verifier.payable(&provider_of(&state, &a.device), 0);
    let fragments = a
        .unfinished()
        .into_iter()
        .filter_map(|index| {
            let r = slicing.range(index)?;
            Some(FragmentSpan {
                index,
                start: r.start,
                end: r.end,
            })
        })
        .collect();
    Ok(Json(Work {
        assignment: name,
        task_namespace: a.task_namespace,
        task: a.task,
        spec: task.spec,
        fragments,
    })
    .into_response())
}

/// `POST /v1/results`: records fragment results; identical resubmissions are accepted
/// and change nothing, a different result for a completed fragment is a conflict. A
/// result of a challenged kind is recorded with its challenge, drawn from the operating
/// system's CSPRNG in the same write, so the worker learns the rows only after its
/// commitment is on record. Each report is timed on the operator's clock against the
/// device's benchmark: its new results' operations over the interval since the previous
/// result on record.
pub async fn results(
    AxState(state): AxState<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<ResultsResponse>> {
    let req = protocol::decode_results(&super::routes::body(raw)?)?;
    let who = caller(&state, &headers, addr).await?;
    caller_in_good_standing(&state, &who)?;
    // Optimistic concurrency: the task controller may mark the assignment lost meanwhile.
    for _ in 0..5 {
        let Loaded {
            mut a,
            version,
            facts,
            ..
        } = load(&state, &req.assignment, false).await?;
        if !allowed(&who, &req.assignment, &a) {
            foreign(&state, &who, &req.assignment, &a).await;
            return Err(not_found());
        }
        in_good_standing(&state, &a.device)?;
        let now = Timestamp::now().as_millisecond();
        let benchmark = device_score(&state, &a.device);
        let mut accepted = 0;
        let mut mismatches = 0u32;
        let mut challenges = Vec::new();
        let mut rejections = Vec::new();
        let mut payable = 0u64;
        // The report is timed as a whole, from the previous result on record: several
        // results in one report share one interval.
        let since = a.standing().map(|x| x.received_ms).max();
        let mut timed: Option<(u32, u64)> = None;
        for r in &req.results {
            // The worker's figure is only a claim: a fragment is worth what the slicer
            // says it costs.
            let mut r = r.clone();
            let cost = facts.slicing.weight(r.fragment);
            let claimed = std::mem::replace(&mut r.work_units, cost);
            r.received_ms = now;
            match a.record(r.clone(), now) {
                Ok(true) => {
                    accepted += 1;
                    if claimed != cost {
                        mismatches += 1;
                    }
                    let ops = facts.slicing.ops_of(r.fragment);
                    timed =
                        Some(timed.map_or((r.fragment, ops), |(f, o)| (f, o.saturating_add(ops))));
                    let items = facts
                        .slicing
                        .range(r.fragment)
                        .map_or(0, |x| x.end - x.start);
                    if let Err(fail) = quality::check(&facts.spec, items, r.quality.as_ref()) {
                        // A model's report that cannot be true earns nothing.
                        a.judge(
                            r.fragment,
                            Check::Rejected {
                                reason: fail.reason().into(),
                                detail: fail.to_string(),
                                at_ms: now,
                            },
                        );
                        rejections.push(Evidence {
                            task: format!("{}/{}", a.task_namespace, a.task),
                            fragment: r.fragment,
                            reason: fail.reason().into(),
                            detail: fail.to_string(),
                        });
                    } else if let Some(t) =
                        challenge::target(&facts.spec, &facts.slicing, r.fragment)
                    {
                        let rows = challenge::rows(&facts.spec, &t, super::secrets::random_u64()?);
                        a.judge(
                            r.fragment,
                            Check::Challenged {
                                rows: rows.clone(),
                                at_ms: now,
                            },
                        );
                        challenges.push(FragmentChallenge {
                            fragment: r.fragment,
                            rows,
                        });
                    } else {
                        // Accepted without a proof: payable now, and a sampled share is
                        // executed again.
                        a.accept(r.fragment, now);
                        payable = payable.saturating_add(r.work_units);
                        if !a.replay && draw_replay(&state, &facts, &a.device)? {
                            a.want_replay(r.fragment, now);
                        }
                    }
                }
                Ok(false) => {
                    // A retry of a recorded result gets its challenge again.
                    if let Some(Check::Challenged { rows, .. }) =
                        a.result(r.fragment).and_then(|x| x.check.clone())
                    {
                        challenges.push(FragmentChallenge {
                            fragment: r.fragment,
                            rows,
                        });
                    }
                }
                Err(ReportError::Closed(s)) => {
                    state.verifier.refused("Late");
                    return Err(gone(format!("the assignment is {s:?}")));
                }
                Err(e @ ReportError::Conflicting(_)) => {
                    state.verifier.refused("Conflicting");
                    return Err(ApiError {
                        status: 409,
                        reason: "ConflictingResult",
                        message: e.to_string(),
                    });
                }
                Err(e @ ReportError::OutOfRange(_)) => {
                    state.verifier.refused("OtherFragment");
                    return Err(ApiError::invalid("results", e));
                }
                Err(e) => return Err(ApiError::invalid("results", e)),
            }
        }
        a.claim_mismatches = a.claim_mismatches.saturating_add(mismatches);
        let completed = a.state == State::Completed;
        if accepted == 0 {
            return Ok(Json(ResultsResponse {
                accepted,
                completed,
                challenges,
            }));
        }
        if write(&state, &req.assignment, version, &a).await? {
            state.metrics.results.inc_by(u64::from(accepted));
            state
                .metrics
                .work_claim_mismatches
                .inc_by(u64::from(mismatches));
            if mismatches > 0 {
                tracing::warn!(assignment = %req.assignment, mismatches, "a worker claimed work units other than the slicer's cost");
            }
            if payable > 0 {
                state
                    .verifier
                    .payable(&provider_of(&state, &a.device), payable);
            }
            for evidence in &rejections {
                state
                    .verifier
                    .outcome(&a.device, Outcome::Rejected, evidence)
                    .await;
            }
            if let Some((fragment, ops)) = timed {
                let measured = now - since.filter(|t| *t > 0).unwrap_or(a.created_ms);
                let t = timing::judge(ops, benchmark, measured.max(0) as u64, since.is_none());
                if t != Timing::Plausible {
                    let evidence = timing_evidence(&a, fragment, t);
                    state
                        .verifier
                        .outcome(&a.device, Outcome::Timing(t), &evidence)
                        .await;
                }
            }
            return Ok(Json(ResultsResponse {
                accepted,
                completed,
                challenges,
            }));
        }
    }
    Err(busy())
}

/// The answer when a record changed under every retry.
pub(super) fn busy() -> ApiError {
    ApiError {
        status: 503,
        reason: "Busy",
        message: "the assignment changed repeatedly; retry".into(),
    }
}
