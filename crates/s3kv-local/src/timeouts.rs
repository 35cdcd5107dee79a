//! Read timeouts for both servers, so that a client that stops sending cannot hold a connection (or the S3
//! endpoint's mutation lock, which a PUT holds while its body streams in) for ever: API Gateway and S3 close such
//! connections too.
//!
//! hyper closes a connection whose request head has not arrived within the timeout (`header_read_timeout`);
//! [`IdleBody`] fails a request body that stops arriving for as long.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

/// How long a request's head, or the gap between two parts of its body, may take by default.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection builder whose HTTP/1 connections close when a request head takes longer than `read_timeout`.
pub fn builder(read_timeout: Duration) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    builder
}

/// What a body that stopped arriving fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body stopped arriving for {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body that fails with [`BodyTimedOut`] when no part of it arrives for `idle`.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let next = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(next);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.idle))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
