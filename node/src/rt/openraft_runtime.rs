//! openraft's `AsyncRuntime` over [`crate::rt`], so the raft actor spawns, sleeps and draws random
//! election timeouts through the same seam as the rest of the node. openraft's own tokio runtime
//! calls real tokio and would escape the simulator.

use std::future::Future;
use std::io;

use openraft::async_runtime::{
    Mpsc, MpscReceiver, MpscSender, MpscWeakSender, Oneshot, OneshotSender, SendError, TryRecvError,
    watch as raft_watch,
};
use openraft::{AsyncRuntime, OptionalSend, OptionalSync};
use tokio::sync::{mpsc, oneshot};

use super::watch;
use super::{Duration, JoinError, JoinHandle, Sleep, Timeout};

/// The runtime cairn gives openraft: tokio in production, madsim under `--cfg madsim`.
#[derive(Debug, Default)]
pub struct CairnRuntime {
    #[cfg(not(madsim))]
    runtime: Option<tokio::runtime::Runtime>,
}

/// openraft's clock. `std::time::Instant` is virtual under madsim (it intercepts the libc clock)
/// and matches tokio's clock in production.
type RaftInstant = std::time::Instant;

impl AsyncRuntime for CairnRuntime {
    type JoinError = JoinError;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = RaftInstant;
    type TimeoutError = super::Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = rand::rngs::SmallRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        super::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        super::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        super::sleep_until_std(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        super::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Timeout::new(future, super::sleep_until_std(deadline))
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        join_error.is_panic()
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        super::seeded_rng()
    }

    type Mpsc = CairnMpsc;
    type Watch = CairnWatch;
    type Oneshot = CairnOneshot;
    type Mutex<T: OptionalSend + 'static> = CairnMutex<T>;

    #[cfg(not(madsim))]
    fn new(threads: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("a tokio runtime can be built");
        CairnRuntime { runtime: Some(runtime) }
    }

    #[cfg(madsim)]
    fn new(_threads: usize) -> Self {
        CairnRuntime {}
    }

    #[cfg(not(madsim))]
    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.runtime.as_ref().expect("built by CairnRuntime::new").block_on(future)
    }

    #[cfg(madsim)]
    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        madsim::runtime::Runtime::new().block_on(future)
    }

    async fn spawn_blocking<F, T>(f: F) -> Result<T, io::Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Ok(super::run_blocking(f).await)
    }
}

/// Bounded tokio channels: their wake order is FIFO, so they are deterministic under madsim.
pub struct CairnMpsc;

pub struct CairnMpscSender<T>(mpsc::Sender<T>);
pub struct CairnMpscReceiver<T>(mpsc::Receiver<T>);
pub struct CairnMpscWeakSender<T>(mpsc::WeakSender<T>);

impl<T> Clone for CairnMpscSender<T> {
    fn clone(&self) -> Self {
        CairnMpscSender(self.0.clone())
    }
}

impl<T> Clone for CairnMpscWeakSender<T> {
    fn clone(&self) -> Self {
        CairnMpscWeakSender(self.0.clone())
    }
}

impl Mpsc for CairnMpsc {
    type Sender<T: OptionalSend> = CairnMpscSender<T>;
    type Receiver<T: OptionalSend> = CairnMpscReceiver<T>;
    type WeakSender<T: OptionalSend> = CairnMpscWeakSender<T>;

    fn channel<T: OptionalSend>(buffer: usize) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = mpsc::channel(buffer);
        (CairnMpscSender(tx), CairnMpscReceiver(rx))
    }
}

impl<T: OptionalSend> MpscSender<CairnMpsc, T> for CairnMpscSender<T> {
    async fn send(&self, msg: T) -> Result<(), SendError<T>> {
        self.0.send(msg).await.map_err(|e| SendError(e.0))
    }

    fn downgrade(&self) -> CairnMpscWeakSender<T> {
        CairnMpscWeakSender(self.0.downgrade())
    }
}

impl<T: OptionalSend> MpscReceiver<T> for CairnMpscReceiver<T> {
    fn recv(&mut self) -> impl Future<Output = Option<T>> + OptionalSend {
        self.0.recv()
    }

    fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.0.try_recv().map_err(|e| match e {
            mpsc::error::TryRecvError::Empty => TryRecvError::Empty,
            mpsc::error::TryRecvError::Disconnected => TryRecvError::Disconnected,
        })
    }
}

impl<T: OptionalSend> MpscWeakSender<CairnMpsc, T> for CairnMpscWeakSender<T> {
    fn upgrade(&self) -> Option<CairnMpscSender<T>> {
        self.0.upgrade().map(CairnMpscSender)
    }
}

/// openraft's watch over [`watch`], the deterministic channel.
pub struct CairnWatch;

pub struct CairnWatchSender<T>(watch::Sender<T>);
pub struct CairnWatchReceiver<T>(watch::Receiver<T>);

impl<T> Clone for CairnWatchSender<T> {
    fn clone(&self) -> Self {
        CairnWatchSender(self.0.clone())
    }
}

impl<T> Clone for CairnWatchReceiver<T> {
    fn clone(&self) -> Self {
        CairnWatchReceiver(self.0.clone())
    }
}

impl raft_watch::Watch for CairnWatch {
    type Sender<T: OptionalSend + OptionalSync> = CairnWatchSender<T>;
    type Receiver<T: OptionalSend + OptionalSync> = CairnWatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = watch::Ref<'a, T>;

    fn channel<T: OptionalSend + OptionalSync>(init: T) -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = watch::channel(init);
        (CairnWatchSender(tx), CairnWatchReceiver(rx))
    }
}

impl<T: OptionalSend + OptionalSync> raft_watch::WatchSender<CairnWatch, T> for CairnWatchSender<T> {
    fn send(&self, value: T) -> Result<(), raft_watch::SendError<T>> {
        self.0.send(value).map_err(|e| raft_watch::SendError(e.0))
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        self.0.send_if_modified(modify)
    }

    fn borrow_watched(&self) -> watch::Ref<'_, T> {
        self.0.borrow()
    }

    fn subscribe(&self) -> CairnWatchReceiver<T> {
        CairnWatchReceiver(self.0.subscribe())
    }
}

impl<T: OptionalSend + OptionalSync> raft_watch::WatchReceiver<CairnWatch, T> for CairnWatchReceiver<T> {
    async fn changed(&mut self) -> Result<(), raft_watch::RecvError> {
        self.0.changed().await.map_err(|_| raft_watch::RecvError(()))
    }

    fn borrow_watched(&self) -> watch::Ref<'_, T> {
        self.0.borrow()
    }

    fn borrow_and_update(&mut self) -> watch::Ref<'_, T> {
        self.0.borrow_and_update()
    }
}

pub struct CairnOneshot;

pub struct CairnOneshotSender<T>(oneshot::Sender<T>);

impl Oneshot for CairnOneshot {
    type Sender<T: OptionalSend> = CairnOneshotSender<T>;
    type Receiver<T: OptionalSend> = oneshot::Receiver<T>;
    type ReceiverError = oneshot::error::RecvError;

    fn channel<T: OptionalSend>() -> (Self::Sender<T>, Self::Receiver<T>) {
        let (tx, rx) = oneshot::channel();
        (CairnOneshotSender(tx), rx)
    }
}

impl<T: OptionalSend> OneshotSender<T> for CairnOneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

pub struct CairnMutex<T>(tokio::sync::Mutex<T>);

impl<T: OptionalSend + 'static> openraft::async_runtime::Mutex<T> for CairnMutex<T> {
    type Guard<'a> = tokio::sync::MutexGuard<'a, T>;

    fn new(value: T) -> Self {
        CairnMutex(tokio::sync::Mutex::new(value))
    }

    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> + OptionalSend {
        self.0.lock()
    }
}

#[cfg(test)]
mod tests {
    use openraft::rt::testing::Suite;

    use super::CairnRuntime;

    /// openraft's own conformance suite for runtimes: spawn, timers, channels, watch, mutex.
    #[test]
    fn cairn_runtime_passes_openraft_runtime_suite() {
        Suite::<CairnRuntime>::test_all();
    }
}
