//! The client lifecycle over a virtual clock: dials, hellos, backoff, giving up.
//! Each test plays the shell: it feeds the lifecycle what its servers do and records
//! every action, advancing the clock to each `Wait`'s deadline.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use localtunnels_core::{Action, ClientLifecycle, CloseCode, GiveUp, Instant, Policy, RefuseReason};

/// What a server does with the next attempt.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Welcome with this name and token.
    Welcome(&'static str, &'static str),
    /// Refuse.
    Refuse(RefuseReason),
    /// The socket closes before any answer.
    Down,
    /// Nothing at all: the attempt hangs.
    Silent,
}

/// The shell: a virtual clock, a script of answers, and the record of actions.
struct Shell {
    life: ClientLifecycle,
    now: Instant,
    answers: VecDeque<Answer>,
    log: Vec<Action>,
    /// The server dialled last.
    dialled: Option<usize>,
}

/// A random source that replays `values` (then 0.5 forever), shared with the test.
fn replay(values: &[f64]) -> Box<dyn FnMut() -> f64 + Send> {
    let values = Arc::new(Mutex::new(values.iter().copied().collect::<VecDeque<f64>>()));
    Box::new(move || values.lock().map(|mut v| v.pop_front().unwrap_or(0.5)).unwrap_or(0.5))
}

impl Shell {
    fn new(policy: Policy, servers: usize, name: &str, random: &[f64]) -> Shell {
        let life = ClientLifecycle::new(policy, servers, name.to_string(), replay(random));
        Shell { life, now: Instant::ZERO, answers: VecDeque::new(), log: Vec::new(), dialled: None }
    }

    fn script(&mut self, answers: &[Answer]) {
        self.answers.extend(answers.iter().copied());
    }

    /// Drains the actions, answering each dial from the script, until the lifecycle
    /// gives up, the session is up, or the script runs out. Waits advance the clock.
    fn run(&mut self) {
        loop {
            while let Some(action) = self.life.poll_action() {
                if let Action::Dial { server } = action {
                    self.dialled = Some(server);
                }
                self.log.push(action);
            }
            if self.life.server().is_some() || !self.life.is_active() {
                return;
            }
            if let Some(until) = self.life.poll_timeout() {
                if self.life.current_server().is_none() {
                    self.now = until;
                    self.life.handle_timeout(self.now);
                    continue;
                }
            }
            let Some(answer) = self.answers.pop_front() else { return };
            self.now += Duration::from_millis(3);
            match answer {
                Answer::Welcome(name, token) => self.life.handle_welcome(self.now, name, token),
                Answer::Refuse(reason) => self.life.handle_refusal(self.now, reason, "no"),
                Answer::Down => self.life.handle_close(self.now, CloseCode::Internal, "connection refused"),
                Answer::Silent => {
                    let deadline = self.life.poll_timeout().expect("a dial has a deadline");
                    self.now = deadline;
                    self.life.handle_timeout(self.now);
                }
            }
        }
    }

    /// The session that is up drops with `code`.
    fn drop_session(&mut self, code: CloseCode) {
        self.now += Duration::from_secs(60);
        self.life.handle_close(self.now, code, "lost");
        self.run();
    }

    fn take_log(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.log)
    }
}

fn dial(server: usize) -> Action {
    Action::Dial { server }
}

fn hello(name: &str, token: &str) -> Action {
    Action::Hello { name: name.to_string(), reconnect_token: token.to_string() }
}

fn waits(log: &[Action]) -> Vec<u128> {
    log.iter()
        .filter_map(|a| match a {
            Action::Wait { delay, .. } => Some(delay.as_millis()),
            _ => None,
        })
        .collect()
}

fn gave_up(log: &[Action]) -> Option<GiveUp> {
    log.iter().find_map(|a| match a {
        Action::GiveUp(g) => Some(g.clone()),
        _ => None,
    })
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_drop_is_followed_by_a_jittered_wait_and_a_hello_with_the_granted_name_and_its_token() {
    let mut shell = Shell::new(Policy::DEFAULT, 1, "demo", &[0.5]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Welcome("demo", "secret-1")]);
    shell.run();
    assert_eq!(shell.take_log(), [dial(0), hello("demo", "")]);
    assert_eq!(shell.life.server(), Some(0));

    let dropped_at = shell.now + Duration::from_secs(60);
    shell.script(&[Answer::Welcome("demo", "secret-2")]);
    shell.drop_session(CloseCode::Timeout);
    let log = shell.take_log();
    // Round 1: uniform in [0, 500 ms), here half of it.
    let wait =
        Action::Wait { until: dropped_at + Duration::from_millis(250), attempt: 1, delay: Duration::from_millis(250) };
    assert_eq!(log, [wait, dial(0), hello("demo", "secret-1")]);
    assert_eq!(shell.life.reconnect_token(0), "secret-2", "the newest token is kept");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_backoff_doubles_from_500_ms_to_the_30_s_cap_and_starts_over_after_a_welcome() {
    let almost_one = 0.999_999;
    let mut shell = Shell::new(Policy::DEFAULT, 1, "", &[almost_one; 12]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Welcome("random-name", "t")]);
    shell.run();
    shell.take_log();
    shell.script(&[Answer::Down; 9]);
    shell.script(&[Answer::Welcome("random-name", "t2")]);
    shell.drop_session(CloseCode::Shutdown);
    let log = shell.take_log();
    assert_eq!(waits(&log), [499, 999, 1999, 3999, 7999, 15_999, 29_999, 29_999, 29_999, 29_999]);
    // Every hello asks for the name the server granted (none was asked for at first).
    assert!(log.iter().filter(|a| matches!(a, Action::Hello { .. })).all(|a| *a == hello("random-name", "t")));
    assert_eq!(shell.life.server(), Some(0));

    // Welcomed again: the next drop starts from the first ceiling.
    shell.script(&[Answer::Welcome("random-name", "t3")]);
    shell.drop_session(CloseCode::Internal);
    assert_eq!(waits(&shell.take_log()), [499]);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn the_policy_curve_the_cap_and_bad_randomness() {
    let policy = Policy { cap: Duration::from_secs(5), ..Policy::DEFAULT };
    let ceilings: Vec<u128> = (1..=6).map(|n| policy.ceiling(n).as_millis()).collect();
    assert_eq!(ceilings, [500, 1000, 2000, 4000, 5000, 5000]);
    assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(5));
    assert_eq!(policy.ceiling(0), Duration::from_millis(500));
    assert_eq!(policy.delay(3, 0.0), Duration::ZERO);
    // Randomness outside [0, 1) cannot push the delay past the ceiling, nor below zero.
    assert_eq!(policy.delay(1, 7.0), Duration::from_millis(500));
    assert_eq!(policy.delay(1, -1.0), Duration::ZERO);
    assert_eq!(policy.delay(1, f64::NAN), Duration::ZERO);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_first_connect_that_fails_gives_up_at_once() {
    let mut shell = Shell::new(Policy::DEFAULT, 1, "demo", &[]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Down]);
    shell.run();
    let log = shell.take_log();
    assert_eq!(gave_up(&log).map(|g| g.as_str()), Some("unreachable"));
    assert!(waits(&log).is_empty(), "no retry hides a wrong server");
    assert!(!shell.life.is_active());

    // Refused first: the refusal's reason, even a retryable one.
    shell.life.connect(shell.now);
    shell.script(&[Answer::Refuse(RefuseReason::NameTaken)]);
    shell.run();
    let given = gave_up(&shell.take_log());
    assert_eq!(given, Some(GiveUp::Refused { reason: RefuseReason::NameTaken, message: "no".into() }));

    // A server that never answers fails the attempt at the handshake deadline.
    shell.life.connect(shell.now);
    let started = shell.now;
    shell.script(&[Answer::Silent]);
    shell.run();
    let given = gave_up(&shell.take_log()).expect("gave up");
    assert_eq!(given.as_str(), "unreachable");
    assert!(given.message().contains("10 s"), "{}", given.message());
    assert_eq!(shell.now, started + Duration::from_secs(10), "failed at the deadline, not later");
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn which_refusals_end_a_reconnecting_client() {
    for (reason, last) in [
        (RefuseReason::Unauthorized, true),
        (RefuseReason::NameInvalid, true),
        (RefuseReason::VersionUnsupported, true),
        (RefuseReason::Malformed, true),
        (RefuseReason::NameTaken, false),
        (RefuseReason::ServerFull, false),
        (RefuseReason::LimitReached, false),
        (RefuseReason::Other(99), false),
    ] {
        let mut shell = Shell::new(Policy::DEFAULT, 1, "demo", &[]);
        shell.life.connect(shell.now);
        shell.script(&[Answer::Welcome("demo", "t")]);
        shell.run();
        shell.take_log();
        shell.script(&[Answer::Refuse(reason), Answer::Welcome("demo", "t")]);
        shell.drop_session(CloseCode::Internal);
        let log = shell.take_log();
        assert_eq!(Policy::is_final(reason), last, "{reason:?}");
        if last {
            assert_eq!(gave_up(&log), Some(GiveUp::Refused { reason, message: "no".into() }));
            assert_eq!(waits(&log).len(), 1, "{reason:?}: no second round");
        } else {
            assert_eq!(gave_up(&log), None, "{reason:?}");
            assert_eq!(waits(&log).len(), 2, "{reason:?}: retried");
            assert_eq!(shell.life.server(), Some(0));
        }
    }
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn replaced_sessions_and_clients_without_reconnect_stop_and_a_server_going_away_does_not() {
    let mut shell = Shell::new(Policy::DEFAULT, 1, "demo", &[]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Welcome("demo", "t")]);
    shell.run();
    shell.drop_session(CloseCode::Replaced);
    assert_eq!(gave_up(&shell.take_log()).map(|g| g.as_str()), Some("replaced"));

    let no_reconnect = Policy { reconnect: false, ..Policy::DEFAULT };
    let mut shell = Shell::new(no_reconnect, 1, "demo", &[]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Welcome("demo", "t")]);
    shell.run();
    shell.drop_session(CloseCode::Timeout);
    assert_eq!(gave_up(&shell.take_log()).map(|g| g.as_str()), Some("disconnected"));

    // A server that shuts down (restart, deploy) is waited for.
    let mut shell = Shell::new(Policy::DEFAULT, 1, "demo", &[]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Welcome("demo", "t")]);
    shell.run();
    shell.script(&[Answer::Down, Answer::Down, Answer::Welcome("demo", "t")]);
    shell.drop_session(CloseCode::Shutdown);
    let log = shell.take_log();
    assert_eq!(gave_up(&log), None);
    assert_eq!(waits(&log).len(), 3);
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn servers_are_tried_in_order_and_each_keeps_its_own_token() {
    let mut shell = Shell::new(Policy::DEFAULT, 3, "demo", &[0.0; 4]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Down, Answer::Welcome("demo", "from-1")]);
    shell.run();
    assert_eq!(shell.take_log(), [dial(0), hello("demo", ""), dial(1), hello("demo", "")]);
    assert_eq!(shell.life.server(), Some(1));

    // A round tries every server in order, with no wait between them; the wait comes
    // between rounds.
    shell.script(&[Answer::Down, Answer::Down, Answer::Silent, Answer::Down, Answer::Welcome("demo", "from-1b")]);
    shell.drop_session(CloseCode::Internal);
    let log = shell.take_log();
    let dials: Vec<usize> = log
        .iter()
        .filter_map(|a| match a {
            Action::Dial { server } => Some(*server),
            _ => None,
        })
        .collect();
    assert_eq!(dials, [0, 1, 2, 0, 1]);
    assert_eq!(waits(&log).len(), 2);
    // Server 1 is asked with its own token, the others with none.
    let hellos: Vec<&Action> = log.iter().filter(|a| matches!(a, Action::Hello { .. })).collect();
    assert_eq!(hellos[0], &hello("demo", ""));
    assert_eq!(hellos[1], &hello("demo", "from-1"));
    assert_eq!(hellos[2], &hello("demo", ""));
    assert_eq!(shell.life.reconnect_token(1), "from-1b");

    // A first connect gives up only when the last server failed.
    let mut shell = Shell::new(Policy::DEFAULT, 2, "", &[]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Down, Answer::Down]);
    shell.run();
    let log = shell.take_log();
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(gave_up(&log).map(|g| g.as_str()), Some("unreachable"));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn close_stops_everything_and_a_kept_token_is_presented() {
    let mut shell = Shell::new(Policy::DEFAULT, 1, "demo", &[]);
    shell.life.set_reconnect_token(0, "from-last-process".into());
    shell.life.connect(shell.now);
    shell.script(&[Answer::Welcome("demo", "t")]);
    shell.run();
    assert_eq!(shell.take_log(), [dial(0), hello("demo", "from-last-process")]);

    // Closed while waiting to reconnect: no timer stays armed, no dial follows.
    shell.life.handle_close(shell.now, CloseCode::Internal, "lost");
    assert!(shell.life.poll_timeout().is_some());
    shell.life.close();
    assert_eq!(shell.life.poll_timeout(), None);
    let log: Vec<Action> = std::iter::from_fn(|| shell.life.poll_action()).collect();
    assert!(matches!(log[..], [Action::Wait { .. }, Action::GiveUp(GiveUp::Closed)]), "{log:?}");
    shell.life.handle_timeout(shell.now + Duration::from_secs(3600));
    assert_eq!(shell.life.poll_action(), None);
    // Connect again: the name and token of the last session are asked for.
    shell.life.connect(shell.now);
    assert_eq!(shell.life.poll_action(), Some(dial(0)));
    assert_eq!(shell.life.poll_action(), Some(hello("demo", "t")));
}

#[cfg_attr(not(target_arch = "wasm32"), test)]
#[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
fn a_clusters_nodes_share_the_reconnect_token() {
    let shared = Policy { shared_token: true, ..Policy::DEFAULT };
    let mut shell = Shell::new(shared, 3, "demo", &[0.0; 4]);
    shell.life.connect(shell.now);
    shell.script(&[Answer::Welcome("demo", "from-0")]);
    shell.run();
    assert_eq!(shell.take_log(), [dial(0), hello("demo", "")]);
    // Node 0 dies: node 1 is asked with the token node 0 issued, and takes the name back.
    shell.script(&[Answer::Down, Answer::Welcome("demo", "from-1")]);
    shell.drop_session(CloseCode::Internal);
    let log = shell.take_log();
    let hellos: Vec<&Action> = log.iter().filter(|a| matches!(a, Action::Hello { .. })).collect();
    assert_eq!(hellos, [&hello("demo", "from-0"), &hello("demo", "from-0")]);
    assert_eq!(shell.life.server(), Some(1));
    assert!((0..3).all(|s| shell.life.reconnect_token(s) == "from-1"));
}
