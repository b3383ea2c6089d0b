//! Answering challenges: after a result is on record, the gateway names what to prove.
//! For compute-proof, rows: the worker recomputes each from the seeds and proves it into
//! the row digests it kept. For data processing and inference, leaves (`row` is the
//! chunk or sample): the worker sends each leaf's Merkle proof, and the operator
//! recomputes the leaf itself. What was kept ([`Committed`]) is held only until then.

use crate::client::{Bearer, GatewayClient, GatewayError};
use zop_api::protocol::{FragmentChallenge, ProofsRequest, ProofsResponse, RowProof, encode_row};
use zop_kernels::compute_proof::challenge::{Commitment, RowRef};
use zop_kernels::fragment::{Committed, hex};
use zop_kernels::spot;

/// The answers to `challenge` from what was kept, on the wire.
pub fn answers(
    assignment: &str,
    committed: &Committed,
    challenge: &FragmentChallenge,
) -> Result<ProofsRequest, String> {
    let answers = match committed {
        Committed::Rows(commitment) => {
            row_answers(commitment, challenge).map_err(|e| e.to_string())?
        }
        Committed::Leaves(tree) => {
            let drawn: Vec<u64> = challenge.rows.iter().map(|r| u64::from(r.row)).collect();
            let proofs = spot::answer(tree, &drawn).ok_or_else(|| {
                format!("a challenged leaf is not among the {}", tree.leaf_count())
            })?;
            proofs
                .into_iter()
                .map(|(i, proof)| RowProof {
                    product: 0,
                    row: i as u32,
                    values: String::new(),
                    row_proof: Vec::new(),
                    product_proof: proof.iter().map(hex).collect(),
                })
                .collect()
        }
    };
    Ok(ProofsRequest {
        assignment: assignment.into(),
        fragment: challenge.fragment,
        answers,
    })
}

fn row_answers(
    commitment: &Commitment,
    challenge: &FragmentChallenge,
) -> Result<Vec<RowProof>, zop_kernels::compute_proof::ShapeError> {
    let rows: Vec<RowRef> = challenge
        .rows
        .iter()
        .map(|r| RowRef {
            product: r.product,
            row: r.row,
        })
        .collect();
    Ok(commitment
        .answer(&rows)?
        .into_iter()
        .map(|a| RowProof {
            product: a.at.product,
            row: a.at.row,
            values: encode_row(&a.values),
            row_proof: a.row_proof.iter().map(hex).collect(),
            product_proof: a.product_proof.iter().map(hex).collect(),
        })
        .collect())
}

/// Computes the answers to `challenge` off the async threads.
pub async fn compute(
    assignment: &str,
    committed: Committed,
    challenge: FragmentChallenge,
) -> Result<ProofsRequest, GatewayError> {
    let name = assignment.to_string();
    crate::work::blocking(move || answers(&name, &committed, &challenge))
        .await?
        .map_err(|e| GatewayError::Refused {
            status: 400,
            reason: "BadChallenge".into(),
            message: e,
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
