//! Real PostgreSQL for tests: a fresh database per test on the shared server, or a private
//! cluster for the tests that stop and start the server on purpose.

use std::path::PathBuf;
use std::process::Command;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgConnection};

use crate::{repo_root, unique_suffix, TempDir};

/// The server tests create their databases on. `scripts/test` starts a throwaway cluster and
/// sets it; a developer may point it at any server where the user can CREATE DATABASE.
fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| {
            panic!(
                "no PostgreSQL for the tests: run them with scripts/test (it starts a throwaway \
             cluster), or set TEST_DATABASE_URL to a server where you may CREATE DATABASE"
            )
        })
}

/// A database of its own, created from `db/init.sql`, dropped when the test ends.
pub struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    /// A fresh database on TEST_DATABASE_URL's server.
    pub async fn create() -> TestDb {
        TestDb::create_on(&admin_url()).await
    }

    /// A fresh database on the server of the admin URL `admin`.
    pub async fn create_on(admin: &str) -> TestDb {
        let name = format!("test_{}", unique_suffix());
        let mut conn = PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test server {admin}: {e}"));
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("CREATE DATABASE");
        conn.close().await.ok();

        let url = with_database(admin, &name);
        let mut conn = PgConnection::connect(&url)
            .await
            .expect("connecting to the new database");
        conn.execute(sqlx::raw_sql(&init_sql()))
            .await
            .expect("applying db/init.sql");
        conn.close().await.ok();
        TestDb {
            admin: admin.to_owned(),
            name,
            url,
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A direct connection, for looking behind the API's back.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connecting to the test database")
    }

    /// The client's balance and the number of its transactions, read straight from the tables.
    pub async fn balance_and_count(&self, client: i32) -> (i32, i64) {
        let mut conn = self.connect().await;
        let row: (i32, i64) = sqlx::query_as(
            "SELECT saldo, (SELECT count(*) FROM transacoes WHERE cliente_id = $1) FROM clientes WHERE id = $1",
        )
        .bind(client)
        .fetch_one(&mut conn)
        .await
        .expect("reading the balance");
        row
    }
}

/// A client's row held with SELECT ... FOR UPDATE by a transaction of the test's own, so
/// that the API's transactions on that client wait, until `release`.
pub struct RowLock(PgConnection);

impl RowLock {
    /// Commits, letting the waiting transactions go on.
    pub async fn release(mut self) {
        self.0.execute("COMMIT").await.expect("COMMIT");
    }
}

impl TestDb {
    /// Holds client `client`'s row lock (SELECT ... FOR UPDATE in an open transaction) until released.
    pub async fn lock_client(&self, client: i32) -> RowLock {
        let mut conn = self.connect().await;
        conn.execute("BEGIN").await.expect("BEGIN");
        sqlx::query("SELECT 1 FROM clientes WHERE id = $1 FOR UPDATE")
            .bind(client)
            .execute(&mut conn)
            .await
            .expect("locking the row");
        RowLock(conn)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

pub(crate) fn init_sql() -> String {
    std::fs::read_to_string(repo_root().join("db/init.sql")).expect("reading db/init.sql")
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
    options.database(name).to_url_lossy().to_string()
}

/// A PostgreSQL cluster of the test's own, started with `scripts/pg-cluster` (the same script
/// the test command and the native runner use), so it can be stopped and started at will.
/// Destroyed when dropped.
pub struct Cluster {
    dir: TempDir,
    url: String,
}

impl Cluster {
    /// Starts a new cluster with database "rinha" built from db/init.sql.
    pub fn start() -> Cluster {
        let dir = TempDir::new("cluster");
        let url = pg_cluster(&["start", dir.path().to_str().unwrap(), "--init"]);
        Cluster { dir, url }
    }

    /// A URL of its `postgres` database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server; `kill` is an immediate shutdown, like a crash.
    pub fn stop(&self, kill: bool) {
        pg_cluster(&[
            if kill { "kill" } else { "stop" },
            self.dir.path().to_str().unwrap(),
        ]);
    }

    /// Starts it again, keeping the data.
    pub fn restart(&self) {
        pg_cluster(&["start", self.dir.path().to_str().unwrap()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["destroy", self.dir.path().to_str().unwrap()])
            .status();
    }
}

fn script() -> PathBuf {
    repo_root().join("scripts/pg-cluster")
}

fn pg_cluster(args: &[&str]) -> String {
    let output = Command::new(script())
        .args(args)
        .output()
        .expect("running scripts/pg-cluster");
    assert!(
        output.status.success(),
        "scripts/pg-cluster {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
