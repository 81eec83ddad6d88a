//! The time every time rule reads (lockout windows, session lifetimes, token and link expiry,
//! TOTP steps). Production reads the system clock; tests move an adjustable one forward instead
//! of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A clock: the system time plus an offset that only tests change.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Option<Arc<AtomicI64>>,
}

fn system_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self { offset_ms: None }
    }

    /// A clock that starts at the system time and can be moved forward with [`Clock::advance`].
    pub fn adjustable() -> Self {
        Self {
            offset_ms: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Moves an adjustable clock forward (no effect on the system clock).
    pub fn advance(&self, by: Duration) {
        if let Some(offset) = &self.offset_ms {
            offset.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> i64 {
        let offset = self
            .offset_ms
            .as_ref()
            .map_or(0, |o| o.load(Ordering::Relaxed));
        system_millis() + offset
    }

    /// Whole seconds since the Unix epoch.
    pub fn now_secs(&self) -> u64 {
        (self.now_millis() / 1000).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_forward_and_the_system_clock_does_not() {
        let clock = Clock::adjustable();
        let before = clock.now_millis();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now_millis() - before >= 3_600_000);
        let system = Clock::system();
        system.advance(Duration::from_secs(3600));
        assert!(system.now_millis() < before + 3_600_000);
    }
}
