//! The API objects a pod's volumes and environment read: ConfigMaps, Secrets and
//! service-account tokens (TokenRequest), fetched once per pod, and token refreshes.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    ConfigMap,
    Secret,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        })
    }
}

/// The keys of a ConfigMap (`data` and `binaryData`) or Secret, as bytes.
pub(super) type Data = BTreeMap<String, Vec<u8>>;

/// ConfigMaps and Secrets of one namespace, each read once per pod.
pub(super) struct Objects {
    pub(super) config_maps: Api<ConfigMap>,
    pub(super) secrets: Api<Secret>,
    pub(super) cache: HashMap<(Kind, String), Option<Data>>,
}

impl Objects {
    pub(super) fn new(client: Client, namespace: &str) -> Self {
        Self {
            config_maps: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            cache: HashMap::new(),
        }
    }

    /// The object's data; `None` when it is missing and `optional`.
    pub(super) async fn get(
        &mut self,
        kind: Kind,
        name: &str,
        optional: bool,
    ) -> Result<Option<Data>, RunError> {
        let key = (kind, name.to_string());
        if !self.cache.contains_key(&key) {
            let read = |e: kube::Error| RunError::Config(format!("reading {kind} \"{name}\": {e}"));
            let data = match kind {
                Kind::ConfigMap => self
                    .config_maps
                    .get_opt(name)
                    .await
                    .map_err(read)?
                    .map(|cm| {
                        let mut data: Data = cm
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect();
                        data.extend(
                            cm.binary_data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.0)),
                        );
                        data
                    }),
                Kind::Secret => self.secrets.get_opt(name).await.map_err(read)?.map(|s| {
                    let mut data: Data = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    data.extend(
                        s.string_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes())),
                    );
                    data
                }),
            };
            self.cache.insert(key.clone(), data);
        }
        match self.cache.get(&key).cloned().flatten() {
            Some(data) => Ok(Some(data)),
            None if optional => Ok(None),
            None => Err(RunError::Config(format!("{kind} \"{name}\" not found"))),
        }
    }

    /// One key; `None` when the object or key is missing and `optional`.
    pub(super) async fn key(
        &mut self,
        kind: Kind,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, RunError> {
        let Some(data) = self.get(kind, name, optional).await? else {
            return Ok(None);
        };
        match data.get(key) {
            Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
            None if optional => Ok(None),
            None => Err(RunError::Config(format!(
                "couldn't find key {key} in {kind} \"{name}\""
            ))),
        }
    }
}

/// A token for the pod's service account, bound to the pod, and how long it lives.
pub(super) async fn request_token(
    shared: &Shared,
    pod: &Pod,
    source: &ServiceAccountTokenProjection,
) -> Result<(String, Duration), RunError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let seconds = source
        .expiration_seconds
        .unwrap_or(3600)
        .max(MIN_TOKEN_SECONDS);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: source
                .audience
                .clone()
                .filter(|a| !a.is_empty())
                .map(|a| vec![a]),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        }),
        ..TokenRequest::default()
    };
    let response = Api::<ServiceAccount>::namespaced(shared.client.clone(), &namespace)
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| {
            RunError::Config(format!(
                "requesting a token for service account {namespace}/{account}: {e}"
            ))
        })?;
    let status = response.status.unwrap_or_default();
    let token = status.token.filter(|t| !t.is_empty()).ok_or_else(|| {
        RunError::Config(format!(
            "the token request for service account {namespace}/{account} returned no token"
        ))
    })?;
    let ttl = status
        .expiration_timestamp
        .map(|t| t.0.as_second() - Timestamp::now().as_second())
        .unwrap_or(seconds)
        .max(1);
    Ok((token, Duration::from_secs(u64::try_from(ttl).unwrap_or(1))))
}

/// Rewrites tokens that reached 80% of their lifetime, as the kubelet does.
pub(super) async fn refresh_tokens(shared: &Shared, pod: &Pod, tokens: &mut [TokenFile]) {
    let now = Instant::now();
    for file in tokens.iter_mut().filter(|t| t.refresh_at <= now) {
        let written = match request_token(shared, pod, &file.source).await {
            Ok((token, ttl)) => std::fs::write(&file.path, token.as_bytes())
                .and_then(|()| {
                    std::fs::set_permissions(&file.path, std::fs::Permissions::from_mode(file.mode))
                })
                .map(|()| ttl)
                .map_err(|e| RunError::Config(format!("writing {}: {e}", file.path.display()))),
            Err(e) => Err(e),
        };
        file.refresh_at = match written {
            Ok(ttl) => now + ttl.mul_f64(0.8),
            Err(e) => {
                eprintln!("pod-runner: refreshing {}: {e}", file.path.display());
                now + Duration::from_secs(10)
            }
        };
    }
}
