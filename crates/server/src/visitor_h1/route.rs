//! The route a visitor connection's last request took, kept for the next one.
//!
//! A kept-alive connection nearly always sends every request to the same host. Routing
//! one (parsing its `Host`, finding the tunnel's name under the domain, the registry's
//! read lock and hash, the `X-Forwarded-Host` value) costs ~0.7k instructions per request
//! (docs/BENCHMARKS.md, twelfth round); a request whose one `Host` field has the same
//! bytes as the last one's, with an origin-form target, routes the same way as long as
//! the registry has not changed since: its [`generation`](crate::registry::Registry::generation)
//! says so. Only names under the domain are kept (a custom hostname's mapping can change
//! without the registry), and only for a registry that counts its changes (the in-process
//! one). The tunnel is kept as a `Weak`: an idle connection does not keep an ended
//! tunnel's memory.

use std::sync::{Arc, Weak};

use http::header::HOST;
use http::HeaderValue;
use localtunnels_driver::h1::ParsedRequest;

use crate::fields::Fields;
use crate::tunnel::Tunnel;

/// What the last request routed to, and under which registry generation.
struct Kept {
    /// The request's `Host` field, as it came.
    host: HeaderValue,
    tunnel: Weak<Tunnel>,
    /// Its `X-Forwarded-Host`.
    forwarded: Option<HeaderValue>,
    generation: u64,
}

/// A connection's kept route (none at first).
#[derive(Default)]
pub(super) struct RouteCache(Option<Kept>);

impl RouteCache {
    /// The tunnel and `X-Forwarded-Host` of the kept route, if `head` routes as the
    /// request that made it did: one `Host` field with the same bytes, no authority
    /// in the target, and no change in the registry since (it is at `generation` now).
    pub(super) fn get(
        &self,
        generation: Option<u64>,
        head: &ParsedRequest,
    ) -> Option<(Arc<Tunnel>, Option<HeaderValue>)> {
        let kept = self.0.as_ref()?;
        if head.authority().is_some() {
            return None;
        }
        let mut hosts = head.headers.values_of(&HOST);
        if hosts.next()?.as_bytes() != kept.host.as_bytes() || hosts.next().is_some() {
            return None;
        }
        if generation != Some(kept.generation) {
            return None;
        }
        Some((kept.tunnel.upgrade()?, kept.forwarded.clone()))
    }

    /// Keeps the route `head` took to `tunnel`, found in the registry at `generation`
    /// (read before the lookup, so that a change during it is seen as one).
    pub(super) fn keep(
        &mut self,
        generation: Option<u64>,
        head: &ParsedRequest,
        tunnel: &Arc<Tunnel>,
        forwarded: &Option<HeaderValue>,
    ) {
        let Some(generation) = generation else { return };
        if head.authority().is_some() {
            return;
        }
        let Some(host) = head.headers.first(&HOST) else { return };
        let kept =
            Kept { host: host.clone(), tunnel: Arc::downgrade(tunnel), forwarded: forwarded.clone(), generation };
        self.0 = Some(kept);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::BytesMut;
    use localtunnels_driver::h1::{parse_request, HeadLimits};

    use super::*;
    use crate::registry::tests::tunnel;
    use crate::registry::{LocalRegistry, Proof, Quota, Registry};

    fn head(text: &str) -> ParsedRequest {
        let limits = HeadLimits { max_bytes: 8192, max_headers: 100 };
        parse_request(&mut BytesMut::from(text), &limits).unwrap().unwrap()
    }

    const QUOTA: Quota = Quota { per_ip: 10, per_token: 10, total: 100 };

    #[tokio::test]
    async fn a_route_is_kept_for_the_same_host_until_the_registry_changes() {
        let reg = LocalRegistry::new(Duration::from_secs(60));
        let a = tunnel("a", [10, 0, 0, 1], None);
        reg.claim("a", &Proof::default(), a.clone(), &QUOTA).unwrap();
        let mut route = RouteCache::default();
        let first = head("GET / HTTP/1.1\r\nHost: a.localhost:3000\r\n\r\n");
        let forwarded = Some(HeaderValue::from_static("a.localhost:3000"));
        assert!(route.get(reg.generation(), &first).is_none(), "nothing kept yet");
        route.keep(reg.generation(), &first, &a, &forwarded);

        let again = head("POST /x HTTP/1.1\r\nHost: a.localhost:3000\r\nContent-Length: 0\r\n\r\n");
        let (kept, host) = route.get(reg.generation(), &again).expect("the same host, nothing changed");
        assert!(Arc::ptr_eq(&kept, &a));
        assert_eq!(host, forwarded);

        // Anything that may route otherwise is routed anew.
        for other in [
            "GET / HTTP/1.1\r\nHost: A.localhost:3000\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.localhost:3001\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a.localhost:3000\r\nHost: a.localhost:3000\r\n\r\n",
            "GET http://b.localhost:3000/ HTTP/1.1\r\nHost: a.localhost:3000\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
        ] {
            assert!(route.get(reg.generation(), &head(other)).is_none(), "{other:?}");
        }

        // Any change to the registry drops the route, even one to another name.
        let b = tunnel("b", [10, 0, 0, 2], None);
        reg.claim("b", &Proof::default(), b, &QUOTA).unwrap();
        assert!(route.get(reg.generation(), &again).is_none(), "the registry changed");
        route.keep(reg.generation(), &again, &a, &forwarded);
        assert!(route.get(reg.generation(), &again).is_some());

        // A registry that does not count its changes keeps nothing.
        assert!(route.get(None, &again).is_none());
        let mut uncounted = RouteCache::default();
        uncounted.keep(None, &again, &a, &forwarded);
        assert!(uncounted.get(Some(0), &again).is_none());

        // The route does not keep a tunnel alive: once nothing else holds it, it is gone.
        let gone = tunnel("gone", [10, 0, 0, 3], None);
        route.keep(reg.generation(), &again, &gone, &forwarded);
        drop(gone);
        assert!(route.get(reg.generation(), &again).is_none(), "the tunnel is gone");
    }
}
