//! A shortened official run against the real stack: two `api` processes on a fresh
//! database behind the real balancer. Every check passes and the audit is clean.

use loadtest::model::Options;
use loadtest::report::Report;
use loadtest::simulation::run;
use testkit::{Balancer, Target, TestApi};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_official_run_passes_against_the_real_stack() {
    let api = TestApi::start(&[]).await;
    let (_second, second) = api.start_sibling("api2.sock", &[]);
    let (Target::Unix(first), Target::Unix(second)) = (&api.target, &second) else {
        unreachable!()
    };
    let lb = Balancer::start(&[first, second], &[]);

    let options = Options {
        target: format!("http://{}", lb.addr),
        rate: 1.0,
        scale: 0.05,
        seed: 3,
        progress: false,
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
}
