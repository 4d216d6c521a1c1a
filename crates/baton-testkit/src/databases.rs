//! Fresh databases on the PostgreSQL and MySQL/MariaDB servers of the test
//! machine, one per test, dropped when the test ends.
//!
//! The servers are found at `BATON_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `BATON_TEST_MYSQL`
//! (default `mysql://root@127.0.0.1:3306/test`). When a server is not
//! reachable, [`TestDatabase::create`] says so loudly on the terminal and
//! returns `None` (the test passes without running), unless
//! `BATON_REQUIRE_DATABASES=1` is set — as CI does — in which case it
//! panics: a backend is never skipped silently.

use std::io::Write;
use std::sync::Once;

use sqlx::Connection;

/// A database server the tests can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    MySql,
}

impl Server {
    /// The URL of the server's administrative database.
    pub fn admin_url(self) -> String {
        let (var, default) = match self {
            Server::Postgres => (
                "BATON_TEST_POSTGRES",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            Server::MySql => ("BATON_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test"),
        };
        std::env::var(var).unwrap_or_else(|_| default.to_owned())
    }

    fn name(self) -> &'static str {
        match self {
            Server::Postgres => "PostgreSQL",
            Server::MySql => "MySQL/MariaDB",
        }
    }
}

/// A database created for one test; dropped (with every connection to it)
/// when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    server: Server,
    name: String,
    url: String,
}

static WARN_POSTGRES: Once = Once::new();
static WARN_MYSQL: Once = Once::new();

impl TestDatabase {
    /// Creates a randomly named empty database on `server`. `None` when the
    /// server is unreachable and `BATON_REQUIRE_DATABASES` is not `1`.
    ///
    /// # Panics
    /// When the server is unreachable and databases are required, or the
    /// database cannot be created.
    pub async fn create(server: Server) -> Option<Self> {
        let admin = server.admin_url();
        let name = format!("baton_test_{:016x}", rand::random::<u64>());
        let created = match server {
            Server::Postgres => match sqlx::PgConnection::connect(&admin).await {
                Ok(mut c) => Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {name}"
                )))
                .execute(&mut c)
                .await
                .map(|_| ())),
                Err(e) => Err(e),
            },
            Server::MySql => match sqlx::MySqlConnection::connect(&admin).await {
                Ok(mut c) => Ok(sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {name}"
                )))
                .execute(&mut c)
                .await
                .map(|_| ())),
                Err(e) => Err(e),
            },
        };
        match created {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("creating database {name} on {}: {e}", server.name()),
            Err(e) => {
                if std::env::var("BATON_REQUIRE_DATABASES").as_deref() == Ok("1") {
                    panic!(
                        "{} is not reachable at {admin} and BATON_REQUIRE_DATABASES=1: {e}",
                        server.name()
                    );
                }
                let once = match server {
                    Server::Postgres => &WARN_POSTGRES,
                    Server::MySql => &WARN_MYSQL,
                };
                once.call_once(|| {
                    // Straight to the terminal: the test harness captures
                    // eprintln! of passing tests.
                    let _ = writeln!(
                        std::io::stderr(),
                        "\n*** SKIPPED: {} tests — no server at {admin} ({e}); start it, \
                         or set BATON_REQUIRE_DATABASES=1 to fail instead ***\n",
                        server.name()
                    );
                });
                return None;
            }
        }
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(Self { server, name, url })
    }

    /// The URL of the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server it lives on.
    pub fn server(&self) -> Server {
        self.server
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server, self.name.clone());
        // Drop may run inside a Tokio runtime, which must not block on
        // another: do it on a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            rt.block_on(async move {
                let admin = server.admin_url();
                let r = match server {
                    Server::Postgres => match sqlx::PgConnection::connect(&admin).await {
                        Ok(mut c) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await
                        .map(|_| ()),
                        Err(e) => Err(e),
                    },
                    Server::MySql => match sqlx::MySqlConnection::connect(&admin).await {
                        Ok(mut c) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name}"
                        )))
                        .execute(&mut c)
                        .await
                        .map(|_| ()),
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = r {
                    let _ = writeln!(
                        std::io::stderr(),
                        "could not drop test database {name}: {e}"
                    );
                }
            });
        });
        let _ = done.join();
    }
}
