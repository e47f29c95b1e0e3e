//! The pure replayer: code + journal → next commands.
//!
//! A [`Driver`] owns the future of one invocation and its journal. Every
//! durable effect the code creates (through [`Context::schedule`]) takes the
//! next seq *when it is created*; if the journal already holds an event at that
//! seq it must match, and its answer (if recorded) is returned at once;
//! otherwise the effect becomes a new event for the engine to append.
//! Resolutions (a call's result, a timer firing, a signal) are applied one at
//! a time in journal order, and the code is polled after each one, so a
//! replay sees exactly the interleaving the first run saw.
//!
//! This crate does no I/O, reads no clock and draws no random numbers: time
//! is handed in by the caller, and ids are derived from the journal.
//!
//! ```
//! use stent_journal::{Event, Payload, Seq};
//! use stent_replay::{Command, Context, Driver, Status};
//! use std::task::{Context as TaskCx, Waker};
//!
//! let started = Event::Started {
//!     function: "demo::wf".into(),
//!     version: None,
//!     args: Payload::encode(&()).unwrap(),
//!     parent: None,
//!     forked_from: None,
//! };
//! let code = async {
//!     let ctx = Context::current().expect("inside a driver");
//!     let answer = ctx
//!         .schedule(Command::call("demo::step", None, Payload::encode(&(1,)).unwrap()))
//!         .await;
//!     Ok(answer.into_value().unwrap())
//! };
//! let id = "6f9619ff-8b86-d011-b42d-00c04fc964ff".parse().unwrap();
//! let mut driver = Driver::new(id, vec![started], Box::pin(code)).unwrap();
//! let mut cx = TaskCx::from_waker(Waker::noop());
//! assert!(matches!(driver.advance(&mut cx), Status::Blocked));
//! let new = driver.take_new_events();
//! assert_eq!(new.len(), 1); // CallScheduled at seq 1
//! driver.resolve(Event::CallCompleted { scheduled: Seq(1), value: Payload::encode(&2).unwrap() }).unwrap();
//! assert!(matches!(driver.advance(&mut cx), Status::Finished(Ok(_))));
//! ```

mod context;
mod driver;

pub use context::{
    Command, Context, Effect, EffectView, NoContext, Observer, Outstanding, Resolution,
    SignalCheck, Verdict, recorded_answers,
};
pub use driver::{Divergence, Driver, DriverError, InvocationFuture, Status, WakeFlag};
