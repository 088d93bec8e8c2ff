//! Stream Load request headers → validated load options, in the order and with the messages of
//! the BE's `_on_header` / `_process_put` (reference §2; BE `stream_load.cpp`).
//!
//! Owns header parsing only. Checks are split in two stages because StarRocks runs them on
//! either side of "begin transaction": [`HeaderOptions::parse`] runs before a txn exists (a
//! failure answers `TxnId: -1`), [`PlanOptions::parse`] runs after (a failure rolls the txn back).
//! Header names are matched case-insensitively by the caller's lookup function.

/// Body format (`format` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// CSV, optionally compressed as a whole (`format: gzip|bzip2|lz4|deflate|zstd`).
    Csv(Option<Compression>),
    /// JSON.
    Json,
}

/// A compression of the body, from `format` (compressed CSV) or `compression`/`Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// gzip.
    Gzip,
    /// zlib/deflate.
    Deflate,
    /// LZ4 frame format.
    Lz4Frame,
    /// bzip2: recognised, not implemented by the sim.
    Bzip2,
    /// zstd: recognised, not implemented by the sim.
    Zstd,
}

impl Compression {
    /// Parses a `compression` / `Content-Encoding` value (case-insensitive).
    pub(crate) fn from_transport(value: &str) -> Option<Compression> {
        match value.trim().to_ascii_lowercase().as_str() {
            "gzip" => Some(Compression::Gzip),
            "deflate" => Some(Compression::Deflate),
            "lz4_frame" | "lz4" => Some(Compression::Lz4Frame),
            "bzip2" => Some(Compression::Bzip2),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }
}

/// Default `streaming_load_max_mb` since 3.0 (102400 MB).
pub const DEFAULT_STREAMING_LOAD_MAX_BYTES: u64 = 102_400 * 1024 * 1024;
/// Default `streaming_load_max_batch_size_mb` for JSON (100 MB).
pub const DEFAULT_JSON_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// FE `stream_load_default_timeout_second`.
pub const DEFAULT_LOAD_TIMEOUT_SECS: u64 = 600;
/// Largest accepted `timeout`.
pub const MAX_LOAD_TIMEOUT_SECS: u64 = 259_200;

/// Size limits the BE enforces (configurable so tests can hit them cheaply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimits {
    /// `streaming_load_max_mb` in bytes: any body larger than this is refused.
    pub max_body_bytes: u64,
    /// `streaming_load_max_batch_size_mb` in bytes: JSON bodies larger than this are refused
    /// unless `ignore_json_size: true`.
    pub max_json_bytes: u64,
}

impl Default for SizeLimits {
    fn default() -> SizeLimits {
        SizeLimits {
            max_body_bytes: DEFAULT_STREAMING_LOAD_MAX_BYTES,
            max_json_bytes: DEFAULT_JSON_MAX_BYTES,
        }
    }
}

/// Options checked before the transaction begins.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HeaderOptions {
    /// Declared `Content-Length`, if any.
    pub(crate) content_length: Option<u64>,
    /// Body format.
    pub(crate) format: Format,
    /// `timeout` seconds if given (range-checked at begin).
    pub(crate) timeout_secs: Option<u64>,
}

impl HeaderOptions {
    /// Runs the pre-begin checks. `header` looks a header up case-insensitively.
    pub(crate) fn parse<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
        limits: &SizeLimits,
        brief: &str,
    ) -> Result<HeaderOptions, String> {
        if let Some(v) = non_empty(header("enable_merge_commit")) {
            if parse_bool(v).is_none() {
                return Err(format!(
                    "Invalid parameter enable_merge_commit. The value must be bool type, but is {v}"
                ));
            }
        }
        let content_length = match non_empty(header("content-length")) {
            Some(v) => Some(
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("Invalid Content-Length {v}"))?,
            ),
            None => None,
        };
        if let Some(len) = content_length {
            if len > limits.max_body_bytes {
                return Err(format!(
                    "body size {len} exceed limit: {}, {brief}. You can increase the limit by setting streaming_load_max_mb in be.conf.",
                    limits.max_body_bytes
                ));
            }
        }
        let format = match non_empty(header("format")) {
            None => Format::Csv(None),
            Some(v) => parse_format(v).ok_or_else(|| format!("unknown data format, format={v}"))?,
        };
        if format == Format::Json {
            let ignore = header("ignore_json_size").is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let len = content_length.unwrap_or(0);
            if !ignore && len > limits.max_json_bytes {
                return Err(format!(
                    "The size of this batch exceed the max size [{}]  of json type data  data [ {len} ]. Set ignore_json_size to skip the check, although it may lead huge memory consuming.",
                    limits.max_json_bytes
                ));
            }
        }
        let timeout_secs = match non_empty(header("timeout")) {
            Some(v) => Some(
                v.parse::<u32>()
                    .map(u64::from)
                    .map_err(|_| "Invalid timeout format".to_string())?,
            ),
            None => None,
        };
        Ok(HeaderOptions {
            content_length,
            format,
            timeout_secs,
        })
    }
}

/// CSV framing options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CsvOptions {
    /// `column_separator` (default `\t`), bytes after `\x..` decoding.
    pub(crate) column_separator: Vec<u8>,
    /// `row_delimiter` (default `\n`).
    pub(crate) row_delimiter: Vec<u8>,
    /// `skip_header`: leading rows to skip.
    pub(crate) skip_header: u64,
    /// `trim_space`.
    pub(crate) trim_space: bool,
    /// `enclose` byte.
    pub(crate) enclose: Option<u8>,
    /// `escape` byte.
    pub(crate) escape: Option<u8>,
}

/// Options checked after the transaction began (the FE "plan" step).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlanOptions {
    /// Body format.
    pub(crate) format: Format,
    /// CSV framing.
    pub(crate) csv: CsvOptions,
    /// `strip_outer_array`.
    pub(crate) strip_outer_array: bool,
    /// `columns` header text.
    pub(crate) columns: Option<String>,
    /// `max_filter_ratio` (0 on absent or unparseable, like `strtod`).
    pub(crate) max_filter_ratio: f64,
    /// `strict_mode`.
    pub(crate) strict_mode: bool,
    /// `partial_update`.
    pub(crate) partial_update: bool,
    /// `merge_condition` column.
    pub(crate) merge_condition: Option<String>,
    /// Transport compression (`compression` or `Content-Encoding`).
    pub(crate) transport_compression: Option<Compression>,
}

impl PlanOptions {
    /// Runs the post-begin checks.
    pub(crate) fn parse<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
        format: Format,
    ) -> Result<PlanOptions, String> {
        // Headers whose meaning the sim does not implement fail loudly instead of being ignored,
        // so a test can never pass on semantics the sim silently skipped.
        for unsupported in ["where", "jsonpaths", "json_root"] {
            if non_empty(header(unsupported)).is_some() {
                return Err(format!(
                    "starrocks-sim does not implement the `{unsupported}` header"
                ));
            }
        }
        if header("enable_merge_commit").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(
                "starrocks-sim does not implement merge commit (enable_merge_commit)".to_string(),
            );
        }
        let skip_header = match non_empty(header("skip_header")) {
            Some(v) => {
                let n: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| "Invalid csv load skip_header format".to_string())?;
                if n < 0 {
                    return Err("skip_header must be equal or greater than 0".to_string());
                }
                n.unsigned_abs()
            }
            None => 0,
        };
        let trim_space = match non_empty(header("trim_space")) {
            Some(v) => parse_bool(v).ok_or("Invalid trim space format. Must be bool type")?,
            None => false,
        };
        if non_empty(header("partitions")).is_some()
            && non_empty(header("temporary_partitions")).is_some()
        {
            return Err("Can not specify both partitions and temporary partitions".to_string());
        }
        let strict_mode = match non_empty(header("strict_mode")) {
            Some(v) => parse_bool(v).ok_or("Invalid strict mode format. Must be bool type")?,
            None => false,
        };
        if let Some(v) = non_empty(header("load_mem_limit")) {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| "Invalid load mem limit format".to_string())?;
            if n < 0 {
                return Err("load_mem_limit must be equal or greater than 0".to_string());
            }
        }
        let strip_outer_array =
            header("strip_outer_array").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let partial_update = match non_empty(header("partial_update")) {
            Some(v) => {
                parse_bool(v).ok_or("Invalid partial update flag format. Must be bool type")?
            }
            None => false,
        };
        let merge_condition = non_empty(header("merge_condition")).map(str::to_string);
        if let Some(v) = non_empty(header("log_rejected_record_num")) {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| "Invalid log_rejected_record_num format".to_string())?;
            if n < -1 {
                return Err("log_rejected_record_num must be equal or greater than -1".to_string());
            }
        }
        let max_filter_ratio = non_empty(header("max_filter_ratio"))
            .map(strtod)
            .unwrap_or(0.0);
        let content_encoding = non_empty(header("content-encoding"));
        let compression = non_empty(header("compression"));
        if content_encoding.is_some() && compression.is_some() {
            return Err(
                "Only one of http header content-encoding and compression can be set".to_string(),
            );
        }
        let transport_compression = match content_encoding.or(compression) {
            Some(v) => Some(
                Compression::from_transport(v)
                    .ok_or_else(|| format!("Unsupported compression type: {v}"))?,
            ),
            None => None,
        };
        let csv = CsvOptions {
            column_separator: match non_empty(header("column_separator")) {
                Some(v) => decode_separator(v),
                None => b"\t".to_vec(),
            },
            row_delimiter: match non_empty(header("row_delimiter")) {
                Some(v) => decode_separator(v),
                None => b"\n".to_vec(),
            },
            skip_header,
            trim_space,
            enclose: non_empty(header("enclose")).map(|v| v.as_bytes()[0]),
            escape: non_empty(header("escape")).map(|v| v.as_bytes()[0]),
        };
        Ok(PlanOptions {
            format,
            csv,
            strip_outer_array,
            columns: non_empty(header("columns")).map(str::to_string),
            max_filter_ratio,
            strict_mode,
            partial_update,
            merge_condition,
            transport_compression,
        })
    }
}

fn non_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

fn parse_bool(v: &str) -> Option<bool> {
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_format(v: &str) -> Option<Format> {
    match v.to_ascii_lowercase().as_str() {
        "csv" => Some(Format::Csv(None)),
        "json" => Some(Format::Json),
        "gzip" => Some(Format::Csv(Some(Compression::Gzip))),
        "bzip2" => Some(Format::Csv(Some(Compression::Bzip2))),
        "lz4" => Some(Format::Csv(Some(Compression::Lz4Frame))),
        "deflate" => Some(Format::Csv(Some(Compression::Deflate))),
        "zstd" => Some(Format::Csv(Some(Compression::Zstd))),
        _ => None,
    }
}

/// `strtod` semantics: the longest numeric prefix, 0 when there is none.
fn strtod(v: &str) -> f64 {
    let v = v.trim_start();
    let mut end = 0;
    for (i, c) in v.char_indices() {
        if c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0) {
            end = i + 1;
        } else {
            break;
        }
    }
    v[..end].parse().unwrap_or(0.0)
}

/// Separators may be given in hex as `\x01` or `\x0D0A`; otherwise the bytes as written.
fn decode_separator(v: &str) -> Vec<u8> {
    if let Some(hex) = v.strip_prefix("\\x").or_else(|| v.strip_prefix("\\X")) {
        if !hex.is_empty() && hex.len() % 2 == 0 {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            if let Some(bytes) = bytes {
                return bytes;
            }
        }
    }
    v.as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(headers: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
    }

    #[test]
    fn header_stage_messages() {
        let limits = SizeLimits {
            max_body_bytes: 100,
            max_json_bytes: 10,
        };
        let err = HeaderOptions::parse(lookup(&[("format", "parquet")]), &limits, "b").unwrap_err();
        assert_eq!(err, "unknown data format, format=parquet");
        let err =
            HeaderOptions::parse(lookup(&[("content-length", "101")]), &limits, "b").unwrap_err();
        assert!(err.starts_with("body size 101 exceed limit: 100, b. You can increase"));
        let err = HeaderOptions::parse(
            lookup(&[("content-length", "11"), ("format", "JSON")]),
            &limits,
            "b",
        )
        .unwrap_err();
        assert!(err.starts_with(
            "The size of this batch exceed the max size [10]  of json type data  data [ 11 ]."
        ));
        assert!(HeaderOptions::parse(
            lookup(&[
                ("content-length", "11"),
                ("format", "json"),
                ("ignore_json_size", "true")
            ]),
            &limits,
            "b"
        )
        .is_ok());
        let err = HeaderOptions::parse(lookup(&[("timeout", "abc")]), &limits, "b").unwrap_err();
        assert_eq!(err, "Invalid timeout format");
        let ok = HeaderOptions::parse(lookup(&[("format", "gzip")]), &limits, "b").unwrap();
        assert_eq!(ok.format, Format::Csv(Some(Compression::Gzip)));
    }

    #[test]
    fn plan_stage_messages_and_values() {
        let err = PlanOptions::parse(lookup(&[("strict_mode", "yes")]), Format::Json).unwrap_err();
        assert_eq!(err, "Invalid strict mode format. Must be bool type");
        let err = PlanOptions::parse(lookup(&[("partial_update", "1")]), Format::Json).unwrap_err();
        assert_eq!(err, "Invalid partial update flag format. Must be bool type");
        let err = PlanOptions::parse(
            lookup(&[("compression", "gzip"), ("content-encoding", "gzip")]),
            Format::Json,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "Only one of http header content-encoding and compression can be set"
        );
        let ok = PlanOptions::parse(
            lookup(&[
                ("max_filter_ratio", "0.25abc"),
                ("column_separator", "\\x01"),
                ("row_delimiter", "\\x0D0A"),
                ("compression", "LZ4_FRAME"),
                ("strip_outer_array", "TRUE"),
            ]),
            Format::Csv(None),
        )
        .unwrap();
        assert_eq!(ok.max_filter_ratio, 0.25);
        assert_eq!(ok.csv.column_separator, vec![1]);
        assert_eq!(ok.csv.row_delimiter, b"\r\n".to_vec());
        assert_eq!(ok.transport_compression, Some(Compression::Lz4Frame));
        assert!(ok.strip_outer_array);
        assert_eq!(strtod("x"), 0.0);
        let err = PlanOptions::parse(lookup(&[("where", "id > 1")]), Format::Json).unwrap_err();
        assert!(err.contains("`where`"));
    }
}
