#!/usr/bin/env bash
# Installs what building and testing KPL needs, and nothing that is already there.
# Idempotent: every step checks first and is skipped when already satisfied.
#
#   - Debian packages (only when missing): chromium, chromium-driver,
#     mesa-vulkan-drivers, libvulkan1 (software Vulkan for native wgpu), nginx,
#     caddy, apache2 (the site tests), plus make,
#     a C compiler and Node.js when those are absent;
#   - the wasm32-unknown-unknown Rust target and clippy (make lint);
#   - Rust nightly with rust-src and the wasm32 target, for the threaded wasm build
#     (make wasm-threads: std rebuilt with atomics, -Z build-std);
#   - wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock;
#   - the npm packages in package-lock.json (playwright-core; it downloads no browser);
#   - pydicom 3.0.2's test files (tests/dicom_suite.rs): its wheel fetched from PyPI
#     with pip, checked against its sha256, `test_files/` unpacked into build/.
#
# Used by `make setup` and `.ci/run`. Set KPL_SKIP_APT=1 to skip the apt step.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[setup] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "[setup] need root (or sudo) to run: $*" >&2
        return 1
    fi
}

# ---------------------------------------------------------------- Debian packages
apt_missing=()
if [ ! -x /usr/bin/chromium ]; then
    apt_missing+=(chromium chromium-driver)
fi
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in mesa-vulkan-drivers libvulkan1; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            apt_missing+=("$pkg")
        fi
    done
fi
# nginx, caddy, apache2: the site tests serve `kpl site` with the configurations it
# emits (make test-site). Debian starts their services (port 80) on install unless a
# policy forbids it; the tests run their own instances on free ports.
[ -x /usr/sbin/nginx ] || apt_missing+=(nginx)
[ -x /usr/bin/caddy ] || apt_missing+=(caddy)
[ -x /usr/sbin/apache2 ] || apt_missing+=(apache2)
command -v make >/dev/null 2>&1 || apt_missing+=(make)
command -v cc >/dev/null 2>&1 || apt_missing+=(build-essential pkg-config)
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs npm)
command -v npm >/dev/null 2>&1 || apt_missing+=(npm)

if [ "${#apt_missing[@]}" -gt 0 ]; then
    if [ "${KPL_SKIP_APT:-0}" = 1 ]; then
        say "KPL_SKIP_APT=1: not installing ${apt_missing[*]}"
    elif command -v apt-get >/dev/null 2>&1; then
        say "apt-get install ${apt_missing[*]}"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "${apt_missing[@]}"
    else
        echo "[setup] missing ${apt_missing[*]} and this is not a Debian system: install them by hand" >&2
        exit 1
    fi
else
    say "system packages: present (chromium, mesa-vulkan-drivers, libvulkan1, nginx, caddy, apache2, make, cc, node)"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    say "warning: Node $(node --version) found; the scripts and browser tests are written for Node 20 or later"
fi

# ---------------------------------------------------------------- Rust
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
    echo "[setup] cargo and rustup are required (https://rustup.rs); Debian's rustc is too old" >&2
    exit 1
fi

if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    say "rust target wasm32-unknown-unknown: present"
else
    say "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
fi

if cargo clippy --version >/dev/null 2>&1; then
    say "clippy: present"
else
    say "rustup component add clippy"
    rustup component add clippy
fi

# The threaded wasm build (pkg/threads/) rebuilds std with atomics: nightly's
# -Z build-std, which needs the standard library's source (rust-src).
# scripts/nightly-toolchain.sh names the nightly it was tested with.
nightly=$(bash scripts/nightly-toolchain.sh)
if rustc +"$nightly" --version >/dev/null 2>&1; then
    say "rust $nightly: present ($(rustc +"$nightly" --version))"
else
    say "rustup toolchain install $nightly (for make wasm-threads)"
    rustup toolchain install "$nightly" --profile minimal --component rust-src --target wasm32-unknown-unknown
fi
if ! rustup component list --toolchain "$nightly" --installed | grep -q '^rust-src'; then
    say "rustup component add rust-src --toolchain $nightly"
    rustup component add rust-src --toolchain "$nightly"
fi
if ! rustup target list --toolchain "$nightly" --installed | grep -qx wasm32-unknown-unknown; then
    say "rustup target add wasm32-unknown-unknown --toolchain $nightly"
    rustup target add wasm32-unknown-unknown --toolchain "$nightly"
fi

# The CLI must be the exact version of the wasm-bindgen crate in Cargo.lock, or the
# generated JS glue does not match the compiled module.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$want" ]; then
    echo "[setup] cannot find the wasm-bindgen version in Cargo.lock" >&2
    exit 1
fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" = "$want" ]; then
    say "wasm-bindgen-cli $want: present"
else
    say "cargo install wasm-bindgen-cli --version $want (have: ${have:-none}; takes 7-13 minutes on 2 cores)"
    # Without --locked: the CLI's own lock file pins a crate version the registry may lack.
    cargo install wasm-bindgen-cli --version "$want"
fi

# ---------------------------------------------------------------- npm
want_pw=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
have_pw=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
if [ "$have_pw" = "$want_pw" ]; then
    say "npm playwright-core $want_pw: present"
else
    say "npm ci (playwright-core $want_pw)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
fi

# ---------------------------------------------------------------- pydicom's test files
# tests/dicom_suite.rs reads every file of pydicom 3.0.2's own test suite; the
# wheel is pinned by its sha256 (PyPI's), so the files are always the same.
pydicom_dir=build/pydicom-3.0.2
pydicom_sha256=abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b
if [ -d "$pydicom_dir/test_files" ]; then
    say "pydicom 3.0.2 test files: present"
elif ! python3 -m pip --version >/dev/null 2>&1; then
    echo "[setup] python3 -m pip is needed to fetch pydicom 3.0.2's test files (tests/dicom_suite.rs)" >&2
    exit 1
else
    say "pip download pydicom==3.0.2 (its test files, for tests/dicom_suite.rs)"
    rm -rf "$pydicom_dir" && mkdir -p "$pydicom_dir/wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$pydicom_dir/wheel" pydicom==3.0.2
    wheel="$pydicom_dir/wheel/pydicom-3.0.2-py3-none-any.whl"
    if ! echo "$pydicom_sha256  $wheel" | sha256sum --check --status; then
        echo "[setup] $wheel does not have the sha256 $pydicom_sha256" >&2
        rm -rf "$pydicom_dir"
        exit 1
    fi
    python3 - "$wheel" "$pydicom_dir" <<'PY'
import sys, zipfile
from pathlib import Path
wheel, out = sys.argv[1], Path(sys.argv[2])
prefix = "pydicom/data/test_files/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = out / "test_files" / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
PY
    say "pydicom 3.0.2 test files: $(find "$pydicom_dir/test_files" -type f | wc -l) files in $pydicom_dir/test_files"
fi

say "done"
