//! The runner of the official simulation, phase by phase (docs/challenge.md, "The official test"), plus the balance audit.
//! One file over 350 lines on purpose: the phases share `Run` and read top to bottom in the official script's order.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checks::{self, Answer};
use crate::client::Client;
use crate::model::{ClientAudit, Name, Options, Outcome, Record, Sample};
use crate::official::{invalid_bodies, payload, LIMITS};
use crate::schedule::Scenario;

/// What one client's transactions did to its balance, as far as the answers tell.
#[derive(Clone, Copy, Default)]
struct Booked {
    acknowledged: i64,
    unknown: u32,
    unknown_credits: i64,
    unknown_debits: i64,
}

struct Run {
    client: Client,
    start: Instant,
    records: Mutex<Vec<Record>>,
    ledger: Mutex<[Booked; 5]>,
    seed: u64,
}

impl Run {
    /// Sends one request and records it under `name` with the first failing check's
    /// message; gives back the answer and, when every check passed, what the checks saved.
    async fn request<T>(
        &self,
        name: Name,
        path: &str,
        body: Option<String>,
        check: impl FnOnce(&Answer) -> Result<T, String>,
    ) -> (Answer, Option<T>) {
        let (answer, saved, record) = self.exchange(name, path, body, check).await;
        self.records.lock().unwrap().push(record);
        (answer, saved)
    }

    /// Sends one request; gives back the answer, what the checks saved and its record.
    async fn exchange<T>(
        &self,
        name: Name,
        path: &str,
        body: Option<String>,
        check: impl FnOnce(&Answer) -> Result<T, String>,
    ) -> (Answer, Option<T>, Record) {
        let sent = Instant::now();
        let answer = match body {
            Some(body) => self.client.post(path, body).await,
            None => self.client.get(path).await,
        };
        let latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
        let (saved, ko) = match check(&answer) {
            Ok(saved) => (Some(saved), None),
            Err(message) => (None, Some(message)),
        };
        let record = Record {
            name,
            start: sent.duration_since(self.start).as_secs_f64(),
            latency_ms,
            ko,
            outcome_unknown: false,
        };
        (answer, saved, record)
    }

    /// The client's `saldo.total` as its statement reports it now (not recorded: the
    /// audit's reads are not part of the official test).
    async fn balance(&self, client: u8) -> Result<i64, String> {
        let answer = self
            .client
            .get(&format!("/clientes/{client}/extrato"))
            .await;
        checks::json(&answer)["saldo"]["total"]
            .as_i64()
            .ok_or_else(|| format!("client {client}'s statement (status {:?})", answer.status))
    }

    /// A POST to /clientes/{client}/transacoes, booked for the audit: a 200 moves the
    /// expected balance, a 4xx does not, anything else leaves the outcome unknown.
    async fn transact<T>(
        &self,
        name: Name,
        client: u8,
        valor: i64,
        tipo: &str,
        body: String,
        check: impl FnOnce(&Answer) -> Result<T, String>,
    ) -> Option<T> {
        let path = format!("/clientes/{client}/transacoes");
        let (answer, result, mut record) = self.exchange(name, &path, Some(body), check).await;
        {
            let mut ledger = self.ledger.lock().unwrap();
            let entry = &mut ledger[usize::from(client) - 1];
            match answer.status {
                Some(200) if valor > 0 => {
                    entry.acknowledged += if tipo == "c" { valor } else { -valor }
                }
                Some(400..=499) => {}
                _ => {
                    entry.unknown += 1;
                    match tipo {
                        "c" => entry.unknown_credits += valor,
                        _ => entry.unknown_debits += valor,
                    }
                    record.outcome_unknown = true;
                }
            }
        }
        self.records.lock().unwrap().push(record);
        result
    }
}

/// splitmix64: the random values of load request `i` depend only on the seed and `i`.
fn random(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn cpu_ms() -> f64 {
    // utime and stime, fields 14 and 15 of /proc/self/stat, in 1/100 s (USER_HZ).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<f64> = after_name
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    fields
        .get(11)
        .zip(fields.get(12))
        .map_or(0.0, |(u, s)| (u + s) * 10.0)
}

/// Runs the official simulation with `options`: the validations (unless left out), the load, then the audit.
pub async fn run(options: &Options) -> Result<Outcome, String> {
    let run = Arc::new(Run {
        client: Client::new(&options.target)?,
        start: Instant::now(),
        records: Mutex::new(Vec::new()),
        ledger: Mutex::new([Booked::default(); 5]),
        seed: options.seed,
    });
    let cpu_start = cpu_ms();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample(run.clone(), samples.clone(), options.clone()));

    let validations = if options.validations {
        validate(&run).await
    } else {
        baseline(&run).await?;
        Vec::new()
    };

    let max_lag_ms = load(&run, options).await;
    for validation in validations {
        let _ = validation.await;
    }
    sampler.abort();
    let elapsed = run.start.elapsed().as_secs_f64();
    let cpu_ms = cpu_ms() - cpu_start;

    let mut audit = Vec::new();
    for client in 1..=5u8 {
        let reported = run.balance(client).await.ok();
        let booked = run.ledger.lock().unwrap()[usize::from(client) - 1];
        audit.push(ClientAudit {
            client,
            acknowledged: booked.acknowledged,
            reported,
            unknown: booked.unknown,
            unknown_credits: booked.unknown_credits,
            unknown_debits: booked.unknown_debits,
        });
    }
    if options.progress {
        eprintln!();
    }
    let records = std::mem::take(&mut *run.records.lock().unwrap());
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    let statuses = run.client.statuses.lock().unwrap().clone();
    Ok(Outcome {
        records,
        samples,
        max_lag_ms,
        elapsed,
        load_seconds: options.profile.load_seconds(),
        cpu_ms,
        audit,
        statuses,
    })
}

/// Phases A–F. A–D: concurrent transactions on client 1, then the exact balance; E (five
/// clients in parallel, still running when this returns: their tasks) alongside F. The
/// load starts a tick after F.
async fn validate(run: &Arc<Run>) -> Vec<tokio::task::JoinHandle<()>> {
    let tick = Duration::from_secs(1); // Gatling chains scenarios on its 1 s injector tick
    for (tipo, expected) in [("d", -25), ("c", 0)] {
        let posts = (0..25).map(|_| {
            let run = run.clone();
            tokio::spawn(async move {
                let body = payload(1, tipo, "validacao");
                run.transact(Name::Validacoes, 1, 1, tipo, body, |a| {
                    checks::status_in(a, &[200])
                })
                .await
            })
        });
        for post in posts.collect::<Vec<_>>() {
            let _ = post.await;
        }
        tokio::time::sleep(tick).await;
        run.request(Name::Validacoes, "/clientes/1/extrato", None, |a| {
            checks::balance_is(a, expected)
        })
        .await;
        tokio::time::sleep(tick).await;
    }

    // E (five clients in parallel) alongside F; the load starts a tick after F.
    let validations: Vec<_> = (1..=5u8)
        .map(|id| tokio::spawn(client_validations(run.clone(), id)))
        .collect();
    run.request(Name::Validacoes, "/clientes/6/extrato", None, |a| {
        checks::status_in(a, &[404])
    })
    .await;
    tokio::time::sleep(tick).await;

    validations
}

/// Without the validation phase, the stack is not fresh: the audit starts from each
/// client's balance as it is now.
async fn baseline(run: &Run) -> Result<(), String> {
    for client in 1..=5u8 {
        let saldo = run
            .balance(client)
            .await
            .map_err(|e| format!("{e}: no balance to start from"))?;
        run.ledger.lock().unwrap()[usize::from(client) - 1].acknowledged = saldo;
    }
    Ok(())
}

/// E: one client's 14 requests, in order.
async fn client_validations(run: Arc<Run>, id: u8) {
    let limit = LIMITS[usize::from(id) - 1];
    let statement = format!("/clientes/{id}/extrato");
    let v = Name::Validacoes;
    run.request(v, &statement, None, |a| checks::first_statement(a, limit))
        .await;
    run.transact(v, id, 1, "c", payload(1, "c", "toma"), |a| {
        checks::transaction(a, false)
    })
    .await;
    run.transact(v, id, 1, "d", payload(1, "d", "devolve"), |a| {
        checks::transaction(a, false)
    })
    .await;
    run.request(v, &statement, None, checks::order).await;
    let danada = run
        .transact(v, id, 1, "c", payload(1, "c", "danada"), |a| {
            checks::transaction(a, false)
        })
        .await;
    // The four concurrent reads are resources of the "danada" request: skipped if it failed.
    if let Some(Some((saldo, limite))) = danada {
        let reads: Vec<_> = (0..4)
            .map(|_| {
                let (run, statement, saldo, limite) = (
                    run.clone(),
                    statement.clone(),
                    saldo.clone(),
                    limite.clone(),
                );
                tokio::spawn(async move {
                    run.request(v, &statement, None, |a| {
                        checks::read_your_write(a, &saldo, &limite)
                    })
                    .await;
                })
            })
            .collect();
        for read in reads {
            let _ = read.await;
        }
    }
    for body in invalid_bodies() {
        // Valor 0 in the ledger: a 200 here is an unknown change, not a known one.
        run.transact(v, id, 0, "c", body, |a| checks::status_in(a, &[422, 400]))
            .await;
    }
}

/// G, H and I together, each user at its scheduled instant on a new connection.
/// Returns how far behind schedule a request was ever sent, in milliseconds.
async fn load(run: &Arc<Run>, options: &Options) -> f64 {
    let mut arrivals: Vec<(f64, Scenario)> = Scenario::ALL
        .iter()
        .flat_map(|s| {
            options
                .profile
                .arrivals(*s, options.rate)
                .into_iter()
                .map(move |t| (t, *s))
        })
        .collect();
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let start = tokio::time::Instant::now();
    let mut max_lag = Duration::ZERO;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (offset, scenario)) in arrivals.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(offset);
        tokio::time::sleep_until(due).await;
        max_lag = max_lag.max(tokio::time::Instant::now().saturating_duration_since(due));
        tasks.spawn(load_request(run.clone(), scenario, i as u64));
        // A finished task's memory lives until it is joined: a soak of a million requests
        // would otherwise keep every one of them.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    max_lag.as_secs_f64() * 1000.0
}

async fn load_request(run: Arc<Run>, scenario: Scenario, i: u64) {
    let r = random(run.seed, i);
    let client = (r % 5) as u8 + 1;
    match scenario {
        Scenario::Statements => {
            run.request(
                Name::Extratos,
                &format!("/clientes/{client}/extrato"),
                None,
                checks::statement,
            )
            .await;
        }
        Scenario::Debits | Scenario::Credits => {
            let valor = ((r >> 8) % 10_000 + 1) as i64;
            const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            let d = random(run.seed ^ 0xdead_beef, i);
            let descricao: String = (0..10)
                .map(|k| ALNUM[((d >> (k * 6)) % 62) as usize] as char)
                .collect();
            let (name, tipo, refusable) = match scenario {
                Scenario::Debits => (Name::Debitos, "d", true),
                _ => (Name::Creditos, "c", false),
            };
            let body = payload(valor, tipo, &descricao);
            run.transact(name, client, valor, tipo, body, |a| {
                checks::transaction(a, refusable)
            })
            .await;
        }
    }
}

/// Samples open connections every 100 ms, and prints a progress line every second.
async fn sample(run: Arc<Run>, samples: Arc<Mutex<Vec<Sample>>>, options: Options) {
    let total = options.profile.load_seconds() + 6.0;
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    let mut last = (0usize, Instant::now());
    for n in 0u64.. {
        interval.tick().await;
        let t = run.start.elapsed().as_secs_f64();
        samples.lock().unwrap().push(Sample {
            t,
            active: run.client.active.load(Relaxed),
        });
        if options.progress && n % 10 == 0 {
            let (done, ko) = {
                let records = run.records.lock().unwrap();
                (
                    records.len(),
                    records.iter().filter(|r| r.ko.is_some()).count(),
                )
            };
            let rate = (done - last.0) as f64 / last.1.elapsed().as_secs_f64().max(1e-3);
            last = (done, Instant::now());
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r[{t:6.1}s / ~{total:.0}s] {rate:7.0} req/s  OK {:>7}  KO {ko:>5} ",
                done - ko
            );
            let _ = err.flush();
        }
    }
}
