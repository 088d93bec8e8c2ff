//! The data side of `starwal top`: one task that follows the agent — a status first (so the
//! screen fills at once, before the stream's first sample one interval later), then
//! `Metrics.StreamMetrics` with a fresh `Status.GetStatus` beside each sample (the stream carries
//! rates; errors, totals and copy details are in the status) — and reconnects after any failure,
//! forever, reporting each loss so the screen can say so.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::control::client::{ClientError, Connection};
use crate::control::pb;

/// What the feed tells the screen.
#[derive(Debug)]
pub enum Update {
    Status(Box<pb::GetStatusResponse>),
    Sample(Box<pb::StreamMetricsResponse>),
    /// The connection failed or the stream ended; the feed retries after [`RETRY_AFTER`].
    Lost(String),
}

/// Pause between reconnection attempts: short enough that a restarted agent shows within a
/// second or two, long enough not to spin against one that is down.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Grace beyond the sampling interval before a silent stream counts as lost (an agent that
/// froze, a network path that dropped without a reset): longer than any scheduling delay of a
/// busy agent's single thread, short enough that the screen does not show stale numbers as live.
const STALL_GRACE: Duration = Duration::from_secs(5);

/// Why following stopped.
enum End {
    /// The screen is gone: stop.
    Closed,
    /// Retry.
    Lost(String),
}

impl From<ClientError> for End {
    fn from(error: ClientError) -> End {
        End::Lost(error.to_string())
    }
}

/// Follows the agent at `addr`, sampling every `interval_ms`, until `updates` is closed.
pub async fn run(addr: String, interval_ms: u32, updates: mpsc::Sender<Update>) {
    loop {
        match follow(&addr, interval_ms, &updates).await {
            End::Closed => return,
            End::Lost(error) => {
                if updates.send(Update::Lost(error)).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// One connection's life: returns when it fails or the screen is gone.
async fn follow(addr: &str, interval_ms: u32, updates: &mpsc::Sender<Update>) -> End {
    let connection = match Connection::open(addr).await {
        Ok(connection) => connection,
        Err(error) => return error.into(),
    };
    let status = match connection.status().await {
        Ok(status) => status,
        Err(error) => return error.into(),
    };
    if updates
        .send(Update::Status(Box::new(status)))
        .await
        .is_err()
    {
        return End::Closed;
    }
    let mut stream = match connection.metrics(interval_ms).await {
        Ok(stream) => stream,
        Err(error) => return error.into(),
    };
    let stall =
        Duration::from_millis(u64::from(interval_ms.max(100))).saturating_mul(3) + STALL_GRACE;
    loop {
        let sample = match tokio::time::timeout(stall, stream.message()).await {
            Err(_) => {
                return End::Lost(format!(
                    "no sample from {} for {} s",
                    crate::secret::redact_userinfo(addr),
                    stall.as_secs()
                ))
            }
            Ok(Ok(Some(sample))) => sample,
            Ok(Ok(None)) => {
                return End::Lost(format!(
                    "the agent at {} ended the metrics stream (shutting down?)",
                    crate::secret::redact_userinfo(addr)
                ))
            }
            Ok(Err(status)) => return connection.stream_error(status).into(),
        };
        if updates
            .send(Update::Sample(Box::new(sample)))
            .await
            .is_err()
        {
            return End::Closed;
        }
        let status = match connection.status().await {
            Ok(status) => status,
            Err(error) => return error.into(),
        };
        if updates
            .send(Update::Status(Box::new(status)))
            .await
            .is_err()
        {
            return End::Closed;
        }
    }
}
