//! Restarting a client keeps its name: a client stopped on purpose frees it at once,
//! and one that crashed takes it back with the reconnect token in its state file.

mod cli_common;

use std::path::PathBuf;

use cli_common::{server, Proc};

/// A fresh directory under the system's temporary directory.
fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("localtunnels-{what}-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

fn client(port: u16, name: &str, state: &[&str]) -> Proc {
    let server_url = format!("http://127.0.0.1:{port}");
    // The origin is never visited: any port will do.
    let mut args = vec!["client", "--server", &server_url, "--local-port", "9", "--subdomain", name];
    args.extend_from_slice(state);
    Proc::spawn(&args, &[])
}

#[tokio::test]
async fn a_client_stopped_with_ctrl_c_frees_its_name_at_once() {
    // The grace hold is long: only a freed name can be taken again during this test.
    let (_srv, port) = server(&["--grace-period", "600"]).await;
    let mut first = client(port, "again", &["--no-state"]);
    let url = first.line().await;
    assert!(url.starts_with("http://again."), "{url}");
    first.interrupt();
    assert_eq!(first.exit_code().await, Some(0));

    let mut second = client(port, "again", &["--no-state"]);
    assert_eq!(second.line().await, url, "the name was free at once");
}

#[tokio::test]
async fn a_crashed_client_takes_its_name_back_with_its_state_file() {
    let (_srv, port) = server(&["--grace-period", "600"]).await;
    let state = temp_dir("state");
    let state_arg = state.to_str().unwrap();
    let mut first = client(port, "crashy", &["--state-dir", state_arg]);
    let url = first.line().await;
    let file = state.join(format!("127.0.0.1_{port}")).join("crashy");
    let token = std::fs::read_to_string(&file).expect("the state file holds the token");
    assert!(!token.trim().is_empty());
    // SIGKILL: no goodbye, the server holds the name for the dropped connection.
    first.child.kill().await.unwrap();

    // Without the token the name is held (exit code 4: name taken)...
    let mut stranger = client(port, "crashy", &["--no-state"]);
    assert_eq!(stranger.exit_code().await, Some(4));
    // ...with it, the restarted client gets it back at once.
    let mut second = client(port, "crashy", &["--state-dir", state_arg]);
    assert_eq!(second.line().await, url);
    let newer = std::fs::read_to_string(&file).unwrap();
    assert_ne!(newer, token, "each session's token is kept");

    // A clean stop deletes the file: the server freed the name and the token with it.
    second.interrupt();
    assert_eq!(second.exit_code().await, Some(0));
    assert!(!file.exists(), "{} is left behind", file.display());
    let _ = std::fs::remove_dir_all(&state);
}
