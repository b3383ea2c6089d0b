//! A bound on the gateway's open connections: an acceptor that holds one semaphore
//! permit per connection, for as long as the connection lives, and drops a connection
//! that finds none (before its TLS handshake, so an idle flood costs no crypto).

use axum_server::accept::Accept;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Wraps an acceptor so at most `max` connections are open at once.
#[derive(Debug, Clone)]
pub struct ConnLimit<A> {
    inner: A,
    permits: Arc<Semaphore>,
}

impl<A> ConnLimit<A> {
    /// `inner`, limited to `max` open connections.
    pub fn new(inner: A, max: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

impl<A, I, S> Accept<I, S> for ConnLimit<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Unpin,
{
    type Stream = Limited<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // `stream` is dropped here: the connection closes at once.
            return Box::pin(async {
                Err(io::Error::other(
                    "the gateway's connection limit is reached",
                ))
            });
        };
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((
                Limited {
                    inner: stream,
                    _permit: permit,
                },
                service,
            ))
        })
    }
}

/// A connection holding its permit.
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_server::accept::DefaultAcceptor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_past_the_limit_are_dropped_and_a_closed_one_frees_its_slot() {
        let limit = ConnLimit::new(DefaultAcceptor, 1);
        let (a, mut a_peer) = tokio::io::duplex(64);
        let (first, ()) = limit.accept(a, ()).await.unwrap();
        let (b, _) = tokio::io::duplex(64);
        assert!(
            limit.accept(b, ()).await.is_err(),
            "a second connection is refused"
        );
        // The first still works.
        let mut first = first;
        first.write_all(b"hi").await.unwrap();
        let mut got = [0u8; 2];
        a_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hi");
        drop(first);
        let (c, _) = tokio::io::duplex(64);
        assert!(limit.accept(c, ()).await.is_ok(), "its slot is free again");
    }
}
