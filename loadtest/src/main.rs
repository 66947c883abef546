//! `loadtest`: run the official simulation against a Rinha stack.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use loadtest::report::{self, Report};
use loadtest::simulation::{self, Options};

const USAGE: &str = "usage: loadtest [--target URL] [--rate X] [--scale F] [--out DIR] [--seed N]
  --target URL  the stack's balancer (default http://127.0.0.1:9999)
  --rate X      multiplies every arrival rate; 1 = the official 220/110/10 users per second
  --scale F     multiplies the load phase durations; 1 = the official 120 s + 120 s
  --out DIR     where report.json and report.html go (default loadtest-report)
  --seed N      seed of the random clients, amounts and descriptions (default 1)
Exit status 0 only when every check passed and the balance audit is clean.";

fn parse() -> Result<(Options, PathBuf), String> {
    let mut options = Options {
        target: "http://127.0.0.1:9999".into(),
        rate: 1.0,
        scale: 1.0,
        seed: 1,
        progress: std::io::stderr().is_terminal(),
    };
    let mut out = PathBuf::from("loadtest-report");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| format!("{flag} {v}: give a positive number"))
        };
        match flag.as_str() {
            "--target" => options.target = value,
            "--rate" => options.rate = number(&value)?,
            "--scale" => options.scale = number(&value)?,
            "--out" => out = PathBuf::from(value),
            "--seed" => {
                options.seed = value
                    .parse()
                    .map_err(|_| format!("--seed {value}: give a whole number"))?
            }
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    Ok((options, out))
}

fn main() -> ExitCode {
    let (options, out) = match parse() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
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
