//! The invalid-manifest corpus in `operator/testdata/invalid/`, shared by the client-side
//! CEL tests here and the API-server tests in `e2e/`. Each file names the field and the
//! message its rejection must carry; a file with two documents is an update: the first is
//! created, and applying the second must be rejected.

use std::path::{Path, PathBuf};

/// One invalid manifest.
#[derive(Debug, Clone)]
pub struct InvalidCase {
    /// File name, without directory.
    pub name: String,
    /// The field path the rejection names, for example `spec.fragments.count`.
    pub field: String,
    /// The rule's message.
    pub message: String,
    /// The object before the update, for transition rules.
    pub old: Option<serde_json::Value>,
    /// The object to create or apply.
    pub object: serde_json::Value,
}

/// The corpus directory.
pub fn invalid_dir() -> PathBuf {
    // The corpus lives beside the operator crate, which its e2e and CEL tests share.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/invalid")
}

/// Loads every case, sorted by file name.
pub fn invalid_cases() -> anyhow::Result<Vec<InvalidCase>> {
    let mut paths: Vec<_> = std::fs::read_dir(invalid_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| parse_case(p)).collect()
}

fn parse_case(path: &Path) -> anyhow::Result<InvalidCase> {
    let text = std::fs::read_to_string(path)?;
    let header = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("{}: missing '# {key}:' header", path.display()))
    };
    let mut docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)?;
    let object = docs
        .pop()
        .ok_or_else(|| anyhow::anyhow!("{}: no document", path.display()))?;
    Ok(InvalidCase {
        name: path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        field: header("field")?,
        message: header("message")?,
        old: docs.pop(),
        object,
    })
}
