//! The native runner as a user runs it: the whole stack up, answering on its port, then
//! SIGTERM, and nothing left behind.

use std::path::PathBuf;
use std::time::Duration;

use testkit::StatusCode;
use testkit::{binary, free_port, Process, Target};

/// Runs `stack` with `args` and the balancer in `mode`, exercises it, stops it; returns its
/// pid.
async fn run_and_stop(args: &[&str], mode: &str) -> u32 {
    let port = free_port();
    let port_text = port.to_string();
    let mut all = vec!["--port", port_text.as_str()];
    all.extend_from_slice(args);
    // A caller's variable overrides compose.yaml's default, as documented.
    let mut process = Process::spawn_with_args(
        &binary("stack"),
        &all,
        &[("LB_STRATEGY", "least-connections"), ("LB_MODE", mode)],
    );
    let pid = process.pid();
    let target = Target::Tcp(format!("127.0.0.1:{port}").parse().unwrap());
    process.wait_until(Duration::from_secs(40), || target.is_up());

    let mut ok = false;
    for _ in 0..100 {
        if target.get("/clientes/1/extrato").await.status == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the stack answers GET /clientes/1/extrato");
    let reply = target
        .post(
            "/clientes/1/transacoes",
            r#"{"valor": 5, "tipo": "c", "descricao": "runner"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        target.get("/clientes/6/extrato").await.status,
        StatusCode::NOT_FOUND
    );

    let dir = PathBuf::from(format!("/tmp/rinha-stack-{pid}"));
    assert!(dir.exists());
    process.signal("TERM");
    let (status, _) = process.wait(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "temporary files removed");
    assert!(!target.is_up(), "balancer stopped");
    let leftovers = std::process::Command::new("pgrep")
        .args(["-f", &format!("rinha-stack-{pid}")])
        .output()
        .unwrap();
    assert!(
        leftovers.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&leftovers.stdout)
    );
    pid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_the_stack_and_cleans_up_in_every_balancer_mode() {
    for mode in ["handoff", "http", "tcp"] {
        run_and_stop(&[], mode).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_under_the_compose_limits() {
    let pid = run_and_stop(&["--limits"], "handoff").await;
    let prefix = format!("rinha-{pid}-");
    let groups: Vec<String> = std::fs::read_dir("/sys/fs/cgroup/cpu")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(groups.is_empty(), "cgroups left behind: {groups:?}");
}

/// Like compose's `restart: unless-stopped`: a crashed API is started again while the
/// balancer serves from the other one, and a crashed PostgreSQL comes back with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_services_are_started_again() {
    let port = free_port();
    let port_text = port.to_string();
    let mut process = Process::spawn_with_args(&binary("stack"), &["--port", &port_text], &[]);
    let target = Target::Tcp(format!("127.0.0.1:{port}").parse().unwrap());
    process.wait_until(Duration::from_secs(40), || target.is_up());
    let ready = async {
        while target.get("/clientes/1/extrato").await.status != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .expect("ready");
    // The runner checks readiness every 100 ms, and a crash before it has seen the stack
    // ready fails the start-up on purpose; give it time to get past that.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let credit = r#"{"valor": 7, "tipo": "c", "descricao": "antes"}"#;
    assert_eq!(
        target.post("/clientes/2/transacoes", credit).await.status,
        StatusCode::OK
    );

    // Kill one API: every request still succeeds, and it is back within seconds.
    let apis = || {
        let out = std::process::Command::new("pgrep")
            .args(["-P", &process.pid().to_string(), "-x", "api"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let before = apis();
    assert_eq!(before.len(), 2, "{before:?}");
    testkit::send_signal(before[0].parse().unwrap(), "KILL");
    // kill returns before the process is gone; a connection handed to it while it dies is
    // one it held (handoff mode cannot replay it). Once it is dead, none is lost.
    let gone = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    while !gone(&before[0]) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..20 {
        assert_eq!(
            target.get("/clientes/2/extrato").await.status,
            StatusCode::OK
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while apis().len() < 2 || apis().contains(&before[0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the API was not started again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Crash PostgreSQL: answers are 503 meanwhile, then it is back with the data.
    let dir = format!("/tmp/rinha-stack-{}/pg", process.pid());
    let status = std::process::Command::new(testkit::repo_root().join("scripts/pg-cluster"))
        .args(["kill", &dir])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let reply = target.get("/clientes/2/extrato").await;
        if reply.status == StatusCode::OK {
            assert_eq!(
                reply.json()["saldo"]["total"],
                7,
                "data kept across the crash"
            );
            break;
        }
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            std::time::Instant::now() < deadline,
            "PostgreSQL was not started again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    process.signal("TERM");
    let (status, _) = process.wait(Duration::from_secs(30));
    assert!(status.success());
}
