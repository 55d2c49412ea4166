//! Who is alive: every replica publishes a [`Beat`] every [`BEAT_INTERVAL`]; every
//! process keeps the table of what it heard. The ingress routes new requests to live
//! replicas and ends requests whose replicas went quiet for [`BEAT_TIMEOUT`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::task::JoinHandle;

use crate::codec::{count_bad_message, decode, encode};
use crate::message::{Beat, SCHEMA_VERSION};
use crate::{subject, Bus, InstanceId, Stage, BEAT_INTERVAL, BEAT_TIMEOUT};

#[derive(Debug, Clone, Copy)]
struct Member {
    stage: Stage,
    load: u32,
    seen: Instant,
    leaving: bool,
}

/// The replicas this process has heard from.
#[derive(Debug, Clone, Default)]
pub struct Members {
    table: Arc<RwLock<HashMap<InstanceId, Member>>>,
}

impl Members {
    /// Notes a heartbeat.
    pub fn record(&self, beat: &Beat) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        table.insert(
            beat.instance,
            Member {
                stage: beat.stage,
                load: beat.load,
                seen: Instant::now(),
                leaving: beat.leaving,
            },
        );
        // Forget replicas long gone, so the table does not grow with restarts.
        if table.len() > 64 {
            table.retain(|_, m| m.seen.elapsed() < BEAT_TIMEOUT * 30);
        }
    }

    /// Whether a replica was heard from within [`BEAT_TIMEOUT`] and is not leaving.
    pub fn alive(&self, instance: InstanceId) -> bool {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table
            .get(&instance)
            .is_some_and(|m| !m.leaving && m.seen.elapsed() < BEAT_TIMEOUT)
    }

    /// Whether a replica is known to be gone: heard from once, but not within
    /// [`BEAT_TIMEOUT`], or said goodbye. A replica never heard of is not gone (this
    /// process may have started after it).
    pub fn gone(&self, instance: InstanceId) -> bool {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        table
            .get(&instance)
            .is_some_and(|m| m.leaving || m.seen.elapsed() >= BEAT_TIMEOUT)
    }

    /// The live replicas of a stage with their last reported load, lowest id first.
    pub fn live(&self, stage: Stage) -> Vec<(InstanceId, u32)> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(InstanceId, u32)> = table
            .iter()
            .filter(|(_, m)| m.stage == stage && !m.leaving && m.seen.elapsed() < BEAT_TIMEOUT)
            .map(|(id, m)| (*id, m.load))
            .collect();
        out.sort_unstable();
        out
    }
}

/// Listens on `braid.beat` and fills `members`. Beats of another schema version are
/// refused (logged once per replica): such a replica is never routed to.
pub async fn listen(bus: &Bus, members: Members) -> crate::Result<JoinHandle<()>> {
    let mut sub = bus.subscribe(subject::BEAT).await?;
    Ok(tokio::spawn(async move {
        let mut refused: Vec<InstanceId> = Vec::new();
        while let Some(msg) = sub.next().await {
            match decode::<Beat>(&msg.subject, &msg.payload) {
                Ok(beat) if beat.version == SCHEMA_VERSION => members.record(&beat),
                Ok(beat) => {
                    if !refused.contains(&beat.instance) {
                        refused.push(beat.instance);
                        tracing::error!(
                            "replica {} ({}) speaks schema version {}, this one {SCHEMA_VERSION}: not routing to it",
                            beat.instance,
                            beat.stage,
                            beat.version
                        );
                    }
                }
                Err(e) => count_bad_message(Stage::Ingress, &e),
            }
        }
    }))
}

/// A replica's heartbeat: publishes its load every [`BEAT_INTERVAL`] until
/// [`Heart::stop`], which sends a last beat marked leaving.
#[derive(Debug)]
pub struct Heart {
    stopped: Arc<AtomicBool>,
    task: JoinHandle<()>,
    bus: Bus,
    beat: Beat,
}

impl Heart {
    /// Starts beating for `instance` of `stage`; `load` is read at every beat.
    pub fn start(bus: &Bus, instance: InstanceId, stage: Stage, load: Arc<AtomicU32>) -> Heart {
        let stopped = Arc::new(AtomicBool::new(false));
        let beat = Beat {
            version: SCHEMA_VERSION,
            instance,
            stage,
            load: 0,
            leaving: false,
        };
        let task = {
            let (bus, stopped) = (bus.clone(), Arc::clone(&stopped));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(BEAT_INTERVAL);
                while !stopped.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let beat = Beat {
                        load: load.load(Ordering::Relaxed),
                        ..beat
                    };
                    if let Err(e) = bus.publish(subject::BEAT, encode(&beat)).await {
                        tracing::debug!("beat not sent: {e}");
                    }
                }
            })
        };
        Heart {
            stopped,
            task,
            bus: bus.clone(),
            beat,
        }
    }

    /// Stops beating and says goodbye, so routes move away at once.
    pub async fn stop(self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.task.abort();
        let bye = Beat {
            leaving: true,
            ..self.beat
        };
        let _ = self.bus.publish(subject::BEAT, encode(&bye)).await;
        let _ = self.bus.flush().await;
    }
}
