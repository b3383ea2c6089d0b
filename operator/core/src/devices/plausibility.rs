//! Hardware plausibility: a device must not claim hardware it lacks. Two checks, both
//! pure: a benchmark far below what the claimed GPU model reaches, and a fingerprint
//! that changed between runs while the claimed hardware did not.

use crate::api::device::{Benchmark, Identification};

/// A measured score below this share (per mille) of the claimed model's peak is
/// implausible. Short benchmarks on real GPUs reach well above 10% of peak.
pub const MIN_SHARE_OF_PEAK_PERMILLE: u64 = 100;

/// The outcome; `reason` is a PascalCase condition reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing contradicts the claim.
    Plausible,
    /// The claim is contradicted.
    Implausible {
        /// Condition and Event reason.
        reason: &'static str,
        /// What was measured against what was claimed.
        message: String,
    },
}

/// Peak dense int8 throughput of known GPU models, in normalized compute units
/// (GOP/s), matched by a case-insensitive substring of the product name.
const PEAKS: &[(&str, u64)] = &[
    ("H100", 1_979_000),
    ("H200", 1_979_000),
    ("A100", 624_000),
    ("4090", 660_000),
    ("L4", 242_000),
];

/// The highest peak of [`PEAKS`]: no device executes more work units a second.
pub const FASTEST_PEAK: u64 = {
    let mut i = 0;
    let mut best = 0;
    while i < PEAKS.len() {
        if PEAKS[i].1 > best {
            best = PEAKS[i].1;
        }
        i += 1;
    }
    best
};

/// The peak of a product name, if the model is known.
pub fn peak_of(product: &str) -> Option<u64> {
    let p = product.to_ascii_uppercase();
    PEAKS.iter().find(|(k, _)| p.contains(k)).map(|(_, v)| *v)
}

/// Whether two identifications describe the same hardware.
fn same_hardware(a: &Identification, b: &Identification) -> bool {
    let gpus = |i: &Identification| {
        i.gpus
            .iter()
            .map(|g| (g.model.clone(), g.vram_mib))
            .collect::<Vec<_>>()
    };
    a.cpu_cores == b.cpu_cores && a.architecture == b.architecture && gpus(a) == gpus(b)
}

/// Checks a new benchmark against the claimed identification and, when there is one,
/// the previous report (identification and benchmark).
pub fn check(
    previous: Option<(&Identification, &Benchmark)>,
    identification: &Identification,
    new: &Benchmark,
) -> Verdict {
    if let Some(gpu) = identification.gpus.first()
        && let Some(peak) = peak_of(&gpu.model)
    {
        let floor = peak * MIN_SHARE_OF_PEAK_PERMILLE / 1000;
        if new.score < floor {
            return Verdict::Implausible {
                reason: "BenchmarkTooLow",
                message: format!(
                    "benchmark score {} is far below what {} reaches (at least {floor})",
                    new.score, gpu.model
                ),
            };
        }
    }
    if let Some((old_id, old)) = previous
        && same_hardware(old_id, identification)
        && !old.fingerprint.is_empty()
        && !zop_kernels::fingerprint::matches(&old.fingerprint, &new.fingerprint)
    {
        return Verdict::Implausible {
            reason: "FingerprintChanged",
            message: format!(
                "hardware fingerprint changed from {} to {} without a hardware change",
                old.fingerprint, new.fingerprint
            ),
        };
    }
    Verdict::Plausible
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::device::GpuInfo;

    fn id(model: Option<&str>) -> Identification {
        Identification {
            cpu_cores: 16,
            architecture: "amd64".into(),
            gpus: model
                .map(|m| {
                    vec![GpuInfo {
                        model: m.into(),
                        vram_mib: 81559,
                        ..Default::default()
                    }]
                })
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    fn bench(score: u64, fp: &str) -> Benchmark {
        Benchmark {
            score,
            fingerprint: fp.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_claimed_h100_with_a_cpu_sized_score_is_implausible() {
        let v = check(
            None,
            &id(Some("NVIDIA-H100-80GB-HBM3")),
            &bench(90, "v1:1,2"),
        );
        assert!(
            matches!(
                v,
                Verdict::Implausible {
                    reason: "BenchmarkTooLow",
                    ..
                }
            ),
            "{v:?}"
        );
    }

    #[test]
    fn a_real_h100_score_and_a_cpu_only_device_are_plausible() {
        assert_eq!(
            check(
                None,
                &id(Some("NVIDIA-H100-80GB-HBM3")),
                &bench(1_200_000, "v1:1")
            ),
            Verdict::Plausible
        );
        assert_eq!(
            check(None, &id(None), &bench(12, "v1:1")),
            Verdict::Plausible
        );
        assert_eq!(
            check(None, &id(Some("Some-Future-GPU")), &bench(1, "v1:1")),
            Verdict::Plausible
        );
    }

    #[test]
    fn a_changed_fingerprint_on_the_same_hardware_is_implausible() {
        let old = (id(None), bench(20, "v1:4,8,12"));
        let v = check(Some((&old.0, &old.1)), &id(None), &bench(20, "v1:4,8,20"));
        assert!(
            matches!(
                v,
                Verdict::Implausible {
                    reason: "FingerprintChanged",
                    ..
                }
            ),
            "{v:?}"
        );
        let jitter = check(Some((&old.0, &old.1)), &id(None), &bench(20, "v1:5,8,11"));
        assert_eq!(jitter, Verdict::Plausible);
    }

    #[test]
    fn a_hardware_change_explains_a_new_fingerprint() {
        let old = (id(None), bench(20, "v1:4,8,12"));
        let mut upgraded = id(None);
        upgraded.cpu_cores = 32;
        assert_eq!(
            check(Some((&old.0, &old.1)), &upgraded, &bench(40, "v1:1,1,1")),
            Verdict::Plausible
        );
    }
}
