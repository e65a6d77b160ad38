//! Errors of the node library (the binary adds context with `anyhow`).

/// What can go wrong starting or running a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read, written or understood; names the file.
    #[error("{path}: {problem}")]
    File {
        /// The file or directory.
        path: String,
        /// What is wrong, in the operator's terms.
        problem: String,
    },
    /// The configuration is refused (e.g. it would run without TLS or credentials).
    #[error("{0}")]
    Config(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] yipan_log::Error),
    /// Replication failed.
    #[error(transparent)]
    Sync(#[from] yipan_sync::Error),
    /// A credential, certificate or secret file could not be used.
    #[error(transparent)]
    Access(#[from] yipan_access::Error),
    /// NATS could not be reached or refused a request.
    #[error("nats: {0}")]
    Nats(String),
    /// A background task failed to run to its end.
    #[error("{what}: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
}

impl Error {
    pub(crate) fn file(path: &std::path::Path, problem: impl std::fmt::Display) -> Error {
        Error::File { path: path.display().to_string(), problem: problem.to_string() }
    }
}

/// Result with the node [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
