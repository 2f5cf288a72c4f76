//! When an idle worker fetches: as soon as work is announced, and every
//! poll interval as a safety net.
//!
//! apalis decides nothing here: its `PollWith` backend calls the strategy's
//! `poll_drive` once per poll, ignores the result, then polls the backend,
//! which fetches whenever its buffer is empty. A strategy's only job is to
//! leave a waker behind, so that the worker's task is polled again when
//! work may be there. If the fetch comes back empty while no waker is left
//! behind, the worker sleeps until its next apalis heartbeat (seconds).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::backend::ext::poll_strategy::{PollSnapshot, PollStrategy};
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

/// Items taken from the wake stream in one poll before yielding the thread;
/// a stream that always has an item would otherwise hold it forever.
const MAX_WAKES_PER_POLL: usize = 64;

/// Fetch when `wake` yields or when `period` passes, and always leave a
/// waker registered with both.
///
/// WORKAROUND(apalis-redis 1.0.0, APALIS.md #11): replaces apalis-core's
/// `Strategy::new().stream(wake).interval(period)`. That combinator returns
/// at the first inner strategy that is ready without polling the others, a
/// `StreamStrategy` that yields is not polled again, and an
/// `IntervalStrategy` that fires swaps in a fresh timer that nobody polls.
/// After a wake-up, neither the stream nor the timer holds the worker's
/// waker; when the fetch that follows finds nothing (the job was pushed
/// just after the fetch read the queue), the worker stalls until its next
/// heartbeat (issue #18: p99 of 2 s at 200 jobs/s). Delete this, and use
/// apalis's `Strategy` again, once apalis-core's combinator polls every
/// inner strategy until it is pending (the unit test
/// `apalis_strategy_loses_the_next_wake_up` then fails).
///
/// Remaining gap, bounded by `period`: a wake-up taken while a fetch is
/// already in flight, whose result then predates the push, is only caught
/// by the next tick.
pub struct WakeOrInterval<S> {
    /// `None` once the stream has ended; the interval carries on alone.
    wake: Option<S>,
    period: Duration,
    tick: Pin<Box<Sleep>>,
}

impl<S> WakeOrInterval<S>
where
    S: Stream + Unpin,
{
    /// A strategy that fetches on each item of `wake` and every `period`
    /// (at least 1 ms, so that a zero period cannot spin). Must be created
    /// inside a Tokio runtime (the interval is a Tokio timer).
    pub fn new(wake: S, period: Duration) -> Self {
        let period = period.max(Duration::from_millis(1));
        Self { wake: Some(wake), period, tick: Box::pin(tokio::time::sleep(period)) }
    }
}

impl<S> PollStrategy for WakeOrInterval<S>
where
    S: Stream + Unpin,
{
    fn poll_drive(&mut self, cx: &mut Context<'_>, _: &PollSnapshot) -> Poll<Option<()>> {
        let mut ready = false;
        // Poll the stream until it is pending: only a poll that returns
        // `Pending` registers the waker for the next wake-up. Several
        // wake-ups collapse into the one fetch that follows this call.
        if let Some(wake) = &mut self.wake {
            let mut taken = 0;
            loop {
                match wake.poll_next_unpin(cx) {
                    Poll::Ready(Some(_)) if taken < MAX_WAKES_PER_POLL => {
                        ready = true;
                        taken += 1;
                    }
                    Poll::Ready(Some(_)) => {
                        // Still more: come back rather than hog the thread.
                        cx.waker().wake_by_ref();
                        break;
                    }
                    Poll::Ready(None) => {
                        self.wake = None;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        // The same for the timer: after a tick, re-arm it and poll it again
        // so that it holds the waker for the next tick. A late tick
        // (a busy thread) counts once and the next one is a full period
        // away, like `MissedTickBehavior::Delay`.
        while self.tick.as_mut().poll(cx).is_ready() {
            ready = true;
            let next = Instant::now() + self.period;
            self.tick.as_mut().reset(next);
        }
        if ready {
            Poll::Ready(Some(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    //! The race of issue #18, driven by hand: a wake-up is taken, then we
    //! check that the next wake-up and the next tick would reach the
    //! worker. The counting waker stands in for the worker's task.

    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            mpsc, Arc, Mutex,
        },
        task::{Wake, Waker},
    };

    use apalis_core::backend::ext::poll_strategy::Strategy;
    use tokio::sync::Notify;

    use super::*;
    use crate::queue::wake;

    /// Counts wake-ups and reports each on a channel (for the test that
    /// must wait on a real-time timer).
    struct CountingWaker {
        count: AtomicUsize,
        tx: Mutex<mpsc::Sender<()>>,
    }

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.count.fetch_add(1, Ordering::SeqCst);
            if let Ok(tx) = self.tx.lock() {
                let _ = tx.send(());
            }
        }
    }

    fn counting_waker() -> (Arc<CountingWaker>, Waker, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let counter = Arc::new(CountingWaker { count: AtomicUsize::new(0), tx: Mutex::new(tx) });
        (counter.clone(), Waker::from(counter), rx)
    }

    fn drive(strategy: &mut impl PollStrategy, waker: &Waker) -> Poll<Option<()>> {
        strategy.poll_drive(&mut Context::from_waker(waker), &PollSnapshot::new())
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_wake_up_the_next_wake_up_and_the_next_tick_reach_the_worker() {
        let period = Duration::from_millis(100);
        let notify = Arc::new(Notify::new());
        let mut strategy = WakeOrInterval::new(wake::stream(notify.clone()), period);
        let (counter, waker, _rx) = counting_waker();

        // Work is announced; the worker polls and fetches.
        notify.notify_one();
        assert!(drive(&mut strategy, &waker).is_ready());

        // The fetch found nothing, and the next job is announced: the
        // worker must be woken for it.
        notify.notify_one();
        assert_eq!(counter.count.load(Ordering::SeqCst), 1, "no waker left for the next wake-up");
        assert!(drive(&mut strategy, &waker).is_ready());
        assert!(drive(&mut strategy, &waker).is_pending(), "one announcement, one fetch");

        // Pub/sub lost a message: the interval must still wake the worker,
        // tick after tick.
        for tick in 1..=3 {
            let before = counter.count.load(Ordering::SeqCst);
            tokio::time::advance(period).await;
            assert_eq!(counter.count.load(Ordering::SeqCst), before + 1, "no timer armed for tick {tick}");
            assert!(drive(&mut strategy, &waker).is_ready());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_while_a_wake_up_is_taken_keeps_the_timer_armed() {
        let period = Duration::from_millis(100);
        let notify = Arc::new(Notify::new());
        let mut strategy = WakeOrInterval::new(wake::stream(notify.clone()), period);
        let (counter, waker, _rx) = counting_waker();

        tokio::time::advance(period).await;
        notify.notify_one();
        assert!(drive(&mut strategy, &waker).is_ready());
        let before = counter.count.load(Ordering::SeqCst);
        tokio::time::advance(period).await;
        assert_eq!(counter.count.load(Ordering::SeqCst), before + 1, "no timer armed after a tick");
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_wake_stream_leaves_the_interval() {
        let period = Duration::from_millis(100);
        let mut strategy = WakeOrInterval::new(futures::stream::empty::<()>(), period);
        let (counter, waker, _rx) = counting_waker();
        assert!(drive(&mut strategy, &waker).is_pending());
        tokio::time::advance(period).await;
        assert_eq!(counter.count.load(Ordering::SeqCst), 1);
        assert!(drive(&mut strategy, &waker).is_ready());
    }

    #[tokio::test]
    async fn an_endless_wake_stream_does_not_hold_the_thread() {
        let mut strategy = WakeOrInterval::new(futures::stream::repeat(()), Duration::from_secs(60));
        let (counter, waker, _rx) = counting_waker();
        assert!(drive(&mut strategy, &waker).is_ready());
        assert_eq!(counter.count.load(Ordering::SeqCst), 1, "asks to be polled again");
    }

    /// The defect this module works around, asserted as it is in
    /// apalis-core 1.0.0. When this test fails, upstream has fixed its
    /// `Strategy`: delete `WakeOrInterval` (APALIS.md #11) and this test.
    #[test]
    fn apalis_strategy_loses_the_next_wake_up() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = runtime.enter();
        let period = Duration::from_millis(5);
        let notify = Arc::new(Notify::new());
        let mut strategy = Strategy::new().stream(wake::stream(notify.clone())).interval(period);
        let (counter, waker, rx) = counting_waker();

        // A wake-up is taken; the next one reaches nobody (it waits in the
        // `Notify` until something polls the stream again).
        notify.notify_one();
        assert!(drive(&mut strategy, &waker).is_ready());
        notify.notify_one();
        assert_eq!(counter.count.load(Ordering::SeqCst), 0, "apalis's Strategy now keeps a waker for the stream");
        assert!(drive(&mut strategy, &waker).is_ready());

        // Its interval is a `futures-timer` delay (real time). Arm it and
        // wait for its first tick...
        assert!(drive(&mut strategy, &waker).is_pending());
        rx.recv_timeout(Duration::from_secs(5)).expect("the first tick wakes the worker");
        while rx.try_recv().is_ok() {}
        assert!(drive(&mut strategy, &waker).is_ready());
        // ...after which the fresh delay is never polled: no tick wakes
        // anyone, however long we wait (here 40 periods).
        assert!(
            rx.recv_timeout(period * 40).is_err(),
            "apalis's Strategy now keeps its interval timer armed after a tick"
        );
    }
}
