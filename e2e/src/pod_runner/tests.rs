use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "w-1", "namespace": "ns", "uid": "1234-5678-9abc",
            "labels": { "app": "zop" }, "annotations": { "a": "b" }
        },
        "spec": {
            "nodeName": "gpu-h100-0001", "serviceAccountName": "worker",
            "containers": [{ "name": "worker", "image": "img" }]
        },
        "status": { "podIP": "10.0.0.7", "podIPs": [{ "ip": "10.0.0.7" }], "hostIP": "10.1.0.1" }
    }))
    .expect("pod")
}

#[test]
fn expansion_follows_the_kubelet_rules() {
    let e = env(&[("A", "x"), ("B", "y")]);
    assert_eq!(expand("$(A)-$(B)", &e), "x-y");
    assert_eq!(expand("$$(A)", &e), "$(A)");
    assert_eq!(expand("$(C)", &e), "$(C)");
    assert_eq!(expand("cost $5 $(A", &e), "cost $5 $(A");
    assert_eq!(expand("plain", &e), "plain");
}

#[test]
fn paths_under_a_mount_point_at_the_local_directory() {
    let mounts = vec![
        (
            "/var/run/secrets".to_string(),
            PathBuf::from("/tmp/r/outer"),
        ),
        (
            "/var/run/secrets/zoptoken/".to_string(),
            PathBuf::from("/tmp/r/inner"),
        ),
    ];
    assert_eq!(
        rewrite("/var/run/secrets/zoptoken/token", &mounts),
        "/tmp/r/inner/token"
    );
    assert_eq!(
        rewrite("/var/run/secrets/zoptoken", &mounts),
        "/tmp/r/inner"
    );
    assert_eq!(
        rewrite("/var/run/secrets/other", &mounts),
        "/tmp/r/outer/other"
    );
    assert_eq!(
        rewrite("--token=/var/run/secrets/zoptoken/token", &mounts),
        "--token=/tmp/r/inner/token"
    );
    assert_eq!(rewrite("/var/run/secretsX", &mounts), "/var/run/secretsX");
    assert_eq!(rewrite("relative/path", &mounts), "relative/path");
}

#[test]
fn field_refs_read_the_pod() {
    let p = pod();
    let get = |path| field_ref(&p, path).expect(path);
    assert_eq!(get("metadata.name"), "w-1");
    assert_eq!(get("metadata.namespace"), "ns");
    assert_eq!(get("metadata.uid"), "1234-5678-9abc");
    assert_eq!(get("spec.nodeName"), "gpu-h100-0001");
    assert_eq!(get("spec.serviceAccountName"), "worker");
    assert_eq!(get("status.podIP"), "10.0.0.7");
    assert_eq!(get("status.podIPs"), "10.0.0.7");
    assert_eq!(get("metadata.labels['app']"), "zop");
    assert_eq!(get("metadata.annotations['a']"), "b");
    assert!(matches!(
        field_ref(&p, "spec.nodeSelector"),
        Err(RunError::Config(_))
    ));
}

#[test]
fn volume_paths_stay_inside_the_volume() {
    assert!(relative("token").is_ok());
    assert!(relative("a/b").is_ok());
    assert!(relative("../x").is_err());
    assert!(relative("/etc/passwd").is_err());
    assert!(relative("").is_err());
}

#[test]
fn termination_reports_codes_and_signals() {
    let t0 = Time(Timestamp::UNIX_EPOCH);
    let ok = Termination::of(ExitStatus::from_raw(0), 7, t0.clone(), t0.clone());
    assert_eq!((ok.exit_code, ok.reason.as_str()), (0, "Completed"));
    let three = Termination::of(ExitStatus::from_raw(3 << 8), 7, t0.clone(), t0.clone());
    assert_eq!((three.exit_code, three.reason.as_str()), (3, "Error"));
    let killed = Termination::of(ExitStatus::from_raw(9), 7, t0.clone(), t0);
    assert_eq!((killed.exit_code, killed.signal), (137, Some(9)));
}

#[test]
fn terminal_patch_sets_phase_state_and_ready_false() {
    let t0 = Time(Timestamp::UNIX_EPOCH);
    let t = Termination::of(ExitStatus::from_raw(3 << 8), 7, t0.clone(), t0);
    let patch = terminated_status(&pod(), &t);
    assert_eq!(patch["status"]["phase"], "Failed");
    let state = &patch["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(state["exitCode"], 3);
    assert_eq!(state["reason"], "Error");
    assert_eq!(patch["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(patch["status"]["conditions"][0]["status"], "False");
}

#[test]
fn workspace_binaries_come_from_the_target_directory() {
    // Resolution of other commands is left to the OS.
    assert_eq!(
        resolve_program("/bin/sh").expect("sh"),
        PathBuf::from("/bin/sh")
    );
    match resolve_program("/usr/local/bin/zop-worker") {
        Ok(p) => assert!(p.starts_with(target_dir()), "{}", p.display()),
        Err(e) => assert_eq!(e.reason(), "StartError"),
    }
}
