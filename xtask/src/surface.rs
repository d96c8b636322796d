//! The API surface of generated code: one line per operation (names and types only).
