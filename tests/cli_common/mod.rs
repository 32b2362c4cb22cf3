//! `localtunnels` processes for the CLI tests, with stdout and stderr both captured:
//! stdout line by line (the URL lines and request lines), stderr through a channel so a
//! test can wait for a log line. Stderr is echoed to the test's own stderr, so a
//! failing test shows what the process said.

#![allow(dead_code)]

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// A running `localtunnels` process.
pub struct Proc {
    pub child: tokio::process::Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: mpsc::UnboundedReceiver<String>,
}

/// A finished `localtunnels` run.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_localtunnels"));
    cmd.args(args);
    // A clean slate: nothing from the developer's environment leaks in.
    for (key, _) in std::env::vars() {
        if key.starts_with("LOCALTUNNELS_") {
            cmd.env_remove(key);
        }
    }
    // Nor the developer's own config file (~/.config/localtunnels/config.toml).
    cmd.env("XDG_CONFIG_HOME", std::env::temp_dir().join("localtunnels-tests-no-config"));
    // Clients keep reconnect tokens under the state directory: not in the developer's.
    cmd.env("XDG_STATE_HOME", std::env::temp_dir().join("localtunnels-test-state"));
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

impl Proc {
    /// Starts the binary with `args` and extra environment `env`.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child =
            command(args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn localtunnels");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (tx, stderr) = mpsc::unbounded_channel();
        let pid = child.id().unwrap_or(0);
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                eprintln!("[localtunnels {pid}] {line}");
                let _ = tx.send(line);
            }
        });
        Proc { child, stdout, stderr }
    }

    /// Runs the binary to completion.
    pub async fn run(args: &[&str], env: &[(&str, &str)]) -> Finished {
        let out = command(args, env).output().await.expect("run localtunnels");
        Finished {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The next line on stdout (panics at EOF).
    pub async fn line(&mut self) -> String {
        self.stdout.next_line().await.expect("read stdout").expect("a line on stdout")
    }

    /// Everything left on stdout up to EOF (call after the process exited).
    pub async fn stdout_rest(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Some(line) = self.stdout.next_line().await.expect("read stdout") {
            rest.push(line);
        }
        rest
    }

    /// Waits for a stderr line containing `needle` and returns it (panics at EOF).
    pub async fn stderr_line(&mut self, needle: &str) -> String {
        loop {
            let line = self.stderr.recv().await.unwrap_or_else(|| panic!("stderr ended before '{needle}'"));
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The stderr lines up to and including the first one containing `needle`
    /// (panics at EOF).
    pub async fn stderr_until(&mut self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.stderr.recv().await.unwrap_or_else(|| panic!("stderr ended before '{needle}': {seen:?}"));
            let done = line.contains(needle);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// Every stderr line still to come, up to EOF (call after the process exited).
    pub async fn stderr_rest(&mut self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Some(line) = self.stderr.recv().await {
            rest.push(line);
        }
        rest
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    /// Sends SIGINT, as Ctrl-C does.
    pub fn interrupt(&self) {
        self.signal("-INT");
    }

    fn signal(&self, which: &str) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg(which).arg(pid.to_string()).status();
        }
    }

    /// Waits for the exit and returns its code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        self.child.wait().await.expect("wait").code()
    }
}

/// A `localtunnels server` on 127.0.0.1 and a free port; returns it and the port.
pub async fn server(extra: &[&str]) -> (Proc, u16) {
    let mut args = vec!["server", "--port", "0", "--bind", "127.0.0.1"];
    args.extend_from_slice(extra);
    let mut server = Proc::spawn(&args, &[]);
    let url = server.line().await;
    assert!(url.starts_with("http://localhost:"), "{url}");
    let port = url.rsplit(':').next().unwrap().parse().unwrap();
    (server, port)
}
