//! `pace`: one kind of request, repeated, for benchmarking a proxy or the stack; each request
//! on a new connection like the official test: open model at a fixed rate (`--rate R`), or
//! closed loop as fast as `--concurrency C` clients can go. A GET, or a POST of `--body`.
//! Prints one JSON line.
//!
//!   pace --target http://127.0.0.1:9999 --path /clientes/1/extrato --rate 490 --seconds 10
//!   pace --target http://127.0.0.1:9999 --concurrency 16 --seconds 10
//!   pace --path /clientes/1/transacoes --body '{"valor":1,"tipo":"c","descricao":"x"}' --rate 340

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use loadtest::client::Client;
use loadtest::stats::percentile;

/// One kind of request, repeated, each on a new connection: at a fixed rate (--rate) or as
/// fast as --concurrency clients go. Prints one JSON line.
#[derive(clap::Parser)]
struct Args {
    /// The server (a balancer, or an upstream directly).
    #[arg(long, default_value = "http://127.0.0.1:9999")]
    target: String,
    /// The path requested.
    #[arg(long, default_value = "/clientes/1/extrato")]
    path: String,
    /// POST this body instead of a GET.
    #[arg(long)]
    body: Option<String>,
    /// Open model: requests per second, on schedule whatever the answers' delay.
    #[arg(long, value_parser = loadtest::cli::positive)]
    rate: Option<f64>,
    /// Closed loop (without --rate): clients, each sending its next request when answered.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// How long to send.
    #[arg(long, default_value_t = 10.0, value_parser = loadtest::cli::positive)]
    seconds: f64,
}

fn main() {
    let args = <Args as clap::Parser>::parse();
    loadtest::cli::runtime().block_on(async {
        let client = Client::new(&args.target).unwrap_or_else(|e| panic!("{e}"));
        let results: Arc<Mutex<Vec<(f64, bool)>>> = Arc::default();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(args.seconds);
        // 'static, so the closure stays Copy and every task can have it.
        let body: Option<&'static str> = args.body.clone().map(|b| &*b.leak());
        let one = move |client: Client, path: String, results: Arc<Mutex<Vec<(f64, bool)>>>| {
            async move {
            let sent = Instant::now();
            let answer = match body {
                Some(body) => client.post(&path, body.to_string()).await,
                None => client.get(&path).await,
            };
            let ok = answer.status.is_some_and(|s| (200..300).contains(&s));
            results.lock().unwrap().push((sent.elapsed().as_secs_f64() * 1000.0, ok));
            }
        };
        let mut tasks = Vec::new();
        match args.rate {
            Some(rate) => {
                let total = (rate * args.seconds) as u64;
                for i in 0..total {
                    tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
                    tasks.push(tokio::spawn(one(client.clone(), args.path.clone(), results.clone())));
                }
            }
            None => {
                for _ in 0..args.concurrency {
                    let (client, path, results) = (client.clone(), args.path.clone(), results.clone());
                    tasks.push(tokio::spawn(async move {
                        while Instant::now() < deadline {
                            one(client.clone(), path.clone(), results.clone()).await;
                        }
                    }));
                }
            }
        }
        for task in tasks {
            let _ = task.await;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let results = results.lock().unwrap();
        let mut latencies: Vec<f64> = results.iter().map(|r| r.0).collect();
        latencies.sort_by(f64::total_cmp);
        let errors = results.iter().filter(|r| !r.1).count();
        println!(
            "{{\"requests\": {}, \"errors\": {errors}, \"rps\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
            results.len(),
            results.len() as f64 / elapsed,
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            latencies.last().copied().unwrap_or(0.0)
        );
    });
}
