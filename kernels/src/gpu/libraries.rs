//! Finding NVRTC and cuBLAS of CUDA 13 or 12. cudarc (built for one CUDA version) looks
//! for `libnvrtc.so`, `libnvrtc.so.12` and the like, never `libnvrtc.so.13`, so on a host
//! with CUDA 13 alone, or with the libraries in a directory the loader does not search,
//! it would find nothing and every fragment would run on the CPU.
//!
//! [`find`] looks, in order, in the directory named by [`OVERRIDE_ENV`] (if any), then
//! where the dynamic loader looks, for the versioned names both releases ship
//! ([`candidates`]: `.so.13`, then `.so.12`, then the unversioned name). When what it
//! finds is not what cudarc would load by itself ([`cudarc_finds`]), [`link`] makes a
//! private directory where cudarc's first name (`libnvrtc.so`, `libcublas.so`) points at
//! the library found; the worker then runs itself again with that directory (and the
//! libraries' own, for their dependencies) first on `LD_LIBRARY_PATH`, which the loader
//! reads only at start. [`LINKED_ENV`] marks the second run.

use std::path::{Path, PathBuf};

/// A directory to take NVRTC and cuBLAS from before any other.
pub const OVERRIDE_ENV: &str = "ZOP_CUDA_LIBRARY_PATH";
/// Set in a worker that already runs with its libraries linked.
pub const LINKED_ENV: &str = "ZOP_CUDA_LINKED";
/// CUDA major versions looked for, newest first.
pub const MAJORS: [u32; 2] = [13, 12];

/// A CUDA library the worker needs beside the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// The runtime compiler.
    Nvrtc,
    /// cuBLAS.
    Cublas,
}

impl Library {
    /// Both.
    pub const ALL: [Library; 2] = [Library::Nvrtc, Library::Cublas];

    /// The name without `lib` and `.so`.
    pub fn stem(self) -> &'static str {
        match self {
            Self::Nvrtc => "nvrtc",
            Self::Cublas => "cublas",
        }
    }

    /// The unversioned file name, the first cudarc tries.
    pub fn unversioned(self) -> String {
        format!("lib{}.so", self.stem())
    }
}

/// The names tried for `lib`, in order: in `dir` first when given, then bare names for
/// the loader's search.
pub fn candidates(lib: Library, dir: Option<&Path>) -> Vec<String> {
    let mut names: Vec<String> = MAJORS
        .iter()
        .map(|m| format!("lib{}.so.{m}", lib.stem()))
        .collect();
    names.push(lib.unversioned());
    let mut out: Vec<String> = dir
        .map(|d| {
            names
                .iter()
                .map(|n| d.join(n).to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.extend(names);
    out
}

/// A library found: the name that loaded and the file it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which library.
    pub library: Library,
    /// The candidate that loaded (a bare name or a path).
    pub name: String,
    /// The file the loader mapped.
    pub path: PathBuf,
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.library.stem(), self.path.display())
    }
}

/// The first candidate of `lib` that loads.
pub fn find(lib: Library, dir: Option<&Path>) -> Option<Found> {
    candidates(lib, dir).into_iter().find_map(|name| {
        let path = super::launch::loaded_path(&name, lib.stem())?;
        Some(Found {
            library: lib,
            name,
            path,
        })
    })
}

/// Whether cudarc, in this process, loads `lib` (through its own names, which the links
/// may serve).
pub fn cudarc_loads(lib: Library) -> bool {
    match lib {
        Library::Nvrtc => super::launch::nvrtc_library_present(),
        Library::Cublas => super::launch::cublas_library_present(),
    }
}

/// Whether cudarc, searching by itself, loads `found`: only a bare name on its own list
/// (`libnvrtc.so.13` is not on the list of a build for CUDA 12).
pub fn cudarc_finds(found: &Found) -> bool {
    !found.name.contains('/')
        && cudarc::get_lib_name_candidates(found.library.stem()).contains(&found.name)
}

/// Whether cudarc, searching by itself, reaches `found` through `ld_library_path`: its
/// file name is on cudarc's list and its directory is on the path (an image that sets
/// both needs no links, and may have a read-only root where none could be made).
pub fn on_search_path(found: &Found, ld_library_path: Option<&str>) -> bool {
    // The candidate as asked for: the mapped file may be the versioned target of a link.
    let asked = if found.name.contains('/') {
        Path::new(&found.name)
    } else {
        found.path.as_path()
    };
    let (Some(dir), Some(name)) = (asked.parent(), asked.file_name()) else {
        return false;
    };
    let name = name.to_string_lossy();
    cudarc::get_lib_name_candidates(found.library.stem()).contains(&name.to_string())
        && ld_library_path
            .unwrap_or_default()
            .split(':')
            .any(|d| !d.is_empty() && Path::new(d) == dir)
}

/// Makes `dir` hold `lib<stem>.so` pointing at each library in `found`, and returns the
/// `LD_LIBRARY_PATH` to run with: `dir`, the libraries' own directories (for the
/// libraries they load in turn), then `current`.
pub fn link(found: &[Found], dir: &Path, current: Option<&str>) -> std::io::Result<String> {
    std::fs::create_dir_all(dir)?;
    let mut path = vec![dir.to_string_lossy().into_owned()];
    for f in found {
        let link = dir.join(f.library.unversioned());
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&f.path, &link)?;
        if let Some(parent) = f.path.parent() {
            let p = parent.to_string_lossy().into_owned();
            if !path.contains(&p) {
                path.push(p);
            }
        }
    }
    path.extend(current.filter(|c| !c.is_empty()).map(str::to_string));
    Ok(path.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_releases_names_are_tried_newest_first_and_the_override_before_all() {
        assert_eq!(
            candidates(Library::Nvrtc, None),
            ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
        );
        let c = candidates(Library::Cublas, Some(Path::new("/opt/cuda")));
        assert_eq!(
            c,
            [
                "/opt/cuda/libcublas.so.13",
                "/opt/cuda/libcublas.so.12",
                "/opt/cuda/libcublas.so",
                "libcublas.so.13",
                "libcublas.so.12",
                "libcublas.so",
            ]
        );
    }

    #[test]
    fn cuda_13_or_a_path_needs_links_and_cudarcs_own_names_do_not() {
        let found = |name: &str| Found {
            library: Library::Nvrtc,
            name: name.into(),
            path: PathBuf::from("/x/libnvrtc.so.13.0.48"),
        };
        assert!(!cudarc_finds(&found("libnvrtc.so.13")));
        assert!(!cudarc_finds(&found("/opt/cuda/libnvrtc.so.12")));
        assert!(cudarc_finds(&found("libnvrtc.so.12")));
        assert!(cudarc_finds(&found("libnvrtc.so")));
    }

    #[test]
    fn a_library_on_the_search_path_under_cudarcs_name_needs_no_link() {
        let found = |name: &str| Found {
            library: Library::Cublas,
            name: name.into(),
            path: PathBuf::from(name),
        };
        let image = found("/usr/local/lib/zop-cuda/libcublas.so.12");
        assert!(on_search_path(&image, Some("/usr/local/lib/zop-cuda")));
        assert!(on_search_path(&image, Some("/a:/usr/local/lib/zop-cuda/")));
        assert!(!on_search_path(&image, Some("/usr/lib")));
        assert!(!on_search_path(&image, None));
        // CUDA 13's name is not cudarc's, wherever it lies.
        let cuda13 = found("/usr/local/lib/zop-cuda/libcublas.so.13");
        assert!(!on_search_path(&cuda13, Some("/usr/local/lib/zop-cuda")));
    }

    #[test]
    fn links_point_cudarcs_first_name_at_the_library_found() {
        let dir = std::env::temp_dir().join(format!("zop-cuda-links-{}", std::process::id()));
        let found = [Found {
            library: Library::Cublas,
            name: "libcublas.so.13".into(),
            path: PathBuf::from("/usr/local/cuda-13/lib64/libcublas.so.13.1.0"),
        }];
        let path = link(&found, &dir, Some("/already")).unwrap();
        assert_eq!(
            path,
            format!("{}:/usr/local/cuda-13/lib64:/already", dir.display())
        );
        assert_eq!(
            std::fs::read_link(dir.join("libcublas.so")).unwrap(),
            found[0].path
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
