//! The journal export: one execution — its record and the journal of every
//! invocation — as a self-describing, versioned CBOR document.
//!
//! An export is what `stent journal ID --export FILE` writes and what the
//! replay debugger reads back, possibly years later and on another machine.
//! It is a CBOR map:
//!
//! | key | value |
//! |---|---|
//! | `"format"` | the text `"stent-journal-export"` ([`EXPORT_FORMAT`]) |
//! | `"version"` | the export format version ([`EXPORT_VERSION`]) |
//! | `"execution"` | the execution id |
//! | `"function"` | the root function |
//! | `"args"` | the root's arguments (canonical CBOR, as journaled) |
//! | `"record"` | the execution record: status, routing, times, outcome |
//! | `"invocations"` | every invocation: its id and its journal rows, each row the stored event bytes |
//!
//! Journal rows are kept exactly as stored, so each event still carries its
//! own journal format version and is decoded by [`Event::decode`] when used.
//! Reading checks the format tag first, then the version, then the body; each
//! failure is a typed [`ExportError`].
//!
//! ```
//! use stent_journal::export::{ExportError, JournalExport};
//!
//! let err = JournalExport::from_bytes(b"not cbor at all").unwrap_err();
//! assert!(matches!(err, ExportError::NotAnExport { .. }), "{err}");
//! ```

use ciborium::Value;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::codec::{Payload, PayloadLimits, decode_bytes, encode_canonical};
use crate::error::CodecError;
use crate::event::Event;
use crate::ids::{ExecutionId, InvocationId, Seq};
use crate::store::{ExecutionRecord, ExecutionStatus, JournalRow, Routing};
use crate::time::Timestamp;

/// The format tag every export starts with.
pub const EXPORT_FORMAT: &str = "stent-journal-export";

/// The newest export format version this build writes and reads.
pub const EXPORT_VERSION: u64 = 1;

/// Limits for reading an export: a whole execution, so far larger than one payload.
const EXPORT_LIMITS: PayloadLimits = PayloadLimits::new(1024 * 1024 * 1024, 256);

/// Reading or writing an export failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportError {
    /// The bytes are not a stent journal export at all.
    #[error(
        "not a stent journal export ({found}); export one with `stent journal ID --export FILE`"
    )]
    NotAnExport {
        /// What was found instead.
        found: String,
    },
    /// The export was written by a newer format version.
    #[error(
        "journal export has format version {found}, this build reads up to {supported}; upgrade stent to read it"
    )]
    UnsupportedVersion {
        /// Version found in the file.
        found: u64,
        /// Newest version this build reads.
        supported: u64,
    },
    /// The export has the right tag and version but its body is damaged.
    #[error("journal export is corrupt: {0}")]
    Corrupt(String),
    /// A journal row of the export does not decode.
    #[error("journal export: invocation {invocation}, seq {seq}: {source}")]
    Event {
        /// The invocation.
        invocation: InvocationId,
        /// The row.
        seq: Seq,
        /// Why it does not decode.
        source: CodecError,
    },
    /// The export could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// The journal of one invocation, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationJournal {
    /// The invocation.
    pub invocation: InvocationId,
    /// Its rows, in seq order.
    pub rows: Vec<JournalRow>,
}

impl InvocationJournal {
    /// The decoded events, checking that seqs run 0, 1, 2, … without gaps.
    pub fn events(&self) -> Result<Vec<Event>, ExportError> {
        let mut out = Vec::with_capacity(self.rows.len());
        for (i, row) in self.rows.iter().enumerate() {
            if row.seq.0 as usize != i {
                return Err(ExportError::Corrupt(format!(
                    "journal of invocation {} has a gap: expected seq {i}, found {}",
                    self.invocation, row.seq
                )));
            }
            let event = Event::decode(&row.bytes).map_err(|source| ExportError::Event {
                invocation: self.invocation,
                seq: row.seq,
                source,
            })?;
            out.push(event);
        }
        Ok(out)
    }
}

/// One execution with every invocation's journal, ready to be written to a
/// file or replayed; see the [module docs](self) for the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalExport {
    /// The execution.
    pub execution: ExecutionId,
    /// The root function.
    pub function: String,
    /// The root's arguments.
    pub args: Payload,
    /// The execution record (status, routing, times, outcome).
    pub record: ExecutionRecord,
    /// Every invocation of the execution (the root first), each with its journal.
    pub invocations: Vec<InvocationJournal>,
}

#[derive(Serialize, Deserialize)]
struct WireRow {
    seq: u32,
    kind: String,
    #[serde(with = "bytes")]
    event: Vec<u8>,
    recorded_at: i64,
}

#[derive(Serialize, Deserialize)]
struct WireInvocation {
    invocation: InvocationId,
    rows: Vec<WireRow>,
}

#[derive(Serialize, Deserialize)]
struct WireRecord {
    status: String,
    queue: String,
    priority: i32,
    tags: Vec<String>,
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    deadline: Option<i64>,
    #[serde(with = "opt_bytes")]
    terminal_event: Option<Vec<u8>>,
    pause_report: Option<String>,
    retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code_version: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct WireExport {
    format: String,
    version: u64,
    execution: ExecutionId,
    function: String,
    args: Payload,
    record: WireRecord,
    invocations: Vec<WireInvocation>,
}

mod bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let p: crate::codec::Payload = serde::Deserialize::deserialize(d)?;
        Ok(p.into_bytes())
    }
}

mod opt_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&crate::codec::Payload::from_bytes(b.clone())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let p: Option<crate::codec::Payload> = serde::Deserialize::deserialize(d)?;
        Ok(p.map(crate::codec::Payload::into_bytes))
    }
}

impl JournalExport {
    /// Builds an export from what a backend stores: the execution record and
    /// every invocation's rows (root first, as `read_execution_journal`
    /// returns them). The root's arguments come from its `Started` event.
    pub fn new(
        record: ExecutionRecord,
        invocations: Vec<(InvocationId, Vec<JournalRow>)>,
    ) -> Result<JournalExport, ExportError> {
        let root = record.id.root_invocation();
        let mut invocations: Vec<InvocationJournal> = invocations
            .into_iter()
            .map(|(invocation, rows)| InvocationJournal { invocation, rows })
            .collect();
        // The root first, whatever order the store used.
        if let Some(pos) = invocations.iter().position(|i| i.invocation == root) {
            let r = invocations.remove(pos);
            invocations.insert(0, r);
        }
        let Some(first) = invocations
            .first()
            .filter(|i| i.invocation == root)
            .and_then(|i| i.rows.first())
        else {
            return Err(ExportError::Corrupt(format!(
                "execution {} has no journal for its root invocation",
                record.id
            )));
        };
        let args = match Event::decode(&first.bytes) {
            Ok(Event::Started { args, .. }) => args,
            Ok(other) => {
                return Err(ExportError::Corrupt(format!(
                    "the root journal of execution {} starts with {} instead of started",
                    record.id,
                    other.kind()
                )));
            }
            Err(source) => {
                return Err(ExportError::Event {
                    invocation: root,
                    seq: first.seq,
                    source,
                });
            }
        };
        Ok(JournalExport {
            execution: record.id,
            function: record.function.clone(),
            args,
            record,
            invocations,
        })
    }

    /// The root invocation's journal.
    pub fn root(&self) -> Option<&InvocationJournal> {
        let root = self.execution.root_invocation();
        self.invocations.iter().find(|i| i.invocation == root)
    }

    /// The journal of `invocation`, if the export holds it.
    pub fn invocation(&self, invocation: InvocationId) -> Option<&InvocationJournal> {
        self.invocations.iter().find(|i| i.invocation == invocation)
    }

    /// Encodes the export (canonical CBOR).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ExportError> {
        let r = &self.record;
        let wire = WireExport {
            format: EXPORT_FORMAT.to_string(),
            version: EXPORT_VERSION,
            execution: self.execution,
            function: self.function.clone(),
            args: self.args.clone(),
            record: WireRecord {
                status: r.status.as_str().to_string(),
                queue: r.routing.queue.clone(),
                priority: r.routing.priority,
                tags: r.routing.tags.clone(),
                created_at: r.created_at.0,
                started_at: r.started_at.map(|t| t.0),
                completed_at: r.completed_at.map(|t| t.0),
                deadline: r.deadline.map(|t| t.0),
                terminal_event: r.terminal_event.clone(),
                pause_report: r.pause_report.clone(),
                retries: r.retries,
                code_version: r.code_version.clone(),
            },
            invocations: self
                .invocations
                .iter()
                .map(|i| WireInvocation {
                    invocation: i.invocation,
                    rows: i
                        .rows
                        .iter()
                        .map(|row| WireRow {
                            seq: row.seq.0,
                            kind: row.kind.clone(),
                            event: row.bytes.clone(),
                            recorded_at: row.recorded_at.0,
                        })
                        .collect(),
                })
                .collect(),
        };
        let value = Value::serialized(&wire).map_err(|e| CodecError::Encode(e.to_string()))?;
        Ok(encode_canonical(value)?)
    }

    /// Decodes an export, checking the format tag, then the version, then
    /// the body. Journal rows are decoded later, by [`InvocationJournal::events`].
    pub fn from_bytes(bytes: &[u8]) -> Result<JournalExport, ExportError> {
        let not_an_export = |found: String| ExportError::NotAnExport { found };
        let value: Value = decode_bytes(bytes, EXPORT_LIMITS, "journal export").map_err(|e| {
            // An export's format tag comes first: a file that holds it
            // but does not decode was cut short or damaged.
            if bytes
                .windows(EXPORT_FORMAT.len())
                .take(64)
                .any(|w| w == EXPORT_FORMAT.as_bytes())
            {
                ExportError::Corrupt(format!(
                    "the file is cut short or damaged (was it copied whole?): {e}"
                ))
            } else {
                not_an_export(format!("the file is not CBOR: {e}"))
            }
        })?;
        let Value::Map(entries) = &value else {
            return Err(not_an_export("the file holds CBOR but not a map".into()));
        };
        let field = |name: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_text() == Some(name))
                .map(|(_, v)| v)
        };
        match field("format").and_then(Value::as_text) {
            Some(EXPORT_FORMAT) => {}
            Some(other) => {
                return Err(not_an_export(format!(
                    "its format tag is {:?}",
                    other.chars().take(80).collect::<String>()
                )));
            }
            None => return Err(not_an_export("it has no format tag".into())),
        }
        let version = field("version")
            .and_then(Value::as_integer)
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| ExportError::Corrupt("the format version is missing".into()))?;
        if version == 0 || version > EXPORT_VERSION {
            return Err(ExportError::UnsupportedVersion {
                found: version,
                supported: EXPORT_VERSION,
            });
        }
        let wire: WireExport = value
            .deserialized()
            .map_err(|e| ExportError::Corrupt(e.to_string()))?;
        let status = ExecutionStatus::parse(&wire.record.status).ok_or_else(|| {
            ExportError::Corrupt(format!(
                "unknown execution status {:?}",
                wire.record.status.chars().take(80).collect::<String>()
            ))
        })?;
        let r = wire.record;
        let record = ExecutionRecord {
            id: wire.execution,
            function: wire.function.clone(),
            status,
            routing: Routing {
                queue: r.queue,
                priority: r.priority,
                tags: r.tags,
            },
            created_at: Timestamp(r.created_at),
            started_at: r.started_at.map(Timestamp),
            completed_at: r.completed_at.map(Timestamp),
            deadline: r.deadline.map(Timestamp),
            terminal_event: r.terminal_event,
            pause_report: r.pause_report,
            retries: r.retries,
            code_version: r.code_version,
        };
        let invocations = wire
            .invocations
            .into_iter()
            .map(|i| InvocationJournal {
                invocation: i.invocation,
                rows: i
                    .rows
                    .into_iter()
                    .map(|row| JournalRow {
                        seq: Seq(row.seq),
                        kind: row.kind,
                        bytes: row.event,
                        recorded_at: Timestamp(row.recorded_at),
                    })
                    .collect(),
            })
            .collect();
        let export = JournalExport {
            execution: wire.execution,
            function: wire.function,
            args: wire.args,
            record,
            invocations,
        };
        if export.root().is_none() {
            return Err(ExportError::Corrupt(format!(
                "no journal for the root invocation of execution {}",
                export.execution
            )));
        }
        Ok(export)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JournalExport {
        let id: ExecutionId = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
        let started = Event::Started {
            function: "app::wf".into(),
            version: None,
            args: Payload::encode(&(7u32,)).unwrap(),
            parent: None,
            forked_from: None,
        };
        let done = Event::Completed {
            value: Payload::encode(&"ok").unwrap(),
        };
        let row = |seq: u32, e: &Event| JournalRow {
            seq: Seq(seq),
            kind: e.kind().as_str().into(),
            bytes: e.encode().unwrap(),
            recorded_at: Timestamp(1_700_000_000_000 + i64::from(seq)),
        };
        let record = ExecutionRecord {
            id,
            function: "app::wf".into(),
            status: ExecutionStatus::Completed,
            routing: Routing::default(),
            created_at: Timestamp(1_700_000_000_000),
            started_at: Some(Timestamp(1_700_000_000_001)),
            completed_at: Some(Timestamp(1_700_000_000_002)),
            deadline: None,
            terminal_event: Some(done.encode().unwrap()),
            pause_report: None,
            retries: 0,
            code_version: Some("2026-12-05".into()),
        };
        JournalExport::new(
            record,
            vec![(id.root_invocation(), vec![row(0, &started), row(1, &done)])],
        )
        .unwrap()
    }

    #[test]
    fn round_trips() {
        let export = sample();
        let bytes = export.to_bytes().unwrap();
        assert_eq!(JournalExport::from_bytes(&bytes).unwrap(), export);
        assert_eq!(export.root().unwrap().events().unwrap().len(), 2);
        assert_eq!(export.args.decode::<(u32,)>().unwrap(), (7,));
    }

    fn with_field(name: &str, value: Value) -> Vec<u8> {
        let bytes = sample().to_bytes().unwrap();
        let Value::Map(mut entries) = ciborium::from_reader::<Value, _>(&bytes[..]).unwrap() else {
            panic!("an export is a map");
        };
        for (k, v) in entries.iter_mut() {
            if k.as_text() == Some(name) {
                *v = value.clone();
            }
        }
        encode_canonical(Value::Map(entries)).unwrap()
    }

    #[test]
    fn a_newer_version_is_a_clear_error() {
        let err = JournalExport::from_bytes(&with_field("version", Value::Integer(9.into())))
            .unwrap_err();
        assert_eq!(
            err,
            ExportError::UnsupportedVersion {
                found: 9,
                supported: EXPORT_VERSION
            }
        );
        assert!(err.to_string().contains("upgrade stent"), "{err}");
    }

    #[test]
    fn another_format_tag_is_not_an_export() {
        let err = JournalExport::from_bytes(&with_field("format", Value::Text("other".into())))
            .unwrap_err();
        assert!(matches!(err, ExportError::NotAnExport { .. }), "{err}");
    }

    #[test]
    fn damaged_files_never_panic() {
        let bytes = sample().to_bytes().unwrap();
        for cut in 0..bytes.len() {
            assert!(JournalExport::from_bytes(&bytes[..cut]).is_err());
        }
        let err = JournalExport::from_bytes(&with_field("invocations", Value::Text("x".into())))
            .unwrap_err();
        assert!(matches!(err, ExportError::Corrupt(_)), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = JournalExport::from_bytes(&bytes);
        }

        #[test]
        fn flipped_bytes_never_panic(at in 0usize..4096, to in proptest::num::u8::ANY) {
            let mut bytes = sample().to_bytes().unwrap();
            let i = at % bytes.len();
            bytes[i] = to;
            if let Ok(export) = JournalExport::from_bytes(&bytes) {
                for inv in &export.invocations {
                    let _ = inv.events();
                }
            }
        }
    }
}
