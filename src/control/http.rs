//! A minimal HTTP/1.1 responder for Prometheus scrapes on `STARWAL_METRICS_ADDR`: `GET /metrics`
//! (and `HEAD`) answer the text exposition, other paths 404, other methods 405.
//!
//! One request per connection (`Connection: close`): scrapers open one every few seconds, so
//! keep-alive would save nothing and cost a parser. Everything untrusted is bounded: the request
//! head is read up to [`MAX_REQUEST_HEAD_BYTES`] within [`REQUEST_TIMEOUT`], and at most
//! [`MAX_CONNECTIONS`] are served at once (more are closed unanswered), so a port scanner or a
//! stuck client cannot hold the agent's memory or tasks.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::control::process::ProcessStats;
use crate::control::prometheus;
use crate::state::EngineHandle;

/// Longest request head (request line and headers) read; longer ones get 431.
pub const MAX_REQUEST_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its request head and read the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// Serves scrapes until `shutdown` becomes `true` (or its sender is dropped).
pub(crate) async fn serve(
    listener: TcpListener,
    handle: Arc<EngineHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stopping| *stopping) => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %err, "metrics server cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let handle = Arc::clone(&handle);
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &handle)).await;
        });
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head_only: bool },
    NotFound,
    MethodNotAllowed,
    BadRequest,
    HeadTooLarge,
}

async fn answer(mut stream: TcpStream, handle: &EngineHandle) -> std::io::Result<()> {
    let route = match read_head(&mut stream).await? {
        Some(head) => route(&head),
        None => Route::HeadTooLarge,
    };
    let allow = if route == Route::MethodNotAllowed {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let (status, content_type, body, head_only) = match route {
        Route::Metrics { head_only } => (
            "200 OK",
            prometheus::CONTENT_TYPE,
            prometheus::render(&handle.status(), &ProcessStats::read()),
            head_only,
        ),
        Route::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: metrics are at /metrics\n".to_owned(),
            false,
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET and HEAD are supported\n".to_owned(),
            false,
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "malformed HTTP request\n".to_owned(),
            false,
        ),
        Route::HeadTooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "request head too large\n".to_owned(),
            false,
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Reads until the blank line ending the head; `None` when it exceeds the limit. A client that
/// closes early gets whatever it sent parsed (usually a 400).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if head_complete(&head) {
            return Ok(Some(head));
        }
        if head.len() >= MAX_REQUEST_HEAD_BYTES {
            return Ok(None);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(Some(head));
        }
        head.extend_from_slice(&chunk[..read]);
    }
}

fn head_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// Routes on the request line alone: `METHOD target HTTP/1.x`.
fn route(head: &[u8]) -> Route {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Route::BadRequest;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || target.is_empty() {
        return Route::BadRequest;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics { head_only: false },
        ("HEAD", "/metrics") => Route::Metrics { head_only: true },
        ("GET" | "HEAD", _) => Route::NotFound,
        _ => Route::MethodNotAllowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_on_the_request_line() {
        let cases: [(&[u8], Route); 10] = [
            (
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                Route::Metrics { head_only: false },
            ),
            (
                b"GET /metrics?name[]=up HTTP/1.0\r\n\r\n",
                Route::Metrics { head_only: false },
            ),
            (
                b"HEAD /metrics HTTP/1.1\r\n\r\n",
                Route::Metrics { head_only: true },
            ),
            (b"GET / HTTP/1.1\r\n\r\n", Route::NotFound),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Route::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Route::MethodNotAllowed),
            (b"GET /metrics\r\n\r\n", Route::BadRequest),
            (b"GET /metrics SPDY/3\r\n\r\n", Route::BadRequest),
            (b"\xff\xfe garbage\r\n\r\n", Route::BadRequest),
            (b"", Route::BadRequest),
        ];
        for (head, expected) in cases {
            assert_eq!(route(head), expected, "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn head_ends_at_the_blank_line() {
        assert!(head_complete(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(head_complete(b"GET / HTTP/1.1\n\n"));
        assert!(!head_complete(b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }
}
