//! Connecting, refusals, reconnects, heartbeats, closing and the options the client takes.

use super::*;

#[wasm_bindgen_test]
async fn a_refusal_rejects_connect_with_its_reason() {
    let (client, _events) = client(r#", "subdomain": "demo""#, Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let (mut server, hello) = Server::hello(Config::default()).await;
    assert_eq!(hello.name, "demo");
    server.session.refuse(RefuseReason::NameTaken, "demo is taken");
    server.flush();
    let err = JsFuture::from(connecting).await.unwrap_err();
    assert_eq!(get(&err, "reason").as_string().as_deref(), Some("name_taken"));
    let message = get(&err, "message").as_string().unwrap();
    assert!(message.contains("demo is taken") && message.contains("name_taken"), "{message}");
    assert!(!client.connected());
}

#[wasm_bindgen_test]
async fn an_unreachable_server_rejects_connect() {
    let (client, _events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let ws: MockSocket = JsFuture::from(next_socket()).await.unwrap().unchecked_into();
    ws.drop_connection(1006);
    let err = JsFuture::from(connecting).await.unwrap_err();
    assert_eq!(get(&err, "reason").as_string().as_deref(), Some("unreachable"));
    let message = get(&err, "message").as_string().unwrap();
    assert!(message.contains("could not connect to ws://tunnel.test:8080/api/tunnel"), "{message}");
}

#[wasm_bindgen_test]
async fn it_reconnects_by_itself_and_keeps_its_name() {
    let (client, events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    server.ws.drop_connection(1006);
    let (mut server, hello) = Server::hello(Config::default()).await;
    assert_eq!((hello.name.as_str(), hello.reconnect_token.as_str()), ("demo", "secret-1"));
    server.welcome("demo", "secret-2");
    let id = server.get("/again");
    assert_eq!(server.response(id).await.0.status, 201);
    assert_eq!(client.url().as_deref(), Some(PUBLIC));
    assert_eq!(event_names(&events), ["connected", "disconnected", "reconnecting", "connected", "request", "response"]);
    let log = json(&events);
    assert_eq!(log[2]["payload"]["attempt"], 1);
    assert!(log[2]["payload"]["delay"].as_u64().unwrap() <= 500);

    // The next drop asks with the newest token.
    server.ws.drop_connection(1006);
    let (_server, hello) = Server::hello(Config::default()).await;
    assert_eq!(hello.reconnect_token, "secret-2");
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn it_sends_heartbeats_on_the_servers_schedule() {
    let (client, _events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let config = Config { ping_interval: std::time::Duration::from_millis(20), ..Config::default() };
    let (mut server, _) = Server::hello(config).await;
    server.welcome("demo", "t");
    JsFuture::from(connecting).await.unwrap();
    while server.pings < 2 {
        server.read().await;
    }
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn close_ends_the_session_cleanly() {
    let (client, events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    let _ = client.close();
    match server.next_event().await {
        Event::Closed { by_peer, .. } => assert!(by_peer),
        other => panic!("expected the client's close, got {other:?}"),
    }
    assert!(!client.connected());
    assert_eq!(get(&server.ws.closed_with(), "code").as_f64(), Some(1000.0));
    assert_eq!(event_names(&events), ["connected", "disconnected"]);
    assert_eq!(json(&events)[1]["payload"]["code"], "normal");
}

#[wasm_bindgen_test]
async fn an_error_event_without_a_close_event_ends_the_connection() {
    // Node 22's WebSocket fires `error` and never `close`: the first connect still rejects...
    let (client, _events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let ws: MockSocket = JsFuture::from(next_socket()).await.unwrap().unchecked_into();
    ws.fail_without_close();
    let err = JsFuture::from(connecting).await.unwrap_err();
    assert_eq!(get(&err, "reason").as_string().as_deref(), Some("unreachable"));

    // ...and a live tunnel reconnects.
    let connecting = client.connect(JsValue::UNDEFINED);
    let server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    server.ws.fail_without_close();
    let (mut server, hello) = Server::hello(Config::default()).await;
    assert_eq!(hello.reconnect_token, "secret-1");
    server.welcome("demo", "secret-2");
    let id = server.get("/back");
    assert_eq!(server.response(id).await.0.status, 201);
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn the_reconnect_token_is_readable_and_can_be_presented_by_a_new_client() {
    let (first, _events) = client(r#", "subdomain": "demo""#, Some("describe"));
    assert_eq!(first.reconnect_token(), None);
    let connecting = first.connect(JsValue::UNDEFINED);
    let server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    assert_eq!(first.reconnect_token().as_deref(), Some("secret-1"));
    // The process dies without a word; a new one presents the token.
    server.ws.drop_connection(1006);
    let _ = first.close();

    let extra = r#", "subdomain": "demo", "reconnectToken": "secret-1""#;
    let (second, _events) = client(extra, Some("describe"));
    let connecting = second.connect(JsValue::UNDEFINED);
    let (mut server, hello) = Server::hello(Config::default()).await;
    assert_eq!((hello.name.as_str(), hello.reconnect_token.as_str()), ("demo", "secret-1"));
    server.welcome("demo", "secret-2");
    JsFuture::from(connecting).await.unwrap();
    assert_eq!(second.reconnect_token().as_deref(), Some("secret-2"));
    let _ = second.close();
}

#[wasm_bindgen_test]
async fn a_server_url_close_as_a_promise_and_an_abort_signal() {
    install_mock();
    let options = js_sys::JSON::parse(r#"{ "server": "ws://tunnel.test:8080" }"#).unwrap();
    let client = TunnelClient::new(options).map_err(JsValue::from).unwrap();
    client.on_request(handler("describe")).map_err(JsValue::from).unwrap();
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await; // checks the URL the server option made
    JsFuture::from(connecting).await.unwrap();
    // close() resolves once the socket has closed.
    JsFuture::from(client.close()).await.unwrap();
    assert_eq!(get(&server.ws.closed_with(), "code").as_f64(), Some(1000.0));
    assert!(matches!(server.next_event().await, Event::Closed { by_peer: true, .. }));

    // An aborted signal rejects a pending connect with its reason and closes the tunnel.
    let abort = web_sys::AbortController::new().unwrap();
    let with_signal = js_sys::Object::new();
    js_sys::Reflect::set(&with_signal, &"signal".into(), &abort.signal()).unwrap();
    let connecting = client.connect(with_signal.clone().into());
    let ws: MockSocket = JsFuture::from(next_socket()).await.unwrap().unchecked_into();
    abort.abort_with_reason(&"stop now".into());
    let err = JsFuture::from(connecting).await.unwrap_err();
    assert_eq!(err.as_string().as_deref(), Some("stop now"));
    assert!(!ws.closed_with().is_null(), "the socket was closed");
    assert!(!client.connected());

    // A signal aborted already: rejected at once, nothing dialled.
    let err = JsFuture::from(client.connect(with_signal.into())).await.unwrap_err();
    assert_eq!(err.as_string().as_deref(), Some("stop now"));
}

#[wasm_bindgen_test]
async fn the_session_lives_on_the_servers_pings_while_the_clients_timers_run_late() {
    // A hidden browser tab runs its timers late (Chromium: about once a minute). Here every
    // timer the client sets fires 400 ms late, with a 150 ms idle timeout from the server.
    let (client, events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let config = Config { idle_timeout: std::time::Duration::from_millis(150), ..Config::default() };
    let (mut server, _) = Server::hello(config).await;
    server.welcome("demo", "t");
    JsFuture::from(connecting).await.unwrap();
    delay_timers(400);
    // The server pings every 40 ms for 1.2 s, longer than the timeout and the delay together:
    // each ping is answered from the message handler, and the session stays up.
    for seq in 1..=30u64 {
        server.ws.deliver(&Frame::Ping(seq).encode());
        while server.pongs < seq {
            server.read().await;
        }
        JsFuture::from(sleep(40)).await.unwrap();
    }
    assert!(client.connected());
    assert_eq!(event_names(&events), ["connected"]);
    // A server that falls silent is still noticed, by a timer that fires late (in a
    // browser the floor of 75 s applies instead of 150 ms: the tunnel stays up there).
    if get(&js_sys::global(), "document").is_undefined() {
        while client.connected() {
            JsFuture::from(sleep(50)).await.unwrap();
        }
        assert_eq!(event_names(&events)[1], "disconnected");
        assert_eq!(json(&events)[1]["payload"]["code"], "timeout");
    }
    restore_timers();
    let _ = client.close();
}

fn construct_error(options: JsValue) -> String {
    let shown = format!("{options:?}");
    let Err(err) = TunnelClient::new(options) else { panic!("{shown} was accepted") };
    let err = JsValue::from(err);
    get(&err, "message").as_string().unwrap()
}

#[wasm_bindgen_test]
fn options_are_checked_with_clear_messages() {
    let parse = |s: &str| js_sys::JSON::parse(s).unwrap();
    assert!(construct_error(JsValue::UNDEFINED).contains("needs an options object"));
    assert!(construct_error(parse("{}")).contains("`server` or `host` is required"));
    assert!(construct_error(parse(r#"{"server": "tunnel.test"}"#)).contains("`server` must be a URL"));
    let both = construct_error(parse(r#"{"server": "https://x.dev", "port": 443}"#));
    assert!(both.contains("either `server` or `port`"), "{both}");
    assert!(construct_error(parse(r#"{"host": "https://x.dev"}"#)).contains("without a scheme"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "port": 70000}"#))
        .contains("`port` must be a whole number from 1 to 65535, got 70000"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "port": "80"}"#)).contains("`port` must be a number"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "subDomain": "a"}"#)).contains("unknown option `subDomain`"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "onRequest": 3}"#)).contains("must be a function"));
    assert!(construct_error(parse(r#"{"host": "x.dev", "responseTimeout": -1}"#)).contains("responseTimeout"));

    let client = TunnelClient::new(parse(r#"{"host": "x.dev"}"#)).map_err(JsValue::from).unwrap();
    let err = JsValue::from(client.on_request(JsValue::from(5)).unwrap_err());
    assert!(get(&err, "message").as_string().unwrap().contains("must be a function"));
    let err = JsValue::from(client.on("bogus", handler("describe")).unwrap_err());
    assert!(get(&err, "message").as_string().unwrap().contains("unknown event \"bogus\""));
    let err = JsValue::from(localtunnels_wasm::forward("localhost:8000").unwrap_err());
    assert!(get(&err, "message").as_string().unwrap().contains("http:// or https://"));
}
