//! A request's header fields as the shared checks read them ([`crate::access`],
//! [`crate::host`], [`crate::forwarded`], [`crate::visitor_error::accepts_html`]), from
//! either of the two forms a request arrives in: hyper's `HeaderMap` (HTTP/2, upgrades,
//! the apex, cluster nodes) or the list the HTTP/1 visitor path parsed from the wire
//! ([`localtunnels_driver::h1`]). Each rule is written once, against this view; the
//! HTTP/1 path builds no `HeaderMap` for it (building one hashes every name, and was
//! the larger part of that path's routing cost, docs/BENCHMARKS.md).

use http::{HeaderMap, HeaderName, HeaderValue};
use localtunnels_core::Header;

/// Read (and the one removal the checks make) access to a request's header fields.
pub trait Fields {
    /// The values of `name`, in the order they arrived.
    fn values_of<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a HeaderValue> + 'a;

    /// The first value of `name`.
    fn first<'a>(&'a self, name: &'a HeaderName) -> Option<&'a HeaderValue> {
        self.values_of(name).next()
    }

    /// Whether a field `name` is present.
    fn has(&self, name: &HeaderName) -> bool {
        self.values_of(name).next().is_some()
    }

    /// Removes every field `name`.
    fn remove_all(&mut self, name: &HeaderName);
}

impl Fields for HeaderMap {
    fn values_of<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a HeaderValue> + 'a {
        self.get_all(name).iter()
    }

    fn has(&self, name: &HeaderName) -> bool {
        self.contains_key(name)
    }

    fn remove_all(&mut self, name: &HeaderName) {
        self.remove(name);
    }
}

impl Fields for Vec<Header> {
    fn values_of<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a HeaderValue> + 'a {
        self.iter().filter(move |(n, _)| n == name).map(|(_, v)| v)
    }

    fn remove_all(&mut self, name: &HeaderName) {
        self.retain(|(n, _)| n != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_and_a_list_read_alike() {
        let list: Vec<Header> = vec![
            (http::header::HOST, HeaderValue::from_static("a")),
            (http::header::ACCEPT, HeaderValue::from_static("x")),
            (http::header::HOST, HeaderValue::from_static("b")),
        ];
        let mut map = localtunnels_driver::http::header_map(&list);
        let mut list2 = list.clone();
        for name in [http::header::HOST, http::header::ACCEPT, http::header::AUTHORIZATION] {
            let a: Vec<_> = map.values_of(&name).collect();
            let b: Vec<_> = list.values_of(&name).collect();
            assert_eq!(a, b);
            assert_eq!(map.first(&name), list.first(&name));
            assert_eq!(map.has(&name), list.has(&name));
        }
        map.remove_all(&http::header::HOST);
        list2.remove_all(&http::header::HOST);
        assert!(!map.has(&http::header::HOST) && !list2.has(&http::header::HOST));
        assert_eq!(list2.len(), 1);
    }
}
