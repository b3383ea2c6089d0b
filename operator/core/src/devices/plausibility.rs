//! Hardware plausibility: a device must not claim hardware it lacks, nor a speed no
//! hardware has. The checks, all pure: a benchmark far below what the claimed GPU model
//! reaches, or above the fastest peak any known device reaches; a GPU that the
//! benchmark run saw as another model than the claim; and a fingerprint that changed
//! between runs while the claimed hardware did not. Agents and Node benchmark Pods are
//! held to the same rules.

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

/// Every verdict's reason: `Plausible` and each [`Verdict::Implausible`] reason.
pub const REASONS: [&str; 5] = [
    "Plausible",
    "BenchmarkTooLow",
    "BenchmarkTooHigh",
    "ModelMismatch",
    "FingerprintChanged",
];

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

/// A measured score above this share (per mille) of the claimed model's peak, or of
/// [`FASTEST_PEAK`] when the model is unknown or there is no GPU, is implausible: the
/// peaks are dense int8 figures no real run exceeds; the margin absorbs rounding.
pub const MAX_SHARE_OF_PEAK_PERMILLE: u64 = 1100;

/// Checks a new benchmark against the claimed identification and, when there is one,
/// the previous report (identification and benchmark).
pub fn check(
    previous: Option<(&Identification, &Benchmark)>,
    identification: &Identification,
    new: &Benchmark,
) -> Verdict {
    let claimed = identification
        .gpus
        .first()
        .and_then(|g| Some((g.model.as_str(), peak_of(&g.model)?)));
    if let Some((model, peak)) = claimed {
        let floor = peak * MIN_SHARE_OF_PEAK_PERMILLE / 1000;
        if new.score < floor {
            return Verdict::Implausible {
                reason: "BenchmarkTooLow",
                message: format!(
                    "benchmark measured {} GOP/s; the claimed {model} peaks at {peak} GOP/s, so at least {floor} is expected",
                    new.score
                ),
            };
        }
    }
    let (what, peak) = claimed.map_or(("any known device", FASTEST_PEAK), |(m, p)| (m, p));
    let ceiling = peak * MAX_SHARE_OF_PEAK_PERMILLE / 1000;
    if new.score > ceiling {
        return Verdict::Implausible {
            reason: "BenchmarkTooHigh",
            message: format!(
                "benchmark measured {} GOP/s; {what} peaks at {peak} GOP/s, so at most {ceiling} is possible",
                new.score
            ),
        };
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

/// Checks what a benchmark run saw against the claim: the GPU its run opened must be of
/// the claimed model's class (same known peak), and a claimed GPU must be seen at all.
/// `seen` is the run's own detection; a run that saw no GPU leaves the score check to
/// say so (a CPU-sized score), so only known models are compared here.
pub fn check_seen(
    claimed: &Identification,
    seen: &[crate::api::device::GpuInfo],
    new: &Benchmark,
) -> Verdict {
    let (Some(c), Some(s)) = (claimed.gpus.first(), seen.first()) else {
        return Verdict::Plausible;
    };
    match (peak_of(&c.model), peak_of(&s.model)) {
        (Some(a), Some(b)) if a != b => Verdict::Implausible {
            reason: "ModelMismatch",
            message: format!(
                "benchmark measured {} GOP/s on a GPU that identifies as {} (peak {b} GOP/s); the claimed {} peaks at {a} GOP/s",
                new.score, s.model, c.model
            ),
        },
        _ => Verdict::Plausible,
    }
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
    fn a_score_beyond_every_peak_is_implausible_and_names_both_figures() {
        let v = check(None, &id(Some("NVIDIA-L4")), &bench(900_000, "v1:1"));
        let Verdict::Implausible { reason, message } = v else {
            panic!("{v:?}")
        };
        assert_eq!(reason, "BenchmarkTooHigh");
        assert!(
            message.contains("900000") && message.contains("242000"),
            "{message}"
        );
        // A CPU claiming more than the fastest GPU.
        let cpu = check(None, &id(None), &bench(FASTEST_PEAK * 2, "v1:1"));
        assert!(matches!(
            cpu,
            Verdict::Implausible {
                reason: "BenchmarkTooHigh",
                ..
            }
        ));
        assert_eq!(
            check(None, &id(None), &bench(FASTEST_PEAK, "v1:1")),
            Verdict::Plausible
        );
    }

    #[test]
    fn a_low_score_names_the_measured_and_the_expected_figure() {
        let Verdict::Implausible { message, .. } =
            check(None, &id(Some("NVIDIA-H100-80GB-HBM3")), &bench(35, "v1:1"))
        else {
            panic!()
        };
        assert!(message.contains("measured 35 GOP/s"), "{message}");
        assert!(
            message.contains("1979000") && message.contains("197900"),
            "{message}"
        );
    }

    #[test]
    fn every_reason_a_check_gives_is_listed() {
        let h100 = id(Some("NVIDIA-H100-80GB-HBM3"));
        let seen = GpuInfo {
            model: "NVIDIA L4".into(),
            ..Default::default()
        };
        let old = (id(None), bench(20, "v1:4,8,12"));
        let verdicts = [
            check(None, &h100, &bench(1_000_000, "v1:1")),
            check(None, &h100, &bench(1, "v1:1")),
            check(None, &h100, &bench(u64::MAX / 2000, "v1:1")),
            check_seen(&h100, &[seen], &bench(1, "v1:1")),
            check(Some((&old.0, &old.1)), &id(None), &bench(20, "v1:4,8,20")),
        ];
        for v in verdicts {
            let reason = match v {
                Verdict::Plausible => "Plausible",
                Verdict::Implausible { reason, .. } => reason,
            };
            assert!(REASONS.contains(&reason), "{reason} is not in REASONS");
        }
    }

    #[test]
    fn a_gpu_seen_as_another_model_is_implausible() {
        let l4 = |m: &str| GpuInfo {
            model: m.into(),
            ..Default::default()
        };
        let claimed = id(Some("NVIDIA-H100-80GB-HBM3"));
        let b = bench(150_000, "v1:1");
        let v = check_seen(&claimed, &[l4("NVIDIA L4")], &b);
        assert!(
            matches!(
                v,
                Verdict::Implausible {
                    reason: "ModelMismatch",
                    ..
                }
            ),
            "{v:?}"
        );
        if let Verdict::Implausible { message, .. } = &v {
            for figure in ["150000", "NVIDIA L4", "242000", "1979000"] {
                assert!(message.contains(figure), "{figure}: {message}");
            }
        }
        // The same model under CUDA's spelling, no GPU seen, or an unknown model.
        assert_eq!(
            check_seen(&claimed, &[l4("NVIDIA H100 80GB HBM3")], &b),
            Verdict::Plausible
        );
        assert_eq!(check_seen(&claimed, &[], &b), Verdict::Plausible);
        assert_eq!(
            check_seen(&claimed, &[l4("Future GPU")], &b),
            Verdict::Plausible
        );
        assert_eq!(
            check_seen(&id(None), &[l4("NVIDIA L4")], &b),
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
