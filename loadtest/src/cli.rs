//! What the command lines of `loadtest`, `pace` and `soak` share.

/// A value parser for clap: a finite number above zero.
pub fn positive(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x > 0.0)
        .ok_or_else(|| format!("{text} is not a positive number"))
}

/// The generators' runtime: one thread, so the load generator stays cheap next to the stack
/// it measures.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
