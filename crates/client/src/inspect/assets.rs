//! The inspector's page, embedded in the binary (no CDN, nothing fetched at run time).

/// `/`: the page.
pub(super) const INDEX_HTML: &str = include_str!("page/index.html");
/// `/app.js`: the page's script.
pub(super) const APP_JS: &str = include_str!("page/app.js");
/// `/style.css`: the page's styles.
pub(super) const STYLE_CSS: &str = include_str!("page/style.css");
