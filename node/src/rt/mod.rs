//! The runtime seam. Node code spawns, sleeps, reads the clock and draws random numbers only
//! through this module, so the same code runs on tokio in production and inside madsim's
//! deterministic simulator under `--cfg madsim` (madsim-tokio swaps the implementation behind the
//! `tokio` name; this module adds what either side lacks).

mod accept;
mod openraft_runtime;
mod timeout;
pub mod watch;

use std::future::Future;

pub use accept::accept_connections;
pub use openraft_runtime::CairnRuntime;
pub use std::time::Duration;
pub use timeout::{Elapsed, Timeout, timeout, timeout_at};
pub use tokio::task::{JoinError, JoinHandle};
pub use tokio::time::{Instant, Sleep, sleep, sleep_until};

/// Sleeps until a `std::time::Instant`, the clock type hyper and openraft speak. Under madsim it
/// is the simulator's virtual clock (madsim intercepts the libc clock).
#[cfg(not(madsim))]
pub fn sleep_until_std(deadline: std::time::Instant) -> Sleep {
    tokio::time::sleep_until(tokio::time::Instant::from_std(deadline))
}

/// See the production variant.
#[cfg(madsim)]
pub fn sleep_until_std(deadline: std::time::Instant) -> Sleep {
    tokio::time::sleep_until(deadline)
}

/// Spawns a task on the current runtime (the current simulated node under madsim).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

/// Runs blocking work (disk I/O) on tokio's blocking pool so it never stalls an async worker.
#[cfg(not(madsim))]
pub async fn run_blocking<F, T>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => panic!("blocking task failed: {error}"),
    }
}

/// Runs blocking work inline: the simulator has no threads, and simulated disks never block.
#[cfg(madsim)]
pub async fn run_blocking<F, T>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    work()
}

/// A random 64-bit value: seeded by the simulation seed under madsim, from the OS otherwise.
pub fn random_u64() -> u64 {
    madsim::rand::random::<u64>()
}

/// A fresh small RNG seeded from [`random_u64`], for code that needs an `Rng` value.
pub fn seeded_rng() -> rand::rngs::SmallRng {
    use rand::SeedableRng;
    rand::rngs::SmallRng::seed_from_u64(random_u64())
}

/// Sends one datagram. (madsim's `UdpSocket::send_to` takes the destination first.)
#[cfg(not(madsim))]
pub async fn send_datagram(
    socket: &tokio::net::UdpSocket,
    to: std::net::SocketAddr,
    datagram: &[u8],
) -> std::io::Result<()> {
    socket.send_to(datagram, to).await.map(drop)
}

/// See the production variant.
#[cfg(madsim)]
pub async fn send_datagram(
    socket: &tokio::net::UdpSocket,
    to: std::net::SocketAddr,
    datagram: &[u8],
) -> std::io::Result<()> {
    socket.send_to(to, datagram).await
}
