//! The module on a lean runtime (a real timerfd; deadlines of tens of milliseconds,
//! asserting order and that things fire, never how promptly) and on a tokio one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// Runs `body` on a lean runtime of a thread of its own: a timer that never fires
/// fails the test after a minute instead of hanging it.
fn on_lean<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = CurrentThread::new(true).expect("runtime");
        assert_eq!(rt.is_lean(), cfg!(target_os = "linux"));
        rt.block_on(body());
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("not done in a minute: a timer never fired"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the body panicked (above)"),
    }
}

#[cfg(target_os = "linux")]
fn registered() -> usize {
    wheel::registered()
}

#[cfg(not(target_os = "linux"))]
fn registered() -> usize {
    0
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn sleeps_fire_in_the_order_of_their_deadlines() {
    on_lean(|| async {
        let order = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let tasks: Vec<_> = [60u32, 20, 40]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                tokio::spawn(async move {
                    sleep_until(start + MS * ms).await;
                    assert!(Instant::now() >= start + MS * ms, "fired before its deadline");
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [20, 40, 60]);
        assert_eq!(registered(), 0);
    });
}

#[test]
fn a_dropped_sleep_leaves_nothing_and_does_not_stop_the_others() {
    on_lean(|| async {
        let mut first = std::pin::pin!(sleep(20 * MS));
        let waker = futures_util::task::noop_waker();
        assert!(first.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        let mut later = Box::pin(sleep(Duration::from_secs(3600)));
        assert!(later.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
        assert_eq!(registered(), 2);
        drop(later);
        assert_eq!(registered(), 1, "a dropped sleep is removed");
        // The timerfd is still armed for the first; it fires.
        first.await;
        assert_eq!(registered(), 0);
    });
}

#[test]
fn a_deadline_earlier_than_the_armed_one_arms_the_timer_again() {
    on_lean(|| async {
        let start = Instant::now();
        let far = sleep(Duration::from_secs(3600));
        let near = async {
            tokio::task::yield_now().await;
            sleep(30 * MS).await;
        };
        tokio::select! {
            biased;
            () = far => panic!("the far deadline fired first"),
            () = near => {}
        }
        assert!(Instant::now() - start < Duration::from_secs(3600));
        // A sleep reset earlier fires at its new deadline too.
        let mut moved = sleep(Duration::from_secs(3600));
        let waker = futures_util::task::noop_waker();
        assert!(Pin::new(&mut moved).poll(&mut Context::from_waker(&waker)).is_pending());
        moved.reset(Instant::now() + 20 * MS);
        assert!(!moved.is_elapsed());
        (&mut moved).await;
        assert!(moved.is_elapsed());
        assert_eq!(registered(), 0);
    });
}

#[test]
fn many_sleeps_all_fire_and_leave_nothing() {
    on_lean(|| async {
        let start = Instant::now();
        let fired = Arc::new(Mutex::new(0usize));
        let tasks: Vec<_> = (0..1000u32)
            .map(|i| {
                let fired = fired.clone();
                tokio::spawn(async move {
                    sleep_until(start + MS * (i % 50)).await;
                    *fired.lock().unwrap() += 1;
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*fired.lock().unwrap(), 1000);
        assert_eq!(registered(), 0);
    });
}

#[test]
fn a_timeout_gives_the_output_or_elapsed() {
    on_lean(|| async {
        let late = timeout(20 * MS, std::future::pending::<()>()).await;
        assert_eq!(late, Err(Elapsed));
        let in_time = timeout(Duration::from_secs(3600), async {
            sleep(10 * MS).await;
            7
        })
        .await;
        assert_eq!(in_time, Ok(7));
        assert_eq!(registered(), 0, "the timeout's own sleep is gone with it");
    });
}

#[test]
fn an_interval_ticks_at_once_then_every_period() {
    on_lean(|| async {
        let start = Instant::now();
        let mut tick = interval(20 * MS);
        tick.tick().await;
        tick.tick().await;
        tick.tick().await;
        assert!(Instant::now() - start >= 40 * MS);
    });
}

/// Polled on a runtime with tokio's timers, a sleep is tokio's: a paused clock drives it.
#[tokio::test(start_paused = true)]
async fn on_a_tokio_runtime_the_sleeps_are_tokios() {
    let start = Instant::now();
    sleep(Duration::from_secs(5)).await;
    assert_eq!(Instant::now() - start, Duration::from_secs(5));
    let r = timeout(Duration::from_secs(1), std::future::pending::<()>()).await;
    assert_eq!(r, Err(Elapsed));
    assert_eq!(Instant::now() - start, Duration::from_secs(6));
}

#[test]
fn a_runtime_with_tokios_timers_when_not_lean() {
    let rt = CurrentThread::new(false).unwrap();
    assert!(!rt.is_lean());
    rt.block_on(async {
        sleep(10 * MS).await;
        assert_eq!(registered(), 0);
    });
}
