//! The one server-sent-events loop every streaming protocol shares, and the one way a
//! protocol's delta machine ([`Machine`]) is fed, streamed or whole. The loop: events waiting to go
//! out are sent first; then the next chunk of the response becomes the protocol's events;
//! after the last chunk (or a stream that ended early) the protocol closes. A protocol
//! supplies only what it does with a chunk and how it ends ([`Streamer`]), and, if it
//! pings, how long silence lasts before one.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use braid_bus::{Chunk, Collected, Delta, Response as Stream};

/// A protocol's state machine from the bus's deltas to its own events (Messages' content
/// blocks, Responses' output items). A streamed response sends the events as they come;
/// a whole one is all of them, collected ([`collect`]).
pub(crate) trait Machine {
    /// One event.
    type Event;

    /// The events of one delta.
    fn push(&mut self, delta: &Delta, out: &mut Vec<Self::Event>);

    /// The events that end the output (the open block or item closed).
    fn close(&mut self, out: &mut Vec<Self::Event>);
}

/// One chunk through `machine`, and into `all`: its events.
pub(crate) fn feed<M: Machine>(machine: &mut M, all: &mut Collected, chunk: &Chunk) -> Vec<M::Event> {
    all.push(chunk);
    let mut events = Vec::new();
    for d in &chunk.deltas {
        machine.push(d, &mut events);
    }
    events
}

/// A whole response through `machine`: everything it said, and every event, the closing
/// ones included.
pub(crate) async fn collect<M: Machine>(mut stream: Stream, machine: &mut M) -> (Collected, Vec<M::Event>) {
    let mut all = Collected::default();
    let mut events = Vec::new();
    while let Some(chunk) = stream.next().await {
        events.extend(feed(machine, &mut all, &chunk));
    }
    machine.close(&mut events);
    (all, events)
}

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
