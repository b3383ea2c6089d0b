//! `zop-operator run`: wires the controllers, the metrics and health endpoints, and
//! leader election together. Controllers run only on the replica holding the Lease.

use crate::api::settlement::EmissionSchedule;
use crate::controller::settlement::{self, SettledUntil, SettlementConfig, SettlementMetrics};
use crate::controller::task_metrics::TaskMetrics;
use crate::controller::tasks::TaskConfig;
use crate::controller::{self, Config};
use crate::gateway::{self, GatewayConfig, metrics::GatewayMetrics};
use crate::metrics::{self, DeviceCollector};
use crate::scheduler::cycle::RetryPolicy;
use crate::tasks::lifecycle::Limits;
use crate::tasks::worker_pod::PodTemplate;
use anyhow::Context;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// Options of `zop-operator run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The namespace the operator runs in (Group Keys, tokens, Lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = "zoptoken-system")]
    pub namespace: String,
    /// Provider for labelled Nodes without a `zoptoken.io/provider` label.
    #[arg(long, env = "ZOP_DEFAULT_PROVIDER")]
    pub default_provider: Option<String>,
    /// Seconds without a heartbeat before an agent device is Offline.
    #[arg(long, default_value_t = 30)]
    pub heartbeat_grace_seconds: i64,
    /// Longest interval between two writes of a device's online accounting.
    #[arg(long, default_value_t = 300)]
    pub accounting_period_seconds: i64,
    /// Address of the metrics and health endpoints.
    #[arg(long, env = "ZOP_METRICS_BIND", default_value = "0.0.0.0:8080")]
    pub metrics_bind: SocketAddr,
    /// Elect a leader through a Lease before running controllers.
    #[arg(long, default_value_t = false)]
    pub leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "zop-operator")]
    pub lease_name: String,
    /// The gateway for agents and worker pods.
    #[command(flatten)]
    pub gateway: GatewayConfig,
    /// Task scheduling and worker Pods.
    #[command(flatten)]
    pub tasks: TaskArgs,
    /// Epochs and rewards.
    #[command(flatten)]
    pub settlement: SettlementArgs,
    /// Benchmarks of onboarded Nodes.
    #[command(flatten)]
    pub node_benchmarks: controller::benchmarks::NodeBenchmarkArgs,
}

/// Options of the settlement controller. The schedule is sealed into the ledger's
/// genesis record on first start; a later start with other values is refused.
#[derive(Debug, Clone, clap::Args)]
pub struct SettlementArgs {
    /// Seconds per epoch.
    #[arg(long, default_value_t = 3600)]
    pub epoch_seconds: u64,
    /// Parts per million of the pool released each epoch.
    #[arg(long, default_value_t = 100)]
    pub release_ppm: u32,
    /// Seconds after an epoch's end before it is settled (verdicts being written).
    #[arg(long, default_value_t = 30)]
    pub settlement_grace_seconds: i64,
    /// Prometheus to reconcile each epoch against before it is written (for example
    /// `http://127.0.0.1:9090`); without it, epochs are finalized unreconciled.
    #[arg(long, env = "ZOP_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
}

/// Options of the task controller.
#[derive(Debug, Clone, clap::Args)]
pub struct TaskArgs {
    /// Image of worker Pods.
    #[arg(
        long,
        env = "ZOP_WORKER_IMAGE",
        default_value = "ghcr.io/zoptoken/zop-worker:latest"
    )]
    pub worker_image: String,
    /// Gateway URL worker Pods call; by default the in-cluster Service
    /// `https://zop-gateway.<namespace>.svc:<port>`.
    #[arg(long)]
    pub worker_gateway_url: Option<String>,
    /// Most assignments (worker Pods) per task.
    #[arg(long, default_value_t = 1000)]
    pub max_assignments: u32,
    /// Times a fragment is reassigned before it fails for good.
    #[arg(long, default_value_t = 5)]
    pub retry_limit: u32,
    /// First reassignment backoff, in seconds; doubles on each loss.
    #[arg(long, default_value_t = 5)]
    pub retry_base_seconds: u64,
    /// Seconds a task may wait with no eligible device before it fails.
    #[arg(long, default_value_t = 120)]
    pub no_device_timeout_seconds: i64,
    /// Seconds an agent's assignment may go without progress before it is reassigned.
    #[arg(long, default_value_t = 600)]
    pub agent_timeout_seconds: i64,
}

impl RunArgs {
    fn task_config(&self, ca_pem: String) -> TaskConfig {
        let t = &self.tasks;
        TaskConfig {
            namespace: self.namespace.clone(),
            pod: PodTemplate {
                namespace: self.namespace.clone(),
                image: t.worker_image.clone(),
                gateway_url: t.worker_gateway_url.clone().unwrap_or_else(|| {
                    format!(
                        "https://zop-gateway.{}.svc:{}",
                        self.namespace,
                        self.gateway.bind.port()
                    )
                }),
                audience: self.gateway.audience.clone(),
                token_seconds: 3600,
            },
            max_assignments: t.max_assignments.max(1),
            retry: RetryPolicy {
                base: std::time::Duration::from_secs(t.retry_base_seconds.max(1)),
                limit: t.retry_limit,
                ..RetryPolicy::default()
            },
            limits: Limits {
                no_device_timeout: t.no_device_timeout_seconds,
                ..Limits::default()
            },
            agent_timeout_seconds: t.agent_timeout_seconds,
            ca_pem,
            settled_until: Default::default(),
        }
    }

    fn settlement_config(
        &self,
        registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<SettlementConfig> {
        let prometheus = match &self.settlement.prometheus_url {
            Some(url) => Some(settlement::prometheus::Prometheus::new(url, registry)?),
            None => None,
        };
        Ok(SettlementConfig {
            prometheus,
            payable: Default::default(),
            schedule: EmissionSchedule {
                epoch_seconds: self.settlement.epoch_seconds,
                release_ppm: self.settlement.release_ppm,
                ..crate::ledger::emission::default_schedule()
            },
            grace_seconds: self.settlement.settlement_grace_seconds,
            namespace: self.namespace.clone(),
        })
    }

    fn controller_config(&self) -> Config {
        Config {
            default_provider: self.default_provider.clone(),
            heartbeat_grace: self.heartbeat_grace_seconds,
            accounting_period: self.accounting_period_seconds,
        }
    }
}

/// Runs until SIGINT or SIGTERM, or until leadership is lost.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(stop_on_signal(stop_tx.clone()));

    let mut registry = metrics::registry();
    let devices = controller::devices::controller(&client);
    DeviceCollector::register(&mut registry, devices.store());
    let gateway_metrics = GatewayMetrics::new(&mut registry);
    let task_metrics = TaskMetrics::new(&mut registry);
    let settlement_metrics = SettlementMetrics::new(&mut registry);
    let mut settlement_config = args.settlement_config(&mut registry)?;
    let verifier = Arc::new(crate::verifier::Verifier::new(
        client.clone(),
        &mut registry,
    ));
    settlement_config.payable = verifier.metrics.payable_work.clone();
    let registry = Arc::new(registry);
    let ready = metrics::Readiness::default();
    let http = metrics::serve(
        args.metrics_bind,
        registry.clone(),
        ready.clone(),
        stop_rx.clone(),
    )
    .await?;

    let lease = if args.leader_election {
        Some(wait_for_leadership(&client, &args, stop_tx.clone()).await?)
    } else {
        None
    };
    // A changed schedule must not start: the ledger sealed the one it pays by.
    settlement::check_schedule(&client, &settlement_config.schedule).await?;
    let settled = SettledUntil::default();
    let config = args.controller_config();
    let mut gateway_config = args.gateway.clone();
    gateway_config.namespace = args.namespace.clone();
    let pem = gateway::tls::load_or_create(
        &client,
        &args.namespace,
        &gateway_config.tls_secret,
        &gateway_config.dns_names,
    )
    .await?;
    let mut task_config = args.task_config(pem.cert.clone());
    let benchmarks = args
        .node_benchmarks
        .config(task_config.pod.clone(), task_config.ca_pem.clone());
    task_config.settled_until = settled.clone();
    // One Device cache for the gateway and the task controller; the device controller
    // keeps its own inside its Controller.
    let device_cache = controller::spawn_store(
        kube::Api::<crate::api::Device>::all(client.clone()),
        kube::runtime::watcher::Config::default(),
    );
    // The gateway runs beside the controllers on the leader: it reads the Device store
    // the controller's reflector fills, and its writes must not race another replica's.
    let gateway = tokio::spawn(gateway::serve(
        client.clone(),
        gateway_config,
        gateway_metrics,
        verifier.clone(),
        pem,
        device_cache.clone(),
        ready,
        stopped(stop_rx.clone()),
    ));
    let gateway_abort = gateway.abort_handle();
    tracing::info!("starting controllers");
    let gateway_failed = async {
        match gateway.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %format!("{e:#}"), "gateway failed"),
            Err(e) if e.is_cancelled() => {}
            Err(e) => tracing::error!(error = %e, "gateway task failed"),
        }
    };
    // A gateway still waiting for its caches when a stop comes has nothing to drain.
    let mut stop_watch = stop_rx.clone();
    tokio::spawn(async move {
        let _ = stop_watch.wait_for(|s| *s).await;
        tokio::time::sleep(std::time::Duration::from_secs(7)).await;
        gateway_abort.abort();
    });
    tokio::join!(
        async {
            gateway_failed.await;
            let _ = stop_tx.send(true);
        },
        controller::onboard::run(client.clone(), config.clone(), stopped(stop_rx.clone())),
        settlement::run(
            client.clone(),
            settlement_config,
            device_cache.clone(),
            settled,
            settlement_metrics,
            stopped(stop_rx.clone()),
        ),
        controller::tasks::run(
            client.clone(),
            task_config,
            device_cache.clone(),
            task_metrics,
            verifier,
            stopped(stop_rx.clone()),
        ),
        controller::devices::run(devices, client.clone(), config, stopped(stop_rx.clone())),
        async {
            if let Some(b) = benchmarks {
                let cache = device_cache.clone();
                controller::benchmarks::run(client.clone(), b, cache, stopped(stop_rx.clone()))
                    .await;
            }
        },
    );
    let _ = stop_tx.send(true);
    if let Some(lease) = lease {
        let _ = lease.await;
    }
    http.await.context("metrics server")?;
    Ok(())
}

/// Resolves once a stop is requested.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn stop_on_signal(tx: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("stopping");
    let _ = tx.send(true);
}

/// Blocks until this replica holds the Lease; on a later loss, requests a stop so the
/// process exits and its replacement competes again. The task returned ends once a stop
/// was requested and the Lease released, so a standby takes over at once rather than
/// after the Lease expires: await it after the controllers stopped writing.
async fn wait_for_leadership(
    client: &Client,
    args: &RunArgs,
    stop: watch::Sender<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut builder =
        LeaseManagerBuilder::new(client.clone(), &args.lease_name).with_namespace(&args.namespace);
    // The Pod's name says who leads (`kubectl get lease`); elsewhere a random identity.
    if let Ok(pod) = std::env::var("POD_NAME") {
        builder = builder.with_identity(pod);
    }
    let manager = builder
        .build()
        .await
        .context("creating the leader-election Lease manager")?;
    let (mut leader, manager_task) = manager.watch().await;
    tracing::info!(lease = %args.lease_name, "waiting for leadership");
    leader
        .wait_for(|l| *l)
        .await
        .context("lease manager stopped")?;
    tracing::info!("acquired leadership");
    let mut stopping = stop.subscribe();
    Ok(tokio::spawn(async move {
        tokio::select! {
            _ = leader.wait_for(|l| !*l) => {
                tracing::warn!("lost leadership, stopping");
                let _ = stop.send(true);
            }
            _ = stopping.wait_for(|s| *s) => {}
        }
        // Closing the channel makes the manager release the Lease.
        drop(leader);
        match tokio::time::timeout(std::time::Duration::from_secs(5), manager_task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader Lease"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "releasing the leader Lease failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "the Lease manager failed"),
            Err(_) => tracing::warn!("releasing the leader Lease timed out"),
        }
    }))
}
