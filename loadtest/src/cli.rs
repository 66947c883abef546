//! What the command lines of `loadtest` and `pace` share.

/// A value parser for clap: a finite number above zero.
pub fn positive(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| format!("{text} is not a positive number"))
}
