//! `loadtest`: run the official simulation against a Rinha stack.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use loadtest::model::Options;
use loadtest::report::{self, Report};
use loadtest::simulation;

/// Runs the official Rinha de Backend 2024/Q1 simulation (phases, checks, scoring) against a
/// stack, with a per-client audit of acknowledged money against the final balances.
#[derive(clap::Parser)]
#[command(
    after_help = "Exit status 0 only when every check passed and the balance audit is clean."
)]
struct Args {
    /// The stack's balancer.
    #[arg(long, default_value = "http://127.0.0.1:9999")]
    target: String,
    /// Multiplies every arrival rate; 1 = the official 220/110/10 users per second.
    #[arg(long, default_value_t = 1.0, value_parser = loadtest::cli::positive)]
    rate: f64,
    /// Multiplies the load phase durations; 1 = the official 120 s + 120 s.
    #[arg(long, default_value_t = 1.0, value_parser = loadtest::cli::positive)]
    scale: f64,
    /// Where report.json and report.html go.
    #[arg(long, default_value = "loadtest-report")]
    out: PathBuf,
    /// Seed of the random clients, amounts and descriptions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse() -> (Options, PathBuf) {
    let args = <Args as clap::Parser>::parse();
    let options = Options {
        target: args.target,
        rate: args.rate,
        scale: args.scale,
        seed: args.seed,
        progress: std::io::stderr().is_terminal(),
    };
    (options, args.out)
}

fn main() -> ExitCode {
    let (options, out) = parse();
    // One thread: the generator must stay cheap next to the stack it measures.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = match runtime.block_on(simulation::run(&options)) {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("loadtest: {message}");
            return ExitCode::from(2);
        }
    };
    let report = Report::new(&outcome);
    print!("{}", report::text(&outcome, &report, &options));
    let written = std::fs::create_dir_all(&out)
        .and_then(|()| {
            std::fs::write(
                out.join("report.json"),
                serde_json::to_string_pretty(&report::json(&outcome, &report, &options)).unwrap(),
            )
        })
        .and_then(|()| {
            std::fs::write(
                out.join("report.html"),
                report::html(&outcome, &report, &options),
            )
        });
    match written {
        Ok(()) => println!(
            "reports: {}/report.json, {}/report.html",
            out.display(),
            out.display()
        ),
        Err(e) => eprintln!("loadtest: cannot write reports to {}: {e}", out.display()),
    }
    if report.passed(&outcome) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
