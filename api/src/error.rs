//! The one place that knows OpenAI's error JSON: `{"error": {"message", "type", "param",
//! "code"}}` with a matching HTTP status.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use braid_bus::{Failure, FailureKind, RequestId};
use serde_json::json;

/// An error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<Cow<'static, str>>,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn invalid(param: impl Into<Cow<'static, str>>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: Some(param.into()),
        }
    }

    /// A 400 about the body as a whole.
    pub fn bad_body(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: None,
        }
    }

    /// OpenAI's `type` for this status.
    fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            503 => "service_unavailable",
            _ => "internal_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.status.as_u16(),
        }})
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        let status = match f.kind {
            FailureKind::BadRequest => StatusCode::BAD_REQUEST,
            FailureKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            FailureKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The detail is for operators; the client gets a reference to find it by.
            let reference = RequestId::random();
            tracing::error!("internal error {reference}: {} failed: {}", f.stage, f.message);
            return ApiError {
                status,
                message: format!("internal error (reference {reference}; the server log has the detail)"),
                param: None,
            };
        }
        ApiError {
            status,
            message: f.message,
            param: f.param.map(Cow::Owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
