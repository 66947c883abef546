//! When each load-phase user arrives: Gatling's open injection, evenly spaced.
//!
//! `rampUsersPerSec(1) to r during d` then `constantUsersPerSec(r) during d`, per scenario.
//! For a ramp the cumulative arrivals by time t are `r0 t + (r1 - r0) t² / 2d`, so user i
//! arrives where that equals i. At rate 1 and scale 1 the counts are the official ones:
//! 39,660 débitos, 19,860 créditos and 1,860 extratos.

/// The three load scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Users who debit.
    Debits,
    /// Users who credit.
    Credits,
    /// Users who read statements.
    Statements,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 3] = [Scenario::Debits, Scenario::Credits, Scenario::Statements];

    /// Peak users per second at rate 1.
    pub fn peak_rate(self) -> f64 {
        match self {
            Scenario::Debits => 220.0,
            Scenario::Credits => 110.0,
            Scenario::Statements => 10.0,
        }
    }
}

/// Official duration of the ramp and of the constant part, in seconds, at scale 1.
pub const PHASE_SECONDS: f64 = 120.0;

/// How the load phase's arrivals run over time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Profile {
    /// The official ramp then plateau, each `PHASE_SECONDS` × scale long.
    Official {
        /// The multiple of the official duration.
        scale: f64,
    },
    /// The plateau alone, the official peak mix held for this many seconds: a soak.
    Hold {
        /// How long the peak is held.
        seconds: f64,
    },
}

impl Profile {
    /// Arrival offsets in seconds from the start of the load phase, ascending.
    pub fn arrivals(self, scenario: Scenario, rate: f64) -> Vec<f64> {
        match self {
            Profile::Official { scale } => arrivals(scenario, rate, scale),
            Profile::Hold { seconds } => {
                plateau(scenario.peak_rate() * rate, 0.0, seconds).collect()
            }
        }
    }

    /// How long the load phase lasts, in seconds.
    pub fn load_seconds(self) -> f64 {
        match self {
            Profile::Official { scale } => load_seconds(scale),
            Profile::Hold { seconds } => seconds,
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Profile::Official { scale } => write!(f, "scale x{scale}"),
            Profile::Hold { seconds } => write!(f, "peak held {seconds} s"),
        }
    }
}

/// `rate` users per second, evenly spaced, from `from` for `seconds`.
fn plateau(rate: f64, from: f64, seconds: f64) -> impl Iterator<Item = f64> {
    let users = (rate * seconds).round() as u64;
    (0..users).map(move |i| from + i as f64 / rate)
}

/// Arrival offsets in seconds from the start of the load phase, ascending.
fn arrivals(scenario: Scenario, rate: f64, scale: f64) -> Vec<f64> {
    let duration = PHASE_SECONDS * scale;
    let (r0, r1) = (rate, scenario.peak_rate() * rate);
    let mut times = Vec::new();
    // The ramp: users 0, 1, ... while their arrival falls inside it.
    let ramp_users = ((r0 + r1) / 2.0 * duration).round() as u64;
    let slope = (r1 - r0) / duration;
    for i in 0..ramp_users {
        let i = i as f64;
        let t = if slope.abs() < 1e-12 {
            i / r0
        } else {
            (-r0 + (r0 * r0 + 2.0 * slope * i).sqrt()) / slope
        };
        times.push(t);
    }
    times.extend(plateau(r1, duration, duration));
    times
}

/// Total load-phase duration in seconds.
fn load_seconds(scale: f64) -> f64 {
    2.0 * PHASE_SECONDS * scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_counts_at_rate_1_scale_1() {
        let counts: Vec<usize> = Scenario::ALL
            .iter()
            .map(|s| arrivals(*s, 1.0, 1.0).len())
            .collect();
        assert_eq!(counts, [39_660, 19_860, 1_860]);
        // Plus the 123 validation requests: the official 61,503.
        assert_eq!(counts.iter().sum::<usize>() + 123, 61_503);
    }

    #[test]
    fn arrivals_are_ordered_and_inside_the_phase() {
        for scenario in Scenario::ALL {
            let times = arrivals(scenario, 1.0, 1.0);
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{scenario:?}");
            assert!(times[0] >= 0.0 && *times.last().unwrap() < load_seconds(1.0));
            // The ramp ends where the constant part starts.
            let ramp_end = times.iter().filter(|t| **t < PHASE_SECONDS).count();
            assert_eq!(
                ramp_end as f64,
                ((1.0 + scenario.peak_rate()) / 2.0 * PHASE_SECONDS).round()
            );
        }
    }

    #[test]
    fn rate_and_scale_multiply() {
        let base = arrivals(Scenario::Debits, 1.0, 1.0).len() as f64;
        let doubled = arrivals(Scenario::Debits, 2.0, 1.0).len() as f64;
        let short = arrivals(Scenario::Debits, 1.0, 0.1).len() as f64;
        assert!((doubled / base - 2.0).abs() < 0.01);
        assert!((short / base - 0.1).abs() < 0.01);
        // At 10x the peak is 2,200 debits per second.
        let fast = arrivals(Scenario::Debits, 10.0, 1.0);
        let last_second = fast.iter().filter(|t| **t >= 239.0).count();
        assert_eq!(last_second, 2200);
    }

    #[test]
    fn a_hold_is_the_peak_mix_from_the_first_second() {
        let hold = Profile::Hold { seconds: 60.0 };
        let debits = hold.arrivals(Scenario::Debits, 2.0);
        assert_eq!(debits.len(), 440 * 60);
        assert_eq!(debits.iter().filter(|t| **t < 1.0).count(), 440);
        assert!(*debits.last().unwrap() < hold.load_seconds());
        let official = Profile::Official { scale: 1.0 };
        assert_eq!(
            official.arrivals(Scenario::Credits, 1.0),
            arrivals(Scenario::Credits, 1.0, 1.0)
        );
        assert_eq!(official.load_seconds(), 240.0);
    }
}
