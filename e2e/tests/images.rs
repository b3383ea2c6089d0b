//! The container images, without Docker or a cluster: `e2e/scripts/images.sh` writes the
//! zop-operator and zop-worker OCI archives from the local build, and each is unpacked
//! with umoci and checked as a runtime would see it: the config runs the binary as
//! 65532:65532, the root holds no shell and only that image's binaries, and every binary
//! runs from its read-only root in a chroot (`--version`) with the image's environment
//! and user. In the worker image `zop-worker probe` reports NVRTC and cuBLAS loaded from
//! /usr/local/lib/zop-cuda, the wheels' libraries the image carries, with no CUDA on the
//! host. Where a chroot is not permitted, the binaries run through the root's own loader
//! and the probe is skipped, as the output says.

use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CUDA_DIR: &str = "/usr/local/lib/zop-cuda";
const SHELLS: [&str; 5] = ["sh", "bash", "dash", "ash", "busybox"];
/// The image's user and group (distroless' `nonroot`).
const NONROOT: u32 = 65532;

/// How the binaries are run from an unpacked root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// In the root, as a runtime would: the image's user, its environment, its own /proc
    /// (the worker reads /proc/self), in a mount and PID namespace of the test's. Needs
    /// root.
    Chroot,
    /// The root's dynamic loader and libraries, from the host's root: what the binaries
    /// load is still the image's, but nothing else is.
    Loader,
}

/// The root in a chroot: bound on itself (read-only unless `$4` is `rw`: the chart's
/// operator and the operator's worker Pods both run with `readOnlyRootFilesystem`), a
/// /proc, then the program as user `$5`. Runs in the host's shell; the images have none.
const IN_ROOT: &str = r#"set -e
mount=$1 chroot=$2 root=$3 mode=$4 user=$5; shift 5
"$mount" --bind "$root" "$root"
[ "$mode" = rw ] || "$mount" -o remount,bind,ro "$root"
"$mount" -t proc proc "$root/proc"
exec "$chroot" --userspec="$user" "$root" "$@""#;

/// An unpacked image: its root and its config.
#[derive(Debug)]
struct Image {
    name: &'static str,
    rootfs: PathBuf,
    config: Value,
}

impl Image {
    /// `KEY=VALUE` pairs of the config's `Env`.
    fn env(&self) -> Vec<(String, String)> {
        self.config["config"]["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Runs `program` of the image (a bare name is looked up in the image's PATH, as a
    /// Pod's `command` is) with `args` and the image's environment; in a chroot, as the
    /// image's user, on a read-only root unless `writable`.
    fn run(&self, way: Way, writable: bool, program: &str, args: &[&str]) -> Output {
        let mut cmd = match way {
            Way::Chroot => {
                std::fs::create_dir_all(self.rootfs.join("proc")).unwrap();
                let mut c = Command::new(host_program("unshare"));
                c.args(["--mount", "--pid", "--fork", "--kill-child"])
                    .arg(host_program("sh"))
                    .args(["-c", IN_ROOT, "sh"])
                    .args([host_program("mount"), host_program("chroot")])
                    .arg(&self.rootfs)
                    .arg(if writable { "rw" } else { "ro" })
                    .arg(self.config["config"]["User"].as_str().expect("a user"))
                    .arg(program);
                c
            }
            Way::Loader => {
                let path = Path::new("usr/local/bin").join(program);
                let mut c = Command::new(self.rootfs.join("lib64/ld-linux-x86-64.so.2"));
                c.arg("--library-path")
                    .arg(self.library_path())
                    .arg(self.rootfs.join(path.strip_prefix("/").unwrap_or(&path)));
                c
            }
        };
        cmd.args(args).env_clear().envs(self.env());
        cmd.output()
            .unwrap_or_else(|e| panic!("running {program} of {}: {e}", self.name))
    }

    /// The root's library directories, for [`Way::Loader`].
    fn library_path(&self) -> String {
        ["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64"]
            .iter()
            .map(|d| self.rootfs.join(d))
            .filter(|d| d.is_dir())
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// A program of the host, by its absolute path (the commands run with the image's PATH).
fn host_program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: eval \"$(e2e/scripts/tools.sh env)\""))
}

/// Runs `cmd`, panicking with its output when it fails.
fn check(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// Reads a blob of an OCI layout by its digest.
fn blob(layout: &Path, digest: &str) -> Value {
    let (alg, hex) = digest.split_once(':').expect("a digest");
    let text = std::fs::read(layout.join("blobs").join(alg).join(hex)).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// Unpacks `NAME.oci.tar` from `out` into `scratch`: the layout, then the root with umoci.
fn unpack(umoci: &Path, out: &Path, scratch: &Path, name: &'static str) -> Image {
    let layout = scratch.join(format!("{name}-layout"));
    std::fs::create_dir_all(&layout).unwrap();
    check(
        Command::new("tar")
            .arg("-xf")
            .arg(out.join(format!("{name}.oci.tar")))
            .arg("-C")
            .arg(&layout),
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    let tag = entry["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .expect("a tagged image");
    let manifest = blob(&layout, entry["digest"].as_str().unwrap());
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    let bundle = scratch.join(format!("{name}-bundle"));
    check(
        Command::new(umoci)
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle),
    );
    println!(
        "{name}: tag {tag}, {} layers",
        manifest["layers"].as_array().unwrap().len()
    );
    Image {
        name,
        rootfs: bundle.join("rootfs"),
        config,
    }
}

/// Every path under `dir` whose file name is a shell's.
fn shells_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if SHELLS.iter().any(|s| entry.file_name() == *s) {
            found.push(path.clone());
        }
        if kind.is_dir() {
            found.extend(shells_under(&path));
        }
    }
    found
}

fn check_config_and_root(image: &Image, binaries: &[&str]) {
    let config = &image.config["config"];
    assert_eq!(
        config["User"],
        format!("{NONROOT}:{NONROOT}"),
        "{}",
        image.name
    );
    assert_eq!(config["WorkingDir"], "/", "{}", image.name);
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!([format!("/usr/local/bin/{}", image.name)]),
        "{}",
        image.name
    );
    for shell in [
        "bin/sh",
        "bin/bash",
        "usr/bin/sh",
        "bin/busybox",
        "usr/bin/busybox",
    ] {
        let path = image.rootfs.join(shell);
        assert!(
            path.symlink_metadata().is_err(),
            "{} holds /{shell}",
            image.name
        );
    }
    assert_eq!(
        shells_under(&image.rootfs),
        Vec::<PathBuf>::new(),
        "{}",
        image.name
    );
    let mut held: Vec<String> = std::fs::read_dir(image.rootfs.join("usr/local/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    held.sort();
    assert_eq!(
        held, binaries,
        "{}: the binaries in /usr/local/bin",
        image.name
    );
    let tmp = image.rootfs.join("tmp").metadata().unwrap();
    assert_eq!(
        tmp.mode() & 0o7777,
        0o1777,
        "{}: /tmp is writable by all",
        image.name
    );
}

/// Chroot when this process may (root); otherwise the loader, with the reason.
fn choose_way(worker: &Image) -> Way {
    let out = worker.run(Way::Chroot, false, "zop-worker", &["--version"]);
    if out.status.success() {
        println!("running the binaries in a chroot of each root, as {NONROOT}:{NONROOT}");
        return Way::Chroot;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Operation not permitted") || err.contains("ermission denied"),
        "zop-worker --version in a chroot of its root failed ({}): {err}",
        out.status
    );
    println!("running the binaries with each root's loader: a chroot is not permitted: {err}");
    Way::Loader
}

fn check_versions(image: &Image, way: Way, binaries: &[&str]) {
    let version = env!("CARGO_PKG_VERSION");
    for b in binaries {
        let out = image.run(way, false, b, &["--version"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{b} --version in {} failed ({}): {}{}",
            image.name,
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), format!("{b} {version}"), "{}", image.name);
        println!("{}: {}", image.name, stdout.trim());
    }
}

/// The CUDA libraries the tools' cache holds, or why there are none (the wheels could not
/// be fetched; the worker image then carries none either).
fn cuda_in_cache() -> Result<(), String> {
    let (cublas, nvrtc) = (env_path("ZOP_CUBLAS_DIR"), env_path("ZOP_NVRTC_DIR"));
    for lib in [cublas.join("libcublas.so.12"), nvrtc.join("libnvrtc.so.12")] {
        if !lib.exists() {
            return Err(format!(
                "{} is missing: e2e/scripts/tools.sh build could not fetch NVIDIA's wheel",
                lib.display()
            ));
        }
    }
    Ok(())
}

fn check_cuda(worker: &Image, way: Way) {
    if let Err(why) = cuda_in_cache() {
        println!("SKIPPED: the worker image's CUDA libraries, because {why}");
        return;
    }
    let env = worker.env();
    assert!(
        env.contains(&("ZOP_CUDA_LIBRARY_PATH".into(), CUDA_DIR.into())),
        "the worker's config sets ZOP_CUDA_LIBRARY_PATH={CUDA_DIR}: {env:?}"
    );
    let dir = worker.rootfs.join(CUDA_DIR.trim_start_matches('/'));
    for lib in ["libcublas.so.12", "libcublasLt.so.12", "libnvrtc.so.12"] {
        assert!(
            dir.join(lib).is_file(),
            "the worker image lacks {CUDA_DIR}/{lib}"
        );
    }
    if way == Way::Loader {
        // The worker finds its libraries through /proc/self and runs itself again through
        // /proc/self/exe, which under the root's loader is the loader.
        println!(
            "SKIPPED: zop-worker probe in the worker's root, because a chroot is not permitted here"
        );
        return;
    }
    // Read-only first, as in a worker Pod; then writable. The image puts the libraries
    // where cudarc looks, so the worker links nothing in /tmp on either.
    for writable in [false, true] {
        let root = if writable { "writable" } else { "read-only" };
        let out = worker.run(way, writable, "zop-worker", &["probe", "--json"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "zop-worker probe on a {root} root failed ({}): {stdout}{stderr}",
            out.status
        );
        println!(
            "zop-worker probe on the worker's {root} root: {}",
            stdout.trim()
        );
        if !stderr.is_empty() {
            println!("  its stderr: {}", stderr.trim());
        }
        assert!(
            !stderr.contains("cannot link"),
            "the worker tried to link its libraries on a {root} root: {stderr}"
        );
        let report: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            report["identification"]["runtime"]["cudaLibraries"],
            serde_json::json!([
                format!("nvrtc ({CUDA_DIR}/libnvrtc.so.12)"),
                format!("cublas ({CUDA_DIR}/libcublas.so.12)"),
            ]),
            "the CUDA libraries the worker loads from its image, on a {root} root"
        );
        assert!(
            !report["benchmark"].is_null(),
            "the probe ran its benchmark"
        );
    }
    check_nothing_linked(worker);
}

/// The worker left no links under /tmp: in its image cudarc finds the libraries itself.
fn check_nothing_linked(worker: &Image) {
    let linked: Vec<_> = std::fs::read_dir(worker.rootfs.join("tmp"))
        .unwrap()
        .map(Result::unwrap)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("zop-cuda-"))
        .collect();
    assert!(
        linked.is_empty(),
        "the worker linked its libraries: {linked:?}"
    );
}

#[test]
fn images_hold_their_binaries_run_as_nonroot_without_a_shell() {
    let umoci = env_path("ZOP_UMOCI");
    assert!(
        umoci.is_file(),
        "{} is missing: run e2e/scripts/tools.sh build",
        umoci.display()
    );
    let profile = std::env::var("ZOP_BIN_PROFILE").unwrap_or_else(|_| "debug".into());
    for b in ["zop-operator", "kubectl-zop", "zop-worker"] {
        zop_e2e::bin_path(b);
    }
    // Removed when dropped, so a failed test leaves no gigabyte of roots behind.
    let scratch = tempfile::Builder::new()
        .prefix("zop-images-")
        .tempdir()
        .unwrap();
    let out = scratch.path().join("out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/images.sh");
    let sizes = check(
        Command::new(&script)
            .args(["--profile", &profile, "--out"])
            .arg(&out),
    );
    println!("{sizes}");

    let operator = unpack(&umoci, &out, scratch.path(), "zop-operator");
    let worker = unpack(&umoci, &out, scratch.path(), "zop-worker");
    check_config_and_root(&operator, &["kubectl-zop", "zop-operator"]);
    check_config_and_root(&worker, &["zop-worker"]);
    let way = choose_way(&worker);
    check_versions(&operator, way, &["zop-operator", "kubectl-zop"]);
    check_versions(&worker, way, &["zop-worker"]);
    check_cuda(&worker, way);
}
