//! Stepping through a replay: a hook before each durable effect, and a
//! terminal session (`n`ext, `c`ontinue, `p`rint, `q`uit) over any reader
//! and writer, so a front end only wires stdin and stdout.

use std::io::{BufRead, Write};

use stent_journal::{Event, InvocationId, Seq};

use crate::debugger::diff::{FieldDiff, describe_event, event_fields};

/// One durable effect, as a stepper sees it before the replay matches it.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The invocation.
    pub invocation: InvocationId,
    /// Its function.
    pub function: &'a str,
    /// The seq the effect takes.
    pub seq: Seq,
    /// What the code asks for (for the final result, the terminal event).
    pub asked: &'a Event,
    /// What the journal recorded at that seq (`None`: the journal ends there).
    pub recorded: Option<&'a Event>,
    /// The recorded answer to the effect, if any (a call's result, a timer
    /// firing, a signal, or the effect itself when it answers at once).
    pub answer: Option<&'a Event>,
    /// What differs between `recorded` and `asked` (empty if they match).
    pub diffs: &'a [FieldDiff],
    /// True if the recorded event answers what the code asks.
    pub matches: bool,
}

/// What to do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    /// Show the next effect too.
    Step,
    /// Run on; stop again only at a breakpoint or a divergence.
    Continue,
    /// Stop the replay here.
    Quit,
}

/// Called before each durable effect the replayed code performs (see
/// [`crate::debugger::Replayer::stepper`]).
///
/// It runs inside the replay's poll of the code, so it may block (on a
/// terminal, for instance).
pub trait Stepper: Send {
    /// Decides what happens next.
    fn before_effect(&mut self, step: &Step<'_>) -> StepAction;
}

impl<F> Stepper for F
where
    F: FnMut(&Step<'_>) -> StepAction + Send,
{
    fn before_effect(&mut self, step: &Step<'_>) -> StepAction {
        self(step)
    }
}

/// The interactive stepping session: shows each effect (what the code asks,
/// what the journal recorded, the recorded answer) and reads a command:
///
/// | command | |
/// |---|---|
/// | `n`, empty line | next effect |
/// | `c` | continue to the next breakpoint or divergence |
/// | `p` | print the events in full |
/// | `q` | quit the replay |
///
/// When the input ends, the session continues to the end without asking.
///
/// ```
/// use std::io::Cursor;
/// use stent::debugger::{StepSession, Stepper};
///
/// // Scripted input: next, next, then continue.
/// let session = StepSession::new(Cursor::new("n\nn\nc\n"), Vec::new());
/// # let _ = session;
/// ```
#[derive(Debug)]
pub struct StepSession<R, W> {
    input: R,
    output: W,
    input_ended: bool,
    echo: bool,
    steps: usize,
}

impl<R: BufRead + Send, W: Write + Send> StepSession<R, W> {
    /// A session reading commands from `input` and writing to `output`.
    pub fn new(input: R, output: W) -> Self {
        StepSession {
            input,
            output,
            input_ended: false,
            echo: false,
            steps: 0,
        }
    }

    /// Writes each command read back to the output, so that a transcript
    /// of a scripted session (input not from a terminal) reads like a
    /// terminal session.
    pub fn echo(mut self, yes: bool) -> Self {
        self.echo = yes;
        self
    }

    /// The output written so far.
    pub fn output(&self) -> &W {
        &self.output
    }

    /// The session's output, consuming it.
    pub fn into_output(self) -> W {
        self.output
    }

    /// How many effects were shown.
    pub fn steps(&self) -> usize {
        self.steps
    }

    fn show(&mut self, step: &Step<'_>) -> std::io::Result<()> {
        let status = if step.recorded.is_none() {
            "journal ends here"
        } else if step.matches {
            "matches"
        } else {
            "DIVERGES"
        };
        let out = &mut self.output;
        writeln!(
            out,
            "── {} [{}] seq {} ── {status}",
            step.function, step.invocation, step.seq
        )?;
        writeln!(out, "   code asks:  {}", describe_event(step.asked, 100))?;
        match step.recorded {
            Some(r) => writeln!(out, "   recorded:   {}", describe_event(r, 100))?,
            None => writeln!(out, "   recorded:   nothing")?,
        }
        if let Some(a) = step.answer
            && Some(a) != step.recorded
        {
            writeln!(out, "   answer:     {}", describe_event(a, 100))?;
        }
        for d in step.diffs {
            writeln!(out, "   changed:    {d}")?;
        }
        Ok(())
    }

    fn print_full(&mut self, step: &Step<'_>) -> std::io::Result<()> {
        let out = &mut self.output;
        let mut block = |title: &str, event: &Event| -> std::io::Result<()> {
            writeln!(out, "   {title}:")?;
            for (name, value) in event_fields(event) {
                writeln!(out, "      {name}: {value}")?;
            }
            Ok(())
        };
        block("code asks", step.asked)?;
        if let Some(r) = step.recorded {
            block("recorded", r)?;
        }
        if let Some(a) = step.answer
            && Some(a) != step.recorded
        {
            block("answer", a)?;
        }
        Ok(())
    }

    fn step(&mut self, step: &Step<'_>) -> std::io::Result<StepAction> {
        self.steps += 1;
        self.show(step)?;
        loop {
            if self.input_ended {
                return Ok(StepAction::Continue);
            }
            write!(self.output, "(n)ext (c)ontinue (p)rint (q)uit > ")?;
            self.output.flush()?;
            let mut line = String::new();
            if self.input.read_line(&mut line)? == 0 {
                writeln!(self.output, "(end of input: continuing)")?;
                self.input_ended = true;
                return Ok(StepAction::Continue);
            }
            if self.echo {
                writeln!(self.output, "{}", line.trim_end())?;
            }
            match line.trim() {
                "" | "n" | "next" => return Ok(StepAction::Step),
                "c" | "continue" => return Ok(StepAction::Continue),
                "q" | "quit" => return Ok(StepAction::Quit),
                "p" | "print" => self.print_full(step)?,
                other => writeln!(
                    self.output,
                    "unknown command {other:?}: n (next), c (continue), p (print), q (quit)"
                )?,
            }
        }
    }
}

impl<R: BufRead + Send, W: Write + Send> Stepper for StepSession<R, W> {
    fn before_effect(&mut self, step: &Step<'_>) -> StepAction {
        // A broken terminal ends the session rather than the process.
        self.step(step).unwrap_or(StepAction::Quit)
    }
}
