//! Response bodies in StarRocks' exact shapes: the BE's pretty-printed Stream Load result
//! (rapidjson `PrettyWriter`, 4-space indent, fixed field order), the BE transaction-interface
//! result, the FE's Gson results (2-space indent) and its compact error bodies (reference §3, §5).
//!
//! Owns field names and order only; which status and message to send is decided by the
//! handlers. Field order is part of the contract: clients in the wild parse it positionally more
//! often than they should.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::ser::SerializeMap;
use serde::Serialize;
use serde_json::Value;

use super::Resp;

/// Fields in the order they are written.
pub(crate) type Fields = Vec<(&'static str, Value)>;

struct Ordered<'a>(&'a [(&'static str, Value)]);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Pretty JSON with the given indent, fields in order.
pub(crate) fn pretty(fields: &[(&'static str, Value)], indent: &[u8]) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing `Value`s into a Vec cannot fail.
    let _ = Ordered(fields).serialize(&mut ser);
    String::from_utf8(out).unwrap_or_default()
}

/// Compact JSON, fields in order.
pub(crate) fn compact(fields: &[(&'static str, Value)]) -> String {
    serde_json::to_string(&Ordered(fields)).unwrap_or_default()
}

/// A response with a body and content type.
pub(crate) fn with_body(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// BE JSON reply (HTTP 200, `application/json`).
pub(crate) fn be_json(body: String) -> Resp {
    with_body(StatusCode::OK, "application/json", body)
}

/// `404 Not Found` as the BE and FE send it for unknown paths/methods.
pub(crate) fn not_found() -> Resp {
    with_body(StatusCode::NOT_FOUND, "text/plain", "Not Found".to_string())
}

/// Marks a response `Connection: close`.
pub(crate) fn closing(mut response: Resp) -> Resp {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `Status` of a plain Stream Load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadStatus {
    Success,
    PublishTimeout,
    LabelAlreadyExists,
    Fail,
}

impl LoadStatus {
    fn as_str(self) -> &'static str {
        match self {
            LoadStatus::Success => "Success",
            LoadStatus::PublishTimeout => "Publish Timeout",
            LoadStatus::LabelAlreadyExists => "Label Already Exists",
            LoadStatus::Fail => "Fail",
        }
    }
}

/// The BE's plain Stream Load result (`StreamLoadContext::to_json`).
#[derive(Debug, Clone)]
pub(crate) struct StreamLoadResult {
    pub(crate) txn_id: i64,
    pub(crate) label: String,
    pub(crate) status: LoadStatus,
    pub(crate) existing_job_status: String,
    pub(crate) message: String,
    pub(crate) total_rows: u64,
    pub(crate) loaded_rows: u64,
    pub(crate) filtered_rows: u64,
    pub(crate) unselected_rows: u64,
    pub(crate) load_bytes: u64,
    pub(crate) load_time_ms: u64,
    pub(crate) begin_txn_time_ms: u64,
    pub(crate) plan_time_ms: u64,
    pub(crate) read_data_time_ms: u64,
    pub(crate) write_data_time_ms: u64,
    pub(crate) commit_and_publish_time_ms: u64,
    pub(crate) error_url: Option<String>,
}

impl StreamLoadResult {
    /// A result before any txn began: `TxnId` −1, counters 0.
    pub(crate) fn new(label: String) -> StreamLoadResult {
        StreamLoadResult {
            txn_id: -1,
            label,
            status: LoadStatus::Fail,
            existing_job_status: String::new(),
            message: String::new(),
            total_rows: 0,
            loaded_rows: 0,
            filtered_rows: 0,
            unselected_rows: 0,
            load_bytes: 0,
            load_time_ms: 0,
            begin_txn_time_ms: 0,
            plan_time_ms: 0,
            read_data_time_ms: 0,
            write_data_time_ms: 0,
            commit_and_publish_time_ms: 0,
            error_url: None,
        }
    }

    /// Pretty JSON in StarRocks' field order. `legacy_put_time` writes `StreamLoadPutTimeMs`.
    pub(crate) fn to_json(&self, legacy_put_time: bool) -> String {
        let mut f: Fields = vec![
            ("TxnId", self.txn_id.into()),
            ("Label", self.label.clone().into()),
            ("Status", self.status.as_str().into()),
        ];
        if self.status == LoadStatus::LabelAlreadyExists {
            f.push(("ExistingJobStatus", self.existing_job_status.clone().into()));
        }
        let message = if matches!(self.status, LoadStatus::Success) {
            "OK".to_string()
        } else {
            self.message.clone()
        };
        f.push(("Message", message.into()));
        f.push(("NumberTotalRows", self.total_rows.into()));
        f.push(("NumberLoadedRows", self.loaded_rows.into()));
        f.push(("NumberFilteredRows", self.filtered_rows.into()));
        f.push(("NumberUnselectedRows", self.unselected_rows.into()));
        f.push(("LoadBytes", self.load_bytes.into()));
        f.push(("LoadTimeMs", self.load_time_ms.into()));
        f.push(("BeginTxnTimeMs", self.begin_txn_time_ms.into()));
        let plan_key = if legacy_put_time {
            "StreamLoadPutTimeMs"
        } else {
            "StreamLoadPlanTimeMs"
        };
        f.push((plan_key, self.plan_time_ms.into()));
        f.push(("ReadDataTimeMs", self.read_data_time_ms.into()));
        f.push(("WriteDataTimeMs", self.write_data_time_ms.into()));
        f.push((
            "CommitAndPublishTimeMs",
            self.commit_and_publish_time_ms.into(),
        ));
        if let Some(url) = &self.error_url {
            f.push(("ErrorURL", url.clone().into()));
        }
        pretty(&f, b"    ")
    }
}

/// The BE's transaction-interface reply (`StreamLoadContext::to_resp_json`): `Status` is the
/// status-code name; `extra` holds the op-specific fields written only on `OK`.
pub(crate) fn txn_reply(
    code: &'static str,
    label: &str,
    existing_job_status: Option<&str>,
    message: &str,
    extra: Fields,
    error_url: Option<String>,
) -> String {
    let mut f: Fields = vec![("Status", code.into())];
    if code == "LABEL_ALREADY_EXISTS" {
        f.push((
            "ExistingJobStatus",
            existing_job_status.unwrap_or_default().into(),
        ));
    }
    if code == "TXN_IN_PROCESSING" {
        f.push(("Label", label.into()));
    }
    f.push(("Message", message.into()));
    if code == "OK" {
        f.push(("Label", label.into()));
        f.extend(extra);
    }
    if let Some(url) = error_url {
        f.push(("ErrorURL", url.into()));
    }
    pretty(&f, b"    ")
}

/// The FE's Gson `TransactionResult`: `Status`, `Message`, then entries (2-space indent).
pub(crate) fn fe_txn_result(status: &str, message: &str, extra: Fields) -> Resp {
    let mut f: Fields = vec![("Status", status.into()), ("Message", message.into())];
    f.extend(extra);
    with_body(StatusCode::OK, "application/json", pretty(&f, b"  "))
}

/// An FE-generated failure: `{"Status":"FAILED","Message":"<exception class>: <text>"}`.
pub(crate) fn fe_failed(exception: &str, text: &str) -> Resp {
    fe_txn_result("FAILED", &format!("class {exception}: {text}"), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_load_result_field_order_and_shape() {
        let mut r = StreamLoadResult::new("l1".into());
        r.status = LoadStatus::Success;
        r.txn_id = 7;
        let json = r.to_json(false);
        assert!(json.starts_with("{\n    \"TxnId\": 7,\n    \"Label\": \"l1\",\n    \"Status\": \"Success\",\n    \"Message\": \"OK\",\n    \"NumberTotalRows\": 0,"));
        let keys: Vec<&str> = json
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            keys,
            [
                "TxnId",
                "Label",
                "Status",
                "Message",
                "NumberTotalRows",
                "NumberLoadedRows",
                "NumberFilteredRows",
                "NumberUnselectedRows",
                "LoadBytes",
                "LoadTimeMs",
                "BeginTxnTimeMs",
                "StreamLoadPlanTimeMs",
                "ReadDataTimeMs",
                "WriteDataTimeMs",
                "CommitAndPublishTimeMs"
            ]
        );
        r.status = LoadStatus::LabelAlreadyExists;
        r.existing_job_status = "FINISHED".into();
        r.txn_id = -1;
        let json = r.to_json(true);
        assert!(json.contains("\"Status\": \"Label Already Exists\",\n    \"ExistingJobStatus\": \"FINISHED\",\n    \"Message\""));
        assert!(json.contains("StreamLoadPutTimeMs"));
        assert!(json.contains("\"TxnId\": -1"));
    }

    #[test]
    fn txn_reply_shapes() {
        let ok = txn_reply("OK", "l", None, "", vec![("TxnId", 5.into())], None);
        assert_eq!(ok, "{\n    \"Status\": \"OK\",\n    \"Message\": \"\",\n    \"Label\": \"l\",\n    \"TxnId\": 5\n}");
        let busy = txn_reply("TXN_IN_PROCESSING", "l", None, "busy", vec![], None);
        assert!(busy.contains(
            "\"Status\": \"TXN_IN_PROCESSING\",\n    \"Label\": \"l\",\n    \"Message\": \"busy\""
        ));
    }
}
