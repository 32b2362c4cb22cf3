//! The options object given to `new TunnelClient(options)`, checked with messages a
//! person can act on.

use js_sys::Function;
use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};

use crate::js;

/// Default time a request handler has to produce its `Response`.
pub(crate) const DEFAULT_RESPONSE_TIMEOUT_MS: u32 = 30_000;
/// Default ceiling of the reconnect delay.
pub(crate) const DEFAULT_MAX_RECONNECT_DELAY_MS: u32 = 30_000;
/// The control endpoint on the server's apex host.
pub(crate) const DEFAULT_PATH: &str = "/api/tunnel";

/// The options as they arrive from JavaScript. Numbers and handlers are kept as raw
/// values so that a wrong type gets our message rather than serde's.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOptions {
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    host: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    port: JsValue,
    secure: Option<bool>,
    subdomain: Option<String>,
    hostname: Option<String>,
    token: Option<String>,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    response_timeout: JsValue,
    reconnect: Option<bool>,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    max_reconnect_delay: JsValue,
    path: Option<String>,
    basic_auth: Option<String>,
    allow_ips: Option<Vec<String>>,
    expose_errors: Option<bool>,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    local_port: JsValue,
    local_host: Option<String>,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_request: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_web_socket: JsValue,
}

/// Every option's name. serde-wasm-bindgen reads only the fields it knows, so a typo
/// like `subDomain` is caught here instead.
const KNOWN: &[&str] = &[
    "host",
    "port",
    "secure",
    "subdomain",
    "hostname",
    "token",
    "responseTimeout",
    "reconnect",
    "maxReconnectDelay",
    "path",
    "basicAuth",
    "allowIps",
    "exposeErrors",
    "localPort",
    "localHost",
    "onRequest",
    "onWebSocket",
];

/// Checked options.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) secure: bool,
    pub(crate) subdomain: String,
    /// A custom hostname instead of a name under the server's domain; empty for none.
    pub(crate) hostname: String,
    pub(crate) token: String,
    pub(crate) response_timeout_ms: u32,
    pub(crate) reconnect: bool,
    pub(crate) max_reconnect_delay_ms: f64,
    pub(crate) path: String,
    pub(crate) basic_auth: String,
    pub(crate) allow_ips: Vec<String>,
    /// Error pages show visitors the handler's exception text (for development).
    pub(crate) expose_errors: bool,
}

impl Options {
    /// The control WebSocket's URL, e.g. `wss://tunnel.example.com:443/api/tunnel`.
    pub(crate) fn control_url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// A request handler: a function `(request) => Response`, or an object with such a
/// `fetch` method (a Worker's default export, for instance).
#[derive(Debug, Clone)]
pub(crate) struct Handler {
    func: Function,
    this: JsValue,
}

impl Handler {
    /// Checks that `value` can handle requests; `what` names it in the error.
    pub(crate) fn from_js(value: &JsValue, what: &str) -> Result<Handler, String> {
        if let Some(func) = js::as_function(value) {
            return Ok(Handler { func, this: JsValue::UNDEFINED });
        }
        if let Some(func) = js::as_function(&js::get(value, "fetch")) {
            return Ok(Handler { func, this: value.clone() });
        }
        Err(format!(
            "{what} must be a function (request) => Response, or an object with such a fetch method; got {}",
            js::type_name(value)
        ))
    }

    /// Calls the handler with `args`.
    pub(crate) fn call(&self, arg: &JsValue) -> Result<JsValue, JsValue> {
        self.func.call1(&self.this, arg)
    }

    pub(crate) fn call2(&self, a: &JsValue, b: &JsValue) -> Result<JsValue, JsValue> {
        self.func.call2(&self.this, a, b)
    }
}

/// Everything the constructor was given.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) options: Options,
    pub(crate) on_request: Option<Handler>,
    pub(crate) on_web_socket: Option<Handler>,
}

/// Parses and checks the constructor's argument.
pub(crate) fn parse(value: JsValue) -> Result<Parsed, String> {
    if value.is_undefined() || value.is_null() {
        return Err("TunnelClient needs an options object, e.g. { host: 'tunnel.example.com' }".to_string());
    }
    if !value.is_object() {
        return Err(format!("TunnelClient options must be an object, got {}", js::type_name(&value)));
    }
    for key in js_sys::Object::keys(value.unchecked_ref::<js_sys::Object>()).iter() {
        let key = key.as_string().unwrap_or_default();
        if !KNOWN.contains(&key.as_str()) {
            return Err(format!("unknown option `{key}`; the options are: {}", KNOWN.join(", ")));
        }
    }
    let raw: RawOptions =
        serde_wasm_bindgen::from_value(value).map_err(|e| format!("invalid TunnelClient options: {e}"))?;

    let host = check_host(&raw.host)?;
    let secure = raw.secure;
    let port = match number(&raw.port, "port", 1.0, 65535.0)? {
        Some(p) => p as u16,
        None if secure == Some(true) => 443,
        None => 80,
    };
    let secure = secure.unwrap_or(port == 443);
    let subdomain = check_subdomain(raw.subdomain.unwrap_or_default())?;
    let hostname = check_hostname(raw.hostname.unwrap_or_default())?;
    if !hostname.is_empty() && !subdomain.is_empty() {
        return Err("give either `subdomain` or `hostname`, not both".to_string());
    }
    let response_timeout_ms = number(&raw.response_timeout, "responseTimeout", 1.0, f64::from(i32::MAX))?
        .map_or(DEFAULT_RESPONSE_TIMEOUT_MS, |v| v as u32);
    let max_reconnect_delay_ms = number(&raw.max_reconnect_delay, "maxReconnectDelay", 0.0, f64::from(i32::MAX))?
        .unwrap_or(f64::from(DEFAULT_MAX_RECONNECT_DELAY_MS));
    let path = raw.path.unwrap_or_else(|| DEFAULT_PATH.to_string());
    if !path.starts_with('/') {
        return Err(format!("`path` must start with '/', got {path:?}"));
    }

    let mut on_request = match raw.on_request.is_undefined() || raw.on_request.is_null() {
        true => None,
        false => Some(Handler::from_js(&raw.on_request, "`onRequest`")?),
    };
    let on_web_socket = match raw.on_web_socket.is_undefined() || raw.on_web_socket.is_null() {
        true => None,
        false => Some(Handler::from_js(&raw.on_web_socket, "`onWebSocket`")?),
    };
    if let Some(local_port) = number(&raw.local_port, "localPort", 1.0, 65535.0)? {
        if on_request.is_some() {
            return Err("give either `localPort` or `onRequest`, not both".to_string());
        }
        let local_host = raw.local_host.unwrap_or_else(|| "localhost".to_string());
        let target = format!("http://{local_host}:{local_port}");
        on_request = Some(Handler::from_js(&crate::forward::handler(&target)?, "`localPort`")?);
    }

    let options = Options {
        host,
        port,
        secure,
        subdomain,
        hostname,
        token: raw.token.unwrap_or_default(),
        response_timeout_ms,
        reconnect: raw.reconnect.unwrap_or(true),
        max_reconnect_delay_ms,
        path,
        basic_auth: raw.basic_auth.unwrap_or_default(),
        allow_ips: raw.allow_ips.unwrap_or_default(),
        expose_errors: raw.expose_errors.unwrap_or(false),
    };
    Ok(Parsed { options, on_request, on_web_socket })
}

fn check_host(value: &JsValue) -> Result<String, String> {
    if value.is_undefined() || value.is_null() {
        return Err("`host` is required: the tunnel server's host name, e.g. 'tunnel.example.com'".to_string());
    }
    let Some(host) = value.as_string() else {
        return Err(format!("`host` must be a string, got {}", js::type_name(value)));
    };
    check_host_str(&host)?;
    Ok(host)
}

/// Checks a host name or address (without scheme, port or path).
pub(crate) fn check_host_str(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("`host` must not be empty".to_string());
    }
    if host.contains("://") {
        return Err(format!(
            "`host` must be a host name like 'tunnel.example.com', without a scheme (use `secure` for wss), got {host:?}"
        ));
    }
    if host.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("`host` must be a bare host name, got {host:?}"));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!("`host` must not contain a port (use the `port` option), got {host:?}"));
    }
    Ok(())
}

/// Checks a requested custom hostname: empty (none) or a DNS name of two labels or
/// more, lowercased (the server decides whether the token is granted it).
pub(crate) fn check_hostname(host: String) -> Result<String, String> {
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if lower.is_empty() || (lower.len() <= 253 && lower.contains('.') && lower.split('.').all(label_ok)) {
        return Ok(lower);
    }
    Err(format!("`hostname` must be a full host name such as \"app.example.com\", got {host:?}"))
}

/// Checks a requested subdomain: empty (any name) or one DNS label.
pub(crate) fn check_subdomain(name: String) -> Result<String, String> {
    let name = name.to_ascii_lowercase();
    let ok = name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(format!(
            "`subdomain` must be one DNS label (letters, digits and '-', at most 63 characters), got {name:?}"
        ));
    }
    Ok(name)
}

/// An optional whole number in `[min, max]`.
fn number(value: &JsValue, name: &str, min: f64, max: f64) -> Result<Option<f64>, String> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let Some(n) = value.as_f64() else {
        return Err(format!("`{name}` must be a number, got {}", js::type_name(value)));
    };
    check_range(n, name, min, max).map(Some)
}

/// Checks that `n` is a whole number in `[min, max]`.
pub(crate) fn check_range(n: f64, name: &str, min: f64, max: f64) -> Result<f64, String> {
    if n.fract() != 0.0 || !n.is_finite() || n < min || n > max {
        return Err(format!("`{name}` must be a whole number from {min} to {max}, got {n}"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert!(check_host_str("tunnel.example.com").is_ok());
        assert!(check_host_str("127.0.0.1").is_ok());
        assert!(check_host_str("[::1]").is_ok());
        assert!(check_host_str("").unwrap_err().contains("empty"));
        assert!(check_host_str("https://x.dev").unwrap_err().contains("without a scheme"));
        assert!(check_host_str("localhost:3000").unwrap_err().contains("port"));
        assert!(check_host_str("x.dev/api").is_err());
    }

    #[test]
    fn hostnames() {
        assert_eq!(check_hostname("App.Example.com.".into()).unwrap(), "app.example.com");
        assert_eq!(check_hostname(String::new()).unwrap(), "");
        for bad in ["localhost", "a..b", "-a.b", "a b.c", "a.b/c"] {
            assert!(check_hostname(bad.into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn subdomains() {
        assert_eq!(check_subdomain("Demo-1".into()).unwrap(), "demo-1");
        assert_eq!(check_subdomain(String::new()).unwrap(), "");
        assert!(check_subdomain("-x".into()).is_err());
        assert!(check_subdomain("a.b".into()).is_err());
        assert!(check_subdomain("x".repeat(64)).is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(check_range(443.0, "port", 1.0, 65535.0), Ok(443.0));
        for bad in [0.0, 65536.0, 80.5, f64::NAN, f64::INFINITY, -1.0] {
            let e = check_range(bad, "port", 1.0, 65535.0).unwrap_err();
            assert!(e.contains("`port` must be a whole number from 1 to 65535"), "{e}");
        }
    }
}
