//! The OpenAPI description of braid's HTTP surface, served at `/openapi.json`. It is
//! generated from the request types and the handlers' annotations (utoipa), never
//! written by hand, so it cannot drift from what the handlers read; the hostile-input
//! suite (Schemathesis) fuzzes the server from it.

use utoipa::OpenApi;

use crate::{chat, completions, messages, responses, tokenize};

/// The description: every route that does work, plus the probes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "braid",
        description = "OpenAI Chat Completions, Completions and Responses, Anthropic Messages, and vLLM's tokenizer endpoints, served by braid"
    ),
    paths(
        chat::chat,
        completions::completions,
        responses::responses,
        responses::get,
        responses::delete,
        messages::messages,
        messages::count_tokens,
        tokenize::tokenize,
        tokenize::detokenize,
        crate::models,
        crate::health,
    )
)]
pub(crate) struct ApiDoc;

/// `GET /openapi.json`.
pub(crate) async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_request_type_is_described() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        for path in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/responses",
            "/v1/responses/{id}",
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/tokenize",
            "/detokenize",
            "/v1/models",
            "/health",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is not described");
        }
        // The shared sampling fields are part of both OpenAI text endpoints' bodies.
        let schemas = &doc["components"]["schemas"];
        assert!(
            schemas["SamplingFields"]["properties"]["logit_bias"].is_object(),
            "{schemas}"
        );
        assert!(
            schemas["ChatRequest"]["properties"]["messages"].is_object(),
            "{schemas}"
        );
        assert_eq!(
            schemas["MessagesRequest"]["additionalProperties"], false,
            "{schemas}"
        );
    }
}
