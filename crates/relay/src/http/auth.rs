//! Body limits and request authentication, in protocol.md §2's order:
//! body size → the four headers → timestamp window → key → signature → (nonce,
//! consumed by the writer together with the request's own write).
//!
//! Once the signature verifies, the nonce is spent whatever the answer: a
//! refusal decided here (403, or a body or query refused with 400) spends it
//! through the writer before it is answered ([`Authed::refuse`]), and the
//! writer records it outside the savepoint of the request's own operation, so
//! a 404, 409, 422 or 429 from the store spends it too. The method, path and
//! query are not signed: a request refused on one route must not then be
//! accepted on another, nor later, once the reason for the refusal is gone.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::AppState;
use crate::Rejection;
use crate::store::{Lookup, NonceUse, PrincipalKind, StoreError};
use link_peeler_wire::protocol::{ErrorCode, MAX_BODY_BYTES};
use link_peeler_wire::signing::{self, SignedHeaders};

/// Reads the body, refusing oversize ones before reading them (by
/// `Content-Length`) and while reading them (chunked), and refusing
/// compressed ones: the signature covers the bytes as sent.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Rejection> {
    read_body_up_to(headers, body, MAX_BODY_BYTES).await
}

/// [`read_body`] with another limit (a batch's).
pub async fn read_body_up_to(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        )
    };
    for enc in headers.get_all(header::CONTENT_ENCODING) {
        let identity = enc
            .to_str()
            .map(|v| {
                v.split(',')
                    .all(|p| p.trim().eq_ignore_ascii_case("identity"))
            })
            .unwrap_or(false);
        if !identity {
            return Err(Rejection::new(
                ErrorCode::InvalidRequest,
                "Content-Encoding is not supported: send the body uncompressed",
            ));
        }
    }
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Rejection::new(ErrorCode::InvalidRequest, "Content-Length is malformed")
            })?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            if s.is::<http_body_util::LengthLimitError>() {
                return too_large();
            }
            source = s.source();
        }
        Rejection::new(
            ErrorCode::InvalidRequest,
            format!("could not read the request body: {e}"),
        )
    })
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Authed {
    pub key_id: String,
    pub nonce: NonceUse,
}

impl Authed {
    /// Spends the nonce through the writer, then answers `refusal`: for the
    /// refusals decided in the HTTP layer after the signature verified
    /// (protocol.md §2.5 steps 12–13), so that the same signed bytes cannot
    /// succeed later or on another route. A nonce that was already spent does
    /// not change the answer (those checks come before the nonce's own); one
    /// that could not be recorded makes it an internal error, since a later
    /// replay could then pass.
    pub async fn refuse(&self, state: &AppState, refusal: Rejection) -> Rejection {
        match state.store.consume_nonce(self.nonce.clone()).await {
            Ok(()) | Err(StoreError::ReplayedNonce) => refusal,
            Err(e) => e.into(),
        }
    }

    /// `checked`'s value, or its refusal once the nonce is spent.
    pub async fn check<T>(
        &self,
        state: &AppState,
        checked: Result<T, Rejection>,
    ) -> Result<T, Rejection> {
        match checked {
            Ok(value) => Ok(value),
            Err(refusal) => Err(self.refuse(state, refusal).await),
        }
    }
}

/// `401 revoked_key`: also the answer of a held poll whose device was revoked while it waited.
pub fn revoked() -> Rejection {
    Rejection::new(ErrorCode::RevokedKey, "this key was revoked")
}

/// Verifies a signed request for an endpoint meant for `want`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    want: PrincipalKind,
) -> Result<Authed, Rejection> {
    let signed = SignedHeaders::from_headers(headers).map_err(|e| e.to_api_error())?;
    signing::check_window(signed.timestamp, signing::unix_now()).map_err(|e| e.to_api_error())?;
    let (kind, secret) = match state.store.lookup_key(&signed.key_id).await? {
        Lookup::Unknown => {
            return Err(Rejection::new(
                ErrorCode::UnknownKey,
                "unknown key id in X-Link-Peeler-Key",
            ));
        }
        Lookup::Revoked => return Err(revoked()),
        Lookup::Active { kind, secret } => (kind, secret),
    };
    signed
        .verify(secret.as_bytes(), body)
        .map_err(|e| e.to_api_error())?;
    let authed = Authed {
        nonce: NonceUse {
            key_id: signed.key_id.clone(),
            nonce: signed.nonce.clone(),
            expires_at: signing::nonce_expiry(signed.timestamp),
            agent_state: None,
        },
        key_id: signed.key_id,
    };
    if kind != want {
        let msg = match want {
            PrincipalKind::ApiKey => "device credentials may only call /api/agent/*",
            PrincipalKind::Device => "API keys may only call /api/links/*",
        };
        return Err(authed
            .refuse(state, Rejection::new(ErrorCode::Forbidden, msg))
            .await);
    }
    Ok(authed)
}

/// Parses a JSON body: malformed JSON is `invalid_json`; well-formed JSON of
/// the wrong shape (missing, unknown, duplicate or mistyped fields) is
/// `invalid_request` with serde's message, which names the field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Rejection::new(ErrorCode::InvalidRequest, e.to_string()),
            _ => Rejection::new(
                ErrorCode::InvalidJson,
                format!("body is not valid JSON: {e}"),
            ),
        }
    })
}
