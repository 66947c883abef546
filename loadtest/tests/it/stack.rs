//! A shortened official run against the real stack: two `api` processes on a fresh
//! database behind the real balancer. Every check passes and the audit is clean.

use loadtest::model::Options;
use loadtest::report::Report;
use loadtest::schedule::Profile;
use loadtest::simulation::run;
use testkit::{Balancer, Target, TestApi};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_official_run_passes_against_the_real_stack() {
    let (api, _second, lb) = stack().await;

    let options = Options {
        target: format!("http://{}", lb.addr),
        rate: 1.0,
        profile: Profile::Official { scale: 0.05 },
        seed: 3,
        progress: false,
        validations: true,
    };
    let outcome = run(&options).await.unwrap();
    let report = Report::new(&outcome);
    assert!(
        report.passed(&outcome),
        "{:?}\n{:?}",
        report.failures,
        outcome.audit
    );
    assert_eq!(report.score.payout, 100_000.0);
    assert!(outcome.audit.iter().all(|a| a.unknown == 0));
    // The database agrees with the audit, row for row.
    for audit in &outcome.audit {
        let (saldo, _) = api.db.balance_and_count(i32::from(audit.client)).await;
        assert_eq!(i64::from(saldo), audit.acknowledged);
    }
    // `--records`: every request, one JSON line each, in the order answered.
    let dir = testkit::TempDir::new("records");
    loadtest::report::write_records(dir.path(), &outcome).unwrap();
    let text = std::fs::read_to_string(dir.join("records.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), outcome.records.len());
    for (line, record) in lines.iter().zip(&outcome.records) {
        assert_eq!(line["name"], record.name.label());
        assert_eq!(line["start"].as_f64(), Some(record.start));
        assert!(line["ko"].is_null() && line["outcome_unknown"] == false);
    }
}

/// `loadtest --sweep` against the real stack: the rates run in turn, the later ones without
/// the validation phase and audited from the balances they start from; a rate that fails
/// ends the sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_each_rate_on_the_same_stack_and_stops_at_the_first_failure() {
    let dir = testkit::TempDir::new("sweep");
    // Each sweep on a fresh stack: its first rate runs the validation phase.
    let run = |stack: &Stack, rates: &str, p99: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
            .args([
                "--target",
                &format!("http://{}", stack.2.addr),
                "--scale",
                "0.02",
            ])
            .args(["--sweep", rates, "--sweep-p99-ms", p99, "--out"])
            .arg(dir.path())
            .output()
            .unwrap()
    };

    let held = run(&stack().await, "1,2", "1000");
    assert!(
        held.status.success(),
        "{}",
        String::from_utf8_lossy(&held.stderr)
    );
    let sweep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(sweep["held_up_to"], 2.0, "{sweep}");
    assert_eq!(sweep["broke_at"], serde_json::Value::Null);
    let steps = sweep["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    // The first rate ran the validations, the second did not, and both audits agree.
    let validacoes = |step: &serde_json::Value| {
        step["latencies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"] == "validações")
    };
    assert!(validacoes(&steps[0]) && !validacoes(&steps[1]));
    assert!(steps
        .iter()
        .all(|s| s["audit_explained"] == true && s["ko"] == 0));
    assert!(dir.join("x2/report.json").exists() && dir.join("sweep.html").exists());
    let summary = String::from_utf8_lossy(&held.stdout);
    assert!(
        summary.contains("held up to x2, the highest rate asked"),
        "{summary}"
    );

    // An impossible p99: the first rate fails and the sweep stops there.
    let broke = run(&stack().await, "1,2", "0.001");
    assert_eq!(broke.status.code(), Some(1));
    let sweep: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(sweep["broke_at"], 1.0);
    assert_eq!(sweep["held_up_to"], serde_json::Value::Null);
    assert_eq!(sweep["steps"].as_array().unwrap().len(), 1);
}

type Stack = (TestApi, testkit::Process, Balancer);

/// Two APIs on a fresh database behind the balancer.
async fn stack() -> Stack {
    let api = TestApi::start(&[]).await;
    let (second, target) = api.start_sibling("api2.sock", &[]);
    let (Target::Unix(first), Target::Unix(other)) = (&api.target, &target) else {
        unreachable!()
    };
    let lb = Balancer::start(&[first, other], &[("LB_MODE", "http")]);
    (api, second, lb)
}
