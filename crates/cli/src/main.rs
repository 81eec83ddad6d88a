//! `portcullis`: the front door of an internal developer platform.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::config::{self, Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Identity, authentication, authorization, gateway and audit for internal platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server (embedded defaults: 127.0.0.1:8080, SQLite in ./portcullis-data).
    Serve {
        /// YAML configuration file.
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Works with Rego policies offline.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Runs every `test_*` rule of the policies in a folder, in the style of `opa test`.
    Test {
        /// Folder (or file) of `.rego` modules.
        dir: PathBuf,
    },
    /// Evaluates one rule against an input document.
    Eval {
        /// Folder (or file) of `.rego` modules.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// JSON file with the input document.
        #[arg(long)]
        input: PathBuf,
        /// Rule to evaluate: `data.policies.allow`, or a bare name in package `policies`.
        #[arg(long)]
        rule: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => portcullis::policy::test(&dir, &mut std::io::stdout()),
        Command::Policy {
            command: PolicyCommand::Eval { dir, input, rule },
        } => portcullis::policy::eval(&dir, &input, &rule, &mut std::io::stdout()),
        Command::Serve { config } => {
            let config = match config::load(config.as_deref(), &|k| std::env::var(k).ok()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&config);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("portcullis: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            runtime.block_on(serve(config))
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config) -> ExitCode {
    if config.server.database_url.starts_with("sqlite:")
        && let Err(e) = std::fs::create_dir_all(&config.data_dir)
    {
        eprintln!(
            "portcullis: cannot create data directory {}: {e}",
            config.data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    let running = match portcullis_api::start(config.server.clone()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(key) = &running.bootstrap_key {
        // Printed once to the terminal, never logged.
        println!(
            "Created org 'default' and its admin {}.",
            config.server.admin_email
        );
        println!("Admin API key (shown once; store it now):");
        println!();
        println!("    {key}");
        println!();
    }
    let stop = shutdown_signal();
    println!("Portcullis listening on http://{}", running.addr);
    stop.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// Registers for SIGINT and SIGTERM now (before the server says it listens, so that a signal
/// sent right after never meets the default handler) and returns a future that waits for one.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
