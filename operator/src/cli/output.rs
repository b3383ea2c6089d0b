//! What every `kubectl zop` command shares: its global flags (`-o table|json|yaml`,
//! `--context`, `-n`, `-A`), the client they choose, and printing a value in the chosen
//! format.

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Serialize;

/// Output formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
    /// YAML.
    Yaml,
}

/// Flags every command takes, before or after its name.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Globals {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t)]
    pub output: Format,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace: of tasks, or, for `group-key` and `ledger`, the operator's.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Tasks of every namespace.
    #[arg(short = 'A', long = "all-namespaces", global = true)]
    pub all_namespaces: bool,
}

/// The operator's namespace when `-n` does not name one.
pub const OPERATOR_NAMESPACE: &str = "zoptoken-system";

impl Globals {
    /// The operator's namespace: `-n`, else [`OPERATOR_NAMESPACE`].
    pub fn operator_namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(OPERATOR_NAMESPACE)
    }
}

/// A client for `--context` (the kubeconfig's current one when omitted), and the
/// context's default namespace.
pub async fn client(globals: &Globals) -> anyhow::Result<(Client, String)> {
    let config = match &globals.context {
        Some(context) => {
            let options = KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            };
            let kubeconfig = Kubeconfig::read().context("reading the kubeconfig")?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("context {context}"))?
        }
        None => Config::infer()
            .await
            .context("no kubeconfig or in-cluster configuration")?,
    };
    let namespace = config.default_namespace.clone();
    let client = Client::try_from(config).context("connecting to the Kubernetes API")?;
    Ok((client, namespace))
}

/// `value` in `format`; `table` renders it for people.
pub fn render<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => table(),
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => serde_saphyr::to_string(value).context("encoding YAML")?,
    })
}

/// Prints `value` in `format`.
pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    print!("{}", render(format, value, table)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Row {
        device_name: &'static str,
        load: u32,
    }

    #[test]
    fn one_value_renders_as_a_table_json_or_yaml() {
        let rows = vec![Row {
            device_name: "a",
            load: 5,
        }];
        let table = || "A 5\n".to_string();
        assert_eq!(render(Format::Table, &rows, table).unwrap(), "A 5\n");
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &rows, table).unwrap()).unwrap();
        assert_eq!(json[0]["deviceName"], "a");
        let yaml = render(Format::Yaml, &rows, table).unwrap();
        assert!(
            yaml.contains("deviceName: a") && yaml.contains("load: 5"),
            "{yaml}"
        );
    }
}
