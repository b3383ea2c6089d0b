//! Answering challenges: after a compute-proof result is on record, the gateway names
//! rows; the worker recomputes each from the seeds, proves it into the commitment it
//! kept ([`Commitment`]), and posts the answers. The commitment is held only until then.

use crate::client::{Bearer, GatewayClient, GatewayError};
use zop_api::protocol::{FragmentChallenge, ProofsRequest, ProofsResponse, RowProof, encode_row};
use zop_kernels::compute_proof::challenge::{Commitment, RowRef};
use zop_kernels::fragment::hex;

/// The answers to `challenge` from `commitment`, on the wire.
pub fn answers(
    assignment: &str,
    commitment: &Commitment,
    challenge: &FragmentChallenge,
) -> Result<ProofsRequest, zop_kernels::compute_proof::ShapeError> {
    let rows: Vec<RowRef> = challenge
        .rows
        .iter()
        .map(|r| RowRef {
            product: r.product,
            row: r.row,
        })
        .collect();
    let answers = commitment
        .answer(&rows)?
        .into_iter()
        .map(|a| RowProof {
            product: a.at.product,
            row: a.at.row,
            values: encode_row(&a.values),
            row_proof: a.row_proof.iter().map(hex).collect(),
            product_proof: a.product_proof.iter().map(hex).collect(),
        })
        .collect();
    Ok(ProofsRequest {
        assignment: assignment.into(),
        fragment: challenge.fragment,
        answers,
    })
}

/// Computes the answers to `challenge` off the async threads.
pub async fn compute(
    assignment: &str,
    commitment: Commitment,
    challenge: FragmentChallenge,
) -> Result<ProofsRequest, GatewayError> {
    let name = assignment.to_string();
    crate::work::blocking(move || answers(&name, &commitment, &challenge))
        .await?
        .map_err(|e| GatewayError::Refused {
            status: 400,
            reason: "BadChallenge".into(),
            message: e.to_string(),
        })
}

/// Posts computed answers; the verdict.
pub async fn post(
    client: &GatewayClient,
    bearer: Bearer<'_>,
    req: &ProofsRequest,
) -> Result<ProofsResponse, GatewayError> {
    client.proofs(bearer, req).await
}
