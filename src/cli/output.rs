//! What the client commands print: a line of text per result, or with `--json` one JSON
//! object per line (field names as in the contract's JSON mapping, e.g. `userId`), and
//! errors on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};

use profile_image_client::pb::{Failure as ImageFailure, WatchStatusResponse};
use profile_image_client::{Code, Error, Media, ProfileImage};
use serde_json::{Value, json};

/// Why a client command failed (exit code 1).
#[derive(Debug)]
pub enum Failure {
    Client(Error),
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// stdout went away (e.g. `watch | head`).
    Stdout(std::io::Error),
    /// `set-url --wait` ended with STATUS_FAILED.
    Processing(ImageFailure),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Client(error)
    }
}

pub struct Printer {
    json: bool,
}

impl Printer {
    pub fn new(json: bool) -> Printer {
        Printer { json }
    }

    pub fn image(&self, image: &ProfileImage) -> Result<(), Failure> {
        self.line(image_json(image), || describe_image(image))
    }

    /// After `get`: what was written where (nothing more on stdout when it was stdout).
    pub fn written(&self, path: &Path, image: &ProfileImage) -> Result<(), Failure> {
        if path.as_os_str() == "-" {
            return Ok(());
        }
        let mut value = image_json(image);
        value["file"] = json!(path.display().to_string());
        self.line(value, || {
            format!(
                "wrote {}: {}x{} {}, {} bytes, version {}",
                path.display(),
                image.width,
                image.height,
                image.content_type,
                image.data.len(),
                image.version
            )
        })
    }

    pub fn done(&self, message: &str) -> Result<(), Failure> {
        self.line(json!({}), || message.to_owned())
    }

    pub fn event(&self, event: &WatchStatusResponse) -> Result<(), Failure> {
        let value = json!({
            "sequence": event.sequence,
            "type": event.r#type().as_str_name(),
            "userId": event.user_id,
            "profileImage": event.profile_image.as_ref().map(image_json),
            "time": event.time.as_ref().map(ToString::to_string),
        });
        self.line(value, || {
            let state = event
                .profile_image
                .as_ref()
                .map_or_else(|| "no image".to_owned(), describe_image);
            format!(
                "#{} {} {}: {state}",
                event.sequence,
                event.r#type().as_str_name(),
                event.user_id
            )
        })
    }

    pub fn media(&self, media: &[Media]) -> Result<(), Failure> {
        let value = json!({ "media": media.iter().map(media_json).collect::<Vec<_>>() });
        self.line(value, || {
            media
                .iter()
                .map(|m| {
                    format!(
                        "{}{} {}x{} {} {} bytes {}",
                        m.media_id,
                        if m.active { " (active)" } else { "" },
                        m.width,
                        m.height,
                        m.content_type,
                        m.size_bytes,
                        m.source().as_str_name()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// The error on stderr: the status code, the message and every field violation.
    pub fn failure(&self, failure: &Failure) {
        let mut stderr = std::io::stderr().lock();
        if self.json {
            let _ = writeln!(stderr, "{}", failure_json(failure));
            return;
        }
        let _ = match failure {
            Failure::Client(error) => {
                let _ = writeln!(
                    stderr,
                    "profile-image: {}: {}",
                    code_name(error.code()),
                    message(error)
                );
                if let Some(reason) = error.reason() {
                    let _ = writeln!(stderr, "  reason: {reason}");
                }
                for violation in error.violations() {
                    let _ = writeln!(
                        stderr,
                        "  {}: {}: {}",
                        violation.field, violation.reason, violation.description
                    );
                }
                match error.retry_delay() {
                    Some(delay) => writeln!(stderr, "  retry after {delay:?}"),
                    None => Ok(()),
                }
            }
            Failure::Write { path, source } => {
                writeln!(
                    stderr,
                    "profile-image: cannot write {}: {source}",
                    path.display()
                )
            }
            Failure::Stdout(source) => writeln!(stderr, "profile-image: stdout: {source}"),
            Failure::Processing(failure) => writeln!(
                stderr,
                "profile-image: STATUS_FAILED: {}: {}",
                failure.reason, failure.message
            ),
        };
    }

    fn line(&self, value: Value, text: impl FnOnce() -> String) -> Result<(), Failure> {
        let line = if self.json { value.to_string() } else { text() };
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}")
            .and_then(|()| stdout.flush())
            .map_err(Failure::Stdout)
    }
}

fn describe_image(image: &ProfileImage) -> String {
    let mut text = format!(
        "{} version {} {}",
        image.user_id,
        image.version,
        image.status().as_str_name()
    );
    if !image.media_id.is_empty() {
        text += &format!(", media {}", image.media_id);
    }
    if image.width > 0 {
        text += &format!(", {}x{} {}", image.width, image.height, image.content_type);
    }
    if let Some(crop) = &image.crop {
        text += &format!(", crop {},{},{}", crop.x, crop.y, crop.size);
    }
    if let Some(failure) = &image.failure {
        text += &format!(", failed: {} ({})", failure.reason, failure.message);
    }
    text
}

fn image_json(image: &ProfileImage) -> Value {
    json!({
        "userId": image.user_id,
        "mediaId": image.media_id,
        "version": image.version,
        "status": image.status().as_str_name(),
        "contentType": image.content_type,
        "width": image.width,
        "height": image.height,
        "sizeBytes": image.size_bytes,
        "etag": image.etag,
        "source": image.source().as_str_name(),
        "sourceUrl": image.source_url,
        "crop": image.crop.as_ref().map(|c| json!({"x": c.x, "y": c.y, "size": c.size})),
        "failure": image.failure.as_ref().map(|f| json!({"reason": f.reason, "message": f.message})),
        "placeholder": image.placeholder,
        "createTime": image.create_time.as_ref().map(ToString::to_string),
        "updateTime": image.update_time.as_ref().map(ToString::to_string),
        "originalWidth": image.original_width,
        "originalHeight": image.original_height,
    })
}

fn media_json(media: &Media) -> Value {
    json!({
        "mediaId": media.media_id,
        "userId": media.user_id,
        "contentType": media.content_type,
        "width": media.width,
        "height": media.height,
        "sizeBytes": media.size_bytes,
        "etag": media.etag,
        "source": media.source().as_str_name(),
        "sourceUrl": media.source_url,
        "active": media.active,
        "createTime": media.create_time.as_ref().map(ToString::to_string),
        "crop": media.crop.as_ref().map(|c| json!({"x": c.x, "y": c.y, "size": c.size})),
    })
}

fn failure_json(failure: &Failure) -> Value {
    match failure {
        Failure::Client(error) => json!({
            "code": code_name(error.code()),
            "message": message(error),
            "reason": error.reason(),
            "violations": error.violations().iter().map(|v| json!({
                "field": v.field,
                "reason": v.reason,
                "description": v.description,
            })).collect::<Vec<_>>(),
            "retryDelayMs": error.retry_delay().map(|d| d.as_millis() as u64),
        }),
        Failure::Write { path, source } => json!({
            "code": "LOCAL_IO",
            "message": format!("cannot write {}: {source}", path.display()),
        }),
        Failure::Stdout(source) => json!({ "code": "LOCAL_IO", "message": source.to_string() }),
        Failure::Processing(failure) => json!({
            "code": "STATUS_FAILED",
            "message": failure.message,
            "reason": failure.reason,
        }),
    }
}

/// The server's message, or the client-side error's own text.
fn message(error: &Error) -> String {
    match error.status() {
        Some(status) => status.message.clone(),
        None => error.to_string(),
    }
}

/// The canonical gRPC name of a status code, as grpcurl and the other clients print it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
