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
use serde::Serialize;
use std::fmt::Write;

use super::output::{self, Globals};

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

/// A key as listed (never the key itself, except once at creation).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRow {
    name: String,
    provider: String,
    quota: Option<u32>,
    expires: Option<String>,
    state: &'static str,
    /// The plaintext key: only in the answer to `create`.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn row(k: &GroupKey) -> KeyRow {
    KeyRow {
        name: k.name.clone(),
        provider: k.provider.clone(),
        quota: k.quota,
        expires: k.expires.map(|e| e.to_string()),
        state: if k.revoked { "revoked" } else { "active" },
        key: None,
    }
}

/// The keys table; a Secret labelled as a key that does not parse is shown as malformed.
pub fn keys_table(rows: &[KeyRow], malformed: &[String]) -> String {
    let mut out = format!(
        "{:<24} {:<20} {:>6} {:<26} STATE\n",
        "NAME", "PROVIDER", "QUOTA", "EXPIRES"
    );
    for k in rows {
        let _ = writeln!(
            out,
            "{:<24} {:<20} {:>6} {:<26} {}",
            k.name,
            k.provider,
            k.quota.map_or("-".into(), |q| q.to_string()),
            k.expires.clone().unwrap_or_else(|| "never".into()),
            k.state
        );
    }
    for name in malformed {
        let _ = writeln!(out, "{name:<24} (malformed: the gateway refuses it)");
    }
    out
}

/// Runs a group-key command in the operator's namespace (`-n`).
pub async fn run(client: Client, g: &Globals, cmd: GroupKeyCommand) -> anyhow::Result<()> {
    let namespace = g.operator_namespace();
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
            let mut created = row(&key);
            created.key = Some(plain.clone());
            output::print(g.output, &created, || format!("{plain}\n"))?;
        }
        GroupKeyCommand::List => {
            let list = api
                .list(&ListParams::default().labels(&format!("{}=true", labels::GROUP_KEY)))
                .await?;
            let mut rows = Vec::new();
            let mut malformed = Vec::new();
            for s in &list.items {
                match secrets::parse_key_secret(s) {
                    Some(k) => rows.push(row(&k)),
                    None => malformed.push(s.metadata.name.clone().unwrap_or_default()),
                }
            }
            output::print(g.output, &rows, || keys_table(&rows, &malformed))?;
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
            let state = serde_json::json!({ "name": name, "state": "revoked" });
            output::print(g.output, &state, || format!("Group Key {name} revoked\n"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_table() {
        let mut revoked = row(&GroupKey {
            name: "bob-key".into(),
            key_hash: "h".into(),
            provider: "bob".into(),
            quota: Some(5),
            expires: Some("2027-01-01T00:00:00Z".parse().unwrap()),
            revoked: true,
        });
        revoked.key = None;
        let active = row(&GroupKey {
            name: "alice-key".into(),
            key_hash: "h".into(),
            provider: "alice".into(),
            quota: None,
            expires: None,
            revoked: false,
        });
        insta::assert_snapshot!(
            "group_keys",
            keys_table(&[active, revoked], &["odd-secret".to_string()])
        );
    }
}
