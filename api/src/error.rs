//! The one place that knows the protocols' error JSON: OpenAI's `{"error": {"message",
//! "type", "param", "code"}}` and Anthropic's `{"type": "error", "error": {"type",
//! "message"}}`, each with a matching HTTP status. Handlers fail with one [`ApiError`];
//! the route decides the shape.

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

    /// Anthropic's `error.type` for this status.
    fn anthropic_kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// The JSON body in Anthropic's shape. Anthropic's errors have no `param`, so the
    /// field at fault leads the message.
    pub fn anthropic_body(&self) -> serde_json::Value {
        let message = match &self.param {
            Some(p) if !self.message.starts_with(p.as_ref()) => format!("{p}: {}", self.message),
            _ => self.message.clone(),
        };
        json!({"type": "error", "error": {"type": self.anthropic_kind(), "message": message}})
    }
}

/// An [`ApiError`] answered in Anthropic's shape: what the Messages routes return.
#[derive(Debug)]
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> AnthropicError {
        AnthropicError(e)
    }
}

impl From<Failure> for AnthropicError {
    fn from(f: Failure) -> AnthropicError {
        AnthropicError(f.into())
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        (self.0.status, axum::Json(self.0.anthropic_body())).into_response()
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
