//! The native runner as a user runs it: the whole stack up, answering on its port, then
//! SIGTERM, and nothing left behind.

use std::path::PathBuf;
use std::time::Duration;

use testkit::StatusCode;
use testkit::{binary, free_port, Process, Target};

/// Runs `stack` with `args`, exercises it, stops it; returns its pid.
async fn run_and_stop(args: &[&str]) -> u32 {
    let port = free_port();
    let port_text = port.to_string();
    let mut all = vec!["--port", port_text.as_str()];
    all.extend_from_slice(args);
    // A caller's variable overrides compose.yaml's default, as documented.
    let mut process = Process::spawn_with_args(
        &binary("stack"),
        &all,
        &[("LB_STRATEGY", "least-connections")],
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
async fn runs_the_stack_and_cleans_up() {
    run_and_stop(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_under_the_compose_limits() {
    let pid = run_and_stop(&["--limits"]).await;
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
