//! HTTP Basic authentication as StarRocks does it (reference §1 "Auth", §3 auth failures): the FE
//! checks credentials and answers 401 with `WWW-Authenticate: Basic realm=""`; the BE only parses
//! the header and lets begin-txn check it.
//!
//! Owns header parsing and the credential comparison. There is one user (from `--user` /
//! `--password`) with every privilege; the password is never echoed in any message.

use base64::Engine;
use hyper::header::{HeaderValue, WWW_AUTHENTICATE};
use hyper::{HeaderMap, StatusCode};

use super::response::{compact, with_body};
use super::Resp;
use crate::state::SimConfig;

/// Credentials from an `Authorization: Basic ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

/// Parses Basic credentials; `None` when absent or malformed.
pub(crate) fn basic(headers: &HeaderMap) -> Option<Credentials> {
    let value = super::header(headers, "authorization")?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    if user.is_empty() {
        return None;
    }
    Some(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

impl Credentials {
    /// Whether these are the configured credentials.
    pub(crate) fn valid(&self, config: &SimConfig) -> bool {
        self.user == config.user && self.password == config.password
    }
}

/// Checks FE auth; `Some` is the 401 reply to send instead of serving the request.
pub(crate) fn fe_reject(headers: &HeaderMap, config: &SimConfig, peer_ip: &str) -> Option<Resp> {
    match basic(headers) {
        None => Some(unauthorized("Need auth information.")),
        Some(c) if c.valid(config) => None,
        Some(c) => Some(unauthorized(&format!(
            "Access denied for {}@{peer_ip}",
            c.user
        ))),
    }
}

fn unauthorized(message: &str) -> Resp {
    let body = compact(&[
        ("status", "FAILED".into()),
        ("code", "1".into()),
        ("msg", message.into()),
        ("message", message.into()),
    ]);
    let mut response = with_body(StatusCode::UNAUTHORIZED, "application/json", body);
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_headers_and_rejects_garbage() {
        let mut h = HeaderMap::new();
        assert_eq!(basic(&h), None);
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic cm9vdDpwdw=="),
        ); // root:pw
        assert_eq!(
            basic(&h),
            Some(Credentials {
                user: "root".into(),
                password: "pw".into()
            })
        );
        h.insert("authorization", HeaderValue::from_static("Basic cm9vdDo=")); // root:
        assert_eq!(basic(&h).unwrap().password, "");
        for bad in ["Bearer x", "Basic !!!", "Basic", "Basic cm9vdA=="] {
            h.insert("authorization", HeaderValue::from_static(bad));
            assert_eq!(basic(&h), None, "{bad}");
        }
    }
}
