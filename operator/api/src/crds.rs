//! CRD generation: the YAML in `crds/` is produced here and nowhere else.

use super::{ComputeTask, Device, Settlement};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    JSONSchemaPropsOrStringArray,
};
use kube::CustomResourceExt;

/// Every CRD, paired with the file name it is written to under `crds/`, with its
/// integer formats rewritten to the ones Kubernetes recognizes ([`kubernetes_formats`]).
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    let mut crds = vec![
        ("devices.zoptoken.io.yaml", Device::crd()),
        ("computetasks.zoptoken.io.yaml", ComputeTask::crd()),
        ("settlements.zoptoken.io.yaml", Settlement::crd()),
    ];
    for (_, crd) in &mut crds {
        kubernetes_formats(crd);
    }
    crds
}

/// Rewrites the integer formats schemars derives from Rust types (`uint32`, `uint64`,
/// `int8`, …) into the only ones the API server recognizes for integers, `int32` and
/// `int64` (it warns "unrecognized format" on any other), keeping the Rust type's range
/// as `minimum`/`maximum` where the schema has no bound of its own:
///
/// - `int8`, `int16`, `uint8`, `uint16` become `int32` with the type's bounds;
/// - `uint32` becomes `int64` with minimum 0 and maximum 4294967295;
/// - `uint64`, `uint` (usize) and `uint128` lose their format, since no recognized
///   format holds their range, and keep minimum 0; `int128` loses its format;
/// - `int` (isize) becomes `int64`.
///
/// Formats of other types and recognized integer formats are left alone.
pub fn kubernetes_formats(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            for_each_schema(schema, "", &mut |_, s| integer_format(s));
        }
    }
}

fn integer_format(s: &mut JSONSchemaProps) {
    if s.type_.as_deref() != Some("integer") {
        return;
    }
    let Some(format) = s.format.as_deref() else {
        return;
    };
    let (format, min, max): (Option<&str>, Option<f64>, Option<f64>) = match format {
        "int8" => (Some("int32"), Some(i8::MIN.into()), Some(i8::MAX.into())),
        "int16" => (Some("int32"), Some(i16::MIN.into()), Some(i16::MAX.into())),
        "uint8" => (Some("int32"), Some(0.0), Some(u8::MAX.into())),
        "uint16" => (Some("int32"), Some(0.0), Some(u16::MAX.into())),
        "uint32" => (Some("int64"), Some(0.0), Some(u32::MAX.into())),
        "uint64" | "uint" | "uint128" => (None, Some(0.0), None),
        "int" => (Some("int64"), None, None),
        "int128" => (None, None, None),
        _ => return,
    };
    s.format = format.map(str::to_string);
    if s.minimum.is_none() {
        s.minimum = min;
    }
    if s.maximum.is_none() {
        s.maximum = max;
    }
}

/// Calls `f` on `s` and on every schema nested in it (properties, items, additional
/// properties, `allOf`/`anyOf`/`oneOf`/`not`, …), each with its path from the root.
fn for_each_schema(
    s: &mut JSONSchemaProps,
    path: &str,
    f: &mut impl FnMut(&str, &mut JSONSchemaProps),
) {
    f(path, s);
    for (name, map) in [
        ("properties", &mut s.properties),
        ("patternProperties", &mut s.pattern_properties),
        ("definitions", &mut s.definitions),
    ] {
        for (key, child) in map.iter_mut().flatten() {
            let child_path = if name == "properties" {
                format!("{path}.{key}")
            } else {
                format!("{path}.{name}[{key}]")
            };
            for_each_schema(child, &child_path, f);
        }
    }
    match &mut s.items {
        Some(JSONSchemaPropsOrArray::Schema(child)) => {
            for_each_schema(child, &format!("{path}[*]"), f)
        }
        Some(JSONSchemaPropsOrArray::Schemas(children)) => {
            for (i, child) in children.iter_mut().enumerate() {
                for_each_schema(child, &format!("{path}[{i}]"), f);
            }
        }
        None => {}
    }
    for (name, child) in [
        ("additionalProperties", &mut s.additional_properties),
        ("additionalItems", &mut s.additional_items),
    ] {
        if let Some(JSONSchemaPropsOrBool::Schema(child)) = child {
            for_each_schema(child, &format!("{path}.{name}"), f);
        }
    }
    for (name, list) in [
        ("allOf", &mut s.all_of),
        ("anyOf", &mut s.any_of),
        ("oneOf", &mut s.one_of),
    ] {
        for (i, child) in list.iter_mut().flatten().enumerate() {
            for_each_schema(child, &format!("{path}.{name}[{i}]"), f);
        }
    }
    if let Some(child) = &mut s.not {
        for_each_schema(child, &format!("{path}.not"), f);
    }
    for (key, dep) in s.dependencies.iter_mut().flatten() {
        if let JSONSchemaPropsOrStringArray::Schema(child) = dep {
            for_each_schema(child, &format!("{path}.dependencies[{key}]"), f);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The string formats the API server recognizes at the compatibility version of the
    /// Kubernetes this project runs (k8s.io/apiextensions-apiserver,
    /// pkg/apiserver/validation/formats.go, `supportedVersionedFormats`), compared as it
    /// compares them: with `-` removed.
    const STRING_FORMATS: &[&str] = &[
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "k8sshortname",
        "k8slongname",
    ];

    /// `GetUnrecognizedFormats` of the same file: integers take `int32` or `int64`,
    /// numbers `float` or `double`, strings (or schemas without a type) the string
    /// formats, and no other type takes a format.
    fn recognized(type_: Option<&str>, format: &str) -> bool {
        match type_ {
            Some("integer") => matches!(format, "int32" | "int64"),
            Some("number") => matches!(format, "float" | "double"),
            None | Some("string") => STRING_FORMATS.contains(&format.replace('-', "").as_str()),
            Some(_) => false,
        }
    }

    fn schema(crd: &mut CustomResourceDefinition) -> &mut JSONSchemaProps {
        crd.spec.versions[0]
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .expect("a derived schema")
    }

    #[test]
    fn every_format_in_every_crd_is_one_kubernetes_recognizes() {
        let mut unrecognized = Vec::new();
        let mut formats = 0;
        for (file, mut crd) in all() {
            for_each_schema(schema(&mut crd), "", &mut |path, s| {
                if let Some(format) = s.format.as_deref().filter(|f| !f.is_empty()) {
                    formats += 1;
                    if !recognized(s.type_.as_deref(), format) {
                        unrecognized.push(format!(
                            "{file}: {path}: type {:?}, format {format:?}",
                            s.type_
                        ));
                    }
                }
            });
        }
        assert!(formats > 0, "the walk found no formats at all");
        assert!(
            unrecognized.is_empty(),
            "formats the API server does not recognize:\n{}",
            unrecognized.join("\n")
        );
    }

    #[test]
    fn unsigned_integers_keep_their_range() {
        let (_, mut crd) = all()
            .into_iter()
            .find(|(file, _)| file.starts_with("devices."))
            .unwrap();
        let mut found = BTreeMap::new();
        for_each_schema(schema(&mut crd), "", &mut |path, s| {
            found.insert(path.to_string(), (s.format.clone(), s.minimum, s.maximum));
        });
        // u32 and u64 fields of the Device status.
        assert_eq!(
            found[".status.identification.cpuCores"],
            (Some("int64".into()), Some(0.0), Some(4_294_967_295.0))
        );
        assert_eq!(
            found[".status.identification.memoryMiB"],
            (None, Some(0.0), None)
        );
    }

    #[test]
    fn each_rust_integer_format_gets_a_recognized_one_and_its_bounds() {
        const U32_MAX: f64 = 4_294_967_295.0;
        let none = None;
        // The format schemars writes and the schema's own bounds, then what they become.
        let cases = [
            (
                "uint8",
                [Some(0.0), Some(255.0)],
                Some("int32"),
                [Some(0.0), Some(255.0)],
            ),
            (
                "uint16",
                [none, none],
                Some("int32"),
                [Some(0.0), Some(65535.0)],
            ),
            (
                "int8",
                [none, none],
                Some("int32"),
                [Some(-128.0), Some(127.0)],
            ),
            (
                "int16",
                [none, none],
                Some("int32"),
                [Some(-32768.0), Some(32767.0)],
            ),
            (
                "uint32",
                [Some(0.0), none],
                Some("int64"),
                [Some(0.0), Some(U32_MAX)],
            ),
            // Bounds of the schema's own are kept.
            (
                "uint32",
                [Some(1.0), Some(1000.0)],
                Some("int64"),
                [Some(1.0), Some(1000.0)],
            ),
            ("uint64", [Some(0.0), none], None, [Some(0.0), none]),
            ("uint64", [none, none], None, [Some(0.0), none]),
            ("uint", [none, none], None, [Some(0.0), none]),
            ("int", [none, none], Some("int64"), [none, none]),
            ("int128", [none, none], None, [none, none]),
            ("int32", [none, none], Some("int32"), [none, none]),
            ("int64", [none, none], Some("int64"), [none, none]),
        ];
        for (from, [minimum, maximum], format, bounds) in cases {
            let int = JSONSchemaProps {
                type_: Some("integer".into()),
                format: Some(from.into()),
                minimum,
                maximum,
                ..Default::default()
            };
            // Nested under an object's properties, an array's items and an anyOf.
            let mut root = JSONSchemaProps {
                type_: Some("object".into()),
                properties: Some(BTreeMap::from([(
                    "list".to_string(),
                    JSONSchemaProps {
                        type_: Some("array".into()),
                        items: Some(JSONSchemaPropsOrArray::Schema(Box::new(JSONSchemaProps {
                            any_of: Some(vec![int]),
                            ..Default::default()
                        }))),
                        ..Default::default()
                    },
                )])),
                ..Default::default()
            };
            for_each_schema(&mut root, "", &mut |_, s| integer_format(s));
            let mut seen = Vec::new();
            for_each_schema(&mut root, "", &mut |path, s| {
                if s.type_.as_deref() == Some("integer") {
                    seen.push((path.to_string(), s.format.clone(), [s.minimum, s.maximum]));
                }
            });
            assert_eq!(
                seen,
                [(
                    ".list[*].anyOf[0]".to_string(),
                    format.map(str::to_string),
                    bounds
                )],
                "{from}"
            );
        }
    }
}
