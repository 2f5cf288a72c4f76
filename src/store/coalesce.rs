//! Group commit: concurrent callers' small writes reach Redis as one script
//! call.
//!
//! A script call costs Redis something whatever it does (reading the
//! request, finding the script, entering Lua, writing the reply), so a
//! job's create, claim and finish are each sent together with whatever
//! other jobs' are waiting: that share of the cost is paid once per batch. Nothing waits to fill a batch: a call starts as soon
//! as one of [`MAX_IN_FLIGHT`] slots is free and takes everything queued up
//! to then. An idle process therefore sends each write at once, and a busy
//! one sends them in batches that grow with the load.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
};

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::StoreError;

/// Calls of one kind in flight at once, per process and shard.
pub const MAX_IN_FLIGHT: usize = 4;

/// Jobs per call at most (an item may carry several; one bigger than this
/// goes alone): bounds how long one script holds Redis.
pub const MAX_BATCH: usize = 500;

type Waiter<O> = oneshot::Sender<Result<O, StoreError>>;
type Flush<R, O> =
    Arc<dyn Fn(Vec<R>) -> Pin<Box<dyn Future<Output = Result<Vec<O>, StoreError>> + Send>> + Send + Sync>;

/// The call's answer was lost or made no sense.
fn lost(why: String) -> StoreError {
    StoreError::Corrupt { id: "batch".to_owned(), why }
}

/// Batches items of type `R` into calls of `flush`, which answers one `O`
/// per item, in order.
pub struct Coalescer<R, O> {
    flush: Flush<R, O>,
    weight: fn(&R) -> usize,
    tx: OnceLock<mpsc::UnboundedSender<(R, Waiter<O>)>>,
}

impl<R: Send + 'static, O: Send + 'static> Coalescer<R, O> {
    /// A coalescer over `flush`, one job per item. Its loop starts on first
    /// use, on the runtime of the caller, and ends when the coalescer is
    /// dropped.
    pub fn new<F, Fut>(flush: F) -> Self
    where
        F: Fn(Vec<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
    {
        Self::weighed(|_| 1, flush)
    }

    /// A coalescer whose items carry `weight(item)` jobs each.
    pub fn weighed<F, Fut>(weight: fn(&R) -> usize, flush: F) -> Self
    where
        F: Fn(Vec<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, StoreError>> + Send + 'static,
    {
        Self { flush: Arc::new(move |items| Box::pin(flush(items))), weight, tx: OnceLock::new() }
    }

    /// Sends `item` with the next call and waits for its answer. Dropping
    /// the future does not withdraw the item: once submitted it is written.
    pub async fn submit(&self, item: R) -> Result<O, StoreError> {
        let (tx, rx) = oneshot::channel();
        let sender = self.tx.get_or_init(|| spawn_loop(self.flush.clone(), self.weight));
        if sender.send((item, tx)).is_err() {
            return Err(lost("the batching loop has stopped".to_owned()));
        }
        rx.await.unwrap_or_else(|_| Err(lost("the batched call was dropped".to_owned())))
    }
}

fn spawn_loop<R: Send + 'static, O: Send + 'static>(
    flush: Flush<R, O>,
    weight: fn(&R) -> usize,
) -> mpsc::UnboundedSender<(R, Waiter<O>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(R, Waiter<O>)>();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tokio::spawn(async move {
        // An item that did not fit the previous batch starts the next one.
        let mut carried = None;
        loop {
            let first = match carried.take() {
                Some(item) => item,
                None => match rx.recv().await {
                    Some(item) => item,
                    None => return,
                },
            };
            // Waiting for a slot is what lets a batch grow under load.
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let mut jobs = weight(&first.0);
            let mut batch = vec![first];
            while jobs < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) if jobs + weight(&item.0) > MAX_BATCH => {
                        carried = Some(item);
                        break;
                    }
                    Ok(item) => {
                        jobs += weight(&item.0);
                        batch.push(item);
                    }
                    Err(_) => break,
                }
            }
            let flush = flush.clone();
            tokio::spawn(async move {
                let (items, waiters): (Vec<R>, Vec<Waiter<O>>) = batch.into_iter().unzip();
                let n = items.len();
                match flush(items).await {
                    Ok(outs) if outs.len() == n => {
                        for (waiter, out) in waiters.into_iter().zip(outs) {
                            let _ = waiter.send(Ok(out));
                        }
                    }
                    Ok(outs) => {
                        let why = format!("{} answers for {n} items", outs.len());
                        for waiter in waiters {
                            let _ = waiter.send(Err(lost(why.clone())));
                        }
                    }
                    Err(e) => {
                        for waiter in waiters {
                            let _ = waiter.send(Err(e.duplicate()));
                        }
                    }
                }
                drop(slot);
            });
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_items_share_calls_and_each_gets_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let c: Arc<Coalescer<u32, u32>> = Arc::new(Coalescer::new(move |items: Vec<u32>| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(items.into_iter().map(|i| i * 2).collect())
            }
        }));
        let answers = futures::future::join_all((0..200u32).map(|i| {
            let c = c.clone();
            async move { c.submit(i).await.unwrap() }
        }))
        .await;
        assert_eq!(answers, (0..200u32).map(|i| i * 2).collect::<Vec<_>>());
        let n = calls.load(Ordering::Relaxed);
        assert!(n < 50, "200 concurrent items took {n} calls");
    }

    #[tokio::test]
    async fn a_failed_call_fails_every_item_in_it() {
        let c: Coalescer<u32, u32> = Coalescer::new(|_: Vec<u32>| async {
            Err::<Vec<u32>, _>(StoreError::Redis(redis::RedisError::from((redis::ErrorKind::Io, "down"))))
        });
        assert!(matches!(c.submit(1).await, Err(StoreError::Redis(_))));
    }
}
