//! RFC 3339 timestamps in UTC with microseconds, e.g. `2024-01-17T02:34:41.217753Z`.
//!
//! Twenty lines of calendar arithmetic instead of a date crate: the API only ever formats
//! instants, and PostgreSQL hands them over as microseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, as microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// Formats microseconds since the Unix epoch (negative is before 1970).
pub(crate) fn rfc3339_micros(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_705_458_881_217_753, "2024-01-17T02:34:41.217753Z"),
            (951_782_400_000_001, "2000-02-29T00:00:00.000001Z"),
            (4_107_542_399_999_999, "2100-02-28T23:59:59.999999Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
            (1_709_251_199_500_000, "2024-02-29T23:59:59.500000Z"),
        ];
        for (micros, text) in cases {
            assert_eq!(rfc3339_micros(micros), text, "{micros}");
        }
    }

    #[test]
    fn now_is_after_2024() {
        assert!(rfc3339_micros(now_micros()).as_str() > "2024-01-01");
    }
}
