//! Single flight: the first request to miss a key leads its computation, later ones wait on a
//! `watch` channel for the leader's value. A leader that fails or is dropped (client gone,
//! deadline) closes the channel without a value, and its followers compute the key themselves.

use super::codec::CachedValue;
use super::key::CacheKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

type Slot = watch::Receiver<Option<Arc<CachedValue>>>;

#[derive(Default)]
pub(crate) struct Flight {
    map: Mutex<HashMap<CacheKey, Slot>>,
    waiters: Arc<AtomicUsize>,
}

pub(crate) enum Role<'a> {
    Lead(Lead<'a>),
    Wait(Wait),
}

/// The right and duty to compute one key. Dropping it (published or not) ends the flight.
pub(crate) struct Lead<'a> {
    flight: &'a Flight,
    key: CacheKey,
    tx: watch::Sender<Option<Arc<CachedValue>>>,
}

pub(crate) struct Wait {
    rx: Slot,
    waiters: Arc<AtomicUsize>,
}

impl Flight {
    pub fn join(&self, key: CacheKey) -> Role<'_> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(&key) {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            return Role::Wait(Wait {
                rx: rx.clone(),
                waiters: self.waiters.clone(),
            });
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key, rx);
        Role::Lead(Lead {
            flight: self,
            key,
            tx,
        })
    }

    /// Keys being computed now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Requests waiting for another's computation now.
    pub fn waiters(&self) -> usize {
        self.waiters.load(Ordering::SeqCst)
    }
}

impl Lead<'_> {
    /// Hands the value to every follower (call after filling L1, so a request arriving after the
    /// flight ends finds it there).
    pub fn publish(self, v: Arc<CachedValue>) {
        let _ = self.tx.send(Some(v));
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        let mut map = self.flight.map.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

impl Wait {
    /// The leader's value, or `None` when it ended without one.
    pub async fn result(mut self) -> Option<Arc<CachedValue>> {
        let r = self
            .rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        r
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
