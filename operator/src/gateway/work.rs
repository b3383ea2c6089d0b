//! The worker's side of an assignment, through the gateway: pulling it (`GET /v1/work`)
//! and reporting fragment results (`POST /v1/results`). A worker Pod may only touch the
//! assignment it was created for (same name and UID); an agent only those of its own
//! device. Every record is validated against its task before use. Results are recorded
//! into the assignment's ConfigMap with optimistic concurrency, at most once per
//! fragment, each worth the slicer's cost of its fragment whatever the worker claims.

use super::auth::Principal;
use super::protocol::{self, ApiError, FragmentSpan, ResultsResponse, Work, WorkQuery};
use super::routes::caller;
use super::{ClientAddr, GatewayState};
use crate::api::ComputeTask;
use crate::labels;
use crate::scheduler::slicer::{self, Slicing};
use crate::tasks::assignment::{Assignment, ReportError, State};
use crate::tasks::record;
use crate::tasks::validate::{TaskRef, validate};
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
fn allowed(who: &Principal, name: &str, a: &Assignment) -> bool {
    match who {
        Principal::Device(d) => *d == a.device,
        Principal::WorkerPod { pod, uid, .. } => {
            pod == name && a.pod_uid.as_deref() == Some(uid.as_str())
        }
    }
}

/// The assignment `name`, its ConfigMap's version (`None` while it is still recorded
/// only on its worker Pod, whose UID it then takes), its task (read when `need_task`, or
/// when its slicing is not cached yet) and its task's slicing; only a record that
/// validates against its task is returned.
async fn load(
    state: &GatewayState,
    name: &str,
    need_task: bool,
) -> Result<(Assignment, Option<String>, Option<ComputeTask>, Slicing)> {
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
    // A result report needs only the slicing, which a task's UID fixes: one read of the
    // task per task, not one per report.
    let cached = state
        .slicings
        .lock()
        .ok()
        .and_then(|c| c.get(&a.task_uid).copied());
    let (task, slicing) = match cached {
        Some(s) if !need_task => (None, s),
        _ => {
            let task = Api::<ComputeTask>::namespaced(state.client.clone(), &a.task_namespace)
                .get_opt(&a.task)
                .await
                .map_err(|e| internal("reading a task", e))?
                .filter(|t| t.uid().as_deref() == Some(a.task_uid.as_str()))
                .ok_or_else(|| gone("the task is gone"))?;
            let slicing = slicing_of(state, &task)?;
            (Some(task), slicing)
        }
    };
    let of = TaskRef {
        namespace: &a.task_namespace,
        name: &a.task,
        uid: &a.task_uid,
        slicing: &slicing,
    };
    let known = |d: &str| state.devices.get(&ObjectRef::new(d)).is_some();
    if let Err(e) = validate(&a, name, &of, known) {
        tracing::warn!(assignment = name, error = %e, "refusing an invalid assignment record");
        return Err(not_found());
    }
    Ok((a, version, task, slicing))
}

/// The task's slicing, from a bounded cache (a task's spec, and so its slicing, never
/// changes under the same UID's work).
fn slicing_of(state: &GatewayState, task: &ComputeTask) -> Result<Slicing> {
    let uid = task.uid().unwrap_or_default();
    if let Ok(cache) = state.slicings.lock()
        && let Some(s) = cache.get(&uid)
    {
        return Ok(*s);
    }
    let s = slicer::slice(&task.spec).map_err(|_| gone("the task cannot be sliced"))?;
    if let Ok(mut cache) = state.slicings.lock() {
        if cache.len() >= 4096 {
            cache.clear();
        }
        cache.insert(uid, s);
    }
    Ok(s)
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
    let (a, _, task, slicing) = load(&state, &name, true).await?;
    let Some(task) = task else {
        return Err(ApiError::internal());
    };
    if !allowed(&who, &name, &a) {
        return Err(not_found());
    }
    if !matches!(a.state, State::Pending | State::Running) {
        return Err(gone(format!("the assignment is {:?}", a.state)));
    }
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
/// and change nothing, a different result for a completed fragment is a conflict.
pub async fn results(
    AxState(state): AxState<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<ResultsResponse>> {
    let req = protocol::decode_results(&super::routes::body(raw)?)?;
    let who = caller(&state, &headers, addr).await?;
    let api: Api<ConfigMap> = Api::namespaced(state.client.clone(), &state.config.namespace);
    // Optimistic concurrency: the task controller may mark the assignment lost meanwhile.
    for _ in 0..5 {
        let (mut a, version, _, slicing) = load(&state, &req.assignment, false).await?;
        if !allowed(&who, &req.assignment, &a) {
            return Err(not_found());
        }
        let now = Timestamp::now().as_millisecond();
        let mut accepted = 0;
        let mut mismatches = 0u32;
        for r in &req.results {
            // The worker's figure is only a claim: a fragment is worth what the slicer
            // says it costs.
            let mut r = r.clone();
            let cost = slicing.weight(r.fragment);
            let claimed = std::mem::replace(&mut r.work_units, cost);
            match a.record(r, now) {
                Ok(true) => {
                    accepted += 1;
                    if claimed != cost {
                        mismatches += 1;
                    }
                }
                Ok(false) => {}
                Err(ReportError::Closed(s)) => {
                    return Err(gone(format!("the assignment is {s:?}")));
                }
                Err(e @ ReportError::Conflicting(_)) => {
                    return Err(ApiError {
                        status: 409,
                        reason: "ConflictingResult",
                        message: e.to_string(),
                    });
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
            }));
        }
        let mut cm = record::to_config_map(&state.config.namespace, &a)
            .map_err(|e| internal("encoding an assignment", e))?;
        // An assignment recorded only on its Pod gets its ConfigMap with the first result.
        let written = match version {
            Some(v) => {
                cm.metadata.resource_version = Some(v);
                api.replace(&req.assignment, &PostParams::default(), &cm)
                    .await
            }
            None => api.create(&PostParams::default(), &cm).await,
        };
        match written {
            Ok(_) => {
                state.metrics.results.inc_by(u64::from(accepted));
                state
                    .metrics
                    .work_claim_mismatches
                    .inc_by(u64::from(mismatches));
                if mismatches > 0 {
                    tracing::warn!(assignment = %req.assignment, mismatches, "a worker claimed work units other than the slicer's cost");
                }
                return Ok(Json(ResultsResponse {
                    accepted,
                    completed,
                }));
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(internal("recording results", e)),
        }
    }
    Err(ApiError {
        status: 503,
        reason: "Busy",
        message: "the assignment changed repeatedly; retry".into(),
    })
}
