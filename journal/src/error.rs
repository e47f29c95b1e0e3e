//! Errors of the journal layer: decoding and parsing. Every variant says what
//! was wrong in words a person can act on; none of them is ever a panic.

use thiserror::Error;

/// Encoding or decoding a payload or journal event failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded as CBOR.
    #[error("could not encode value as CBOR: {0}")]
    Encode(String),
    /// The executor's serializer is [`crate::Serializer::Json`] and the value
    /// has no JSON form (a non-string map key, an integer beyond 64 bits…).
    #[error(
        "value is not representable in JSON (the executor's serializer is Json; change the type or use Serializer::Cbor): {0}"
    )]
    NotJson(String),
    /// A serializer name other than `"json"` or `"cbor"`.
    #[error(
        "unknown serializer {0:?}: expected \"json\" or \"cbor\" (\"pickle\" is not supported: it can run code on decode)"
    )]
    UnknownSerializer(String),
    /// The bytes are not valid CBOR for the expected type.
    #[error("could not decode {what}: {reason}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The payload is larger than the configured limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the payload in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The payload nests deeper than the configured limit.
    #[error("payload nests deeper than the limit of {limit} levels")]
    TooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// The event was written by a newer format version than this build understands.
    #[error(
        "journal event has format version {found}, this build understands up to {supported}; upgrade stent to read it"
    )]
    UnsupportedVersion {
        /// Version found in the event.
        found: u64,
        /// Newest version this build reads.
        supported: u64,
    },
    /// The event kind is not one this build knows.
    #[error("unknown journal event kind {kind:?}")]
    UnknownKind {
        /// The kind found.
        kind: String,
    },
    /// A textual id did not parse.
    #[error("invalid {what} {input:?}: {reason}")]
    InvalidId {
        /// Which id.
        what: &'static str,
        /// The offending input (cut to 80 characters).
        input: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// A duration string or value was not acceptable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// The input was empty.
    #[error(
        "empty duration: expected something like \"30s\", \"5m\", \"1h30m\", \"2d8h\" or \"1w\""
    )]
    Empty,
    /// The input did not follow the grammar.
    #[error(
        "invalid duration {input:?} at byte {position}: {reason} (expected something like \"30s\", \"1h30m\" or \"2d8h\"; units w, d, h, m, s)"
    )]
    Invalid {
        /// The input (cut to 80 characters).
        input: String,
        /// Byte offset of the problem.
        position: usize,
        /// What was wrong there.
        reason: &'static str,
    },
    /// The duration does not fit the supported range.
    #[error("duration {input:?} is too large")]
    Overflow {
        /// The input (cut to 80 characters).
        input: String,
    },
    /// A negative duration where only non-negative ones make sense.
    #[error("negative duration {input}: durations must be zero or positive")]
    Negative {
        /// A rendering of the value.
        input: String,
    },
}
