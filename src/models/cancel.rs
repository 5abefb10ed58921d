//! Cooperative cancellation of a forward pass.
//!
//! The engine runs a cancellable forward pass inside [`scoped`] with the job's
//! [`CancelToken`]; the encoder loops (the shared ViT in `vit.rs` and each family's own block
//! loop) call [`check`] before every layer, so a cancelled pass stops within the time of one
//! encoder layer with [`Status::Cancelled`](crate::error::Status::Cancelled). The token is
//! kept in a thread-local for the duration of the scope rather than threaded through
//! every `forward` signature: the layer loops run on the thread that entered the scope
//! (only the kernels inside a layer fan out to other threads), and scopes nest (a rayon
//! worker that picks up another job while it waits restores the outer token afterwards).
//! Outside any scope `check` never fails.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A shared flag that asks a running or queued forward pass to stop. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks the pass to stop at its next check. Idempotent; any thread.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// `Err(Cancelled)` once [`CancelToken::cancel`] was called.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::cancelled("the forward pass was cancelled"))
        } else {
            Ok(())
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<CancelToken>> = const { RefCell::new(None) };
}

/// Runs `f` with `token` as this thread's current token, restoring the previous one after
/// (also when `f` panics).
pub fn scoped<R>(token: Option<&CancelToken>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<CancelToken>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            CURRENT.with(|c| *c.borrow_mut() = prev);
        }
    }
    let prev = CURRENT.with(|c| c.replace(token.cloned()));
    let _restore = Restore(prev);
    f()
}

/// `Err(Cancelled)` when the current scope's token was cancelled; `Ok` outside a scope.
/// Cheap (a thread-local read and an atomic load): call it once per encoder layer.
pub fn check() -> Result<()> {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some(t) => t.check(),
        None => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    #[test]
    fn scopes_nest_and_restore() {
        assert!(check().is_ok());
        let outer = CancelToken::new();
        let inner = CancelToken::new();
        inner.cancel();
        scoped(Some(&outer), || {
            assert!(check().is_ok());
            let e = scoped(Some(&inner), check).unwrap_err();
            assert_eq!(e.status(), Status::Cancelled);
            assert!(check().is_ok());
            outer.cancel();
            assert_eq!(check().unwrap_err().status(), Status::Cancelled);
            assert!(scoped(None, check).is_ok());
        });
        assert!(check().is_ok());
    }
}
