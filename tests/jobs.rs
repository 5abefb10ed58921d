//! Asynchronous forward passes (Model::submit, vt_forward_async's engine): many jobs in
//! flight from many threads give vt_forward's results bit for bit; cancelling before the
//! start, mid-run and after the end; dropping a job or the model while jobs run.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use vtower::{Image, LoadOptions, Model, Status};

const NAME: &str = "siglip_f32";

fn load() -> Arc<Model> {
    let opts = LoadOptions {
        n_threads: 2,
        ..LoadOptions::default()
    };
    Arc::new(Model::load(fixtures().join(NAME), &opts).unwrap())
}

/// A job that takes long enough to be cancelled while it runs: `n` copies of one image.
fn many(model: &Model, n: usize) -> Vec<Image> {
    let bytes = std::fs::read(&cases(NAME)[0].path).unwrap();
    let img = model.preprocess(&bytes).unwrap();
    vec![img; n]
}

#[test]
fn many_jobs_from_many_threads_equal_forward_bit_exactly() {
    let model = load();
    let (files, reference) = serial_references(&model, NAME);
    let (files, reference) = (Arc::new(files), Arc::new(reference));
    let called = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let (model, files, reference, called) = (
                model.clone(),
                files.clone(),
                reference.clone(),
                called.clone(),
            );
            std::thread::spawn(move || {
                // Several jobs in flight per thread before waiting for any of them.
                let jobs: Vec<_> = (0..5)
                    .map(|round| {
                        let idx: Vec<usize> =
                            (0..3).map(|k| (t + round + k) % files.len()).collect();
                        let imgs = idx
                            .iter()
                            .map(|&i| model.preprocess(&files[i]).unwrap())
                            .collect();
                        let called = called.clone();
                        let cb = Box::new(move |s: Status| {
                            assert_eq!(s, Status::Ok);
                            called.fetch_add(1, Ordering::SeqCst);
                        });
                        (idx, model.submit(imgs, Some(cb)).unwrap())
                    })
                    .collect();
                for (round, (idx, job)) in jobs.into_iter().enumerate().rev() {
                    let out = job.wait().unwrap();
                    assert!(job.is_done());
                    for (k, &i) in idx.iter().enumerate() {
                        assert!(
                            out.data(k).unwrap() == reference[i].as_slice(),
                            "thread {t} job {round}: image {i} differs from vt_forward's"
                        );
                    }
                    let again = job.wait().unwrap_err();
                    assert_eq!(again.status(), Status::InvalidArgument, "{again}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread");
    }
    assert_eq!(called.load(Ordering::SeqCst), 30, "each callback runs once");
}

/// Waits until `job` has been taken by a job thread.
fn wait_started(job: &vtower::Job) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !job.has_started() {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::yield_now();
    }
}

#[test]
fn cancel_before_start_mid_run_and_after_finish() {
    let model = load();
    // Mid-run: cancel a long job as soon as a job thread has taken it. Its checks run before
    // every batch and every encoder layer, so it ends cancelled unless it already finished
    // (a few tries make that race irrelevant).
    let mut stopped = None;
    for _ in 0..5 {
        let job = model.submit(many(&model, 3000), None).unwrap();
        wait_started(&job);
        let t0 = Instant::now();
        job.cancel();
        match job.wait() {
            Err(e) if !e.message().contains("before it started") => {
                assert_eq!(e.status(), Status::Cancelled, "{e}");
                stopped = Some(t0.elapsed());
                break;
            }
            Err(e) => assert_eq!(e.status(), Status::Cancelled, "{e}"),
            Ok(_) => {}
        }
    }
    let latency = stopped.expect("no running job could be cancelled in 5 tries");
    println!("cancelled a running job in {latency:?}");
    // Generous: a layer of this fixture takes well under a millisecond.
    assert!(latency < Duration::from_secs(2), "cancel took {latency:?}");

    // Before the start: two long jobs occupy both job threads, so the third is queued.
    let a = model.submit(many(&model, 3000), None).unwrap();
    let b = model.submit(many(&model, 3000), None).unwrap();
    let queued = model.submit(many(&model, 2), None).unwrap();
    queued.cancel();
    a.cancel();
    b.cancel();
    for j in [&a, &b] {
        if let Err(e) = j.wait() {
            assert_eq!(e.status(), Status::Cancelled, "{e}");
        }
    }
    let Err(err) = queued.wait() else {
        panic!("the queued job was not cancelled")
    };
    assert_eq!(err.status(), Status::Cancelled);
    assert!(err.message().contains("before it started"), "{err}");

    // The model is still usable, and a finished job keeps its result when cancelled.
    let (files, reference) = serial_references(&model, NAME);
    let img = model.preprocess(&files[0]).unwrap();
    let done = model.submit(vec![img], None).unwrap();
    assert!(done.wait_timeout(Duration::from_secs(60)));
    done.cancel();
    assert!(done.wait().unwrap().data(0).unwrap() == reference[0].as_slice());
}

#[test]
fn dropping_jobs_and_the_model_while_jobs_run_is_safe() {
    let model = load();
    let weak = Arc::downgrade(&model);
    let finished = Arc::new(AtomicUsize::new(0));
    let mut kept = Vec::new();
    for i in 0..6 {
        let f = finished.clone();
        let cb = Box::new(move |_s: Status| {
            f.fetch_add(1, Ordering::SeqCst);
        });
        let job = model.submit(many(&model, 200), Some(cb)).unwrap();
        if i % 2 == 0 {
            drop(job); // freed before it finishes: cancelled in the background
        } else {
            kept.push(job);
        }
    }
    drop(model); // the jobs hold it
    for job in &kept {
        match job.wait() {
            Ok(out) => assert_eq!(out.count(), 200),
            Err(e) => panic!("a kept job failed: {e}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while finished.load(Ordering::SeqCst) < 6 || weak.strong_count() > 0 {
        assert!(Instant::now() < deadline, "dropped jobs never finished");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A queued job that is cancelled ends at once (it does not wait for the jobs ahead of it),
/// and its callback runs once, on a vtower thread, not on the canceller's.
#[test]
fn a_cancelled_queued_job_ends_without_waiting_for_the_queue() {
    let model = load();
    // Two long jobs occupy both job threads.
    let a = model.submit(many(&model, 3000), None).unwrap();
    let b = model.submit(many(&model, 3000), None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let cb = Box::new(move |s: Status| {
        tx.send((s, std::thread::current().id())).unwrap();
    });
    let queued = model.submit(many(&model, 2), Some(cb)).unwrap();
    queued.cancel();
    let err = queued.wait().unwrap_err();
    // Had it waited for a job thread, one of the long jobs would have finished first.
    let (a_done, b_done) = (a.is_done(), b.is_done());
    assert_eq!(err.status(), Status::Cancelled, "{err}");
    assert!(err.message().contains("before it started"), "{err}");
    assert!(!a_done && !b_done, "the cancelled job waited for the queue");
    let (status, thread) = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(status, Status::Cancelled);
    assert_ne!(
        thread,
        std::thread::current().id(),
        "callback on the caller's thread"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "callback twice"
    );
    // Cancelling again, and the queue entry left behind, change nothing.
    queued.cancel();
    assert_eq!(queued.wait().unwrap_err().status(), Status::InvalidArgument);
    a.cancel();
    b.cancel();
    let (files, reference) = serial_references(&model, NAME);
    let img = model.preprocess(&files[0]).unwrap();
    let out = model.submit(vec![img], None).unwrap().wait().unwrap();
    assert!(out.data(0).unwrap() == reference[0].as_slice());
}
