//! A future that is polled only when its own waker has fired.
//!
//! A connection is driven by one task that also waits for its watchdog and for shutdown.
//! `select!` polls every branch each time the task wakes, and a connection's task wakes
//! several times per request (readable, writable, the upstream's answer): each time the
//! watchdog's timer and the shutdown watch would be polled for nothing. [`Gated`] gives its
//! future a waker of its own and skips the poll unless that waker fired — what
//! `FuturesUnordered` does for its members, for one future and without the allocation per
//! wake.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

pin_project_lite::pin_project! {
    /// `inner`, polled only after its own waker fired (and on the first poll).
    pub struct Gated<F> {
        #[pin]
        inner: F,
        gate: Arc<Gate>,
        // The gate as a waker, made once.
        waker: Waker,
        // The parent waker last handed to the gate: while the task's waker stays the same
        // (it does, for a task's whole life), a poll costs a pointer comparison and an
        // atomic swap.
        registered: Option<Waker>,
    }
}

/// What the inner future's waker sets, and whom it wakes.
pub struct Gate {
    woken: AtomicBool,
    /// The task to wake when the inner future's waker fires.
    parent: Mutex<Option<Waker>>,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let parent = self
            .parent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(parent) = parent {
            parent.wake();
        }
    }
}

impl<F: Future> Gated<F> {
    pub fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            woken: AtomicBool::new(true),
            parent: Mutex::new(None),
        });
        Self {
            inner,
            waker: Waker::from(gate.clone()),
            gate,
            registered: None,
        }
    }
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !this
            .registered
            .as_ref()
            .is_some_and(|known| known.will_wake(cx.waker()))
        {
            *this.registered = Some(cx.waker().clone());
            *this
                .gate
                .parent
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        }
        if !this.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once told.
    struct Counted {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Counted {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn the_inner_future_is_polled_only_when_its_own_waker_fired() {
        let (polls, ready, inner_waker) = Default::default();
        let counted = Counted {
            polls: Arc::clone(&polls),
            ready: Arc::clone(&ready),
            waker: Arc::clone(&inner_waker),
        };
        let mut gated = Box::pin(Gated::new(counted));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(gated.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "the first poll goes through"
        );
        for _ in 0..10 {
            assert!(gated.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "other wake-ups do not reach it"
        );
        ready.store(true, Ordering::SeqCst);
        inner_waker.lock().unwrap().take().unwrap().wake();
        assert!(gated.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
