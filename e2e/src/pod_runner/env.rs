//! The container's environment as the kubelet builds it: `envFrom`, then `env` with
//! `$(NAME)` expansion, and values under a mount path rewritten to the local directory.

use super::*;

/// Expands `$(NAME)` references to `env`, as the kubelet does: `$$` is a literal `$`,
/// and a reference to an undefined name stays as written.
pub(super) fn expand(input: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Points a value under a mount path at the local directory standing for that mount:
/// the whole value, or the part after the first `=` (`--flag=/mount/path`). The longest
/// matching mount path wins.
pub(super) fn rewrite(value: &str, mounts: &[(String, PathBuf)]) -> String {
    let replace = |v: &str| -> Option<String> {
        mounts
            .iter()
            .filter_map(|(mount, local)| {
                let mount = mount.trim_end_matches('/');
                let rest = v.strip_prefix(mount)?;
                (rest.is_empty() || rest.starts_with('/') || mount.is_empty())
                    .then(|| (mount.len(), format!("{}{rest}", local.display())))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, v)| v)
    };
    if let Some(v) = replace(value) {
        return v;
    }
    if let Some((flag, v)) = value.split_once('=')
        && let Some(v) = replace(v)
    {
        return format!("{flag}={v}");
    }
    value.to_string()
}

/// The container's environment: `envFrom` first, then `env` in order, each value
/// expanded against what came before.
pub(super) async fn resolve_env(
    container: &Container,
    pod: &Pod,
    objects: &mut Objects,
) -> Result<BTreeMap<String, String>, RunError> {
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(cm) = &from.config_map_ref {
            objects
                .get(Kind::ConfigMap, &cm.name, cm.optional.unwrap_or(false))
                .await?
        } else if let Some(secret) = &from.secret_ref {
            objects
                .get(Kind::Secret, &secret.name, secret.optional.unwrap_or(false))
                .await?
        } else {
            None
        };
        for (k, v) in data.into_iter().flatten() {
            env.insert(
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => Some(expand(v, &env)),
            (None, None) => Some(String::new()),
            (None, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    Some(field_ref(pod, &f.field_path)?)
                } else if let Some(k) = &from.config_map_key_ref {
                    objects
                        .key(
                            Kind::ConfigMap,
                            &k.name,
                            &k.key,
                            k.optional.unwrap_or(false),
                        )
                        .await?
                } else if let Some(k) = &from.secret_key_ref {
                    objects
                        .key(Kind::Secret, &k.name, &k.key, k.optional.unwrap_or(false))
                        .await?
                } else {
                    return Err(RunError::Config(format!(
                        "env {}: unsupported valueFrom (supported: fieldRef, configMapKeyRef, secretKeyRef)",
                        var.name
                    )));
                }
            }
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}
