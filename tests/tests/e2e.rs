//! End-to-end tests: the real `braid` binary, driven as users and the conformance runner
//! drive it. One test binary for the whole workspace keeps link time down.

mod anthropic_client;
mod api_errors;
mod chat_render;
mod cli_parse;
mod conformance;
mod engine_fixture;
mod engine_parity;
mod gguf;
mod hardening;
mod litellm_proxy;
mod llama_cpp;
mod observability;
mod one_door;
mod openai_client;
mod parser_choice;
mod pipeline;
mod responses_client;
mod scale_out;
mod structured;
mod upstream;
