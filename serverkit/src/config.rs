//! Helpers for reading configuration from the environment.

use std::ops::RangeInclusive;
use std::str::FromStr;

/// A variable lookup over fixed pairs: configuration given in code (tests) rather than by the
/// process environment.
pub fn lookup_in(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The variables `read` asks for when given `vars`, and which of them `usage` does not list
/// (as `  NAME ` at the start of a line's text): for a test that a `--help` text names every
/// variable its configuration reads.
pub fn variables_read(
    vars: &[(&str, &str)],
    usage: &str,
    read: impl FnOnce(&dyn Fn(&str) -> Option<String>),
) -> (Vec<String>, Vec<String>) {
    let asked = std::cell::RefCell::new(Vec::new());
    let lookup = lookup_in(vars);
    read(&|name: &str| {
        asked.borrow_mut().push(name.to_owned());
        lookup(name)
    });
    let asked = asked.into_inner();
    let unlisted = asked
        .iter()
        .filter(|name| !usage.contains(&format!("  {name} ")))
        .cloned()
        .collect();
    (asked, unlisted)
}

/// The number in variable `name`, or `default` when it is unset; an error naming the variable
/// and the valid range when it is not a number in `range`.
pub fn number<T>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
    range: RangeInclusive<T>,
) -> Result<T, String>
where
    T: FromStr + PartialOrd + std::fmt::Display,
{
    let Some(text) = get(name) else {
        return Ok(default);
    };
    match text.trim().parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        _ => Err(format!(
            "{name}={text} is not valid: give a whole number from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ranges_and_messages() {
        let get = lookup_in(&[("SET", "7"), ("BIG", "70"), ("WORD", "seven")]);
        assert_eq!(number(&get, "UNSET", 3u32, 1..=10), Ok(3));
        assert_eq!(number(&get, "SET", 3u32, 1..=10), Ok(7));
        assert_eq!(
            number(&get, "BIG", 3u32, 1..=10),
            Err("BIG=70 is not valid: give a whole number from 1 to 10".to_owned())
        );
        assert!(number(&get, "WORD", 3u32, 1..=10)
            .unwrap_err()
            .starts_with("WORD=seven"));
    }
}
