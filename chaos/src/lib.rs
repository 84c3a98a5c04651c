//! Jepsen-style client histories for cairn, and the checkers that judge them.
//!
//! Seeded chaos runs record what every client asked and what it was told; this crate decides
//! whether those answers are possible for a correct cairn: linearizable where promised, stale
//! but never invented where allowed, with sane revisions, without losing acknowledged writes,
//! with watches that deliver every change once and in order, and long polls that never answer
//! with older data than they waited past.
//!
//! # Layout
//! - [`history`]: the JSON Lines format, its parser ([`parse_history`]) and writer
//!   ([`HistoryWriter`]), the pairing of client events into [`Operation`]s, and the standalone
//!   watcher lines ([`WatchLine`]).
//! - [`check`]: one module per property ([`check::linearizable`], [`check::stale`],
//!   [`check::revisions`], [`check::durability`], [`check::watch`], [`check::long_poll`]) and
//!   the entry points [`check_history`] and [`check_file`].
//! - [`report`]: the self-contained HTML timeline written on a violation.
//! - [`generate`]: synthetic linearizable histories and mutators that plant anomalies, for
//!   tests and benchmarks.
//! - [`workload`], [`watcher`], [`nemesis`], [`run`]: the clients, the watchers, the faults and
//!   one whole run against any [`nemesis::Cluster`] (simulated or real processes), recorded by a
//!   [`recorder::Recorder`].
//! - [`metrics`]: the nodes' Prometheus counters checked against the history.

#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

#[cfg(all(feature = "sim", not(madsim)))]
compile_error!("the `sim` feature needs --cfg madsim: run `cargo sim`, not `cargo test --features sim`");

pub mod acl;
pub mod check;
pub mod generate;
pub mod history;
pub mod hostile;
pub mod metrics;
pub mod nemesis;
pub mod recorder;
pub mod report;
pub mod run;
#[cfg(test)]
mod testing;
pub mod watcher;
pub mod workload;

pub use crate::{
    check::{
        CheckOptions, CheckReport, Checker, CheckerReport, Overall, ReportFile, Verdict, Violation, check_file,
        check_history,
    },
    history::{
        ClientEvent, Consistency, Event, EventBody, EventType, Fault, FaultPhase, Function, History, HistoryWriter,
        Malformation, MalformedHistory, NemesisEvent, Operation, Outcome, Process, Value, WatchAction, WatchEvent,
        WatchKind, WatchLine, parse_history,
    },
};
