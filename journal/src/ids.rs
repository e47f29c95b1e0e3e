//! Typed identifiers. Each wraps a plain value so that an execution id can never
//! be passed where an invocation id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::CodecError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = CodecError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|e| CodecError::InvalidId {
                    what: $what,
                    input: s.chars().take(80).collect(),
                    reason: e.to_string(),
                })
            }
        }
    };
}

uuid_id!(
    /// One dispatched run of a durable function and everything it calls.
    ExecutionId,
    "execution id"
);
uuid_id!(
    /// One call of one durable function inside an execution; each has its own journal.
    InvocationId,
    "invocation id"
);

impl ExecutionId {
    /// A fresh random execution id. Only the dispatcher mints these; everything
    /// inside an execution is derived deterministically.
    #[allow(clippy::disallowed_methods)] // dispatch is outside replay: a random id is wanted
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The execution id a caller's own key names: the same key gives the
    /// same id, in every process and every release (a blake3 hash of the
    /// key). Dispatching with it makes a retried dispatch idempotent.
    ///
    /// ```
    /// use stent_journal::ExecutionId;
    ///
    /// let a = ExecutionId::from_key("order-42");
    /// assert_eq!(a, ExecutionId::from_key("order-42"));
    /// assert_ne!(a, ExecutionId::from_key("order-43"));
    /// ```
    pub fn from_key(key: &str) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"stent/dispatch-key/v1");
        hasher.update(key.as_bytes());
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest.as_bytes()[..16]);
        Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// The id of the execution's root invocation (the dispatched call itself).
    pub fn root_invocation(&self) -> InvocationId {
        InvocationId(self.0)
    }
}

impl InvocationId {
    /// The id of the child invocation scheduled by `parent` at `seq`.
    ///
    /// Derived, not random, so that replaying the parent re-derives the same id.
    pub fn child_of(parent: InvocationId, seq: Seq) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"stent/child-invocation/v1");
        hasher.update(parent.0.as_bytes());
        hasher.update(&seq.0.to_be_bytes());
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest.as_bytes()[..16]);
        Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }
}

/// The position of an event in an invocation's journal, counted from 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Seq(pub u32);

impl Seq {
    /// The seq after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

/// A counter bumped on every claim of a task. Every write a worker makes carries
/// the epoch it claimed with, so a worker whose lease was taken over cannot write.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseEpoch(pub i64);

impl fmt::Display for LeaseEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The name a worker claims tasks under.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(String);

impl WorkerId {
    /// A worker id from a name.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_ids_are_stable_and_distinct() {
        let parent: InvocationId = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        let a = InvocationId::child_of(parent, Seq(1));
        assert_eq!(a, InvocationId::child_of(parent, Seq(1)));
        assert_ne!(a, InvocationId::child_of(parent, Seq(2)));
        // Pinned: changing the derivation would orphan recorded children.
        assert_eq!(a.to_string(), "4405420f-f09e-80f4-bd5a-f8eb9d161a2c");
    }

    #[test]
    fn parse_errors_name_the_id_kind() {
        let err = "nope".parse::<ExecutionId>().unwrap_err();
        assert!(err.to_string().contains("execution id"), "{err}");
    }
}
