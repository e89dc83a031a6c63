//! The web console's assets: `GET /` (the page) and `GET /console/{path}`, embedded in the
//! binary from `console/` (or, with `serve --console-dir`, read from that directory on each
//! request, for working on the console without a rebuild). Every answer carries a strict
//! Content-Security-Policy: the console loads nothing but these files and talks to nothing
//! but this server.

use super::reply::{self, ApiError, Body};
use super::AppState;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};

/// The policy of every console answer: own scripts, styles and fonts only, no inline code,
/// no frames, calls to this origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)),
        }
    };
}

/// The files served, each with its type (the licence and the vendor notes are not served).
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("vendor/echarts.min.js", "text/javascript; charset=utf-8"),
];

/// Total size of the embedded assets in bytes.
pub fn embedded_size() -> usize {
    ASSETS.iter().map(|a| a.bytes.len()).sum()
}

/// `GET /` (`path` is `index.html`) and `GET /console/{path}`.
pub(super) fn asset(state: &AppState, path: &str) -> Result<Response<Body>, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no console file `{path}`"));
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return Err(not_found());
    };
    let bytes = match &state.console_dir {
        // Only the listed files, so the path cannot leave the directory.
        Some(dir) => bytes::Bytes::from(std::fs::read(dir.join(asset.path)).map_err(|e| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("console file `{path}` could not be read from --console-dir: {e}"),
            )
        })?),
        None => bytes::Bytes::from_static(asset.bytes),
    };
    let mut r = reply::full(StatusCode::OK, asset.content_type, bytes);
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_file_of_the_console_directory_is_embedded() {
        // Everything under `console/` but the vendor notes and licences is served.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                    continue;
                }
                let rel = p.strip_prefix(&root).unwrap().to_string_lossy().to_string();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if !(name.starts_with("LICENSE") || name == "README.md") {
                    on_disk.push(rel);
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }
}
