//! `soak`: the official peak mix held for a long time against a stack, with the stack's
//! memory, descriptors and storage sampled every 10 s (`loadtest::soak`). `bench/soak`
//! starts the stack under its limits and runs this.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use loadtest::model::Options;
use loadtest::schedule::Profile;
use loadtest::soak::{self, Soak, Watched};
use loadtest::{report, simulation};

/// Holds the official peak mix (220 debits, 110 credits, 10 statements per second at x1)
/// for --minutes after the validation phase, samples every watched service and PostgreSQL's
/// storage every 10 s, and fails if a service's private memory or descriptors keep growing,
/// the last 10 s window's p99 is over twice the first's, a request is KO or the balance
/// audit is not clean.
#[derive(clap::Parser)]
#[command(
    after_help = "Writes DIR/soak.json and DIR/soak.html. Exit status 0 only when the soak passed."
)]
struct Args {
    /// The stack's balancer.
    #[arg(long, default_value = "http://127.0.0.1:9999")]
    target: String,
    /// How long the peak is held.
    #[arg(long, default_value_t = 30.0, value_parser = loadtest::cli::positive)]
    minutes: f64,
    /// Multiplies the peak's arrival rates.
    #[arg(long, default_value_t = 2.0, value_parser = loadtest::cli::positive)]
    rate: f64,
    /// A service to sample, NAME=PATH of its cgroup.procs file (repeat for each).
    #[arg(long = "watch", value_name = "NAME=PATH", required = true)]
    watched: Vec<Watched>,
    /// PostgreSQL, for the sizes of its relations and WAL (psql's connection string).
    #[arg(long)]
    database: String,
    /// Where soak.json and soak.html go.
    #[arg(long, default_value = "soak-report")]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let options = Options {
        target: args.target.clone(),
        rate: args.rate,
        profile: Profile::Hold {
            seconds: args.minutes * 60.0,
        },
        seed: args.seed,
        progress: std::io::stderr().is_terminal(),
        validations: true,
    };
    let runtime = loadtest::cli::runtime();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let outcome = runtime.block_on(async {
        let start = Instant::now();
        let sampler = tokio::spawn(soak::sample(
            start,
            args.watched.clone(),
            args.database.clone(),
            samples.clone(),
        ));
        let outcome = simulation::run(&options).await;
        sampler.abort();
        outcome
    });
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("soak: {message}");
            return ExitCode::from(2);
        }
    };
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let soak = Soak::new(&outcome, samples, &args.target, args.rate);
    print!("{}", soak::text(&soak));
    match report::write(&args.out, "soak", &soak, &report::soak_html(&soak)) {
        Ok(()) => println!("reports: {0}/soak.json, {0}/soak.html", args.out.display()),
        Err(e) => eprintln!("soak: {e}"),
    }
    if soak.verdict.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
