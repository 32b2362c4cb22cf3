//! The client's lifecycle, sans-IO: when to dial which server, what to say in the
//! hello, how long to wait before trying again, and when to give up.
//!
//! Both clients (the native one and the wasm one) drive a [`ClientLifecycle`]: they
//! tell it what happened to their sockets and sessions (`connect`, `handle_*`,
//! `close`) and then do what it says ([`ClientLifecycle::poll_action`]) until it has
//! nothing more to say, re-arming one timer at [`ClientLifecycle::poll_timeout`].
//! It owns no socket, clock or random source: time is passed in and the jitter comes
//! from the function given to [`ClientLifecycle::new`]. The policy is documented in
//! `docs/PROTOCOL.md` ("Client lifecycle").
//!
//! Servers are numbered `0..servers` and tried in that order, on the first connect
//! and in every reconnect round. A reconnect token belongs to the server that issued it,
//! or to all of them when they are one cluster's nodes ([`Policy::shared_token`]).

use std::collections::VecDeque;
use std::time::Duration;

use crate::handshake::RefuseReason;
use crate::ids::CloseCode;
use crate::time::Instant;

/// The reconnect policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Reconnect after a session that was up drops. Default `true`.
    pub reconnect: bool,
    /// The first backoff ceiling. Default 500 ms.
    pub base: Duration,
    /// The largest backoff ceiling. Default 30 s.
    pub cap: Duration,
    /// How long an attempt may take from dial to welcome before it counts as failed
    /// (a server that accepts the connection and says nothing, a socket whose close
    /// event never comes). Default 10 s.
    pub handshake_timeout: Duration,
    /// The servers are the nodes of one cluster (`docs/CLUSTER.md`): a reconnect token
    /// one of them issues is presented to every one, so that the name follows the
    /// client to another node. Default `false`: each server keeps its own token.
    pub shared_token: bool,
}

impl Policy {
    /// 500 ms doubling up to 30 s, reconnecting.
    pub const DEFAULT: Policy = Policy {
        reconnect: true,
        base: Duration::from_millis(500),
        cap: Duration::from_secs(30),
        handshake_timeout: Duration::from_secs(10),
        shared_token: false,
    };

    /// The ceiling of the wait before reconnect round `attempt` (1-based):
    /// `min(cap, base * 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    /// The wait before round `attempt` given `random` uniform in `[0, 1)`: "full
    /// jitter" (uniform in `[0, ceiling)`), so that the many clients one server restart
    /// dropped come back spread out instead of all at once.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let random = if random.is_finite() { random.clamp(0.0, 1.0) } else { 0.0 };
        let ceiling = self.ceiling(attempt);
        // Whole milliseconds: what a JavaScript timer takes.
        let ms = (ceiling.as_secs_f64() * 1000.0 * random).floor();
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        // `ms` is finite, non-negative and at most the ceiling, so the cast is exact.
        Duration::from_millis((ms as u64).min(ceiling_ms))
    }

    /// Whether a refusal ends the client: what the server said will not change by
    /// asking again (bad token, bad name, a hostname the token may not use, old
    /// client, malformed hello).
    pub fn is_final(reason: RefuseReason) -> bool {
        matches!(
            reason,
            RefuseReason::Unauthorized
                | RefuseReason::NameInvalid
                | RefuseReason::HostnameNotAllowed
                | RefuseReason::VersionUnsupported
                | RefuseReason::Malformed
        )
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::DEFAULT
    }
}

/// What the shell must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a control WebSocket to server `server` (an index into the shell's list).
    Dial {
        /// Which server.
        server: usize,
    },
    /// Greet the server just dialled with a hello asking for `name` (empty for any)
    /// and presenting `reconnect_token` (empty for none). Always follows a `Dial`: a
    /// shell may build its session at once (the core `Session` queues the hello until
    /// the socket is open) or once the socket is open.
    Hello {
        /// The name to ask for.
        name: String,
        /// The token of an earlier session on this server, if any.
        reconnect_token: String,
    },
    /// Nothing to do until `until`: then call [`ClientLifecycle::handle_timeout`].
    Wait {
        /// When to dial again.
        until: Instant,
        /// Reconnect round, 1 for the first.
        attempt: u32,
        /// How long from now that is.
        delay: Duration,
    },
    /// Stop: no dial follows until the next [`ClientLifecycle::connect`].
    GiveUp(GiveUp),
}

/// Why the client stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GiveUp {
    /// The user closed the client.
    Closed,
    /// A server refused the hello for a reason that asking again will not change, or
    /// refused the first connect.
    Refused {
        /// The server's reason.
        reason: RefuseReason,
        /// The server's words.
        message: String,
    },
    /// No server could be reached on the first connect.
    Unreachable {
        /// What failed last.
        message: String,
    },
    /// Another session of this client took the name over: taking it back would only
    /// start a tug of war.
    Replaced {
        /// The server's words.
        message: String,
    },
    /// The session dropped and reconnecting is off.
    Disconnected {
        /// Why it dropped.
        message: String,
    },
}

impl GiveUp {
    /// A stable lowercase identifier: `closed`, `unreachable`, `replaced`,
    /// `disconnected`, or the refusal's (e.g. `name_taken`).
    pub fn as_str(&self) -> &'static str {
        match self {
            GiveUp::Closed => "closed",
            GiveUp::Refused { reason, .. } => reason.as_str(),
            GiveUp::Unreachable { .. } => "unreachable",
            GiveUp::Replaced { .. } => "replaced",
            GiveUp::Disconnected { .. } => "disconnected",
        }
    }

    /// For people.
    pub fn message(&self) -> &str {
        match self {
            GiveUp::Closed => "the client closed the tunnel",
            GiveUp::Refused { message, .. }
            | GiveUp::Unreachable { message }
            | GiveUp::Replaced { message }
            | GiveUp::Disconnected { message } => message,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before `connect`, or after giving up.
    Idle,
    /// An attempt at `server` is in flight, failed if not welcomed by `deadline`.
    Dialing { server: usize, deadline: Instant },
    /// Welcomed by `server`.
    Up { server: usize },
    /// Between reconnect rounds.
    Waiting { until: Instant },
}

/// How an attempt or a session ended.
enum Failure {
    Refused(RefuseReason, String),
    Closed(CloseCode, String),
}

/// The client lifecycle state machine (see the module docs).
pub struct ClientLifecycle {
    policy: Policy,
    state: State,
    /// The name asked for before the first welcome (empty for any).
    requested: String,
    /// The name granted, asked for again on reconnect.
    granted: String,
    /// Per server, the reconnect token of its last welcome.
    tokens: Vec<String>,
    /// Reconnect rounds failed in a row.
    attempt: u32,
    /// Since the last `connect`, a server welcomed us at least once.
    welcomed_once: bool,
    /// Outputs not yet polled.
    actions: VecDeque<Action>,
    random: Box<dyn FnMut() -> f64 + Send>,
}

impl std::fmt::Debug for ClientLifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLifecycle")
            .field("state", &self.state)
            .field("name", &self.name())
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl ClientLifecycle {
    /// A client of `servers` servers (at least one is assumed) asking for `name`
    /// (empty for any); `random` returns numbers uniform in `[0, 1)` for the jitter.
    pub fn new(policy: Policy, servers: usize, name: String, random: Box<dyn FnMut() -> f64 + Send>) -> Self {
        ClientLifecycle {
            policy,
            state: State::Idle,
            requested: name,
            granted: String::new(),
            tokens: vec![String::new(); servers.max(1)],
            attempt: 0,
            welcomed_once: false,
            actions: VecDeque::new(),
            random,
        }
    }

    // ----- getters -----

    /// The name granted by the last welcome, else the one asked for (maybe empty).
    pub fn name(&self) -> &str {
        if self.granted.is_empty() {
            &self.requested
        } else {
            &self.granted
        }
    }

    /// The reconnect token `server` issued last (empty for none).
    pub fn reconnect_token(&self, server: usize) -> &str {
        self.tokens.get(server).map_or("", String::as_str)
    }

    /// The server of the session that is up, if one is.
    pub fn server(&self) -> Option<usize> {
        match self.state {
            State::Up { server } => Some(server),
            _ => None,
        }
    }

    /// The server being dialled or up, if any.
    pub fn current_server(&self) -> Option<usize> {
        match self.state {
            State::Up { server } | State::Dialing { server, .. } => Some(server),
            _ => None,
        }
    }

    /// Between `connect` and giving up (or `close`).
    pub fn is_active(&self) -> bool {
        self.state != State::Idle
    }

    /// A server welcomed the client since the last `connect`.
    pub fn welcomed_once(&self) -> bool {
        self.welcomed_once
    }

    // ----- commands -----

    /// Presents `token` to `server` on the next dial (a token kept from an earlier
    /// process: a state file, a Durable Object's storage).
    pub fn set_reconnect_token(&mut self, server: usize, token: String) {
        if let Some(t) = self.tokens.get_mut(server) {
            *t = token;
        }
    }

    /// The user wants the tunnel up: dial the first server (no-op while active).
    pub fn connect(&mut self, now: Instant) {
        if self.state != State::Idle {
            return;
        }
        self.attempt = 0;
        self.welcomed_once = false;
        self.dial(now, 0);
    }

    /// The user closed the client: give up, whatever the state.
    pub fn close(&mut self) {
        if self.state == State::Idle {
            return;
        }
        self.give_up(GiveUp::Closed);
    }

    // ----- inputs -----

    /// The server welcomed the attempt in flight with `name` and `reconnect_token`.
    pub fn handle_welcome(&mut self, _now: Instant, name: &str, reconnect_token: &str) {
        let State::Dialing { server, .. } = self.state else { return };
        self.state = State::Up { server };
        self.granted = name.to_string();
        if !reconnect_token.is_empty() {
            if self.policy.shared_token {
                self.tokens.iter_mut().for_each(|t| *t = reconnect_token.to_string());
            } else {
                self.set_reconnect_token(server, reconnect_token.to_string());
            }
        }
        self.attempt = 0;
        self.welcomed_once = true;
    }

    /// The server refused the hello of the attempt in flight.
    pub fn handle_refusal(&mut self, now: Instant, reason: RefuseReason, message: &str) {
        self.failed(now, Failure::Refused(reason, message.to_string()));
    }

    /// The attempt in flight or the session that was up ended: the peer closed it
    /// with `code`, or the socket died (pass [`CloseCode::Internal`]).
    pub fn handle_close(&mut self, now: Instant, code: CloseCode, message: &str) {
        self.failed(now, Failure::Closed(code, message.to_string()));
    }

    /// The instant from [`ClientLifecycle::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Waiting { until } if now >= until => self.dial(now, 0),
            State::Dialing { deadline, .. } if now >= deadline => {
                let secs = crate::time::secs_text(self.policy.handshake_timeout);
                let message = format!("no answer from the server within {secs} s");
                self.failed(now, Failure::Closed(CloseCode::Timeout, message));
            }
            _ => {}
        }
    }

    // ----- outputs -----

    /// The next thing to do; call until `None` after every input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`ClientLifecycle::handle_timeout`] must be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { until } => Some(until),
            State::Dialing { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    // ----- internals -----

    fn dial(&mut self, now: Instant, server: usize) {
        self.state = State::Dialing { server, deadline: now + self.policy.handshake_timeout };
        self.actions.push_back(Action::Dial { server });
        let name = self.name().to_string();
        let reconnect_token = self.reconnect_token(server).to_string();
        self.actions.push_back(Action::Hello { name, reconnect_token });
    }

    fn give_up(&mut self, why: GiveUp) {
        self.state = State::Idle;
        self.actions.push_back(Action::GiveUp(why));
    }

    fn failed(&mut self, now: Instant, failure: Failure) {
        match self.state {
            State::Idle | State::Waiting { .. } => {}
            State::Up { .. } => {
                let message = match failure {
                    Failure::Closed(CloseCode::Replaced, message) => return self.give_up(GiveUp::Replaced { message }),
                    Failure::Closed(_, message) | Failure::Refused(_, message) => message,
                };
                if !self.policy.reconnect {
                    return self.give_up(GiveUp::Disconnected { message });
                }
                self.wait(now);
            }
            State::Dialing { server, .. } => {
                if let Failure::Refused(reason, message) = &failure {
                    if Policy::is_final(*reason) {
                        return self.give_up(GiveUp::Refused { reason: *reason, message: message.clone() });
                    }
                }
                if server + 1 < self.tokens.len() {
                    return self.dial(now, server + 1);
                }
                if self.welcomed_once {
                    return self.wait(now);
                }
                // The first connect failed on every server: the options or the servers
                // are wrong, and retrying would hide it.
                self.give_up(match failure {
                    Failure::Refused(reason, message) => GiveUp::Refused { reason, message },
                    Failure::Closed(_, message) => GiveUp::Unreachable { message },
                });
            }
        }
    }

    /// Starts the wait before the next reconnect round.
    fn wait(&mut self, now: Instant) {
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.policy.delay(self.attempt, (self.random)());
        let until = now + delay;
        self.state = State::Waiting { until };
        self.actions.push_back(Action::Wait { until, attempt: self.attempt, delay });
    }
}
