//! Agent mode: a machine outside the cluster joins with a Group Key, keeps its device
//! token in a state directory (mode 0600), and heartbeats until stopped. A restart
//! reuses the token and the stored benchmark, so the Device neither duplicates nor
//! looks like changed hardware. Owns the agent's state file and its retry policy; every
//! retry races the stop request, so an unreachable gateway never delays an exit.

use crate::bench::{self, BenchConfig};
use crate::client::{Bearer, GatewayClient, GatewayError};
use crate::engine::{Engine, EngineArgs};
use crate::probe;
use crate::shutdown::Shutdown;
use crate::work::{self, Outcome};
use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use zop_api::device::{Benchmark, Identification};
use zop_api::protocol::{HeartbeatRequest, RegisterRequest};

/// Options of `zop-worker agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The gateway's base URL, e.g. `https://gateway.example:8443`.
    #[arg(long, env = "ZOP_GATEWAY")]
    pub gateway: String,
    /// The Group Key to join with (needed only until the device has a token).
    #[arg(long, env = "ZOP_GROUP_KEY", hide_env_values = true)]
    pub group_key: Option<String>,
    /// PEM file of the CA the gateway's certificate is checked against.
    #[arg(long, env = "ZOP_CA_CERT")]
    pub ca_cert: PathBuf,
    /// Directory for the device token and the stored benchmark.
    #[arg(long, env = "ZOP_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Host name reported to the gateway; the machine's own when omitted.
    #[arg(long)]
    pub hostname: Option<String>,
    /// Benchmark duration in milliseconds when the hardware is new to this agent.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub bench_ms: u64,
    /// Device and metrics options.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What survives a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// The Device's name.
    pub device: String,
    /// The device token.
    pub token: String,
    /// The hardware the benchmark was measured on.
    pub hardware: String,
    /// The benchmark sent at registration.
    pub benchmark: Option<Benchmark>,
}

const STATE_FILE: &str = "agent.json";

/// A stable description of the hardware; a change means re-measuring.
pub fn hardware_key(id: &Identification) -> String {
    let gpus: Vec<String> = id
        .gpus
        .iter()
        .map(|g| format!("{}/{}", g.model, g.vram_mib))
        .collect();
    format!(
        "{}|{}|{}|{}",
        id.architecture,
        id.cpu_cores,
        id.memory_mib,
        gpus.join(",")
    )
}

/// Load in percent from `/proc/loadavg` text and the core count.
pub fn load_percent(loadavg: &str, cores: u32) -> u32 {
    let one_minute: f64 = loadavg
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let pct = one_minute / f64::from(cores.max(1)) * 100.0;
    pct.clamp(0.0, 100.0).round() as u32
}

/// Reads the stored state; `None` when there is none or it is unreadable.
pub fn load_state(dir: &Path) -> Option<AgentState> {
    let text = std::fs::read_to_string(dir.join(STATE_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the state atomically, readable by the owner only.
pub fn save_state(dir: &Path, state: &AgentState) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(serde_json::to_string(state)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    Ok(())
}

fn hostname(args: &AgentArgs) -> String {
    args.hostname.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    })
}

fn transient_retry() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(30))
        .with_jitter()
        .without_max_times()
}

/// Runs the agent until `stop` is requested. Fails when the gateway refuses the Group
/// Key (or there is none to re-register with): retrying cannot fix a credential.
pub async fn run(args: AgentArgs, stop: Shutdown) -> anyhow::Result<()> {
    let ca = std::fs::read(&args.ca_cert)
        .with_context(|| format!("reading --ca-cert {}", args.ca_cert.display()))?;
    let client = GatewayClient::new(&args.gateway, &ca)?;
    let identification = tokio::task::spawn_blocking(probe::identify).await?;
    let hardware = hardware_key(&identification);
    let stored = load_state(&args.state_dir);
    let benchmark = match stored.as_ref().filter(|s| s.hardware == hardware) {
        Some(s) => s.benchmark.clone(),
        None => {
            let cfg = BenchConfig {
                duration: Duration::from_millis(args.bench_ms),
                ..BenchConfig::default()
            };
            tracing::info!("measuring the benchmark");
            let measured = tokio::task::spawn_blocking(move || bench::run(&cfg));
            match stop.race(measured).await {
                Some(b) => Some(b?),
                None => return Ok(()),
            }
        }
    };
    let register = RegisterRequest {
        hostname: hostname(&args),
        identification: identification.clone(),
        benchmark: benchmark.clone(),
    };
    let mut state = match stored.filter(|s| s.hardware == hardware) {
        Some(s) => s,
        None => match registered(&client, &args, &register, &hardware, &stop).await? {
            Some(s) => s,
            None => return Ok(()),
        },
    };
    let engine = Engine::start(&args.engine).await?;
    tracing::info!(device = %state.device, "agent running");
    let (token_tx, token_rx) = tokio::sync::watch::channel(state.token.clone());
    let worker = tokio::spawn(pull_work(
        engine.clone(),
        client.clone(),
        token_rx,
        stop.clone(),
    ));
    let mut interval = Duration::from_secs(1);
    while stop.sleep(interval).await {
        let beat = HeartbeatRequest {
            load: load_percent(
                &std::fs::read_to_string("/proc/loadavg").unwrap_or_default(),
                identification.cpu_cores,
            ),
            running_fragments: 0,
            benchmark: None,
        };
        let token = state.token.clone();
        let sent = (|| client.heartbeat(&token, &beat))
            .retry(transient_retry())
            .when(|e| !e.is_auth())
            .notify(|e, after| tracing::warn!(error = %e, ?after, "heartbeat failed; retrying"));
        match stop.race(sent).await {
            None => break,
            Some(Ok(ack)) => {
                interval = Duration::from_secs(u64::from(ack.heartbeat_seconds.max(1)));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "device token refused; registering again");
                match registered(&client, &args, &register, &hardware, &stop).await? {
                    Some(s) => state = s,
                    None => break,
                }
                let _ = token_tx.send(state.token.clone());
            }
        }
    }
    tracing::info!("stopping: finishing the fragment in hand");
    let _ = worker.await;
    engine.shutdown().await;
    Ok(())
}

/// Pulls and executes the device's assignments until `stop` is requested.
async fn pull_work(
    engine: Arc<Engine>,
    client: GatewayClient,
    token: tokio::sync::watch::Receiver<String>,
    stop: Shutdown,
) {
    while !stop.is_triggered() {
        let bearer = token.borrow().clone();
        let idle = match work::run_one(&engine, &client, Bearer::Token(&bearer), None, &stop).await
        {
            Ok(Outcome::Idle) => true,
            Ok(outcome) => {
                tracing::info!(?outcome, "assignment ended");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "pulling work failed");
                true
            }
        };
        if idle {
            stop.sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Registers and stores the new token; a refused Group Key is fatal. `None` when
/// `stop` was requested first.
async fn registered(
    client: &GatewayClient,
    args: &AgentArgs,
    req: &RegisterRequest,
    hardware: &str,
    stop: &Shutdown,
) -> anyhow::Result<Option<AgentState>> {
    let key = args
        .group_key
        .as_deref()
        .context("no device token stored and no --group-key given")?;
    let attempts = (|| client.register(key, req))
        .retry(transient_retry())
        .when(|e: &GatewayError| {
            !e.is_auth() && !matches!(e, GatewayError::Refused { status: 400, .. })
        })
        .notify(|e, after| tracing::warn!(error = %e, ?after, "registration failed; retrying"));
    let Some(resp) = stop.race(attempts).await else {
        return Ok(None);
    };
    let resp = resp.context("registering with the Group Key")?;
    let state = AgentState {
        device: resp.device,
        token: resp.token,
        hardware: hardware.to_string(),
        benchmark: req.benchmark.clone(),
    };
    save_state(&args.state_dir, &state)?;
    tracing::info!(device = %state.device, "registered; token stored");
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_is_the_one_minute_average_per_core_clamped() {
        assert_eq!(load_percent("1.00 0.50 0.25 1/100 42", 2), 50);
        assert_eq!(load_percent("9.0 0 0", 2), 100);
        assert_eq!(load_percent("garbage", 4), 0);
        assert_eq!(load_percent("", 0), 0);
    }

    #[test]
    fn state_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_state(dir.path()), None);
        let s = AgentState {
            device: "acme-host1".into(),
            token: "zdt_acme-host1_00".into(),
            hardware: "amd64|2|24000|".into(),
            benchmark: None,
        };
        save_state(dir.path(), &s).unwrap();
        assert_eq!(load_state(dir.path()), Some(s));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(STATE_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn hardware_key_changes_with_the_hardware_only() {
        let mut id = Identification {
            cpu_cores: 8,
            ..Default::default()
        };
        let a = hardware_key(&id);
        id.kernel_version = "6.1".into();
        assert_eq!(hardware_key(&id), a);
        id.cpu_cores = 16;
        assert_ne!(hardware_key(&id), a);
    }
}
