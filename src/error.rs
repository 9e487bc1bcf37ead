//! One error type for the library. Every variant that concerns input names the
//! file (or, in the browser, the name the caller gave the bytes) so that a user
//! with a batch of files knows which one failed and why.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read at all.
    #[error("{path}: {message}")]
    Io { path: String, message: String },

    /// A model folder or bundle is unusable: missing file, malformed config,
    /// missing or wrongly shaped tensor, truncated weights.
    #[error("{path}: {message}")]
    Model { path: String, message: String },

    /// An image could not be decoded or is outside the limits.
    #[error("{path}: {message}")]
    Image { path: String, message: String },

    /// Bad data that is not tied to one file (a label list, a text...).
    #[error("{0}")]
    Input(String),

    /// The GPU engine failed (no adapter, lost device, out of memory, a shader
    /// the driver rejected). Callers fall back to the CPU and say so.
    #[error("GPU: {0}")]
    Gpu(String),

    /// A bug caught at run time (a panic inside [`crate::isolate::isolate`]):
    /// reported against the one input it happened on.
    #[error("{path}: {message}")]
    Internal { path: String, message: String },

    /// A failure inside the tensor library that input validation did not catch.
    #[error("internal tensor error: {0}")]
    Tensor(String),
}

impl Error {
    pub fn model(path: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Model { path: path.to_string(), message: message.to_string() }
    }
    pub fn image(path: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Image { path: path.to_string(), message: message.to_string() }
    }
    pub fn io(path: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::Io { path: path.to_string(), message: err.to_string() }
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Tensor(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
