//! The process's metrics as the suites read them. The recorder is the process's: every server a
//! suite starts adds to the same series. Shared by the suites (each includes this file).

/// The value of the series `name` whose labels include every one of `labels` (as the
/// exposition writes them: `reason="idle"`) in the Prometheus text `metrics`; 0 where there is
/// none yet.
pub fn series(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
