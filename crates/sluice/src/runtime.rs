//! Process plumbing: logging, signals, failure exit.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

/// What must live until the process ends (the span exporter, with `otel`).
pub struct Telemetry {
    #[cfg(feature = "otel")]
    _otel: crate::otel::Guard,
}

/// Logs on stderr (`SLUICE_LOG` filter, `SLUICE_LOG_FORMAT=json` for JSON
/// lines with the current span's fields), and with the `otel` feature the
/// span export. `role` names the service.
pub fn init_logging(role: &str) -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,lapin=warn,fred=warn,sqlx=warn")
    });
    let json = std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|f| f == "json");
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    let (registry, otel) = {
        let (layer, guard) = crate::otel::layer(role);
        (registry.with(layer), guard)
    };
    #[cfg(not(feature = "otel"))]
    let _ = role;
    registry.with(filter).init();
    Telemetry {
        #[cfg(feature = "otel")]
        _otel: otel,
    }
}

/// A one-line reason on stderr and a non-zero exit.
pub fn fail(e: &anyhow::Error) -> ExitCode {
    let reason: Vec<String> = e.chain().map(ToString::to_string).collect();
    eprintln!("error: {}", reason.join(": "));
    ExitCode::FAILURE
}

/// A token cancelled on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    // The signal listener lives as long as the process; it only cancels.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Prints a line on stdout (what a caller or a test reads), flushed. A
/// closed stdout (`sluice admin … | head`) is not an error: the line is
/// dropped, where `println!` would panic.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
