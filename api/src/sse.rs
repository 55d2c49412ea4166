//! The one server-sent-events loop every streaming protocol shares: events waiting to go
//! out are sent first; then the next chunk of the response becomes the protocol's events;
//! after the last chunk (or a stream that ended early) the protocol closes. A protocol
//! supplies only what it does with a chunk and how it ends ([`Streamer`]), and, if it
//! pings, how long silence lasts before one.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use braid_bus::{Chunk, Response as Stream};

/// What a protocol does with a response's chunks as they stream.
pub(crate) trait Streamer: Send + 'static {
    /// How long a silent stream waits before [`Streamer::ping`] (`None`: never).
    const PING: Option<Duration> = None;

    /// The event that keeps a silent stream open.
    fn ping(&mut self, _out: &mut VecDeque<Event>) {}

    /// The events of one chunk.
    fn chunk(&mut self, chunk: &Chunk, out: &mut VecDeque<Event>);

    /// The closing events, once after the last chunk.
    fn close(&mut self, out: &mut VecDeque<Event>) -> impl Future<Output = ()> + Send;
}

struct Run<S> {
    stream: Option<Stream>,
    streamer: S,
    pending: VecDeque<Event>,
}

/// `stream` as server-sent events: `first`, then what `streamer` makes of it.
pub(crate) fn events<S: Streamer>(
    stream: Stream,
    streamer: S,
    first: VecDeque<Event>,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let run = Run {
        stream: Some(stream),
        streamer,
        pending: first,
    };
    let events = futures_util::stream::unfold(run, |mut r| async move {
        loop {
            if let Some(event) = r.pending.pop_front() {
                return Some((Ok(event), r));
            }
            let stream = r.stream.as_mut()?;
            let next = match S::PING {
                Some(every) => match tokio::time::timeout(every, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        r.streamer.ping(&mut r.pending);
                        continue;
                    }
                },
                None => stream.next().await,
            };
            let last = next.as_ref().is_none_or(|c| c.finish.is_some());
            if let Some(chunk) = next {
                r.streamer.chunk(&chunk, &mut r.pending);
            }
            if last {
                r.stream = None;
                r.streamer.close(&mut r.pending).await;
            }
        }
    });
    Sse::new(events)
}
