//! The evidence corpus in the database (migration `0002_evidence.sql`): documents and their
//! embedded passages. Writes of one document are one transaction, so a document is either all
//! there (with every passage) or not at all. The vector index is rebuilt from
//! [`Db::evidence_passages`] at start.

use super::db::{placeholder, Db, Pool};
use super::{Backend, Result};
use sqlx::Row;

/// A document as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceDocument {
    pub id: String,
    pub source: Option<String>,
    pub text: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One passage of a document, with its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidencePassage {
    pub document_id: String,
    /// 0, 1, 2, ... in document order.
    pub position: i32,
    /// The passage is the document's text between these character (not byte) offsets.
    pub start_char: i32,
    pub end_char: i32,
    pub text: String,
    /// Word pieces by the embedding model's tokenizer.
    pub tokens: i32,
    /// The embedding model and its revision.
    pub model: String,
    pub revision: String,
    /// L2-normalized.
    pub embedding: Vec<f32>,
}

const PASSAGE_COLUMNS: [&str; 9] = [
    "document_id",
    "position",
    "start_char",
    "end_char",
    "text",
    "tokens",
    "model",
    "revision",
    "embedding",
];

/// Passages per INSERT: 9 parameters each, far below both backends' limits.
const PASSAGES_PER_STATEMENT: usize = 500;

/// Runs `$body` with `$p` bound to the pool, whichever backend it is (the body is compiled once
/// per backend).
macro_rules! with_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match &$db.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// `$1, $2, ...` SQL in the backend's placeholder style.
fn sql_for(backend: Backend, sql: &str) -> String {
    match backend {
        Backend::Postgres => sql.to_string(),
        Backend::Sqlite => sql.replace('$', "?"),
    }
}

fn insert_passages_sql(backend: Backend, rows: usize) -> String {
    let mut s = format!(
        "INSERT INTO evidence_passages ({}) VALUES ",
        PASSAGE_COLUMNS.join(", ")
    );
    let mut n = 0;
    for r in 0..rows {
        s.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..PASSAGE_COLUMNS.len() {
            n += 1;
            if c > 0 {
                s.push_str(", ");
            }
            s.push_str(&placeholder(backend, n));
        }
        s.push(')');
    }
    s
}

/// f32 little endian.
pub(crate) fn embedding_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn embedding_from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

const SELECT_PASSAGES: &str = "SELECT document_id, position, start_char, end_char, text, tokens, \
     model, revision, embedding FROM evidence_passages";

fn passage_of<R: Row>(row: &R) -> std::result::Result<EvidencePassage, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Vec<u8>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let blob: Vec<u8> = row.try_get(8)?;
    Ok(EvidencePassage {
        document_id: row.try_get(0)?,
        position: row.try_get(1)?,
        start_char: row.try_get(2)?,
        end_char: row.try_get(3)?,
        text: row.try_get(4)?,
        tokens: row.try_get(5)?,
        model: row.try_get(6)?,
        revision: row.try_get(7)?,
        embedding: embedding_from_bytes(&blob),
    })
}

fn document_of<R: Row>(row: &R) -> std::result::Result<EvidenceDocument, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(EvidenceDocument {
        id: row.try_get(0)?,
        source: row.try_get(1)?,
        text: row.try_get(2)?,
        created_at: row.try_get(3)?,
    })
}

/// Deletes one document, answering its `created_at` (the evidence fingerprint's part of it).
const DELETE_DOCUMENT: &str = "DELETE FROM evidence_documents WHERE id = $1 RETURNING created_at";

impl Db {
    /// Stores a document with its passages, replacing any document with the same id (and all its
    /// passages), in one transaction. Returns the replaced document's `created_at`, if any.
    pub async fn put_evidence(
        &self,
        doc: &EvidenceDocument,
        passages: &[EvidencePassage],
    ) -> Result<Option<i64>> {
        let backend = self.backend();
        let del_p = sql_for(
            backend,
            "DELETE FROM evidence_passages WHERE document_id = $1",
        );
        let del_d = sql_for(backend, DELETE_DOCUMENT);
        let ins_d = sql_for(
            backend,
            "INSERT INTO evidence_documents (id, source, text, created_at) VALUES ($1, $2, $3, $4)",
        );
        self.timed(async {
            let replaced = with_pool!(self, p => {
                let mut tx = p.begin().await?;
                sqlx::query(&del_p).bind(&doc.id).execute(&mut *tx).await?;
                let gone: Option<i64> = sqlx::query_scalar(&del_d)
                    .bind(&doc.id)
                    .fetch_optional(&mut *tx)
                    .await?;
                sqlx::query(&ins_d)
                    .bind(&doc.id)
                    .bind(doc.source.as_deref())
                    .bind(&doc.text)
                    .bind(doc.created_at)
                    .execute(&mut *tx)
                    .await?;
                for chunk in passages.chunks(PASSAGES_PER_STATEMENT) {
                    let sql = insert_passages_sql(backend, chunk.len());
                    let mut q = sqlx::query(&sql).persistent(false);
                    for r in chunk {
                        q = q
                            .bind(&r.document_id)
                            .bind(r.position)
                            .bind(r.start_char)
                            .bind(r.end_char)
                            .bind(&r.text)
                            .bind(r.tokens)
                            .bind(&r.model)
                            .bind(&r.revision)
                            .bind(embedding_bytes(&r.embedding));
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                gone
            });
            Ok(replaced)
        })
        .await
    }

    /// A document and its passages (in order), if stored.
    pub async fn evidence_document(
        &self,
        id: &str,
    ) -> Result<Option<(EvidenceDocument, Vec<EvidencePassage>)>> {
        let backend = self.backend();
        let sel_d = sql_for(
            backend,
            "SELECT id, source, text, created_at FROM evidence_documents WHERE id = $1",
        );
        let sel_p = sql_for(
            backend,
            &format!("{SELECT_PASSAGES} WHERE document_id = $1 ORDER BY position"),
        );
        self.timed(async {
            let found = with_pool!(self, p => {
                match sqlx::query(&sel_d).bind(id).fetch_optional(p).await? {
                    None => None,
                    Some(row) => {
                        let doc = document_of(&row)?;
                        let passages = sqlx::query(&sel_p)
                            .bind(id)
                            .fetch_all(p)
                            .await?
                            .iter()
                            .map(passage_of)
                            .collect::<std::result::Result<Vec<_>, _>>()?;
                        Some((doc, passages))
                    }
                }
            });
            Ok(found)
        })
        .await
    }

    /// Deletes a document and its passages; its `created_at`, or `None` when there was none.
    pub async fn delete_evidence(&self, id: &str) -> Result<Option<i64>> {
        let backend = self.backend();
        let del_p = sql_for(
            backend,
            "DELETE FROM evidence_passages WHERE document_id = $1",
        );
        let del_d = sql_for(backend, DELETE_DOCUMENT);
        self.timed(async {
            let gone = with_pool!(self, p => {
                let mut tx = p.begin().await?;
                sqlx::query(&del_p).bind(id).execute(&mut *tx).await?;
                let gone: Option<i64> = sqlx::query_scalar(&del_d)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                tx.commit().await?;
                gone
            });
            Ok(gone)
        })
        .await
    }

    /// Every stored passage (what the vector index is built from), by document and position.
    /// Not under the operation timeout: a large corpus takes a while to read.
    pub async fn evidence_passages(&self) -> Result<Vec<EvidencePassage>> {
        let sql = format!("{SELECT_PASSAGES} ORDER BY document_id, position");
        let rows = with_pool!(self, p => sqlx::query(&sql)
            .fetch_all(p)
            .await?
            .iter()
            .map(passage_of)
            .collect::<std::result::Result<Vec<_>, _>>()?);
        Ok(rows)
    }

    /// What changes when any replica adds, replaces or deletes a document: the number of
    /// documents and the sum of their creation times (a replaced document gets a new one).
    pub async fn evidence_fingerprint(&self) -> Result<(i64, i64)> {
        let sql = "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(created_at), 0) AS BIGINT) \
                   FROM evidence_documents";
        self.timed(async {
            let fp = with_pool!(self, p => {
                let row = sqlx::query(sql).fetch_one(p).await?;
                (row.try_get::<i64, _>(0)?, row.try_get::<i64, _>(1)?)
            });
            Ok(fp)
        })
        .await
    }

    /// Replaces the embedding (and model, revision) of passages embedded again by another model.
    pub async fn update_evidence_embeddings(&self, passages: &[EvidencePassage]) -> Result<()> {
        let sql = sql_for(
            self.backend(),
            "UPDATE evidence_passages SET embedding = $1, model = $2, revision = $3, tokens = $4 \
             WHERE document_id = $5 AND position = $6",
        );
        with_pool!(self, p => {
            let mut tx = p.begin().await?;
            for r in passages {
                sqlx::query(&sql)
                    .bind(embedding_bytes(&r.embedding))
                    .bind(&r.model)
                    .bind(&r.revision)
                    .bind(r.tokens)
                    .bind(&r.document_id)
                    .bind(r.position)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_through_bytes() {
        let v = vec![0.25f32, -1.5, 3.0e-7, f32::MAX];
        let b = embedding_bytes(&v);
        assert_eq!(b.len(), 16);
        assert_eq!(embedding_from_bytes(&b), v);
    }

    #[test]
    fn placeholders_follow_the_backend() {
        assert_eq!(
            sql_for(Backend::Sqlite, "WHERE a = $1 AND b = $2"),
            "WHERE a = ?1 AND b = ?2"
        );
        let s = insert_passages_sql(Backend::Postgres, 2);
        assert!(s.contains("($1, $2, $3, $4, $5, $6, $7, $8, $9), ($10,"));
        assert!(s.ends_with("$18)"));
    }
}
