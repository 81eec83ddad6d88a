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
    /// Manages the token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Adds a new signing key. It is published in the JWKS at once and signs after the delay, so
    /// every replica and verifier knows it first; the previous keys keep verifying.
    Rotate {
        /// YAML configuration file (for the database and the secret key).
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Seconds before the new key signs (replicas reload keys every 30 s).
        #[arg(long, default_value_t = 120)]
        delay: u64,
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

/// The allocator: the request path's many small, short-lived allocations cost about a fifth
/// less than with the system allocator (bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy {
            command: PolicyCommand::Test { dir },
        } => portcullis::policy::test(&dir, &mut std::io::stdout()),
        Command::Policy {
            command: PolicyCommand::Eval { dir, input, rule },
        } => portcullis::policy::eval(&dir, &input, &rule, &mut std::io::stdout()),
        Command::Keys {
            command: KeysCommand::Rotate { config, delay },
        } => {
            let config = match config::load(config.as_deref(), &|k| std::env::var(k).ok()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("portcullis: {e}");
                    return ExitCode::from(2);
                }
            };
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(rotate_keys(config, delay)),
                Err(e) => {
                    eprintln!("portcullis: cannot start the runtime: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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

async fn rotate_keys(config: Config, delay: u64) -> ExitCode {
    let auth = &config.server.auth;
    let secret_box = match &auth.secret_key {
        Some(key) => portcullis_authn::SecretBox::from_base64(key),
        None => portcullis_authn::SecretBox::load_or_create(&config.data_dir.join("secret.key")),
    };
    let secret_box = match secret_box {
        Ok(b) => b,
        Err(e) => {
            eprintln!("portcullis: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store = match portcullis_store::Store::connect(&config.server.database_url).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portcullis: database: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = auth.clock.now_millis();
    let result =
        portcullis_authn::tokens::rotate(&store, &secret_box, now, (delay * 1000) as i64).await;
    store.close().await;
    match result {
        Ok(kid) => {
            println!("New signing key {kid}: published now, signing in {delay} s.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The access log follows its own switch, not the log level.
    let access = if config.server.gateway.access_log {
        "portcullis::access=info"
    } else {
        "portcullis::access=off"
    };
    let filter = match access.parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
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
    // Before the cap on connections is derived from it.
    portcullis_api::workers::raise_open_file_limit();
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
