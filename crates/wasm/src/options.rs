//! The options object given to `new TunnelClient(options)`, checked with messages a
//! person can act on.

use js_sys::Function;
use wasm_bindgen::{JsCast, JsValue};

use crate::js;

/// Default time a request handler has to produce its `Response`.
pub(crate) const DEFAULT_RESPONSE_TIMEOUT_MS: u32 = 30_000;
/// Default ceiling of the reconnect delay.
pub(crate) const DEFAULT_MAX_RECONNECT_DELAY_MS: u32 = 30_000;

/// The options as they arrive from JavaScript. Numbers and handlers are kept as raw
/// values so that a wrong type gets our message. Read key by key ([`RawOptions::read`]),
/// not with serde-wasm-bindgen's derive, whose deserializer and serde's visitors were code
/// the .wasm carried for this one object (docs/BENCHMARKS.md, "Sixteenth round (session
/// 17): memory and size", has the sizes).
struct RawOptions {
    server: JsValue,
    servers: JsValue,
    host: JsValue,
    port: JsValue,
    secure: Option<bool>,
    subdomain: Option<String>,
    hostname: Option<String>,
    token: Option<String>,
    reconnect_token: Option<String>,
    response_timeout: JsValue,
    reconnect: Option<bool>,
    max_reconnect_delay: JsValue,
    path: Option<String>,
    basic_auth: Option<String>,
    allow_ips: Option<Vec<String>>,
    expose_errors: Option<bool>,
    local_port: JsValue,
    local_host: Option<String>,
    on_request: JsValue,
    on_web_socket: JsValue,
}

impl RawOptions {
    /// Reads every option of the object `o` (`undefined` and `null` are "not given").
    fn read(o: &JsValue) -> Result<RawOptions, String> {
        Ok(RawOptions {
            server: js::get(o, "server"),
            servers: js::get(o, "servers"),
            host: js::get(o, "host"),
            port: js::get(o, "port"),
            secure: boolean(o, "secure")?,
            subdomain: string(o, "subdomain")?,
            hostname: string(o, "hostname")?,
            token: string(o, "token")?,
            reconnect_token: string(o, "reconnectToken")?,
            response_timeout: js::get(o, "responseTimeout"),
            reconnect: boolean(o, "reconnect")?,
            max_reconnect_delay: js::get(o, "maxReconnectDelay"),
            path: string(o, "path")?,
            basic_auth: string(o, "basicAuth")?,
            allow_ips: strings(o, "allowIps")?,
            expose_errors: boolean(o, "exposeErrors")?,
            local_port: js::get(o, "localPort"),
            local_host: string(o, "localHost")?,
            on_request: js::get(o, "onRequest"),
            on_web_socket: js::get(o, "onWebSocket"),
        })
    }
}

/// Option `key` of `o`, `None` if it is `undefined` or `null`.
fn given(o: &JsValue, key: &str) -> Option<JsValue> {
    Some(js::get(o, key)).filter(|v| !v.is_undefined() && !v.is_null())
}

/// An optional boolean option.
fn boolean(o: &JsValue, key: &str) -> Result<Option<bool>, String> {
    given(o, key)
        .map(|v| v.as_bool().ok_or_else(|| format!("`{key}` must be a boolean, got {}", js::type_name(&v))))
        .transpose()
}

/// An optional string option.
fn string(o: &JsValue, key: &str) -> Result<Option<String>, String> {
    given(o, key)
        .map(|v| v.as_string().ok_or_else(|| format!("`{key}` must be a string, got {}", js::type_name(&v))))
        .transpose()
}

/// An optional array-of-strings option.
fn strings(o: &JsValue, key: &str) -> Result<Option<Vec<String>>, String> {
    let Some(v) = given(o, key) else { return Ok(None) };
    let bad = |v: &JsValue| format!("`{key}` must be an array of strings, got {}", js::type_name(v));
    if !js_sys::Array::is_array(&v) {
        return Err(bad(&v));
    }
    js_sys::Array::from(&v)
        .iter()
        .map(|item| item.as_string().ok_or_else(|| bad(&item)))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Every option's name. [`RawOptions::read`] reads only the keys it knows, so a typo
/// like `subDomain` is caught here instead.
const KNOWN: &[&str] = &[
    "server",
    "servers",
    "host",
    "port",
    "secure",
    "subdomain",
    "hostname",
    "token",
    "reconnectToken",
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
    /// A reconnect token kept from an earlier session (storage, a state file).
    pub(crate) reconnect_token: String,
    pub(crate) response_timeout_ms: u32,
    pub(crate) reconnect: bool,
    pub(crate) max_reconnect_delay_ms: f64,
    pub(crate) path: String,
    pub(crate) basic_auth: String,
    pub(crate) allow_ips: Vec<String>,
    /// Error pages show visitors the handler's exception text (for development).
    pub(crate) expose_errors: bool,
    /// Every server (host, port, secure), tried in order: one, or a cluster's nodes
    /// (`servers`). `host`, `port` and `secure` are the one being dialled.
    pub(crate) servers: Vec<(String, u16, bool)>,
}

impl Options {
    /// Dials server `i` of [`Options::servers`] next.
    pub(crate) fn select(&mut self, i: usize) {
        if let Some((host, port, secure)) = self.servers.get(i).cloned() {
            (self.host, self.port, self.secure) = (host, port, secure);
        }
    }

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
        return Err("TunnelClient needs an options object, e.g. { server: 'https://tunnel.example.com' }".to_string());
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
    let raw = RawOptions::read(&value)?;

    let mut more = Vec::new();
    let (host, port, secure, server_path) = if !raw.servers.is_undefined() && !raw.servers.is_null() {
        if !raw.server.is_undefined() || !raw.host.is_undefined() {
            return Err("give either `servers` or `server`/`host`, not both".to_string());
        }
        if !js_sys::Array::is_array(&raw.servers) {
            return Err(format!("`servers` must be an array of URL strings, got {}", js::type_name(&raw.servers)));
        }
        let list = js_sys::Array::from(&raw.servers);
        let mut parsed = Vec::new();
        for url in list.iter() {
            let Some(url) = url.as_string() else {
                return Err(format!("`servers` must hold URL strings, got {}", js::type_name(&url)));
            };
            parsed.push(parse_server(&url)?);
        }
        let mut parsed = parsed.into_iter();
        let first = parsed.next().ok_or("`servers` must name at least one server URL")?;
        for (host, port, secure, path) in parsed {
            if path != first.3 {
                return Err("the `servers` must share one control path".to_string());
            }
            more.push((host, port, secure));
        }
        first
    } else if raw.server.is_undefined() || raw.server.is_null() {
        let host = check_host(&raw.host)?;
        let secure = raw.secure;
        let port = match number(&raw.port, "port", 1.0, 65535.0)? {
            Some(p) => p as u16,
            None if secure == Some(true) => 443,
            None => 80,
        };
        (host, port, secure.unwrap_or(port == 443), None)
    } else {
        let clash =
            [("host", !raw.host.is_undefined()), ("port", !raw.port.is_undefined()), ("secure", raw.secure.is_some())]
                .into_iter()
                .find_map(|(name, given)| given.then_some(name));
        if let Some(name) = clash {
            return Err(format!("give either `server` or `{name}`, not both (`server` is a URL with all of them)"));
        }
        let Some(url) = raw.server.as_string() else {
            return Err(format!("`server` must be a URL string, got {}", js::type_name(&raw.server)));
        };
        parse_server(&url)?
    };
    let subdomain = check_subdomain(raw.subdomain.unwrap_or_default())?;
    let hostname = check_hostname(raw.hostname.unwrap_or_default())?;
    if !hostname.is_empty() && !subdomain.is_empty() {
        return Err("give either `subdomain` or `hostname`, not both".to_string());
    }
    let response_timeout_ms = number(&raw.response_timeout, "responseTimeout", 1.0, f64::from(i32::MAX))?
        .map_or(DEFAULT_RESPONSE_TIMEOUT_MS, |v| v as u32);
    let max_reconnect_delay_ms = number(&raw.max_reconnect_delay, "maxReconnectDelay", 0.0, f64::from(i32::MAX))?
        .unwrap_or(f64::from(DEFAULT_MAX_RECONNECT_DELAY_MS));
    let path = match (raw.path, server_path) {
        (Some(_), Some(_)) => return Err("give the control path either in `server` or in `path`, not both".to_string()),
        (Some(p), None) | (None, Some(p)) => p,
        (None, None) => localtunnels_core::CONTROL_PATH.to_string(),
    };
    if !path.starts_with('/') {
        return Err(format!("`path` must start with '/', got {path}", path = crate::js::quoted(&path)));
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
        // A whole number in 1..=65535 (checked above), printed as an integer: an `f64`'s
        // `{}` would bring Rust's float formatting (~15 KB) into the .wasm.
        let local_port = local_port as u16;
        let target = format!("http://{local_host}:{local_port}");
        on_request = Some(Handler::from_js(&crate::forward::handler(&target)?, "`localPort`")?);
    }

    let mut servers = vec![(host.clone(), port, secure)];
    servers.extend(more);
    let options = Options {
        servers,
        host,
        port,
        secure,
        subdomain,
        hostname,
        token: raw.token.unwrap_or_default(),
        reconnect_token: raw.reconnect_token.unwrap_or_default(),
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

/// Parses `server`, e.g. `https://tunnel.example.com` or `ws://localhost:3000`: the
/// host, the port (the scheme's by default), `wss` for `https`/`wss`, and a control path
/// if the URL has one beyond `/`.
pub(crate) fn parse_server(url: &str) -> Result<(String, u16, bool, Option<String>), String> {
    let bad = |why: &str| {
        format!(
            "`server` must be a URL like 'https://tunnel.example.com' ({why}), got {url}",
            url = crate::js::quoted(url)
        )
    };
    let (scheme, rest) = js::split_scheme(url).ok_or_else(|| bad("no scheme"))?;
    let secure = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => true,
        "http" | "ws" => false,
        _ => return Err(bad("the scheme must be https, http, wss or ws")),
    };
    // Split and sliced without indexing (`&s[..i]`): see `js::split_scheme`.
    let (authority, path) = rest.find(['/', '?', '#']).and_then(|i| rest.split_at_checked(i)).unwrap_or((rest, ""));
    if path.contains(['?', '#']) {
        return Err(bad("no query or fragment"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => {
            let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("bad port"))?;
            (host, port)
        }
        _ => (authority, if secure { 443 } else { 80 }),
    };
    check_host_str(host).map_err(|_| bad("bad host"))?;
    let path = (!path.is_empty() && path != "/").then(|| path.to_string());
    Ok((host.to_string(), port, secure, path))
}

fn check_host(value: &JsValue) -> Result<String, String> {
    if value.is_undefined() || value.is_null() {
        return Err(
            "`server` or `host` is required: the tunnel server's URL, e.g. 'https://tunnel.example.com'".to_string()
        );
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
    if js::split_scheme(host).is_some() {
        return Err(format!(
            "`host` must be a host name like 'tunnel.example.com', without a scheme (use `secure` for wss), got {host}",
            host = crate::js::quoted(host)
        ));
    }
    if host.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("`host` must be a bare host name, got {host}", host = crate::js::quoted(host)));
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err(format!(
            "`host` must not contain a port (use the `port` option), got {host}",
            host = crate::js::quoted(host)
        ));
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
    Err(format!(
        "`hostname` must be a full host name such as \"app.example.com\", got {host}",
        host = crate::js::quoted(&host)
    ))
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
            "`subdomain` must be one DNS label (letters, digits and '-', at most 63 characters), got {name}",
            name = crate::js::quoted(&name)
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
        let [min, max, n] = [min, max, n].map(crate::js::number_text);
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
    fn servers() {
        let ok = |u: &str| parse_server(u).unwrap();
        assert_eq!(ok("https://tunnel.example.com"), ("tunnel.example.com".into(), 443, true, None));
        assert_eq!(ok("http://localhost:3000/"), ("localhost".into(), 3000, false, None));
        assert_eq!(ok("wss://[::1]:8443/ctl"), ("[::1]".into(), 8443, true, Some("/ctl".into())));
        assert_eq!(ok("HTTP://127.0.0.1"), ("127.0.0.1".into(), 80, false, None));
        for bad in [
            "tunnel.example.com",
            "ftp://x.dev",
            "https://",
            "https://x.dev:0",
            "https://x.dev:http",
            "https://u@x.dev",
            "https://x.dev/?a",
        ] {
            assert!(parse_server(bad).unwrap_err().contains("`server` must be a URL"), "{bad}");
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
