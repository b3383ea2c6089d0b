//! `exp` and `ln` in f32 from IEEE-exact operations only (`+ − × ÷`, rounding, bit
//! manipulation), so every platform computes the same bits. `f32::exp` and `f32::ln`
//! call the platform's libm, whose last bit differs between glibc, musl, macOS and
//! CUDA's `expf`; a replayed gradient must not depend on which one a device links.
//!
//! Both are accurate to a few ulp over the range the model uses; the CUDA port in
//! `cuda/training.cu` evaluates the same expressions in the same order with
//! round-to-nearest intrinsics (no fused multiply-add), and must stay in step with this
//! file.

/// `ln 2` split so that `k · LN2_HI` is exact for `|k| < 2⁹`: the high part has 9
/// significant bits (355/512 = 0.693359375, written by its bits because clippy reads
/// the exact decimal as excess precision).
const LN2_HI: f32 = f32::from_bits(0x3F31_8000);
/// `ln 2 − LN2_HI`.
const LN2_LO: f32 = -2.121_944_4e-4;
/// `log2 e`.
const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// Above this, `e^x` overflows f32.
const EXP_MAX: f32 = 88.8;
/// Below this, `e^x` is under half the smallest subnormal.
const EXP_MIN: f32 = -104.0;
/// Taylor coefficients `1/n!` for `n = 2..=7`, innermost last.
const EXP_POLY: [f32; 6] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
];

/// `√2`, the upper end of the reduced mantissa range of [`ln`].
const SQRT_2: f32 = std::f32::consts::SQRT_2;

/// `2^k` for `−126 ≤ k ≤ 127`, built from its bits.
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// `e^x`. Range reduction `x = k·ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-7 Taylor
/// polynomial for `e^r` (truncation below 6·10⁻⁹ relative), then scaling by `2^k` in two
/// halves so that neither factor leaves the normal range.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > EXP_MAX {
        return f32::INFINITY;
    }
    if x < EXP_MIN {
        return 0.0;
    }
    let k = (x * LOG2_E).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = EXP_POLY[5];
    for c in EXP_POLY[..5].iter().rev() {
        p = p * r + c;
    }
    let p = (p * r + 1.0) * r + 1.0;
    // |k| ≤ 151 here, so both halves are within −126..=127.
    let k = k as i32;
    let half = k / 2;
    p * pow2(half) * pow2(k - half)
}

/// `ln x` for `x > 0`: `x = 2^e · m` with `m ∈ (√½, √2]`, then
/// `ln m = 2·atanh(t)`, `t = (m − 1)/(m + 1)`, `|t| < 0.172`, by its odd series to `t⁹`.
/// `ln 0 = −∞`; negative or NaN input gives NaN.
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x == f32::INFINITY {
        return x;
    }
    let (x, mut e) = if x < f32::MIN_POSITIVE {
        (x * pow2(23), -23)
    } else {
        (x, 0)
    };
    let bits = x.to_bits();
    e += ((bits >> 23) as i32) - 127;
    let mut m = f32::from_bits((bits & 0x007F_FFFF) | 0x3F80_0000);
    if m > SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let s = t2 * (1.0 / 3.0 + t2 * (1.0 / 5.0 + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0))));
    let ln_m = 2.0 * t + 2.0 * t * s;
    let e = e as f32;
    e * LN2_HI + (ln_m + e * LN2_LO)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two finite floats of one sign.
    fn ulps(a: f32, b: f32) -> u32 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exp_is_within_a_few_ulp_of_the_true_value() {
        let mut worst = 0;
        for i in 0..=20_000 {
            let x = -100.0 + i as f32 * 0.0094;
            let want = f64::from(x).exp() as f32;
            if want >= f32::MIN_POSITIVE {
                worst = worst.max(ulps(exp(x), want));
            }
        }
        assert!(worst <= 3, "worst {worst} ulp");
    }

    #[test]
    fn ln_is_within_a_few_ulp_of_the_true_value() {
        let mut worst = 0;
        for i in 1..=20_000 {
            let x = i as f32 * 0.0517;
            let want = f64::from(x).ln() as f32;
            // Near x = 1 the result is tiny and ulps are not a fair measure.
            if (x - 1.0).abs() > 0.01 {
                worst = worst.max(ulps(ln(x), want));
            }
        }
        assert!(worst <= 3, "worst {worst} ulp");
        assert!((ln(1.0)).abs() == 0.0);
        assert!((ln(1e-40) - (-92.103_4)).abs() < 1e-3, "subnormal input");
    }

    #[test]
    fn edge_inputs_have_defined_results() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f32::NAN).is_nan());
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn results_are_pinned_so_gpu_ports_can_check_against_them() {
        // Bits of this implementation, not of libm: a port must reproduce these.
        assert_eq!(exp(-1.0).to_bits(), 0x3EBC_5AB2);
        assert_eq!(ln(10.0).to_bits(), LN_TEN_BITS);
        // Every bit of 4,096 results over the ranges the model uses, folded in order.
        let fold = |f: fn(f32) -> f32, x0: f32, dx: f32| {
            (0..4096).fold(0u64, |h, i| {
                crate::seed::mix(h ^ u64::from(f(x0 + i as f32 * dx).to_bits()))
            })
        };
        assert_eq!(fold(exp, -30.0, 0.0073), EXP_GRID);
        assert_eq!(fold(ln, 0.01, 0.25), LN_GRID);
    }

    const LN_TEN_BITS: u32 = 0x4013_5D8E;
    const EXP_GRID: u64 = 0xAB1D_DE70_DB43_8C73;
    const LN_GRID: u64 = 0x0C73_0126_CA29_1792;
}
