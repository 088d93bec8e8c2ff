//! Test harness: starts a sim with a standard table and drives it with the real `curl` CLI,
//! exactly as the StarRocks docs show, so the 307 + `100-continue` wire behaviour is checked
//! against a client we did not write.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value as Json;
use starrocks_sim::catalog::{ColumnDef, ColumnType, TableSpec, Value};
use starrocks_sim::{Sim, SimOptions};

pub const PASSWORD: &str = "pw";
pub const CURL: &str = "/usr/bin/curl";

/// A sim with database `db` and table `t`:
/// `id BIGINT NOT NULL, name VARCHAR(16) NULL, score INT NOT NULL DEFAULT "0", PRIMARY KEY(id)`.
pub fn start() -> Sim {
    start_with(SimOptions::default())
}

/// Like [`start`] with custom options (password and table are always set up).
pub fn start_with(options: SimOptions) -> Sim {
    let sim = Sim::start(SimOptions {
        password: PASSWORD.to_string(),
        ..options
    })
    .expect("sim starts");
    create_standard_table(&sim);
    sim
}

pub fn create_standard_table(sim: &Sim) {
    let catalog = sim.catalog();
    catalog.create_database("db").unwrap();
    catalog
        .create_table(
            "db",
            TableSpec::new("t")
                .column(ColumnDef::new("id", ColumnType::BigInt).not_null())
                .column(ColumnDef::new("name", ColumnType::Varchar { length: 16 }))
                .column(
                    ColumnDef::new("score", ColumnType::Int)
                        .not_null()
                        .with_default("0"),
                )
                .primary_key(&["id"]),
        )
        .unwrap();
}

/// Rows of `db.t` as (id, name, score) with NULL names as `None`.
pub fn rows(sim: &Sim) -> Vec<(i64, Option<String>, i64)> {
    sim.catalog()
        .rows("db", "t")
        .unwrap()
        .into_iter()
        .map(|r| {
            let id = match &r[0] {
                Value::Int(i) => *i as i64,
                other => panic!("id {other:?}"),
            };
            let name = match &r[1] {
                Value::Text(s) => Some(s.clone()),
                Value::Null => None,
                other => panic!("name {other:?}"),
            };
            let score = match &r[2] {
                Value::Int(i) => *i as i64,
                other => panic!("score {other:?}"),
            };
            (id, name, score)
        })
        .collect()
}

/// A file holding `body`, removed on drop.
pub struct TempFile(pub PathBuf);

static NEXT: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    pub fn new(body: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "starrocks-sim-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, body).unwrap();
        TempFile(path)
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What a curl run produced.
#[derive(Debug)]
pub struct Curl {
    /// curl's exit code.
    pub code: i32,
    /// Response body of the last response.
    pub body: String,
    /// `-v` trace (request/response lines).
    pub trace: String,
}

impl Curl {
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}\n{}", self.body, self.trace))
    }

    pub fn status(&self) -> String {
        let j = self.json();
        j["Status"].as_str().unwrap_or_default().to_string()
    }

    pub fn message(&self) -> String {
        self.json()["Message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether a `100 Continue` interim response was received.
    pub fn saw_100_continue(&self) -> bool {
        self.trace.contains("< HTTP/1.1 100 Continue")
    }
}

/// Runs curl with `-v` and the given arguments.
pub fn curl(args: &[&str]) -> Curl {
    curl_with_stdin(args, None)
}

pub fn curl_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Curl {
    let mut cmd = Command::new(CURL);
    cmd.arg("-sS")
        .arg("-v")
        .arg("--max-time")
        .arg("30")
        .args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("curl runs");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(data).unwrap();
        drop(pipe);
    }
    let out = child.wait_with_output().unwrap();
    Curl {
        code: out.status.code().unwrap_or(-1),
        body: String::from_utf8_lossy(&out.stdout).into_owned(),
        trace: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The documented Stream Load command through the FE:
/// `curl --location-trusted -u root:PASS -H "Expect:100-continue" -H "label:L" <headers> -T file URL`.
pub fn stream_load(sim: &Sim, label: &str, headers: &[&str], body: &[u8]) -> Curl {
    stream_load_to(&sim.fe_url(), "db", "t", label, headers, body)
}

pub fn stream_load_to(
    base: &str,
    db: &str,
    table: &str,
    label: &str,
    headers: &[&str],
    body: &[u8],
) -> Curl {
    let file = TempFile::new(body);
    let user = format!("root:{PASSWORD}");
    let url = format!("{base}/api/{db}/{table}/_stream_load");
    let label_header = format!("label:{label}");
    let mut args: Vec<&str> = vec![
        "--location-trusted",
        "-u",
        &user,
        "-H",
        "Expect:100-continue",
    ];
    if !label.is_empty() {
        args.push("-H");
        args.push(&label_header);
    }
    for h in headers {
        args.push("-H");
        args.push(h);
    }
    args.push("-T");
    args.push(file.path());
    args.push(&url);
    curl(&args)
}

/// JSON Stream Load with `format: json` and `strip_outer_array: true`.
pub fn json_load(sim: &Sim, label: &str, body: &str) -> Curl {
    stream_load(
        sim,
        label,
        &["format: json", "strip_outer_array: true"],
        body.as_bytes(),
    )
}

/// A transaction-interface call through the FE (`-XPOST`, or `-XPUT -T` for `load`).
pub fn txn(sim: &Sim, op: &str, label: &str, extra_headers: &[&str], body: Option<&[u8]>) -> Curl {
    let user = format!("root:{PASSWORD}");
    let url = format!("{}/api/transaction/{op}", sim.fe_url());
    let label_header = format!("label:{label}");
    let file = body.map(TempFile::new);
    let mut args: Vec<&str> = vec![
        "--location-trusted",
        "-u",
        &user,
        "-H",
        "Expect:100-continue",
        "-H",
        &label_header,
        "-H",
        "db:db",
        "-H",
        "table:t",
    ];
    for h in extra_headers {
        args.push("-H");
        args.push(h);
    }
    match &file {
        Some(f) => {
            args.push("-XPUT");
            args.push("-T");
            args.push(f.path());
        }
        None => args.push("-XPOST"),
    }
    args.push(&url);
    curl(&args)
}

/// Sends a raw HTTP/1.1 request head and returns the open socket (for hand-made wire tests).
pub fn raw_request(addr: std::net::SocketAddr, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// Reads from a socket until `needle` appears or the peer closes; returns what was read.
pub fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if String::from_utf8_lossy(&out).contains(needle) {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `Authorization` header value for the test credentials.
pub fn basic_auth() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("root:{PASSWORD}"))
    )
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
