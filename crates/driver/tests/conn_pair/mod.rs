//! Two real `Connection`s, a server's and a client's, over sockets the test chooses,
//! with the handshake done.

use localtunnels_core::{Config, Hello, Instant, Session, Welcome};
use localtunnels_driver::{ConnEvent, ConnEvents, Connection};
use tokio::io::{AsyncRead, AsyncWrite};

/// The server's and the client's connection over `server_io` and `client_io` (two ends
/// of one link), after the hello and the welcome; the client's events come back too.
pub async fn pair_over<A, B>(config: Config, server_io: A, client_io: B) -> (Connection, Connection, ConnEvents)
where
    A: AsyncRead + AsyncWrite + Send + 'static,
    B: AsyncRead + AsyncWrite + Send + 'static,
{
    let epoch = std::time::Instant::now();
    let server = Session::server(config.clone(), Instant::ZERO);
    let hello = Hello { name: "t".into(), ..Hello::default() };
    let client = Session::client(config, hello, Instant::ZERO);
    let (server, mut server_events) = Connection::start(server, server_io, epoch);
    let (client, mut client_events) = Connection::start(client, client_io, epoch);
    loop {
        match server_events.recv().await {
            Some(ConnEvent::Hello(_)) => break,
            Some(_) => {}
            None => panic!("the server lost the connection before the hello"),
        }
    }
    server.accept(Welcome { name: "t".into(), ..Welcome::default() });
    loop {
        match client_events.recv().await {
            Some(ConnEvent::Welcome(_)) => break,
            Some(_) => {}
            None => panic!("the client lost the connection before the welcome"),
        }
    }
    (server, client, client_events)
}
