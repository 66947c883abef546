//! The real stack: two `api` processes on a fresh PostgreSQL database behind the real
//! balancer. The official validation phases (docs/challenge.md, phases A–F) pass with every strategy and mode.

use crate::common;

use testkit::{handoff_socket, run_validations, Balancer, TestApi};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_validations_pass_through_every_strategy_and_mode() {
    for (strategy, mode) in common::strategy_modes() {
        let api = TestApi::start(&[]).await;
        let (_second, second) = api.start_sibling("api2.sock", &[]);
        let (testkit::Target::Unix(first), testkit::Target::Unix(second)) = (&api.target, &second)
        else {
            unreachable!("TestApi listens on Unix sockets")
        };
        let (first, second) = if mode == "handoff" {
            (handoff_socket(first), handoff_socket(second))
        } else {
            (first.clone(), second.clone())
        };
        let lb = Balancer::start(
            &[&first, &second],
            &[("LB_STRATEGY", strategy), ("LB_MODE", mode)],
        );
        eprintln!("validations through {strategy}/{mode}");
        run_validations(std::slice::from_ref(&lb.target)).await;
    }
}
