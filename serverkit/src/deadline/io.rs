//! A stream and a request body that move a connection's watch as the client's bytes arrive.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::watch::{Phase, Watch};

/// A stream that tells its watch what arrives (`on_read` gets the bytes just read), for the
/// deadlines that depend on what the client has sent.
pub struct Watched<S> {
    inner: S,
    watch: Watch,
    on_read: fn(&Watch, &[u8]),
}

impl<S> Watched<S> {
    /// `inner`, with `on_read` told of every read's bytes.
    pub fn new(inner: S, watch: Watch, on_read: fn(&Watch, &[u8])) -> Watched<S> {
        Watched {
            inner,
            watch,
            on_read,
        }
    }

    /// The stream, without the watch.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            (self.on_read)(&self.watch, &buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request's body that moves its watch from `Body` to `Busy` once it is read whole.
pub struct RequestBody {
    inner: Incoming,
    watch: Watch,
}

impl RequestBody {
    /// Enters `Body`, or `Busy` at once when there is no body to wait for.
    pub fn new(inner: Incoming, watch: Watch) -> RequestBody {
        watch.enter(if inner.is_end_stream() {
            Phase::Busy
        } else {
            Phase::Body
        });
        RequestBody { inner, watch }
    }

    /// When the request's first byte was read: where its latency starts.
    pub fn began(&self) -> std::time::Instant {
        self.watch.request_began().into_std()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.watch.enter(Phase::Busy);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
