//! The `penguin-mta` command line (the binary's edge: anyhow errors, exit codes, stdout/stderr).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use penguin_config::{Config, DEFAULT_CONFIG_TOML};

use crate::check_domain::cli::CheckDomainArgs;
use crate::dkim_cli::{self, DkimCommand};
use crate::queue_cli::{self, QueueCommand};
use crate::server::{self, Listeners, ServeError};
use crate::shaping_cli::{self, ApiCommand};

/// penguin-mta: the sending engine of PenguinMails.
#[derive(Debug, Parser)]
#[command(name = "penguin-mta", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (SMTP and HTTP) until SIGTERM or SIGINT.
    Serve {
        /// Config file (TOML); without it the embedded default config is used.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config file: prints every problem with its field path; exit code 1 if any.
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
    },
    /// Print the embedded default config (commented TOML).
    PrintDefaultConfig,
    /// Read a password on stdin and print its argon2id hash for `[[tenant]] password_hash`.
    HashPassword,
    /// Inspect the queue (works while the server runs, and while it is stopped).
    Queue {
        /// The queue subcommand.
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// DKIM keys: generate one and print the DNS record to publish.
    Dkim {
        /// The dkim subcommand.
        #[command(subcommand)]
        command: DkimCommand,
    },
    /// Check a sender domain's DNS (SPF, DKIM, DMARC, MX, PTR of the egress IPs); exit code 1 if a
    /// check fails.
    CheckDomain(CheckDomainArgs),
    /// Campaigns of a tenant on a running server, over its HTTP API: list, pause, resume, cancel.
    Campaign {
        /// The campaign subcommand.
        #[command(subcommand)]
        command: crate::campaign_cli::CampaignCommand,
    },
    /// Tenants of a running server, over its HTTP API (admin token).
    Tenant {
        /// The tenant subcommand.
        #[command(subcommand)]
        command: crate::tenant_cli::TenantCommand,
    },
    /// Admin tokens of the HTTP API.
    Token {
        /// The token subcommand.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// IP warm-up plans: simulate a plan's ramp (no server needed).
    Warmup {
        /// The warmup subcommand.
        #[command(subcommand)]
        command: crate::warmup_cli::WarmupCommand,
    },
    /// Several nodes sharing state through Redis (`[cluster]`): a running server's view, over its
    /// HTTP API (admin token).
    Cluster {
        /// The cluster subcommand.
        #[command(subcommand)]
        command: crate::cluster_cli::ClusterCommand,
    },
    /// Commands that talk to a running server's HTTP API (traffic shaping).
    #[command(flatten)]
    Api(ApiCommand),
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a new admin token: prints the token alone on the first line, then the `[[api.token]]`
    /// entry (its SHA-256, never the token) to add to the config.
    Create {
        /// Who holds it (1-64 of A-Z a-z 0-9 . _ -).
        #[arg(long, value_name = "NAME")]
        name: String,
    },
}

/// Parses the arguments, runs the command, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config.as_deref()),
        Command::CheckConfig { file } => return check_config(&file),
        Command::PrintDefaultConfig => std::io::stdout()
            .write_all(DEFAULT_CONFIG_TOML.as_bytes())
            .map_err(Into::into),
        Command::HashPassword => hash_password(),
        Command::Queue { command } => queue_cli::run(command),
        Command::Dkim { command } => dkim_cli::run(command),
        Command::Tenant { command } => crate::tenant_cli::run(command),
        Command::Campaign { command } => crate::campaign_cli::run(command),
        Command::Warmup { command } => crate::warmup_cli::run(command),
        Command::Cluster { command } => crate::cluster_cli::run(command),
        Command::Token {
            command: TokenCommand::Create { name },
        } => create_token(&name),
        Command::CheckDomain(args) => return crate::check_domain::cli::run(args),
        Command::Api(command) => shaping_cli::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("penguin-mta: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config file, or the embedded default; errors list every problem with its path.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        None => Ok(Config::embedded_default()),
        Some(path) => Config::load(path)
            .map_err(|errors| anyhow::anyhow!("invalid config {}:\n{errors}", path.display())),
    }
}

/// `serve`: runs until SIGTERM/SIGINT, then stops gracefully and exits 0.
fn serve(config_path: Option<&Path>) -> anyhow::Result<()> {
    init_logging();
    let config = load_config(config_path)?;
    // Before anything listens: a source that cannot bind its address would never send what is accepted.
    crate::egress_check::check(&config)
        .map_err(ServeError::Egress)
        .with_context(|| match config_path {
            Some(path) => format!("invalid config {}", path.display()),
            None => "invalid embedded default config".to_owned(),
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        // The handlers are installed before anything listens: a SIGTERM that arrives while the server
        // starts must stop it gracefully, not kill it with the default action.
        let shutdown = shutdown_signal();
        let listeners = Listeners::bind(&config)?;
        server::serve_with_reload(config, config_path.map(Path::to_path_buf), listeners, shutdown).await?;
        Ok(())
    })
}

/// Installs the SIGTERM and SIGINT handlers now (inside the runtime) and returns a future that
/// completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// Human-readable logs on stderr; `RUST_LOG` filters (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// `check-config FILE`: validation, then what needs this host: the TLS files, and that every egress
/// address is local.
fn check_config(file: &Path) -> ExitCode {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}: invalid config", file.display());
            for error in &errors.0 {
                eprintln!("  {error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let mut problems = Vec::new();
    if let Some(Err(error)) = config.tls.as_ref().map(crate::tls::acceptor) {
        problems.push(error.to_string());
    }
    if let Err(errors) = crate::egress_check::check(&config) {
        problems.extend(errors.iter().map(ToString::to_string));
    }
    if !problems.is_empty() {
        eprintln!("{}: invalid config", file.display());
        for problem in &problems {
            eprintln!("  {problem}");
        }
        return ExitCode::FAILURE;
    }
    println!("{}: ok", file.display());
    ExitCode::SUCCESS
}

/// `token create --name NAME`: a random admin token and its config entry.
fn create_token(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    anyhow::ensure!(
        valid,
        "--name {name:?}: use 1-64 characters from A-Z a-z 0-9 . _ -"
    );
    let secret = crate::api::api_keys::random_secret(32).map_err(|e| anyhow::anyhow!(e.message))?;
    let token = format!("pmt_{secret}");
    let hash = hex::encode(crate::api::api_keys::token_hash(&token));
    println!("{token}");
    println!("[[api.token]]");
    println!("name = \"{name}\"");
    println!("sha256 = \"{hash}\"");
    Ok(())
}

/// `hash-password`: one password on stdin (a trailing newline is not part of it).
fn hash_password() -> anyhow::Result<()> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .context("reading the password from stdin")?;
    let password = input.strip_suffix(b"\n").unwrap_or(&input);
    let password = password.strip_suffix(b"\r").unwrap_or(password);
    anyhow::ensure!(!password.is_empty(), "no password on stdin");
    let hash = crate::smtp::auth::hash_password(password)
        .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))?;
    println!("{hash}");
    Ok(())
}
