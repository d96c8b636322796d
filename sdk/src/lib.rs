//! Typed client for the SuperOffice CRM REST API.
//!
//! The operations and types are generated at build time from SuperOffice's official OpenAPI
//! description (see `spec/superoffice.toml`); the modules beside them are hand-written.

#![warn(missing_docs)]

pub mod auth;
mod client;
mod datetime;
pub mod entity;
mod environment;
mod error;
mod hooks;
pub mod http;
pub mod lenient;
pub mod odata;
pub mod paginate;
pub mod retry;
pub mod runtime;
pub mod tenant;
pub mod upload;

#[allow(
    missing_docs,
    unused_qualifications,
    missing_debug_implementations,
    clippy::all
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/superoffice.rs"));
    include!(concat!(env!("OUT_DIR"), "/accept.rs"));
}

pub use client::{ClientBuilder, RawRequest};
pub use datetime::{ParseDateTimeError, SoDateTime};
pub use environment::Environment;
pub use error::{ApiError, Error, Result};
pub use generated::{ByteStream, Client, ClientInfo, ResponseValue, builder, prelude, types};
/// The error type of the generated operations (progenitor's), before classification.
pub use progenitor_client::Error as OperationError;
