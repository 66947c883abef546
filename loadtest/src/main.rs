//! `loadtest`: run the official simulation against a Rinha stack.

#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use loadtest::model::{Options, Outcome};
use loadtest::report::{self, Report};
use loadtest::schedule::Profile;
use loadtest::{simulation, sweep};

/// Runs the official Rinha de Backend 2024/Q1 simulation (phases, checks, scoring) against a
/// stack, with a per-client audit of acknowledged money against the final balances.
#[derive(clap::Parser)]
#[command(
    after_help = "Exit status 0 only when every check passed and the balance audit is \
clean; with --sweep, when the first rate held.

--sweep runs the profile at each rate in turn against the same stack and stops at the first \
rate that does not hold (a KO, a balance audit that finds money lost or appeared, or a load \
p99 over --sweep-p99-ms). The validation phase (A-F) needs a fresh stack, so it runs with the \
first rate only; later rates run the load alone and audit each client from its balance at \
their start. Writes DIR/sweep.json, DIR/sweep.html and each rate's reports in DIR/xRATE/."
)]
struct Args {
    /// The stack's balancer.
    #[arg(long, default_value = "http://127.0.0.1:9999")]
    target: String,
    /// Multiplies every arrival rate; 1 = the official 220/110/10 users per second.
    #[arg(long, default_value_t = 1.0, value_parser = loadtest::cli::positive)]
    rate: f64,
    /// Rates to run in turn, e.g. 1,2,5,10,15,20 (see below).
    #[arg(long, value_name = "RATES", value_delimiter = ',', value_parser = loadtest::cli::positive, conflicts_with = "rate")]
    sweep: Vec<f64>,
    /// With --sweep: the highest load p99 (worst of débitos, créditos, extratos) a rate may have.
    #[arg(long, default_value_t = 10.0, value_parser = loadtest::cli::positive)]
    sweep_p99_ms: f64,
    /// Multiplies the load phase durations; 1 = the official 120 s + 120 s.
    #[arg(long, default_value_t = 1.0, value_parser = loadtest::cli::positive)]
    scale: f64,
    /// Where report.json and report.html (with --sweep: sweep.json and sweep.html) go.
    #[arg(long, default_value = "loadtest-report")]
    out: PathBuf,
    /// Seed of the random clients, amounts and descriptions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also write every request to DIR/records.jsonl, one JSON object a line: name, start
    /// (seconds since the run began), latency_ms, ko (the failed check, or null) and
    /// outcome_unknown. For analyses the reports do not make (bench/ha, scripts/ha-test).
    #[arg(long)]
    records: bool,
}

fn main() -> ExitCode {
    let args = <Args as clap::Parser>::parse();
    let options = Options {
        target: args.target,
        rate: args.rate,
        profile: Profile::Official { scale: args.scale },
        seed: args.seed,
        progress: std::io::stderr().is_terminal(),
        validations: true,
    };
    let runtime = loadtest::cli::runtime();
    if !args.sweep.is_empty() {
        let criteria = sweep::Criteria {
            p99_ms: args.sweep_p99_ms,
        };
        return run_sweep(&runtime, &options, &args.sweep, criteria, &args.out);
    }
    let outcome = match runtime.block_on(simulation::run(&options)) {
        Ok(outcome) => outcome,
        Err(message) => {
            eprintln!("loadtest: {message}");
            return ExitCode::from(2);
        }
    };
    let report = Report::new(&outcome);
    print!("{}", report::text(&outcome, &report, &options));
    match write_reports(&args.out, &outcome, &report, &options) {
        Ok(()) => println!(
            "reports: {}/report.json, {}/report.html",
            args.out.display(),
            args.out.display()
        ),
        Err(e) => eprintln!("loadtest: {e}"),
    }
    if args.records {
        if let Err(e) = report::write_records(&args.out, &outcome) {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    }
    if report.passed(&outcome) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_sweep(
    runtime: &tokio::runtime::Runtime,
    options: &Options,
    rates: &[f64],
    criteria: sweep::Criteria,
    out: &Path,
) -> ExitCode {
    let result = runtime.block_on(sweep::run(
        options,
        rates,
        criteria,
        |options, outcome, report, step| {
            eprintln!(
                "x{}: {} requests, {} KO, load p99 {:.2} ms: {}",
                step.rate, step.requests, step.ko, step.load_p99_ms, step.verdict
            );
            let dir = out.join(format!("x{}", step.rate));
            if let Err(e) = write_reports(&dir, outcome, report, options) {
                eprintln!("loadtest: {e}");
            }
        },
    ));
    let sweep = match result {
        Ok(sweep) => sweep,
        Err(message) => {
            eprintln!("loadtest: {message}");
            return ExitCode::from(2);
        }
    };
    print!("{}", sweep::text(&sweep));
    match report::write(out, "sweep", &sweep, &report::sweep_html(&sweep)) {
        Ok(()) => println!("reports: {0}/sweep.json, {0}/sweep.html", out.display()),
        Err(e) => eprintln!("loadtest: {e}"),
    }
    if sweep.held_up_to.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// report.json and report.html in `dir`.
fn write_reports(
    dir: &Path,
    outcome: &Outcome,
    report: &Report,
    options: &Options,
) -> Result<(), String> {
    report::write(
        dir,
        "report",
        &report::json(outcome, report, options),
        &report::html(outcome, report, options),
    )
}
