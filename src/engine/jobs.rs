//! Asynchronous forward passes: a per-model FIFO queue served by a few job threads, and the
//! [`Job`] handle that waits for, polls or cancels one pass.
//!
//! Threads: each model starts [`JOB_THREADS`] job threads on its first
//! [`Model::submit`](crate::engine::Model::submit) (none before). A job thread takes the
//! oldest queued job and runs it exactly as `Model::forward` runs (on the model's own worker
//! pool), so at most `JOB_THREADS` jobs of a model run at once and the rest wait in the
//! queue. Each queued or running job holds the model (`Arc<Model>`): dropping the last other
//! reference to a model (vt_model_free) while jobs are in flight is safe, the jobs finish
//! (or are cancelled by their handles) and the model is freed after the last one. The job
//! threads hold only the queue, and exit once the model is gone and the queue is empty.
//!
//! Cancellation is cooperative ([`crate::models::cancel`]): a queued job that is cancelled
//! ends at once (it releases its images and the model right away and never runs; its
//! callback, if any, runs on a short-lived vtower thread so that it is never called on the
//! canceller's thread), a running one stops before its next encoder layer, and both end with
//! [`Status::Cancelled`]. Cancelling a finished job changes nothing.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::engine::{Embeddings, Image, Model};
use crate::error::{Error, Result, Status};
use crate::models::cancel::CancelToken;

/// Job threads per model (started on the first submitted job).
pub(crate) const JOB_THREADS: usize = 2;

type Task = Box<dyn FnOnce() + Send>;

/// What a job calls once it has finished, with its status, before [`Job::wait`] returns.
pub type OnDone = Box<dyn FnOnce(Status) + Send>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below only moves values in and out; a panic cannot leave the
    // state half-updated, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
struct QueueState {
    tasks: VecDeque<Task>,
    started: bool,
    closed: bool,
    /// The job threads, joined when the queue is dropped.
    threads: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct QueueShared {
    state: Mutex<QueueState>,
    ready: Condvar,
}

/// A model's job queue. Dropped with the model: its threads then exit.
#[derive(Default)]
pub(crate) struct JobQueue {
    shared: Arc<QueueShared>,
}

impl JobQueue {
    fn push(&self, task: Task) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if !st.started {
            for i in 0..JOB_THREADS {
                let shared = Arc::clone(&self.shared);
                let thread = std::thread::Builder::new()
                    .name(format!("vtower-job-{i}"))
                    .spawn(move || serve(&shared))
                    .map_err(|e| {
                        Error::new(Status::Compute, format!("cannot start a job thread: {e}"))
                    })?;
                st.threads.push(thread);
            }
            st.started = true;
        }
        st.tasks.push_back(task);
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl Drop for JobQueue {
    /// Lets the job threads finish and waits for them (but not for the current thread: the
    /// last owner of a model may be a job that ran on one).
    fn drop(&mut self) {
        let threads = {
            let mut st = lock(&self.shared.state);
            st.closed = true;
            std::mem::take(&mut st.threads)
        };
        self.shared.ready.notify_all();
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

fn serve(shared: &QueueShared) {
    loop {
        let task = {
            let mut st = lock(&shared.state);
            loop {
                if let Some(t) = st.tasks.pop_front() {
                    break t;
                }
                if st.closed {
                    return;
                }
                st = shared
                    .ready
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        // A task catches its own panics; this is a second net so the thread survives.
        let _ = catch_unwind(AssertUnwindSafe(task));
    }
}

enum JobState {
    Pending,
    Done(Option<Result<Embeddings>>),
}

/// What a queued job holds until it runs or is cancelled.
struct Payload {
    images: Vec<Image>,
    model: Arc<Model>,
    on_done: Option<OnDone>,
}

struct JobShared {
    token: CancelToken,
    /// Set when a job thread has taken the job from the queue.
    started: AtomicBool,
    /// Set by whoever takes the job over first: the job thread that runs it, or a
    /// [`Job::cancel`] that finds it still queued and ends it.
    claimed: AtomicBool,
    payload: Mutex<Option<Payload>>,
    state: Mutex<JobState>,
    done: Condvar,
}

impl JobShared {
    /// Reports the end of the job: the callback first, then the result for `wait`.
    fn finish(&self, result: Result<Embeddings>, on_done: Option<OnDone>) {
        let status = match &result {
            Ok(_) => Status::Ok,
            Err(e) => e.status(),
        };
        if let Some(cb) = on_done {
            let _ = catch_unwind(AssertUnwindSafe(|| cb(status)));
        }
        *lock(&self.state) = JobState::Done(Some(result));
        self.done.notify_all();
    }

    /// Runs the job on a job thread, unless a cancel has already ended it.
    fn run(&self) {
        self.started.store(true, Ordering::Release);
        if self.claimed.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(Payload {
            images,
            model,
            on_done,
        }) = lock(&self.payload).take()
        else {
            return;
        };
        let result = if self.token.is_cancelled() {
            Err(Error::cancelled("the job was cancelled before it started"))
        } else {
            let refs: Vec<&Image> = images.iter().collect();
            catch_unwind(AssertUnwindSafe(|| {
                model.forward_cancellable(&refs, Some(&self.token))
            }))
            .unwrap_or_else(|_| {
                Err(Error::new(
                    Status::Panic,
                    "panic inside vtower while running a job",
                ))
            })
        };
        // Release the model and the images before anyone can see the job finished.
        drop(images);
        drop(model);
        self.finish(result, on_done);
    }
}

/// A submitted forward pass. Dropping the handle cancels the job if it has not finished
/// (nobody can read its result any more); the job then releases everything it holds.
pub struct Job {
    shared: Arc<JobShared>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job(done: {})", self.is_done())
    }
}

impl Job {
    /// Asks the job to stop: a queued job will not run, a running one stops before its next
    /// encoder layer; either then ends with [`Status::Cancelled`]. No effect on a finished
    /// job. Any thread, any number of times.
    pub fn cancel(&self) {
        self.shared.token.cancel();
        let shared = &self.shared;
        if shared.claimed.swap(true, Ordering::AcqRel) {
            return; // running or finished: it stops at its next check
        }
        // Still queued: end it now. The queue entry left behind does nothing when reached.
        let Some(Payload { on_done, .. }) = lock(&shared.payload).take() else {
            return;
        };
        let cancelled = || Err(Error::cancelled("the job was cancelled before it started"));
        let Some(cb) = on_done else {
            shared.finish(cancelled(), None);
            return;
        };
        // The callback is promised on a vtower thread, never the caller's.
        let job = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("vtower-cancel".into())
            .spawn(move || job.finish(cancelled(), Some(cb)));
        if let Err(e) = spawned {
            // No thread to be had (resource exhaustion): end the job without its callback
            // rather than leave a waiter hanging. Logged, as the callback is lost.
            crate::log::warn(&format!(
                "cannot start a thread for a cancelled job's callback ({e}); the callback is \
                 not called"
            ));
            shared.finish(cancelled(), None);
        }
    }

    /// Whether a job thread has taken the job from the queue (it may have finished since).
    pub fn has_started(&self) -> bool {
        self.shared.started.load(Ordering::Acquire)
    }

    /// Whether the job has finished (with a result, an error or cancelled).
    pub fn is_done(&self) -> bool {
        matches!(*lock(&self.shared.state), JobState::Done(_))
    }

    /// Waits at most `timeout` for the job to finish; true when it has.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut st = lock(&self.shared.state);
        loop {
            if matches!(*st, JobState::Done(_)) {
                return true;
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .done
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits for the job to finish and takes its result: the embeddings (bit-identical to
    /// what `Model::forward` gives for the same images) or its error. The result is handed
    /// out once; a second call is an `InvalidArgument` error.
    pub fn wait(&self) -> Result<Embeddings> {
        let mut st = lock(&self.shared.state);
        loop {
            match &mut *st {
                JobState::Done(result) => {
                    return result.take().unwrap_or_else(|| {
                        Err(Error::invalid_argument(
                            "the job's result was already taken by an earlier wait",
                        ))
                    })
                }
                JobState::Pending => {
                    st = self
                        .shared
                        .done
                        .wait(st)
                        .unwrap_or_else(PoisonError::into_inner)
                }
            }
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Queues a forward pass of `images` on `model` (see [`Model::submit`]).
pub(crate) fn submit(
    model: &Arc<Model>,
    queue: &JobQueue,
    images: Vec<Image>,
    on_done: Option<OnDone>,
) -> Result<Job> {
    let shared = Arc::new(JobShared {
        token: CancelToken::new(),
        started: AtomicBool::new(false),
        claimed: AtomicBool::new(false),
        payload: Mutex::new(Some(Payload {
            images,
            model: Arc::clone(model),
            on_done,
        })),
        state: Mutex::new(JobState::Pending),
        done: Condvar::new(),
    });
    let job = Arc::clone(&shared);
    queue.push(Box::new(move || job.run()))?;
    Ok(Job { shared })
}
