//! A nameable timeout future. madsim's `timeout` returns an anonymous type, and openraft's
//! `AsyncRuntime` needs a concrete one, so both runtimes share this small future over `Sleep`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::{Duration, Instant, Sleep, sleep, sleep_until};

/// The error of a [`Timeout`] whose deadline passed before its future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project! {
    /// Completes with the inner future's output, or with [`Elapsed`] once the deadline passes.
    /// The inner future is polled first, so a future that is ready at the deadline still wins.
    pub struct Timeout<F> {
        #[pin]
        future: F,
        #[pin]
        deadline: Sleep,
    }
}

impl<F> Timeout<F> {
    /// Bounds `future` by an already armed `deadline`.
    pub fn new(future: F, deadline: Sleep) -> Self {
        Timeout { future, deadline }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        this.deadline.poll(cx).map(|()| Err(Elapsed))
    }
}

/// Bounds `future` by `duration` from now.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout::new(future, sleep(duration))
}

/// Bounds `future` by an absolute `deadline`.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout::new(future, sleep_until(deadline))
}
