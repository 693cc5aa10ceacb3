//! Request bodies that must keep arriving: a body gets `initial` to start
//! and one more second for every `min_rate` bytes received, up to `max` in
//! all (Apache's mod_reqtimeout rule `body=20,MinRate=500`). A client that
//! trickles a body to hold a connection and a handler open is cut off; a
//! slow but honest upload of a whole site's CSV is not. The clock starts
//! when the handler first reads, so time a request waits before its body
//! is wanted (an import queued behind another) is not the client's.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

#[derive(Clone, Copy, Debug)]
pub struct BodyTimeouts {
    pub initial: Duration,
    /// Bytes that buy one more second.
    pub min_rate: u64,
    pub max: Duration,
}

/// The error a body that stopped arriving ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not sent in time")]
pub struct BodyTimedOut;

pub struct TimedBody<B> {
    inner: B,
    limits: BodyTimeouts,
    /// Set on the first read.
    clock: Option<Clock>,
}

struct Clock {
    started: Instant,
    allowed: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl<B> TimedBody<B> {
    pub fn new(inner: B, limits: BodyTimeouts) -> Self {
        TimedBody { inner, limits, clock: None }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let limits = this.limits;
        let clock = this.clock.get_or_insert_with(|| {
            let started = Instant::now();
            Clock { started, allowed: limits.initial, sleep: Box::pin(tokio::time::sleep_until(started + limits.initial)) }
        });
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let more = Duration::from_secs_f64(data.len() as f64 / limits.min_rate.max(1) as f64);
                    clock.allowed = (clock.allowed + more).min(limits.max);
                    clock.sleep.as_mut().reset(clock.started + clock.allowed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match clock.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that yields `chunks` of `size` bytes, `gap` apart.
    fn trickle(chunks: usize, size: usize, gap: Duration) -> impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin {
        let stream = futures_lite::stream::unfold(0, move |i| async move {
            if i == chunks {
                return None;
            }
            tokio::time::sleep(gap).await;
            Some((Ok(Frame::data(Bytes::from(vec![b'x'; size]))), i + 1))
        });
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    const LIMITS: BodyTimeouts = BodyTimeouts { initial: Duration::from_secs(20), min_rate: 500, max: Duration::from_secs(600) };

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off() {
        // One byte a second: 20 s of credit, and each byte buys only 2 ms.
        let body = TimedBody::new(trickle(70, 1, Duration::from_secs(1)), LIMITS);
        let Err(err) = body.collect().await else { panic!("a trickle must be cut off") };
        assert!(err.downcast_ref::<BodyTimedOut>().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_honest_upload_gets_through() {
        // 64 KiB a second for 60 s: slow, but far above the minimum rate.
        let body = TimedBody::new(trickle(60, 64 * 1024, Duration::from_secs(1)), LIMITS);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 60 * 64 * 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_counts_before_the_first_read() {
        let body = TimedBody::new(trickle(1, 10, Duration::from_secs(1)), LIMITS);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(body.collect().await.is_ok());
    }
}
