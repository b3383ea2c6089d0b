//! Identification: what this machine is (OS, kernel, architecture, CPUs, memory, GPUs),
//! read from `/proc`, `/sys`, `/etc/os-release` and the CUDA driver. Owns the mapping
//! onto the operator's `Identification` type; it measures nothing (see `bench`).
//!
//! Anything unreadable is reported empty or zero rather than failing: a partial
//! identification is still useful, and the gateway validates what it receives.

use serde::{Deserialize, Serialize};
use zop_api::device::{Benchmark, GpuInfo, Identification, RuntimeEnvironment};
use zop_kernels::gpu::{self, GpuProbe};

/// Longest text the gateway accepts in an identification field.
const MAX_TEXT: usize = 253;

/// What `zop-worker probe` prints and an agent sends when it registers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// The hardware and software found.
    pub identification: Identification,
    /// The benchmark, unless it was skipped.
    pub benchmark: Option<Benchmark>,
}

/// Identifies this machine.
pub fn identify() -> Identification {
    let gpus: Vec<GpuInfo> = gpu::detect().iter().map(gpu_info).collect();
    Identification {
        device_type: if gpus.is_empty() {
            "workstation"
        } else {
            "gpu-server"
        }
        .to_string(),
        os: std::env::consts::OS.to_string(),
        os_version: read("/etc/os-release")
            .and_then(|s| parse_os_release(&s))
            .unwrap_or_default(),
        kernel_version: read("/proc/sys/kernel/osrelease")
            .map(|s| clean(&s))
            .unwrap_or_default(),
        architecture: architecture(std::env::consts::ARCH).to_string(),
        cpu_cores: cpu_cores(),
        memory_mib: read("/proc/meminfo")
            .and_then(|s| parse_meminfo_mib(&s))
            .unwrap_or(0),
        gpus,
        runtime: RuntimeEnvironment {
            worker_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            cuda_libraries: crate::cuda::report(),
            ..Default::default()
        },
    }
}

/// The operator's view of one detected GPU.
pub fn gpu_info(g: &GpuProbe) -> GpuInfo {
    GpuInfo {
        model: clean(&g.name),
        vram_mib: g.total_memory_mib,
        compute_capability: format!("{}.{}", g.compute_capability.0, g.compute_capability.1),
        sm_count: Some(g.sm_count),
        driver_version: clean(&g.driver_version),
        cuda_version: clean(&g.cuda_version),
    }
}

/// Kubernetes (Go) architecture names, which node labels and images use.
pub fn architecture(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The machine's online logical CPUs (what the hardware is), falling back to the CPUs
/// this process may use. The benchmark, by contrast, runs on the CPUs it may use.
fn cpu_cores() -> u32 {
    read("/sys/devices/system/cpu/online")
        .and_then(|s| parse_cpu_list(&s))
        .or_else(|| {
            std::thread::available_parallelism()
                .ok()
                .and_then(|n| u32::try_from(n.get()).ok())
        })
        .unwrap_or(1)
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Trims, drops control characters and caps the length, so the gateway accepts it.
fn clean(s: &str) -> String {
    let mut out: String = s.trim().chars().filter(|c| !c.is_control()).collect();
    while out.len() > MAX_TEXT {
        out.pop();
    }
    out
}

/// `PRETTY_NAME` from os-release text, unquoted.
pub fn parse_os_release(text: &str) -> Option<String> {
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))?;
    let v = value.trim();
    let unquoted = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(v);
    Some(clean(unquoted)).filter(|s| !s.is_empty())
}

/// `MemTotal` from `/proc/meminfo`, in MiB.
pub fn parse_meminfo_mib(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The number of CPUs in a kernel CPU list such as `0-3,8-11,16`.
pub fn parse_cpu_list(text: &str) -> Option<u32> {
    let mut total: u32 = 0;
    for part in text.trim().split(',') {
        let count = match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)?.checked_add(1)?
            }
            None => part.parse::<u32>().map(|_| 1).ok()?,
        };
        total = total.checked_add(count)?;
    }
    (total > 0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_pretty_name_is_unquoted() {
        let text = "NAME=\"Ubuntu\"\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\nID=ubuntu\n";
        assert_eq!(
            parse_os_release(text).as_deref(),
            Some("Ubuntu 24.04.1 LTS")
        );
        assert_eq!(
            parse_os_release("PRETTY_NAME=Alpine").as_deref(),
            Some("Alpine")
        );
        assert_eq!(parse_os_release("PRETTY_NAME=\"\"\n"), None);
        assert_eq!(parse_os_release("ID=x"), None);
    }

    #[test]
    fn meminfo_total_converts_kib_to_mib() {
        let text = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        assert_eq!(parse_meminfo_mib(text), Some(24000));
        assert_eq!(parse_meminfo_mib("MemTotal: lots kB"), None);
        assert_eq!(parse_meminfo_mib(""), None);
    }

    #[test]
    fn cpu_lists_count_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0-3,8-11,16"), Some(9));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list(""), None);
        assert_eq!(parse_cpu_list("0-4294967295"), None);
    }

    #[test]
    fn text_is_capped_and_stripped_of_control_characters() {
        assert_eq!(clean(" a\u{7}b\n"), "ab");
        assert_eq!(clean(&"é".repeat(300)).len(), 252);
    }

    #[test]
    fn architectures_use_kubernetes_names() {
        assert_eq!(architecture("x86_64"), "amd64");
        assert_eq!(architecture("aarch64"), "arm64");
        assert_eq!(architecture("riscv64"), "riscv64");
    }

    #[test]
    fn this_machine_identifies_without_gpus_as_a_workstation() {
        let id = identify();
        assert_eq!(id.os, std::env::consts::OS);
        assert!(id.cpu_cores >= 1);
        if id.gpus.is_empty() {
            assert_eq!(id.device_type, "workstation");
        } else {
            assert_eq!(id.device_type, "gpu-server");
        }
    }
}
