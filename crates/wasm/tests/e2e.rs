//! A browser tab as the origin, against a real localtunnels server: the tab connects
//! with the browser's own WebSocket, then the same page visits the public URL with
//! `fetch` and `new WebSocket` and gets the tab's answers; and the server takes the
//! `BATCH` messages the tab packs its frames into.
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
    #[wasm_bindgen(js_name = visitMany)]
    fn visit_many(url: &str, n: u32) -> Promise;
    #[wasm_bindgen(js_name = spyOnSends)]
    fn spy_on_sends() -> JsValue;
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

    let url = JsFuture::from(client.connect(JsValue::UNDEFINED)).await.unwrap().as_string().unwrap();
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
    let _ = client.close();
}

#[wasm_bindgen_test]
async fn the_real_server_takes_the_batches_a_tab_packs_its_frames_into() {
    let port: u16 = SERVER.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    let spy = spy_on_sends();
    let call = |name: &str| js_sys::Function::from(get(&spy, name)).call0(&JsValue::UNDEFINED).unwrap();
    let options = js_sys::JSON::parse(&format!(r#"{{ "host": "localhost", "port": {port}, "subdomain": "batch" }}"#));
    let client = TunnelClient::new(options.unwrap()).map_err(JsValue::from).unwrap();
    client.on_request(get(&handlers(), "app")).map_err(JsValue::from).unwrap();
    let url = JsFuture::from(client.connect(JsValue::UNDEFINED)).await.unwrap().as_string().unwrap();

    let n = 40;
    let got = JsFuture::from(visit_many(&format!("{url}/many"), n)).await.unwrap();
    let got = js_sys::Array::from(&got);
    assert_eq!(got.length(), n);
    for (i, answer) in got.iter().enumerate() {
        assert_eq!(get(&answer, "status").as_f64(), Some(200.0), "request {i}");
        let body = get(&answer, "body").as_string().unwrap();
        assert!(body.contains(&format!(r#""url":"{url}/many?i={i}""#)), "request {i}: {body}");
    }
    // Each answer is a RESPONSE and a DATA: they went out packed (type 0x30), and the
    // server, which announced BATCH in its welcome, took every one of them.
    let types: Vec<u8> =
        js_sys::Array::from(&call("types")).iter().filter_map(|t| t.as_f64()).map(|t| t as u8).collect();
    let batches = types.iter().filter(|&&t| t == 0x30).count();
    assert!(batches > 0, "no BATCH among the messages sent: {types:?}");
    assert!(types.len() < 2 * n as usize, "{} messages for {n} responses: {types:?}", types.len());
    call("restore");
    let _ = client.close();
}
