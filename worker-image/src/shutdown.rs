//! The process's stop request, shared by every wait in pod and agent modes. A signal
//! triggers it once; each call to the gateway and each backoff races it, so a worker
//! whose gateway is down or hung still exits within moments of SIGTERM. Owns the
//! signal handlers and the racing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// A stop request that any number of waits can watch; clones share it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A request not yet made.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// A request made on the first SIGINT or SIGTERM. The handlers are installed
    /// before this returns: until then a SIGTERM kills the process outright.
    pub fn on_signals() -> std::io::Result<Self> {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = Self::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            trigger.trigger();
        });
        Ok(shutdown)
    }

    /// Makes the request; waits already racing it end.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the request has been made.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// `fut`'s output, or `None` when the request is (or already was) made first;
    /// `fut` is then dropped, which cancels an HTTP call in flight.
    pub fn race<F: Future>(&self, fut: F) -> Race<F> {
        Race {
            fut: Box::pin(fut),
            stop: Box::pin(self.requested()),
        }
    }

    /// Like [`Shutdown::race`], but `fut` may run on for `grace` past the request (or
    /// past its own start, when the request came earlier): for reporting work already
    /// done, which is worth a short wait on the gateway but no more.
    pub fn grace<F: Future>(&self, grace: Duration, fut: F) -> Race<F> {
        let requested = self.requested();
        Race {
            fut: Box::pin(fut),
            stop: Box::pin(async move {
                requested.await;
                tokio::time::sleep(grace).await;
            }),
        }
    }

    /// The request as a future that owns what it watches, so a [`Race`] borrows nothing.
    fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        let tx = self.tx.clone();
        async move {
            // `tx` lives here, so `wait_for` cannot see the channel closed.
            let _ = tx.subscribe().wait_for(|stop| *stop).await;
        }
    }

    /// Sleeps for `d`; `false` when the request cut it short.
    pub async fn sleep(&self, d: Duration) -> bool {
        self.race(tokio::time::sleep(d)).await.is_some()
    }
}

/// A future raced against a stop request; see [`Shutdown::race`]. A plain struct
/// rather than an `async fn`: the compiler cannot prove an `async fn` wrapping a retry
/// of borrowing closures `Send`, which `tokio::spawn` needs.
pub struct Race<F> {
    fut: Pin<Box<F>>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<F> std::fmt::Debug for Race<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Race").finish_non_exhaustive()
    }
}

impl<F: Future> Future for Race<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        self.fut.as_mut().poll(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn a_request_ends_every_wait_racing_it() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        assert_eq!(s.race(async { 7 }).await, Some(7));
        let t = s.clone();
        let start = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            t.trigger();
        });
        assert!(!s.sleep(Duration::from_secs(30)).await);
        assert!(s.is_triggered());
        assert_eq!(s.race(std::future::pending::<()>()).await, None);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn grace_lets_a_call_finish_shortly_after_the_request() {
        let s = Shutdown::new();
        s.trigger();
        let quick = tokio::time::sleep(Duration::from_millis(10));
        assert_eq!(s.grace(Duration::from_secs(5), quick).await, Some(()));
        let start = Instant::now();
        let hung = std::future::pending::<()>();
        assert_eq!(s.grace(Duration::from_millis(50), hung).await, None);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
