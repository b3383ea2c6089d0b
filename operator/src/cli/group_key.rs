//! `kubectl zop group-key`: create, list and revoke the Group Keys providers join with.
//! The plaintext key is printed once, at creation; only its hash is stored.

use crate::gateway::secrets::{self, GroupKey};
use crate::labels;
use anyhow::Context;
use clap::Subcommand;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// Group Key operations.
#[derive(Debug, Subcommand)]
pub enum GroupKeyCommand {
    /// Create a key for a provider and print it once.
    Create {
        /// Name of the key (the Secret's name).
        name: String,
        /// The provider account credited for devices that join with it.
        #[arg(long)]
        provider: String,
        /// Most devices the key may register.
        #[arg(long)]
        quota: Option<u32>,
        /// Hours until the key expires; it never expires when omitted.
        #[arg(long)]
        expires_in_hours: Option<u32>,
    },
    /// List keys with their provider, quota, expiry and state (never the key).
    List,
    /// Revoke a key: it registers nothing more; devices it registered keep their tokens.
    Revoke {
        /// Name of the key.
        name: String,
    },
}

/// Runs a group-key command in `namespace` (the operator's).
pub async fn run(client: Client, namespace: &str, cmd: GroupKeyCommand) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    match cmd {
        GroupKeyCommand::Create {
            name,
            provider,
            quota,
            expires_in_hours,
        } => {
            let (plain, key_hash) = secrets::generate(secrets::KEY_PREFIX)
                .map_err(|e| anyhow::anyhow!("no randomness for the key: {e}"))?;
            let expires = match expires_in_hours {
                Some(h) => Some(
                    Timestamp::now()
                        .checked_add(SignedDuration::from_hours(i64::from(h)))
                        .context("--expires-in-hours is too far in the future")?,
                ),
                None => None,
            };
            let key = GroupKey {
                name: name.clone(),
                key_hash,
                provider,
                quota,
                expires,
                revoked: false,
            };
            api.create(
                &PostParams::default(),
                &secrets::key_secret(&name, namespace, &key),
            )
            .await
            .with_context(|| format!("creating Group Key {name} in {namespace}"))?;
            eprintln!("Group Key {name} created; it is shown only this once:");
            println!("{plain}");
        }
        GroupKeyCommand::List => {
            let list = api
                .list(&ListParams::default().labels(&format!("{}=true", labels::GROUP_KEY)))
                .await?;
            println!(
                "{:<24} {:<20} {:>6} {:<26} STATE",
                "NAME", "PROVIDER", "QUOTA", "EXPIRES"
            );
            for s in &list.items {
                match secrets::parse_key_secret(s) {
                    Some(k) => println!(
                        "{:<24} {:<20} {:>6} {:<26} {}",
                        k.name,
                        k.provider,
                        k.quota.map_or("-".into(), |q| q.to_string()),
                        k.expires.map_or("never".into(), |e| e.to_string()),
                        if k.revoked { "revoked" } else { "active" }
                    ),
                    None => println!(
                        "{:<24} (malformed: the gateway refuses it)",
                        s.metadata.name.as_deref().unwrap_or("?")
                    ),
                }
            }
        }
        GroupKeyCommand::Revoke { name } => {
            let current = api
                .get(&name)
                .await
                .with_context(|| format!("Group Key {name} in {namespace}"))?;
            anyhow::ensure!(
                secrets::parse_key_secret(&current).is_some(),
                "{name} is not a Group Key"
            );
            let patch = serde_json::json!({ "stringData": { "revoked": "true" } });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("revoking Group Key {name}"))?;
            println!("Group Key {name} revoked");
        }
    }
    Ok(())
}
