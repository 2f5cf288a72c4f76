//! The operations on jobs that the app, the worker and the monitor share.
//! Each is one function here so every entry point behaves the same.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    domain::{JobId, NewJob},
    jobs::{JobRecord, JobSpec, QueueTask},
    queue::{Queue, QueueError},
    store::{JobStore, Requeue, StoreError},
};

/// Accepting or changing a job failed for a reason the caller cannot fix.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The job store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// A job that is stored and queued.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its id.
    pub id: JobId,
    /// When it was accepted.
    pub queued_at: DateTime<Utc>,
}

/// Job operations over one store and queue.
#[derive(Clone)]
pub struct HookService {
    store: JobStore,
    queue: Queue,
    timeout: Duration,
}

impl HookService {
    /// `timeout` bounds every operation, so a hung Redis turns into an
    /// error instead of a hung request.
    pub fn new(store: JobStore, queue: Queue, timeout: Duration) -> Self {
        Self { store, queue, timeout }
    }

    /// The job store.
    pub fn store(&self) -> &JobStore {
        &self.store
    }

    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        tokio::time::timeout(self.timeout, op).await.unwrap_or(Err(ServiceError::Timeout(self.timeout)))
    }

    /// Stores a job and puts its first attempt on the queue. Only when both
    /// happened is the job accepted; if queueing fails the stored record is
    /// removed again, so an error never leaves a job behind that the caller
    /// believes was refused.
    #[tracing::instrument(name = "accept", skip_all, fields(job_id))]
    pub async fn accept(&self, job: NewJob) -> Result<Accepted, ServiceError> {
        let id = job.mint_id();
        tracing::Span::current().record("job_id", tracing::field::display(&id));
        let host = job.to_url.host().to_owned();
        let spec = JobSpec::from(job);
        let queued_at = Utc::now();
        self.bounded(async {
            self.store.create(&[(id.clone(), &spec)], queued_at).await?;
            let first = QueueTask::DeliverV1 { job_id: id.clone(), cycle: 0, attempt: 1 };
            if let Err(e) = self.queue.push(&[first]).await {
                let _ = self.store.discard(&id).await;
                return Err(e.into());
            }
            Ok(())
        })
        .await?;
        tracing::info!(%host, "accepted");
        Ok(Accepted { id, queued_at })
    }

    /// Reads a job.
    pub async fn get(&self, id: &JobId) -> Result<Option<JobRecord>, ServiceError> {
        self.bounded(async { Ok(self.store.get(id).await?) }).await
    }

    /// Gives a failed job a fresh retry cycle (used by the API, the monitor
    /// and the CLI alike).
    #[tracing::instrument(name = "requeue", skip_all, fields(job_id = %id))]
    pub async fn requeue(&self, id: &JobId) -> Result<Requeue, ServiceError> {
        let outcome = self.bounded(async { Ok(self.store.requeue(id).await?) }).await?;
        if outcome == Requeue::Requeued {
            tracing::info!("requeued");
        }
        Ok(outcome)
    }

    /// Answers when Redis answers.
    pub async fn ready(&self) -> Result<(), ServiceError> {
        self.bounded(async { Ok(self.store.ping().await?) }).await
    }
}
