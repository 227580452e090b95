//! The `profile-image` command: `serve` runs the service, `token` signs a token with its
//! secret; the other subcommands are its command-line client (src/cli/).

mod cli;
mod migrate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use profile_image::config::{Config, LogFormat, Overrides};
use tokio_util::sync::CancellationToken;

/// mimalloc keeps freed pages for reuse: an upload's multi-megabyte pixel
/// buffers and the many small per-request allocations of the gRPC stack are
/// then served without a page fault or a trip to the kernel each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "profile-image",
    version,
    about = "Stores, processes and serves users' profile pictures over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC service.
    Serve {
        /// TOML file with settings (keys as the flags, in snake_case).
        #[arg(long, env = "PROFILE_IMAGE_CONFIG")]
        config: Option<PathBuf>,
        /// Boxed: the settings are many, and the client commands are small.
        #[command(flatten)]
        overrides: Box<Overrides>,
    },
    /// Print a token signed with the server's HS256 secret (the one created in the data
    /// dir on first start, or --jwt-hs256-secret-file).
    Token(TokenArgs),
    /// Copy a local data dir (sled and blob files) to PostgreSQL and S3-compatible
    /// storage, for running replicas. Idempotent: run it again to resume or to verify.
    Migrate {
        /// The local data dir to copy (the server using it should be stopped).
        #[arg(long, env = "PROFILE_IMAGE_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// PostgreSQL to copy metadata to (postgres://USER@HOST:PORT/DB).
        #[arg(long)]
        to_store: String,
        /// Bucket to copy image bytes to (s3://BUCKET/PREFIX).
        #[arg(long)]
        to_blobs: String,
        /// URL of an S3-compatible server [default: AWS].
        #[arg(long, env = "PROFILE_IMAGE_S3_ENDPOINT")]
        s3_endpoint: Option<String>,
        /// S3 region [default: AWS_REGION, else us-east-1].
        #[arg(long, env = "PROFILE_IMAGE_S3_REGION")]
        s3_region: Option<String>,
        /// Path-style bucket addressing [default: on with --s3-endpoint].
        #[arg(long, env = "PROFILE_IMAGE_S3_PATH_STYLE")]
        s3_path_style: Option<bool>,
        /// S3 access key id, with --s3-secret-access-key-file [default: AWS_ACCESS_KEY_ID].
        #[arg(long, env = "PROFILE_IMAGE_S3_ACCESS_KEY_ID")]
        s3_access_key_id: Option<String>,
        /// File holding the S3 secret access key [default: AWS_SECRET_ACCESS_KEY].
        #[arg(long, env = "PROFILE_IMAGE_S3_SECRET_ACCESS_KEY_FILE")]
        s3_secret_access_key_file: Option<PathBuf>,
    },
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The user the token names (`sub`).
    #[arg(long)]
    user: String,
    /// The user's tenant [default: the `default` tenant].
    #[arg(long)]
    tenant: Option<String>,
    /// Give the token the admin role.
    #[arg(long)]
    admin: bool,
    /// How long the token is valid: 90s, 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = profile_image::auth::token::parse_ttl)]
    ttl: std::time::Duration,
    /// The server's data dir, where it keeps its secret.
    #[arg(long, env = "PROFILE_IMAGE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Sign with this secret file instead of the data dir's.
    #[arg(long, env = "PROFILE_IMAGE_JWT_HS256_SECRET_FILE")]
    jwt_hs256_secret_file: Option<PathBuf>,
    /// The token's issuer (`iss`), when the server requires one.
    #[arg(long, env = "PROFILE_IMAGE_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// The token's audience (`aud`), when the server requires one.
    #[arg(long, env = "PROFILE_IMAGE_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
}

fn main() -> ExitCode {
    let (config, overrides) = match Cli::parse().command {
        Command::Serve { config, overrides } => (config, overrides),
        Command::Token(args) => return print_token(&args),
        Command::Client(command) => return cli::run(command),
        Command::Migrate {
            data_dir,
            to_store,
            to_blobs,
            s3_endpoint,
            s3_region,
            s3_path_style,
            s3_access_key_id,
            s3_secret_access_key_file,
        } => {
            let to_blobs = match to_blobs.parse() {
                Ok(location) => location,
                Err(error) => {
                    eprintln!("profile-image migrate: {error}");
                    return ExitCode::from(2);
                }
            };
            let overrides = Overrides {
                data_dir: Some(data_dir),
                store: Some(to_store),
                blobs: Some(to_blobs),
                s3_endpoint,
                s3_region,
                s3_path_style,
                s3_access_key_id,
                s3_secret_access_key_file,
                ..Overrides::default()
            };
            return migrate::run(overrides);
        }
    };
    let config = match Config::resolve(config.as_deref(), *overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("profile-image: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("profile-image: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(config));
    // Blocking work stuck in a stalled store must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "profile-image stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// `profile-image token`: signs a token with the server's HS256 secret and prints it.
fn print_token(args: &TokenArgs) -> ExitCode {
    use profile_image::auth::{secret, token::NewToken};
    let secret_path = args
        .jwt_hs256_secret_file
        .clone()
        .unwrap_or_else(|| secret::path_in(&args.data_dir));
    if !secret_path.exists() {
        eprintln!(
            "profile-image: no HS256 secret at {}: start the server once              (`profile-image serve --data-dir {}`) to create it, or pass              --jwt-hs256-secret-file",
            secret_path.display(),
            args.data_dir.display()
        );
        return ExitCode::from(2);
    }
    let mut new = NewToken::new(&args.user, args.tenant.as_deref(), args.admin, args.ttl);
    new.iss = args.jwt_issuer.clone();
    new.aud = args.jwt_audience.clone();
    match secret::read(&secret_path).and_then(|secret| new.sign_hs256(&secret)) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("profile-image: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    profile_image::serve(config, listener, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    shutdown.cancel();
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
