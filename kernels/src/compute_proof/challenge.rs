//! Challenge and response for a compute-proof fragment, after its commitment.
//!
//! The worker commits to the fragment's root first ([`Commitment::root`]). The verifier
//! then names rows ([`RowRef`]: a product of the fragment and a row of it), drawn from
//! randomness the worker cannot predict. The worker answers each with the row's values,
//! the row's Merkle proof in its product's tree, and the product root's proof in the
//! fragment's tree ([`Commitment::answer`]).
//!
//! [`check`] binds the answers to the commitment and the commitment to the math:
//! - each revealed row hashes to a leaf that proves into the committed root;
//! - each revealed row is the true row of `A·B` by Freivalds' check: with `r` drawn by
//!   the verifier, `C[i,:]·r == A[i,:]·(B·r)`. `B·r` costs `n²` once per challenged
//!   product, each row `2n` after that, instead of the `n²` a recomputed row costs.
//!
//! `r` is uniform in `[0, 2³¹)`. `B·r` is exact in `i64` (`|B·r| < 2⁷·2³¹·2¹³`), which lets
//! the compiler use 32×32→64-bit vector multiplies; the two row sums are compared in
//! `Z/2⁶⁴` (wrapping). A wrong row differs from the true one by a nonzero integer vector
//! `d` with `|d_j| < 2³³`; pick `j` with the lowest 2-adic valuation `t ≤ 33` of `d_j`:
//! whatever the other entries, `d·r ≡ 0 (mod 2⁶⁴)` fixes `r_j` modulo `2^(64−t) ≥ 2³¹`,
//! which at most one value in `[0, 2³¹)` meets. A wrong row escapes with probability at
//! most `2⁻³¹`.
//!
//! The worker keeps the row digests (one [`MerkleTree`] per product, `64·n` bytes) and
//! recomputes a challenged row from the seed (`n²` multiply-adds, as rows of `B` scaled
//! and added, which needs no transposed copy of `B`), so it never holds `C`.

use super::{ShapeError, inputs, row_digest, square};
use crate::merkle::{self, Hash, MerkleTree};
use crate::seed;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Stream of the verifier's Freivalds vector `r` under its secret seed.
pub const STREAM_FREIVALDS: u64 = 16;

/// One challenged row: `product` counts from the fragment's first product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RowRef {
    /// Product within the fragment, from 0.
    pub product: u32,
    /// Row of that product, from 0.
    pub row: u32,
}

/// A row revealed with its proofs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowAnswer {
    /// Which row.
    pub at: RowRef,
    /// Its `n` values.
    pub values: Vec<i32>,
    /// Siblings from the row's digest up to its product's root.
    pub row_proof: Vec<Hash>,
    /// Siblings from the product's root up to the fragment's root.
    pub product_proof: Vec<Hash>,
}

/// Why answers fail a check. Each names the row at fault, so the evidence can say it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// No answer, or more than one, for a challenged row.
    #[error("row {} of product {} was challenged and not answered exactly once", .0.row, .0.product)]
    Unanswered(RowRef),
    /// An answer for a row that was not challenged.
    #[error("row {} of product {} was answered without being challenged", .0.row, .0.product)]
    Unchallenged(RowRef),
    /// A row with other than `n` values.
    #[error("row {} of product {} has {len} values, expected {n}", .at.row, .at.product)]
    Length {
        /// The row.
        at: RowRef,
        /// Values sent.
        len: usize,
        /// Values expected.
        n: usize,
    },
    /// The revealed row does not prove into the committed root.
    #[error("row {} of product {} is not the row committed to", .0.row, .0.product)]
    NotCommitted(RowRef),
    /// The committed row is not the product's row.
    #[error("row {} of product {} is not a row of A·B", .0.row, .0.product)]
    WrongRow(RowRef),
    /// The fragment's shape itself is invalid.
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

impl Failure {
    /// A short fixed category for Events, records and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unanswered(_) | Self::Unchallenged(_) | Self::Length { .. } => "BadAnswer",
            Self::NotCommitted(_) => "NotCommitted",
            Self::WrongRow(_) => "WrongRow",
            Self::Shape(_) => "BadShape",
        }
    }
}

/// The fragment a commitment or a check is about: products `first..first + count` of
/// the task with `seed` and matrix size `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Task seed.
    pub seed: u64,
    /// Matrix side.
    pub n: u32,
    /// First product (task-wide index).
    pub first: u64,
    /// Products in the fragment.
    pub count: u32,
}

impl Fragment {
    /// The seed of product `p` of the fragment (task-wide `first + p`).
    pub fn product_seed(&self, p: u32) -> u64 {
        let key = seed::stream_key(self.seed, seed::STREAM_PRODUCT);
        seed::word(key, self.first + u64::from(p))
    }
}

/// What a worker keeps of an executed fragment to answer its challenges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commitment {
    fragment: Fragment,
    products: Vec<MerkleTree>,
    tree: MerkleTree,
}

impl Commitment {
    /// The commitment over each product's tree of row digests, in order.
    pub fn new(fragment: Fragment, products: Vec<MerkleTree>) -> Self {
        let tree = MerkleTree::new(products.iter().map(MerkleTree::root).collect());
        Self {
            fragment,
            products,
            tree,
        }
    }

    /// The fragment committed to.
    pub fn fragment(&self) -> Fragment {
        self.fragment
    }

    /// The fragment's root: its reported digest.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// Answers `challenges`, recomputing each challenged row from the seed. Rows outside
    /// the fragment are a shape error.
    pub fn answer(&self, challenges: &[RowRef]) -> Result<Vec<RowAnswer>, ShapeError> {
        let n = self.fragment.n as usize;
        let mut by_product: BTreeMap<u32, Vec<RowRef>> = BTreeMap::new();
        for c in challenges {
            if c.product >= self.fragment.count || c.row >= self.fragment.n {
                return Err(ShapeError::Size(c.row as usize));
            }
            by_product.entry(c.product).or_default().push(*c);
        }
        let mut answers = Vec::with_capacity(challenges.len());
        for (p, rows) in by_product {
            let (a, b) = inputs(self.fragment.product_seed(p), n)?;
            let tree = &self.products[p as usize];
            for at in rows {
                let i = at.row as usize;
                answers.push(RowAnswer {
                    at,
                    values: row_of_product(&a[i * n..(i + 1) * n], &b, n),
                    row_proof: tree.prove(at.row as usize).unwrap_or_default(),
                    product_proof: self.tree.prove(p as usize).unwrap_or_default(),
                });
            }
        }
        Ok(answers)
    }
}

/// Row `a_row · B` of an `n×n` product, in `n²` multiply-adds.
pub fn row_of_product(a_row: &[i8], b: &[i8], n: usize) -> Vec<i32> {
    let mut out = vec![0i32; n];
    for (k, &aik) in a_row.iter().enumerate() {
        let aik = i32::from(aik);
        for (o, &bkj) in out.iter_mut().zip(&b[k * n..(k + 1) * n]) {
            *o += aik * i32::from(bkj);
        }
    }
    out
}

/// The true row `at` of fragment `f`, for the evidence of a [`Failure::WrongRow`]
/// (`n²` multiply-adds, spent only on a failure).
pub fn true_row(f: &Fragment, at: RowRef) -> Result<Vec<i32>, ShapeError> {
    let n = f.n as usize;
    if at.product >= f.count || at.row >= f.n {
        return Err(ShapeError::Size(at.row as usize));
    }
    let ps = f.product_seed(at.product);
    let mut b = vec![0i8; square(n)?];
    seed::fill_i8(ps, seed::STREAM_B, &mut b);
    let mut a_row = vec![0u8; n];
    seed::fill_bytes(ps, seed::STREAM_A, u64::from(at.row) * n as u64, &mut a_row);
    let a_row: Vec<i8> = a_row.into_iter().map(|v| v as i8).collect();
    Ok(row_of_product(&a_row, &b, n))
}

/// `k` rows of a fragment drawn from `draw` (a seed the worker cannot predict), uniform
/// with replacement over its `count · n` rows.
pub fn draw_rows(draw: u64, fragment: &Fragment, k: u32) -> Vec<RowRef> {
    let rows = u64::from(fragment.count) * u64::from(fragment.n);
    if rows == 0 {
        return Vec::new();
    }
    let key = seed::stream_key(draw, seed::STREAM_PRODUCT);
    let mut out: Vec<RowRef> = (0..u64::from(k))
        .map(|j| {
            let x = seed::word(key, j) % rows;
            RowRef {
                product: (x / u64::from(fragment.n)) as u32,
                row: (x % u64::from(fragment.n)) as u32,
            }
        })
        .collect();
    // A row drawn twice is checked once.
    out.sort();
    out.dedup();
    out
}

/// Checks `answers` to `challenges` against the committed `root` of `fragment`, with
/// Freivalds' vector drawn from `secret` (known to the verifier only). Never panics.
pub fn check(
    fragment: &Fragment,
    root: &Hash,
    challenges: &[RowRef],
    answers: &[RowAnswer],
    secret: u64,
) -> Result<(), Failure> {
    let n = fragment.n as usize;
    square(n)?;
    let mut challenged: BTreeMap<RowRef, Option<&RowAnswer>> =
        challenges.iter().map(|c| (*c, None)).collect();
    for a in answers {
        match challenged.get_mut(&a.at) {
            None => return Err(Failure::Unchallenged(a.at)),
            Some(Some(_)) => return Err(Failure::Unanswered(a.at)),
            Some(slot) => *slot = Some(a),
        }
    }
    // Proofs first: they are cheap, and a row not committed to needs no arithmetic.
    let mut by_product: BTreeMap<u32, Vec<&RowAnswer>> = BTreeMap::new();
    for (at, answer) in &challenged {
        let a = answer.ok_or(Failure::Unanswered(*at))?;
        if a.values.len() != n {
            return Err(Failure::Length {
                at: *at,
                len: a.values.len(),
                n,
            });
        }
        // The product's root is not known to the verifier, only the fragment's: the row's
        // proof is folded up and its result proven one level higher.
        let product_root = merkle::climb(n, at.row as usize, &row_digest(&a.values), &a.row_proof);
        let committed = product_root.is_some_and(|pr| {
            merkle::verify(
                root,
                fragment.count as usize,
                at.product as usize,
                &pr,
                &a.product_proof,
            )
        });
        if at.product >= fragment.count || !committed {
            return Err(Failure::NotCommitted(*at));
        }
        by_product.entry(at.product).or_default().push(a);
    }
    let key = seed::stream_key(secret, STREAM_FREIVALDS);
    let r: Vec<u64> = (0..n as u64).map(|j| seed::word(key, j)).collect();
    let mut b = vec![0i8; n * n];
    let mut a_row = vec![0u8; n];
    for (p, rows) in by_product {
        let ps = fragment.product_seed(p);
        seed::fill_i8(ps, seed::STREAM_B, &mut b);
        let br: Vec<u64> = b
            .chunks_exact(n)
            .map(|bk| dot(bk.iter().map(|&v| i64::from(v)), &r))
            .collect();
        for a in rows {
            seed::fill_bytes(
                ps,
                seed::STREAM_A,
                u64::from(a.at.row) * n as u64,
                &mut a_row,
            );
            let expected = dot(a_row.iter().map(|&v| i64::from(v as i8)), &br);
            let got = dot(a.values.iter().map(|&v| i64::from(v)), &r);
            if expected != got {
                return Err(Failure::WrongRow(a.at));
            }
        }
    }
    Ok(())
}

/// `Σ x_j · r_j` in `Z/2⁶⁴`.
fn dot(x: impl Iterator<Item = i64>, r: &[u64]) -> u64 {
    x.zip(r).fold(0u64, |acc, (x, &r)| {
        acc.wrapping_add((x as u64).wrapping_mul(r))
    })
}

#[cfg(test)]
mod tests;
