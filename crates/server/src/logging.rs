//! Process setup of the `firedoor-server` binary that operators tune: the log
//! format (text or JSON lines), the metrics token, the drain before stopping.

use secrecy::SecretString;
use std::path::Path;

/// The default log filter when FIREDOOR_LOG is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Installs the global tracing subscriber writing to standard error: human text, or
/// one JSON object per line (`timestamp`, `level`, `target`, `fields`, `span`) with
/// `json`. The level comes from FIREDOOR_LOG.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIREDOOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.init();
    }
}

/// The metrics token: the first line of `file` (which must not be readable by
/// others), else `env`; `None` if neither is given. An empty token is refused.
pub fn metrics_token(
    file: Option<&Path>,
    env: Option<String>,
) -> anyhow::Result<Option<SecretString>> {
    let token = match (file, env) {
        (Some(path), _) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)
                    .map_err(|e| anyhow::anyhow!("metrics token file {}: {e}", path.display()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    anyhow::bail!(
                        "metrics token file {}: readable by others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    );
                }
            }
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("metrics token file {}: {e}", path.display()))?,
            );
            text.lines().next().unwrap_or("").trim().to_string()
        }
        (None, Some(v)) => v.trim().to_string(),
        (None, None) => return Ok(None),
    };
    if token.is_empty() {
        anyhow::bail!("the metrics token is empty");
    }
    Ok(Some(SecretString::from(token)))
}

/// Before stopping: marks the broker as closing (`/readyz` answers 503, event
/// streams end so clients reconnect elsewhere) and keeps serving `secs` seconds so a
/// load balancer takes it out before its listener closes.
pub async fn drain(broker: &crate::service::Broker, secs: u64) {
    if secs == 0 {
        return;
    }
    broker.closing.send_replace(true);
    tracing::info!(
        drain_secs = secs,
        "stopping: not ready any more, serving in-flight traffic before closing"
    );
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
}
