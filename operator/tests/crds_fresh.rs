//! `crds/` and the Helm chart's copy must hold exactly what the Rust types generate.

use zop_operator::api::crds;

#[test]
fn committed_crds_match_the_rust_types() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["crds", "charts/zoptoken/crds"] {
        for (file, crd) in crds::all() {
            let want = crds::to_yaml(&crd).expect("CRD serializes");
            let have = std::fs::read_to_string(root.join(dir).join(file)).unwrap_or_default();
            assert!(
                have == want,
                "{dir}/{file} is stale: run `cargo run -p zop-operator -- crd --out crds --out charts/zoptoken/crds`"
            );
        }
    }
}
