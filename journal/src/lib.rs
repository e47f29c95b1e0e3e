//! The journal of stent: what is recorded, and how.
//!
//! This crate owns the wire format. It defines the typed ids, the [`Event`]s an
//! invocation's journal is made of, the canonical CBOR codec and blake3
//! [`CallKey`]s, the strict duration grammar, and the storage traits every
//! backend implements. It performs no I/O and reads no clock.
//!
//! ```
//! use stent_journal::{CallKey, Payload};
//! use std::collections::HashMap;
//!
//! let args: HashMap<&str, u32> = [("b", 2), ("a", 1), ("c", 3)].into();
//! let payload = Payload::encode(&(args,)).unwrap();
//! let key = CallKey::new("shop::charge", None, &payload);
//! // The same arguments always give the same key, whatever the map order.
//! assert_eq!(key, CallKey::new("shop::charge", None, &payload));
//! ```

pub mod codec;
pub mod duration;
mod error;
pub mod event;
pub mod export;
mod ids;
pub mod pause;
pub mod plan;
pub mod rows;
pub mod sql;
pub mod store;
mod time;

pub use codec::{CallKey, Payload, PayloadLimits, Serializer};
pub use duration::{DurationSpec, IntoDuration, format_duration, parse_duration};
pub use error::{CodecError, DurationError};
pub use event::{Event, EventKind, FORMAT_VERSION, Failure, ForkOrigin};
pub use ids::{ExecutionId, InvocationId, LeaseEpoch, Seq, WorkerId};
pub use pause::PauseReport;
pub use time::Timestamp;
