//! The static site of `kpl site`: the one table of HTTP headers the app needs
//! ([`headers`]) and the server configurations written from it ([`configs`]).
//!
//! The table mirrors `scripts/serve.mjs` (the dev server): the same strict
//! Content-Security-Policy and cross-origin isolation headers on every response,
//! the same media types, and the caching rule of ARCHITECTURE.md ("Deployment"):
//! content-hashed model files are immutable, everything else is revalidated.

pub mod configs;
pub mod headers;
