# KPL: CLIP + Knowledge Proxy Learning, natively and in the browser.
#
#   make demo    install what is missing, build the wasm, serve the app on
#                http://127.0.0.1:$(PORT)/ with $(MODEL) (default: a RANDOM test model)
#   make test    Rust tests, wasm build, browser tests (parity with the native CLI, app, headers)
#
# Other targets: setup, wasm (wasm-single + wasm-threads), native, serve, bench, clean. See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PORT  ?= 8080
MODEL ?= tests/fixtures/tiny-quickgelu-f32
CARGO ?= cargo
NODE  ?= node

export PATH := $(HOME)/.cargo/bin:$(PATH)

WASM_TARGET := wasm32-unknown-unknown
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),target)
WASM_OUT    := $(TARGET_DIR)/$(WASM_TARGET)/release/kpl.wasm
PKG_DIR     := pkg
KPL_BIN     := $(TARGET_DIR)/release/kpl
# The threaded build (pkg/threads/, chosen by www/worker.js on a cross-origin-isolated
# page): shared memory and atomics need std rebuilt with them, which only nightly
# does (-Z build-std). Its own target folder: other RUSTFLAGS, other artifacts.
RUST_NIGHTLY       ?= $(shell bash scripts/nightly-toolchain.sh)
CARGO_NIGHTLY      ?= cargo +$(RUST_NIGHTLY)
THREADS_PKG_DIR    := $(PKG_DIR)/threads
THREADS_TARGET_DIR := $(TARGET_DIR)/threads
THREADS_WASM_OUT   := $(THREADS_TARGET_DIR)/$(WASM_TARGET)/release/kpl.wasm
# The relaxed-SIMD twins of both (pkg/relaxed/, pkg/threads-relaxed/; www/worker.js picks
# them where WebAssembly.validate accepts a relaxed opcode): the same crate compiled
# with +relaxed-simd, so the GEMMs take their relaxed micro-kernels (src/nn/gemm/
# *_relaxed.rs). Their own target folders: other RUSTFLAGS, other artifacts.
RELAXED_PKG_DIR            := $(PKG_DIR)/relaxed
RELAXED_TARGET_DIR         := $(TARGET_DIR)/relaxed
RELAXED_RUSTFLAGS          := -C target-feature=+simd128,+relaxed-simd
THREADS_RELAXED_PKG_DIR    := $(PKG_DIR)/threads-relaxed
THREADS_RELAXED_TARGET_DIR := $(TARGET_DIR)/threads-relaxed
THREADS_RUSTFLAGS  := -C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
  -C link-arg=--shared-memory -C link-arg=--max-memory=4294967296 -C link-arg=--import-memory \
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
# One knowledge base per task in knowledge/, built by $(MODEL) (served at /kb/).
KB_DIR      := build/kb/$(notdir $(abspath $(MODEL)))
TASKS       := $(notdir $(patsubst %/,%,$(dir $(wildcard knowledge/*/task.json))))

.PHONY: help setup wasm wasm-single wasm-threads wasm-relaxed wasm-threads-relaxed native kb demo serve test test-rust lint test-browser test-site screenshot bench clean fuzz

help:
	@echo "make demo     build and serve the in-browser app on http://127.0.0.1:$(PORT)/ (MODEL=$(MODEL))"
	@echo "make test     Rust tests + wasm build + browser tests"
	@echo "make setup    install missing tools (apt packages, wasm target, nightly + rust-src, wasm-bindgen-cli, npm packages)"
	@echo "make wasm     build $(PKG_DIR)/ (wasm-bindgen --target web), $(THREADS_PKG_DIR)/ (wasm threads, nightly)"
	@echo "              and their relaxed-SIMD twins $(RELAXED_PKG_DIR)/, $(THREADS_RELAXED_PKG_DIR)/"
	@echo "make native   build $(TARGET_DIR)/release/kpl"
	@echo "make screenshot  rewrite docs/screenshot.png (after make native wasm)"
	@echo "make bench    run bench/run.sh"
	@echo "make clean    remove build outputs"

setup:
	@bash scripts/setup.sh

# No wasm-opt: Debian's binaryen corrupts wasm-bindgen 0.2.130 output (see ARCHITECTURE.md).
wasm: wasm-single wasm-threads wasm-relaxed wasm-threads-relaxed

wasm-single: setup
	$(CARGO) build --release --lib --target $(WASM_TARGET) --no-default-features --features gpu
	wasm-bindgen --target web --remove-name-section --out-dir $(PKG_DIR) $(WASM_OUT)
	@ls -l $(PKG_DIR)/kpl_bg.wasm | awk '{printf "[wasm] %s: %.1f MB\n", $$NF, $$5/1048576}'

# The same crate with `threads` (wasm-bindgen-rayon's pool over Web Workers), then
# scripts/wasm-threads.mjs makes its worker helper importable without a bundler.
wasm-threads: setup
	RUSTFLAGS="$(THREADS_RUSTFLAGS)" CARGO_TARGET_DIR=$(THREADS_TARGET_DIR) $(CARGO_NIGHTLY) build --release --lib \
	  --target $(WASM_TARGET) --no-default-features --features gpu,threads -Z build-std=panic_abort,std
	rm -rf $(THREADS_PKG_DIR)
	wasm-bindgen --target web --remove-name-section --out-dir $(THREADS_PKG_DIR) $(THREADS_WASM_OUT)
	$(NODE) scripts/wasm-threads.mjs $(THREADS_PKG_DIR)
	@ls -l $(THREADS_PKG_DIR)/kpl_bg.wasm | awk '{printf "[wasm] %s: %.1f MB\n", $$NF, $$5/1048576}'

# The relaxed-SIMD builds: what wasm-single and wasm-threads build, with +relaxed-simd.
wasm-relaxed: setup
	RUSTFLAGS="$(RELAXED_RUSTFLAGS)" CARGO_TARGET_DIR=$(RELAXED_TARGET_DIR) $(CARGO) build --release --lib \
	  --target $(WASM_TARGET) --no-default-features --features gpu
	rm -rf $(RELAXED_PKG_DIR)
	wasm-bindgen --target web --remove-name-section --out-dir $(RELAXED_PKG_DIR) $(RELAXED_TARGET_DIR)/$(WASM_TARGET)/release/kpl.wasm
	@ls -l $(RELAXED_PKG_DIR)/kpl_bg.wasm | awk '{printf "[wasm] %s: %.1f MB\n", $$NF, $$5/1048576}'

wasm-threads-relaxed: setup
	RUSTFLAGS="$(THREADS_RUSTFLAGS) -C target-feature=+relaxed-simd" CARGO_TARGET_DIR=$(THREADS_RELAXED_TARGET_DIR) \
	  $(CARGO_NIGHTLY) build --release --lib --target $(WASM_TARGET) --no-default-features --features gpu,threads -Z build-std=panic_abort,std
	rm -rf $(THREADS_RELAXED_PKG_DIR)
	wasm-bindgen --target web --remove-name-section --out-dir $(THREADS_RELAXED_PKG_DIR) $(THREADS_RELAXED_TARGET_DIR)/$(WASM_TARGET)/release/kpl.wasm
	$(NODE) scripts/wasm-threads.mjs $(THREADS_RELAXED_PKG_DIR)
	@ls -l $(THREADS_RELAXED_PKG_DIR)/kpl_bg.wasm | awk '{printf "[wasm] %s: %.1f MB\n", $$NF, $$5/1048576}'

native:
	$(CARGO) build --release

# The knowledge bases of every task, embedded by $(MODEL) (native CLI, built if missing).
kb:
	@test -x $(KPL_BIN) || $(CARGO) build --release
	@mkdir -p $(KB_DIR)
	@for t in $(TASKS); do \
	  $(KPL_BIN) build-kb --model "$(MODEL)" knowledge/$$t -o $(KB_DIR)/$$t.kplkb 2>/dev/null \
	    || { echo "kb: build-kb failed for $$t" >&2; exit 1; }; \
	done
	@echo "[kb] $(words $(TASKS)) knowledge bases in $(KB_DIR)/"

# The demo: everything it needs, then the server in the foreground (Ctrl-C stops it).
demo: wasm kb
	@$(MAKE) --no-print-directory serve

serve:
	@test -f $(PKG_DIR)/kpl.js || { echo "$(PKG_DIR)/ is missing: run 'make wasm' first" >&2; exit 1; }
	$(NODE) scripts/serve.mjs --port $(PORT) --model "$(MODEL)" --kb "$(KB_DIR)"

# The browser tests but the site's (test-site runs them, with the web servers).
SITE_TESTS    := tests/browser/site.test.mjs tests/browser/site-servers.test.mjs
BROWSER_TESTS := $(filter-out $(SITE_TESTS),$(wildcard tests/browser/*.test.mjs))

# The browser tests run after both builds (under `make -j` the two may overlap).
test: test-rust wasm
	@$(MAKE) --no-print-directory kb MODEL=tests/fixtures/tiny-quickgelu-f32
	$(NODE) --test $(BROWSER_TESTS)
	@$(MAKE) --no-print-directory test-site

# `kpl site` of the test model served by Debian's nginx with the emitted snippet, under
# a sub-path, in Chromium (tests/browser/site.test.mjs), and by Caddy and Apache with
# theirs (site-servers.test.mjs: the headers); needs `make native wasm`. The servers
# are installed if missing (scripts/setup.sh).
test-site:
	@test -x /usr/sbin/nginx -a -x /usr/bin/caddy -a -x /usr/sbin/apache2 || bash scripts/setup.sh
	$(NODE) --test $(SITE_TESTS)

# Building bins and tests together first gives one feature set for both (dev-dependency
# features unify only when tests are built): `cargo test` then reuses every artifact
# and target/release/kpl, which the browser parity test runs, costs no second build.
# `testing` (random checkpoints, src/testing) is on for the tests anyway (a
# dev-dependency); named here so that target/release/kpl has `random-model`.
test-rust: setup lint
	$(CARGO) build --release --workspace --bins --tests --features kpl/testing
	$(CARGO) test --release --workspace --features kpl/testing

# The parsers of untrusted bytes (DICOM, GGUF header check, .kplkb, npz, bundle
# manifest, SentencePiece model + SigLIP tokenizer) deny indexing, unwrap/expect, panic and unchecked arithmetic with
# inner #![deny(clippy::…)] attributes; clippy turns any breach into an error.
lint: setup
	$(CARGO) clippy --release --lib

# The browser tests alone (needs `make native wasm` done before).
test-browser:
	@$(MAKE) --no-print-directory kb MODEL=tests/fixtures/tiny-quickgelu-f32
	$(NODE) --test $(BROWSER_TESTS)
	@$(MAKE) --no-print-directory test-site

# Rewrites docs/screenshot.png (the README's) from the KPL app test.
screenshot:
	@$(MAKE) --no-print-directory kb MODEL=tests/fixtures/tiny-quickgelu-f32
	UPDATE_SCREENSHOT=1 $(NODE) --test tests/browser/kpl.test.mjs

bench:
	@if [ -x bench/run.sh ] || [ -f bench/run.sh ]; then bash bench/run.sh; \
	else echo "bench/run.sh does not exist yet: no benchmarks to run"; fi

clean:
	$(CARGO) clean
	rm -rf $(PKG_DIR) tests/browser/out build/kb

# Fuzzes every parser of untrusted bytes (fuzz/README.md): FUZZ_SECONDS (default 600;
# dicom_structured 1800) per target, one after another, with cargo-fuzz on nightly.
fuzz:
	bash scripts/fuzz.sh
