//! The gateway's audit records on their way to the store. A request hands its record to a
//! bounded queue and goes on; one writer on the control runtime appends what has gathered, many
//! records per transaction. A flood of refusals therefore costs bounded memory and a few
//! database round trips per batch, instead of a task and a transaction each. When the queue is
//! full (the database slower than the flood) or a batch cannot be written, the records are
//! counted, and the count itself goes into the trail as an `audit.unrecorded` record once the
//! store takes writes again: a loss is never silent.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_model::{Clock, Timestamp};
use portcullis_store::{Actor, NewAuditRecord, Store};
use tokio::sync::{mpsc, watch};

/// Records appended in one transaction at most.
const BATCH: usize = 1024;
/// Waits between the attempts to write a batch the store refused.
const RETRY_AFTER: [Duration; 2] = [Duration::from_millis(200), Duration::from_secs(1)];

/// The request side: hands records to the writer without waiting.
#[derive(Debug)]
pub struct AuditQueue {
    sender: mpsc::Sender<NewAuditRecord>,
    unrecorded: Arc<AtomicU64>,
}

/// The writer side, run on the control runtime by [`AuditWriter::run`].
#[derive(Debug)]
pub struct AuditWriter {
    receiver: mpsc::Receiver<NewAuditRecord>,
    unrecorded: Arc<AtomicU64>,
    store: Store,
    clock: Clock,
}

impl AuditQueue {
    /// A queue holding at most `capacity` records (at least one) that wait for the writer.
    pub fn new(capacity: usize, store: Store, clock: Clock) -> (Self, AuditWriter) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let unrecorded = Arc::new(AtomicU64::new(0));
        (
            Self {
                sender,
                unrecorded: unrecorded.clone(),
            },
            AuditWriter {
                receiver,
                unrecorded,
                store,
                clock,
            },
        )
    }

    /// Queues a record; when the queue is full, counts it as unrecorded instead.
    pub fn push(&self, record: NewAuditRecord) {
        if self.sender.try_send(record).is_err() {
            count_unrecorded(&self.unrecorded, 1);
        }
    }
}

fn count_unrecorded(unrecorded: &AtomicU64, n: u64) {
    unrecorded.fetch_add(n, Ordering::Relaxed);
    metrics::counter!("portcullis_audit_unrecorded_total").increment(n);
}

impl AuditWriter {
    /// Writes records as they come until `drained` turns true (every worker has finished its
    /// requests, so nothing more can be queued) and the queue is empty.
    pub async fn run(mut self, mut drained: watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                // Records first: the queue is emptied before the end is noticed.
                biased;
                taken = self.receiver.recv_many(&mut batch, BATCH) => {
                    if taken == 0 {
                        break;
                    }
                    self.write(&mut batch).await;
                }
                // A closed channel (the server's task gone) ends the run as well.
                _ = async { drained.wait_for(|&d| d).await.is_ok() } => break,
            }
            self.report_unrecorded().await;
        }
        self.report_unrecorded().await;
    }

    /// Appends `batch` (emptying it), trying again a few times; a batch that still fails is
    /// counted as unrecorded.
    async fn write(&self, batch: &mut Vec<NewAuditRecord>) {
        let mut waits = RETRY_AFTER.iter();
        loop {
            match self.store.append_audit(batch).await {
                Ok(()) => break,
                Err(e) => match waits.next() {
                    Some(wait) => {
                        tracing::warn!(error = %e, records = batch.len(), "could not write gateway audit records; trying again");
                        tokio::time::sleep(*wait).await;
                    }
                    None => {
                        tracing::error!(error = %e, records = batch.len(), "gateway audit records could not be written");
                        count_unrecorded(&self.unrecorded, batch.len() as u64);
                        break;
                    }
                },
            }
        }
        batch.clear();
    }

    /// Puts the count of records lost since the last report into the trail.
    async fn report_unrecorded(&self) {
        let count = self.unrecorded.swap(0, Ordering::Relaxed);
        if count == 0 {
            return;
        }
        let record = NewAuditRecord {
            at: Timestamp(self.clock.now_millis()),
            actor: Actor::system(),
            action: "audit.unrecorded",
            target: "gateway".into(),
            outcome: "failure",
            details: Some(serde_json::json!({
                "count": count,
                "reason": "gateway decisions came faster than the database took them, or it refused them",
            })),
        };
        if let Err(e) = self.store.append_audit(std::slice::from_ref(&record)).await {
            tracing::error!(error = %e, count, "could not record how many gateway audit records were lost");
            // Reported with the next batch instead.
            self.unrecorded.fetch_add(count, Ordering::Relaxed);
        } else {
            tracing::warn!(
                count,
                "gateway audit records were lost (queue full or database refusing writes); the count is in the trail"
            );
        }
    }
}
