//! The server flags for running it as a public service: behind a proxy
//! (`--trusted-proxy`, `--proxy-protocol`, `--public-url`, `--public-scheme`), or on
//! its own with certificates from ACME (`--acme*`, `--http-port`).

use localtunnels_server::acme::{LETS_ENCRYPT, LETS_ENCRYPT_STAGING};
use localtunnels_server::{AcmeConfig, ServerConfig, ServerHandle, TrustedProxies};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::args::{PublicSchemeArg, ServerArgs};

/// Applies the public-service flags of `a` to `config`.
pub fn apply(a: &ServerArgs, config: &mut ServerConfig) -> anyhow::Result<()> {
    if let Some(list) = &a.trusted_proxy {
        config.trusted_proxies = TrustedProxies::parse(list).map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}"))?;
    }
    config.proxy_protocol = a.proxy_protocol.unwrap_or(false);
    if config.proxy_protocol && config.trusted_proxies.is_empty() {
        anyhow::bail!("--proxy-protocol needs --trusted-proxy: PROXY headers are only read from trusted proxies");
    }
    match (&a.public_url, a.public_scheme) {
        (Some(_), Some(_)) => anyhow::bail!("--public-url already sets the scheme: drop --public-scheme"),
        (Some(_), None) if a.public_port.is_some() => {
            anyhow::bail!("--public-url already sets the port: drop --public-port")
        }
        (Some(url), None) => {
            config.set_public_url(url, a.domain.is_some()).map_err(|e| anyhow::anyhow!("--public-url: {e}"))?
        }
        (None, Some(scheme)) => config.secure = scheme == PublicSchemeArg::Https,
        (None, None) => {}
    }
    config.http_port = a.http_port;
    config.acme = acme(a)?;
    if config.http_port.is_some() && config.tls.is_none() && config.acme.is_none() {
        anyhow::bail!("--http-port redirects to HTTPS: it needs --acme or --tls-cert/--tls-key");
    }
    Ok(())
}

/// The ACME settings, with `--acme`.
fn acme(a: &ServerArgs) -> anyhow::Result<Option<AcmeConfig>> {
    let given = a.acme_email.is_some()
        || a.acme_directory.is_some()
        || a.acme_staging.is_some()
        || a.acme_cache.is_some()
        || a.acme_ca_root.is_some();
    if !a.acme.unwrap_or(false) {
        if given {
            anyhow::bail!("the --acme-* flags need --acme");
        }
        return Ok(None);
    }
    let directory = match (&a.acme_directory, a.acme_staging.unwrap_or(false)) {
        (Some(_), true) => anyhow::bail!("--acme-staging and --acme-directory exclude each other"),
        (Some(url), false) => url.clone(),
        (None, true) => LETS_ENCRYPT_STAGING.to_string(),
        (None, false) => LETS_ENCRYPT.to_string(),
    };
    if !directory.starts_with("https://") {
        anyhow::bail!("--acme-directory must be an https:// URL");
    }
    if a.domain.is_none() && a.public_url.is_none() {
        anyhow::bail!("--acme needs --domain: the certificates are for it and the names under it");
    }
    Ok(Some(AcmeConfig {
        directory,
        contact: a.acme_email.iter().cloned().collect(),
        cache: a.acme_cache.clone(),
        ca_root: a.acme_ca_root.clone(),
        http01: a.http_port.is_some(),
        ..AcmeConfig::default()
    }))
}

/// SIGHUP, installed now (before the URL line a script may act on is printed).
pub fn hangups() -> Option<Signal> {
    signal(SignalKind::hangup()).ok()
}

/// Reloads the TLS certificate files on every SIGHUP; never returns.
pub async fn reload_on(hangups: Option<Signal>, server: &ServerHandle) {
    let Some(mut hangups) = hangups else { return std::future::pending().await };
    while hangups.recv().await.is_some() {
        match server.reload_tls() {
            Ok(true) => eprintln!("SIGHUP: TLS certificate reloaded"),
            Ok(false) => eprintln!("SIGHUP: no --tls-cert/--tls-key to reload"),
            Err(e) => eprintln!("SIGHUP: cannot reload the TLS certificate, keeping the one in use: {e}"),
        }
    }
    std::future::pending().await
}
