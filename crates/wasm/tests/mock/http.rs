//! Requests, responses, bodies, handler failures and WebSockets through the wasm client.

use super::*;

#[wasm_bindgen_test]
async fn a_request_reaches_the_handler_and_its_response_comes_back() {
    let (client, events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    assert_eq!(JsFuture::from(connecting).await.unwrap().as_string().unwrap(), PUBLIC);
    assert_eq!(client.url().as_deref(), Some(PUBLIC));
    assert_eq!(client.name().as_deref(), Some("demo"));
    assert!(client.connected());

    let headers = [("host", "demo.tunnel.test"), ("x-repeat", "a"), ("x-repeat", "b"), ("accept", "*/*")];
    let id = server.open(StreamKind::Http, "GET", "/hello?x=1", &headers, true);
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 201);
    if cookies_allowed() {
        assert_eq!(header(&head, "set-cookie"), [&b"a=1; Path=/"[..], b"b=2, c=3"], "set-cookie stays separate");
    }
    assert_eq!(header(&head, "x-multi"), [&b"one, two"[..]]);
    let seen: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["url"], format!("{PUBLIC}/hello?x=1"));
    assert!(seen["headers"].as_array().unwrap().contains(&serde_json::json!(["x-repeat", "a, b"])), "{seen}");
    assert_eq!(seen["body"], "");

    let names = event_names(&events);
    assert_eq!(names, ["connected", "request", "response"]);
    let log = json(&events);
    assert_eq!(log[1]["payload"]["url"], format!("{PUBLIC}/hello?x=1"));
    assert_eq!(log[2]["payload"]["status"], 201);

    // The client reuses the JavaScript strings of names and values it saw last time:
    // a value that changed must still arrive as it is now.
    let headers = [("host", "demo.tunnel.test"), ("x-repeat", "c"), ("accept", "text/html")];
    let id = server.open(StreamKind::Http, "GET", "/again", &headers, true);
    let (_, body) = server.response(id).await;
    let seen: Value = serde_json::from_slice(&body).unwrap();
    let seen = seen["headers"].as_array().unwrap();
    assert!(seen.contains(&serde_json::json!(["x-repeat", "c"])), "{seen:?}");
    assert!(seen.contains(&serde_json::json!(["accept", "text/html"])), "{seen:?}");
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_handler_may_answer_with_a_plain_object_to_set_cookies_anywhere() {
    let (client, _events) = client("", Some("plain"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    let id = server.get("/");
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 202);
    assert_eq!(header(&head, "set-cookie"), [&b"a=1"[..], b"b=2, c=3"]);
    assert_eq!(header(&head, "x-kind"), [&b"plain"[..]]);
    assert_eq!(body, b"plain body");

    client.on_request(handler("record")).map_err(JsValue::from).unwrap();
    let id = server.get("/");
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 200);
    assert_eq!(header(&head, "set-cookie"), [&b"x=1"[..], b"y=2"]);
    assert_eq!(header(&head, "content-length"), [&b"3"[..]]);
    assert_eq!(body, [1, 2, 3]);
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn request_and_response_bodies_stream_both_ways() {
    let (client, _events) = client("", Some("streamEcho"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let id = server.open(StreamKind::Http, "POST", "/echo", &[("content-type", "text/plain")], false);
    server.send(id, Bytes::from_static(b"abc"), false).await;
    // The answer to the first chunk arrives while the visitor is still sending.
    let (head, end) = server.head(id).await;
    assert_eq!((head.status, end), (200, false));
    assert_eq!(server.chunk(id).await, (b"ABC".to_vec(), false));
    server.send(id, Bytes::from_static(b"def"), true).await;
    let mut rest = Vec::new();
    loop {
        let (data, end) = server.chunk(id).await;
        rest.extend(data);
        if end {
            break;
        }
    }
    assert_eq!(rest, b"DEF");
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn large_bodies_move_under_flow_control() {
    let (client, _events) = client("", Some("big"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    // Download: 1 MiB, four times the stream window.
    let id = server.get("/big");
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 200);
    assert_eq!(body.len(), 1024 * 1024);
    assert!(body.iter().enumerate().all(|(i, &b)| usize::from(b) == i % 251));

    // Upload: 1 MiB that the handler counts.
    client.on_request(handler("count")).map_err(JsValue::from).unwrap();
    let id = server.open(StreamKind::Http, "POST", "/count", &[], false);
    server.send(id, Bytes::from(vec![9u8; 1024 * 1024]), true).await;
    let (head, body) = server.response(id).await;
    assert_eq!((head.status, &body[..]), (200, &b"1048576"[..]));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_streamed_response_flows_chunk_by_chunk() {
    let (client, _events) = client("", Some("gated"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let id = server.get("/events");
    let (head, end) = server.head(id).await;
    assert_eq!((head.status, end), (200, false));
    assert_eq!(header(&head, "content-type"), [&b"text/event-stream"[..]]);
    // Each chunk only exists once the previous one has reached the visitor.
    for i in 0..3 {
        open_gate();
        assert_eq!(server.chunk(id).await, (format!("data: {i}\n\n").into_bytes(), false));
    }
    open_gate();
    assert_eq!(server.chunk(id).await, (Vec::new(), true));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_visitor_leaving_cancels_the_response_body_quietly() {
    let (client, events) = client("", Some("gated"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let id = server.get("/events");
    assert_eq!(server.head(id).await.0.status, 200);
    open_gate();
    assert_eq!(server.chunk(id).await, (b"data: 0\n\n".to_vec(), false));
    let cancels = gate_cancel_count();
    server.session.reset(id, localtunnels_core::ResetCode::Cancel, "the visitor left");
    server.flush();
    // The client handles frames in order: once this answer is back, it has seen the reset.
    client.on_request(handler("describe")).map_err(JsValue::from).unwrap();
    let probe = server.get("/probe");
    assert_eq!(server.response(probe).await.0.status, 201);
    assert_eq!(gate_cancel_count(), cancels + 1, "the response body was cancelled");
    assert!(!event_names(&events).contains(&"error".to_string()));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn handler_failures_become_502_and_504_and_others_keep_being_served() {
    let (client, events) = client(r#", "responseTimeout": 200"#, Some("failing"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    // The visitor sees a generic page with a request id; the exception text goes to
    // the `error` event under the same id.
    let cases = [
        ("/throw", 502, "boom"),
        ("/reject", 502, "nope"),
        ("/not-a-response", 502, "returned number, not a Response"),
        ("/silent", 504, "did not answer within 200 ms"),
        ("/ok", 200, "still serving"),
    ];
    let ids: Vec<StreamId> = cases.iter().map(|(path, _, _)| server.get(path)).collect();
    let mut failed = Vec::new();
    for (id, (path, status, text)) in ids.into_iter().zip(cases) {
        let (head, body) = server.response(id).await;
        let body = String::from_utf8(body).unwrap();
        assert_eq!(head.status, status, "{path}: {body}");
        if status == 200 {
            assert!(body.contains(text), "{path}: {body}");
            continue;
        }
        assert!(!body.contains(text), "{path} leaks the detail: {body}");
        assert_eq!(header(&head, "content-type"), [&b"text/plain; charset=utf-8"[..]], "{path}");
        let request_id = body.trim_end().rsplit("(request id ").next().unwrap().trim_end_matches(')').to_string();
        assert_eq!(request_id.len(), 16, "{path}: {body}");
        failed.push((request_id, text));
    }
    let messages: Vec<String> = Array::from(&events)
        .iter()
        .filter(|e| get(e, "name").as_string().as_deref() == Some("error"))
        .map(|e| get(&get(&e, "payload"), "message").as_string().unwrap())
        .collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    for (request_id, text) in failed {
        assert!(
            messages.iter().any(|m| m.contains(&request_id) && m.contains(text)),
            "{request_id} {text}: {messages:?}"
        );
    }
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn expose_errors_shows_the_exception_and_browsers_get_html() {
    let (client, _events) = client(r#", "exposeErrors": true"#, Some("failing"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    let id = server.open(StreamKind::Http, "GET", "/throw", &[("accept", "text/html,*/*;q=0.8")], true);
    let (head, body) = server.response(id).await;
    let body = String::from_utf8(body).unwrap();
    assert_eq!(head.status, 502);
    assert_eq!(header(&head, "content-type"), [&b"text/html; charset=utf-8"[..]]);
    assert!(body.starts_with("<!doctype html>") && body.contains("boom") && body.contains("Request id"), "{body}");
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_websocket_reaches_the_handler_and_messages_flow_both_ways() {
    let (client, _events) = client("", None);
    client.on_web_socket(handler("wsEcho")).map_err(JsValue::from).unwrap();
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let offer = [("host", "demo.tunnel.test"), ("sec-websocket-protocol", "chat, superchat")];
    let id = server.open(StreamKind::WebSocket, "GET", "/chat", &offer, false);
    let (head, _) = server.head(id).await;
    assert_eq!(head.status, 101);
    assert_eq!(header(&head, "sec-websocket-protocol"), [&b"chat"[..]]);

    server.session.send_ws(id, false, Bytes::from_static("héllo".as_bytes()), true).unwrap();
    server.flush();
    assert_eq!(server.ws_message(id).await, (false, "héllo".as_bytes().to_vec()));

    // A binary message in two fragments comes back whole.
    server.session.send_ws(id, true, Bytes::from_static(&[1, 2, 3]), false).unwrap();
    server.session.send_ws(id, true, Bytes::from_static(&[4, 5]), true).unwrap();
    server.flush();
    assert_eq!(server.ws_message(id).await, (true, vec![1, 2, 3, 4, 5]));

    server.session.close_ws(id, 1000, "done").unwrap();
    server.flush();
    match server.next_for(id).await {
        Event::WsClose { code, .. } => assert_eq!(code, 1000),
        other => panic!("expected the close echoed, got {other:?}"),
    }
    let seen = json(&seen_by_sockets());
    assert_eq!(seen[0]["url"], "ws://demo.tunnel.test/chat");
    assert_eq!(seen[0]["protocol"], "chat");
    assert_eq!(seen[0]["requestUrl"], format!("{PUBLIC}/chat"));
    assert_eq!(seen[1], serde_json::json!({ "closed": 1000, "reason": "done", "clean": true }));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn websocket_messages_wait_for_a_late_listener_and_handlers_close_with_their_code() {
    let (client, _events) = client("", Some("describe"));
    client.on_web_socket(handler("wsLate")).map_err(JsValue::from).unwrap();
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();

    let id = server.open(StreamKind::WebSocket, "GET", "/late", &[], false);
    assert_eq!(server.head(id).await.0.status, 101);
    server.session.send_ws(id, false, Bytes::from_static(b"early"), true).unwrap();
    server.flush();
    assert_eq!(server.ws_message(id).await, (false, b"late:early".to_vec()));

    client.on_web_socket(handler("wsCloser")).map_err(JsValue::from).unwrap();
    let id = server.open(StreamKind::WebSocket, "GET", "/closer", &[], false);
    assert_eq!(server.head(id).await.0.status, 101);
    server.session.send_ws(id, false, Bytes::from_static(b"bye?"), true).unwrap();
    server.flush();
    match server.next_for(id).await {
        Event::WsClose { code, reason, .. } => assert_eq!((code, reason.as_str()), (4001, "bye")),
        other => panic!("expected the handler's close, got {other:?}"),
    }
    server.session.close_ws(id, 4001, "").unwrap();
    server.flush();
    // The close event fired once the handshake completed; an HTTP exchange after it
    // proves the client has processed it.
    let probe = server.get("/probe");
    assert_eq!(server.response(probe).await.0.status, 201);
    assert_eq!(json(&seen_by_sockets()), serde_json::json!([{ "closed": 4001, "reason": "" }]));
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn a_websocket_without_a_handler_is_refused_with_404() {
    let (client, _events) = client("", Some("describe"));
    let connecting = client.connect(JsValue::UNDEFINED);
    let mut server = Server::accept("demo").await;
    JsFuture::from(connecting).await.unwrap();
    let id = server.open(StreamKind::WebSocket, "GET", "/ws", &[], false);
    let (head, body) = server.response(id).await;
    assert_eq!(head.status, 404);
    assert!(String::from_utf8(body).unwrap().contains("accepts no WebSockets"));
    let _ = client.close();
}
