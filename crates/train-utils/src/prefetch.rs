//! Preparing the next batch on its own thread while the current step trains.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// Items `make(step)` for `steps`, produced one step ahead on a background thread. Dropping
/// it stops the producer (its next send fails) and joins the thread.
#[derive(Debug)]
pub struct Prefetch<T> {
    rx: Option<Receiver<T>>,
    producer: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Prefetch<T> {
    /// Starts producing `make(step)` for every step of `steps`, in order.
    pub fn spawn(steps: Range<u64>, mut make: impl FnMut(u64) -> T + Send + 'static) -> Self {
        let (tx, rx) = sync_channel(1);
        let producer = std::thread::spawn(move || {
            for step in steps {
                if tx.send(make(step)).is_err() {
                    break;
                }
            }
        });
        Self {
            rx: Some(rx),
            producer: Some(producer),
        }
    }

    /// The next item, or `None` once the producer has stopped (all steps sent, or it died).
    pub fn next_item(&self) -> Option<T> {
        self.rx.as_ref().and_then(|rx| rx.recv().ok())
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        // the receiver goes first so a producer blocked in `send` wakes up and ends
        self.rx.take();
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_and_an_early_drop_stops_the_producer() {
        let p = Prefetch::spawn(3..7, |s| s * 10);
        let got: Vec<u64> = std::iter::from_fn(|| p.next_item()).collect();
        assert_eq!(got, vec![30, 40, 50, 60]);
        let early = Prefetch::spawn(0..1_000_000, |s| s);
        assert_eq!(early.next_item(), Some(0));
        drop(early); // must not hang
    }
}
