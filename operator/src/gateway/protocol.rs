//! The gateway's side of its wire format: the error it answers with (a stable `reason`
//! and a message) and the decoders that turn untrusted bytes into validated requests, or
//! an error naming the field. The bodies themselves are `zop_api::protocol`, which the
//! worker shares.

use crate::api::device::{Benchmark, GpuInfo, Identification};
pub use crate::api::protocol::*;
use axum::http::StatusCode;
use zop_kernels::compute_proof::challenge::{RowAnswer, RowRef};
use zop_kernels::merkle::Hash;

/// Decodes and validates a results report.
pub fn decode_results(bytes: &[u8]) -> Result<ResultsRequest, ApiError> {
    let req: ResultsRequest = decode_json(bytes)?;
    assignment_name("assignment", &req.assignment)?;
    if req.results.is_empty() || req.results.len() > MAX_RESULTS {
        return Err(ApiError::invalid("results", "must hold 1 to 10000 results"));
    }
    for (i, r) in req.results.iter().enumerate() {
        let hex = r.digest.len() == 64
            && r.digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(ApiError::invalid(
                &format!("results[{i}].digest"),
                "must be 64 lowercase hex characters",
            ));
        }
    }
    Ok(req)
}

/// Most siblings in one Merkle proof: a tree of 2⁶⁴ leaves needs 64.
const MAX_PROOF_LEN: usize = 64;

/// Decodes and validates challenge answers into the kernels' form.
pub fn decode_proofs(bytes: &[u8]) -> Result<(ProofsRequest, Vec<RowAnswer>), ApiError> {
    let req: ProofsRequest = decode_json(bytes)?;
    assignment_name("assignment", &req.assignment)?;
    if req.answers.is_empty() || req.answers.len() > MAX_CHALLENGES as usize {
        return Err(ApiError::invalid(
            "answers",
            format!("must hold 1 to {MAX_CHALLENGES} answers"),
        ));
    }
    let mut out = Vec::with_capacity(req.answers.len());
    for (i, a) in req.answers.iter().enumerate() {
        // Empty for a leaf's answer (the verifier recomputes the leaf itself).
        let values = decode_row(&a.values)
            .filter(|v| v.len() <= crate::api::task::MAX_DIMENSION as usize)
            .ok_or_else(|| {
                ApiError::invalid(
                    &format!("answers[{i}].values"),
                    "must be base64 of 0 to 8192 little-endian int32 values",
                )
            })?;
        out.push(RowAnswer {
            at: RowRef {
                product: a.product,
                row: a.row,
            },
            values,
            row_proof: hashes(&format!("answers[{i}].rowProof"), &a.row_proof)?,
            product_proof: hashes(&format!("answers[{i}].productProof"), &a.product_proof)?,
        });
    }
    Ok((req, out))
}

fn hashes(field: &str, list: &[String]) -> Result<Vec<Hash>, ApiError> {
    if list.len() > MAX_PROOF_LEN {
        return Err(ApiError::invalid(field, "has more than 64 siblings"));
    }
    list.iter()
        .map(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out)
                .map_err(|_| ApiError::invalid(field, "siblings must be 64 hex characters"))?;
            Ok(out)
        })
        .collect()
}

/// Checks an assignment name: a DNS-1123 name of at most 253 characters.
pub fn assignment_name(field: &str, s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be a lowercase DNS name of at most 253 characters",
        ))
    }
}

/// A failed request: status, reason and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable reason.
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    /// 400 InvalidRequest naming `field`.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self {
            status: 400,
            reason: "InvalidRequest",
            message: format!("{field}: {why}"),
        }
    }

    /// 401 with a reason.
    pub fn unauthorized(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: 401,
            reason,
            message: message.into(),
        }
    }

    /// 403 with a reason: the caller is known and may not do this.
    pub fn forbidden(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: 403,
            reason,
            message: message.into(),
        }
    }

    /// 500 Internal, without leaking details.
    pub fn internal() -> Self {
        Self {
            status: 500,
            reason: "Internal",
            message: "internal error; see the operator log".into(),
        }
    }

    /// The body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            reason: self.reason.into(),
            message: self.message.clone(),
        }
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (self.status_code(), axum::Json(self.body())).into_response()
    }
}

const MAX_TEXT: usize = 253;
const MAX_GPUS: usize = 16;

/// Decodes and validates a registration.
pub fn decode_register(bytes: &[u8]) -> Result<RegisterRequest, ApiError> {
    decode_registration(bytes).map(|(req, _)| req)
}

/// [`decode_register`], also returning the host name as the agent sent it (trimmed), which
/// tells apart two machines whose names sanitize alike.
pub fn decode_registration(bytes: &[u8]) -> Result<(RegisterRequest, String), ApiError> {
    let mut req: RegisterRequest = decode_json(bytes)?;
    let raw = req.hostname.trim().to_string();
    text("hostname", &raw)?;
    req.hostname = sanitize_hostname(&raw)?;
    validate_identification(&req.identification)?;
    if let Some(b) = &req.benchmark {
        validate_benchmark("benchmark", b)?;
    }
    Ok((req, raw))
}

/// Decodes and validates a heartbeat.
pub fn decode_heartbeat(bytes: &[u8]) -> Result<HeartbeatRequest, ApiError> {
    let req: HeartbeatRequest = decode_json(bytes)?;
    if req.load > 100 {
        return Err(ApiError::invalid("load", "must be between 0 and 100"));
    }
    if req.running_fragments > 100_000 {
        return Err(ApiError::invalid(
            "runningFragments",
            "must be at most 100000",
        ));
    }
    if let Some(b) = &req.benchmark {
        validate_benchmark("benchmark", b)?;
    }
    Ok(req)
}

/// Decodes and validates a node benchmark report.
pub fn decode_benchmark_report(bytes: &[u8]) -> Result<BenchmarkReport, ApiError> {
    let req: BenchmarkReport = decode_json(bytes)?;
    validate_benchmark("benchmark", &req.benchmark)?;
    if req.gpus.len() > MAX_GPUS {
        return Err(ApiError::invalid("gpus", "at most 16 GPUs"));
    }
    for (i, g) in req.gpus.iter().enumerate() {
        validate_gpu("", i, g)?;
    }
    Ok(req)
}

pub(super) fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json names the path only implicitly; its message carries the field name.
        ApiError::invalid("body", e)
    })
}

/// Lowercases and maps anything outside `[a-z0-9-]` to `-`, as a DNS-1123 label.
pub fn sanitize_hostname(raw: &str) -> Result<String, ApiError> {
    let s: String = raw
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() || s.len() > 63 {
        return Err(ApiError::invalid(
            "hostname",
            "must have 1 to 63 letters, digits or dashes",
        ));
    }
    Ok(s)
}

fn text(field: &str, s: &str) -> Result<(), ApiError> {
    if s.len() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must be at most 253 printable characters",
        ));
    }
    Ok(())
}

fn validate_identification(id: &Identification) -> Result<(), ApiError> {
    for (field, v) in [
        ("identification.deviceType", &id.device_type),
        ("identification.os", &id.os),
        ("identification.osVersion", &id.os_version),
        ("identification.kernelVersion", &id.kernel_version),
        ("identification.architecture", &id.architecture),
    ] {
        text(field, v)?;
    }
    if id.cpu_cores == 0 || id.cpu_cores > 4096 {
        return Err(ApiError::invalid(
            "identification.cpuCores",
            "must be between 1 and 4096",
        ));
    }
    if id.memory_mib > 1 << 30 {
        return Err(ApiError::invalid(
            "identification.memoryMiB",
            "is implausibly large",
        ));
    }
    if id.gpus.len() > MAX_GPUS {
        return Err(ApiError::invalid("identification.gpus", "at most 16 GPUs"));
    }
    for (i, g) in id.gpus.iter().enumerate() {
        validate_gpu("identification.", i, g)?;
    }
    for (field, v) in [
        (
            "identification.runtime.containerRuntime",
            &id.runtime.container_runtime,
        ),
        (
            "identification.runtime.kubeletVersion",
            &id.runtime.kubelet_version,
        ),
        (
            "identification.runtime.workerVersion",
            &id.runtime.worker_version,
        ),
    ] {
        text(field, v.as_deref().unwrap_or_default())?;
    }
    if id.runtime.cuda_libraries.len() > 4 {
        return Err(ApiError::invalid(
            "identification.runtime.cudaLibraries",
            "at most 4 libraries",
        ));
    }
    for (i, l) in id.runtime.cuda_libraries.iter().enumerate() {
        text(&format!("identification.runtime.cudaLibraries[{i}]"), l)?;
    }
    Ok(())
}

fn validate_gpu(prefix: &str, i: usize, g: &GpuInfo) -> Result<(), ApiError> {
    let f = |name: &str| format!("{prefix}gpus[{i}].{name}");
    if g.model.is_empty() {
        return Err(ApiError::invalid(&f("model"), "must not be empty"));
    }
    text(&f("model"), &g.model)?;
    text(&f("computeCapability"), &g.compute_capability)?;
    text(&f("driverVersion"), &g.driver_version)?;
    text(&f("cudaVersion"), &g.cuda_version)?;
    if g.vram_mib > 1 << 24 {
        return Err(ApiError::invalid(&f("vramMiB"), "is implausibly large"));
    }
    Ok(())
}

fn validate_benchmark(field: &str, b: &Benchmark) -> Result<(), ApiError> {
    if b.fingerprint.len() > 128 || zop_kernels::fingerprint::decode(&b.fingerprint).is_none() {
        return Err(ApiError::invalid(
            &format!("{field}.fingerprint"),
            "must be a v1 fingerprint",
        ));
    }
    if b.score > 1 << 40 {
        return Err(ApiError::invalid(
            &format!("{field}.score"),
            "is implausibly large",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn register(patch: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = json!({
            "hostname": "Alice-Workstation.local",
            "identification": { "deviceType": "workstation", "os": "linux", "cpuCores": 8, "memoryMiB": 16000 },
            "benchmark": { "score": 50, "fingerprint": "v1:4,8", "memoryBandwidthMBps": 9000 },
        });
        patch(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    fn field_of(err: ApiError) -> String {
        err.message
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn a_valid_registration_decodes_with_a_sanitized_hostname() {
        let r = decode_register(&register(|_| {})).unwrap();
        assert_eq!(r.hostname, "alice-workstation-local");
        assert_eq!(r.identification.cpu_cores, 8);
    }

    #[test]
    fn bad_fields_are_named() {
        type Patch = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(Patch, &str)> = vec![
            (Box::new(|v| v["hostname"] = json!("...")), "hostname"),
            (
                Box::new(|v| v["identification"]["cpuCores"] = json!(0)),
                "identification.cpuCores",
            ),
            (
                Box::new(|v| v["identification"]["os"] = json!("x".repeat(300))),
                "identification.os",
            ),
            (
                Box::new(|v| v["identification"]["gpus"] = json!([{ "model": "", "vramMiB": 1 }])),
                "identification.gpus[0].model",
            ),
            (
                Box::new(|v| v["benchmark"]["fingerprint"] = json!("zzz")),
                "benchmark.fingerprint",
            ),
            (
                Box::new(|v| {
                    v["identification"]["runtime"]["cudaLibraries"] =
                        json!(["a", "b", "c", "d", "e"])
                }),
                "identification.runtime.cudaLibraries",
            ),
            (
                Box::new(|v| {
                    v["identification"]["runtime"]["cudaLibraries"] = json!(["x".repeat(300)])
                }),
                "identification.runtime.cudaLibraries[0]",
            ),
        ];
        for (patch, field) in cases {
            let err = decode_register(&register(patch)).unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(err.reason, "InvalidRequest");
            assert_eq!(field_of(err), field);
        }
    }

    #[test]
    fn heartbeat_load_is_bounded() {
        assert!(decode_heartbeat(br#"{"load": 40, "runningFragments": 2}"#).is_ok());
        assert_eq!(
            field_of(decode_heartbeat(br#"{"load": 101}"#).unwrap_err()),
            "load"
        );
    }

    fn proofs(patch: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut v = json!({
            "assignment": "zop-abc-0-0",
            "fragment": 3,
            "answers": [{
                "product": 0, "row": 5,
                "values": encode_row(&[1, -2, i32::MAX, i32::MIN]),
                "rowProof": ["ab".repeat(32)],
                "productProof": [],
            }],
        });
        patch(&mut v);
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn answers_decode_into_the_kernels_form() {
        let (req, answers) = decode_proofs(&proofs(|_| {})).unwrap();
        assert_eq!(req.fragment, 3);
        assert_eq!(answers[0].at, RowRef { product: 0, row: 5 });
        assert_eq!(answers[0].values, [1, -2, i32::MAX, i32::MIN]);
        assert_eq!(answers[0].row_proof, [[0xab; 32]]);
    }

    #[test]
    fn bad_answers_are_named() {
        type Patch = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(Patch, &str)> = vec![
            (Box::new(|v| v["assignment"] = json!("A B")), "assignment"),
            (Box::new(|v| v["answers"] = json!([])), "answers"),
            (
                Box::new(|v| v["answers"][0]["values"] = json!("not base64!")),
                "answers[0].values",
            ),
            (
                Box::new(|v| v["answers"][0]["values"] = json!("AAA=")),
                "answers[0].values",
            ),
            (
                Box::new(|v| v["answers"][0]["values"] = json!(encode_row(&vec![0; 8193]))),
                "answers[0].values",
            ),
            (
                Box::new(|v| v["answers"][0]["rowProof"] = json!(["zz"])),
                "answers[0].rowProof",
            ),
            (
                Box::new(|v| v["answers"][0]["productProof"] = json!(vec!["00".repeat(32); 65])),
                "answers[0].productProof",
            ),
        ];
        for (patch, field) in cases {
            let err = decode_proofs(&proofs(patch)).unwrap_err();
            assert_eq!((err.status, err.reason), (400, "InvalidRequest"));
            assert_eq!(field_of(err), field);
        }
        let many = proofs(|v| {
            let one = v["answers"][0].clone();
            v["answers"] = json!(vec![one; MAX_CHALLENGES as usize + 1]);
        });
        assert_eq!(field_of(decode_proofs(&many).unwrap_err()), "answers");
    }

    #[test]
    fn malformed_json_is_an_invalid_request() {
        let err = decode_register(b"{not json").unwrap_err();
        assert_eq!((err.status, err.reason), (400, "InvalidRequest"));
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_register(&bytes);
            let _ = decode_heartbeat(&bytes);
            let _ = decode_results(&bytes);
            let _ = decode_proofs(&bytes);
        }

        #[test]
        fn results_decoder_never_panics_and_names_the_field(
            name in ".{0,300}", fragment in any::<u32>(), digest in ".{0,70}", units in any::<u64>(),
        ) {
            let v = json!({ "assignment": name, "results": [{ "fragment": fragment, "digest": digest, "workUnits": units, "elapsedMs": 1 }] });
            if let Err(e) = decode_results(&serde_json::to_vec(&v).unwrap()) {
                prop_assert!(e.message.starts_with("assignment") || e.message.starts_with("results[0].digest") || e.message.starts_with("body"));
            }
        }

        #[test]
        fn decoders_never_panic_on_arbitrary_field_values(
            host in ".{0,80}", cores in any::<u32>(), mem in any::<u64>(), load in any::<u32>(),
            model in ".{0,40}", vram in any::<u64>(), fp in ".{0,40}", score in any::<u64>(),
        ) {
            let v = json!({
                "hostname": host,
                "identification": { "deviceType": "x", "os": "linux", "cpuCores": cores, "memoryMiB": mem,
                    "gpus": [{ "model": model, "vramMiB": vram }] },
                "benchmark": { "score": score, "fingerprint": fp },
            });
            let _ = decode_register(&serde_json::to_vec(&v).unwrap());
            let h = json!({ "load": load, "benchmark": { "score": score, "fingerprint": fp } });
            let _ = decode_heartbeat(&serde_json::to_vec(&h).unwrap());
        }
    }
}
