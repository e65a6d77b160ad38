//! Errors of access control. Messages never carry a token, key or password.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A secret file is readable by others.
    #[error("{path} holds a secret but has mode {mode:o}: run `chmod 600 {path}`", path = path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file's content is not what it should be.
    #[error("{path}: {problem}", path = path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A value given by the operator is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// TLS or certificate generation failed.
    #[error("tls: {0}")]
    Tls(String),
}

impl Error {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io { path: path.to_path_buf(), source }
    }
    pub(crate) fn format(path: &std::path::Path, problem: impl Into<String>) -> Error {
        Error::Format { path: path.to_path_buf(), problem: problem.into() }
    }
}

/// Result with the access [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
