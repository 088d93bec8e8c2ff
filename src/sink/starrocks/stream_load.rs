//! The Stream Load transport over libcurl: `PUT /api/{db}/{table}/_stream_load` to an FE with
//! `Expect: 100-continue`, the FE's 307 followed with credentials to the BE (curl's
//! `--location-trusted`), the body re-sent from memory after the redirect, and handles reused
//! across loads so BE connections are kept alive. For [`DIRECT_BE_TTL`] after a redirect, loads
//! go straight to that BE (StarRocks documents submitting a Stream Load to a BE directly), small
//! bodies without `Expect: 100-continue`: the FE closes its connection after every 307, so the
//! FE hop was a new TCP connection and a second request per load.
//!
//! Each attempt runs on a blocking thread (libcurl's easy interface blocks). Outcomes follow
//! reference §3–4: committed (`Success`, `Publish Timeout`, `Label Already Exists` + FINISHED),
//! `Label Already Exists` + RUNNING → poll `get_load_state` and re-send with the same label when
//! the earlier attempt aborted, `Fail` → transient or permanent per [`super::error`]. Transient
//! failures are retried forever with exponential backoff and jitter, rotating FE URLs; filtered
//! rows fetch the ErrorURL text for the error (invariant 6). The backoff is capped low
//! ([`DEFAULT_MAX_RETRY_DELAY`], `STARWAL_LOAD_RETRY_MAX_DELAY_S`) so loads resume within seconds
//! of StarRocks coming back, and every attempt's outcome goes to the client's
//! [`LoadObserver`], so the outage shows in status and metrics while it lasts (invariant 13).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use curl::easy::{Auth, Easy2, Handler, List, ReadError, SeekResult, WriteError};

use super::config::StarRocksConfig;
use super::encoding::{CSV_COLUMN_SEPARATOR_HEADER, CSV_ROW_DELIMITER_HEADER};
use super::error::StreamLoadError;
use super::label::Label;
use super::response::{excerpt, parse_label_state, LabelState, LoadOutcome, LoadResponse};
use crate::sink::{AttemptFailed, LoadBatch, LoadFailure, LoadObserver, LoadReceipt, Sink};

/// The longest wait between two attempts of a load by default. Short, because the wait is also
/// how late loads resume once StarRocks is back (a 60 s cap meant up to a minute of lag after a
/// 2-minute outage); cheap, because a retry is one request per table, and jitter spreads the
/// tables' retries. StarRocks' own loaders retry within seconds too.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How long loads go straight to the BE an FE last redirected to before an FE is asked again.
/// The FE picks a BE per load (round robin over the alive BEs) and answers `Connection: close`
/// with its 307, so through the FE every load pays a new TCP connection and a second request
/// (measured: most of the agent's CPU per load at low rates). Asking again every few seconds
/// still spreads loads over the BEs over time and follows a BE that leaves; any failed attempt
/// forgets the BE at once, so retries go through the FE.
pub const DIRECT_BE_TTL: Duration = Duration::from_secs(10);

/// Bodies up to this size go to a known BE without `Expect: 100-continue`. The BE does not
/// require it (only the FE does); it saves a round trip per load, and when the BE refuses a load
/// before reading the body the wasted bytes are at most this many (curl's own threshold for
/// adding the header). A refusal that resets the connection is a transport error: the retry
/// goes through the FE with the header.
const NO_EXPECT_MAX_BODY: usize = 1 << 20;

/// The BE loads go to directly, learned from an FE's redirect.
#[derive(Debug, Clone)]
struct DirectBe {
    /// `http://host:port`, from the redirect's `Location`.
    base: String,
    /// Until when loads may skip the FE.
    until: Instant,
}

/// `scheme://authority` of a URL (`None` without a scheme or host).
fn url_base(url: &str) -> Option<&str> {
    let authority_start = url.find("://")? + 3;
    let end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| authority_start + at);
    (end > authority_start).then(|| &url[..end])
}

/// What comes before `path` in the URL a redirect ended at: `http://be:8040`, or with a proxy
/// in between whatever prefix the `Location` carried. `None` when the URL does not end with the
/// load's path (then loads keep going through the FE).
fn redirect_base<'a>(effective: &'a str, path: &str) -> Option<&'a str> {
    let base = effective.strip_suffix(path)?;
    url_base(base).map(|_| base)
}

/// Backoff between attempts: starts here, doubles, and is capped at [`RetryPolicy::max_delay`].
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First delay (StarRocks' own SDK waits seconds; one second clears most blips).
    pub initial_delay: Duration,
    /// Longest delay (default [`DEFAULT_MAX_RETRY_DELAY`]): also the longest time loads take to
    /// resume after StarRocks comes back.
    pub max_delay: Duration,
    /// How many times to ask `get_load_state` about a running label before counting the
    /// attempt as failed (and trying again later).
    pub label_state_polls: u32,
    /// Pause between two `get_load_state` polls.
    pub label_state_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: DEFAULT_MAX_RETRY_DELAY,
            label_state_polls: 30,
            label_state_interval: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `failures + 1`: exponential with full jitter in [d/2, d].
    pub(super) fn delay(&self, failures: u32, jitter_seed: u64) -> Duration {
        let exponent = failures.saturating_sub(1).min(16);
        let full = self
            .initial_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = full / 2;
        let jitter = (xorshift(jitter_seed) % 1000) as u32;
        half + half.mul_f64(f64::from(jitter) / 1000.0)
    }
}

fn xorshift(seed: u64) -> u64 {
    let mut x = seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The curl handler of one exchange: serves the body (seekable, for the re-send after the 307)
/// and collects the response.
///
/// It also ends a transfer early when the BE answered before `100 Continue`. StarRocks answers
/// every failure with HTTP 200, and libcurl keeps waiting for `100 Continue` after a 2xx final
/// answer until the expect timeout runs out (30 s; measured against the sim), although the answer
/// is complete. So once a final answer has fully arrived while the body is still unsent, the
/// progress callback aborts the transfer and the collected answer is used.
#[derive(Debug, Default)]
struct Exchange {
    body: Bytes,
    sent: usize,
    response: Vec<u8>,
    /// Status of the last response head seen (100, 307, 200, ...).
    status: u32,
    /// `Content-Length` of the last response head.
    content_length: Option<usize>,
    /// The answer of the last hop arrived completely before any body byte was sent.
    early_answer: bool,
}

impl Exchange {
    fn start(&mut self, body: Bytes) {
        self.body = body;
        self.sent = 0;
        self.response.clear();
        self.status = 0;
        self.content_length = None;
        self.early_answer = false;
    }

    fn answer_complete(&self) -> bool {
        self.status >= 200
            && !(300..400).contains(&self.status)
            // A Stream Load answer always has a body; a proxy's `200` to CONNECT has none.
            && self
                .content_length
                .is_some_and(|length| length > 0 && self.response.len() >= length)
    }
}

impl Handler for Exchange {
    fn read(&mut self, data: &mut [u8]) -> Result<usize, ReadError> {
        let rest = self.body.get(self.sent..).unwrap_or_default();
        let n = rest.len().min(data.len());
        data[..n].copy_from_slice(&rest[..n]);
        self.sent += n;
        Ok(n)
    }

    fn seek(&mut self, whence: std::io::SeekFrom) -> SeekResult {
        match whence {
            std::io::SeekFrom::Start(offset) if offset as usize <= self.body.len() => {
                self.sent = offset as usize;
                SeekResult::Ok
            }
            _ => SeekResult::CantSeek,
        }
    }

    fn header(&mut self, data: &[u8]) -> bool {
        let line = String::from_utf8_lossy(data);
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("HTTP/") {
            // A new response head (after a 100 or a redirect): forget the previous one.
            self.status = rest
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
            self.content_length = None;
            self.response.clear();
        } else if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                self.content_length = value.trim().parse().ok();
            }
        }
        true
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, WriteError> {
        self.response.extend_from_slice(data);
        Ok(data.len())
    }

    fn progress(&mut self, _dltotal: f64, _dlnow: f64, _ultotal: f64, _ulnow: f64) -> bool {
        if self.sent == 0 && !self.body.is_empty() && self.answer_complete() {
            self.early_answer = true;
            return false;
        }
        true
    }
}

/// The Stream Load client: one per target database, shared by all table workers.
pub struct StreamLoadClient {
    config: StarRocksConfig,
    retry: RetryPolicy,
    /// Idle curl handles; each keeps its connections alive between loads.
    handles: Mutex<Vec<Easy2<Exchange>>>,
    /// Index of the FE URL to try first; moves on after a connection failure.
    preferred_fe: AtomicUsize,
    /// The BE plain loads go to directly while fresh ([`DIRECT_BE_TTL`]).
    direct_be: Mutex<Option<DirectBe>>,
    /// Told about every attempt's outcome (the engine's state); none in tests and tools.
    observer: Option<Arc<dyn LoadObserver>>,
}

impl std::fmt::Debug for StreamLoadClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLoadClient")
            .field("fe_urls", &self.config.fe_urls)
            .field("database", &self.config.database)
            .finish()
    }
}

/// The `columns` header: every name backtick-quoted (reserved words and spaces are legal column
/// names), except StarRocks' own `__op`. Control characters cannot travel in a header and are
/// dropped.
pub(super) fn columns_header(columns: &[String]) -> String {
    columns
        .iter()
        .map(|name| {
            if name == "__op" {
                name.clone()
            } else {
                let clean: String = name.chars().filter(|c| !c.is_control()).collect();
                format!("`{}`", clean.replace('`', "``"))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Percent-encodes a path segment (database and table names are plain identifiers in practice).
pub(super) fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What [`StreamLoadClient::probe`] found, besides an FE that accepts the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFound {
    /// The database exists.
    Database,
    /// The FE does not know the database (setup creates it).
    NoDatabase,
}

/// Whether an FE answer is its `unknown database, database=<db>` failure.
fn is_unknown_database(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|json| {
            let message = json.get("msg").or_else(|| json.get("message"))?;
            Some(message.as_str()?.starts_with("unknown database"))
        })
        .unwrap_or(false)
}

impl StreamLoadClient {
    /// A client for `config` with the default retry policy.
    pub fn new(config: StarRocksConfig) -> Arc<StreamLoadClient> {
        Self::with_retry(config, RetryPolicy::default())
    }

    /// A client with a custom retry policy (tests use short delays).
    pub fn with_retry(config: StarRocksConfig, retry: RetryPolicy) -> Arc<StreamLoadClient> {
        Self::build(config, retry, None)
    }

    /// A client that tells `observer` about every attempt (what `starwal run` uses).
    pub fn observed(
        config: StarRocksConfig,
        retry: RetryPolicy,
        observer: Arc<dyn LoadObserver>,
    ) -> Arc<StreamLoadClient> {
        Self::build(config, retry, Some(observer))
    }

    fn build(
        config: StarRocksConfig,
        retry: RetryPolicy,
        observer: Option<Arc<dyn LoadObserver>>,
    ) -> Arc<StreamLoadClient> {
        Arc::new(StreamLoadClient {
            config,
            retry,
            handles: Mutex::new(Vec::new()),
            preferred_fe: AtomicUsize::new(0),
            direct_be: Mutex::new(None),
            observer,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &StarRocksConfig {
        &self.config
    }

    fn take_handle(&self) -> Easy2<Exchange> {
        let pooled = self
            .handles
            .lock()
            .ok()
            .and_then(|mut handles| handles.pop());
        pooled.unwrap_or_else(|| Easy2::new(Exchange::default()))
    }

    fn return_handle(&self, mut handle: Easy2<Exchange>) {
        handle.get_mut().start(Bytes::new());
        if let Ok(mut handles) = self.handles.lock() {
            handles.push(handle);
        }
    }

    /// Drops every pooled handle, with its connections and buffers (~80 KB each in curl's
    /// queues): the pool grows to the most loads that ever ran at once and would keep that
    /// many for good (2.3 MB after a 50-table burst). Handles in use are pooled again when
    /// their load ends; the next loads after this open new ones.
    pub fn release_idle_handles(&self) {
        let idle = self
            .handles
            .lock()
            .map(|mut handles| std::mem::take(&mut *handles))
            .unwrap_or_default();
        drop(idle);
    }

    fn fe_url(&self) -> &str {
        let index = self.preferred_fe.load(Ordering::Relaxed) % self.config.fe_urls.len();
        &self.config.fe_urls[index]
    }

    /// The BE to load directly, if one was learned less than [`DIRECT_BE_TTL`] ago.
    fn direct_be(&self) -> Option<String> {
        let direct = self.direct_be.lock().ok()?;
        direct
            .as_ref()
            .filter(|be| Instant::now() < be.until)
            .map(|be| be.base.clone())
    }

    /// Remembers the BE an FE redirected a load of `path` to (`effective`: where curl ended).
    fn learn_be(&self, effective: &str, path: &str) {
        let Some(base) = redirect_base(effective, path) else {
            return;
        };
        if let Ok(mut direct) = self.direct_be.lock() {
            *direct = Some(DirectBe {
                base: base.to_owned(),
                until: Instant::now() + DIRECT_BE_TTL,
            });
        }
    }

    /// The next load asks an FE again (after any failed attempt: the BE may be gone).
    fn forget_be(&self) {
        if let Ok(mut direct) = self.direct_be.lock() {
            *direct = None;
        }
    }

    fn rotate_fe(&self) {
        if self.config.fe_urls.len() > 1 {
            self.preferred_fe.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Common options: credentials, redirects with credentials, timeouts.
    fn configure(
        &self,
        handle: &mut Easy2<Exchange>,
        url: &str,
        timeout: Duration,
    ) -> Result<(), curl::Error> {
        handle.reset();
        handle.url(url)?;
        handle.username(&self.config.user)?;
        handle.password(self.config.password.expose())?;
        let mut auth = Auth::new();
        auth.basic(true);
        handle.http_auth(&auth)?;
        handle.follow_location(true)?;
        // The FE redirects to a BE on another host: send the credentials there too.
        handle.unrestricted_auth(true)?;
        handle.max_redirections(5)?;
        handle.connect_timeout(self.config.connect_timeout)?;
        handle.timeout(timeout)?;
        Ok(())
    }

    /// One PUT of the batch. Returns the parsed response.
    fn put(
        &self,
        handle: &mut Easy2<Exchange>,
        batch: &LoadBatch,
    ) -> Result<LoadResponse, StreamLoadError> {
        let path = format!(
            "/api/{}/{}/_stream_load",
            path_segment(&self.config.database),
            path_segment(&batch.table)
        );
        let direct = self.direct_be();
        let url = match &direct {
            Some(be) => format!("{be}{path}"),
            None => format!("{}{path}", self.fe_url()),
        };
        // The FE requires the header; a known BE does not (see `NO_EXPECT_MAX_BODY`).
        let expect_continue = direct.is_none() || batch.body.len() > NO_EXPECT_MAX_BODY;
        let transport = |source| StreamLoadError::Transport {
            url: url.clone(),
            source,
        };
        let load_seconds = self.config.load_timeout.as_secs();
        // curl must not give up before StarRocks does: the load timeout plus a margin.
        self.configure(
            handle,
            &url,
            self.config.load_timeout + Duration::from_secs(30),
        )
        .map_err(transport)?;
        let mut headers = List::new();
        let mut add = |header: &str| headers.append(header).map_err(transport);
        // An empty `Expect:` keeps curl from adding one of its own.
        add(match expect_continue {
            true => "Expect: 100-continue",
            false => "Expect:",
        })?;
        add(&format!("label: {}", batch.label))?;
        match &batch.csv_columns {
            // Plain CSV (no enclose or escape): StarRocks splits it on the two bytes; `columns`
            // names the fields in order (see `encoding::BodyFormat`).
            Some(columns) => {
                add("format: csv")?;
                add(&format!("column_separator: {CSV_COLUMN_SEPARATOR_HEADER}"))?;
                add(&format!("row_delimiter: {CSV_ROW_DELIMITER_HEADER}"))?;
                add(&format!("columns: {}", columns_header(columns)))?;
            }
            None => {
                add("format: json")?;
                add("strip_outer_array: true")?;
                add("ignore_json_size: true")?;
            }
        }
        add("max_filter_ratio: 0")?;
        // Without strict mode StarRocks stores NULL for a value it cannot convert (an overflowing
        // decimal, say) and reports success; with it the row is filtered and surfaces as an error.
        add("strict_mode: true")?;
        add(&format!("timeout: {load_seconds}"))?;
        if let Some(columns) = &batch.partial_columns {
            add("partial_update: true")?;
            if batch.csv_columns.is_none() {
                add(&format!("columns: {}", columns_header(columns)))?;
            }
        }
        if let Some(compression) = self.config.compression.header_value() {
            add(&format!("compression: {compression}"))?;
        }
        handle.http_headers(headers).map_err(transport)?;
        handle.upload(true).map_err(transport)?;
        handle
            .in_filesize(batch.body.len() as u64)
            .map_err(transport)?;
        if expect_continue {
            // Wait for the BE's 100 Continue (it begins the transaction first); StarRocks' SDK
            // waits 30 s.
            handle
                .expect_100_timeout(Duration::from_secs(30))
                .map_err(transport)?;
            handle.progress(true).map_err(transport)?;
        }
        handle.get_mut().start(batch.body.clone());
        match handle.perform() {
            Ok(()) => {}
            // The BE answered before `100 Continue`: the answer is complete (see `Exchange`).
            Err(err) if err.is_aborted_by_callback() && handle.get_ref().early_answer => {}
            Err(err) => return Err(transport(err)),
        }
        if direct.is_none() && handle.redirect_count().unwrap_or(0) > 0 {
            if let Ok(Some(effective)) = handle.effective_url() {
                self.learn_be(effective, &path);
            }
        }
        let status = match handle.get_ref().early_answer {
            true => handle.get_ref().status,
            false => handle.response_code().map_err(transport)?,
        };
        let body = std::mem::take(&mut handle.get_mut().response);
        if status == 401 || status == 403 {
            let message = LoadResponse::parse(&body)
                .map(|r| r.message)
                .unwrap_or_else(|_| excerpt(&body));
            return Err(StreamLoadError::Auth { message });
        }
        if status != 200 {
            return Err(StreamLoadError::Http {
                url,
                status,
                excerpt: excerpt(&body),
            });
        }
        let response = LoadResponse::parse(&body)
            .map_err(|source| StreamLoadError::Malformed { url, source })?;
        if direct.is_some() && !expect_continue {
            if let LoadOutcome::Failed { message } = response.outcome() {
                // Whatever answered wants the header after all (only an FE should): forget it
                // and send this load through the FE.
                if message.contains("100-continue") {
                    self.forget_be();
                    return self.put(handle, batch);
                }
            }
        }
        Ok(response)
    }

    /// `GET /api/{db}/get_load_state?label=`.
    fn label_state(
        &self,
        handle: &mut Easy2<Exchange>,
        label: &Label,
    ) -> Result<LabelState, StreamLoadError> {
        let url = format!(
            "{}/api/{}/get_load_state?label={}",
            self.fe_url(),
            path_segment(&self.config.database),
            label
        );
        let transport = |source| StreamLoadError::Transport {
            url: url.clone(),
            source,
        };
        self.configure(handle, &url, self.config.connect_timeout * 3)
            .map_err(transport)?;
        handle.get(true).map_err(transport)?;
        handle.get_mut().start(Bytes::new());
        handle.perform().map_err(transport)?;
        let status = handle.response_code().map_err(transport)?;
        let body = std::mem::take(&mut handle.get_mut().response);
        match status {
            200 => parse_label_state(&body)
                .map_err(|source| StreamLoadError::Malformed { url, source }),
            401 | 403 => Err(StreamLoadError::Auth {
                message: excerpt(&body),
            }),
            _ => Err(StreamLoadError::Http {
                url,
                status,
                excerpt: excerpt(&body),
            }),
        }
    }

    /// The text behind an ErrorURL, or why it could not be read (never fails the caller).
    fn error_log(&self, handle: &mut Easy2<Exchange>, url: &str) -> String {
        let fetched = (|| -> Result<Vec<u8>, curl::Error> {
            self.configure(handle, url, self.config.connect_timeout * 3)?;
            handle.get(true)?;
            handle.get_mut().start(Bytes::new());
            handle.perform()?;
            Ok(std::mem::take(&mut handle.get_mut().response))
        })();
        match fetched {
            Ok(body) => {
                let text = String::from_utf8_lossy(&body);
                let text = text.trim();
                // Enough to name the rows and reasons; a huge log stays at the URL.
                match text.char_indices().nth(4000) {
                    Some((cut, _)) => format!("{}… (more at {url})", &text[..cut]),
                    None => format!("{text} ({url})"),
                }
            }
            Err(err) => format!("could not read the error log at {url}: {err}"),
        }
    }

    /// One attempt, including `get_load_state` polling for a running label. Blocking.
    fn attempt(
        &self,
        handle: &mut Easy2<Exchange>,
        batch: &LoadBatch,
    ) -> Result<(LoadResponse, bool), StreamLoadError> {
        let mut polls = 0;
        loop {
            let response = self.put(handle, batch)?;
            match response.outcome() {
                LoadOutcome::Committed { already } => return Ok((response, already)),
                LoadOutcome::Failed { message } => {
                    if response.filtered_rows > 0 || message.contains("too many filtered rows") {
                        let error_log = match &response.error_url {
                            Some(url) => self.error_log(handle, url),
                            None => "StarRocks gave no ErrorURL".to_owned(),
                        };
                        return Err(StreamLoadError::FilteredRows {
                            table: batch.table.clone(),
                            label: batch.label.to_string(),
                            filtered: response.filtered_rows,
                            error_log,
                        });
                    }
                    return Err(StreamLoadError::Rejected {
                        table: batch.table.clone(),
                        label: batch.label.to_string(),
                        message,
                    });
                }
                LoadOutcome::LabelRunning => loop {
                    // An earlier attempt with this label is in flight: wait for its fate.
                    if polls >= self.retry.label_state_polls {
                        return Err(StreamLoadError::LabelRunning {
                            table: batch.table.clone(),
                            label: batch.label.to_string(),
                        });
                    }
                    polls += 1;
                    std::thread::sleep(self.retry.label_state_interval);
                    match self.label_state(handle, &batch.label)? {
                        LabelState::Committed => return Ok((response, true)),
                        LabelState::Running => continue,
                        // It aborted (or is unknown): the label is free, send again.
                        LabelState::Absent => break,
                    }
                },
            }
        }
    }

    /// One `get_load_state` call for a label that does not exist: proves the FE answers and
    /// accepts the credentials, without loading anything (`starwal check`, and `run` before it
    /// creates anything). The FE checks the password before it looks for the database and
    /// answers `unknown database, database=<db>` (a `FAILED` body, HTTP 200) when there is none,
    /// so the probe works before setup creates the database.
    pub async fn probe(self: &Arc<Self>) -> Result<ProbeFound, StreamLoadError> {
        let client = Arc::clone(self);
        let result = tokio::task::spawn_blocking(move || {
            let mut handle = client.take_handle();
            let label = Label::for_batch(
                "check",
                "probe",
                crate::postgres::Lsn::ZERO,
                crate::postgres::Lsn::ZERO,
            );
            client.label_state(&mut handle, &label)
        })
        .await;
        match result {
            Ok(Ok(_)) => Ok(ProbeFound::Database),
            Ok(Err(StreamLoadError::Malformed { source, .. }))
                if is_unknown_database(&source.excerpt) =>
            {
                Ok(ProbeFound::NoDatabase)
            }
            Ok(Err(err)) => Err(err),
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    /// The retry policy, for the transaction steps retried in place (`transaction.rs`).
    pub(super) fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Who hears of every attempt's outcome (`transaction.rs` reports its steps too).
    pub(super) fn observer(&self) -> Option<&Arc<dyn LoadObserver>> {
        self.observer.as_ref()
    }

    /// One request of the transaction interface (`transaction.rs`) over this client's transport:
    /// to `path` on the preferred FE (`PUT` with `Expect: 100-continue` when `body` is not empty,
    /// an empty `POST` when it is, a `GET` without one), 307s followed with credentials, the
    /// handle pooled when clean. Answers the HTTP status and body; a failed connection moves on
    /// to the next FE. Blocking.
    pub(super) fn exchange(
        &self,
        path: &str,
        headers: &[String],
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<(u32, Vec<u8>), StreamLoadError> {
        let url = format!("{}{path}", self.fe_url());
        let transport = |source| StreamLoadError::Transport {
            url: url.clone(),
            source,
        };
        let mut handle = self.take_handle();
        let result = (|| {
            self.configure(&mut handle, &url, timeout)
                .map_err(transport)?;
            let mut list = List::new();
            for header in headers {
                list.append(header).map_err(transport)?;
            }
            let body = match body {
                None => {
                    handle.get(true).map_err(transport)?;
                    Bytes::new()
                }
                Some(body) if body.is_empty() => {
                    handle.post(true).map_err(transport)?;
                    handle.post_field_size(0).map_err(transport)?;
                    body
                }
                Some(body) => {
                    list.append("Expect: 100-continue").map_err(transport)?;
                    handle.upload(true).map_err(transport)?;
                    handle.in_filesize(body.len() as u64).map_err(transport)?;
                    handle
                        .expect_100_timeout(Duration::from_secs(30))
                        .map_err(transport)?;
                    handle.progress(true).map_err(transport)?;
                    body
                }
            };
            handle.http_headers(list).map_err(transport)?;
            handle.get_mut().start(body.clone());
            match handle.perform() {
                Ok(()) => {}
                // The BE answered before `100 Continue` (see `Exchange`).
                Err(err) if err.is_aborted_by_callback() && handle.get_ref().early_answer => {}
                Err(err) => return Err(transport(err)),
            }
            let status = match handle.get_ref().early_answer {
                true => handle.get_ref().status,
                false => handle.response_code().map_err(transport)?,
            };
            Ok((status, std::mem::take(&mut handle.get_mut().response)))
        })();
        match &result {
            Ok(_) if !handle.get_ref().early_answer => self.return_handle(handle),
            Err(StreamLoadError::Transport { .. }) => self.rotate_fe(),
            _ => {}
        }
        result
    }

    /// Loads `batch`, retrying transient failures forever; see [`Sink::load`].
    pub async fn load_batch(
        self: &Arc<Self>,
        batch: LoadBatch,
    ) -> Result<LoadReceipt, LoadFailure> {
        let started = Instant::now();
        let mut failures: u32 = 0;
        let mut batch = batch;
        loop {
            let client = Arc::clone(self);
            let (returned, result) = match tokio::task::spawn_blocking(move || {
                let mut handle = client.take_handle();
                let result = client.attempt(&mut handle, &batch);
                // A handle whose transfer failed or was cut short may hold a connection in an
                // unknown state; only a clean one goes back to the pool.
                if matches!(&result, Ok((_, false))) {
                    client.return_handle(handle);
                }
                if result.is_err() {
                    client.forget_be();
                }
                (batch, result)
            })
            .await
            {
                Ok(done) => done,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                // Cancelled: only happens while the runtime shuts down, and this future is being
                // dropped with it. Nothing was confirmed, so nothing is lost.
                Err(_) => std::future::pending().await,
            };
            batch = returned;
            match result {
                Ok((response, already_committed)) => {
                    if let Some(observer) = &self.observer {
                        observer.load_committed(&batch.table);
                    }
                    return Ok(LoadReceipt {
                        label: batch.label.clone(),
                        rows_loaded: if already_committed {
                            0
                        } else {
                            response.loaded_rows
                        },
                        bytes: batch.body.len() as u64,
                        already_committed,
                        attempts: failures + 1,
                        duration: started.elapsed(),
                    });
                }
                Err(error) if error.is_transient() => {
                    failures += 1;
                    if matches!(error, StreamLoadError::Transport { .. })
                        || error.to_string().contains("No backend alive")
                    {
                        self.rotate_fe();
                    }
                    let seed = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_nanos() as u64)
                        .unwrap_or(u64::from(failures));
                    let delay = self.retry.delay(failures, seed);
                    if let Some(observer) = &self.observer {
                        observer.attempt_failed(AttemptFailed {
                            table: &batch.table,
                            kind: error.kind(),
                            transient: true,
                            failures,
                            retry_in: Some(delay),
                            error: &error,
                        });
                    }
                    tracing::warn!(
                        table = %batch.table,
                        label = %batch.label,
                        attempt = failures,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %error,
                        "stream load failed; retrying with the same label"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(error) => {
                    if let Some(observer) = &self.observer {
                        observer.attempt_failed(AttemptFailed {
                            table: &batch.table,
                            kind: error.kind(),
                            transient: false,
                            failures: failures + 1,
                            retry_in: None,
                            error: &error,
                        });
                    }
                    return Err(LoadFailure { batch, error });
                }
            }
        }
    }
}

/// The Stream Load sink.
#[derive(Debug, Clone)]
pub struct StarRocksSink {
    client: Arc<StreamLoadClient>,
}

impl StarRocksSink {
    /// A sink loading through `client`.
    pub fn new(client: Arc<StreamLoadClient>) -> StarRocksSink {
        StarRocksSink { client }
    }
}

#[async_trait::async_trait]
impl Sink for StarRocksSink {
    async fn load(&self, batch: LoadBatch) -> Result<LoadReceipt, LoadFailure> {
        self.client.load_batch(batch).await
    }

    fn release_idle(&self) {
        self.client.release_idle_handles();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let policy = RetryPolicy::default();
        for failures in 1..30 {
            let delay = policy.delay(failures, failures as u64 * 7919);
            let full = Duration::from_secs(1)
                .saturating_mul(1 << (failures - 1).min(16))
                .min(DEFAULT_MAX_RETRY_DELAY);
            assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
        }
    }

    #[test]
    fn issue13_backoff_never_exceeds_the_cap() {
        // Loads resume at most one delay after StarRocks is back: the default must stay short.
        assert!(DEFAULT_MAX_RETRY_DELAY <= Duration::from_secs(10));
        let policy = RetryPolicy {
            max_delay: Duration::from_secs(3),
            ..RetryPolicy::default()
        };
        for failures in 1..100 {
            for seed in [1, 7919, u64::MAX] {
                assert!(policy.delay(failures, seed) <= Duration::from_secs(3));
            }
        }
    }

    #[test]
    fn columns_header_quotes_names() {
        let columns = ["id", "order", "first name", "__op"].map(String::from);
        assert_eq!(columns_header(&columns), "`id`,`order`,`first name`,__op");
    }

    #[test]
    fn inv13_the_fe_unknown_database_answer_is_recognised() {
        // StarRocks' `RestBaseResult` for a DdlException after the password check.
        assert!(is_unknown_database(
            r#"{"status":"FAILED","code":"1","msg":"unknown database, database=analytics","message":"unknown database, database=analytics"}"#
        ));
        assert!(!is_unknown_database(
            r#"{"status":"OK","code":"0","msg":"Success","message":"OK","state":"UNKNOWN","reason":""}"#
        ));
        assert!(!is_unknown_database("<html>unknown database</html>"));
    }

    #[test]
    fn the_be_is_what_precedes_the_load_path() {
        let path = "/api/db/t/_stream_load";
        assert_eq!(
            redirect_base("http://10.0.0.7:8040/api/db/t/_stream_load", path),
            Some("http://10.0.0.7:8040")
        );
        assert_eq!(
            redirect_base("https://proxy/be1/api/db/t/_stream_load", path),
            Some("https://proxy/be1")
        );
        assert_eq!(
            redirect_base("http://be:8040/api/db/t/_stream_load?x=1", path),
            None
        );
        assert_eq!(redirect_base("/api/db/t/_stream_load", path), None);
    }

    #[test]
    fn the_be_base_is_taken_from_the_redirected_url() {
        assert_eq!(
            url_base("http://10.0.0.7:8040/api/db/t/_stream_load"),
            Some("http://10.0.0.7:8040")
        );
        assert_eq!(url_base("http://[::1]:8040?x=1"), Some("http://[::1]:8040"));
        assert_eq!(url_base("http://be"), Some("http://be"));
        assert_eq!(url_base("http:///api"), None);
        assert_eq!(url_base("be:8040/api"), None);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("orders_2026"), "orders_2026");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }
}
