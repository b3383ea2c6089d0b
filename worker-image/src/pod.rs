//! Pod mode: the worker runs in a Pod the operator created for one assignment, with a
//! projected service-account token whose audience is the gateway. It executes the
//! assignment and exits; SIGTERM finishes the fragment in hand and hands the rest back.

use crate::client::{Bearer, GatewayClient};
use crate::engine::{Engine, EngineArgs};
use crate::shutdown::Shutdown;
use crate::work::{self, Outcome};
use anyhow::Context;
use std::path::PathBuf;

/// How a Pod the operator created reaches the gateway.
#[derive(Debug, Clone, clap::Args)]
pub struct PodAuth {
    /// The gateway's base URL.
    #[arg(long, env = "ZOP_GATEWAY")]
    pub gateway: String,
    /// The projected service-account token (re-read for every call: it is rotated).
    #[arg(long, env = "ZOP_TOKEN_FILE")]
    pub token_file: PathBuf,
    /// PEM file of the gateway's CA.
    #[arg(long, env = "ZOP_CA_CERT")]
    pub ca_cert: PathBuf,
}

impl PodAuth {
    /// The gateway client, after checking that the token can be read at all.
    pub fn client(&self) -> anyhow::Result<(GatewayClient, Bearer<'_>)> {
        let ca = std::fs::read(&self.ca_cert)
            .with_context(|| format!("reading --ca-cert {}", self.ca_cert.display()))?;
        let client = GatewayClient::new(&self.gateway, &ca)?;
        let bearer = Bearer::File(&self.token_file);
        bearer.token()?;
        Ok((client, bearer))
    }
}

/// Options of `zop-worker pod`.
#[derive(Debug, Clone, clap::Args)]
pub struct PodArgs {
    /// The assignment this Pod runs (the Pod's own name).
    #[arg(long, env = "ZOP_ASSIGNMENT")]
    pub assignment: String,
    /// The gateway and the Pod's credentials.
    #[command(flatten)]
    pub auth: PodAuth,
    /// Device and metrics options.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs the assignment until done, closed, or `stop` is requested.
pub async fn run(args: PodArgs, stop: Shutdown) -> anyhow::Result<Outcome> {
    // Fail before opening the device when the token cannot be read at all.
    let (client, bearer) = args.auth.client()?;
    let engine = Engine::start(&args.engine).await?;
    let outcome = work::run_one(&engine, &client, bearer, Some(&args.assignment), &stop)
        .await
        .context("executing the assignment");
    engine.shutdown().await;
    let outcome = outcome?;
    tracing::info!(
        ?outcome,
        stopped = stop.is_triggered(),
        "pod worker finished"
    );
    Ok(outcome)
}
