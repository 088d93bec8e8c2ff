//! Who may pull the levers (Pause, Resume, Drain, Stop, Resync).
//!
//! With `STARWAL_CONTROL_TOKEN` set, a mutating RPC must carry `authorization: Bearer <token>`;
//! the comparison takes the same time whatever the guess, so the token cannot be found byte by
//! byte. Without a token, only loopback peers are trusted: the default listen address is
//! `0.0.0.0`, and an open Drain on a pod network would let anyone stop replication. Reads
//! (health, status, metrics) are open and never come here.
//!
//! Denials name the variable to set, never the token (invariant 10).

use std::net::SocketAddr;

use crate::secret::Secret;

/// Why a mutating RPC was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denial {
    /// A token is configured and the request carries no `authorization` metadata.
    MissingToken,
    /// A token is configured and the request's bearer token is not it (or not a bearer token).
    WrongToken,
    /// No token is configured and the peer is not on loopback (or its address is unknown).
    NotLoopback { peer: Option<SocketAddr> },
}

impl Denial {
    /// The gRPC answer: UNAUTHENTICATED for a bad or missing token, PERMISSION_DENIED for a
    /// remote peer when no token is configured.
    pub(crate) fn into_status(self) -> tonic::Status {
        match self {
            Denial::MissingToken => tonic::Status::unauthenticated(
                "this RPC needs `authorization: Bearer <token>` metadata carrying the agent's \
                 STARWAL_CONTROL_TOKEN",
            ),
            Denial::WrongToken => tonic::Status::unauthenticated(
                "the bearer token in `authorization` does not match the agent's \
                 STARWAL_CONTROL_TOKEN",
            ),
            Denial::NotLoopback { peer } => tonic::Status::permission_denied(format!(
                "mutating RPCs are accepted from loopback only while STARWAL_CONTROL_TOKEN is \
                 unset (this peer: {}); set STARWAL_CONTROL_TOKEN on the agent and send it as \
                 `authorization: Bearer <token>`",
                peer.map_or_else(|| "unknown".to_owned(), |peer| peer.ip().to_string())
            )),
        }
    }
}

/// Decides whether a mutating RPC may run: `authorization` is the raw metadata value, `peer`
/// the TCP peer address (`None` when the transport does not know it).
pub(crate) fn authorize(
    token: Option<&Secret>,
    authorization: Option<&[u8]>,
    peer: Option<SocketAddr>,
) -> Result<(), Denial> {
    match token {
        Some(token) => {
            let presented = bearer_token(authorization.ok_or(Denial::MissingToken)?)
                .ok_or(Denial::WrongToken)?;
            if constant_time_eq(presented, token.expose().as_bytes()) {
                Ok(())
            } else {
                Err(Denial::WrongToken)
            }
        }
        None => match peer {
            Some(peer) if peer.ip().to_canonical().is_loopback() => Ok(()),
            _ => Err(Denial::NotLoopback { peer }),
        },
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, as RFC 6750 allows).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let scheme = value.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = value[SCHEME.len()..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Compares in time that depends on the expected token's length only, not on where the first
/// difference is.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(presented.len() != expected.len());
    for (index, expected_byte) in expected.iter().enumerate() {
        let presented_byte = presented.get(index).copied().unwrap_or(0);
        difference |= std::hint::black_box(presented_byte ^ expected_byte);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str) -> Option<SocketAddr> {
        Some(addr.parse().unwrap())
    }

    #[test]
    fn inv10_token_configured_needs_the_bearer_token() {
        let token = Secret::new("s3cret-token");
        let token = Some(&token);
        let remote = peer("10.1.2.3:40000");
        assert_eq!(
            authorize(token, Some(b"Bearer s3cret-token"), remote),
            Ok(())
        );
        assert_eq!(
            authorize(token, Some(b"bearer  s3cret-token "), remote),
            Ok(())
        );
        assert_eq!(
            authorize(token, None, peer("127.0.0.1:1")),
            Err(Denial::MissingToken),
            "loopback is no excuse once a token is set"
        );
        for wrong in [
            &b"Bearer s3cret-toke"[..],
            b"Bearer s3cret-token2",
            b"Bearer S3CRET-TOKEN",
            b"Basic s3cret-token",
            b"s3cret-token",
            b"Bearer ",
            b"Bearer",
            b"",
        ] {
            assert_eq!(
                authorize(token, Some(wrong), remote),
                Err(Denial::WrongToken),
                "{}",
                String::from_utf8_lossy(wrong)
            );
        }
    }

    #[test]
    fn inv10_no_token_means_loopback_only() {
        assert_eq!(authorize(None, None, peer("127.0.0.1:5000")), Ok(()));
        assert_eq!(authorize(None, None, peer("127.8.9.10:5000")), Ok(()));
        assert_eq!(authorize(None, None, peer("[::1]:5000")), Ok(()));
        assert_eq!(
            authorize(None, None, peer("[::ffff:127.0.0.1]:5000")),
            Ok(())
        );
        // A header does not help when there is nothing to compare it with.
        assert_eq!(
            authorize(None, Some(b"Bearer x"), peer("192.168.1.2:5000")),
            Err(Denial::NotLoopback {
                peer: peer("192.168.1.2:5000")
            })
        );
        assert_eq!(
            authorize(None, None, peer("[::ffff:10.0.0.1]:5000")),
            Err(Denial::NotLoopback {
                peer: peer("[::ffff:10.0.0.1]:5000")
            })
        );
        assert_eq!(
            authorize(None, None, None),
            Err(Denial::NotLoopback { peer: None })
        );
    }

    #[test]
    fn inv10_denials_name_the_variable_never_the_token() {
        let token = Secret::new("hunter2-very-secret");
        for denial in [
            authorize(Some(&token), None, None).unwrap_err(),
            authorize(Some(&token), Some(b"Bearer hunter2"), None).unwrap_err(),
            authorize(None, None, peer("10.0.0.1:1")).unwrap_err(),
        ] {
            let status = denial.clone().into_status();
            assert!(
                status.message().contains("STARWAL_CONTROL_TOKEN"),
                "{status:?}"
            );
            assert!(!status.message().contains("hunter2"), "{status:?}");
            let code = match denial {
                Denial::NotLoopback { .. } => tonic::Code::PermissionDenied,
                _ => tonic::Code::Unauthenticated,
            };
            assert_eq!(status.code(), code);
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }
}
