//! Closing many kernel objects at once: [`close_all`] drops them concurrently and waits, and a
//! [`Closer`] starts closing each batch on its own thread at once, so that a refresh does not
//! wait, and waits only at [`Closer::flush`].
//!
//! Closing a link or a perf event can block for a grace period (~30-130 ms, docs/kernel-facts.md)
//! and the kernel serialises some of those closes; dropping many on worker threads lets the
//! others overlap. Every probe crate closes its links through here.

/// Most threads a batch of tracepoint links is closed on ([`close_all`], [`Closer`]).
pub const CLOSE_THREADS: usize = 128;

/// Drops every item concurrently, on at most `max_threads` worker threads, and returns when all
/// are dropped. Where the kernel lets the closes overlap they cost about one grace period in all.
pub fn close_all<T: Send>(items: Vec<T>, max_threads: usize) {
    if items.len() <= 1 {
        drop(items);
        return;
    }
    let threads = items.len().min(max_threads.max(1));
    let mut buckets: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, l) in items.into_iter().enumerate() {
        buckets[i % threads].push(l);
    }
    std::thread::scope(|s| {
        for b in buckets {
            s.spawn(move || drop(b));
        }
    });
}

/// Closes batches in the background, each batch on its own thread started at once, so that a
/// refresh that disarms returns without waiting for the kernel's grace periods and a later
/// batch never queues behind an earlier one. [`Closer::release`] returns when the batch's
/// thread is about to close it (a thread start, tens of microseconds): the kernel stops running
/// the programs of closed links within ~0.1 ms of the close starting (docs/kernel-facts.md),
/// long before the close returns. [`Closer::flush`] (and dropping the closer) waits until every
/// batch handed over is closed, so a shutdown leaves nothing attached.
pub struct Closer<T: Send + 'static> {
    max_threads: usize,
    pending: Vec<std::thread::JoinHandle<()>>,
    _items: std::marker::PhantomData<fn(T)>,
}

impl<T: Send + 'static> std::fmt::Debug for Closer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Closer")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<T: Send + 'static> Closer<T> {
    /// A closer that closes each batch on at most `max_threads` threads (see [`close_all`]).
    pub fn new(max_threads: usize) -> Closer<T> {
        Closer {
            max_threads,
            pending: Vec::new(),
            _items: std::marker::PhantomData,
        }
    }

    /// Starts closing `items` on a new thread and returns once that thread runs. If no thread
    /// can be started the items are closed on the calling thread before this returns.
    pub fn release(&mut self, items: Vec<T>) {
        self.release_then(items, || {});
    }

    /// As [`Closer::release`], and runs `then` on the batch's thread once every item is closed
    /// (or on the calling thread after closing them there, if no thread can be started).
    pub fn release_then(&mut self, items: Vec<T>, then: impl FnOnce() + Send + 'static) {
        if items.is_empty() {
            return;
        }
        self.pending.retain(|h| !h.is_finished());
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let max_threads = self.max_threads;
        let batch = Batch {
            items,
            then: Some(then),
        };
        // On a spawn error the closure, and with it the batch, is dropped here: its items are
        // closed on this thread, then `then` runs.
        if let Ok(h) = std::thread::Builder::new()
            .name("otf-closer".into())
            .spawn(move || {
                let _ = started_tx.send(());
                batch.close(max_threads);
            })
        {
            let _ = started_rx.recv();
            self.pending.push(h);
        }
    }

    /// Changes the number of threads each later batch is closed on.
    pub fn set_max_threads(&mut self, max_threads: usize) {
        self.max_threads = max_threads;
    }

    /// Batches handed over whose closes have not finished yet.
    pub fn pending(&mut self) -> usize {
        self.pending.retain(|h| !h.is_finished());
        self.pending.len()
    }

    /// Waits until every batch handed over so far is closed.
    pub fn flush(&mut self) {
        for h in self.pending.drain(..) {
            let _ = h.join();
        }
    }
}

/// Items to close and what to run once they are closed, on every path (dropping the batch
/// closes its items on the dropping thread).
struct Batch<T, F: FnOnce()> {
    items: Vec<T>,
    then: Option<F>,
}

impl<T: Send, F: FnOnce()> Batch<T, F> {
    fn close(mut self, max_threads: usize) {
        close_all(std::mem::take(&mut self.items), max_threads);
    }
}

impl<T, F: FnOnce()> Drop for Batch<T, F> {
    fn drop(&mut self) {
        drop(std::mem::take(&mut self.items));
        if let Some(then) = self.then.take() {
            then();
        }
    }
}

impl<T: Send + 'static> Drop for Closer<T> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Counts its drops, and sleeps in them as a link's close blocks.
    struct Slow(Arc<AtomicUsize>);

    impl Drop for Slow {
        fn drop(&mut self) {
            std::thread::sleep(std::time::Duration::from_millis(20));
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn items(n: usize, c: &Arc<AtomicUsize>) -> Vec<Slow> {
        (0..n).map(|_| Slow(c.clone())).collect()
    }

    #[test]
    fn close_all_drops_everything_before_returning() {
        let c = Arc::new(AtomicUsize::new(0));
        close_all(items(50, &c), 8);
        assert_eq!(c.load(Ordering::SeqCst), 50);
        close_all(items(1, &c), 8);
        close_all(Vec::<Slow>::new(), 8);
        assert_eq!(c.load(Ordering::SeqCst), 51);
    }

    #[test]
    fn the_closer_returns_before_the_closes_and_flush_waits_for_all() {
        let c = Arc::new(AtomicUsize::new(0));
        let mut r = Closer::new(4);
        // 8 closes of 20 ms on 4 threads take 40 ms: release must not wait for them.
        r.release(items(8, &c));
        r.release(items(3, &c));
        assert!(
            c.load(Ordering::SeqCst) < 11,
            "release waited for the closes"
        );
        assert!(r.pending() >= 1);
        r.flush();
        assert_eq!(c.load(Ordering::SeqCst), 11);
        assert_eq!(r.pending(), 0);
        r.release(items(2, &c));
        drop(r);
        assert_eq!(c.load(Ordering::SeqCst), 13);
    }

    #[test]
    fn then_runs_after_every_item_of_its_batch_is_closed() {
        let c = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(usize::MAX));
        let mut r = Closer::new(2);
        let (c2, seen2) = (c.clone(), seen.clone());
        r.release_then(items(5, &c), move || {
            seen2.store(c2.load(Ordering::SeqCst), Ordering::SeqCst)
        });
        r.flush();
        assert_eq!(seen.load(Ordering::SeqCst), 5);
        // An empty batch closes nothing and runs nothing.
        let seen3 = seen.clone();
        r.release_then(Vec::<Slow>::new(), move || seen3.store(0, Ordering::SeqCst));
        r.flush();
        assert_eq!(seen.load(Ordering::SeqCst), 5);
    }
}
