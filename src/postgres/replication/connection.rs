//! The replication connection: TCP (+ TLS), startup with `replication=database`, authentication,
//! simple queries and message framing. Upstream tokio-postgres cannot open a replication
//! connection, so this is a small client of our own over `postgres-protocol`'s message codecs.
//! A multi-host URL is walked as libpq does (`target_session_attrs`), like `tls::connect_sql`.
//!
//! It speaks only the simple query protocol (the walsender refuses Parse). Session settings are
//! fixed at startup — `DateStyle=ISO`, `TimeZone=UTC`, `IntervalStyle=iso_8601`,
//! `extra_float_digits=3` — because pgoutput formats text values with the walsender's settings,
//! and the value decoder relies on them. Reading a message is cancel-safe (bytes are only consumed
//! once a whole frame is buffered), so callers may `select!` on it against a timer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::error::{PgError, ReplicationError};
use crate::postgres::conninfo::{ConnInfo, ServerState, SslMode};
use crate::postgres::tls::TlsConnector;

/// Read buffer growth step: big enough that a busy stream needs few reads, small enough for an
/// idle agent's footprint.
const READ_CHUNK: usize = 64 * 1024;
/// Largest backend message we accept. pgoutput rows can be big (1 GB values are legal), but a
/// length beyond this is far more likely a corrupt stream than a real row.
const MAX_MESSAGE_LEN: usize = 1 << 30;

/// One backend message, framed. CopyData payloads are zero-copy slices of the read buffer.
pub enum BackendMessage {
    /// `W`: the server entered CopyBoth (START_REPLICATION accepted).
    CopyBothResponse,
    /// `d`: one CopyData payload.
    CopyData(Bytes),
    /// Anything else, decoded by `postgres-protocol`.
    Other(backend::Message),
}

impl std::fmt::Debug for BackendMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendMessage::CopyBothResponse => f.write_str("CopyBothResponse"),
            BackendMessage::CopyData(data) => write!(f, "CopyData({} bytes)", data.len()),
            BackendMessage::Other(_) => f.write_str("Other"),
        }
    }
}

/// The transport: plain TCP or TLS over TCP.
enum Socket {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_flush(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The result of a simple query: column names and text values.
#[derive(Debug, Default, Clone)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl QueryResult {
    /// The value of `column` in the first row, if both exist and it is not NULL.
    pub fn first(&self, column: &str) -> Option<&str> {
        let index = self.columns.iter().position(|c| c == column)?;
        self.rows.first()?.get(index)?.as_deref()
    }
}

/// An open replication connection (`replication=database`), ready for commands.
pub struct ReplicationConnection {
    socket: Socket,
    frames: Frames,
    write_buf: BytesMut,
    /// `server_version_num` from the startup ParameterStatus, e.g. 150018.
    server_version_num: u32,
    target: String,
    tls: bool,
}

impl std::fmt::Debug for ReplicationConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConnection")
            .field("target", &self.target)
            .field("server_version_num", &self.server_version_num)
            .field("tls", &self.tls)
            .finish()
    }
}

impl ReplicationConnection {
    /// Connects, negotiates TLS per `sslmode`, authenticates (SCRAM-SHA-256, MD5, cleartext or
    /// trust) and waits for ReadyForQuery.
    ///
    /// Several hosts and `target_session_attrs` as libpq (and as `tls::connect_sql`): the hosts
    /// are tried in order and the first that answers and qualifies (asked with
    /// [`ServerState::QUERY`], which a `replication=database` connection accepts) is kept, so a
    /// reconnect after a failover finds the new primary. One host with `any` is one attempt.
    pub async fn connect(info: &ConnInfo) -> Result<ReplicationConnection, ReplicationError> {
        let attrs = info.target_session_attrs;
        let candidates = info.candidates();
        if candidates.len() == 1 && !attrs.needs_state() {
            return Self::connect_host(info).await;
        }
        let mut failures = Vec::new();
        for pass in 0..attrs.passes() {
            for candidate in &candidates {
                let mut conn = match Self::connect_host(candidate).await {
                    Ok(conn) => conn,
                    Err(err) => {
                        // A later pass meets the same unreachable hosts: report each once.
                        if pass == 0 {
                            // Connect errors name their target already; server errors do not.
                            let (err, target) = (err.to_string(), candidate.to_string());
                            failures.push(if err.contains(&target) {
                                err
                            } else {
                                format!("{target}: {err}")
                            });
                        }
                        continue;
                    }
                };
                if !attrs.needs_state() {
                    return Ok(conn);
                }
                match conn.server_state().await {
                    Ok(state) if attrs.accepts(pass, state) => return Ok(conn),
                    Ok(state) => {
                        if pass == 0 {
                            failures.push(format!("{candidate}: {}", state.mismatch(attrs)));
                        }
                    }
                    Err(err) => failures.push(format!("{candidate}: asking its state: {err}")),
                }
                conn.close().await;
            }
        }
        Err(ReplicationError::NoHost {
            target: info.to_string(),
            failures,
        })
    }

    /// Whether the server is read-only and whether it is in recovery.
    async fn server_state(&mut self) -> Result<ServerState, ReplicationError> {
        let result = self.simple_query(ServerState::QUERY).await?;
        let flag = |index: usize| {
            result
                .rows
                .first()
                .and_then(|row| row.get(index))
                .and_then(|value| value.as_deref())
                .map(|value| value == "t")
                .ok_or_else(|| {
                    ReplicationError::Protocol("the server state query returned no row".into())
                })
        };
        Ok(ServerState {
            read_only: flag(0)?,
            in_recovery: flag(1)?,
        })
    }

    /// One connection attempt to `info.host` alone.
    async fn connect_host(info: &ConnInfo) -> Result<ReplicationConnection, ReplicationError> {
        let target = info.to_string();
        let tcp = tokio::time::timeout(
            info.connect_timeout,
            TcpStream::connect((info.host.as_str(), info.port)),
        )
        .await
        .map_err(|_| ReplicationError::ConnectTimeout {
            target: target.clone(),
            seconds: info.connect_timeout.as_secs(),
        })?
        .map_err(|source| ReplicationError::Connect {
            target: target.clone(),
            source,
        })?;
        tcp.set_nodelay(true)
            .map_err(|source| ReplicationError::Connect {
                target: target.clone(),
                source,
            })?;
        let (socket, tls) = negotiate_tls(tcp, info, &target).await?;
        let mut conn = ReplicationConnection {
            socket,
            frames: Frames::default(),
            write_buf: BytesMut::with_capacity(1024),
            server_version_num: 0,
            target,
            tls,
        };
        conn.startup(info).await?;
        Ok(conn)
    }

    /// `server_version_num` reported at startup (e.g. 150018).
    pub fn server_version_num(&self) -> u32 {
        self.server_version_num
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The safe-to-print target (`postgres://user@host:port/db`).
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn startup(&mut self, info: &ConnInfo) -> Result<(), ReplicationError> {
        let params = [
            ("user", info.user.as_str()),
            ("database", info.dbname.as_str()),
            ("replication", "database"),
            ("application_name", info.application_name.as_str()),
            ("client_encoding", "UTF8"),
        ];
        let params = params
            .iter()
            .copied()
            .chain(crate::postgres::SESSION_SETTINGS);
        frontend::startup_message(params, &mut self.write_buf).map_err(ReplicationError::Io)?;
        self.flush().await?;
        self.authenticate(info).await?;
        loop {
            match self.read_message().await? {
                BackendMessage::Other(backend::Message::ParameterStatus(body)) => {
                    if body.name().ok() == Some("server_version") {
                        // server_version_num is not reported at startup; derive it from the
                        // human form ("15.18 (Debian ...)", "18.4", "14beta1").
                        self.server_version_num = parse_server_version(body.value().unwrap_or(""));
                    }
                }
                BackendMessage::Other(backend::Message::BackendKeyData(_)) => {}
                BackendMessage::Other(backend::Message::NoticeResponse(body)) => {
                    log_notice(&PgError::from_fields(body.fields()));
                }
                BackendMessage::Other(backend::Message::ReadyForQuery(_)) => return Ok(()),
                BackendMessage::Other(backend::Message::ErrorResponse(body)) => {
                    return Err(ReplicationError::Server(PgError::from_fields(
                        body.fields(),
                    )))
                }
                other => return Err(unexpected("startup", &other)),
            }
        }
    }

    async fn authenticate(&mut self, info: &ConnInfo) -> Result<(), ReplicationError> {
        let password = || {
            info.password
                .as_ref()
                .map(|p| p.expose().as_bytes())
                .ok_or_else(|| ReplicationError::PasswordRequired {
                    user: info.user.clone(),
                })
        };
        let mut scram: Option<ScramSha256> = None;
        let mut scram_verified = false;
        loop {
            let message = match self.read_message().await? {
                BackendMessage::Other(message) => message,
                other => return Err(unexpected("authentication", &other)),
            };
            match message {
                backend::Message::AuthenticationOk => {
                    // After SCRAM, Ok is only acceptable once the server proved it knows the
                    // password (SASLFinal verified); otherwise a man in the middle could skip it.
                    if scram.is_some() && !scram_verified {
                        return Err(ReplicationError::Protocol(
                            "the server ended SCRAM authentication without its signature".into(),
                        ));
                    }
                    return Ok(());
                }
                backend::Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password()?, &mut self.write_buf)
                        .map_err(ReplicationError::Io)?;
                }
                backend::Message::AuthenticationMd5Password(body) => {
                    let hash = postgres_protocol::authentication::md5_hash(
                        info.user.as_bytes(),
                        password()?,
                        body.salt(),
                    );
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf)
                        .map_err(ReplicationError::Io)?;
                }
                backend::Message::AuthenticationSasl(body) => {
                    let mut offered = Vec::new();
                    let mut mechanisms = body.mechanisms();
                    while let Some(mechanism) = mechanisms.next().map_err(ReplicationError::Io)? {
                        offered.push(mechanism.to_owned());
                    }
                    // Without channel binding we pick plain SCRAM-SHA-256 with gs2 header `n,,`
                    // even when -PLUS is offered over TLS; the server accepts it.
                    if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                        return Err(ReplicationError::UnsupportedAuth(format!(
                            "SASL mechanisms {offered:?}"
                        )));
                    }
                    let state = ScramSha256::new(password()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(
                        SCRAM_SHA_256,
                        state.message(),
                        &mut self.write_buf,
                    )
                    .map_err(ReplicationError::Io)?;
                    scram = Some(state);
                }
                backend::Message::AuthenticationSaslContinue(body) => {
                    let state = scram.as_mut().ok_or_else(|| {
                        ReplicationError::Protocol("SASLContinue before SASL".into())
                    })?;
                    state
                        .update(body.data())
                        .map_err(|e| ReplicationError::Protocol(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(state.message(), &mut self.write_buf)
                        .map_err(ReplicationError::Io)?;
                }
                backend::Message::AuthenticationSaslFinal(body) => {
                    let state = scram.as_mut().ok_or_else(|| {
                        ReplicationError::Protocol("SASLFinal before SASL".into())
                    })?;
                    // Verifies the server's signature: a server that does not know the
                    // password cannot complete the exchange.
                    state.finish(body.data()).map_err(|e| {
                        ReplicationError::Protocol(format!("SCRAM server signature: {e}"))
                    })?;
                    scram_verified = true;
                    continue;
                }
                backend::Message::ErrorResponse(body) => {
                    return Err(ReplicationError::Server(PgError::from_fields(
                        body.fields(),
                    )))
                }
                backend::Message::AuthenticationKerberosV5
                | backend::Message::AuthenticationScmCredential
                | backend::Message::AuthenticationGss
                | backend::Message::AuthenticationSspi
                | backend::Message::AuthenticationGssContinue(_) => {
                    return Err(ReplicationError::UnsupportedAuth(
                        "GSSAPI/SSPI/Kerberos".into(),
                    ))
                }
                _ => {
                    return Err(ReplicationError::Protocol(
                        "unexpected message during authentication".into(),
                    ))
                }
            }
            self.flush().await?;
        }
    }

    /// Runs one simple query and collects its rows (the last result set when there are several).
    /// Errors come back as [`ReplicationError::Server`] with the SQLSTATE.
    pub async fn simple_query(&mut self, sql: &str) -> Result<QueryResult, ReplicationError> {
        frontend::query(sql, &mut self.write_buf).map_err(ReplicationError::Io)?;
        self.flush().await?;
        let mut result = QueryResult::default();
        let mut error = None;
        loop {
            match self.read_message().await? {
                BackendMessage::Other(message) => match message {
                    backend::Message::RowDescription(body) => {
                        result = QueryResult::default();
                        let mut fields = body.fields();
                        while let Some(field) = fields.next().map_err(ReplicationError::Io)? {
                            result.columns.push(field.name().to_owned());
                        }
                    }
                    backend::Message::DataRow(body) => {
                        let buffer = body.buffer();
                        let mut row = Vec::with_capacity(result.columns.len());
                        let mut ranges = body.ranges();
                        while let Some(range) = ranges.next().map_err(ReplicationError::Io)? {
                            row.push(match range {
                                Some(range) => Some(
                                    String::from_utf8_lossy(buffer.get(range).ok_or_else(
                                        || {
                                            ReplicationError::Protocol(
                                                "DataRow out of bounds".into(),
                                            )
                                        },
                                    )?)
                                    .into_owned(),
                                ),
                                None => None,
                            });
                        }
                        result.rows.push(row);
                    }
                    backend::Message::ErrorResponse(body) => {
                        error = Some(PgError::from_fields(body.fields()));
                    }
                    backend::Message::NoticeResponse(body) => {
                        log_notice(&PgError::from_fields(body.fields()));
                    }
                    backend::Message::ReadyForQuery(_) => {
                        return match error {
                            Some(err) => Err(ReplicationError::Server(err)),
                            None => Ok(result),
                        }
                    }
                    backend::Message::CommandComplete(_)
                    | backend::Message::EmptyQueryResponse
                    | backend::Message::ParameterStatus(_) => {}
                    other => {
                        return Err(unexpected("a simple query", &BackendMessage::Other(other)))
                    }
                },
                other => return Err(unexpected("a simple query", &other)),
            }
        }
    }

    /// Sends `sql` (START_REPLICATION) and waits for CopyBothResponse. Errors arrive as
    /// ErrorResponse + ReadyForQuery instead of `W`.
    pub(crate) async fn enter_copy_both(&mut self, sql: &str) -> Result<(), ReplicationError> {
        frontend::query(sql, &mut self.write_buf).map_err(ReplicationError::Io)?;
        self.flush().await?;
        let mut error = None;
        loop {
            match self.read_message().await? {
                BackendMessage::CopyBothResponse => return Ok(()),
                BackendMessage::Other(backend::Message::ErrorResponse(body)) => {
                    error = Some(PgError::from_fields(body.fields()));
                }
                BackendMessage::Other(backend::Message::NoticeResponse(body)) => {
                    log_notice(&PgError::from_fields(body.fields()));
                }
                BackendMessage::Other(backend::Message::ReadyForQuery(_)) => {
                    return Err(match error {
                        Some(err) => ReplicationError::Server(err),
                        None => ReplicationError::Protocol(
                            "START_REPLICATION ended without CopyBothResponse".into(),
                        ),
                    })
                }
                BackendMessage::Other(backend::Message::ParameterStatus(_)) => {}
                other => return Err(unexpected("START_REPLICATION", &other)),
            }
        }
    }

    /// Appends one CopyData message to the write buffer (not sent until [`Self::flush`]).
    pub(crate) fn queue_copy_data(&mut self, payload: &[u8]) -> Result<(), ReplicationError> {
        frontend::CopyData::new(payload)
            .map_err(ReplicationError::Io)?
            .write(&mut self.write_buf);
        Ok(())
    }

    /// Appends CopyDone to the write buffer.
    pub(crate) fn queue_copy_done(&mut self) {
        frontend::copy_done(&mut self.write_buf);
    }

    /// Writes everything queued.
    pub(crate) async fn flush(&mut self) -> Result<(), ReplicationError> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let result = async {
            self.socket.write_all(&self.write_buf).await?;
            self.socket.flush().await
        }
        .await;
        self.write_buf.clear();
        result.map_err(|source| ReplicationError::ConnectionLost {
            target: self.target.clone(),
            source,
        })
    }

    /// Reads one backend message. Cancel-safe: a partially received frame stays buffered.
    pub(crate) async fn read_message(&mut self) -> Result<BackendMessage, ReplicationError> {
        loop {
            if let Some(message) = self.frames.next_frame()? {
                return Ok(message);
            }
            // A large frame is read straight into its own allocation, never past its end.
            let read = match self.frames.large.as_mut() {
                Some(large) => {
                    let rest = large.total - large.frame.len();
                    self.socket
                        .read_buf(&mut (&mut large.frame).limit(rest))
                        .await
                }
                None => {
                    self.frames.make_room();
                    self.socket.read_buf(&mut self.frames.buf).await
                }
            };
            match read {
                Ok(0) => {
                    return Err(ReplicationError::ConnectionLost {
                        target: self.target.clone(),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "server closed the connection",
                        ),
                    })
                }
                Ok(_) => {}
                Err(source) => {
                    return Err(ReplicationError::ConnectionLost {
                        target: self.target.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Sends Terminate and closes the socket.
    pub async fn close(mut self) {
        frontend::terminate(&mut self.write_buf);
        let _ = self.flush().await;
        let _ = self.socket.shutdown().await;
    }
}

/// Message framing over the bytes read from the socket.
///
/// Every CopyData payload handed out is an allocation of its own, exactly its size: the stream's
/// consumers keep changes for a while (until their load commits), and a payload sliced out of the
/// shared read buffer would keep that whole 64 KiB buffer alive for a 100-byte change, memory the
/// buffer accounting cannot see (invariant 8). Small frames are copied out of the read buffer,
/// which is then reused; frames larger than [`READ_CHUNK`] are read straight into an allocation
/// of their own, so the read buffer never grows to the largest message received.
#[derive(Debug)]
struct Frames {
    buf: BytesMut,
    /// A large frame (header included) being received.
    large: Option<LargeFrame>,
}

#[derive(Debug)]
struct LargeFrame {
    frame: Vec<u8>,
    /// Bytes of the whole frame: tag, length and body.
    total: usize,
}

impl Default for Frames {
    fn default() -> Frames {
        Frames {
            buf: BytesMut::with_capacity(READ_CHUNK),
            large: None,
        }
    }
}

impl Frames {
    /// Room for the next socket read. The buffer is never shared (frames are copied out), so
    /// `reserve` moves the unread tail to the front instead of allocating while it can.
    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
    }

    /// The next whole frame, if received.
    fn next_frame(&mut self) -> Result<Option<BackendMessage>, ReplicationError> {
        if let Some(large) = &mut self.large {
            let take = (large.total - large.frame.len()).min(self.buf.len());
            large.frame.extend_from_slice(&self.buf[..take]);
            self.buf.advance(take);
            if large.frame.len() < large.total {
                return Ok(None);
            }
            let frame = self
                .large
                .take()
                .map(|large| large.frame)
                .unwrap_or_default();
            return Self::decode(frame[0], Bytes::from(frame));
        }
        let Some(header) = self.buf.get(..5) else {
            return Ok(None);
        };
        let tag = header[0];
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|len| (4..=MAX_MESSAGE_LEN).contains(len))
            .ok_or_else(|| {
                ReplicationError::Protocol(format!("invalid message length {len} for tag {tag}"))
            })?;
        let total = len + 1;
        if total > READ_CHUNK {
            self.large = Some(LargeFrame {
                frame: Vec::with_capacity(total),
                total,
            });
            return self.next_frame();
        }
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let frame = Bytes::copy_from_slice(&self.buf[..total]);
        self.buf.advance(total);
        Self::decode(tag, frame)
    }

    /// A whole frame (tag, length, body) as a message.
    fn decode(tag: u8, frame: Bytes) -> Result<Option<BackendMessage>, ReplicationError> {
        match tag {
            b'd' => Ok(Some(BackendMessage::CopyData(frame.slice(5..)))),
            b'W' => Ok(Some(BackendMessage::CopyBothResponse)),
            _ => match backend::Message::parse(&mut BytesMut::from(&frame[..])).map_err(|e| {
                ReplicationError::Protocol(format!("malformed message with tag {tag}: {e}"))
            })? {
                Some(message) => Ok(Some(BackendMessage::Other(message))),
                None => Err(ReplicationError::Protocol(format!(
                    "incomplete message with tag {tag}"
                ))),
            },
        }
    }
}

async fn negotiate_tls(
    mut tcp: TcpStream,
    info: &ConnInfo,
    target: &str,
) -> Result<(Socket, bool), ReplicationError> {
    let Some(connector) = TlsConnector::for_conninfo(info).map_err(ReplicationError::Tls)? else {
        return Ok((Socket::Plain(tcp), false));
    };
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    let io_err = |source| ReplicationError::Connect {
        target: target.to_owned(),
        source,
    };
    tcp.write_all(&request).await.map_err(io_err)?;
    let answer = tcp.read_u8().await.map_err(io_err)?;
    match answer {
        b'S' => {
            let tls = connector.connect(&info.host, tcp).await.map_err(|source| {
                ReplicationError::TlsHandshake {
                    target: target.to_owned(),
                    source,
                }
            })?;
            Ok((Socket::Tls(Box::new(tls)), true))
        }
        b'N' if info.sslmode == SslMode::Prefer => Ok((Socket::Plain(tcp), false)),
        b'N' => Err(ReplicationError::TlsRefused {
            target: target.to_owned(),
        }),
        other => Err(ReplicationError::Protocol(format!(
            "unexpected answer {other:#04x} to SSLRequest"
        ))),
    }
}

/// `"15.18 (Debian 15.18-0+deb12u1)"` → 150018; `"18.4"` → 180004; `"17beta1"` → 170000.
pub fn parse_server_version(text: &str) -> u32 {
    let mut parts = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = if text
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .starts_with('.')
    {
        parts.next().unwrap_or(0)
    } else {
        0
    };
    major * 10000 + minor
}

fn log_notice(notice: &PgError) {
    tracing::info!(severity = %notice.severity, code = %notice.code, "postgres: {}", notice.message);
}

fn unexpected(during: &str, message: &BackendMessage) -> ReplicationError {
    let what = match message {
        BackendMessage::CopyBothResponse => "CopyBothResponse".to_owned(),
        BackendMessage::CopyData(_) => "CopyData".to_owned(),
        BackendMessage::Other(other) => format!("{:?}", std::mem::discriminant(other)),
    };
    ReplicationError::Protocol(format!("unexpected {what} during {during}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_version_strings_become_numbers() {
        assert_eq!(
            parse_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            150018
        );
        assert_eq!(parse_server_version("18.4"), 180004);
        assert_eq!(parse_server_version("17beta1"), 170000);
        assert_eq!(parse_server_version("14.23"), 140023);
        assert_eq!(parse_server_version(""), 0);
    }

    fn copy_data(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![b'd'];
        frame.extend_from_slice(&(payload.len() as i32 + 4).to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    /// Feeds `input` to `frames` in socket reads of at most `step` bytes, as `read_message`
    /// does, and collects the CopyData payloads; also returns the largest read buffer seen.
    fn frame_all(input: &[u8], step: usize) -> (Vec<Bytes>, usize) {
        let mut frames = Frames::default();
        let mut out = Vec::new();
        let mut rest = input;
        let mut largest = frames.buf.capacity();
        loop {
            while let Some(message) = frames.next_frame().unwrap() {
                match message {
                    BackendMessage::CopyData(data) => out.push(data),
                    other => panic!("unexpected {other:?}"),
                }
            }
            if rest.is_empty() {
                return (out, largest);
            }
            let n = match frames.large.as_mut() {
                Some(large) => {
                    let n = step.min(rest.len()).min(large.total - large.frame.len());
                    large.frame.extend_from_slice(&rest[..n]);
                    n
                }
                None => {
                    frames.make_room();
                    let room = frames.buf.capacity() - frames.buf.len();
                    let n = step.min(rest.len()).min(room);
                    frames.buf.extend_from_slice(&rest[..n]);
                    n
                }
            };
            largest = largest.max(frames.buf.capacity());
            rest = &rest[n..];
        }
    }

    #[test]
    fn copy_data_payloads_are_their_own_allocations_and_the_read_buffer_stays_small() {
        let payloads: Vec<Vec<u8>> = (0..2_000usize)
            .map(|n| {
                // Mostly small changes, now and then one far larger than the read buffer.
                let len = if n % 500 == 7 { 300_000 + n } else { n % 300 };
                (0..len).map(|i| (i * 31 + n) as u8).collect()
            })
            .collect();
        let input: Vec<u8> = payloads.iter().flat_map(|p| copy_data(p)).collect();
        for step in [1, 7, 4096, READ_CHUNK, 1 << 20] {
            let (got, largest) = frame_all(&input, step);
            assert_eq!(got.len(), payloads.len(), "step {step}");
            for (got, want) in got.iter().zip(&payloads) {
                assert_eq!(&got[..], &want[..], "step {step}");
            }
            // The 300 KB frames never went through the read buffer.
            assert!(
                largest <= 2 * READ_CHUNK + 5,
                "step {step}: buffer grew to {largest}"
            );
        }
    }

    #[test]
    fn an_invalid_length_is_an_error_not_an_allocation() {
        let mut frames = Frames::default();
        frames
            .buf
            .extend_from_slice(&[b'd', 0x7f, 0xff, 0xff, 0xff]);
        assert!(frames.next_frame().is_err());
        let mut frames = Frames::default();
        frames.buf.extend_from_slice(&[b'd', 0, 0, 0, 3]);
        assert!(frames.next_frame().is_err());
    }
}
