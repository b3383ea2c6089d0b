//! `crds/` must hold exactly what the Rust types generate.

use zop_operator::api::crds;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for (file, crd) in crds::all() {
        let want = crds::to_yaml(&crd).expect("CRD serializes");
        let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            have == want,
            "crds/{file} is stale: run `cargo run -p zop-operator -- crd --out crds`"
        );
    }
}
