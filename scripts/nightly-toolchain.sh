#!/usr/bin/env bash
# Prints the rustup toolchain the threaded wasm build uses: the nightly it was tested
# with (ARCHITECTURE.md, "wasm threads"). A later nightly may change -Z build-std or
# the atomics ABI under wasm-bindgen-rayon, so a machine gets this date, not whatever
# nightly is current: the plain `nightly` toolchain when it is that date, else the
# dated toolchain (`scripts/setup.sh` installs it).
set -euo pipefail
TESTED_DATE=2026-05-19
if rustc +nightly --version 2>/dev/null | grep -q "$TESTED_DATE"; then
    echo nightly
else
    echo "nightly-$TESTED_DATE"
fi
