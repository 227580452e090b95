//! The client commands of `profile-image` (`get`, `upload`, `set-url`, `crop`, `delete`,
//! `watch`, `media list|delete`), built on the profile-image-client crate.
//!
//! Exit codes: 0 success, 1 an RPC (or local I/O) error, 2 a usage error (clap's).

mod output;
mod progress;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use profile_image_client::{
    Client, Crop, DEFAULT_URL, ImageFormat, Status, UploadOptions, WatchTarget,
};
use tokio_stream::StreamExt;

use output::{Failure, Printer};

/// How to reach the server and how to print; every client command takes these.
#[derive(Args, Debug)]
pub struct Connection {
    /// Server URL (https:// for TLS).
    #[arg(long, env = "PROFILE_IMAGE_SERVER", default_value = DEFAULT_URL)]
    server: String,
    /// Bearer token sent with every call.
    #[arg(long, env = "PROFILE_IMAGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Machine-readable output: JSON on stdout (one object per line for `watch`), and
    /// errors as a JSON object on stderr.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Download a user's profile image.
    Get {
        user: String,
        /// Where to write the image (`-` for stdout).
        #[arg(short, long)]
        output: PathBuf,
        /// Longest edge in pixels (snapped up to a rendition size; 0 = full).
        #[arg(long, default_value_t = 0)]
        size: u32,
        /// Output format (default: JPEG when opaque, PNG when transparent).
        #[arg(long, value_enum)]
        format: Option<Format>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Upload an image file in chunks (a progress bar on stderr when it is a terminal).
    Upload {
        user: String,
        file: PathBuf,
        /// Square crop in pixels of the upright original (default: largest centred square).
        #[arg(long, value_name = "X,Y,SIZE")]
        crop: Option<Crop>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Have the server download the image from a URL.
    SetUrl {
        user: String,
        url: String,
        /// Print each status change until READY or FAILED (exit 1 on FAILED).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Crop the stored original of the active image again.
    Crop {
        user: String,
        #[arg(value_name = "X,Y,SIZE")]
        crop: Crop,
        #[command(flatten)]
        connection: Connection,
    },
    /// Remove the profile image (its media item stays).
    Delete {
        user: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print changes as they happen: one user's, or everyone's without USER.
    Watch {
        user: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// The user's media items.
    #[command(subcommand)]
    Media(MediaCommand),
}

#[derive(Subcommand, Debug)]
pub enum MediaCommand {
    /// List the user's media items, newest first.
    List {
        user: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete one media item and its bytes.
    Delete {
        user: String,
        media_id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
}

impl From<Format> for ImageFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::Webp => ImageFormat::Webp,
        }
    }
}

impl Command {
    fn connection(&self) -> &Connection {
        match self {
            Command::Get { connection, .. }
            | Command::Upload { connection, .. }
            | Command::SetUrl { connection, .. }
            | Command::Crop { connection, .. }
            | Command::Delete { connection, .. }
            | Command::Watch { connection, .. }
            | Command::Media(MediaCommand::List { connection, .. })
            | Command::Media(MediaCommand::Delete { connection, .. }) => connection,
        }
    }
}

/// Runs a client command; the process exit code.
pub fn run(command: Command) -> ExitCode {
    let printer = Printer::new(command.connection().json);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("profile-image: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(command, &printer)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            printer.failure(&failure);
            ExitCode::FAILURE
        }
    }
}

async fn connect(connection: &Connection) -> Result<Client, Failure> {
    let mut builder = Client::builder(connection.server.clone());
    if let Some(token) = &connection.token {
        builder = builder.bearer_token(token.clone());
    }
    Ok(builder.connect().await?)
}

async fn execute(command: Command, printer: &Printer) -> Result<(), Failure> {
    let client = connect(command.connection()).await?;
    match command {
        Command::Get {
            user,
            output,
            size,
            format,
            ..
        } => {
            let format = format.map_or(ImageFormat::Unspecified, Into::into);
            let image = client.get(&user, size, format).await?;
            write_image(&output, &image.data)?;
            printer.written(&output, &image)
        }
        Command::Upload {
            user, file, crop, ..
        } => {
            let mut options = UploadOptions::new().crop(crop);
            if let Some(mut bar) = progress::Bar::on_terminal() {
                options = options.on_progress(move |sent, total| bar.show(sent, total));
            }
            let result = client.upload_file_with(&user, &file, options).await;
            progress::Bar::finish();
            printer.image(&result?)
        }
        Command::SetUrl {
            user, url, wait, ..
        } => {
            let image = client.set_from_url(&user, &url).await?;
            printer.image(&image)?;
            if wait {
                wait_until_complete(&client, &user, image.status(), printer).await?;
            }
            Ok(())
        }
        Command::Crop { user, crop, .. } => printer.image(&client.crop(&user, crop).await?),
        Command::Delete { user, .. } => {
            client.delete(&user).await?;
            printer.done(&format!("deleted the profile image of {user}"))
        }
        Command::Watch { user, .. } => {
            let target = user.map_or(WatchTarget::All, WatchTarget::User);
            let mut events = client.watch(target);
            while let Some(event) = events.next().await {
                printer.event(&event?)?;
            }
            Ok(())
        }
        Command::Media(MediaCommand::List { user, .. }) => {
            printer.media(&client.list_media(&user).all().await?)
        }
        Command::Media(MediaCommand::Delete { user, media_id, .. }) => {
            client.delete_media(&user, &media_id).await?;
            printer.done(&format!("deleted media item {media_id} of {user}"))
        }
    }
}

/// Prints the state each time its status changes from `printed` (the last one shown),
/// until it is READY, FAILED or absent.
async fn wait_until_complete(
    client: &Client,
    user: &str,
    printed: Status,
    printer: &Printer,
) -> Result<(), Failure> {
    const WAIT_LIMIT: Duration = Duration::from_secs(600);
    let wait = async {
        let mut events = std::pin::pin!(client.watch_until_complete(user).await?);
        let mut last = Some(printed);
        while let Some(event) = events.next().await {
            let state = event?.profile_image;
            let status = state.as_ref().map(|image| image.status());
            if status != last {
                match &state {
                    Some(image) => printer.image(image)?,
                    None => printer.done(&format!("{user} has no profile image"))?,
                }
                last = status;
            }
            if let Some(image) = state
                && image.status() == Status::Failed
            {
                return Err(Failure::Processing(image.failure.unwrap_or_default()));
            }
        }
        Ok(())
    };
    tokio::time::timeout(WAIT_LIMIT, wait)
        .await
        .map_err(|_| Failure::Client(profile_image_client::Error::Timeout(WAIT_LIMIT)))?
}

fn write_image(path: &PathBuf, data: &[u8]) -> Result<(), Failure> {
    let result = if path.as_os_str() == "-" {
        std::io::stdout().lock().write_all(data)
    } else {
        std::fs::write(path, data)
    };
    result.map_err(|source| Failure::Write {
        path: path.clone(),
        source,
    })
}
