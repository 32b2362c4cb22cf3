//! The handshake: the client's hello, and the server's welcome or refusal.
//!
//! ```text
//! HELLO   body = "LTUN" version:u16 field*
//! WELCOME body = version:u16 field*
//! field        = tag:u8 len:u16 value
//! ```
//! The magic and version come first and never change, so a server can refuse any
//! client version with a clear `REFUSE { VersionUnsupported }`. Fields are
//! tag-length-value: unknown tags are skipped, so later minor additions stay compatible.

use bytes::{BufMut, Bytes, BytesMut};

use crate::bytes_reader::{Reader, WriteExt};
use crate::config::Limits;
use crate::error::DecodeError;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The WebSocket subprotocol of the control connection.
pub const SUBPROTOCOL: &str = "localtunnels.v1";
/// The path of the control endpoint on the server's apex host.
pub const CONTROL_PATH: &str = "/api/tunnel";
/// First bytes of every hello body.
pub const HELLO_MAGIC: &[u8; 4] = b"LTUN";

/// Optional protocol features, announced as a bit set in the hello and the welcome
/// (`features` field). Each bit says "I accept this from you"; a side uses a feature
/// only towards a peer that announced it. Unknown bits are ignored.
pub mod features {
    /// The sender accepts `BATCH` frames (several frames in one message).
    pub const BATCH: u32 = 0x1;
    /// The sender grants consumed bytes back at once (no batching) while the session
    /// window it announced is more than half unavailable, so the other side may keep
    /// each of its streams to a fair share of the session window without waiting for
    /// a grant that a batching receiver would never send (`docs/PROTOCOL.md`, §7).
    pub const EAGER_WINDOW: u32 = 0x2;
    /// (Welcome only.) The server lets further control connections join this tunnel
    /// ([`Hello::join`](super::Hello::join)): a client opens its extra connections only
    /// to a server that announced this, since an older server would take a joining
    /// hello for a reconnect and close the first connection.
    pub const JOIN: u32 = 0x4;
    /// The sender reads header fields written as indexes into the static table
    /// ([`FieldCoding::Indexed`](crate::FieldCoding::Indexed), `docs/PROTOCOL.md` §2,
    /// "Header blocks"): towards it, a standard name costs one byte and decodes to its
    /// constant without being parsed.
    pub const INDEXED_HEADERS: u32 = 0x8;

    /// What every [`Session`](crate::Session) accepts, and so announces in its hello
    /// or welcome (the server adds its own, such as [`JOIN`]); [`INDEXED_HEADERS`] only
    /// with the static table (the `indexed-headers` feature, off in the wasm client).
    pub(crate) const SESSION: u32 =
        BATCH | EAGER_WINDOW | if cfg!(feature = "indexed-headers") { INDEXED_HEADERS } else { 0 };
}

/// The client's first frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    /// Protocol version the client speaks.
    pub version: u16,
    /// Requested name (subdomain); empty for "any".
    pub name: String,
    /// Auth token; empty for none. Never logged.
    pub token: String,
    /// Reconnect token from an earlier welcome, to take a held name back.
    pub reconnect_token: String,
    /// Kind of client, e.g. `native` or `wasm`.
    pub client_kind: String,
    /// Client version, e.g. `0.1.0`.
    pub client_version: String,
    /// The client's receive limits.
    pub limits: Option<Limits>,
    /// HTTP basic auth (`user:pass`) the server should require of visitors.
    pub basic_auth: String,
    /// Visitor IP allow list (addresses or CIDR ranges); empty allows everyone.
    pub allow_ips: Vec<String>,
    /// Optional features the client accepts ([`features`]); `Session::client` fills it.
    pub features: u32,
    /// A full custom hostname (`app.example.com`) instead of a name under the server's
    /// domain; empty for none. Granted only where the client's token allows it.
    pub hostname: String,
    /// This connection joins the client's live tunnel (named by `name` or `hostname`,
    /// proven by `reconnect_token`) as one more connection that carries its streams,
    /// instead of claiming the name. Sent only to a server whose welcome announced
    /// [`features::JOIN`].
    pub join: bool,
}

/// The server's answer when the tunnel is up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Welcome {
    /// Protocol version the session will use.
    pub version: u16,
    /// The name granted.
    pub name: String,
    /// The public URL, e.g. `http://demo.localhost:3000`.
    pub url: String,
    /// Secret that lets this client take its name back after a drop.
    pub reconnect_token: String,
    /// How often each side pings, in milliseconds.
    pub heartbeat_ms: u32,
    /// Silence after which a peer is declared dead, in milliseconds.
    pub idle_timeout_ms: u32,
    /// The server's receive limits.
    pub limits: Option<Limits>,
    /// Server software version.
    pub server_version: String,
    /// Optional features the server accepts ([`features`]); `Session::accept` fills it.
    pub features: u32,
}

/// Why the server refused a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The client's protocol version is not supported.
    VersionUnsupported,
    /// The requested name is in use (or held for its previous client).
    NameTaken,
    /// The requested name is not a valid DNS label, or is reserved.
    NameInvalid,
    /// Missing or wrong token, or the token may not use that name.
    Unauthorized,
    /// The server has no room for another tunnel.
    ServerFull,
    /// The hello could not be understood.
    Malformed,
    /// A per-token or per-address tunnel limit is reached.
    LimitReached,
    /// The requested custom hostname is not granted to this client's token.
    HostnameNotAllowed,
    /// A reason this version does not know.
    Other(u16),
}

impl RefuseReason {
    /// The code on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            RefuseReason::VersionUnsupported => 1,
            RefuseReason::NameTaken => 2,
            RefuseReason::NameInvalid => 3,
            RefuseReason::Unauthorized => 4,
            RefuseReason::ServerFull => 5,
            RefuseReason::Malformed => 6,
            RefuseReason::LimitReached => 7,
            RefuseReason::HostnameNotAllowed => 8,
            RefuseReason::Other(v) => v,
        }
    }

    /// The reason for a wire code.
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => RefuseReason::VersionUnsupported,
            2 => RefuseReason::NameTaken,
            3 => RefuseReason::NameInvalid,
            4 => RefuseReason::Unauthorized,
            5 => RefuseReason::ServerFull,
            6 => RefuseReason::Malformed,
            7 => RefuseReason::LimitReached,
            8 => RefuseReason::HostnameNotAllowed,
            v => RefuseReason::Other(v),
        }
    }

    /// A stable lowercase identifier, e.g. `name_taken`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefuseReason::VersionUnsupported => "version_unsupported",
            RefuseReason::NameTaken => "name_taken",
            RefuseReason::NameInvalid => "name_invalid",
            RefuseReason::Unauthorized => "unauthorized",
            RefuseReason::ServerFull => "server_full",
            RefuseReason::Malformed => "malformed",
            RefuseReason::LimitReached => "limit_reached",
            RefuseReason::HostnameNotAllowed => "hostname_not_allowed",
            RefuseReason::Other(_) => "other",
        }
    }
}

mod tag {
    pub const NAME: u8 = 1;
    pub const TOKEN: u8 = 2;
    pub const RECONNECT_TOKEN: u8 = 3;
    pub const CLIENT_KIND: u8 = 4;
    pub const CLIENT_VERSION: u8 = 5;
    pub const LIMITS: u8 = 6;
    pub const BASIC_AUTH: u8 = 7;
    pub const ALLOW_IP: u8 = 8;
    pub const FEATURES: u8 = 9;
    pub const HOSTNAME: u8 = 10;
    pub const JOIN: u8 = 11;

    pub const W_NAME: u8 = 1;
    pub const W_URL: u8 = 2;
    pub const W_RECONNECT_TOKEN: u8 = 3;
    pub const W_HEARTBEAT: u8 = 4;
    pub const W_LIMITS: u8 = 5;
    pub const W_IDLE_TIMEOUT: u8 = 6;
    pub const W_SERVER_VERSION: u8 = 7;
    pub const W_FEATURES: u8 = 8;
}

fn put_field(b: &mut BytesMut, tag: u8, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    b.put_u8(tag);
    b.put_bytes16(value);
}

/// The `features` field, left out when no bit is set (as an old peer would send).
fn put_features(b: &mut BytesMut, tag: u8, features: u32) {
    if features != 0 {
        put_field(b, tag, &features.to_be_bytes());
    }
}

fn limits_bytes(l: &Limits) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, v) in
        [l.max_frame, l.max_streams, l.stream_window, l.session_window, l.max_header_bytes].into_iter().enumerate()
    {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

fn parse_limits(v: Bytes) -> Result<Limits, DecodeError> {
    let mut r = Reader::new(v);
    let l = Limits {
        max_frame: r.u32("limits")?,
        max_streams: r.u32("limits")?,
        stream_window: r.u32("limits")?,
        session_window: r.u32("limits")?,
        max_header_bytes: r.u32("limits")?,
    };
    // Later versions may append limits; ignore what we do not know.
    if l.max_frame < 256 || l.max_header_bytes < 64 || l.stream_window < 1024 || l.session_window < 1024 {
        return Err(DecodeError::Invalid("limits"));
    }
    Ok(l)
}

fn utf8(v: Bytes, what: &'static str) -> Result<String, DecodeError> {
    String::from_utf8(v.to_vec()).map_err(|_| DecodeError::InvalidUtf8(what))
}

fn parse_u32(v: Bytes, what: &'static str) -> Result<u32, DecodeError> {
    let mut r = Reader::new(v);
    let n = r.u32(what)?;
    r.finish(what)?;
    Ok(n)
}

/// Iterates the TLV fields that follow the fixed part of a hello or welcome.
fn for_each_field(r: &mut Reader, mut f: impl FnMut(u8, Bytes) -> Result<(), DecodeError>) -> Result<(), DecodeError> {
    while r.remaining() > 0 {
        let tag = r.u8("field tag")?;
        let value = r.bytes16("field value")?;
        f(tag, value)?;
    }
    Ok(())
}

impl Hello {
    pub(crate) fn encode_body(&self, b: &mut BytesMut) {
        b.put_slice(HELLO_MAGIC);
        b.put_u16(self.version);
        put_field(b, tag::NAME, self.name.as_bytes());
        put_field(b, tag::TOKEN, self.token.as_bytes());
        put_field(b, tag::RECONNECT_TOKEN, self.reconnect_token.as_bytes());
        put_field(b, tag::CLIENT_KIND, self.client_kind.as_bytes());
        put_field(b, tag::CLIENT_VERSION, self.client_version.as_bytes());
        if let Some(l) = &self.limits {
            put_field(b, tag::LIMITS, &limits_bytes(l));
        }
        put_field(b, tag::BASIC_AUTH, self.basic_auth.as_bytes());
        for ip in &self.allow_ips {
            put_field(b, tag::ALLOW_IP, ip.as_bytes());
        }
        put_features(b, tag::FEATURES, self.features);
        put_field(b, tag::HOSTNAME, self.hostname.as_bytes());
        if self.join {
            put_field(b, tag::JOIN, &[1]);
        }
    }

    /// Decodes a hello body. For a version other than ours only the version is
    /// read, so the server can refuse it cleanly whatever follows.
    pub(crate) fn decode_body(r: &mut Reader) -> Result<Hello, DecodeError> {
        let mut magic = [0u8; 4];
        for m in &mut magic {
            *m = r.u8("hello magic")?;
        }
        if &magic != HELLO_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let mut h = Hello { version: r.u16("hello version")?, ..Hello::default() };
        if h.version != PROTOCOL_VERSION {
            r.rest();
            return Ok(h);
        }
        for_each_field(r, |tag, v| {
            match tag {
                tag::NAME => h.name = utf8(v, "name")?,
                tag::TOKEN => h.token = utf8(v, "token")?,
                tag::RECONNECT_TOKEN => h.reconnect_token = utf8(v, "reconnect token")?,
                tag::CLIENT_KIND => h.client_kind = utf8(v, "client kind")?,
                tag::CLIENT_VERSION => h.client_version = utf8(v, "client version")?,
                tag::LIMITS => h.limits = Some(parse_limits(v)?),
                tag::BASIC_AUTH => h.basic_auth = utf8(v, "basic auth")?,
                // An empty entry means nothing (senders omit empty fields): skip it.
                tag::ALLOW_IP if v.is_empty() => {}
                tag::ALLOW_IP => {
                    if h.allow_ips.len() >= 256 {
                        return Err(DecodeError::Invalid("allow list longer than 256 entries"));
                    }
                    h.allow_ips.push(utf8(v, "allowed ip")?)
                }
                tag::FEATURES => h.features = parse_u32(v, "features")?,
                tag::HOSTNAME => h.hostname = utf8(v, "hostname")?,
                tag::JOIN => h.join = v.as_ref() != [0],
                _ => {}
            }
            Ok(())
        })?;
        Ok(h)
    }
}

impl Welcome {
    pub(crate) fn encode_body(&self, b: &mut BytesMut) {
        b.put_u16(self.version);
        put_field(b, tag::W_NAME, self.name.as_bytes());
        put_field(b, tag::W_URL, self.url.as_bytes());
        put_field(b, tag::W_RECONNECT_TOKEN, self.reconnect_token.as_bytes());
        put_field(b, tag::W_HEARTBEAT, &self.heartbeat_ms.to_be_bytes());
        put_field(b, tag::W_IDLE_TIMEOUT, &self.idle_timeout_ms.to_be_bytes());
        if let Some(l) = &self.limits {
            put_field(b, tag::W_LIMITS, &limits_bytes(l));
        }
        put_field(b, tag::W_SERVER_VERSION, self.server_version.as_bytes());
        put_features(b, tag::W_FEATURES, self.features);
    }

    pub(crate) fn decode_body(r: &mut Reader) -> Result<Welcome, DecodeError> {
        let mut w = Welcome { version: r.u16("welcome version")?, ..Welcome::default() };
        for_each_field(r, |tag, v| {
            match tag {
                tag::W_NAME => w.name = utf8(v, "name")?,
                tag::W_URL => w.url = utf8(v, "url")?,
                tag::W_RECONNECT_TOKEN => w.reconnect_token = utf8(v, "reconnect token")?,
                tag::W_HEARTBEAT => w.heartbeat_ms = parse_u32(v, "heartbeat")?,
                tag::W_IDLE_TIMEOUT => w.idle_timeout_ms = parse_u32(v, "idle timeout")?,
                tag::W_LIMITS => w.limits = Some(parse_limits(v)?),
                tag::W_SERVER_VERSION => w.server_version = utf8(v, "server version")?,
                tag::W_FEATURES => w.features = parse_u32(v, "features")?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(w)
    }
}
