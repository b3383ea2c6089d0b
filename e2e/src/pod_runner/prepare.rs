//! Turning a pod into a process: its first container's command, environment and
//! volumes resolved into a [`Prepared`] command line, with ConfigMap, Secret, downward-API
//! and projected-token volumes materialized into private directories.

use super::*;

/// Everything needed to start a pod's process.
#[derive(Debug)]
pub(super) struct Prepared {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) env: BTreeMap<String, String>,
    pub(super) cwd: PathBuf,
    pub(super) log: PathBuf,
    pub(super) tokens: Vec<TokenFile>,
}

/// A projected service-account token file, refreshed at 80% of its lifetime.
#[derive(Debug)]
pub(super) struct TokenFile {
    pub(super) path: PathBuf,
    pub(super) source: ServiceAccountTokenProjection,
    pub(super) mode: u32,
    pub(super) refresh_at: Instant,
}

pub(super) fn spawn(
    shared: &Shared,
    pod_ref: &PodRef,
    prepared: &Prepared,
) -> Result<Option<u32>, RunError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&prepared.log)
        .map_err(|e| RunError::Start(format!("opening {}: {e}", prepared.log.display())))?;
    let err = log
        .try_clone()
        .map_err(|e| RunError::Start(format!("opening {}: {e}", prepared.log.display())))?;
    let mut cmd = Command::new(&prepared.program);
    cmd.args(&prepared.args)
        .env_clear()
        .envs(&prepared.env)
        .current_dir(&prepared.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0);
    shared.spawn(pod_ref, &mut cmd)
}

/// Resolves the first container's command, environment and volumes into a [`Prepared`].
pub(super) async fn prepare(
    shared: &Shared,
    pod: &Pod,
    pod_dir: &Path,
) -> Result<Prepared, RunError> {
    let config = |m: &str| RunError::Config(m.to_string());
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| config("the pod has no spec"))?;
    let container = spec
        .containers
        .first()
        .ok_or_else(|| config("the pod has no containers"))?;
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    make_private_dir(pod_dir, false)?;
    let mut objects = Objects::new(shared.client.clone(), &namespace);

    // Volumes the container mounts, each materialized once.
    let volumes: HashMap<&str, &Volume> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.as_str(), v))
        .collect();
    let mut dirs: HashMap<String, PathBuf> = HashMap::new();
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    let mut tokens = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let dir = match dirs.get(&mount.name) {
            Some(dir) => dir.clone(),
            None => {
                let volume = volumes.get(mount.name.as_str()).ok_or_else(|| {
                    RunError::Config(format!("volume mount {}: no such volume", mount.name))
                })?;
                let dir = materialize(
                    shared,
                    pod,
                    volume,
                    &pod_dir.join("volumes"),
                    &mut objects,
                    &mut tokens,
                )
                .await?;
                dirs.insert(mount.name.clone(), dir.clone());
                dir
            }
        };
        let local = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.join(relative(sub)?),
            None => dir,
        };
        mounts.push((mount.mount_path.clone(), local));
    }

    // The container's own environment, then what the host passes through.
    let container_env = resolve_env(container, pod, &mut objects).await?;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for name in &shared.opts.pass_env {
        if let Some(v) = std::env::var_os(name) {
            env.insert(name.clone(), v.to_string_lossy().into_owned());
        }
    }
    if let Some(name) = &pod.metadata.name {
        env.insert("HOSTNAME".into(), name.clone());
    }
    for (k, v) in &container_env {
        env.insert(k.clone(), rewrite(v, &mounts));
    }
    for (k, v) in &shared.opts.override_env {
        env.insert(k.clone(), v.clone());
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    network::apply(shared, (&namespace, name), &mounts, &mut env, pod_dir)?;

    let argv: Vec<String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(|a| rewrite(&expand(a, &container_env), &mounts))
        .collect();
    if container.command.as_ref().is_none_or(Vec::is_empty) {
        return Err(config(
            "the container has no command (the runner cannot read an image's entrypoint)",
        ));
    }
    let tampered = spec
        .node_name
        .as_ref()
        .and_then(|n| shared.opts.tampered.get(n));
    let program = match tampered {
        Some(p) => p.clone(),
        None => resolve_program(&argv[0])?,
    };
    let cwd = container
        .working_dir
        .as_deref()
        .map(|w| PathBuf::from(rewrite(w, &mounts)))
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| pod_dir.to_path_buf());
    std::fs::create_dir_all(&shared.opts.log_dir)
        .map_err(|e| RunError::Start(format!("creating {}: {e}", shared.opts.log_dir.display())))?;
    let log = log_path(
        &shared.opts.log_dir,
        &namespace,
        pod.metadata.name.as_deref().unwrap_or_default(),
    );
    Ok(Prepared {
        program,
        args: argv[1..].to_vec(),
        env,
        cwd,
        log,
        tokens,
    })
}

/// The binary to run for `command[0]`: a workspace binary from the target directory,
/// else the command as given (an absolute path, or looked up in PATH).
pub(super) fn resolve_program(command: &str) -> Result<PathBuf, RunError> {
    let name = Path::new(command)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if WORKSPACE_BINARIES.contains(&name) {
        let path = target_dir().join("debug").join(name);
        if !path.exists() {
            return Err(RunError::Start(format!(
                "{} is not built; run `cargo build --workspace --bins`",
                path.display()
            )));
        }
        return Ok(path);
    }
    Ok(PathBuf::from(command))
}

/// Creates `dir` with mode 0700 (`all`: with its parents; else it must not exist yet,
/// and its parent must, so nothing is made in a work directory already removed).
pub(super) fn make_private_dir(dir: &Path, all: bool) -> Result<(), RunError> {
    let result = DirBuilder::new().recursive(all).mode(0o700).create(dir);
    match result {
        Ok(()) => Ok(()),
        Err(e) if all && e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(RunError::Config(format!("creating {}: {e}", dir.display()))),
    }
}

/// `path` as a relative path inside a volume: no root, no `..`.
pub(super) fn relative(path: &str) -> Result<PathBuf, RunError> {
    let p = Path::new(path);
    let ok = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(p.to_path_buf())
    } else {
        Err(RunError::Config(format!(
            "path '{path}' is not relative inside its volume"
        )))
    }
}

pub(super) fn write_file(dir: &Path, path: &str, bytes: &[u8], mode: u32) -> Result<(), RunError> {
    let target = dir.join(relative(path)?);
    let io = |e: std::io::Error| RunError::Config(format!("writing {}: {e}", target.display()));
    if let Some(parent) = target.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io)?;
    }
    // Written beside and renamed, so a reader never sees half a file (tokens are rewritten).
    let tmp = target.with_extension("zop-pod-runner.tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o777)).map_err(io)?;
    std::fs::rename(&tmp, &target).map_err(io)?;
    Ok(())
}

pub(super) fn file_mode(mode: Option<i32>, default: Option<i32>) -> u32 {
    mode.or(default)
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(0o644)
}

/// Makes a local directory (or names a host path) standing for `volume`.
pub(super) async fn materialize(
    shared: &Shared,
    pod: &Pod,
    volume: &Volume,
    volumes_dir: &Path,
    objects: &mut Objects,
    tokens: &mut Vec<TokenFile>,
) -> Result<PathBuf, RunError> {
    if let Some(host) = &volume.host_path {
        return Ok(PathBuf::from(&host.path));
    }
    make_private_dir(volumes_dir, true)?;
    let dir = volumes_dir.join(relative(&volume.name)?);
    make_private_dir(&dir, false)?;
    if volume.empty_dir.is_some() {
        return Ok(dir);
    }
    if let Some(cm) = &volume.config_map {
        let items = cm.items.as_deref();
        write_keys(
            objects,
            &dir,
            Kind::ConfigMap,
            &cm.name,
            cm.optional,
            items,
            cm.default_mode,
        )
        .await?;
        return Ok(dir);
    }
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let (items, mode) = (secret.items.as_deref(), secret.default_mode);
        write_keys(
            objects,
            &dir,
            Kind::Secret,
            &name,
            secret.optional,
            items,
            mode,
        )
        .await?;
        return Ok(dir);
    }
    if let Some(downward) = &volume.downward_api {
        write_downward(&dir, pod, downward.items.as_deref(), downward.default_mode)?;
        return Ok(dir);
    }
    if let Some(projected) = &volume.projected {
        let default_mode = projected.default_mode;
        for source in projected.sources.iter().flatten() {
            if let Some(sat) = &source.service_account_token {
                let mode = file_mode(None, default_mode);
                let (token, ttl) = request_token(shared, pod, sat).await?;
                write_file(&dir, &sat.path, token.as_bytes(), mode)?;
                tokens.push(TokenFile {
                    path: dir.join(relative(&sat.path)?),
                    source: sat.clone(),
                    mode,
                    refresh_at: Instant::now() + ttl.mul_f64(0.8),
                });
            } else if let Some(cm) = &source.config_map {
                let items = cm.items.as_deref();
                write_keys(
                    objects,
                    &dir,
                    Kind::ConfigMap,
                    &cm.name,
                    cm.optional,
                    items,
                    default_mode,
                )
                .await?;
            } else if let Some(secret) = &source.secret {
                let items = secret.items.as_deref();
                write_keys(
                    objects,
                    &dir,
                    Kind::Secret,
                    &secret.name,
                    secret.optional,
                    items,
                    default_mode,
                )
                .await?;
            } else if let Some(downward) = &source.downward_api {
                write_downward(&dir, pod, downward.items.as_deref(), default_mode)?;
            } else {
                return Err(RunError::Config(format!(
                    "volume {}: unsupported projected source (supported: serviceAccountToken, configMap, secret, downwardAPI)",
                    volume.name
                )));
            }
        }
        return Ok(dir);
    }
    Err(RunError::Config(format!(
        "volume {}: unsupported volume type (supported: projected, configMap, secret, downwardAPI, emptyDir, hostPath)",
        volume.name
    )))
}

/// Writes `items` (or every key) of the ConfigMap or Secret `name` as files in `dir`;
/// nothing when it is missing and `optional`.
pub(super) async fn write_keys(
    objects: &mut Objects,
    dir: &Path,
    kind: Kind,
    name: &str,
    optional: Option<bool>,
    items: Option<&[KeyToPath]>,
    default_mode: Option<i32>,
) -> Result<(), RunError> {
    let Some(data) = objects.get(kind, name, optional.unwrap_or(false)).await? else {
        return Ok(());
    };
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                let bytes = data.get(&item.key).ok_or_else(|| {
                    RunError::Config(format!("{kind} \"{name}\" has no key \"{}\"", item.key))
                })?;
                write_file(dir, &item.path, bytes, file_mode(item.mode, default_mode))?;
            }
        }
        _ => {
            for (key, bytes) in &data {
                write_file(dir, key, bytes, file_mode(None, default_mode))?;
            }
        }
    }
    Ok(())
}

pub(super) fn write_downward(
    dir: &Path,
    pod: &Pod,
    items: Option<&[DownwardAPIVolumeFile]>,
    default_mode: Option<i32>,
) -> Result<(), RunError> {
    for item in items.unwrap_or_default() {
        let value = match &item.field_ref {
            Some(f) => downward_file(pod, &f.field_path)?,
            None => {
                return Err(RunError::Config(format!(
                    "downwardAPI item {}: only fieldRef is supported",
                    item.path
                )));
            }
        };
        write_file(
            dir,
            &item.path,
            value.as_bytes(),
            file_mode(item.mode, default_mode),
        )?;
    }
    Ok(())
}

/// A downward-API file: whole label and annotation maps as `key="value"` lines.
pub(super) fn downward_file(pod: &Pod, path: &str) -> Result<String, RunError> {
    let map = match path {
        "metadata.labels" => pod.metadata.labels.as_ref(),
        "metadata.annotations" => pod.metadata.annotations.as_ref(),
        _ => return field_ref(pod, path),
    };
    Ok(map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// The value of a downward-API field of `pod`, as an environment variable gets it.
pub(super) fn field_ref(pod: &Pod, path: &str) -> Result<String, RunError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let opt = |v: Option<&String>| v.cloned().unwrap_or_default();
    let keyed = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => opt(meta.name.as_ref()),
        "metadata.namespace" => opt(meta.namespace.as_ref()),
        "metadata.uid" => opt(meta.uid.as_ref()),
        "spec.nodeName" => opt(spec.and_then(|s| s.node_name.as_ref())),
        "spec.serviceAccountName" => opt(spec.and_then(|s| s.service_account_name.as_ref())),
        "status.podIP" => opt(status.and_then(|s| s.pod_ip.as_ref())),
        "status.hostIP" => opt(status.and_then(|s| s.host_ip.as_ref())),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|s| s.host_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        _ => keyed("metadata.labels", meta.labels.as_ref())
            .or_else(|| keyed("metadata.annotations", meta.annotations.as_ref()))
            .ok_or_else(|| RunError::Config(format!("unsupported fieldRef {path}")))?,
    };
    Ok(value)
}
