//! The audit trail: one structured INFO event per change, under the target `audit`,
//! with the tenant, the user changed, who changed it, the action, the version it
//! resulted in and the result code (gRPC's names, as in the metrics). Changes a call
//! asks for are recorded by the gRPC layer; the outcome of a background download, which
//! the server makes on its own, by the download runner with the actor `server`. Never
//! a token or image bytes.

use tonic::{Code, Status};

use crate::auth::Caller;
use crate::model::UserId;

/// The tracing target of audit events.
pub const TARGET: &str = "audit";

/// A change a call asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SetImage,
    SetMedia,
    SetUrl,
    Upload,
    Crop,
    Delete,
    DeleteMedia,
    /// A URL download finished: the downloaded image is the profile's.
    DownloadComplete,
    /// A URL download failed for good: the profile's status is FAILED.
    DownloadFailed,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::SetImage => "set-image",
            Action::SetMedia => "set-media",
            Action::SetUrl => "set-url",
            Action::Upload => "upload",
            Action::Crop => "crop",
            Action::Delete => "delete",
            Action::DeleteMedia => "delete-media",
            Action::DownloadComplete => "download-complete",
            Action::DownloadFailed => "download-failed",
        }
    }
}

/// Records how a change of `target` by `caller` ended: the version it left on
/// success.
pub fn record(caller: &Caller, action: Action, target: &UserId, outcome: Result<u64, &Status>) {
    let (version, code) = match outcome {
        Ok(version) => (Some(version), Code::Ok),
        Err(status) => (None, status.code()),
    };
    event(caller.name(), caller.admin, action, target, version, code);
}

/// Records a change the server made on its own (a background download's outcome) at
/// `version` of `target`.
pub fn record_by_server(action: Action, target: &UserId, version: u64) {
    event("server", false, action, target, Some(version), Code::Ok);
}

fn event(
    actor: &str,
    admin: bool,
    action: Action,
    target: &UserId,
    version: Option<u64>,
    code: Code,
) {
    tracing::info!(
        target: TARGET,
        tenant = %target.tenant(),
        user = %target,
        actor,
        admin,
        action = action.name(),
        version,
        code = code_name(code).as_str(),
        "change"
    );
}

fn code_name(code: Code) -> String {
    match code {
        Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    }
}
