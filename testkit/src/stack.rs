//! The real API against a fresh database: what most integration tests start from.

use crate::{spawn_api, Process, Target, TempDir, TestDb};

pub struct TestApi {
    pub db: TestDb,
    pub target: Target,
    pub process: Process,
    pub dir: TempDir,
}

impl TestApi {
    /// A fresh database and one `api` process on a Unix socket in a temporary directory.
    pub async fn start(extra_env: &[(&str, &str)]) -> TestApi {
        let db = TestDb::create().await;
        let dir = TempDir::new("api");
        let socket = dir.join("api.sock");
        let process = spawn_api(db.url(), &socket, extra_env);
        TestApi {
            db,
            target: Target::Unix(socket),
            process,
            dir,
        }
    }

    /// Another `api` process on the same database, as the second instance behind the balancer.
    pub fn start_sibling(&self, name: &str, extra_env: &[(&str, &str)]) -> (Process, Target) {
        let socket = self.dir.join(name);
        let process = spawn_api(self.db.url(), &socket, extra_env);
        (process, Target::Unix(socket))
    }
}
