//! Certificates obtained and renewed by ACME (`--acme`; Let's Encrypt by default), with
//! the well-kept `instant-acme` client.
//!
//! - The apex's certificate is ordered at start; any other name's at the first TLS
//!   handshake that asks for it, and only when the server answers for that name (live
//!   or held, or a granted custom hostname: [`crate::hostnames::is_served`]). An unknown
//!   name never causes an order, which would spend the CA's rate limits.
//! - Validation by TLS-ALPN-01 on the TLS port itself ([`crate::certs`] presents the
//!   challenge certificate), or by HTTP-01 on `--http-port` ([`crate::http_port`]).
//! - Concurrent handshakes for one name wait on one shared order. A failed order backs
//!   off (doubling from `retry_min` to `retry_max`); handshakes meanwhile get no
//!   certificate for that name. Failures are logged and counted in `/metrics`.
//! - A certificate is renewed when a third of its lifetime is left (30 days of Let's
//!   Encrypt's 90), by a timer of its own; new handshakes get the new one, open
//!   connections keep theirs.
//! - With a cache directory, the account key and every certificate with its key are
//!   kept there (files 0600) and reused after a restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::sign::CertifiedKey;
use tracing::{info, warn};

use crate::certs::CertStore;

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How certificates are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The ACME directory URL. Default [`LETS_ENCRYPT`].
    pub directory: String,
    /// Contact addresses for the account (`ops@example.com`); may be empty.
    pub contact: Vec<String>,
    /// Where the account and certificates are kept; `None` keeps them in memory only.
    pub cache: Option<PathBuf>,
    /// A PEM root to trust for the ACME server's own HTTPS (a private or test CA).
    pub ca_root: Option<PathBuf>,
    /// Validate by HTTP-01 (on the server's `http_port`) instead of TLS-ALPN-01.
    pub http01: bool,
    /// First wait after a failed order; doubles up to `retry_max`. Default 1 minute.
    pub retry_min: Duration,
    /// Longest wait after failed orders. Default 1 hour.
    pub retry_max: Duration,
    /// How long one order may take, validation included. Default 90 s.
    pub order_timeout: Duration,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            directory: LETS_ENCRYPT.to_string(),
            contact: Vec::new(),
            cache: None,
            ca_root: None,
            http01: false,
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            order_timeout: Duration::from_secs(90),
        }
    }
}

type Order = Shared<BoxFuture<'static, Result<(), String>>>;

/// A name's failed orders: when the next may start, and the wait after the next failure.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    until: Instant,
    next: Duration,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct AcmeCounters {
    orders: AtomicU64,
    issued: AtomicU64,
    failures: AtomicU64,
    renewals: AtomicU64,
}

/// The certificate manager.
pub struct Acme {
    config: AcmeConfig,
    store: Arc<CertStore>,
    account: tokio::sync::Mutex<Option<Account>>,
    in_flight: Mutex<HashMap<String, Order>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    /// HTTP-01 tokens and their key authorizations, while orders wait.
    http01: Mutex<HashMap<String, String>>,
    /// Each certificate's validity, for renewal and metrics.
    validity: Mutex<HashMap<String, (SystemTime, SystemTime)>>,
    /// Renewal timers, by name (aborted on stop or when replaced).
    timers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    counters: AcmeCounters,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme").field("config", &self.config).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Acme {
    /// A manager presenting its certificates through `store`; loads the cache, if any
    /// (expired certificates in it are skipped and ordered again when asked for).
    pub fn new(config: AcmeConfig, store: Arc<CertStore>) -> std::io::Result<Arc<Acme>> {
        if let Some(dir) = &config.cache {
            crate::acme_cache::create_dir(dir)?;
        }
        let acme = Arc::new(Acme {
            config,
            store,
            account: tokio::sync::Mutex::new(None),
            in_flight: Mutex::default(),
            backoff: Mutex::default(),
            http01: Mutex::default(),
            validity: Mutex::default(),
            timers: Mutex::default(),
            counters: AcmeCounters::default(),
        });
        if let Some(dir) = &acme.config.cache {
            for (name, cert_pem, key_pem) in crate::acme_cache::load_certificates(dir) {
                match acme.install(&name, &cert_pem, &key_pem) {
                    Ok(()) => info!(%name, "ACME certificate loaded from the cache"),
                    Err(e) => warn!(%name, error = %e, "ACME certificate in the cache not used"),
                }
            }
        }
        Ok(acme)
    }

    /// How long one order may take.
    pub fn order_timeout(&self) -> Duration {
        self.config.order_timeout
    }

    /// Whether HTTP-01 validation is on.
    pub fn http01(&self) -> bool {
        self.config.http01
    }

    /// The key authorization for an HTTP-01 `token`, while its order waits.
    pub fn http01_answer(&self, token: &str) -> Option<String> {
        lock(&self.http01).get(token).cloned()
    }

    /// Makes sure `name` has a certificate: at once if it has one, else by an order
    /// (shared with every other caller for the same name), unless the name's last order
    /// failed and its backoff runs. The caller checked that the server answers for `name`.
    pub async fn ensure(self: &Arc<Self>, name: &str) -> bool {
        if self.store.get(name).is_some() {
            return true;
        }
        self.order(name, false).await.is_ok()
    }

    /// Starts or joins the order for `name`.
    fn order(self: &Arc<Self>, name: &str, renewal: bool) -> Order {
        let mut in_flight = lock(&self.in_flight);
        if let Some(order) = in_flight.get(name) {
            return order.clone();
        }
        if let Some(b) = lock(&self.backoff).get(name) {
            if b.until > Instant::now() {
                let wait = b.until - Instant::now();
                return futures_util::future::ready(Err(format!("backing off for {} s", wait.as_secs())))
                    .boxed()
                    .shared();
            }
        }
        let (acme, owned) = (Arc::downgrade(self), name.to_string());
        let order = async move {
            let Some(acme) = acme.upgrade() else { return Err("the server stopped".to_string()) };
            let result = acme.run_order(&owned, renewal).await;
            lock(&acme.in_flight).remove(&owned);
            result
        }
        .boxed()
        .shared();
        in_flight.insert(name.to_string(), order.clone());
        // Runs to its end even if every handshake waiting on it gives up.
        tokio::spawn(order.clone());
        order
    }

    /// One order for `name`, under the order timeout, with its bookkeeping.
    async fn run_order(self: &Arc<Self>, name: &str, renewal: bool) -> Result<(), String> {
        self.counters.orders.fetch_add(1, Ordering::Relaxed);
        info!(%name, renewal, "ACME order started");
        let result = match localtunnels_driver::timers::timeout(self.config.order_timeout, self.issue(name)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no certificate within {} s", self.config.order_timeout.as_secs())),
        };
        self.store.set_challenge(name, None);
        match &result {
            Ok(()) => {
                lock(&self.backoff).remove(name);
                self.counters.issued.fetch_add(1, Ordering::Relaxed);
                if renewal {
                    self.counters.renewals.fetch_add(1, Ordering::Relaxed);
                }
                info!(%name, "ACME certificate issued");
            }
            Err(e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                let mut backoff = lock(&self.backoff);
                let wait = backoff.get(name).map_or(self.config.retry_min, |b| b.next);
                let next = wait.saturating_mul(2).min(self.config.retry_max);
                backoff.insert(name.to_string(), Backoff { until: Instant::now() + wait, next });
                warn!(%name, error = %e, retry_in_secs = wait.as_secs(), "ACME order failed");
                if renewal {
                    // The certificate in use stays; try again after the backoff.
                    self.schedule_renewal(name, SystemTime::now() + wait);
                }
            }
        }
        result
    }

    /// The account: from the cache, or created (and cached).
    async fn account(&self) -> Result<Account, String> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let builder = match &self.config.ca_root {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        }
        .map_err(|e| format!("ACME client: {e}"))?;
        let cache = self.config.cache.as_deref();
        let cached = cache.and_then(|dir| crate::acme_cache::load_account(dir, &self.config.directory));
        let account = match cached {
            Some(credentials) => {
                builder.from_credentials(credentials).await.map_err(|e| format!("ACME account: {e}"))?
            }
            None => {
                let contact: Vec<String> = self.config.contact.iter().map(|c| format!("mailto:{c}")).collect();
                let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
                let (account, credentials): (Account, AccountCredentials) = builder
                    .create(&new, self.config.directory.clone(), None)
                    .await
                    .map_err(|e| format!("ACME account: {e}"))?;
                if let Some(dir) = cache {
                    crate::acme_cache::save_account(dir, &self.config.directory, &credentials)
                        .map_err(|e| format!("ACME cache: {e}"))?;
                }
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Orders, validates and installs a certificate for `name`.
    async fn issue(self: &Arc<Self>, name: &str) -> Result<(), String> {
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(name.to_string())];
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await.map_err(|e| format!("new order: {e}"))?;
        let mut tokens = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let kind = if self.config.http01 { ChallengeType::Http01 } else { ChallengeType::TlsAlpn01 };
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| format!("the CA offers no {kind:?}"))?;
            let key_authorization = challenge.key_authorization();
            if self.config.http01 {
                lock(&self.http01).insert(challenge.token.clone(), key_authorization.as_str().to_string());
                tokens.push(challenge.token.clone());
            } else {
                let cert = challenge_certificate(name, key_authorization.digest().as_ref())?;
                self.store.set_challenge(name, Some(Arc::new(cert)));
            }
            challenge.set_ready().await.map_err(|e| format!("challenge: {e}"))?;
        }
        let retry = RetryPolicy::new().timeout(self.config.order_timeout);
        let status = order.poll_ready(&retry).await;
        for token in tokens {
            lock(&self.http01).remove(&token);
        }
        match status.map_err(|e| format!("validation: {e}"))? {
            OrderStatus::Ready => {}
            other => return Err(format!("the order is {other:?} after validation")),
        }
        let key_pem = order.finalize().await.map_err(|e| format!("finalize: {e}"))?;
        let cert_pem = order.poll_certificate(&retry).await.map_err(|e| format!("certificate: {e}"))?;
        self.install(name, cert_pem.as_bytes(), key_pem.as_bytes())?;
        if let Some(dir) = &self.config.cache {
            crate::acme_cache::save_certificate(dir, name, cert_pem.as_bytes(), key_pem.as_bytes())
                .map_err(|e| format!("ACME cache: {e}"))?;
        }
        Ok(())
    }

    /// Presents a certificate for `name` and schedules its renewal.
    fn install(self: &Arc<Self>, name: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), String> {
        let key = crate::certs::certified_key(cert_pem, key_pem, name).map_err(|e| e.to_string())?;
        let (not_before, not_after) = validity(&key)?;
        if not_after <= SystemTime::now() {
            return Err("the certificate has expired".to_string());
        }
        self.store.insert(name, Arc::new(key));
        lock(&self.validity).insert(name.to_string(), (not_before, not_after));
        let lifetime = not_after.duration_since(not_before).unwrap_or_default();
        self.schedule_renewal(name, not_after - lifetime / 3);
        Ok(())
    }

    /// Renews `name`'s certificate at `at`.
    fn schedule_renewal(self: &Arc<Self>, name: &str, at: SystemTime) {
        let wait = at.duration_since(SystemTime::now()).unwrap_or_default();
        let (acme, owned): (Weak<Acme>, String) = (Arc::downgrade(self), name.to_string());
        let timer = tokio::spawn(async move {
            localtunnels_driver::timers::sleep(wait).await;
            if let Some(acme) = acme.upgrade() {
                let order = acme.order(&owned, true);
                drop(acme);
                let _ = order.await;
            }
        });
        if let Some(old) = lock(&self.timers).insert(name.to_string(), timer) {
            old.abort();
        }
    }

    /// Stops the renewal timers (the server is stopping).
    pub fn stop(&self) {
        for (_, timer) in lock(&self.timers).drain() {
            timer.abort();
        }
    }

    /// Registers the ACME metrics for `/metrics`. No certificate's name is a label
    /// (`/metrics` may be public; names are not): the expiry shown is the earliest.
    pub fn register_metrics(&self, reg: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::{counter::ConstCounter, gauge::ConstGauge};
        let c = &self.counters;
        let validity = lock(&self.validity);
        let load = |a: &AtomicU64| ConstCounter::new(a.load(Ordering::Relaxed));
        let held = i64::try_from(validity.len()).unwrap_or(i64::MAX);
        reg.register("localtunnels_acme_certificates", "Certificates held from ACME", ConstGauge::new(held));
        reg.register("localtunnels_acme_orders", "ACME orders started", load(&c.orders));
        reg.register("localtunnels_acme_issued", "ACME certificates issued", load(&c.issued));
        reg.register("localtunnels_acme_renewals", "ACME certificates renewed", load(&c.renewals));
        reg.register("localtunnels_acme_failures", "ACME orders failed", load(&c.failures));
        let earliest = validity.values().map(|(_, not_after)| *not_after).min();
        if let Some(secs) = earliest.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
            let secs = i64::try_from(secs.as_secs()).unwrap_or(i64::MAX);
            let help = "When the first ACME certificate to expire expires (Unix time)";
            reg.register("localtunnels_acme_certificate_expiry_seconds", help, ConstGauge::new(secs));
        }
    }
}

/// The validity period of `key`'s leaf certificate.
fn validity(key: &CertifiedKey) -> Result<(SystemTime, SystemTime), String> {
    let leaf = key.cert.first().ok_or("empty certificate chain")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| format!("certificate: {e}"))?;
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t).unwrap_or(0));
    Ok((at(cert.validity().not_before.timestamp()), at(cert.validity().not_after.timestamp())))
}

/// The self-signed TLS-ALPN-01 certificate for `name` (RFC 8737): the name, and the
/// SHA-256 of the key authorization in the critical acmeIdentifier extension.
fn challenge_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki,
    // which refuses the critical acmeIdentifier extension.
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let signer = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der.into())
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}
