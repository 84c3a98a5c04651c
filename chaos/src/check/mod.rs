//! The history checkers, one property per module, and the entry points that run them all.
//!
//! | module | property |
//! | --- | --- |
//! | [`linearizable`] | linearizable and lease reads, writes, cas and deletes are linearizable per key |
//! | [`stale`] | stale reads return written values and never go back in revision per node |
//! | [`revisions`] | mutation revisions are unique and increase in real-time order |
//! | [`durability`] | every acknowledged write survives into the final reads |
//! | [`watch`] | watchers get every matching change once, in revision order, as it was written |
//! | [`long_poll`] | a long-poll read is never served below the revision it waited past |
//!
//! Each checker answers [`Verdict::Valid`], [`Verdict::Violation`] with the smallest window of
//! operations that shows the problem, or [`Verdict::Unknown`] when its budget ran out: a budget
//! never turns into a pass.

pub mod durability;
pub mod linearizable;
pub mod long_poll;
pub mod revisions;
pub mod stale;
pub mod watch;

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::history::{History, MalformedHistory, Operation, WatchLine, format_time, parse_history};

/// Settings for [`check_history`] and [`check_file`].
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Wall-clock time the linearizability search may spend over all keys; when it runs out the
    /// verdict is `Unknown`. The other checkers are O(n log n) and ignore it. Must not be zero.
    /// Tuning: the dense benchmark decides in well under a second on two cores; give CI at least
    /// ten times what a local run needs.
    pub budget: Duration,
    /// The most configurations the search may keep at one position of one key before giving up,
    /// bounding memory (each costs about 50 bytes plus hashing overhead).
    pub configurations_max: usize,
    /// On a linearizability violation, how long the checker may spend finding exactly where the
    /// longest linearizable prefix ends (a second search that does not look ahead, typically
    /// 2–10× slower than the first). When it runs out, the report names the later operations
    /// that made the first search give up instead. Zero skips it.
    pub prefix_budget: Duration,
    /// Write the HTML report even when every checker passes (it is always written on a violation
    /// or an unknown verdict when [`check_file`] gets a report directory).
    pub report_always: bool,
}

impl Default for CheckOptions {
    fn default() -> CheckOptions {
        CheckOptions {
            budget: Duration::from_secs(60),
            configurations_max: 1_000_000,
            prefix_budget: Duration::from_secs(5),
            report_always: false,
        }
    }
}

/// One checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The property holds for the whole history.
    Valid,
    /// The property fails; at least one violation, each with its evidence.
    Violation(Vec<Violation>),
    /// The checker could not decide; nothing is claimed either way.
    Unknown {
        /// Why it gave up (budget, size limit).
        reason: String,
    },
}

impl Verdict {
    /// The overall class of this verdict.
    pub fn class(&self) -> Overall {
        match self {
            Verdict::Valid => Overall::Valid,
            Verdict::Violation(_) => Overall::Violation,
            Verdict::Unknown { .. } => Overall::Unknown,
        }
    }
}

/// Evidence for one violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key it concerns, when it concerns one.
    pub key: Option<String>,
    /// One sentence saying what is wrong.
    pub summary: String,
    /// The smallest set of operations that shows it, in invoke order; for linearizability, the
    /// operation the search got stuck at plus the operations concurrent with it.
    pub window: Vec<Operation>,
    /// The operations the checker blames, by id (a subset of `window`).
    pub culprits: Vec<usize>,
    /// For linearizability: every event of the key with a smaller index is linearizable (the
    /// longest linearizable prefix); the event at this index is where it breaks.
    pub prefix_end: Option<u64>,
    /// For the watch checker: the watcher lines that show it, in file order (the operations
    /// involved are in `window`). Empty for the other checkers.
    pub watch_window: Vec<WatchLine>,
    /// The watcher lines it blames, by 1-based line number (a subset of `watch_window`).
    pub watch_culprits: Vec<usize>,
}

/// The verdict over all checkers: a violation anywhere wins, then unknown, then valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Overall {
    /// Every checker passed.
    Valid,
    /// Some checker could not decide and none found a violation.
    Unknown,
    /// Some checker found a violation.
    Violation,
}

impl Overall {
    /// The CLI's exit code: 0 valid, 1 violation, 2 unknown (3, malformed, is the caller's).
    pub fn exit_code(self) -> i32 {
        match self {
            Overall::Valid => 0,
            Overall::Violation => 1,
            Overall::Unknown => 2,
        }
    }
}

/// Which checker a [`CheckerReport`] is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Checker {
    /// [`linearizable`].
    Linearizable,
    /// [`stale`].
    Stale,
    /// [`revisions`].
    Revisions,
    /// [`durability`].
    Durability,
    /// [`watch`].
    Watch,
    /// [`long_poll`].
    LongPoll,
}

impl fmt::Display for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Checker::Linearizable => "linearizable",
            Checker::Stale => "stale",
            Checker::Revisions => "revisions",
            Checker::Durability => "durability",
            Checker::Watch => "watch",
            Checker::LongPoll => "long-poll",
        })
    }
}

/// One checker's verdict with what it looked at and how long it took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckerReport {
    /// The checker.
    pub checker: Checker,
    /// Its verdict.
    pub verdict: Verdict,
    /// Wall-clock time spent.
    pub elapsed: Duration,
    /// Counts: what was checked, skipped, and how much work it took.
    pub summary: String,
}

/// Where the HTML report went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportFile {
    /// Written to this path.
    Written(PathBuf),
    /// Could not be written; the verdicts stand regardless.
    Failed {
        /// The intended path.
        path: PathBuf,
        /// The I/O error, as text.
        error: String,
    },
}

/// The result of checking one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// Events in the history.
    pub events: usize,
    /// Operations (invoke/completion pairs).
    pub operations: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Nemesis faults.
    pub faults: usize,
    /// One report per checker, in a fixed order.
    pub checkers: Vec<CheckerReport>,
    /// The HTML report, when [`check_file`] wrote (or tried to write) one.
    pub html_report: Option<ReportFile>,
}

impl CheckReport {
    /// The overall verdict.
    pub fn overall(&self) -> Overall {
        self.checkers.iter().map(|report| report.verdict.class()).max().unwrap_or(Overall::Valid)
    }

    /// The report of one checker.
    pub fn checker(&self, checker: Checker) -> &CheckerReport {
        self.checkers.iter().find(|report| report.checker == checker).expect("every checker runs")
    }
}

/// Runs every checker on a history.
pub fn check_history(history: &History, options: &CheckOptions) -> CheckReport {
    assert!(!options.budget.is_zero(), "the budget must not be zero");
    let timed = |checker: Checker, run: &dyn Fn() -> (Verdict, String)| {
        let started = Instant::now();
        let (verdict, summary) = run();
        CheckerReport { checker, verdict, elapsed: started.elapsed(), summary }
    };
    let checkers = vec![
        timed(Checker::Linearizable, &|| linearizable::check(history, options)),
        timed(Checker::Stale, &|| stale::check(history)),
        timed(Checker::Revisions, &|| revisions::check(history)),
        timed(Checker::Durability, &|| durability::check(history)),
        timed(Checker::Watch, &|| watch::check(history)),
        timed(Checker::LongPoll, &|| long_poll::check(history)),
    ];
    CheckReport {
        events: history.events.len(),
        operations: history.operations.len(),
        keys: history.keys().len(),
        faults: history.faults.len(),
        checkers,
        html_report: None,
    }
}

/// Parses the history at `path`, checks it, and, given `report_dir`, writes `report.html` there
/// when the verdict is not valid (or always, with [`CheckOptions::report_always`]).
pub fn check_file(
    path: &Path,
    report_dir: Option<&Path>,
    options: &CheckOptions,
) -> Result<CheckReport, MalformedHistory> {
    let unreadable = |source| MalformedHistory::Unreadable { path: path.display().to_string(), source };
    let history = parse_history(BufReader::new(File::open(path).map_err(unreadable)?))?;
    let mut report = check_history(&history, options);
    if let Some(dir) = report_dir
        && (options.report_always || report.overall() != Overall::Valid)
    {
        let target = dir.join("report.html");
        let html = crate::report::render(&history, &report);
        let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&target, html));
        report.html_report = Some(match written {
            Ok(()) => ReportFile::Written(target),
            Err(error) => ReportFile::Failed { path: target, error: error.to_string() },
        });
    }
    Ok(report)
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} events, {} operations on {} keys, {} faults",
            self.events, self.operations, self.keys, self.faults
        )?;
        for report in &self.checkers {
            let verdict = match &report.verdict {
                Verdict::Valid => "valid".to_owned(),
                Verdict::Violation(violations) => format!("VIOLATION ({})", violations.len()),
                Verdict::Unknown { .. } => "unknown".to_owned(),
            };
            let seconds = report.elapsed.as_secs_f64();
            writeln!(f, "  {:<13}{verdict:<16}{seconds:>8.3}s  {}", report.checker, report.summary)?;
            match &report.verdict {
                Verdict::Valid => {}
                Verdict::Unknown { reason } => writeln!(f, "      gave up: {reason}")?,
                Verdict::Violation(violations) => write_violations(f, violations)?,
            }
        }
        if let Some(file) = &self.html_report {
            match file {
                ReportFile::Written(path) => writeln!(f, "report: {}", path.display())?,
                ReportFile::Failed { path, error } => {
                    writeln!(f, "report: could not write {}: {error}", path.display())?
                }
            }
        }
        let overall = match self.overall() {
            Overall::Valid => "valid",
            Overall::Violation => "VIOLATION",
            Overall::Unknown => "unknown",
        };
        writeln!(f, "verdict: {overall}")
    }
}

/// The most violations, and operations per violation, printed in full.
const SHOWN_MAX: usize = 5;
const WINDOW_SHOWN_MAX: usize = 40;

fn write_violations(f: &mut fmt::Formatter<'_>, violations: &[Violation]) -> fmt::Result {
    for violation in violations.iter().take(SHOWN_MAX) {
        writeln!(f, "    ✗ {}", violation.summary)?;
        // Operations (at their invoke line) and watcher lines, merged in file order.
        let mut lines: Vec<(usize, bool, String)> = violation
            .window
            .iter()
            .map(|op| (op.invoke_line, violation.culprits.contains(&op.id), op.to_string()))
            .chain(
                violation
                    .watch_window
                    .iter()
                    .map(|watch| (watch.line, violation.watch_culprits.contains(&watch.line), watch.to_string())),
            )
            .collect();
        lines.sort_by_key(|(line, _, _)| *line);
        for (line, culprit, text) in lines.iter().take(WINDOW_SHOWN_MAX) {
            let marker = if *culprit { "→" } else { " " };
            writeln!(f, "      {marker} line {line:>6}: {text}")?;
        }
        if lines.len() > WINDOW_SHOWN_MAX {
            writeln!(f, "        … and {} more lines", lines.len() - WINDOW_SHOWN_MAX)?;
        }
    }
    if violations.len() > SHOWN_MAX {
        writeln!(f, "    … and {} more violations", violations.len() - SHOWN_MAX)?;
    }
    Ok(())
}

/// "at index X (time)" for summaries.
pub(crate) fn at_event(history: &History, index: u64) -> String {
    let time = history.events.binary_search_by_key(&index, |event| event.index).ok();
    match time {
        Some(position) => format!("index {index} ({})", format_time(history.events[position].time)),
        None => format!("index {index}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{history, jsonl};

    const STALE_READ: &str = "p0 invoke write x a
        p0 ok write x a rev=1
        nemesis start partition {1} | {2,3}
        p0 invoke write x b
        p0 ok write x b rev=2
        nemesis stop partition
        p1 invoke read x
        p1 ok read x a rev=2 mod=1";

    /// Goal: the overall verdict is the worst checker verdict, and the text report shows the
    /// counts, each checker, and the offending operation with its line.
    #[test]
    fn report_shows_verdicts_and_the_offending_window() {
        let report = check_history(&history(STALE_READ), &CheckOptions::default());
        assert_eq!(report.overall(), Overall::Violation);
        assert_eq!(report.overall().exit_code(), 1);
        assert_eq!(report.checker(Checker::Revisions).verdict, Verdict::Valid);
        let text = report.to_string();
        assert!(text.contains("8 events, 3 operations on 1 keys, 1 faults"), "{text}");
        assert!(text.contains("→ line      7: p1 read \"x\" -> ok \"a\""), "{text}");
        assert!(text.ends_with("verdict: VIOLATION\n"), "{text}");
    }

    /// Goal: a watch violation prints the watcher's lines and the operations involved, merged in
    /// file order, with the culprit line marked. Method: a watcher whose first delivery skips
    /// revision 1.
    #[test]
    fn report_merges_watcher_lines_into_the_window() {
        let script = "p0 invoke write x a
            p0 ok write x a rev=1
            p0 invoke write x b
            p0 ok write x b rev=2
            w1 resume 1 node=2
            w1 event put x b 2 node=2";
        let report = check_history(&history(script), &CheckOptions::default());
        assert_eq!(report.overall(), Overall::Violation);
        assert_eq!(report.checker(Checker::LongPoll).verdict, Verdict::Valid);
        let text = report.to_string();
        let window = [
            "        line      1: p0 write \"x\" \"a\" -> ok rev 1",
            "        line      5: watch:1 resume from rev 1 prefix \"\" node 2 [#4, 5.000ms]",
            "      → line      6: watch:1 event put \"x\" \"b\" rev 2 node 2 [#5, 6.000ms]",
        ];
        let position = |line: &str| text.find(line).unwrap_or_else(|| panic!("{line:?} missing from\n{text}"));
        assert!(position(window[0]) < position(window[1]) && position(window[1]) < position(window[2]), "{text}");
        assert!(text.contains("  watch        VIOLATION (1)"), "{text}");
    }

    /// Goal: check_file writes a self-contained HTML report on a violation, with the timeline,
    /// the fault band and the culprit marked, and reports malformed files with their line.
    #[test]
    fn check_file_writes_html_report_on_violation() {
        let dir = std::env::temp_dir().join(format!("cairn-chaos-report-{}", std::process::id()));
        let path = dir.join("history.jsonl");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, jsonl(STALE_READ)).unwrap();
        let report = check_file(&path, Some(&dir), &CheckOptions::default()).unwrap();
        let Some(ReportFile::Written(html_path)) = &report.html_report else { panic!("{report:?}") };
        let html = std::fs::read_to_string(html_path).unwrap();
        assert!(html.contains("<svg") && html.contains("class=\"fault\"") && html.contains("culprit"));
        assert!(!html.contains("http://") && !html.contains("https://"), "no network references");
        std::fs::write(&path, "{}\n").unwrap();
        let error = check_file(&path, None, &CheckOptions::default()).unwrap_err();
        assert_eq!(error.line(), Some(1));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Goal: no report is written for a valid history unless asked for.
    #[test]
    fn valid_history_writes_no_report_unless_asked() {
        let dir = std::env::temp_dir().join(format!("cairn-chaos-valid-{}", std::process::id()));
        let path = dir.join("history.jsonl");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, jsonl("p0 invoke write x a\np0 ok write x a rev=1")).unwrap();
        let report = check_file(&path, Some(&dir), &CheckOptions::default()).unwrap();
        assert_eq!((report.overall(), &report.html_report), (Overall::Valid, &None));
        let always = CheckOptions { report_always: true, ..CheckOptions::default() };
        let report = check_file(&path, Some(&dir), &always).unwrap();
        assert!(matches!(report.html_report, Some(ReportFile::Written(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
