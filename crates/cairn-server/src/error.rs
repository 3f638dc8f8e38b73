//! Every way a request can fail, each with an HTTP status and a stable error code.
//!
//! The pattern is meilisearch's `ErrorCode`: clients and dashboards match on `code` (a
//! snake_case string that never changes meaning), people read `message`. Every error body is
//!
//! ```json
//! {"success": false, "code": "invalid_message", "message": "message 3: field \"userId\": ..."}
//! ```
//!
//! plus, for a batch with invalid messages, `errors` (one `{index, field, reason}` per rejected
//! message) and `stored` (how many of its other messages were stored). Internal failures never
//! leak details to clients: they are logged on the server and answered with `internal`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The body is not JSON, or not the JSON shape the endpoint takes.
    InvalidJson,
    /// A message breaks the Segment Spec (a missing id, a wrong type, a bad timestamp, ...).
    InvalidMessage,
    /// One message is larger than the per-message limit (32 KB).
    MessageTooLarge,
    /// The request body is larger than the per-batch limit (500 KB), before or after gunzip.
    BatchTooLarge,
    /// `Content-Encoding: gzip` with a body that is not gzip.
    InvalidGzip,
    /// A `Content-Encoding` other than gzip or identity.
    UnsupportedEncoding,
    MissingWriteKey,
    InvalidWriteKey,
    RevokedWriteKey,
    MissingAdminToken,
    InvalidAdminToken,
    NotFound,
    MethodNotAllowed,
    CustomerNotFound,
    InvalidQuery,
    /// Storage is behind: the request waited for its turn and gave up. Retry later.
    Overloaded,
    /// The server is shutting down and takes no new writes.
    ShuttingDown,
    Internal,
    /// A journey definition that cannot be used (the answer says line, column and reason).
    InvalidJourney,
    /// A journey change that contradicts what is applied (a changed or older version), or a
    /// request a journey does not take (an API entry into one that does not enter by API).
    JourneyConflict,
}

impl Code {
    pub const ALL: [Code; 20] = [
        Code::InvalidJson,
        Code::InvalidMessage,
        Code::MessageTooLarge,
        Code::BatchTooLarge,
        Code::InvalidGzip,
        Code::UnsupportedEncoding,
        Code::MissingWriteKey,
        Code::InvalidWriteKey,
        Code::RevokedWriteKey,
        Code::MissingAdminToken,
        Code::InvalidAdminToken,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::CustomerNotFound,
        Code::InvalidQuery,
        Code::Overloaded,
        Code::ShuttingDown,
        Code::Internal,
        Code::InvalidJourney,
        Code::JourneyConflict,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidJson => "invalid_json",
            Code::InvalidMessage => "invalid_message",
            Code::MessageTooLarge => "message_too_large",
            Code::BatchTooLarge => "batch_too_large",
            Code::InvalidGzip => "invalid_gzip",
            Code::UnsupportedEncoding => "unsupported_encoding",
            Code::MissingWriteKey => "missing_write_key",
            Code::InvalidWriteKey => "invalid_write_key",
            Code::RevokedWriteKey => "revoked_write_key",
            Code::MissingAdminToken => "missing_admin_token",
            Code::InvalidAdminToken => "invalid_admin_token",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::CustomerNotFound => "customer_not_found",
            Code::InvalidQuery => "invalid_query",
            Code::Overloaded => "overloaded",
            Code::ShuttingDown => "shutting_down",
            Code::Internal => "internal",
            Code::InvalidJourney => "invalid_journey",
            Code::JourneyConflict => "journey_conflict",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidJson | Code::InvalidMessage | Code::InvalidGzip | Code::InvalidQuery => {
                StatusCode::BAD_REQUEST
            }
            Code::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::MessageTooLarge | Code::BatchTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::MissingWriteKey
            | Code::InvalidWriteKey
            | Code::RevokedWriteKey
            | Code::MissingAdminToken
            | Code::InvalidAdminToken => StatusCode::UNAUTHORIZED,
            Code::NotFound | Code::CustomerNotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::Overloaded | Code::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::InvalidJourney => StatusCode::BAD_REQUEST,
            Code::JourneyConflict => StatusCode::CONFLICT,
        }
    }
}

/// One rejected message of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageError {
    /// Position in the batch (0-based); 0 for a single-message endpoint.
    pub index: usize,
    /// The field's JSON name (dotted for nested fields), or `(message)` for the whole message.
    pub field: String,
    pub reason: String,
    /// Rejected for its size (the answer is then 413, not 400).
    #[serde(skip)]
    pub too_large: bool,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Rejected messages of a batch, when the error is about messages.
    pub errors: Vec<MessageError>,
    /// Messages of the same request that were valid and are stored (durably).
    pub stored: Option<u64>,
    /// Where in the request's text the error is (a journey definition).
    pub at: Option<TextPosition>,
}

/// A position in a request body's text, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextPosition {
    pub line: u64,
    pub column: u64,
    pub reason: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            errors: Vec::new(),
            stored: None,
            at: None,
        }
    }

    /// An internal failure: the details go to the server's log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        eprintln!("cairn serve: internal error: {detail}");
        ApiError::new(
            Code::Internal,
            "internal error; the request was not stored (see the server's log)",
        )
    }
}

#[derive(Serialize)]
struct Body<'a> {
    success: bool,
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [MessageError],
    #[serde(skip_serializing_if = "Option::is_none")]
    stored: Option<u64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    at: Option<&'a TextPosition>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            success: false,
            code: self.code.as_str(),
            message: &self.message,
            errors: &self.errors,
            stored: self.stored,
            at: self.at.as_ref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (self.code.status(), json).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self.code {
            // Segment's clients honour Retry-After on 429 and 5xx.
            Code::Overloaded | Code::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Code::MissingWriteKey | Code::InvalidWriteKey | Code::RevokedWriteKey => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"cairn\""),
                );
            }
            Code::MissingAdminToken | Code::InvalidAdminToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"cairn\""),
                );
            }
            _ => {}
        }
        res
    }
}

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {reason}")]
    Config {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the HTTP server failed: {0}")]
    Runtime(String),
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
}
