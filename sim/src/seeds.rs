//! Running a simulation once per seed, printing the one command that replays a failure.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use madsim::Config;
use madsim::runtime::Runtime;

/// Which test a seed belongs to, so a failure can print how to replay exactly it.
#[derive(Clone, Copy, Debug)]
pub struct Replay {
    /// The integration test binary (`--test NAME`).
    pub test_binary: &'static str,
    /// The test function's name.
    pub test_name: &'static str,
}

impl Replay {
    /// The command that replays `seed` alone.
    pub fn command(&self, seed: u64) -> String {
        format!("MADSIM_TEST_SEED={seed} cargo sim --test {} -- {} --exact", self.test_binary, self.test_name)
    }
}

/// The seeds to run: `MADSIM_TEST_SEED` alone when set (a replay), otherwise `default`.
pub fn seeds(default: impl IntoIterator<Item = u64>) -> Vec<u64> {
    match std::env::var("MADSIM_TEST_SEED") {
        Ok(seed) => vec![seed.parse().expect("MADSIM_TEST_SEED is an integer")],
        Err(_) => default.into_iter().collect(),
    }
}

/// Runs `simulation` in a fresh simulator for `seed` with a virtual time limit, on a thread of
/// its own: madsim seeds std's `HashMap` per thread, which fails on a thread that already made
/// one. On a panic, prints the replay command and re-raises.
pub fn run_seed<F, Fut, T>(replay: Replay, seed: u64, time_limit: Duration, simulation: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let started = Instant::now();
    let outcome = std::thread::spawn(move || {
        panic::catch_unwind(AssertUnwindSafe(|| {
            let mut runtime = Runtime::with_seed_and_config(seed, Config::default());
            runtime.set_time_limit(time_limit);
            init_logging();
            runtime.block_on(simulation())
        }))
    })
    .join()
    .expect("the simulation thread reports its outcome");
    match outcome {
        Ok(value) => {
            eprintln!("seed {seed}: ok in {:.1}s", started.elapsed().as_secs_f64());
            value
        }
        Err(panic) => {
            eprintln!("seed {seed} FAILED; replay it with:\n    {}", replay.command(seed));
            panic::resume_unwind(panic)
        }
    }
}

/// Logs to stderr when `CAIRN_SIM_LOG` holds a filter (e.g. `info` or `cairn_node=debug`);
/// timestamps are the simulator's virtual clock.
fn init_logging() {
    if let Ok(filter) = std::env::var("CAIRN_SIM_LOG") {
        let filter = tracing_subscriber::EnvFilter::try_new(filter).expect("CAIRN_SIM_LOG is a valid filter");
        let _ =
            tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr).try_init();
    }
}
