#!/usr/bin/env bash
# `make fuzz`: runs every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each, one
# after another, and prints executions, exec/s and crashes per target.
#
#   FUZZ_SECONDS=600          time per target (seconds); when unset, 600 for every
#                             target but dicom_structured, which runs 1800
#   FUZZ_STRUCTURED_SECONDS   time of dicom_structured (default: FUZZ_SECONDS if
#                             set, else 1800)
#   FUZZ_TARGETS="a b"        targets to run (default: all, see fuzz/Cargo.toml)
#   FUZZ_SANITIZER=address    address (ASan: memory errors in unsafe code, and the
#                             malloc limit below) or none (about twice as fast)
#   FUZZ_NICE=19              nice level of the fuzzing processes
#   FUZZ_RSS_MB=4096          libFuzzer -rss_limit_mb: peak memory of the process
#   FUZZ_MALLOC_MB=2048       libFuzzer -malloc_limit_mb: one allocation larger than
#                             this is a crash (needs ASan); inputs are a few MB at most
#   FUZZ_TIMEOUT=20           libFuzzer -timeout: one input taking longer is a crash
#
# Seeds are copied into fuzz/corpus/<target>/ at run time from committed files
# (tests/fixtures/images, tests/dicom/files, tests/jpeg_ls, fuzz/seeds/npz), a small bundle packed
# here with `kpl pack`, the fixture safetensors and the knowledge bases in
# build/kb/ (built with `kpl build-kb` if missing). The corpus keeps growing
# across runs; it, fuzz/artifacts/ (crash inputs) and fuzz/logs/ are not committed.
# A crash input becomes a regression test: copy it to tests/fuzz_regressions/<target>/.
# The two DICOM targets do that themselves: each new crash input of `dicom`, and
# the file each new crash input of `dicom_structured` generates (its parameters
# next to the artifact, in .params.txt), are copied to tests/fuzz_regressions/dicom/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

SECONDS_PER_TARGET=${FUZZ_SECONDS:-600}
STRUCTURED_SECONDS=${FUZZ_STRUCTURED_SECONDS:-${FUZZ_SECONDS:-1800}}
ALL_TARGETS="image_decode dicom dicom_structured jpeg jpeg_ls gguf_bundle safetensors kplkb npz sentencepiece pytorch_pickle"
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
SANITIZER=${FUZZ_SANITIZER:-address}
NICE=${FUZZ_NICE:-19}
RSS_MB=${FUZZ_RSS_MB:-4096}
MALLOC_MB=${FUZZ_MALLOC_MB:-2048}
TIMEOUT=${FUZZ_TIMEOUT:-20}
MODEL=tests/fixtures/tiny-quickgelu-f32
KPL_BIN=${CARGO_TARGET_DIR:-target}/release/kpl
BUILD_FLAGS=(-s "$SANITIZER" --codegen-units 16)
FUZZ_BIN=fuzz/target/$(rustc +nightly -vV | sed -n "s/^host: //p")/release

# Tools: a nightly toolchain and cargo-fuzz.
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "[fuzz] installing the nightly toolchain" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
  echo "[fuzz] installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi
if [ ! -x "$KPL_BIN" ]; then
  echo "[fuzz] building $KPL_BIN (packs the seed bundle)" >&2
  cargo build --release
fi

# Seeds.
seed() { # seed TARGET FILE...
  local dir=fuzz/corpus/$1
  shift
  mkdir -p "$dir"
  for f in "$@"; do
    [ -f "$f" ] && cp -n "$f" "$dir/seed-$(basename "$f")"
  done
  return 0
}
small_files() { # files under $1 of at most $2 bytes
  find "$1" -maxdepth 1 -type f -size -"$2"c | sort
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in $TARGETS; do
  case $t in
    image_decode) seed "$t" tests/fixtures/images/* $(small_files tests/dicom/files 8192) $(ls tests/exif/* | grep -v '\.json$') ;;
    dicom) seed "$t" $(small_files tests/dicom/files 262144) tests/jpeg_ls/dicom/*.dcm ;;
    jpeg) seed "$t" tests/jpeg/cases/*.jpg tests/fixtures/images/*.jpg tests/exif/*.jpg ;;
    jpeg_ls) seed "$t" tests/jpeg_ls/cases/*.jls tests/jpeg_ls/dicom/*.jls ;;
    dicom_structured)
      # Its inputs are the generator's choices (fuzz/src/dicom_gen.rs), not
      # files: one seed per transfer syntax (the first 4 bytes choose it among
      # 11), then 124 pseudo-random bytes (a fixed LCG).
      mkdir -p "fuzz/corpus/$t"
      for k in $(seq 0 10); do
        f="fuzz/corpus/$t/seed-syntax-$k"
        [ -f "$f" ] && continue
        v=$(( (k * 4294967296 + 4294967295) / 11 ))
        x=$((k * 7919 + 17))
        bytes="$((v & 255)) $((v >> 8 & 255)) $((v >> 16 & 255)) $((v >> 24 & 255))"
        for _ in $(seq 1 124); do
          x=$(( (x * 1103515245 + 12345) % 2147483648 ))
          bytes="$bytes $((x >> 16 & 255))"
        done
        for b in $bytes; do printf "\\$(printf %03o "$b")"; done >"$f"
      done ;;
    gguf_bundle)
      for dtype in q8 q4 f16; do
        "$KPL_BIN" pack --model "$MODEL" --dtype "$dtype" -o "$work/bundle-$dtype" >/dev/null
        for f in manifest.json image_encoder.gguf text_encoder.gguf; do
          cp "$work/bundle-$dtype/$f" "$work/$dtype-$f"
        done
      done
      seed "$t" "$work"/*-manifest.json "$work"/*-image_encoder.gguf "$work"/q8-text_encoder.gguf ;;
    safetensors) seed "$t" tests/fixtures/tiny-quickgelu-f32/model.safetensors ;;
    kplkb)
      kb_dir=build/kb/$(basename "$MODEL")
      if ! ls "$kb_dir"/*.kplkb >/dev/null 2>&1; then
        mkdir -p "$kb_dir"
        "$KPL_BIN" build-kb --model "$MODEL" knowledge/chest-xray-pneumonia -o "$kb_dir/chest-xray-pneumonia.kplkb" 2>/dev/null
      fi
      seed "$t" "$kb_dir"/*.kplkb ;;
    npz) seed "$t" fuzz/seeds/npz/*.npz ;;
    sentencepiece) seed "$t" tests/fixtures/tiny-siglip-b/spiece.model tests/fixtures/sentencepiece/*.model ;;
    pytorch_pickle) seed "$t" fuzz/seeds/pytorch_pickle/* ;;
    *) echo "[fuzz] unknown target $t (known: $ALL_TARGETS)" >&2; exit 2 ;;
  esac
done

echo "[fuzz] building the targets (sanitizer: $SANITIZER, debug assertions and overflow checks on)" >&2
nice -n "$NICE" cargo +nightly fuzz build "${BUILD_FLAGS[@]}"

# jpeg-decoder decodes on worker threads it does not join: memory they still hold
# when an input returns is not a leak of ours (fuzz/lsan.supp says which).
export LSAN_OPTIONS="suppressions=$ROOT/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

mkdir -p fuzz/logs tests/fuzz_regressions/dicom
summary=fuzz/logs/summary.tsv
printf 'target\tseconds\texecutions\texec_per_s\tpeak_rss_mb\tcoverage\tcrashes\tcorpus\n' >"$summary"
status=0
for t in $TARGETS; do
  mkdir -p "fuzz/artifacts/$t"
  # Slow units (libFuzzer's report of an input slower than 10 s, not a failure)
  # are listed as warnings, never counted as crashes.
  find "fuzz/artifacts/$t" -type f ! -name '*.params.txt' ! -name 'slow-unit-*' | sort >"$work/before"
  before=$(wc -l <"$work/before")
  log=fuzz/logs/$t.log
  seconds=$SECONDS_PER_TARGET
  [ "$t" = dicom_structured ] && seconds=$STRUCTURED_SECONDS
  echo "[fuzz] $t: ${seconds} s (log: $log)" >&2
  start=$(date +%s)
  set +e
  # The binary `cargo fuzz build` made above, run directly (what `cargo fuzz run`
  # does, without rebuilding between targets if the sources change meanwhile).
  nice -n "$NICE" "$FUZZ_BIN/$t" "fuzz/corpus/$t" -artifact_prefix="fuzz/artifacts/$t/" \
    -max_total_time="$seconds" -rss_limit_mb="$RSS_MB" -malloc_limit_mb="$MALLOC_MB" -timeout="$TIMEOUT" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  elapsed=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  if [ -z "$execs" ]; then # a crash ends the run before the final stats: take the last status line
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
    rate=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  fi
  peak=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  cov=$(grep -o ' cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  find "fuzz/artifacts/$t" -type f ! -name '*.params.txt' ! -name 'slow-unit-*' | sort >"$work/after"
  grep -o 'slow-unit-[0-9a-f]*' "$log" | sort -u | sed "s|^|[fuzz] $t: warning: a slow input (over 10 s): fuzz/artifacts/$t/|" >&2 || true
  after=$(wc -l <"$work/after")
  crashes=$((after - before))
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$elapsed" "${execs:-?}" "${rate:-?}" "${peak:-?}" "${cov:-?}" "$crashes" "$corpus" >>"$summary"
  # New crash inputs of the DICOM targets become regression files.
  comm -13 "$work/before" "$work/after" | while read -r artifact; do
    base=$(basename "$artifact")
    case $t in
      dicom)
        cp "$artifact" "tests/fuzz_regressions/dicom/dicom-$base.dcm"
        echo "[fuzz] $t: regression file tests/fuzz_regressions/dicom/dicom-$base.dcm" >&2 ;;
      dicom_structured)
        out=tests/fuzz_regressions/dicom/dicom_structured-$base.dcm
        # The binary writes the generated file before decoding it (and crashing).
        KPL_DICOM_OUT=$out timeout 60 "$FUZZ_BIN/$t" "$artifact" >/dev/null 2>&1 || true
        if [ -f "$out" ]; then
          mv "$out.params.txt" "$artifact.params.txt"
          echo "[fuzz] $t: regression file $out (parameters: $artifact.params.txt)" >&2
        else
          echo "[fuzz] $t: no file generated from $artifact (a crash in the generator itself?)" >&2
        fi ;;
    esac
  done
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "[fuzz] $t: FAILED (exit $rc, $crashes new file(s) in fuzz/artifacts/$t/):" >&2
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
  fi
done

echo
echo "[fuzz] results ($summary):"
column -t -s $'\t' "$summary" 2>/dev/null || cat "$summary"
exit $status
