//! The schema: numbered SQL migrations per backend (`crates/runtime/migrations/{sqlite,postgres}`),
//! embedded in the binary and applied at start through sqlx's migrator, which records them in
//! `_sqlx_migrations` (with a checksum) and, on PostgreSQL, holds an advisory lock so replicas
//! starting together migrate once.

use super::Backend;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

/// (version, description, SQL). Add the next step to both lists, with the same number.
const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "predictions",
        include_str!("../../migrations/sqlite/0001_predictions.sql"),
    ),
    (
        2,
        "evidence",
        include_str!("../../migrations/sqlite/0002_evidence.sql"),
    ),
];

const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "predictions",
        include_str!("../../migrations/postgres/0001_predictions.sql"),
    ),
    (
        2,
        "evidence",
        include_str!("../../migrations/postgres/0002_evidence.sql"),
    ),
];

/// The migrations of one backend, as a sqlx migration source.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Embedded(pub Backend);

impl Embedded {
    pub fn migrations(self) -> Vec<Migration> {
        let list = match self.0 {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        list.iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect()
    }
}

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move { Ok(self.migrations()) })
    }
}

/// The migrator of a backend. A database migrated by a newer nlpd (with steps this one does not
/// know) is accepted, so replicas can be upgraded one at a time.
pub(crate) async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    let mut m = Migrator::new(Embedded(backend)).await?;
    m.set_ignore_missing(true);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_steps() {
        let s: Vec<_> = SQLITE.iter().map(|(v, d, _)| (*v, *d)).collect();
        let p: Vec<_> = POSTGRES.iter().map(|(v, d, _)| (*v, *d)).collect();
        assert_eq!(s, p);
        for (i, (v, _)) in s.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1, "versions are 1, 2, 3, ...");
        }
        assert!(Embedded(Backend::Sqlite).migrations()[0]
            .sql
            .contains("CREATE TABLE predictions"));
    }
}
