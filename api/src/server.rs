//! Start-up and serving: the database pool, then `serverkit`'s accept/serve/drain loop on
//! every configured source (a Unix socket or TCP for HTTP, a handoff socket for connections
//! the balancer hands over). On SIGTERM or SIGINT it stops taking connections, lets
//! in-flight requests finish, closes the database pool and returns.

use std::sync::Arc;
use std::time::Duration;

use serverkit::admin::Admin;
use serverkit::server::{Connection, Drain, Handler, Server};

use crate::config::Config;
use crate::db::Database;
use crate::handlers::handle;
use crate::metrics;

/// Serves until SIGTERM or SIGINT, then drains and closes the database pool.
pub async fn run(config: Config) -> Result<(), String> {
    let db = Database::connect(&config).await?;
    let server = Server::bind(
        &config.listen,
        config.max_connections,
        config.drain,
        config.deadlines,
    )?;
    // Database and drain timeouts are longer than this tick, so they never unpark.
    serverkit::timer::spawn_timer_anchor(Duration::from_millis(500));
    if let Some(listen) = &config.admin {
        let ready = db.clone();
        serverkit::admin::spawn(
            "api",
            listen,
            Admin {
                registry: serverkit::metrics::registry(metrics::families),
                ready: Box::new(move || {
                    let db = ready.clone();
                    Box::pin(async move { db.writable().await })
                }),
                pages: None,
            },
        )?;
    }
    tracing::info!(
        "listening on {} (pool {}, reads {}, workers {}, batches of up to {})",
        server.describe(),
        config.pool_size,
        config.read_pool_size,
        config.workers,
        config.batch_max
    );
    let api = Arc::new(Api { db: db.clone() });
    server
        .run("api", api, serverkit::lifecycle::shutdown_signal())
        .await?;
    db.close().await;
    Ok(())
}

struct Api {
    db: Database,
}

impl Handler for Api {
    fn serve(&self, batch: &mut Vec<Connection>, drain: &Drain) {
        for connection in batch.drain(..) {
            let db = self.db.clone();
            serverkit::http::spawn_connection(connection, drain, move |request| {
                handle(request, db.clone())
            });
        }
    }
}
