//! Every manifest in `examples/` parses into the typed API, passes the CEL rules
//! client-side, and (for settlements) carries the hash of its contents.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use zop_operator::api::{ComputeTask, Device, Settlement};
use zop_operator::ledger::accounts::Ledger;
use zop_operator::ledger::chain;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("examples/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn load<T: DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).expect("readable example");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_example_parses_and_passes_cel_rules() {
    let files = examples();
    assert!(
        files.len() >= 7,
        "expected an example per kind and per workload type"
    );
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let result = if name.starts_with("device") {
            load::<Device>(&path).validate_cel()
        } else if name.starts_with("computetask") {
            load::<ComputeTask>(&path).validate_cel()
        } else if name.starts_with("settlement") {
            load::<Settlement>(&path).validate_cel()
        } else {
            panic!("{name}: unknown kind prefix")
        };
        assert!(result.is_ok(), "{name}: {result:?}");
    }
}

#[test]
fn there_is_a_task_example_per_workload_type() {
    let mut types: Vec<String> = examples()
        .iter()
        .filter(|p| p.to_string_lossy().contains("computetask"))
        .map(|p| serde_json::to_string(&load::<ComputeTask>(p).spec.workload).unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "\"compute-proof\"",
            "\"data-processing\"",
            "\"inference\"",
            "\"training\""
        ]
    );
}

#[test]
fn the_settlement_example_carries_the_hash_of_its_contents() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let stl: Settlement = load(&dir.join("settlement.yaml"));
    assert_eq!(stl.spec.hash, chain::compute_hash(&stl.spec));
    assert_eq!(chain::verify(std::slice::from_ref(&stl.spec)), Ok(()));
    // It is a valid genesis record: the ledger starts from it.
    let ledger = Ledger::replay(std::slice::from_ref(&stl.spec)).expect("a genesis record");
    assert_eq!(ledger.pool, zop_operator::api::POOL_BASE_UNITS);
}
