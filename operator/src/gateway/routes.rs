//! The gateway's HTTP routes: registration with a Group Key, heartbeats with a device
//! token, and `whoami` for worker pods. Handlers decode and authorize first, then write
//! Devices and token Secrets with server-side apply (field manager `zop-gateway`).

use super::auth::{Principal, bearer};
use super::protocol::{self, ApiError, HeartbeatResponse, RegisterResponse};
use super::secrets::{self, GroupKey, KEY_PREFIX, Reject};
use super::{ClientAddr, GatewayState};
use crate::api::common::conditions;
use crate::api::device::{Benchmark, Device, DeviceStatus, Identification};
use crate::api::{DeviceClass, DevicePhase};
use crate::devices::plausibility::{self, Verdict};
use crate::labels;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

/// The field manager of the gateway's writes.
pub const FIELD_MANAGER: &str = "zop-gateway";

type Result<T> = std::result::Result<T, ApiError>;

pub(super) fn body(b: std::result::Result<Bytes, BytesRejection>) -> Result<Bytes> {
    b.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => ApiError {
            status: 413,
            reason: "PayloadTooLarge",
            message: "the request body exceeds the gateway's limit".into(),
        },
        other => ApiError::invalid("body", other),
    })
}

fn rate_limited(message: &str) -> ApiError {
    ApiError {
        status: 429,
        reason: "RateLimited",
        message: message.into(),
    }
}

/// Authenticates the bearer of a request from `addr` and charges the caller's rate
/// limit.
pub(super) async fn caller(
    state: &GatewayState,
    headers: &HeaderMap,
    addr: IpAddr,
) -> Result<Principal> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::unauthorized("Unauthorized", "present a token"))?;
    let who = state.auth.authenticate(token, addr).await?;
    state
        .limiter
        .check_key(&who.limit_key())
        .map_err(|_| rate_limited("too many requests for this caller; slow down"))?;
    Ok(who)
}

/// The Group Key a request presents, charged to its rate limit, and the keys it may be
/// (checked by `secrets::authorize`).
pub(super) fn group_key<'h>(
    state: &GatewayState,
    headers: &'h HeaderMap,
    addr: IpAddr,
) -> Result<(&'h str, Vec<GroupKey>)> {
    let key = bearer(headers)
        .filter(|k| k.starts_with(KEY_PREFIX))
        .ok_or_else(|| {
            ApiError::unauthorized(
                Reject::InvalidGroupKey.as_str(),
                "present a Group Key as the bearer token",
            )
        })?;
    state.auth.admit_lookup(addr)?;
    state
        .limiter
        .check_key(&secrets::hash(key))
        .map_err(|_| rate_limited("too many requests for this Group Key; slow down"))?;
    let keys = state
        .keys
        .state()
        .iter()
        .filter_map(|s| secrets::parse_key_secret(s))
        .collect();
    Ok((key, keys))
}

/// The refusal of a Group Key.
pub(super) fn key_refused(r: Reject) -> ApiError {
    ApiError {
        status: r.status(),
        reason: r.as_str(),
        message: match r {
            Reject::QuotaExceeded => "the Group Key's device quota is used up".into(),
            _ => "the Group Key is not valid".into(),
        },
    }
}

/// `POST /v1/register`.
pub async fn register(
    State(state): State<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RegisterResponse>)> {
    let outcome = register_inner(&state, addr, &headers, raw).await;
    match &outcome {
        Ok(_) => state.metrics.registration("accepted", "Registered"),
        Err(e) => state.metrics.registration("rejected", e.reason),
    }
    outcome
}

/// How long a registration this gateway made counts towards its key's quota while the
/// Device cache may not show it yet.
const RECENT_REGISTRATION: std::time::Duration = std::time::Duration::from_secs(120);

async fn register_inner(
    state: &GatewayState,
    addr: IpAddr,
    headers: &HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<RegisterResponse>)> {
    let (key, keys) = group_key(state, headers, addr)?;
    let (req, raw_hostname) = protocol::decode_registration(&body(raw)?)?;
    // One registration at a time, counting those the cache has not caught up with, so
    // concurrent registrations cannot overrun a key's quota.
    let mut recent = state.registrations.lock().await;
    recent.retain(|_, (_, at)| at.elapsed() < RECENT_REGISTRATION);
    let devices = state.devices.state();
    let in_use = |k: &GroupKey| {
        let mut names: std::collections::BTreeSet<String> = devices
            .iter()
            .filter(|d| {
                d.spec
                    .source
                    .agent
                    .as_ref()
                    .is_some_and(|a| a.group_key == k.name)
            })
            .filter(|d| {
                d.status
                    .as_ref()
                    .is_none_or(|s| s.phase != DevicePhase::Retired)
            })
            .map(|d| d.name_any())
            .collect();
        names.extend(
            recent
                .iter()
                .filter(|(_, (key, _))| *key == k.name)
                .map(|(device, _)| device.clone()),
        );
        names.len() as u32
    };
    let existing = |k: &GroupKey| {
        let name = secrets::agent_device_name(&k.provider, &req.hostname);
        devices.iter().find(|d| d.name_any() == name).cloned()
    };
    let key = secrets::authorize(&keys, key, Timestamp::now(), in_use, |k| {
        existing(k).is_some()
            || recent.contains_key(&secrets::agent_device_name(&k.provider, &req.hostname))
    })
    .map_err(key_refused)?;
    let name = secrets::agent_device_name(&key.provider, &req.hostname);
    let current = existing(key);
    // Another machine whose host name sanitizes to the same Device name must not take
    // over this one's Device and token.
    let claimed = current
        .as_ref()
        .and_then(|d| d.annotations().get(labels::AGENT_HOSTNAME).cloned());
    if claimed.as_ref().is_some_and(|h| *h != raw_hostname) {
        return Err(ApiError {
            status: 409,
            reason: "HostnameCollision",
            message: format!(
                "device {name} belongs to a machine with another host name; rename this host"
            ),
        });
    }
    let previous = current.and_then(|d| d.status.clone());
    let class = if req.identification.gpus.is_empty() {
        DeviceClass::Cpu
    } else {
        DeviceClass::Gpu
    };
    let api: Api<Device> = Api::all(state.client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let spec = json!({
        "apiVersion": "zoptoken.io/v1alpha1",
        "kind": "Device",
        "metadata": {
            "name": name,
            "labels": { labels::MANAGED_BY: labels::MANAGER },
            "annotations": { labels::AGENT_HOSTNAME: raw_hostname },
        },
        "spec": {
            "provider": key.provider,
            "source": { "agent": { "groupKey": key.name, "hostname": req.hostname } },
            "class": class,
        },
    });
    api.patch(&name, &pp, &Patch::Apply(&spec))
        .await
        .map_err(|e| internal("creating the device", e))?;
    recent.insert(name.clone(), (key.name.clone(), std::time::Instant::now()));
    drop(recent);
    write_status(
        state,
        &name,
        Some(&req.identification),
        req.benchmark.as_ref(),
        previous.as_ref(),
        0,
        0,
    )
    .await?;
    let (token, hash) = secrets::generate(&format!("{}{name}_", secrets::TOKEN_PREFIX))
        .map_err(|_| ApiError::internal())?;
    let secret = secrets::token_secret(&name, &state.config.namespace, &hash);
    Api::<Secret>::namespaced(state.client.clone(), &state.config.namespace)
        .patch(
            &secrets::token_secret_name(&name),
            &pp,
            &Patch::Apply(&secret),
        )
        .await
        .map_err(|e| internal("storing the device token", e))?;
    tracing::info!(device = %name, key = %key.name, "agent registered");
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            device: name,
            token,
            heartbeat_seconds: state.config.heartbeat_seconds,
        }),
    ))
}

/// `POST /v1/heartbeat`: an agent's liveness, load and (optionally) fresh benchmark.
/// Only a device token may heartbeat: a worker Pod never writes its node's Device, whose
/// status the operator derives itself.
pub async fn heartbeat(
    State(state): State<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<HeartbeatResponse>> {
    // Bad input is refused before it costs a lookup.
    let req = protocol::decode_heartbeat(&body(raw)?)?;
    let Principal::Device(device) = caller(&state, &headers, addr).await? else {
        return Err(ApiError::forbidden(
            "Forbidden",
            "worker pods do not heartbeat; the operator measures cluster devices",
        ));
    };
    let current = state.devices.get(&ObjectRef::new(&device));
    let status = current.as_ref().and_then(|d| d.status.clone());
    let identification = status.as_ref().and_then(|s| s.identification.clone());
    // Only a fresh benchmark re-applies the identification (for its plausibility check).
    write_status(
        &state,
        &device,
        identification.as_ref().filter(|_| req.benchmark.is_some()),
        req.benchmark.as_ref(),
        status.as_ref(),
        req.load,
        req.running_fragments,
    )
    .await?;
    state.metrics.heartbeats.inc();
    Ok(Json(HeartbeatResponse {
        device,
        heartbeat_seconds: state.config.heartbeat_seconds,
    }))
}

/// `GET /v1/whoami`: the authenticated principal, for workers to check their credentials.
pub async fn whoami(
    State(state): State<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>> {
    Ok(Json(match caller(&state, &headers, addr).await? {
        Principal::Device(d) => json!({ "kind": "Device", "device": d }),
        Principal::WorkerPod { pod, uid, node } => {
            json!({ "kind": "WorkerPod", "pod": pod, "uid": uid, "node": node })
        }
    }))
}

/// The field manager of heartbeat fields, apart from [`FIELD_MANAGER`]'s identification
/// and benchmark: under server-side apply a manager's omitted fields are removed, so a
/// heartbeat must not be the owner of what only a registration or a benchmark sends.
pub const HEARTBEAT_MANAGER: &str = "zop-gateway-heartbeat";

/// Writes the gateway-owned status fields: heartbeat and load always; the
/// identification, benchmark and its plausibility verdict when an identification is
/// given (registration, or a heartbeat carrying a fresh benchmark).
async fn write_status(
    state: &GatewayState,
    device: &str,
    identification: Option<&Identification>,
    benchmark: Option<&Benchmark>,
    previous: Option<&DeviceStatus>,
    load: u32,
    running: u32,
) -> Result<()> {
    let now = Timestamp::now();
    if let Some(id) = identification {
        let mut status = json!({ "identification": id });
        if let Some(b) = benchmark {
            plausibility_fields(&mut status, id, b, previous, now);
        } else if let Some(p) = previous {
            // Re-applying what this manager owns keeps it.
            if let Some(b) = &p.benchmark {
                status["benchmark"] = json!(b);
            }
            let plausible: Vec<_> = p
                .conditions
                .iter()
                .filter(|c| c.type_ == conditions::PLAUSIBLE)
                .collect();
            if !plausible.is_empty() {
                status["conditions"] = json!(plausible);
            }
        }
        apply_status(state, device, FIELD_MANAGER, status).await?;
    }
    let beat = json!({
        "lastHeartbeat": now.to_string(),
        "load": load,
        "runningFragments": running,
    });
    apply_status(state, device, HEARTBEAT_MANAGER, beat).await
}

fn plausibility_fields(
    status: &mut serde_json::Value,
    id: &Identification,
    b: &Benchmark,
    previous: Option<&DeviceStatus>,
    now: Timestamp,
) {
    let reference =
        previous.and_then(|p| Some((p.identification.as_ref()?, p.benchmark.as_ref()?)));
    let verdict = plausibility::check(reference, id, b);
    benchmark_fields(status, verdict, id, b, previous, now);
}

/// Writes a benchmark and its verdict into `status`: the HardwarePlausible condition,
/// and the benchmark itself, stamped with the time and the claimed driver. The last
/// plausible benchmark stays the reference, so one bad run cannot replace it.
pub(super) fn benchmark_fields(
    status: &mut serde_json::Value,
    verdict: Verdict,
    id: &Identification,
    b: &Benchmark,
    previous: Option<&DeviceStatus>,
    now: Timestamp,
) {
    let mut b = b.clone();
    b.measured_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    b.driver_version = id
        .gpus
        .first()
        .map(|g| g.driver_version.clone())
        .filter(|d| !d.is_empty());
    let kept = previous.and_then(|p| p.benchmark.as_ref());
    let (cond_status, reason, message) = match verdict {
        Verdict::Plausible => (
            "True",
            "Plausible",
            "the benchmark and fingerprint match the claimed hardware".to_string(),
        ),
        Verdict::Implausible { reason, message } => ("False", reason, message),
    };
    match kept {
        // The driver is the one of the last run, kept or not: a driver change is
        // measured once, not again on every pass while the claim stays contradicted.
        Some(old) if cond_status == "False" => {
            let mut old = old.clone();
            old.driver_version = b.driver_version.clone();
            status["benchmark"] = json!(old);
        }
        _ => status["benchmark"] = json!(b),
    }
    let old = previous.and_then(|p| {
        p.conditions
            .iter()
            .find(|c| c.type_ == conditions::PLAUSIBLE)
    });
    let since = old
        .filter(|c| c.status == cond_status)
        .map_or_else(|| now.to_string(), |c| c.last_transition_time.0.to_string());
    status["conditions"] = json!([{
        "type": conditions::PLAUSIBLE,
        "status": cond_status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }]);
}

pub(super) async fn apply_status(
    state: &GatewayState,
    device: &str,
    manager: &str,
    status: serde_json::Value,
) -> Result<()> {
    let patch = json!({ "apiVersion": "zoptoken.io/v1alpha1", "kind": "Device", "status": status });
    Api::<Device>::all(state.client.clone())
        .patch_status(
            device,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| internal("updating the device status", e))?;
    Ok(())
}

pub(super) fn internal(what: &str, e: kube::Error) -> ApiError {
    tracing::warn!(error = %e, "{what} failed");
    ApiError::internal()
}
