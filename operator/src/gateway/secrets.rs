//! Secrets the gateway keeps: Group Keys and device tokens, both stored only as SHA-256
//! hashes in Secrets of the operator's namespace. Pure: generation, hashing, the Secret
//! formats and key authorization.

use crate::labels;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// Prefix of Group Keys.
pub const KEY_PREFIX: &str = "zgk_";
/// Prefix of device tokens.
pub const TOKEN_PREFIX: &str = "zdt_";

/// 64 bits from the operating system's CSPRNG: challenge draws and Freivalds secrets,
/// which a worker must not predict.
pub fn random_u64() -> Result<u64, super::protocol::ApiError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| {
        tracing::error!(error = %e, "the operating system's random source failed");
        super::protocol::ApiError::internal()
    })?;
    Ok(u64::from_le_bytes(b))
}

/// A new random secret with `prefix`, and its hash. The plaintext is shown once.
pub fn generate(prefix: &str) -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let plain = format!("{prefix}{}", hex::encode(bytes));
    let hash = hash(&plain);
    Ok((plain, hash))
}

/// SHA-256 hex of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn hash_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A Group Key as the gateway sees it (never the plaintext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKey {
    /// The Secret's name, recorded on the Devices it registers.
    pub name: String,
    /// SHA-256 hex of the key.
    pub key_hash: String,
    /// The provider credited.
    pub provider: String,
    /// Most non-retired devices the key may register.
    pub quota: Option<u32>,
    /// When the key stops working.
    pub expires: Option<Timestamp>,
    /// Revoked keys never work.
    pub revoked: bool,
}

fn data_str(secret: &Secret, key: &str) -> Option<String> {
    let from_data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
    from_data.or_else(|| {
        secret
            .string_data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
    })
}

/// The Secret holding a Group Key.
pub fn key_secret(name: &str, namespace: &str, key: &GroupKey) -> Secret {
    let mut data = BTreeMap::from([
        ("keyHash".to_string(), key.key_hash.clone()),
        ("provider".to_string(), key.provider.clone()),
        ("revoked".to_string(), key.revoked.to_string()),
    ]);
    if let Some(q) = key.quota {
        data.insert("quota".into(), q.to_string());
    }
    if let Some(e) = key.expires {
        data.insert("expires".into(), e.to_string());
    }
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(namespace.into());
    s.metadata.labels = Some(BTreeMap::from([(
        labels::GROUP_KEY.to_string(),
        "true".to_string(),
    )]));
    s.string_data = Some(data);
    s
}

/// Reads a Group Key Secret; `None` (the key is unusable) when malformed.
pub fn parse_key_secret(secret: &Secret) -> Option<GroupKey> {
    let key_hash = data_str(secret, "keyHash")?;
    let provider = data_str(secret, "provider").filter(|p| !p.is_empty())?;
    let quota = match data_str(secret, "quota") {
        Some(q) => Some(q.trim().parse().ok()?),
        None => None,
    };
    let expires = match data_str(secret, "expires") {
        Some(e) => Some(e.trim().parse().ok()?),
        None => None,
    };
    Some(GroupKey {
        name: secret.metadata.name.clone()?,
        key_hash,
        provider,
        quota,
        expires,
        revoked: data_str(secret, "revoked").is_some_and(|r| r.trim() == "true"),
    })
}

/// Why a key was refused; `as_str` is the stable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No key has that hash.
    InvalidGroupKey,
    /// The key was revoked.
    KeyRevoked,
    /// The key expired.
    KeyExpired,
    /// The key's device quota is used up.
    QuotaExceeded,
}

impl Reject {
    /// Stable reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidGroupKey => "InvalidGroupKey",
            Self::KeyRevoked => "KeyRevoked",
            Self::KeyExpired => "KeyExpired",
            Self::QuotaExceeded => "QuotaExceeded",
        }
    }

    /// HTTP status: 403 for quota, 401 otherwise.
    pub fn status(self) -> u16 {
        if self == Self::QuotaExceeded {
            403
        } else {
            401
        }
    }
}

/// Finds the key `presented` and checks it may register one more device. `in_use` is
/// how many non-retired Devices the key registered; `re_registration` is true when this
/// host already has a Device under the key (a restart, not a new device).
pub fn authorize<'a>(
    keys: &'a [GroupKey],
    presented: &str,
    now: Timestamp,
    in_use: impl Fn(&GroupKey) -> u32,
    re_registration: impl Fn(&GroupKey) -> bool,
) -> Result<&'a GroupKey, Reject> {
    let h = hash(presented);
    let key = keys
        .iter()
        .find(|k| hash_eq(&k.key_hash, &h))
        .ok_or(Reject::InvalidGroupKey)?;
    if key.revoked {
        return Err(Reject::KeyRevoked);
    }
    if key.expires.is_some_and(|e| now >= e) {
        return Err(Reject::KeyExpired);
    }
    if let Some(q) = key.quota
        && !re_registration(key)
        && in_use(key) >= q
    {
        return Err(Reject::QuotaExceeded);
    }
    Ok(key)
}

/// The Device name of an agent: `agent-<provider>-<host>`, stable across restarts.
pub fn agent_device_name(provider: &str, hostname: &str) -> String {
    let mut name = format!("agent-{provider}-{hostname}");
    name.truncate(253);
    name.trim_end_matches('-').to_string()
}

/// The name of a device's token Secret.
pub fn token_secret_name(device: &str) -> String {
    let mut name = format!("zop-device-token-{device}");
    name.truncate(253);
    name
}

/// The Secret holding a device token's hash.
pub fn token_secret(device: &str, namespace: &str, token_hash: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(token_secret_name(device));
    s.metadata.namespace = Some(namespace.into());
    s.metadata.labels = Some(BTreeMap::from([(
        labels::DEVICE.to_string(),
        device.to_string(),
    )]));
    s.string_data = Some(BTreeMap::from([
        ("tokenHash".to_string(), token_hash.to_string()),
        ("device".to_string(), device.to_string()),
    ]));
    s
}

/// `(device, token hash)` from a token Secret.
pub fn parse_token_secret(secret: &Secret) -> Option<(String, String)> {
    Some((data_str(secret, "device")?, data_str(secret, "tokenHash")?))
}

/// Whether `presented` is the token whose hash is `stored`.
pub fn token_matches(stored: &str, presented: &str) -> bool {
    hash_eq(stored, &hash(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(plain: &str) -> GroupKey {
        GroupKey {
            name: "alice-key".into(),
            key_hash: hash(plain),
            provider: "alice".into(),
            quota: Some(2),
            expires: Some(Timestamp::from_second(1000).unwrap()),
            revoked: false,
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn generated_secrets_are_prefixed_random_and_stored_as_hashes() {
        let (a, ha) = generate(KEY_PREFIX).unwrap();
        let (b, _) = generate(KEY_PREFIX).unwrap();
        assert!(a.starts_with("zgk_") && a.len() == 68);
        assert_ne!(a, b);
        assert_eq!(ha, hash(&a));
        assert!(!ha.contains(&a));
    }

    #[test]
    fn a_key_secret_round_trips_without_its_plaintext() {
        let k = key("zgk_secret");
        let s = key_secret("alice-key", "zoptoken-system", &k);
        assert!(!serde_json::to_string(&s).unwrap().contains("zgk_secret"));
        assert_eq!(parse_key_secret(&s), Some(k));
    }

    #[test]
    fn each_rejection_has_its_reason() {
        let keys = vec![key("good")];
        let ok = |_: &GroupKey| 0;
        let no = |_: &GroupKey| false;
        assert_eq!(
            authorize(&keys, "wrong", at(0), ok, no),
            Err(Reject::InvalidGroupKey)
        );
        assert_eq!(
            authorize(&keys, "good", at(1000), ok, no),
            Err(Reject::KeyExpired)
        );
        assert!(authorize(&keys, "good", at(999), ok, no).is_ok());
        let mut revoked = keys.clone();
        revoked[0].revoked = true;
        assert_eq!(
            authorize(&revoked, "good", at(0), ok, no),
            Err(Reject::KeyRevoked)
        );
        assert_eq!(Reject::KeyRevoked.status(), 401);
    }

    #[test]
    fn a_full_quota_refuses_new_devices_but_not_a_restart() {
        let keys = vec![key("good")];
        let full = |_: &GroupKey| 2;
        assert_eq!(
            authorize(&keys, "good", at(0), full, |_| false),
            Err(Reject::QuotaExceeded)
        );
        assert_eq!(Reject::QuotaExceeded.status(), 403);
        assert!(authorize(&keys, "good", at(0), full, |_| true).is_ok());
    }

    #[test]
    fn malformed_key_secrets_are_unusable() {
        let mut s = key_secret("k", "ns", &key("x"));
        s.string_data
            .as_mut()
            .unwrap()
            .insert("quota".into(), "many".into());
        assert_eq!(parse_key_secret(&s), None);
        s.string_data.as_mut().unwrap().remove("quota");
        s.string_data.as_mut().unwrap().remove("provider");
        assert_eq!(parse_key_secret(&s), None);
    }

    #[test]
    fn device_names_are_stable_and_tokens_verify_by_hash() {
        assert_eq!(agent_device_name("alice", "box-1"), "agent-alice-box-1");
        let (t, h) = generate(TOKEN_PREFIX).unwrap();
        assert!(token_matches(&h, &t));
        assert!(!token_matches(&h, "zdt_forged"));
        let s = token_secret("agent-alice-box-1", "ns", &h);
        assert_eq!(
            parse_token_secret(&s),
            Some(("agent-alice-box-1".into(), h))
        );
    }
}
