//! The error answer of every JSON route: `{"error": {"code", "message", "field"}}` with its status.
//! `code` is a stable machine word (`bad_request`, `unauthorized`, `forbidden`, `not_found`,
//! `conflict`, `too_many_requests`, `insufficient_storage`, `internal`); `field` names the request
//! field at fault (a path like `limit` or `body.reason`), null when none is.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use penguin_queue::SpoolError;
use serde_json::json;

/// The error body, for the API document.
#[derive(utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The fields of an error.
#[derive(utoipa::ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `too_many_requests`,
    /// `insufficient_storage` or `internal`.
    pub code: String,
    /// What is wrong, for people.
    pub message: String,
    /// The request field at fault (`limit`, `body.reason`), or null.
    pub field: Option<String>,
}

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What is wrong.
    pub message: String,
    /// The request field at fault.
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header (lockouts).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status` and no field.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// A 400 about `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// A 400 about the request as a whole.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// A 403: the caller is known but may not use this route.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// A 500 (logged; the message says what failed without internals a client could abuse).
    pub fn internal(message: impl Into<String>) -> ApiError {
        let message = message.into();
        tracing::error!(%message, "API: internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A 400 for a JSON body serde refused, naming the field when serde does (unknown fields,
    /// wrong types).
    pub fn from_json(error: &serde_json::Error) -> ApiError {
        let text = error.to_string();
        let field = unknown_field(&text).map(|name| format!("body.{name}"));
        ApiError {
            field: field.or_else(|| Some("body".to_string())),
            ..ApiError::bad_request(format!("body: {text}"))
        }
    }

    /// The stable code of the status.
    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            StatusCode::INSUFFICIENT_STORAGE => "insufficient_storage",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            _ => "internal",
        }
    }
}

/// The name in serde's "unknown field `x`, expected ..." message.
fn unknown_field(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

impl From<SpoolError> for ApiError {
    fn from(error: SpoolError) -> ApiError {
        tracing::error!(%error, "API: spool error");
        let status = match error {
            SpoolError::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, format!("spool: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {"code": self.code(), "message": self.message, "field": self.field}
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_unknown_fields_are_named() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            reason: Option<String>,
        }
        let error = serde_json::from_str::<Body>(r#"{"reasn":"x"}"#).expect_err("unknown field");
        assert_eq!(ApiError::from_json(&error).field.as_deref(), Some("body.reasn"));
        let error = serde_json::from_str::<Body>("{").expect_err("syntax");
        assert_eq!(ApiError::from_json(&error).field.as_deref(), Some("body"));
    }
}
