//! hyper's timer over cairn's runtime seam. hyper-util's `TokioTimer` calls real tokio and would
//! panic inside the simulator; this one sleeps on whichever clock the node runs on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use cairn_node::rt;
use pin_project_lite::pin_project;

/// A `hyper::rt::Timer` backed by `cairn_node::rt` (tokio or madsim).
#[derive(Clone, Copy, Debug, Default)]
pub struct RuntimeTimer;

pin_project! {
    struct RuntimeSleep {
        #[pin]
        inner: rt::Sleep,
    }
}

impl Future for RuntimeSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().inner.poll(cx)
    }
}

impl hyper::rt::Sleep for RuntimeSleep {}

impl hyper::rt::Timer for RuntimeTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(RuntimeSleep { inner: rt::sleep(duration) })
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(RuntimeSleep { inner: rt::sleep_until_std(deadline) })
    }
}
