//! Asynchronous forward passes: vt_forward_async and the vt_job handle.

use std::ffi::c_void;
use std::time::Duration;

use crate::engine::{Image, Job};
use crate::error::{Error, Status};
use crate::ffi::boundary::{arg, guard, guard_value, out_ptr, write};
use crate::ffi::embeddings::vt_embeddings;
use crate::ffi::error::vt_error;
use crate::ffi::image::{image_args, vt_image};
use crate::ffi::model::vt_model;
use crate::ffi::status::vt_status;

/// A forward pass submitted with vt_forward_async: wait for its result (vt_job_wait), poll
/// it (vt_job_done), cancel it (vt_job_cancel). Owned by the caller, freed with vt_job_free.
/// vt_job_wait, vt_job_done and vt_job_cancel may run concurrently on one job from any
/// threads (typically one thread waits while another cancels); vt_job_free must not race
/// with them.
pub struct vt_job {
    job: Job,
}

/// Called once when a job of vt_forward_async has finished, with `user_data` as given and
/// the job's status (VT_OK, VT_ERR_CANCELLED, ...). It runs on a vtower job thread, before
/// vt_job_wait returns and vt_job_done reports the job finished; it must return quickly, and
/// must not call vt_job_wait or vt_job_free on its own job. It is called even when the job
/// handle was freed before the job finished.
pub type vt_job_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, status: vt_status)>;

/// The callback and its user data, moved to the job thread.
struct Callback {
    f: unsafe extern "C" fn(*mut c_void, vt_status),
    user_data: *mut c_void,
}

// SAFETY: the caller of vt_forward_async promises that the callback may be called with
// `user_data` from another thread (documented on vt_forward_async); vtower only passes the
// pointer back, never dereferences it.
unsafe impl Send for Callback {}

impl Callback {
    fn call(self, status: Status) {
        // SAFETY: a valid function pointer with this signature (contract of
        // vt_forward_async); called once.
        unsafe { (self.f)(self.user_data, status as vt_status) }
    }
}

/// Starts a forward pass of `n_images` images (as vt_forward would run them) and returns at
/// once with a job handle. Results equal vt_forward's bit for bit.
///
/// - `images`: as for vt_forward. The images are copied: they may be freed as soon as this
///   returns.
/// - `callback`: NULL, or called once from a vtower thread when the job has finished (see
///   vt_job_callback); `user_data` is passed to it untouched and must stay valid until then.
/// - `job_out`: receives the job on VT_OK; free it with vt_job_free.
/// - `err_out`: NULL, or receives an owned vt_error on failure.
///
/// Jobs run in submission order on 2 job threads per model, started by the model's first
/// job; each job runs on the model's worker pool (vt_load_params.n_threads) like
/// vt_forward, so at most 2 jobs of a model run at once and the others wait in the queue.
/// A job holds the model: vt_model_free while jobs are queued or running is safe (see
/// vt_model_free). Errors of the pass itself are reported by vt_job_wait.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, an image made by another model),
/// VT_ERR_OUT_OF_MEMORY, VT_ERR_COMPUTE (no job thread could be started).
/// Threads: any thread, concurrently with other calls on the same model.
#[no_mangle]
pub extern "C" fn vt_forward_async(
    model: *const vt_model,
    images: *const *const vt_image,
    n_images: usize,
    callback: vt_job_callback,
    user_data: *mut c_void,
    job_out: *mut *mut vt_job,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live model (contract).
        let m = unsafe { arg(model, "model") }?;
        out_ptr(job_out, "job_out")?;
        // SAFETY: `n_images` pointers, each NULL or a live image (contract).
        let list = unsafe { image_args(images, n_images) }?;
        let mut owned: Vec<Image> = Vec::new();
        owned
            .try_reserve_exact(list.len())
            .map_err(|_| Error::new(Status::OutOfMemory, "cannot allocate the job's image list"))?;
        for (i, img) in list.enumerate() {
            let img = img?;
            m.model.check_image(i, &img.image)?;
            owned.push(img.image.clone());
        }
        let on_done = callback.map(|f| {
            let cb = Callback { f, user_data };
            Box::new(move |status: Status| cb.call(status)) as Box<dyn FnOnce(Status) + Send>
        });
        let job = m.model.submit(owned, on_done)?;
        // SAFETY: checked non-NULL above.
        unsafe { write(job_out, Box::into_raw(Box::new(vt_job { job }))) };
        Ok(())
    })
}

/// Waits until the job has finished and hands out its result: on VT_OK, `*out` receives the
/// embeddings (free them with vt_embeddings_free); otherwise the job's status (for example
/// VT_ERR_CANCELLED) and error. The result is handed out once: a second vt_job_wait on the
/// same job fails with VT_ERR_INVALID_ARGUMENT. The job must still be freed.
///
/// Errors: VT_ERR_INVALID_ARGUMENT (NULL pointers, result already taken), VT_ERR_CANCELLED,
/// and every error of vt_forward.
/// Threads: any thread; concurrently with vt_job_done and vt_job_cancel on the same job.
#[no_mangle]
pub extern "C" fn vt_job_wait(
    job: *mut vt_job,
    out: *mut *mut vt_embeddings,
    err_out: *mut *mut vt_error,
) -> vt_status {
    guard(err_out, || {
        // SAFETY: NULL or a live job (contract).
        let j = unsafe { arg(job.cast_const(), "job") }?;
        out_ptr(out, "out")?;
        let emb = j.job.wait()?;
        // SAFETY: checked non-NULL above.
        unsafe { write(out, Box::into_raw(Box::new(vt_embeddings { emb }))) };
        Ok(())
    })
}

/// Waits at most `timeout_ms` milliseconds (0: does not wait) for the job to finish; 1 once
/// it has (with a result, an error or cancelled: vt_job_wait then returns at once), 0 if it
/// is still queued or running, or `job` is NULL.
/// Threads: any thread; concurrently with vt_job_wait and vt_job_cancel on the same job.
#[no_mangle]
pub extern "C" fn vt_job_done(job: *const vt_job, timeout_ms: u32) -> i32 {
    guard_value(0, || {
        // SAFETY: NULL or a live job (contract).
        match unsafe { job.as_ref() } {
            Some(j) => i32::from(
                j.job
                    .wait_timeout(Duration::from_millis(u64::from(timeout_ms))),
            ),
            None => 0,
        }
    })
}

/// Asks the job to stop: a queued job will not run, a running one stops before its next
/// encoder layer (the time of one layer at most), and the job then ends with
/// VT_ERR_CANCELLED. A job that has already finished keeps its result. Returns at once; the
/// model stays usable. NULL is a no-op.
/// Threads: any thread; concurrently with vt_job_wait and vt_job_done on the same job.
#[no_mangle]
pub extern "C" fn vt_job_cancel(job: *const vt_job) {
    guard_value((), || {
        // SAFETY: NULL or a live job (contract).
        if let Some(j) = unsafe { job.as_ref() } {
            j.job.cancel();
        }
    })
}

/// Frees a job handle; NULL is a no-op. A job that has not finished is cancelled first
/// (as vt_job_cancel) and this returns at once, without waiting: the job stops in the
/// background and releases its images, its result and its hold on the model itself. A
/// result not taken by vt_job_wait is freed.
#[no_mangle]
pub extern "C" fn vt_job_free(job: *mut vt_job) {
    guard_value((), || {
        if !job.is_null() {
            // SAFETY: `job` came from vt_forward_async and is freed once (contract).
            drop(unsafe { Box::from_raw(job) });
        }
    })
}
