//! Helpers shared by the end-to-end tests: finding the built `braid` binary and `../shared`.
