//! Replicas sharing one store: each one's index learns of the others' writes
//! ([`Corpus::changed_elsewhere`]) however their writes interleave, and never of its own.

use super::*;
use crate::store::StoreConfig;

fn temp_dir() -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("nlpd-corpus-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn doc(id: &str, created_at: i64) -> (EvidenceDocument, Vec<EvidencePassage>) {
    let doc = EvidenceDocument {
        id: id.into(),
        source: None,
        text: format!("text of {id}"),
        created_at,
    };
    let passage = EvidencePassage {
        document_id: id.into(),
        position: 0,
        start_char: 0,
        end_char: doc.text.chars().count() as i32,
        text: doc.text.clone(),
        tokens: 3,
        model: "m".into(),
        revision: "r".into(),
        embedding: vec![1.0, 0.0],
    };
    (doc, vec![passage])
}

async fn put(c: &Corpus, id: &str, created_at: i64) {
    let (d, p) = doc(id, created_at);
    c.put(&d, &p).await.expect("put");
}

#[tokio::test]
async fn each_replica_sees_the_others_writes_however_they_interleave() {
    let dir = temp_dir();
    let store = Store::open(StoreConfig::sqlite_in(&dir))
        .await
        .expect("store");
    let (a, b) = (Corpus::new(store.clone()), Corpus::new(store.clone()));
    for c in [&a, &b] {
        c.read_store().await.expect("read");
        assert!(!c.changed_elsewhere().await);
    }
    // A writes, then B writes before its refresh: B's own write must not hide A's.
    put(&a, "doc-a", 1_000).await;
    put(&b, "doc-b", 2_000).await;
    assert!(b.changed_elsewhere().await, "B lacks A's document");
    assert!(a.changed_elsewhere().await, "A lacks B's document");
    // A refresh (reading the store) catches up.
    for c in [&a, &b] {
        c.read_store().await.expect("read");
        assert!(!c.changed_elsewhere().await);
    }
    // A replacement and a delete by one are changes for the other, never for itself.
    put(&a, "doc-b", 3_000).await;
    assert!(!a.changed_elsewhere().await, "A's own replacement");
    assert!(b.changed_elsewhere().await, "A replaced a document");
    b.read_store().await.expect("read");
    assert!(b.delete("doc-a").await.expect("delete"));
    assert!(!b.changed_elsewhere().await, "B's own delete");
    assert!(a.changed_elsewhere().await, "B deleted a document");
    // Deleting what is not there changes nothing.
    a.read_store().await.expect("read");
    assert!(!a.delete("doc-none").await.expect("delete"));
    assert!(!a.changed_elsewhere().await && !b.changed_elsewhere().await);
    store.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&dir);
}
