//! Errors of the domain core. Messages name the field and what is wrong with
//! it, and never echo personal data (names, ID numbers, phone numbers).

/// A draft event or value that the domain rejects.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A field is missing, ill-typed or has a value the domain does not accept.
    #[error("field `{field}`: {problem}")]
    Field {
        /// Dotted path of the field, e.g. `body.service` or `origin`.
        field: String,
        /// What is wrong, in the user's terms.
        problem: String,
    },
    /// The `kind` names no event in the catalogue.
    #[error("unknown event kind `{kind}` (known kinds: {known})")]
    UnknownKind {
        /// The kind as given.
        kind: String,
        /// Comma-separated list of the catalogue's kinds.
        known: String,
    },
    /// The input is not JSON at all (or not an object where one is needed).
    #[error("malformed JSON: {0}")]
    Json(String),
}

impl Error {
    /// Shorthand for a [`Error::Field`].
    pub fn field(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Field { field: field.into(), problem: problem.into() }
    }
}

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
