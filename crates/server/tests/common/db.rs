//! Databases for store tests: fresh SQLite directories and fresh PostgreSQL databases.

use super::missing;
use std::path::PathBuf;
use std::time::Duration;

pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}_{}_{nanos}", std::process::id())
}

/// A fresh directory for one test's SQLite database (not created: the store creates it).
pub fn sqlite_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(unique(&format!("nlpd-store-{tag}")))
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a fresh database per test, dropped afterwards.
// ---------------------------------------------------------------------------------------------

pub fn pg_admin_url() -> String {
    std::env::var("NLPD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database `nlpd_test_<random>` on the machine's PostgreSQL, dropped when this goes away.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Option<PgDatabase> {
        let admin = pg_admin_url();
        let connect = sqlx::PgPool::connect(&admin);
        let pool = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                missing(&format!("no PostgreSQL at {admin} ({e})"));
                return None;
            }
            Err(_) => {
                missing(&format!("no PostgreSQL at {admin} (timed out)"));
                return None;
            }
        };
        let name = unique("nlpd_test").to_ascii_lowercase();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("CREATE DATABASE");
        pool.close().await;
        let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
        Some(PgDatabase {
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (pg_admin_url(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    if let Err(e) = sqlx::query(&sql).execute(&pool).await {
                        eprintln!("could not drop test database {name}: {e}");
                    }
                    pool.close().await;
                }
            });
        })
        .join();
    }
}
