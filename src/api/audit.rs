//! The audit trail: one structured INFO event per change a call asks for, under the
//! target `audit`, with the tenant, the user changed, who changed it, the action, the
//! version it resulted in and the result code (gRPC's names, as in the metrics). Never
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
    tracing::info!(
        target: TARGET,
        tenant = %target.tenant(),
        user = %target,
        actor = caller.name(),
        admin = caller.admin,
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
