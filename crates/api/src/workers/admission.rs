//! How many client connections the server holds at once. Every connection costs a file
//! descriptor (and a forwarded request one more towards its backend), so a server without a
//! cap meets a flood of connections, or a slow-loris holding thousands idle, by running out of
//! descriptors: then nothing is accepted, backends cannot be reached, files cannot be opened.
//! With the cap, a connection over it is closed at once and counted (as Envoy's
//! `global_downstream_max_connections` does), and the server keeps what it needs for the
//! connections it holds. A refusal also starts a reclaim of idle connections (see
//! [`super::Workers::dispatch`]), which also gives up request heads still coming after a
//! second (`http1::slow_head`) and TLS handshakes still under way after three (`run`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Counts a connection closed by a reclaim, by why (`idle`, `slow_head`, `handshake`): how
/// much a full server has had to take back. Rare (only at the cap), so looked up by name.
pub(crate) fn count_reclaimed(reason: &'static str) {
    metrics::counter!("portcullis_gateway_connections_reclaimed_total", "reason" => reason)
        .increment(1);
}

/// Descriptors kept back from the derived cap: the database pool, the listeners, the workers'
/// event queues, log and policy files.
const RESERVED_DESCRIPTORS: u64 = 256;
/// The smallest derived cap, for a process started with a very low descriptor limit.
const MIN_DERIVED: u64 = 16;
/// How often, at most, refusals are logged while they go on.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How often, at most, the connections held are asked to close once idle.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);

/// Raises this process's soft limit on open files to its hard limit (as HAProxy and Go's
/// runtime do): the soft limit is often 1,024, far below what a front door serves, while the
/// hard limit an administrator sets is what the process may use. Returns the soft limit in
/// force afterwards (`None`: unlimited or unknown).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        // No hard limit (macOS): the kernel's own cap applies, which setrlimit would refuse.
        if limit.maximum.is_some() && limit.current != limit.maximum {
            let raised = Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => return limit.maximum,
                Err(e) => {
                    tracing::warn!(error = %e, soft = ?limit.current, hard = ?limit.maximum,
                        "could not raise the open-file limit to its hard limit");
                }
            }
        }
        limit.current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap when none is configured: half the descriptors the process may open
/// (a forwarded request holds one towards its backend too, as nginx counts
/// `worker_connections`) after a reserve, and at least 16.
pub fn derived_max_connections() -> usize {
    #[cfg(unix)]
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    #[cfg(not(unix))]
    let soft: Option<u64> = None;
    cap_for(soft)
}

/// The derived cap for a soft limit (`None`: unlimited).
fn cap_for(soft: Option<u64>) -> usize {
    // An unlimited process still gets a cap: the kernel's own table is finite.
    let soft = soft.unwrap_or(1 << 20);
    let cap = (soft.saturating_sub(RESERVED_DESCRIPTORS) / 2).max(MIN_DERIVED);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Counts the connections the server holds and refuses those over the cap.
#[derive(Debug)]
pub(crate) struct Admission {
    open: AtomicUsize,
    max: usize,
    /// When refusals were last logged (seconds since the epoch; 0: never).
    warned_at: AtomicU64,
    /// When connections were last reclaimed (milliseconds from `start`, plus one; 0: never).
    reclaimed_at: AtomicU64,
    start: Instant,
    /// `portcullis_gateway_connections_open`.
    open_gauge: metrics::Gauge,
    /// `portcullis_gateway_connections_refused_total`.
    refused_counter: metrics::Counter,
}

/// A held connection's place under the cap, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot(Arc<Admission>);

impl Admission {
    /// A cap of `max` connections (at least one).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max: max.max(1),
            warned_at: AtomicU64::new(0),
            reclaimed_at: AtomicU64::new(0),
            start: Instant::now(),
            // Looked up once: the recorder is installed before the server starts its workers.
            open_gauge: metrics::gauge!("portcullis_gateway_connections_open"),
            refused_counter: metrics::counter!("portcullis_gateway_connections_refused_total"),
        })
    }

    /// Whether a refusal should reclaim connections (see [`super::Workers::dispatch`]): at most
    /// once per [`RECLAIM_EVERY`], as waking every connection of a full server is not free.
    pub(crate) fn reclaim_due(&self) -> bool {
        let now = u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.reclaimed_at.load(Ordering::Relaxed);
        let every = u64::try_from(RECLAIM_EVERY.as_millis()).unwrap_or(u64::MAX);
        (last == 0 || now.saturating_sub(last) >= every)
            && self
                .reclaimed_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// A place for one more connection, or `None` (counted and logged) when the server holds
    /// as many as it may.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let slot = self.take();
        if slot.is_none() {
            self.refused();
        }
        slot
    }

    /// A place under the cap, if one is free.
    fn take(self: &Arc<Self>) -> Option<Slot> {
        // Never above the cap, even for a moment: the descriptors it guards are real.
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()?;
        self.open_gauge.increment(1.0);
        Some(Slot(self.clone()))
    }

    fn refused(&self) {
        self.refused_counter.increment(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.warned_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY.as_secs()
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_connections = self.max,
                "refusing connections: the server holds as many as gateway.max_connections allows"
            );
        }
    }

    /// Connections held now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Slot {
    /// Another place under the same cap, for an HTTP/2 stream (see [`StreamPlace`]). `None`
    /// (counted in `portcullis_gateway_streams_refused_total`) when the server holds as many as
    /// it may. No reclaim follows: it would close busy connections (the refused stream's own
    /// among them) without freeing the places their streams hold.
    fn another(&self) -> Option<Slot> {
        let slot = self.0.take();
        if slot.is_none() {
            metrics::counter!("portcullis_gateway_streams_refused_total").increment(1);
        }
        slot
    }
}

/// The places an HTTP/2 connection's streams hold while they forward. A place stands for a
/// client connection and the one backend connection it may hold; a multiplexed connection's
/// streams may hold a backend connection each, so every stream forwarding beside another takes
/// a place of its own. The connection's own place covers one forwarding stream, whichever.
#[derive(Debug)]
pub(crate) struct StreamPlaces {
    slot: Arc<Slot>,
    /// Whether a stream holds the connection's own place.
    own_taken: std::sync::atomic::AtomicBool,
}

impl StreamPlaces {
    /// The places of the connection holding `slot`.
    pub(crate) fn new(slot: Arc<Slot>) -> Arc<Self> {
        Arc::new(Self {
            slot,
            own_taken: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// One HTTP/2 stream's place under the cap, taken before it forwards to a backend and given
/// back when the last of its holders (the request, the answer's body) is dropped. Streams that
/// forward nothing (the control plane, forward-auth) take none.
#[derive(Debug)]
pub struct StreamPlace {
    places: Arc<StreamPlaces>,
    held: std::sync::OnceLock<Held>,
}

#[derive(Debug)]
enum Held {
    /// The connection's own place.
    Own,
    /// A place of its own, given back when dropped.
    Extra { _place: Slot },
}

impl StreamPlace {
    /// A stream of the connection whose places these are, holding none yet.
    pub(crate) fn new(places: Arc<StreamPlaces>) -> Arc<Self> {
        Arc::new(Self {
            places,
            held: std::sync::OnceLock::new(),
        })
    }

    /// Takes the stream's place (the connection's own if no other stream holds it); false when
    /// the server holds as many as it may.
    pub fn take(&self) -> bool {
        if self.held.get().is_some() {
            return true;
        }
        let own = &self.places.own_taken;
        let held = if own
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            Held::Own
        } else {
            match self.places.slot.another() {
                Some(place) => Held::Extra { _place: place },
                None => return false,
            }
        };
        // Only one caller takes a stream's place; were there two, the second's is given back.
        if let Err(Held::Own) = self.held.set(held) {
            own.store(false, Ordering::Release);
        }
        true
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        if let Some(Held::Own) = self.held.get() {
            self.places.own_taken.store(false, Ordering::Release);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.open_gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_never_passed_and_a_freed_place_is_taken_again() {
        let admission = Admission::new(2);
        let first = admission.admit().expect("first");
        let second = admission.admit().expect("second");
        assert!(admission.admit().is_none(), "a third over a cap of two");
        assert_eq!(admission.open(), 2);
        drop(first);
        assert_eq!(admission.open(), 1);
        let third = admission.admit().expect("a place was freed");
        assert!(admission.admit().is_none());
        drop((second, third));
        assert_eq!(admission.open(), 0);
    }

    #[test]
    fn streams_forwarding_beside_another_take_places_of_their_own() {
        let admission = Admission::new(2);
        let places = StreamPlaces::new(Arc::new(admission.admit().expect("the connection")));
        let first = StreamPlace::new(places.clone());
        assert!(first.take(), "the connection's own place");
        assert_eq!(admission.open(), 1);
        let second = StreamPlace::new(places.clone());
        assert!(second.take(), "the one place left");
        assert_eq!(admission.open(), 2);
        let third = StreamPlace::new(places.clone());
        assert!(!third.take(), "the cap is reached");
        assert!(admission.admit().is_none(), "nor is a connection let in");
        // The first ends: the connection's own place is free again, and the next stream takes
        // it rather than a place the server does not have.
        drop(first);
        assert!(third.take());
        assert_eq!(admission.open(), 2);
        drop(second);
        assert_eq!(admission.open(), 1, "the second's own place came back");
        drop(third);
        let fourth = StreamPlace::new(places);
        assert!(fourth.take());
        assert_eq!(admission.open(), 1, "the connection's own place again");
    }

    #[test]
    fn reclaims_come_at_most_once_a_second() {
        let admission = Admission::new(1);
        assert!(admission.reclaim_due(), "the first refusal reclaims");
        assert!(!admission.reclaim_due(), "not again at once");
        // A server started ten seconds ago that reclaimed 1.5 s and then 0.5 s ago.
        let Some(start) = Instant::now().checked_sub(Duration::from_secs(10)) else {
            return;
        };
        let admission = Admission {
            start,
            ..Arc::into_inner(Admission::new(1)).unwrap()
        };
        admission.reclaimed_at.store(8_501, Ordering::Relaxed);
        assert!(admission.reclaim_due(), "1.5 s after the last");
        admission.reclaimed_at.store(9_501, Ordering::Relaxed);
        assert!(!admission.reclaim_due(), "0.5 s after the last");
    }

    #[test]
    fn the_derived_cap_is_half_the_descriptors_after_the_reserve() {
        for (soft, cap) in [
            (Some(1024), 384),
            (Some(65_536), 32_640),
            (Some(300), 22),
            // A very low limit still admits a few; an unlimited one is capped all the same.
            (Some(64), 16),
            (None, 524_160),
        ] {
            assert_eq!(cap_for(soft), cap, "soft limit {soft:?}");
        }
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let Some(soft) = raise_open_file_limit() else {
            return;
        };
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(limit.current, Some(soft));
        assert_eq!(limit.current, limit.maximum);
    }
}
