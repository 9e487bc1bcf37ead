//! The HTTP headers of the web app: one table, read by every configuration
//! writer in [`super::configs`] and by the tests that check them.

/// A response header: name and exact value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub name: &'static str,
    pub value: &'static str,
}

/// Headers on every response, errors included: the same as `SECURITY_HEADERS`
/// in `scripts/serve.mjs` (ARCHITECTURE.md, "Strict CSP"). `'wasm-unsafe-eval'`
/// lets the page compile WebAssembly and nothing else; COOP + COEP give the page
/// cross-origin isolation (SharedArrayBuffer, precise timers); CORP keeps every
/// file readable by this origin only.
pub const SECURITY_HEADERS: &[Header] = &[
    Header {
        name: "Content-Security-Policy",
        value: "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                img-src 'self' blob: data:; connect-src 'self'; worker-src 'self'; object-src 'none'; \
                base-uri 'none'; frame-ancestors 'self'",
    },
    Header { name: "Cross-Origin-Opener-Policy", value: "same-origin" },
    Header { name: "Cross-Origin-Embedder-Policy", value: "require-corp" },
    Header { name: "Cross-Origin-Resource-Policy", value: "same-origin" },
    Header { name: "X-Content-Type-Options", value: "nosniff" },
    Header { name: "Referrer-Policy", value: "no-referrer" },
];

/// A file extension (lower case, no dot) and its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaType {
    pub extension: &'static str,
    pub mime: &'static str,
    /// Text served as UTF-8: the Content-Type gets `; charset=utf-8`.
    pub utf8: bool,
}

impl MediaType {
    /// The full Content-Type value, e.g. `text/javascript; charset=utf-8`.
    pub fn content_type(&self) -> String {
        if self.utf8 {
            format!("{}; charset=utf-8", self.mime)
        } else {
            self.mime.to_string()
        }
    }
}

const fn media(extension: &'static str, mime: &'static str, utf8: bool) -> MediaType {
    MediaType { extension, mime, utf8 }
}

/// The media types of every file a site holds (the dev server's `MIME` table,
/// plus the web app manifest and the bundle formats). Anything else is
/// `application/octet-stream` ([`DEFAULT_MEDIA_TYPE`]); with `nosniff` a browser
/// then refuses to run it.
pub const MEDIA_TYPES: &[MediaType] = &[
    media("html", "text/html", true),
    media("js", "text/javascript", true),
    media("mjs", "text/javascript", true),
    media("css", "text/css", true),
    media("json", "application/json", false),
    media("webmanifest", "application/manifest+json", false),
    media("wasm", "application/wasm", false),
    media("svg", "image/svg+xml", false),
    media("png", "image/png", false),
    media("ico", "image/x-icon", false),
    media("txt", "text/plain", true),
    media("md", "text/markdown", true),
    media("gguf", "application/octet-stream", false),
    media("kplkb", "application/octet-stream", false),
];

pub const DEFAULT_MEDIA_TYPE: &str = "application/octet-stream";

/// The media type of a file name, by its extension (case-insensitive).
pub fn media_type(file_name: &str) -> Option<&'static MediaType> {
    let ext = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
    MEDIA_TYPES.iter().find(|m| m.extension == ext)
}

/// Cache-Control of a content-hashed file: its URL changes with its bytes, so a
/// browser may keep it for a year without asking again (RFC 8246 `immutable`).
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache-Control of everything else (the page, its scripts, the wasm, the
/// manifests): kept, but revalidated with the server (ETag / Last-Modified) on
/// each use, so a new deployment is picked up at once.
pub const CACHE_REVALIDATE: &str = "no-cache";

/// Hex digits of the SHA-256 that `kpl site` puts in a model file's name
/// (`image_encoder.<16 hex>.gguf`).
pub const HASH_DIGITS: usize = 16;
/// The extensions whose files `kpl site` names by content.
pub const HASHED_EXTENSIONS: &[&str] = &["gguf", "kplkb"];

/// A regular expression (PCRE / RE2 syntax alike) matching the URL path of a
/// content-hashed file: `.<16 hex>.gguf` or `.<16 hex>.kplkb` at the end. The
/// digit class is repeated rather than counted with `{16}`: braces start a
/// placeholder in a Caddyfile and must be quoted in nginx.
pub fn hashed_path_regex() -> String {
    format!(r"\.{}\.({})$", "[0-9a-f]".repeat(HASH_DIGITS), HASHED_EXTENSIONS.join("|"))
}

/// Whether a file name (or URL path) is content-hashed, by the rule of
/// [`hashed_path_regex`].
pub fn is_content_hashed(path: &str) -> bool {
    let Some((stem, ext)) = path.rsplit_once('.') else { return false };
    if !HASHED_EXTENSIONS.contains(&ext) {
        return false;
    }
    let Some((_, hash)) = stem.rsplit_once('.') else { return false };
    hash.len() == HASH_DIGITS && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The Cache-Control value of a file of the site.
pub fn cache_control(path: &str) -> &'static str {
    if is_content_hashed(path) {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    }
}

/// The headers a server must send with a file of the site (`path` relative to
/// the site's root, `/`-separated): the security headers, its Content-Type and
/// its Cache-Control, in that order.
pub fn headers_for(path: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        SECURITY_HEADERS.iter().map(|h| (h.name.to_string(), h.value.to_string())).collect();
    let content_type = media_type(path).map_or_else(|| DEFAULT_MEDIA_TYPE.to_string(), MediaType::content_type);
    out.push(("Content-Type".into(), content_type));
    out.push(("Cache-Control".into(), cache_control(path).into()));
    out
}
