//! Why an execution was paused: the report stored with a paused execution,
//! as text for people and as structure for tools.
//!
//! A worker pauses an execution when it cannot go on without a person:
//! the code no longer matches the journal, the journal is inconsistent, or
//! a signal does not decode as the type the code waits for. The report is
//! stored in the execution's `pause_report` column as a small JSON document
//! ([`PauseReport::to_stored`]); reports stored as plain text (by older
//! versions, or written by hand) read back as a report with only its
//! [`text`](PauseReport::text) ([`PauseReport::from_stored`]).
//!
//! ```
//! use stent_journal::pause::{FieldDiff, PauseReport, PausedDivergence, DivergenceKind};
//! use stent_journal::{ExecutionId, Seq};
//!
//! let root = ExecutionId::new_random().root_invocation();
//! let report = PauseReport::diverged(
//!     "the code asked for another call",
//!     PausedDivergence {
//!         invocation: root,
//!         function: "ship".into(),
//!         seq: Seq(3),
//!         kind: DivergenceKind::Mismatch,
//!         recorded: Some("call_scheduled charge(3)".into()),
//!         asked: Some("call_scheduled charge(4)".into()),
//!         recorded_at: None,
//!         diffs: vec![FieldDiff {
//!             path: "args[0]".into(),
//!             recorded: Some("3".into()),
//!             asked: Some("4".into()),
//!         }],
//!         patch: None,
//!     },
//! );
//! let back = PauseReport::from_stored(&report.to_stored());
//! assert_eq!(back, report);
//! assert_eq!(PauseReport::from_stored("paused by hand").text, "paused by hand");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{InvocationId, Seq};

/// Why an execution is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PauseReport {
    /// The whole report as one text, diffs included: what `stent show`
    /// prints after `paused`.
    pub text: String,
    /// Where the code and the journal disagree, when that is why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divergence: Option<PausedDivergence>,
    /// The signal set aside, when a signal that does not decode is why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SetAsideSignal>,
}

/// Where today's code and an invocation's journal disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedDivergence {
    /// The invocation whose journal it is.
    pub invocation: InvocationId,
    /// Its function.
    pub function: String,
    /// Where in its journal.
    pub seq: Seq,
    /// What kind of disagreement.
    pub kind: DivergenceKind,
    /// The event the journal holds at `seq`, described in one line
    /// (`None`: the journal ends there).
    pub recorded: Option<String>,
    /// The event the code asked for at `seq`, described in one line
    /// (`None`: the code asked for nothing there).
    pub asked: Option<String>,
    /// For [`DivergenceKind::Reordered`]: where the journal holds what the
    /// code asked for, later than `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<Seq>,
    /// Field by field, what changed between the recorded and the asked
    /// event (empty when they cannot be compared, or were reordered).
    #[serde(default)]
    pub diffs: Vec<FieldDiff>,
    /// For [`DivergenceKind::PatchRemoved`]: the patch whose old branch
    /// this execution took and the code no longer has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// What kind of disagreement a [`PausedDivergence`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DivergenceKind {
    /// The code asked for another durable effect than the journal recorded
    /// (another function, other arguments, another signal, another kind).
    Mismatch,
    /// The code asked for an effect the journal recorded later: the calls
    /// were reordered.
    Reordered,
    /// The code returned another result than the journal recorded.
    Result,
    /// The code waits for something, but the journal recorded more.
    Stuck,
    /// The journal is inconsistent in itself.
    Inconsistent,
    /// The code deprecated a patch (removed its old branch) while this
    /// execution, started before the patch, still runs the old branch.
    PatchRemoved,
}

impl DivergenceKind {
    /// The snake-case name used in JSON: `mismatch`, `reordered`, …
    pub fn as_str(self) -> &'static str {
        match self {
            DivergenceKind::Mismatch => "mismatch",
            DivergenceKind::Reordered => "reordered",
            DivergenceKind::Result => "result",
            DivergenceKind::Stuck => "stuck",
            DivergenceKind::Inconsistent => "inconsistent",
            DivergenceKind::PatchRemoved => "patch_removed",
        }
    }
}

impl fmt::Display for DivergenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One field that differs between what the journal recorded and what the
/// code asked: `args[0].items[2].qty: 3 -> 4`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    /// Where, from the event's root: `args[0].items[2].qty`.
    pub path: String,
    /// The recorded value there, rendered (`None`: the field was not recorded).
    pub recorded: Option<String>,
    /// The asked value there, rendered (`None`: the code no longer has the field).
    pub asked: Option<String>,
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            side(&self.recorded),
            side(&self.asked)
        )
    }
}

/// A signal that was set aside, not delivered, because its payload does
/// not decode as the type the code waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAsideSignal {
    /// The stored signal's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The invocation that waits for it.
    pub invocation: InvocationId,
    /// Where that invocation waits (the `signal_awaited` event).
    pub awaited: Seq,
    /// The Rust type the code waits for.
    pub expected_type: String,
    /// Why the payload does not decode as that type.
    pub why: String,
}

/// The key that marks a stored report as structured.
const FORMAT_KEY: &str = "stent_pause";

#[derive(Serialize, Deserialize)]
struct Stored {
    stent_pause: u32,
    #[serde(flatten)]
    report: PauseReport,
}

impl PauseReport {
    /// A report with only a text.
    pub fn text(text: impl Into<String>) -> PauseReport {
        PauseReport {
            text: text.into(),
            divergence: None,
            signal: None,
        }
    }

    /// A report of a divergence: `text` says why, the divergence says where.
    /// The stored text is `text` followed by the field diffs, one per line.
    pub fn diverged(text: impl Into<String>, divergence: PausedDivergence) -> PauseReport {
        let mut text = text.into();
        for d in &divergence.diffs {
            text.push_str("\n    ");
            text.push_str(&d.to_string());
        }
        PauseReport {
            text,
            divergence: Some(divergence),
            signal: None,
        }
    }

    /// A report of a signal set aside.
    pub fn signal_set_aside(text: impl Into<String>, signal: SetAsideSignal) -> PauseReport {
        PauseReport {
            text: text.into(),
            divergence: None,
            signal: Some(signal),
        }
    }

    /// The report in one short line, for tables: `paused: calls reordered
    /// at seq 3 in ship`, `paused: signal "shipped" set aside (not a
    /// Shipment)`, or the first line of the text.
    pub fn summary(&self) -> String {
        if let Some(d) = &self.divergence {
            let what = match d.kind {
                DivergenceKind::Reordered => "calls reordered",
                DivergenceKind::Result => "another result",
                DivergenceKind::Stuck => "code waits for something else",
                DivergenceKind::Inconsistent => "inconsistent journal",
                DivergenceKind::Mismatch => "code changed",
                DivergenceKind::PatchRemoved => {
                    return format!(
                        "paused: patch {:?} removed too early, at seq {} in {}",
                        d.patch.as_deref().unwrap_or("?"),
                        d.seq,
                        d.function
                    );
                }
            };
            let first = d
                .diffs
                .first()
                .map(|f| format!(": {f}"))
                .unwrap_or_default();
            return format!("paused: {what} at seq {} in {}{first}", d.seq, d.function);
        }
        if let Some(s) = &self.signal {
            return format!(
                "paused: signal {:?} set aside (not a {})",
                s.name, s.expected_type
            );
        }
        format!("paused: {}", self.text.lines().next().unwrap_or_default())
    }

    /// The report as stored in an execution's `pause_report`: a JSON
    /// object with a `stent_pause` format number.
    pub fn to_stored(&self) -> String {
        let stored = Stored {
            stent_pause: 1,
            report: self.clone(),
        };
        // Serializing plain strings and numbers cannot fail; fall back to
        // the text rather than lose the report if it ever did.
        serde_json::to_string(&stored).unwrap_or_else(|_| self.text.clone())
    }

    /// A stored report read back. A report that is not a structured one
    /// (plain text, from an older version or written by hand) is its own
    /// [`text`](Self::text).
    pub fn from_stored(stored: &str) -> PauseReport {
        if stored.starts_with('{')
            && stored.contains(FORMAT_KEY)
            && let Ok(s) = serde_json::from_str::<Stored>(stored)
        {
            return s.report;
        }
        PauseReport::text(stored)
    }
}

impl fmt::Display for PauseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExecutionId;

    #[test]
    fn a_plain_text_report_reads_back_as_its_text() {
        for raw in ["", "paused", "{not json", r#"{"text": "x"}"#] {
            let r = PauseReport::from_stored(raw);
            assert_eq!(r.text, raw);
            assert_eq!(r.divergence, None);
        }
    }

    #[test]
    fn a_set_aside_signal_round_trips() {
        let r = PauseReport::signal_set_aside(
            "signal \"shipped\" does not decode",
            SetAsideSignal {
                id: 7,
                name: "shipped".into(),
                invocation: ExecutionId::new_random().root_invocation(),
                awaited: Seq(2),
                expected_type: "Shipment".into(),
                why: "expected a map".into(),
            },
        );
        let stored = r.to_stored();
        assert!(stored.contains(r#""stent_pause":1"#), "{stored}");
        assert_eq!(PauseReport::from_stored(&stored), r);
    }

    #[test]
    fn a_diverged_report_lists_its_diffs_in_the_text() {
        let r = PauseReport::diverged(
            "mismatch",
            PausedDivergence {
                invocation: ExecutionId::new_random().root_invocation(),
                function: "f".into(),
                seq: Seq(1),
                kind: DivergenceKind::Mismatch,
                recorded: None,
                asked: None,
                recorded_at: None,
                diffs: vec![FieldDiff {
                    path: "args[0]".into(),
                    recorded: None,
                    asked: Some("4".into()),
                }],
                patch: None,
            },
        );
        assert_eq!(r.text, "mismatch\n    args[0]: (absent) -> 4");
    }
}
