# KPL: CLIP + Knowledge Proxy Learning, natively and in the browser.
#
#   make demo    install what is missing, build the wasm, serve the app on
#                http://127.0.0.1:$(PORT)/ with $(MODEL) (default: a RANDOM test model)
#   make test    Rust tests, wasm build, browser tests (parity with the native CLI, app, headers)
#
# Other targets: setup, wasm, native, serve, bench, clean. See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PORT  ?= 8080
MODEL ?= tests/fixtures/tiny-quickgelu-f32
CARGO ?= cargo
NODE  ?= node

export PATH := $(HOME)/.cargo/bin:$(PATH)

WASM_TARGET := wasm32-unknown-unknown
WASM_OUT    := target/$(WASM_TARGET)/release/kpl.wasm
PKG_DIR     := pkg

.PHONY: help setup wasm native demo serve test test-rust test-browser bench clean

help:
	@echo "make demo     build and serve the in-browser app on http://127.0.0.1:$(PORT)/ (MODEL=$(MODEL))"
	@echo "make test     Rust tests + wasm build + browser tests"
	@echo "make setup    install missing tools (apt packages, wasm target, wasm-bindgen-cli, npm packages)"
	@echo "make wasm     build $(PKG_DIR)/ (wasm-bindgen --target web)"
	@echo "make native   build target/release/kpl"
	@echo "make bench    run bench/run.sh"
	@echo "make clean    remove build outputs"

setup:
	@bash scripts/setup.sh

# No wasm-opt: Debian's binaryen corrupts wasm-bindgen 0.2.130 output (see ARCHITECTURE.md).
wasm: setup
	$(CARGO) build --release --lib --target $(WASM_TARGET) --no-default-features
	wasm-bindgen --target web --out-dir $(PKG_DIR) $(WASM_OUT)
	@ls -l $(PKG_DIR)/kpl_bg.wasm | awk '{printf "[wasm] %s: %.1f MB\n", $$NF, $$5/1048576}'

native:
	$(CARGO) build --release

# The demo: everything it needs, then the server in the foreground (Ctrl-C stops it).
demo: wasm
	@$(MAKE) --no-print-directory serve

serve:
	@test -f $(PKG_DIR)/kpl.js || { echo "$(PKG_DIR)/ is missing: run 'make wasm' first" >&2; exit 1; }
	$(NODE) scripts/serve.mjs --port $(PORT) --model "$(MODEL)"

# Ordered by prerequisites, so `make -j` keeps the order too.
test: test-rust wasm
	$(NODE) --test tests/browser/

test-rust: setup
	$(CARGO) test --release --workspace
	$(CARGO) build --release

# The browser tests alone (needs `make native wasm` done before).
test-browser:
	$(NODE) --test tests/browser/

bench:
	@if [ -x bench/run.sh ] || [ -f bench/run.sh ]; then bash bench/run.sh; \
	else echo "bench/run.sh does not exist yet: no benchmarks to run"; fi

clean:
	$(CARGO) clean
	rm -rf $(PKG_DIR) tests/browser/out
