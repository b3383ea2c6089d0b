//! The worker finds NVRTC of CUDA 13 (by its versioned name, in an override directory)
//! that cudarc, built for CUDA 12, cannot find by itself: it links it, runs itself again,
//! and reports it loaded. No GPU is needed: NVRTC loads without one. The NVRTC 12 library
//! from NVIDIA's wheel (`e2e/scripts/tools.sh`, on `LD_LIBRARY_PATH`) stands in for 13's.

use std::path::PathBuf;
use std::process::Command;

fn nvrtc_dir() -> Option<PathBuf> {
    std::env::var("LD_LIBRARY_PATH")
        .ok()?
        .split(':')
        .map(PathBuf::from)
        .find(|d| d.join("libnvrtc.so.12").exists())
}

fn probe(env: &[(&str, &std::ffi::OsStr)]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_zop-worker"))
        .args(["probe", "--json", "--bench-ms", "0"])
        .env_remove("LD_LIBRARY_PATH")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_cuda_13_nvrtc_in_an_override_directory_is_linked_and_loaded() {
    let Some(real) = nvrtc_dir() else {
        eprintln!(
            "SKIPPED: no libnvrtc.so.12 on LD_LIBRARY_PATH (run through e2e/test, or eval \"$(e2e/scripts/tools.sh env)\")"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        real.join("libnvrtc.so.12"),
        dir.path().join("libnvrtc.so.13"),
    )
    .unwrap();
    for e in std::fs::read_dir(&real).unwrap().flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with("libnvrtc-builtins") {
            std::fs::copy(e.path(), dir.path().join(name)).unwrap();
        }
    }
    let libraries = |v: &serde_json::Value| -> Vec<String> {
        v["identification"]["runtime"]["cudaLibraries"]
            .as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let over = dir.path().as_os_str();
    // Linked and run again: cudarc loads it, and the worker says which file it is.
    let linked = libraries(&probe(&[("ZOP_CUDA_LIBRARY_PATH", over)]));
    let expected = format!("nvrtc ({})", dir.path().join("libnvrtc.so.13").display());
    assert!(linked.contains(&expected), "{linked:?}");
    // Without the second run (marked as done already), cudarc alone finds nothing.
    let alone = libraries(&probe(&[
        ("ZOP_CUDA_LIBRARY_PATH", over),
        ("ZOP_CUDA_LINKED", std::ffi::OsStr::new("1")),
    ]));
    assert!(!alone.iter().any(|l| l.starts_with("nvrtc")), "{alone:?}");
}
