//! CRD generation: the YAML in `crds/` is produced here and nowhere else.

use super::{ComputeTask, Device, Settlement};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD, paired with the file name it is written to under `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("devices.zoptoken.io.yaml", Device::crd()),
        ("computetasks.zoptoken.io.yaml", ComputeTask::crd()),
        ("settlements.zoptoken.io.yaml", Settlement::crd()),
    ]
}

/// One CRD as YAML, with a header saying it is generated.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::ser::Error> {
    let body = serde_saphyr::to_string(crd)?;
    Ok(format!(
        "# Generated from the Rust types in operator/src/api by `zop-operator crd`; do not edit.\n{body}"
    ))
}

/// All CRDs as one multi-document YAML stream.
pub fn all_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let docs: Result<Vec<_>, _> = all().iter().map(|(_, crd)| to_yaml(crd)).collect();
    Ok(docs?.join("---\n"))
}
