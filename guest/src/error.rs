//! The API's errors, and the one place where they become a status and a JSON body.

use crate::http::Response;
use crate::kv::KvError;

/// Everything a request can fail with, as the client should hear it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad JSON, wrong field type, empty or over-long title.
    #[error("{0}")]
    BadRequest(String),
    /// No valid credential where one is needed, or a credential that is malformed, unknown or
    /// expired (accounts).
    #[error("{0}")]
    Unauthorized(String),
    /// The request may not have what it names (e.g. a file outside the public folder).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// What the request would create exists already (a taken user name).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than this route reads.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Too many attempts: try again after `retry_after` seconds.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// The operator's configuration holds a value the component cannot use: no route may guess
    /// what was meant (500, naming the value).
    #[error("{0}")]
    Misconfigured(String),
    /// The path exists but not with this method; `allow` lists the methods it has.
    #[error("method {method} is not allowed on {path}; allowed: {allow}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    /// The body is in a format this route does not read.
    #[error("unsupported Content-Type '{got}': send {expected}")]
    UnsupportedMediaType { got: String, expected: &'static str },
    /// The key-value store failed or refused (a host limit, a lost connection), or a todo key
    /// holds a value that is not a todo: the bucket is at fault, not the request (503). The
    /// request changed nothing we know of.
    #[error("the key-value store is unavailable: {0}")]
    Store(String),
}

impl From<KvError> for ApiError {
    fn from(err: KvError) -> Self {
        ApiError::Store(err.0)
    }
}

impl ApiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Misconfigured(_) => 500,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::Store(_) => 503,
        }
    }

    /// The response: the status, `{"error": message}`, `Allow` for 405, `Retry-After` for 429
    /// and `WWW-Authenticate` for 401.
    pub fn into_response(self) -> Response {
        let response = Response::json(
            self.status(),
            &serde_json::json!({ "error": self.to_string() }),
        );
        match self {
            ApiError::MethodNotAllowed { allow, .. } => response.with_header("allow", allow),
            ApiError::TooManyRequests { retry_after, .. } => {
                response.with_header("retry-after", retry_after.to_string())
            }
            ApiError::Unauthorized(_) => response.with_header("www-authenticate", "Bearer"),
            _ => response,
        }
    }
}
