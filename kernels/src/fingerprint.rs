//! The hardware fingerprint format: measured timing ratios that are characteristic of a
//! machine (cache and memory hierarchy, compute against bandwidth), quantized coarsely so
//! run-to-run jitter does not change them. Pure; shared by the worker that measures and
//! the operator that compares.
//!
//! Format: `v1:` followed by comma-separated integers, each `round(4 · log2(ratio))`,
//! i.e. quarter steps on a log2 scale.

/// Quarter steps per doubling.
const STEPS_PER_DOUBLING: f64 = 4.0;
/// Most components a fingerprint may carry.
pub const MAX_COMPONENTS: usize = 16;

/// Encodes measured ratios. Non-finite or non-positive ratios encode as 0.
pub fn encode(ratios: &[f64]) -> String {
    let parts: Vec<String> = ratios
        .iter()
        .take(MAX_COMPONENTS)
        .map(|r| {
            if r.is_finite() && *r > 0.0 {
                ((r.log2() * STEPS_PER_DOUBLING).round() as i64)
                    .clamp(-999, 999)
                    .to_string()
            } else {
                "0".to_string()
            }
        })
        .collect();
    format!("v1:{}", parts.join(","))
}

/// Decodes a fingerprint; `None` when malformed.
pub fn decode(s: &str) -> Option<Vec<i32>> {
    let body = s.strip_prefix("v1:")?;
    let parts: Option<Vec<i32>> = body.split(',').map(|p| p.trim().parse().ok()).collect();
    parts.filter(|v| !v.is_empty() && v.len() <= MAX_COMPONENTS)
}

/// The largest per-component difference, in quarter steps, between two fingerprints;
/// `None` when either is malformed or they have different lengths (different formats
/// or measurement sets cannot be compared).
pub fn distance(a: &str, b: &str) -> Option<u32> {
    let (x, y) = (decode(a)?, decode(b)?);
    if x.len() != y.len() {
        return None;
    }
    x.iter().zip(&y).map(|(p, q)| p.abs_diff(*q)).max()
}

/// Whether two fingerprints describe the same hardware: same length, and every
/// component within one quarter step (jitter that lands across a rounding boundary).
/// Malformed fingerprints never match.
pub fn matches(a: &str, b: &str) -> bool {
    distance(a, b).is_some_and(|d| d <= 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_encode_in_quarter_log2_steps() {
        assert_eq!(encode(&[1.0, 2.0, 0.5, 8.0]), "v1:0,4,-4,12");
        assert_eq!(encode(&[f64::NAN, -1.0]), "v1:0,0");
    }

    #[test]
    fn jitter_within_a_step_still_matches() {
        let a = encode(&[3.0, 10.0, 0.3]);
        let b = encode(&[3.1, 9.6, 0.31]);
        assert!(matches(&a, &b), "{a} vs {b}");
    }

    #[test]
    fn different_hardware_does_not_match() {
        assert!(!matches(&encode(&[3.0, 10.0]), &encode(&[6.0, 10.0])));
        assert!(!matches(&encode(&[3.0, 10.0]), &encode(&[3.0])));
    }

    #[test]
    fn distance_is_the_largest_component_gap() {
        assert_eq!(distance("v1:1,5,-3", "v1:1,5,-3"), Some(0));
        assert_eq!(distance("v1:1,5,-3", "v1:2,3,-3"), Some(2));
        assert_eq!(distance("v1:-999", "v1:999"), Some(1998));
        assert_eq!(distance("v1:1,2", "v1:1"), None);
        assert_eq!(distance("v1:1", "garbage"), None);
    }

    #[test]
    fn malformed_fingerprints_never_match_and_never_panic() {
        for bad in [
            "",
            "v1:",
            "v2:1,2",
            "v1:a,b",
            "v1:99999999999999999999",
            "v1:1,,2",
        ] {
            assert!(!matches(bad, bad), "{bad}");
        }
        let long = format!("v1:{}", vec!["1"; 17].join(","));
        assert!(decode(&long).is_none());
    }
}
