//! Stream Load responses: the JSON body parsed leniently (keys case-insensitive, unknown fields
//! ignored, as StarRocks' own SDK does) and turned into an outcome.
//!
//! Never branch on the HTTP status for the outcome: the BE answers 200 for every result, and the
//! JSON `Status` decides (reference §3). Committed means `Success`, `Publish Timeout`, or
//! `Label Already Exists` whose existing job is `FINISHED` (invariant 1 relies on exactly this).

use serde_json::Value as Json;

/// The fields of a Stream Load answer that starwal acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadResponse {
    pub txn_id: i64,
    pub label: String,
    pub status: String,
    pub existing_job_status: Option<String>,
    pub message: String,
    pub total_rows: u64,
    pub loaded_rows: u64,
    pub filtered_rows: u64,
    pub load_bytes: u64,
    pub load_time_ms: u64,
    pub error_url: Option<String>,
}

/// What a response means for the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The data is in (maybe not yet visible, for `Publish Timeout`).
    Committed {
        /// An earlier attempt with this label committed it (`Label Already Exists` + FINISHED).
        already: bool,
    },
    /// An earlier attempt with this label is still running: ask `get_load_state`.
    LabelRunning,
    /// Not committed; the message says why.
    Failed { message: String },
}

/// A body that is not a Stream Load answer (a proxy's HTML page, a truncated reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Stream Load response: {excerpt}")]
pub struct MalformedResponse {
    pub excerpt: String,
}

fn field<'a>(object: &'a serde_json::Map<String, Json>, name: &str) -> Option<&'a Json> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn text(object: &serde_json::Map<String, Json>, name: &str) -> Option<String> {
    field(object, name).and_then(|v| match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn number(object: &serde_json::Map<String, Json>, name: &str) -> u64 {
    field(object, name)
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0)
}

/// A short, printable excerpt of a body for error messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

impl LoadResponse {
    /// Parses a Stream Load (or FE error) body. FE errors use `status`/`msg` in lower case, the BE
    /// `Status`/`Message`; both are accepted.
    pub fn parse(body: &[u8]) -> Result<LoadResponse, MalformedResponse> {
        let malformed = || MalformedResponse {
            excerpt: excerpt(body),
        };
        let json: Json = serde_json::from_slice(body).map_err(|_| malformed())?;
        let object = json.as_object().ok_or_else(malformed)?;
        let status = text(object, "Status").ok_or_else(malformed)?;
        let message = text(object, "Message")
            .or_else(|| text(object, "msg"))
            .unwrap_or_default();
        Ok(LoadResponse {
            txn_id: field(object, "TxnId").and_then(Json::as_i64).unwrap_or(-1),
            label: text(object, "Label").unwrap_or_default(),
            status,
            existing_job_status: text(object, "ExistingJobStatus"),
            message,
            total_rows: number(object, "NumberTotalRows"),
            loaded_rows: number(object, "NumberLoadedRows"),
            filtered_rows: number(object, "NumberFilteredRows"),
            load_bytes: number(object, "LoadBytes"),
            load_time_ms: number(object, "LoadTimeMs"),
            error_url: text(object, "ErrorURL").filter(|u| !u.is_empty()),
        })
    }

    /// The outcome per reference §3–4.
    pub fn outcome(&self) -> LoadOutcome {
        match self.status.as_str() {
            "Success" | "OK" | "Publish Timeout" => LoadOutcome::Committed { already: false },
            "Label Already Exists" => match self.existing_job_status.as_deref() {
                Some("FINISHED") => LoadOutcome::Committed { already: true },
                _ => LoadOutcome::LabelRunning,
            },
            _ => LoadOutcome::Failed {
                message: self.message.clone(),
            },
        }
    }
}

/// The answer of `GET /api/{db}/get_load_state?label=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelState {
    /// COMMITTED or VISIBLE: the data is in.
    Committed,
    /// PREPARE or PREPARED: still running; ask again.
    Running,
    /// ABORTED or UNKNOWN (no such label): send the batch again with the same label.
    Absent,
}

/// Parses a `get_load_state` body.
pub fn parse_label_state(body: &[u8]) -> Result<LabelState, MalformedResponse> {
    let malformed = || MalformedResponse {
        excerpt: excerpt(body),
    };
    let json: Json = serde_json::from_slice(body).map_err(|_| malformed())?;
    let object = json.as_object().ok_or_else(malformed)?;
    match text(object, "state").as_deref() {
        Some("COMMITTED" | "VISIBLE") => Ok(LabelState::Committed),
        Some("PREPARE" | "PREPARED") => Ok(LabelState::Running),
        Some("ABORTED" | "UNKNOWN") => Ok(LabelState::Absent),
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUCCESS: &str = r#"{
    "TxnId": 1003,
    "Label": "starwal_x",
    "Status": "Success",
    "Message": "OK",
    "NumberTotalRows": 3,
    "NumberLoadedRows": 3,
    "NumberFilteredRows": 0,
    "NumberUnselectedRows": 0,
    "LoadBytes": 120,
    "LoadTimeMs": 12,
    "BeginTxnTimeMs": 0,
    "StreamLoadPlanTimeMs": 1,
    "ReadDataTimeMs": 0,
    "WriteDataTimeMs": 5,
    "CommitAndPublishTimeMs": 6
}"#;

    #[test]
    fn success_and_publish_timeout_are_committed() {
        let response = LoadResponse::parse(SUCCESS.as_bytes()).unwrap();
        assert_eq!(response.txn_id, 1003);
        assert_eq!(response.loaded_rows, 3);
        assert_eq!(
            response.outcome(),
            LoadOutcome::Committed { already: false }
        );
        let publish = SUCCESS.replace("\"Success\"", "\"Publish Timeout\"");
        assert_eq!(
            LoadResponse::parse(publish.as_bytes()).unwrap().outcome(),
            LoadOutcome::Committed { already: false }
        );
    }

    #[test]
    fn inv1_label_already_exists_depends_on_the_existing_job() {
        let body = |job: &str| {
            format!(
                r#"{{"TxnId": -1, "Label": "l", "Status": "Label Already Exists", "ExistingJobStatus": "{job}", "Message": "Label [l] has already been used."}}"#
            )
        };
        let finished = LoadResponse::parse(body("FINISHED").as_bytes()).unwrap();
        assert_eq!(finished.outcome(), LoadOutcome::Committed { already: true });
        let running = LoadResponse::parse(body("RUNNING").as_bytes()).unwrap();
        assert_eq!(running.outcome(), LoadOutcome::LabelRunning);
    }

    #[test]
    fn failures_and_fe_errors_keep_their_message() {
        let fail = r#"{"TxnId": 7, "Status": "Fail", "Message": "too many filtered rows", "NumberFilteredRows": 1, "ErrorURL": "http://be:8040/api/_load_error_log?file=x"}"#;
        let response = LoadResponse::parse(fail.as_bytes()).unwrap();
        assert_eq!(response.filtered_rows, 1);
        assert!(response.error_url.is_some());
        assert_eq!(
            response.outcome(),
            LoadOutcome::Failed {
                message: "too many filtered rows".into()
            }
        );
        let fe = r#"{"status":"FAILED","code":"1","msg":"Access denied for root@127.0.0.1","message":"Access denied for root@127.0.0.1"}"#;
        let response = LoadResponse::parse(fe.as_bytes()).unwrap();
        assert!(
            matches!(response.outcome(), LoadOutcome::Failed { message } if message.starts_with("Access denied"))
        );
    }

    #[test]
    fn inv9_garbage_is_malformed_not_a_panic() {
        for body in [
            &b""[..],
            b"<html>502</html>",
            b"[]",
            b"{\"x\":1}",
            &[0xff, 0xfe],
        ] {
            assert!(LoadResponse::parse(body).is_err());
        }
    }

    #[test]
    fn label_states() {
        let state =
            |s: &str| parse_label_state(format!(r#"{{"status":"OK","state":"{s}"}}"#).as_bytes());
        assert_eq!(state("VISIBLE"), Ok(LabelState::Committed));
        assert_eq!(state("COMMITTED"), Ok(LabelState::Committed));
        assert_eq!(state("PREPARED"), Ok(LabelState::Running));
        assert_eq!(state("ABORTED"), Ok(LabelState::Absent));
        assert_eq!(state("UNKNOWN"), Ok(LabelState::Absent));
        assert!(state("WEIRD").is_err());
    }
}
