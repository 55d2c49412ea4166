//! The in-process transport: subjects are keys of one table, subscribers are bounded
//! tokio channels. Nothing to install; the default.
//!
//! Exact subjects only (no wildcards). A queue group hands each message to one member,
//! round-robin. A full subscriber makes the publisher wait (backpressure), never drops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::transport::Message;

/// Messages a subscriber may have waiting before publishers wait.
pub(crate) const CAPACITY: usize = 1024;

type Tx = mpsc::Sender<Message>;

#[derive(Default)]
struct Listeners {
    plain: Vec<(u64, Tx)>,
    groups: Vec<Group>,
}

struct Group {
    name: String,
    members: Vec<(u64, Tx)>,
    next: AtomicU64,
}

#[derive(Default)]
struct Table {
    subjects: HashMap<Arc<str>, Listeners>,
}

/// The in-process bus: cheap to clone, shared by every stage of the process.
#[derive(Clone, Default)]
pub(crate) struct InProc {
    table: Arc<RwLock<Table>>,
    ids: Arc<AtomicU64>,
}

/// Removes its subscription from the table when dropped.
pub(crate) struct Unsubscribe {
    table: Arc<RwLock<Table>>,
    subject: Arc<str>,
    sub: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let mut table = write(&self.table);
        let empty = match table.subjects.get_mut(&self.subject) {
            Some(l) => {
                l.plain.retain(|(id, _)| *id != self.sub);
                for g in &mut l.groups {
                    g.members.retain(|(id, _)| *id != self.sub);
                }
                l.groups.retain(|g| !g.members.is_empty());
                l.plain.is_empty() && l.groups.is_empty()
            }
            None => false,
        };
        if empty {
            table.subjects.remove(&self.subject);
        }
    }
}

// A panic while holding this lock cannot leave the table inconsistent (every update is a
// single push or retain), so a poisoned lock is still usable.
fn write(table: &RwLock<Table>) -> RwLockWriteGuard<'_, Table> {
    table.write().unwrap_or_else(|p| p.into_inner())
}

fn read(table: &RwLock<Table>) -> RwLockReadGuard<'_, Table> {
    table.read().unwrap_or_else(|p| p.into_inner())
}

impl InProc {
    pub(crate) fn subscribe(
        &self,
        subject: &str,
        group: Option<&str>,
    ) -> (mpsc::Receiver<Message>, Unsubscribe) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        let sub = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut table = write(&self.table);
        let key: Arc<str> = match table.subjects.get_key_value(subject) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(subject),
        };
        let listeners = table.subjects.entry(Arc::clone(&key)).or_default();
        match group {
            None => listeners.plain.push((sub, tx)),
            Some(name) => match listeners.groups.iter_mut().find(|g| g.name == name) {
                Some(g) => g.members.push((sub, tx)),
                None => listeners.groups.push(Group {
                    name: name.to_owned(),
                    members: vec![(sub, tx)],
                    next: AtomicU64::new(0),
                }),
            },
        }
        drop(table);
        let guard = Unsubscribe {
            table: Arc::clone(&self.table),
            subject: key,
            sub,
        };
        (rx, guard)
    }

    /// Delivers to every plain subscriber and one member of each group; returns how many
    /// got it. Sends that fit go out under the lock; a full subscriber is awaited after.
    pub(crate) async fn publish(&self, subject: &str, payload: Bytes, reply: Option<String>) -> usize {
        let mut waiting: Vec<(Tx, Message)> = Vec::new();
        let mut delivered = 0;
        {
            let table = read(&self.table);
            let Some((key, listeners)) = table.subjects.get_key_value(subject) else {
                return 0;
            };
            let picks = listeners
                .groups
                .iter()
                .filter(|g| !g.members.is_empty())
                .map(|g| {
                    let turn = g.next.fetch_add(1, Ordering::Relaxed) as usize;
                    &g.members[turn % g.members.len()].1
                });
            for tx in listeners.plain.iter().map(|(_, tx)| tx).chain(picks) {
                let message = Message {
                    subject: Arc::clone(key),
                    payload: payload.clone(),
                    reply: reply.clone(),
                };
                match tx.try_send(message) {
                    Ok(()) => delivered += 1,
                    Err(mpsc::error::TrySendError::Full(m)) => waiting.push((tx.clone(), m)),
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        for (tx, m) in waiting {
            if tx.send(m).await.is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// A fresh subject for one reply.
    pub(crate) fn inbox(&self) -> String {
        format!("_INBOX.{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }
}
