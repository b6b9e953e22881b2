//! The evidence corpus of the verification pipeline: documents split into passages
//! ([`split`]), their embeddings in the store (SQLite or PostgreSQL, `0002_evidence.sql`) and in
//! an exact cosine index in memory ([`index`]), rebuilt from the store at start; and the
//! aggregation of a claim's NLI scores into a verdict ([`verdict`]).
//!
//! Embedding is not done here: the caller (the server, which batches and caches, or the CLI)
//! embeds passages and claims with the corpus' embedding model and hands the vectors over.

pub mod index;
pub mod report;
pub mod split;
pub mod verdict;

pub use index::{Hit, IndexError, PassageRef, VectorIndex};
pub use report::{report, ClaimReport, ClaimTimings};
pub use verdict::{decide, Decision, Verdict};

use crate::store::{EvidenceDocument, EvidencePassage, Store, StoreError};
use serde::Serialize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("evidence store: {0}")]
    Store(#[from] StoreError),
    #[error("evidence index: {0}")]
    Index(#[from] IndexError),
    #[error("the evidence index could not be built at start: {0}")]
    LoadFailed(String),
    #[error("the evidence index is still being built from the store")]
    Loading,
}

pub type Result<T> = std::result::Result<T, CorpusError>;

/// Word pieces per passage unless asked otherwise: a few sentences, short enough for NLI
/// premises to stay focused.
pub const DEFAULT_PASSAGE_TOKENS: usize = 64;
/// Passages retrieved per claim unless asked otherwise.
pub const DEFAULT_TOP_K: usize = 10;
/// Passages less similar than this to the claim are not evidence (cosine of the pack's MiniLM:
/// passages on the claim's subject score about 0.4 and up, unrelated ones below 0.2).
pub const DEFAULT_MIN_SCORE: f32 = 0.25;

/// Where the index stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "error", rename_all = "snake_case")]
pub enum CorpusState {
    /// Reading the store (and embedding passages of another model again).
    Loading,
    Ready,
    /// The store could not be read at start; ingest and verify answer 503.
    Failed(String),
}

/// A document id made from its text when the client gives none: the same text gets the same id,
/// so posting it again replaces it rather than adding a copy.
pub fn document_id_for(text: &str) -> String {
    let h = blake3::hash(text.as_bytes());
    format!("doc-{}", &h.to_hex()[..24])
}

/// The corpus: store + index. Writes are serialized (one document at a time) so the index always
/// matches the store; searches run concurrently with each other.
pub struct Corpus {
    store: Arc<Store>,
    index: RwLock<VectorIndex>,
    /// The embedding model (name, revision) of the indexed vectors, once known.
    model: Mutex<Option<(String, String)>>,
    documents: Mutex<usize>,
    /// The store's fingerprint the index matches (see [`Corpus::changed_elsewhere`]).
    fingerprint: Mutex<Option<(i64, i64)>>,
    writes: tokio::sync::Mutex<()>,
    state: watch::Sender<CorpusState>,
}

/// What a rebuild found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Passages indexed as stored.
    pub indexed: usize,
    pub documents: usize,
    /// Passages embedded by another model or revision: the caller embeds them again and hands
    /// them to [`Corpus::finish_load`].
    pub stale: Vec<EvidencePassage>,
}

/// `/v1/stats` and `GET /v1/evidence`.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusStats {
    #[serde(flatten)]
    pub state: CorpusState,
    pub documents: usize,
    pub passages: usize,
    pub dimensions: usize,
    /// The embedding model of the index.
    pub model: Option<String>,
}

impl Corpus {
    pub fn new(store: Arc<Store>) -> Arc<Self> {
        Arc::new(Corpus {
            store,
            index: RwLock::new(VectorIndex::new()),
            model: Mutex::new(None),
            documents: Mutex::new(0),
            fingerprint: Mutex::new(None),
            writes: tokio::sync::Mutex::new(()),
            state: watch::channel(CorpusState::Loading).0,
        })
    }

    pub fn state(&self) -> CorpusState {
        self.state.borrow().clone()
    }

    /// Waits until the index is ready (or failed), at most `wait`.
    pub async fn ready(&self, wait: Duration) -> Result<()> {
        let mut rx = self.state.subscribe();
        let settled = tokio::time::timeout(wait, async {
            loop {
                if *rx.borrow_and_update() != CorpusState::Loading {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        match (settled, self.state()) {
            (_, CorpusState::Ready) => Ok(()),
            (_, CorpusState::Failed(e)) => Err(CorpusError::LoadFailed(e)),
            _ => Err(CorpusError::Loading),
        }
    }

    /// Every stored passage (the start of a rebuild or a refresh); remembers the store's
    /// fingerprint they match.
    pub async fn read_store(&self) -> Result<Vec<EvidencePassage>> {
        let read = async {
            let fp = self.store.evidence_fingerprint().await?;
            let rows = self.store.evidence_passages().await?;
            Ok::<_, StoreError>((fp, rows))
        };
        match read.await {
            Ok((fp, rows)) => {
                *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp);
                Ok(rows)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Holds off this replica's writes (a refresh reads the store and swaps the index under it,
    /// so no write of ours lands between the read and the swap).
    pub async fn lock_writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Whether the store changed since the index was built or last written by this replica:
    /// another replica on the same database added, replaced or deleted a document. A store
    /// that does not answer is not a change (the next poll asks again).
    pub async fn changed_elsewhere(&self) -> bool {
        match self.store.evidence_fingerprint().await {
            Ok(fp) => *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) != Some(fp),
            Err(e) => {
                tracing::debug!(error = %e, "evidence refresh: the store did not answer");
                false
            }
        }
    }

    /// After one of this replica's writes: the remembered fingerprint moves by exactly that
    /// write (`documents` more, `created` more in the sum of creation times). It is never read
    /// back from the store here: the store's value may already hold another replica's write,
    /// which the index lacks, and taking it would hide that write from
    /// [`Corpus::changed_elsewhere`] for good.
    fn note_own_write(&self, documents: i64, created: i64) {
        let mut fp = self.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((count, sum)) = fp.as_mut() {
            *count += documents;
            *sum = sum.wrapping_add(created);
        }
    }

    /// Indexes the stored passages of `model` at `revision` (from [`Corpus::read_store`]) and
    /// hands the others back as stale. The index stays `Loading` until [`Corpus::finish_load`].
    pub fn index_loaded(
        &self,
        rows: Vec<EvidencePassage>,
        model: &str,
        revision: &str,
    ) -> Result<LoadReport> {
        let t = Instant::now();
        let mut report = LoadReport::default();
        let mut index = VectorIndex::new();
        let mut docs = std::collections::HashSet::new();
        for p in rows {
            docs.insert(p.document_id.clone());
            if p.model == model && p.revision == revision {
                index.add(passage_ref(&p), &p.embedding)?;
                report.indexed += 1;
            } else {
                report.stale.push(p);
            }
        }
        report.documents = docs.len();
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        *self.documents.lock().unwrap_or_else(|p| p.into_inner()) = docs.len();
        *self.model.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((model.to_string(), revision.to_string()));
        tracing::info!(
            passages = report.indexed,
            documents = report.documents,
            stale = report.stale.len(),
            took_ms = t.elapsed().as_millis() as u64,
            "evidence index loaded from the store"
        );
        Ok(report)
    }

    /// Saves and indexes passages embedded again (from [`LoadReport::stale`]), then marks the
    /// index ready.
    pub async fn finish_load(&self, reembedded: Vec<EvidencePassage>) -> Result<()> {
        if !reembedded.is_empty() {
            self.store.update_evidence_embeddings(&reembedded).await?;
            let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
            for p in &reembedded {
                index.add(passage_ref(p), &p.embedding)?;
            }
            tracing::info!(
                passages = reembedded.len(),
                "evidence passages of another embedding model embedded again"
            );
        }
        self.state.send_replace(CorpusState::Ready);
        Ok(())
    }

    /// Marks the index failed (the store could not be read, or embedding failed at start).
    pub fn fail(&self, message: String) {
        tracing::error!(error = %message, "the evidence index could not be built");
        self.state.send_replace(CorpusState::Failed(message));
    }

    /// Marks the index ready when the store holds no passages (nothing to index).
    pub fn mark_ready(&self, model: &str, revision: &str) {
        *self.model.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((model.to_string(), revision.to_string()));
        self.state.send_replace(CorpusState::Ready);
    }

    /// Stores a document with its embedded passages and indexes them, replacing a document with
    /// the same id. Returns whether one was replaced.
    pub async fn put(&self, doc: &EvidenceDocument, passages: &[EvidencePassage]) -> Result<bool> {
        let dim = self.dimensions();
        if let Some(p) = passages
            .iter()
            .find(|p| dim != 0 && p.embedding.len() != dim)
        {
            return Err(IndexError::Dimensions {
                want: dim,
                got: p.embedding.len(),
            }
            .into());
        }
        for p in passages {
            index::normalized(&p.embedding)?;
        }
        let _w = self.writes.lock().await;
        let replaced = self.store.put_evidence(doc, passages).await?;
        self.reindex_document(&doc.id, passages)?;
        match replaced {
            Some(old) => self.note_own_write(0, doc.created_at.wrapping_sub(old)),
            None => {
                *self.documents.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                self.note_own_write(1, doc.created_at);
            }
        }
        Ok(replaced.is_some())
    }

    /// Replaces a document's passages in the index (no await while the index is locked).
    fn reindex_document(&self, id: &str, passages: &[EvidencePassage]) -> Result<()> {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        index.remove_document(id);
        for p in passages {
            index.add(passage_ref(p), &p.embedding)?;
        }
        Ok(())
    }

    /// A stored document and its passages.
    pub async fn get(&self, id: &str) -> Result<Option<(EvidenceDocument, Vec<EvidencePassage>)>> {
        Ok(self.store.evidence_document(id).await?)
    }

    /// Deletes a document from the store and the index; false when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let _w = self.writes.lock().await;
        let gone = self.store.delete_evidence(id).await?;
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove_document(id);
        if let Some(created) = gone {
            let mut d = self.documents.lock().unwrap_or_else(|p| p.into_inner());
            *d = d.saturating_sub(1);
            self.note_own_write(-1, created.wrapping_neg());
        }
        Ok(gone.is_some())
    }

    /// The `k` passages closest to `query` with a cosine of at least `min_score`, best first.
    pub fn search(&self, query: &[f32], k: usize, min_score: f32) -> Result<Vec<Hit>> {
        Ok(self
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .search(query, k, min_score)?)
    }

    pub fn dimensions(&self) -> usize {
        self.index.read().unwrap_or_else(|p| p.into_inner()).dim()
    }

    pub fn stats(&self) -> CorpusStats {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        CorpusStats {
            state: self.state(),
            documents: *self.documents.lock().unwrap_or_else(|p| p.into_inner()),
            passages: index.len(),
            dimensions: index.dim(),
            model: self
                .model
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|m| m.0.clone()),
        }
    }
}

fn passage_ref(p: &EvidencePassage) -> PassageRef {
    PassageRef {
        document_id: p.document_id.as_str().into(),
        position: p.position,
        text: p.text.as_str().into(),
        start_char: p.start_char,
        end_char: p.end_char,
    }
}

#[cfg(test)]
mod tests;
