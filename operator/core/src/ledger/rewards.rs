//! Splitting an epoch's emission among providers. Pure, integer.
//!
//! A provider's weight is `workUnits · quality‰ · reputation‰ · stakeBoost‰`:
//! - `workUnits`: its devices' results that count (verified, or accepted), at the
//!   slicer's cost, in the epoch;
//! - `quality‰`: the share of its results in the epoch that passed verification,
//!   `1000 · counted / (counted + rejected)`;
//! - `reputation‰`: its devices' reputation scores (0 to 1000), weighted by their work;
//! - `stakeBoost‰`: `1000 + 1000 · min(stake, FULL_STAKE) / FULL_STAKE`, from 1× without
//!   stake to 2× at [`FULL_STAKE`] and beyond (capped: stake buys at most double).
//!
//! Each provider gets `⌊emission · weight / Σ weight⌋`; the residue (fewer base units
//! than providers) goes one unit each to the largest remainders, ties to the provider
//! name that sorts first. So an epoch with any weighted work pays exactly its emission;
//! an epoch with none pays nothing and returns the whole emission to the pool.

use crate::api::settlement::SettlementEntry;
use crate::api::{BASE_UNITS_PER_CXT, BaseUnits};

/// Stake at which the boost is full (2×): 10,000 CXT.
pub const FULL_STAKE: u64 = 10_000 * BASE_UNITS_PER_CXT;

/// One provider's share of an epoch, before the split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    /// The provider account.
    pub provider: String,
    /// Work units of its results that count.
    pub work_units: u64,
    /// Quality factor, per mille.
    pub quality: u32,
    /// Reputation factor, per mille.
    pub reputation: u32,
    /// Bonded stake, in base units.
    pub stake: u64,
}

/// The stake boost, per mille (module docs).
pub fn stake_boost(stake: u64) -> u32 {
    let extra = u128::from(stake.min(FULL_STAKE)) * 1000 / u128::from(FULL_STAKE);
    1000 + extra as u32
}

/// An epoch's entries and what returns to the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// One entry per contributing provider, sorted by provider.
    pub entries: Vec<SettlementEntry>,
    /// Emission not paid out.
    pub returned: u64,
}

/// Splits `emission` among `contributions` (module docs). Providers appear once each.
pub fn split(emission: u64, contributions: &[Contribution]) -> Split {
    let mut rows: Vec<(&Contribution, u32, u128)> = contributions
        .iter()
        .map(|c| {
            let boost = stake_boost(c.stake);
            let w = u128::from(c.work_units)
                * u128::from(c.quality.min(1000))
                * u128::from(c.reputation.min(1000))
                * u128::from(boost);
            (c, boost, w)
        })
        .collect();
    rows.sort_by(|a, b| a.0.provider.cmp(&b.0.provider));
    let total: u128 = rows.iter().map(|r| r.2).sum();
    let mut rewards: Vec<u64> = vec![0; rows.len()];
    let mut returned = emission;
    if total > 0 {
        // emission < 2^53 and each weight < 2^94, so the products fit in u128 only
        // when divided first by nothing larger: compute quotient and remainder exactly.
        let e = u128::from(emission);
        let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(rows.len());
        let mut paid: u128 = 0;
        for (i, (_, _, w)) in rows.iter().enumerate() {
            let (q, r) = mul_div(e, *w, total);
            rewards[i] = q as u64;
            paid += q;
            remainders.push((r, i));
        }
        let residue = (e - paid) as usize;
        // Largest remainder first; equal remainders by provider order (the index).
        remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, i) in remainders.into_iter().take(residue) {
            rewards[i] += 1;
        }
        returned = 0;
    }
    let entries = rows
        .iter()
        .zip(rewards)
        .map(|((c, boost, _), reward)| SettlementEntry {
            provider: c.provider.clone(),
            work_units: c.work_units,
            quality: c.quality.min(1000),
            reputation: c.reputation.min(1000),
            stake_boost: *boost,
            reward: BaseUnits(reward),
            held: false,
        })
        .collect();
    Split { entries, returned }
}

/// `⌊a · b / c⌋` and the remainder, for `a < 2⁶⁴`, `b ≤ c`, without overflow.
fn mul_div(a: u128, b: u128, c: u128) -> (u128, u128) {
    // a · b can exceed u128 when b is near 2^94 and a near 2^53: split b by c.
    // q = a·b/c; with b ≤ c, q ≤ a. Long multiplication in base 2^64 on a·b.
    let (hi, lo) = wide_mul(a, b);
    wide_div(hi, lo, c)
}

/// `a · b` as (high, low) 128-bit halves.
fn wide_mul(a: u128, b: u128) -> (u128, u128) {
    let mask = u128::from(u64::MAX);
    let (a1, a0) = (a >> 64, a & mask);
    let (b1, b0) = (b >> 64, b & mask);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 64) + (p01 & mask) + (p10 & mask);
    let lo = (p00 & mask) | (mid << 64);
    let hi = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (hi, lo)
}

/// `(hi·2¹²⁸ + lo) / c` and the remainder, when the quotient fits in 128 bits.
fn wide_div(hi: u128, lo: u128, c: u128) -> (u128, u128) {
    if hi == 0 {
        return (lo / c, lo % c);
    }
    // Bit by bit: 256 steps, only for weights beyond 2^64 (rare).
    let (mut q, mut r) = (0u128, hi % c);
    for i in (0..128).rev() {
        let carry = r >> 127;
        r = (r << 1) | ((lo >> i) & 1);
        q <<= 1;
        if carry == 1 || r >= c {
            r = r.wrapping_sub(c);
            q |= 1;
        }
    }
    (q, r)
}

#[cfg(test)]
mod tests;
