//! The current-thread runtimes that carry the traffic: built without tokio's time
//! driver where that is safe (the caller says so; Linux only), their timers then on
//! a timerfd ([`super::wheel`]).

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};

/// A current-thread runtime, lean (no tokio time driver, a timerfd for [`super::Sleep`]s)
/// or with tokio's timers. Run it with [`CurrentThread::block_on`], which installs the
/// timerfd's timers on the calling thread: a lean runtime's futures must be run there.
#[derive(Debug)]
pub struct CurrentThread {
    // Before the runtime: its timerfd leaves the I/O driver before the driver goes.
    #[cfg(target_os = "linux")]
    wheel: Option<super::wheel::Wheel>,
    runtime: Runtime,
}

impl CurrentThread {
    /// A lean runtime when `lean` (and the OS has timerfds); otherwise one with tokio's
    /// time driver. Lean is only safe when nothing on it uses tokio's timers directly:
    /// every timer of ours goes through this module; components that bring their own
    /// (ACME, the redis client, hyper-util's client) need `lean == false`.
    pub fn new(lean: bool) -> std::io::Result<CurrentThread> {
        let mut builder = Builder::new_current_thread();
        #[cfg(target_os = "linux")]
        if lean {
            let runtime = builder.enable_io().build()?;
            let wheel = {
                let _entered = runtime.enter();
                super::wheel::Wheel::new()?
            };
            return Ok(CurrentThread { wheel: Some(wheel), runtime });
        }
        let _ = lean;
        Ok(CurrentThread {
            #[cfg(target_os = "linux")]
            wheel: None,
            runtime: builder.enable_all().build()?,
        })
    }

    /// Whether its timers are the timerfd's rather than tokio's.
    pub fn is_lean(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.wheel.is_some();
        #[cfg(not(target_os = "linux"))]
        return false;
    }

    /// Runs `fut` to completion on this thread, with the runtime's timers.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        #[cfg(target_os = "linux")]
        if let Some(wheel) = &self.wheel {
            return self.runtime.block_on(wheel.drive(fut));
        }
        self.runtime.block_on(fut)
    }

    /// The runtime's handle (to spawn on it from other threads).
    pub fn handle(&self) -> &Handle {
        self.runtime.handle()
    }
}
