//! A browser tab as the origin, against a real localtunnels server: the tab connects
//! with the browser's own WebSocket, then the same page visits the public URL with
//! `fetch` and `new WebSocket` and gets the tab's answers.
//!
//! Built only with `--features e2e`, with the server's URL in `LOCALTUNNELS_E2E_SERVER`;
//! `tests/js/browser.test.mjs` starts the server and runs
//! `wasm-pack test --headless --chrome crates/wasm --features e2e --test e2e`.
#![cfg(target_arch = "wasm32")]

use js_sys::{Promise, Reflect};
use localtunnels_wasm::TunnelClient;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

const SERVER: &str = env!(
    "LOCALTUNNELS_E2E_SERVER",
    "set LOCALTUNNELS_E2E_SERVER to a running server's URL (tests/js/browser.test.mjs does)"
);

#[wasm_bindgen(module = "/tests/support/browser.js")]
extern "C" {
    fn handlers() -> JsValue;
    fn visit(url: &str, method: &str, body: Option<String>) -> Promise;
    #[wasm_bindgen(js_name = visitWs)]
    fn visit_ws(url: &str, protocol: &str, message: &str) -> Promise;
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &key.into()).unwrap()
}

#[wasm_bindgen_test]
async fn a_browser_tab_answers_http_and_websocket_visitors() {
    let port: u16 = SERVER.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    let options = js_sys::JSON::parse(&format!(r#"{{ "host": "localhost", "port": {port}, "subdomain": "tab" }}"#));
    let client = TunnelClient::new(options.unwrap()).map_err(JsValue::from).unwrap();
    client.on_request(get(&handlers(), "app")).map_err(JsValue::from).unwrap();
    client.on_web_socket(get(&handlers(), "echo")).map_err(JsValue::from).unwrap();

    let url = JsFuture::from(client.connect()).await.unwrap().as_string().unwrap();
    assert_eq!(url, format!("http://tab.localhost:{port}"));

    let got = JsFuture::from(visit(&format!("{url}/whoami?x=1"), "GET", None)).await.unwrap();
    assert_eq!(get(&got, "status").as_f64(), Some(200.0));
    let body: String = get(&got, "body").as_string().unwrap();
    assert!(body.contains(r#""runtime":"browser""#), "{body}");
    assert!(body.contains(&format!(r#""url":"{url}/whoami?x=1""#)), "{body}");

    let echoed = JsFuture::from(visit(&format!("{url}/echo"), "POST", Some("ping over http".into()))).await.unwrap();
    assert_eq!(get(&echoed, "body").as_string().as_deref(), Some("ping over http"));

    let ws_url = format!("ws://tab.localhost:{port}/ws");
    let ws = JsFuture::from(visit_ws(&ws_url, "echo.v1", "hello over ws")).await.unwrap();
    assert_eq!(get(&ws, "protocol").as_string().as_deref(), Some("echo.v1"));
    assert_eq!(get(&ws, "reply").as_string().as_deref(), Some("hello over ws"));
    client.close();
}
