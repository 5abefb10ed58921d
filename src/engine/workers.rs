//! A model's worker threads: a rayon pool whose threads are joined when it is dropped, so that
//! when `vt_free` returns no thread of the model runs any more (a host may then unload the
//! library), and their memory (stacks, thread-local buffers) is back.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::error::{Error, Result, Status};

pub(crate) struct WorkerPool {
    /// `None` only while dropping.
    pool: Option<rayon::ThreadPool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl WorkerPool {
    /// `n` threads named `vtower-<i>` (0 = one per core, as rayon counts them).
    pub(crate) fn new(n: usize) -> Result<WorkerPool> {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let started = Arc::clone(&threads);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("vtower-{i}"))
            .spawn_handler(move |thread| {
                let mut b = std::thread::Builder::new();
                if let Some(name) = thread.name() {
                    b = b.name(name.to_owned());
                }
                if let Some(size) = thread.stack_size() {
                    b = b.stack_size(size);
                }
                let handle = b.spawn(|| thread.run())?;
                started
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(handle);
                Ok(())
            })
            .build()
            .map_err(|e| {
                Error::new(Status::Compute, format!("cannot start worker threads: {e}"))
            })?;
        Ok(WorkerPool {
            pool: Some(pool),
            threads,
        })
    }

    /// Runs `f` on the pool (`rayon::ThreadPool::install`).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    pub(crate) fn current_num_threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Dropping the pool tells its threads to stop once they are idle; then wait for them
        // (but never for the current thread, should the last owner run on one of them).
        drop(self.pool.take());
        let me = std::thread::current().id();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_gone_when_dropped() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static EXITED: AtomicUsize = AtomicUsize::new(0);
        struct OnExit;
        impl Drop for OnExit {
            fn drop(&mut self) {
                EXITED.fetch_add(1, Ordering::SeqCst);
            }
        }
        thread_local! {
            static MARK: std::cell::RefCell<Option<OnExit>> = const { std::cell::RefCell::new(None) };
        }
        let pool = WorkerPool::new(3).unwrap();
        assert_eq!(pool.current_num_threads(), 3);
        let names = pool.pool.as_ref().unwrap().broadcast(|_| {
            MARK.with(|m| *m.borrow_mut() = Some(OnExit));
            std::thread::current().name().map(str::to_owned)
        });
        let mut names: Vec<_> = names.into_iter().flatten().collect();
        names.sort();
        assert_eq!(names, ["vtower-0", "vtower-1", "vtower-2"]);
        assert_eq!(EXITED.load(Ordering::SeqCst), 0);
        drop(pool);
        // Each thread has run its thread-local destructors, i.e. exited, before drop returned.
        assert_eq!(EXITED.load(Ordering::SeqCst), 3);
    }
}
