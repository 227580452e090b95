//! `Client::watch`: a WatchStatus stream that survives a dropped connection by opening a
//! new call with `after_sequence` = the last sequence seen, so no event is lost or repeated
//! while the server still retains it (past its retention window the server sends a fresh
//! SNAPSHOT instead).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::pb::{self, WatchStatusResponse};
use crate::{Client, Error};

/// Whose changes to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchTarget {
    User(String),
    /// Every user's changes (a notification feed).
    All,
}

impl WatchTarget {
    fn user_id(&self) -> &str {
        match self {
            WatchTarget::User(user) => user,
            WatchTarget::All => "",
        }
    }
}

/// Consecutive failed reconnects after which the stream gives up with the last error.
const MAX_RECONNECTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The events of a watch, in order. Ends only with an error that retrying cannot fix, or
/// after `MAX_RECONNECTS` consecutive failed reconnects; drop it to stop watching.
pub struct Watch {
    events: ReceiverStream<Result<WatchStatusResponse, Error>>,
}

impl Watch {
    pub(crate) fn start(client: Client, target: WatchTarget) -> Watch {
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(follow(client, target, sender));
        Watch {
            events: ReceiverStream::new(receiver),
        }
    }
}

impl Stream for Watch {
    type Item = Result<WatchStatusResponse, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.events).poll_next(cx)
    }
}

/// Feeds `sender` until the watcher goes away or an error cannot be retried.
async fn follow(
    client: Client,
    target: WatchTarget,
    sender: mpsc::Sender<Result<WatchStatusResponse, Error>>,
) {
    let mut after_sequence = 0;
    let mut failures = 0;
    loop {
        let request = pb::WatchStatusRequest {
            user_id: target.user_id().to_owned(),
            until_complete: false,
            after_sequence,
        };
        let ended = match client.stub().watch_status(request).await {
            Ok(reply) => {
                let mut events = reply.into_inner();
                loop {
                    match events.message().await {
                        Ok(Some(event)) => {
                            failures = 0;
                            after_sequence = event.sequence;
                            if sender.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        // The server ended the stream (it is shutting down): reconnect.
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                }
            }
            Err(status) => Some(status),
        };
        if let Some(status) = ended
            && (!worth_retrying(status.code()) || failures >= MAX_RECONNECTS)
        {
            let _ = sender.send(Err(status.into())).await;
            return;
        }
        failures += 1;
        tokio::select! {
            _ = tokio::time::sleep(backoff(failures)) => {}
            _ = sender.closed() => return,
        }
    }
}

/// Errors a new call may not meet: the connection or the server went away.
fn worth_retrying(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted | Code::Internal
    )
}

/// 100 ms, doubled per consecutive failure, at most 5 s.
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(7), Duration::from_secs(5));
        assert_eq!(backoff(40), Duration::from_secs(5));
    }
}
