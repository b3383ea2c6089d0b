//! Providers' own ledger requests, authenticated by a Group Key: `GET /v1/ledger` reads
//! the key's provider's account, `POST /v1/ledger` asks for a withdrawal, a bond or an
//! unbond. The provider is always the key's; the body cannot name another. A request is
//! checked against the balance the verified chain gives now, then stored as a ledger
//! request (`controller::settlement::requests`) under the id `<provider>.<id>`; the
//! settlement controller checks it again and records it in the next epoch. The same id
//! again is the same request: it is recorded, and paid, at most once. Releasing or
//! forfeiting held rewards stays an admin's decision (`kubectl zop ledger`).

use super::protocol::ApiError;
use super::routes::{body, group_key, key_refused};
use super::secrets::{self, GroupKey};
use super::{ClientAddr, GatewayState};
use crate::api::protocol::{LedgerAccount, LedgerRequest, LedgerRequestState};
use crate::api::settlement::{AccountOperation, OperationKind};
use crate::controller::settlement::{read_ledger, requests};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use k8s_openapi::jiff::Timestamp;
use std::net::IpAddr;
use std::sync::Arc;

type Result<T> = std::result::Result<T, ApiError>;

/// Longest provider-chosen id.
const MAX_ID: usize = 40;
/// Longest withdrawal destination.
const MAX_DESTINATION: usize = 256;

/// The provider of a valid Group Key (quota aside: asking the ledger adds no device).
fn provider(state: &GatewayState, headers: &HeaderMap, addr: IpAddr) -> Result<GroupKey> {
    let (key, keys) = group_key(state, headers, addr)?;
    secrets::authorize(&keys, key, Timestamp::now(), |_| 0, |_| true)
        .cloned()
        .map_err(key_refused)
}

/// Decodes and checks a request, naming the field at fault; the operation it stands for,
/// for `provider`.
pub fn decode(bytes: &[u8], provider: &str) -> Result<AccountOperation> {
    let req: LedgerRequest = super::protocol::decode_json(bytes)?;
    let id_ok = !req.id.is_empty()
        && req.id.len() <= MAX_ID
        && req
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !req.id.starts_with('-')
        && !req.id.ends_with('-');
    if !id_ok {
        return Err(ApiError::invalid(
            "id",
            format!(
                "must be 1 to {MAX_ID} of a-z, 0-9 and '-', starting and ending with a letter or digit"
            ),
        ));
    }
    match req.kind {
        OperationKind::Withdraw | OperationKind::Bond | OperationKind::Unbond => {}
        OperationKind::Release | OperationKind::Forfeit => {
            return Err(ApiError::forbidden(
                "AdminOnly",
                "kind: releasing or forfeiting held rewards is an admin's decision (kubectl zop ledger)",
            ));
        }
    }
    if req.amount.0 == 0 {
        return Err(ApiError::invalid(
            "amount",
            "must be more than 0 base units",
        ));
    }
    let destination = match (req.kind, req.destination) {
        (OperationKind::Withdraw, Some(d)) => {
            let d = d.trim().to_string();
            if d.is_empty() || d.len() > MAX_DESTINATION || d.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "destination",
                    format!("must be 1 to {MAX_DESTINATION} printable characters"),
                ));
            }
            Some(d)
        }
        (OperationKind::Withdraw, None) => {
            return Err(ApiError::invalid("destination", "a withdrawal needs one"));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "destination",
                "only a withdrawal has one",
            ));
        }
        (_, None) => None,
    };
    Ok(AccountOperation {
        id: format!("{provider}.{}", req.id),
        provider: provider.to_string(),
        kind: req.kind,
        amount: req.amount,
        destination,
    })
}

fn ledger_unavailable(e: anyhow::Error) -> ApiError {
    tracing::warn!(error = %format!("{e:#}"), "reading the ledger for a provider failed");
    ApiError {
        status: 503,
        reason: "LedgerUnavailable",
        message: "the ledger cannot be read now; try again later".into(),
    }
}

/// `POST /v1/ledger`.
pub async fn request(
    State(state): State<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
    raw: std::result::Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<LedgerRequestState>)> {
    let key = provider(&state, &headers, addr)?;
    let op = decode(&body(raw)?, &key.provider)?;
    let (_, ledger) = read_ledger(&state.client)
        .await
        .map_err(ledger_unavailable)?;
    let recorded = |state: &str| LedgerRequestState {
        id: op.id.clone(),
        kind: op.kind,
        amount: op.amount,
        state: state.into(),
        reason: None,
    };
    if ledger.recorded.contains(&op.id) {
        return Ok((StatusCode::OK, Json(recorded("Recorded"))));
    }
    let (epoch, _) = ledger.next();
    ledger.check(epoch, &op).map_err(|e| ApiError {
        status: 409,
        reason: "Refused",
        message: format!("amount: {e}"),
    })?;
    let fresh = requests::submit(&state.client, &state.config.namespace, &op)
        .await
        .map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "storing a ledger request failed");
            ApiError::internal()
        })?;
    if fresh {
        tracing::info!(id = %op.id, kind = ?op.kind, amount = op.amount.0, "a provider asked the ledger");
    }
    Ok((StatusCode::ACCEPTED, Json(recorded("Pending"))))
}

/// `GET /v1/ledger`.
pub async fn account(
    State(state): State<Arc<GatewayState>>,
    Extension(ClientAddr(addr)): Extension<ClientAddr>,
    headers: HeaderMap,
) -> Result<Json<LedgerAccount>> {
    let key = provider(&state, &headers, addr)?;
    let (specs, ledger) = read_ledger(&state.client)
        .await
        .map_err(ledger_unavailable)?;
    let stored = requests::list(&state.client, &state.config.namespace)
        .await
        .map_err(ledger_unavailable)?;
    let a = ledger
        .accounts
        .get(&key.provider)
        .cloned()
        .unwrap_or_default();
    Ok(Json(LedgerAccount {
        provider: key.provider.clone(),
        balance: a.balance(),
        rewards: a.rewards,
        withdrawn: a.withdrawn,
        staked: a.staked,
        unbonding: a.unbonding_total(),
        held: a.held,
        epoch: specs.last().map_or(0, |s| s.epoch),
        requests: stored
            .into_iter()
            .filter(|s| s.op.provider == key.provider)
            .map(|s| LedgerRequestState {
                state: match (&s.refused, ledger.recorded.contains(&s.op.id)) {
                    (_, true) => "Recorded",
                    (Some(_), false) => "Refused",
                    (None, false) => "Pending",
                }
                .into(),
                reason: s.refused,
                id: s.op.id,
                kind: s.op.kind,
                amount: s.op.amount,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(body: serde_json::Value) -> Result<AccountOperation> {
        decode(body.to_string().as_bytes(), "alice")
    }

    #[test]
    fn a_request_is_the_keys_providers_and_its_id_is_namespaced_by_it() {
        let op = req(serde_json::json!({
            "id": "payout-1", "kind": "Withdraw", "amount": 5, "destination": " wallet:abc "
        }))
        .unwrap();
        assert_eq!(op.id, "alice.payout-1");
        assert_eq!(op.provider, "alice");
        assert_eq!(op.destination.as_deref(), Some("wallet:abc"));
        let bond = req(serde_json::json!({ "id": "b", "kind": "Bond", "amount": 1 })).unwrap();
        assert_eq!((bond.kind, bond.amount.0), (OperationKind::Bond, 1));
    }

    #[test]
    fn bad_requests_name_the_field_and_admin_kinds_are_refused() {
        let field = |body: serde_json::Value| {
            let e = req(body).unwrap_err();
            assert_eq!(e.status, 400, "{e}");
            e.message.split(':').next().unwrap().to_string()
        };
        let w = |id: &str, amount: u64, dest: Option<&str>| serde_json::json!({ "id": id, "kind": "Withdraw", "amount": amount, "destination": dest });
        assert_eq!(field(w("", 1, Some("x"))), "id");
        assert_eq!(field(w("UPPER", 1, Some("x"))), "id");
        assert_eq!(field(w("a.b", 1, Some("x"))), "id");
        assert_eq!(field(w("-a", 1, Some("x"))), "id");
        assert_eq!(field(w(&"a".repeat(41), 1, Some("x"))), "id");
        assert_eq!(field(w("a", 0, Some("x"))), "amount");
        assert_eq!(field(w("a", 1, None)), "destination");
        assert_eq!(field(w("a", 1, Some("  "))), "destination");
        assert_eq!(field(w("a", 1, Some("a\nb"))), "destination");
        assert_eq!(
            field(
                serde_json::json!({ "id": "a", "kind": "Bond", "amount": 1, "destination": "x" })
            ),
            "destination"
        );
        // Another provider cannot be named, and unknown fields are refused.
        let e =
            req(serde_json::json!({ "id": "a", "kind": "Bond", "amount": 1, "provider": "bob" }))
                .unwrap_err();
        assert_eq!(e.status, 400);
        for kind in ["Release", "Forfeit"] {
            let e = req(serde_json::json!({ "id": "a", "kind": kind, "amount": 1 })).unwrap_err();
            assert_eq!((e.status, e.reason), (403, "AdminOnly"));
        }
        assert_eq!(
            req(serde_json::json!({ "amount": -1 })).unwrap_err().status,
            400
        );
    }
}
