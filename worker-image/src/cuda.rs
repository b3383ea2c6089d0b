//! Making NVRTC and cuBLAS of CUDA 13 or 12 visible to cudarc before anything else runs
//! (`zop_kernels::gpu::libraries`): when what is found is not what cudarc would load by
//! itself, the worker links it under cudarc's name in a private directory and runs itself
//! again with that directory on `LD_LIBRARY_PATH`, once. It reports what it found.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use zop_kernels::gpu::libraries::{self, Found, LINKED_ENV, Library, OVERRIDE_ENV};

/// The libraries found, with [`OVERRIDE_ENV`] first; looked for once per process
/// (each candidate is opened to see whether it loads).
pub fn found() -> &'static [Found] {
    static FOUND: OnceLock<Vec<Found>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let dir = std::env::var_os(OVERRIDE_ENV).map(PathBuf::from);
        Library::ALL
            .iter()
            .filter_map(|l| libraries::find(*l, dir.as_deref()))
            .collect()
    })
}

/// The libraries cudarc loads in this process, each with the file found for it
/// (`nvrtc (/usr/local/cuda/lib64/libnvrtc.so.13)`).
pub fn report() -> Vec<String> {
    found()
        .iter()
        .filter(|f| libraries::cudarc_loads(f.library))
        .map(ToString::to_string)
        .collect()
}

/// Runs the worker again with its libraries linked, if it must; returns only when it
/// need not (or cannot: then cudarc searches by itself, and a GPU fragment may fall back
/// to the CPU, as the log says).
pub fn relink() {
    if std::env::var_os(LINKED_ENV).is_some() {
        return;
    }
    let found = found();
    let current = std::env::var("LD_LIBRARY_PATH").ok();
    if found
        .iter()
        .all(|f| libraries::cudarc_finds(f) || libraries::on_search_path(f, current.as_deref()))
    {
        return;
    }
    // One directory per set of libraries, reused by every restart.
    let key: String = found
        .iter()
        .map(|f| f.path.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("|");
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
    let dir = std::env::temp_dir().join(format!("zop-cuda-{}", &digest[..16]));
    let path = match libraries::link(found, &dir, current.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "zop-worker: cannot link the CUDA libraries in {}: {e}; cudarc searches by itself",
                dir.display()
            );
            return;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("zop-worker: cannot find its own executable to run again: {e}");
            return;
        }
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("LD_LIBRARY_PATH", path)
        .env(LINKED_ENV, &dir)
        .exec();
    eprintln!("zop-worker: running again with the CUDA libraries linked failed: {err}");
}
