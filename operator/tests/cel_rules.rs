//! Client-side evaluation of the CEL rules (kube's `cel` feature) over the same invalid
//! corpus the API server rejects in e2e, plus checks that valid objects pass.

use kube::core::cel::Validator;
use serde_json::Value;
use zop_operator::api::crds;
use zop_operator::api::testdata::invalid_cases;

/// The schema of `kind` as published in `crds/` (after the format rewrite of
/// `crds::all`), which is what the API server evaluates the rules against.
fn schema_for(kind: &str) -> Value {
    let (_, crd) = crds::all()
        .into_iter()
        .find(|(_, crd)| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("unknown kind {kind}"));
    let schema = crd.spec.versions[0]
        .schema
        .clone()
        .unwrap()
        .open_api_v3_schema
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

#[test]
fn the_corpus_covers_every_kind_with_at_least_twenty_cases() {
    let cases = invalid_cases().unwrap();
    assert!(cases.len() >= 20, "only {} invalid cases", cases.len());
    for kind in ["Device", "ComputeTask", "Settlement"] {
        assert!(
            cases.iter().any(|c| c.object["kind"] == kind),
            "no case for {kind}"
        );
    }
}

#[test]
fn every_invalid_case_is_rejected_client_side_with_its_message() {
    for case in invalid_cases().unwrap() {
        let schema = schema_for(case.object["kind"].as_str().unwrap());
        let validator = Validator::new();
        if let Some(old) = &case.old {
            let created = validator.validate(&schema, old, None);
            assert!(
                created.is_ok(),
                "{}: the original must be valid: {created:?}",
                case.name
            );
        }
        let err = validator
            .validate(&schema, &case.object, case.old.as_ref())
            .expect_err(&format!("{}: accepted", case.name));
        let text = format!("{err:?}");
        assert!(text.contains(&case.message), "{}: got {text}", case.name);
    }
}

#[test]
fn every_rule_message_has_an_invalid_case() {
    let cases = invalid_cases().unwrap();
    for kind in ["Device", "ComputeTask", "Settlement"] {
        let yaml = serde_json::to_string(&schema_for(kind)).unwrap();
        let schema: Value = serde_json::from_str(&yaml).unwrap();
        let mut messages = Vec::new();
        collect_messages(&schema, &mut messages);
        for m in messages {
            assert!(
                cases.iter().any(|c| c.message == m),
                "{kind}: no invalid case exercises the rule '{m}'"
            );
        }
    }
}

fn collect_messages(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for r in rules {
                    if let Some(m) = r["message"].as_str() {
                        out.push(m.to_string());
                    }
                }
            }
            map.values().for_each(|x| collect_messages(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| collect_messages(x, out)),
        _ => {}
    }
}
