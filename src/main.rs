//! The `studywatch` binary: parses the command line and hands over to the
//! library. `serve` starts logging, loads the configuration, binds the
//! listeners, and runs until SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use studywatch::cli::{self, Cli, Command};
use studywatch::config::{Config, LogFormat};
use tokio_util::sync::CancellationToken;

/// The HL7 and DICOM paths allocate many short-lived buffers (parsed
/// segments, PDU fragments) from several threads at once; mimalloc serves
/// those from per-thread pages where glibc's allocator spent a quarter of
/// the HL7 intake's time consolidating and unlinking chunks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => serve(&cli.config),
        _ => {
            init_logging("warn", LogFormat::Text);
            cli::run(cli)
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // No colour codes when stderr is the journal or a file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(path: &std::path::Path) -> ExitCode {
    let config: Config = match cli::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config.log.level, config.log.format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("studywatch: cannot start the runtime: {e}");
            return ExitCode::from(cli::EXIT_PROBLEM);
        }
    };
    let result = runtime.block_on(async move {
        let listeners = studywatch::app::Listeners::bind(&config).await?;
        let shutdown = CancellationToken::new();
        tokio::spawn(wait_for_signal(shutdown.clone()));
        studywatch::app::serve(config, listeners, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("studywatch: {e:#}");
            ExitCode::from(cli::EXIT_PROBLEM)
        }
    }
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
}
