//! Prefix-aware routing of the executor. Every tool round of an interleaved conversation
//! sends the whole conversation again, so the round is cheap only on the executor replica
//! whose prefix cache holds it. The tokenizer stage is the first to know a prompt's
//! tokens; it asks the [`Router`] which live executor holds the longest cached prefix of
//! them (when that is at least half the prompt), weighed against the replicas' load, and
//! sends the request there; other prompts go to the least busy replica (the ingress's
//! round-robin pick stands only under `--executor-routing round-robin`).
//!
//! What each executor's cache holds comes from its [`CacheNews`] on `braid.cache`:
//! chain hashes of full blocks, as changes at most every 50 ms and whole every 2 s. Between
//! two reports the router also counts what it just sent: the prompt's blocks are taken as
//! cached on the chosen replica, and its load as one higher for a beat interval, so a
//! burst is spread and a conversation's next round finds its replica at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use braid_bus::{decode, subject, Bus, CacheNews, InstanceId, Stage, BEAT_INTERVAL, SCHEMA_VERSION};
use braid_engine::chain_hashes;
use tokio::task::JoinHandle;

/// How the tokenizer stage chooses a request's executor replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// The replica with the longest cached prefix of the prompt, unless it is much busier
    /// than the least busy one.
    #[default]
    Prefix,
    /// The ingress's pick: live replicas in turn.
    RoundRobin,
}

/// Why the router chose a replica (the `outcome` label of
/// `braid_routing_decisions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It holds the longest cached prefix of the prompt.
    PrefixHit,
    /// No replica holds any of it (or those that do are too busy): the least busy one.
    LoadFallback,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::PrefixHit => "prefix_hit",
            Outcome::LoadFallback => "load_fallback",
        }
    }
}

/// What one request a replica already holds costs a new one there, in prompt tokens to
/// prefill: a batching engine takes a new request into its next step, so a queue costs
/// little next to prefilling a long conversation again; only a replica much busier than
/// another loses a prompt it holds.
const LOAD_TOKENS: usize = 32;

/// The share of a prompt a replica must hold for its cache to decide. Below it (a new
/// conversation that shares only the system prompt, held everywhere soon) the prompt
/// goes to the least busy replica, and among equals to the one holding least, so new
/// conversations spread over the replicas instead of piling onto the first one that
/// cached the common start (SGLang's cache-aware router decides the same way).
const DECISIVE_SHARE: f64 = 0.5;

/// How long a routing decision counts as load the replica's heartbeat may not show yet.
const RECENT: Duration = Duration::from_millis(2 * BEAT_INTERVAL.as_millis() as u64);

/// A replica unheard from for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// What the router knows of one executor replica.
#[derive(Debug)]
struct View {
    /// Tokens per block of its cache (0: it never reported a cache).
    block_size: usize,
    /// The next news expected from it.
    next_seq: u64,
    /// Chain hashes of the blocks it holds.
    blocks: HashSet<u64>,
    /// Its free cache blocks, as last reported.
    free_blocks: usize,
    /// When requests were sent to it lately.
    routed: VecDeque<Instant>,
    /// When it was last heard from or routed to.
    heard: Instant,
}

impl View {
    fn new() -> View {
        View {
            block_size: 0,
            next_seq: 0,
            blocks: HashSet::new(),
            free_blocks: usize::MAX,
            routed: VecDeque::new(),
            heard: Instant::now(),
        }
    }
}

/// The executors' prefix caches as reported, and the choice made from them.
#[derive(Debug, Default)]
pub struct Router {
    views: Mutex<HashMap<InstanceId, View>>,
}

/// One replica weighed for a prompt.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    id: InstanceId,
    /// Leading tokens of the prompt it holds (whole blocks).
    matched: usize,
    /// Requests it holds, with those sent lately.
    load: usize,
    /// Whether its free blocks cannot hold the rest of the prompt.
    short: bool,
    /// Blocks it holds in all.
    held: usize,
}

impl Router {
    /// Takes in one executor's news.
    pub fn record(&self, news: CacheNews) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        let view = views.entry(news.instance).or_insert_with(View::new);
        view.heard = Instant::now();
        view.free_blocks = news.free_blocks as usize;
        if news.full || news.block_size as usize != view.block_size {
            view.blocks.clear();
            view.block_size = news.block_size as usize;
        }
        if !news.full && news.seq != view.next_seq {
            // Some news was lost: what is known may be stale until the next whole report,
            // which costs routing hits, never correctness.
            tracing::debug!(
                "router: news {} of executor {} missed; {} came",
                view.next_seq,
                news.instance,
                news.seq
            );
        }
        view.next_seq = news.seq + 1;
        for h in news.removed {
            view.blocks.remove(&h);
        }
        view.blocks.extend(news.stored);
    }

    /// The executor for a prompt among the `live` ones (with their reported load), and
    /// why; `None` when none is live.
    pub fn pick(&self, prompt: &[u32], live: &[(InstanceId, u32)]) -> Option<(InstanceId, Outcome)> {
        let now = Instant::now();
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        views.retain(|_, v| now.duration_since(v.heard) < FORGET_AFTER);
        // The prompt's chain hashes, for the block size replicas report (one, in practice).
        let mut hashes: (usize, Vec<u64>) = (0, Vec::new());
        let candidates: Vec<Candidate> = live
            .iter()
            .map(|&(id, load)| {
                let view = views.entry(id).or_insert_with(View::new);
                while view
                    .routed
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= RECENT)
                {
                    view.routed.pop_front();
                }
                let load = load as usize + view.routed.len();
                if view.block_size == 0 {
                    return Candidate {
                        id,
                        matched: 0,
                        load,
                        short: false,
                        held: 0,
                    };
                }
                if hashes.0 != view.block_size {
                    hashes = (view.block_size, chain_hashes(prompt, view.block_size).collect());
                }
                let matched = hashes.1.iter().take_while(|h| view.blocks.contains(h)).count();
                let need = prompt.len().div_ceil(view.block_size) - matched;
                Candidate {
                    id,
                    matched: matched * view.block_size,
                    load,
                    short: view.free_blocks < need,
                    held: view.blocks.len(),
                }
            })
            .collect();
        let decisive =
            |c: &Candidate| c.matched > 0 && c.matched as f64 >= DECISIVE_SHARE * prompt.len() as f64;
        let least = candidates.iter().min_by_key(|c| (c.short, c.load, c.held))?;
        // Where some replica holds most of the prompt: the cheapest place to run it, the
        // tokens left to prefill weighed against the requests each one holds.
        let cheapest = candidates
            .iter()
            .filter(|c| !c.short)
            .min_by_key(|c| {
                (
                    prompt.len() - c.matched.min(prompt.len()) + LOAD_TOKENS * c.load,
                    c.load,
                )
            })
            .filter(|_| candidates.iter().any(|c| !c.short && decisive(c)));
        let chosen = *cheapest.unwrap_or(least);
        let outcome = if decisive(&chosen) {
            Outcome::PrefixHit
        } else {
            Outcome::LoadFallback
        };
        tracing::debug!("router: {candidates:?} for {} tokens: {outcome:?}", prompt.len());
        if let Some(view) = views.get_mut(&chosen.id) {
            view.routed.push_back(now);
            view.heard = now;
            if view.block_size == hashes.0 {
                view.blocks.extend(hashes.1.iter().copied());
            }
        }
        metrics::counter!("braid_routing_decisions_total", "outcome" => outcome.as_str()).increment(1);
        Some((chosen.id, outcome))
    }
}

/// Feeds `router` every executor's news from `braid.cache`.
pub async fn listen(bus: &Bus, router: Arc<Router>) -> braid_bus::Result<JoinHandle<()>> {
    let mut sub = bus.subscribe(subject::CACHE).await?;
    Ok(tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            match decode::<CacheNews>(&msg.subject, &msg.payload) {
                Ok(news) if news.version == SCHEMA_VERSION => router.record(news),
                Ok(_) => {}
                Err(e) => braid_bus::count_bad_message(Stage::Tokenizer, &e),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn news(instance: InstanceId, seq: u64, full: bool, stored: Vec<u64>) -> CacheNews {
        CacheNews {
            version: SCHEMA_VERSION,
            instance,
            seq,
            block_size: 4,
            full,
            stored,
            removed: Vec::new(),
            free_blocks: 1000,
        }
    }

    fn ids() -> (InstanceId, InstanceId) {
        let (a, b) = (InstanceId::random(), InstanceId::random());
        if a < b {
            (a, b)
        } else {
            (b, a)
        }
    }

    #[test]
    fn a_prompt_goes_where_its_prefix_is_cached_unless_that_replica_is_much_busier() {
        let router = Router::default();
        let (a, b) = ids();
        let prompt: Vec<u32> = (0..400).collect();
        let cached: Vec<u64> = chain_hashes(&prompt, 4).take(60).collect();
        router.record(news(a, 0, true, Vec::new()));
        router.record(news(b, 0, true, cached[..20].to_vec()));
        router.record(news(b, 1, false, cached[20..].to_vec()));
        assert_eq!(
            router.pick(&prompt, &[(a, 0), (b, 3)]),
            Some((b, Outcome::PrefixHit))
        );
        // Much busier than the other: the cache does not outweigh the queue.
        assert_eq!(
            router.pick(&prompt, &[(a, 0), (b, 40)]),
            Some((a, Outcome::LoadFallback))
        );
        // A prompt nobody holds goes to the least busy replica.
        let other: Vec<u32> = (100..140).collect();
        assert_eq!(
            router.pick(&other, &[(a, 5), (b, 2)]),
            Some((b, Outcome::LoadFallback))
        );
        assert_eq!(router.pick(&other, &[]), None);
    }

    #[test]
    fn what_was_just_sent_counts_as_cached_and_as_load() {
        let router = Router::default();
        let (a, b) = ids();
        router.record(news(a, 0, true, Vec::new()));
        router.record(news(b, 0, true, Vec::new()));
        // Eight new conversations at once, beats not yet updated: spread evenly.
        let picks: Vec<InstanceId> = (0..8u32)
            .map(|i| {
                let prompt: Vec<u32> = (i * 1000..i * 1000 + 16).collect();
                router.pick(&prompt, &[(a, 0), (b, 0)]).map(|p| p.0).unwrap_or(a)
            })
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == a).count(), 4, "{picks:?}");
        // Each conversation's next round goes where its first went.
        for (i, &first) in picks.iter().enumerate() {
            let i = i as u32;
            let longer: Vec<u32> = (i * 1000..i * 1000 + 24).collect();
            assert_eq!(
                router.pick(&longer, &[(a, 4), (b, 4)]),
                Some((first, Outcome::PrefixHit))
            );
        }
    }

    #[test]
    fn new_conversations_sharing_only_a_short_start_spread_over_the_replicas() {
        let router = Router::default();
        let (a, b) = ids();
        let system: Vec<u32> = (0..80).collect();
        let conversation =
            |c: u32| -> Vec<u32> { system.iter().copied().chain(c * 1000..c * 1000 + 240).collect() };
        router.record(news(a, 0, true, chain_hashes(&conversation(1), 4).collect()));
        router.record(news(b, 0, true, Vec::new()));
        // A holds the common start, a quarter of the prompt: not enough to pile onto A.
        assert_eq!(
            router.pick(&conversation(2), &[(a, 0), (b, 0)]),
            Some((b, Outcome::LoadFallback))
        );
        // Its own next round, held mostly by B now, stays there.
        let mut next = conversation(2);
        next.extend(90_000..90_040);
        assert_eq!(
            router.pick(&next, &[(a, 0), (b, 0)]),
            Some((b, Outcome::PrefixHit))
        );
    }

    #[test]
    fn removed_blocks_and_whole_reports_replace_what_was_known() {
        let router = Router::default();
        let (a, b) = ids();
        let prompt: Vec<u32> = (0..400).collect();
        let hashes: Vec<u64> = chain_hashes(&prompt, 4).collect();
        router.record(news(a, 0, true, hashes.clone()));
        router.record(news(b, 0, true, Vec::new()));
        assert_eq!(
            router.pick(&prompt, &[(a, 1), (b, 0)]).map(|p| p.1),
            Some(Outcome::PrefixHit)
        );
        let mut gone = news(a, 1, false, Vec::new());
        gone.removed = hashes.clone();
        router.record(gone);
        router.record(news(a, 2, true, Vec::new()));
        router.record(news(b, 1, true, hashes));
        assert_eq!(
            router.pick(&prompt, &[(a, 0), (b, 1)]),
            Some((b, Outcome::PrefixHit))
        );
    }
}
