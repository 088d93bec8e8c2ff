//! The sim's HTTP servers: FE (8030), BE (8040) and the admin endpoint, on hyper's HTTP/1
//! server (reference §1 "Endpoints and HTTP mechanics").
//!
//! Owns sockets and connection-level behaviour: accept loops, the injected connection faults
//! (refuse = the listener is closed and re-opened when cleared; reset = accept then RST; delay =
//! every reply waits), and dropping a connection without a reply when a handler asks for it.
//! `Expect: 100-continue` is hyper's: it sends `100 Continue` only when a handler first reads the
//! body, so a handler that answers from headers alone (FE redirect, BE early failure) never sends
//! it — exactly StarRocks' behaviour. Routing and protocol rules live in `fe`, `be`, `txn_api`
//! and `admin`; this module never interprets a load.

mod admin;
mod auth;
mod be;
mod fe;
pub(crate) mod response;
mod txn_api;
mod txn_multi;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::faults::ServerRole;
use crate::state::Shared;

/// Response type of every handler.
pub(crate) type Resp = Response<Full<Bytes>>;

/// Returned by a handler to close the connection without answering (hyper drops the
/// connection when the service fails).
#[derive(Debug)]
pub(crate) struct DropConnection;

impl fmt::Display for DropConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped on purpose (injected fault)")
    }
}

impl std::error::Error for DropConnection {}

/// What a handler returns.
pub(crate) type Handled = Result<Resp, DropConnection>;

/// Which server a listener belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Fe,
    Be,
    Admin,
}

impl Endpoint {
    fn role(self) -> Option<ServerRole> {
        match self {
            Endpoint::Fe => Some(ServerRole::Fe),
            Endpoint::Be => Some(ServerRole::Be),
            Endpoint::Admin => None,
        }
    }
}

/// Per-request context.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) shared: Arc<Shared>,
    pub(crate) peer: SocketAddr,
}

/// Binds a listener with `SO_REUSEADDR`, so a refused-then-restored server can re-bind its port.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A socket bound to `addr` that does not listen: connections to it are refused, and the port
/// stays taken. `None` when the port cannot be held (the refusal then still holds).
fn hold_port(addr: SocketAddr) -> Option<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4().ok()?
    } else {
        TcpSocket::new_v6().ok()?
    };
    socket.set_reuseaddr(true).ok()?;
    socket.bind(addr).ok()?;
    Some(socket)
}

/// Runs one server until `shutdown` turns true.
pub(crate) async fn serve(
    endpoint: Endpoint,
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    let mut listener = Some(listener);
    let mut fault_changes = shared.faults.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let faults = endpoint
            .role()
            .map(|r| shared.faults.server(r))
            .unwrap_or_default();
        if faults.refuse_connections {
            // Closing the listener makes new connections fail with ECONNREFUSED. A socket bound
            // to the port without listening keeps it ours: another server started meanwhile
            // (tests run many sims at once) must not be handed the port and answer in our place.
            listener = None;
            let _held = hold_port(addr);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = fault_changes.changed() => continue,
            }
        }
        let Some(active) = listener.as_ref() else {
            match bind(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
            continue;
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = fault_changes.changed() => continue,
            accepted = active.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                if faults.reset_connections {
                    // SO_LINGER 0 turns the close into a TCP reset.
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let ctx = Ctx { shared: shared.clone(), peer };
                let mut conn_shutdown = shutdown.clone();
                let down = went_down(endpoint, shared.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { dispatch(endpoint, ctx, req).await }
                    });
                    let conn = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_shutdown.changed() => {}
                        // A server that goes down drops its kept-alive connections too, as a
                        // stopped StarRocks process does: clients that reuse connections (the
                        // agent loads a known BE directly) must see the outage.
                        _ = down => {}
                    }
                });
            }
        }
    }
}

/// Completes when `endpoint`'s server is made to refuse or reset connections.
async fn went_down(endpoint: Endpoint, shared: Arc<Shared>) {
    let Some(role) = endpoint.role() else {
        return std::future::pending().await;
    };
    let mut changes = shared.faults.subscribe();
    loop {
        let faults = shared.faults.server(role);
        if faults.refuse_connections || faults.reset_connections {
            return;
        }
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

async fn dispatch(endpoint: Endpoint, ctx: Ctx, req: Request<Incoming>) -> Handled {
    let result = match endpoint {
        Endpoint::Fe => fe::handle(&ctx, req).await,
        Endpoint::Be => be::handle(&ctx, req).await,
        Endpoint::Admin => Ok(admin::handle(&ctx, req).await),
    };
    if let Some(role) = endpoint.role() {
        let delay = ctx.shared.faults.delay(role);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    result
}

/// A header as text (case-insensitive name); non-UTF-8 values count as absent.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Path segments, percent-decoded (the BE URL-decodes `{db}` and `{table}`).
pub(crate) fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect()
}

/// A query parameter, percent-decoded.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// `%XX` and `+` decoding; malformed escapes are kept as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The most [`read_body`] sets aside before any data arrived, in bytes.
const MAX_BODY_PREALLOCATION: u64 = 256 << 20;

/// How many body buffers [`BodyBuffers`] keeps (about the loads a client has in flight).
const KEPT_BODY_BUFFERS: usize = 4;

/// The largest buffer [`BodyBuffers`] keeps, in bytes; larger ones are freed.
const MAX_KEPT_BODY_BUFFER_BYTES: usize = 64 << 20;

/// Buffers of finished bodies, reused by the next [`read_body`]. A copy sends one large body
/// after another, and a fresh buffer each time cost a page fault per 4 KiB it filled.
#[derive(Debug, Default)]
pub(crate) struct BodyBuffers {
    free: Mutex<Vec<Vec<u8>>>,
}

impl BodyBuffers {
    /// An empty buffer, with the capacity of a kept one if there is one.
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Keeps `buffer` for a later body (unless enough are kept or it is too large).
    pub(crate) fn give_back(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() > MAX_KEPT_BODY_BUFFER_BYTES {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if free.len() < KEPT_BODY_BUFFERS {
            buffer.clear();
            free.push(buffer);
        }
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// More than the allowed bytes arrived (chunked bodies have no declared length).
    TooLarge(u64),
    /// The deadline passed.
    Timeout,
    /// The connection failed or ended early.
    Incomplete,
}

/// Reads a whole body (sending `100 Continue` if the client asked), bounded in size and time,
/// into a buffer from `buffers` (hand it back with [`BodyBuffers::give_back`] when done).
/// `first_chunk_only` stops after the first data frame (the mid-body reset fault).
pub(crate) async fn read_body(
    body: Incoming,
    max_bytes: u64,
    deadline: Instant,
    first_chunk_only: bool,
    buffers: &BodyBuffers,
) -> Result<Vec<u8>, BodyError> {
    let read = async {
        let mut body = body;
        // Room for the declared length up front (bounded: the declaration is not trusted), so
        // a large body is not copied again and again while the buffer grows.
        let declared = hyper::body::Body::size_hint(&body)
            .exact()
            .unwrap_or(0)
            .min(max_bytes);
        let mut buf = buffers.take();
        buf.reserve(declared.min(MAX_BODY_PREALLOCATION) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Incomplete)?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                if buf.len() as u64 > max_bytes {
                    return Err(BodyError::TooLarge(buf.len() as u64));
                }
                if first_chunk_only {
                    break;
                }
            }
        }
        Ok(buf)
    };
    match tokio::time::timeout_at(deadline.into(), read).await {
        Ok(result) => result,
        Err(_) => Err(BodyError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_never_panics() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
        assert_eq!(
            segments("/api/my%20db/t/_stream_load"),
            vec!["api", "my db", "t", "_stream_load"]
        );
        assert_eq!(
            query_param(Some("label=a%2Db&x=1"), "label"),
            Some("a-b".into())
        );
        assert_eq!(query_param(Some("x"), "label"), None);
        assert_eq!(query_param(None, "label"), None);
    }
}
