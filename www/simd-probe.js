// Whether this browser runs WebAssembly relaxed SIMD: `self.kplRelaxedSimd()`, by which
// worker.js (`import './simd-probe.js'`) chooses between the simd128 builds (pkg/,
// pkg/threads/) and their relaxed-SIMD twins (pkg/relaxed/, pkg/threads-relaxed/). A
// global rather than an export, so that a test can stand in for an engine without
// relaxed SIMD by serving a one-line replacement (tests/browser/relaxed.test.mjs).
//
// The probe is a module whose one function uses the relaxed kernels' two instructions
// (src/nn/gemm/f32_relaxed.rs, q8_relaxed.rs):
// (func (result v128) (i32x4.relaxed_dot_i8x16_i7x16_add_s
//   (f32x4.relaxed_madd (i8x16.splat (i32.const 1)) ×3) (i8x16.splat (i32.const 1)) ×2))
self.kplRelaxedSimd = () => {
  const probe = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // \0asm, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // functions: one, of type 0
    0x0a, 0x1e, 0x01, 0x1c, 0x00, // code: one body of 28 bytes, no locals
    0x41, 0x01, 0xfd, 0x0f, 0x41, 0x01, 0xfd, 0x0f, 0x41, 0x01, 0xfd, 0x0f, // 3 × i8x16.splat(1)
    0xfd, 0x85, 0x02, // f32x4.relaxed_madd (0xfd 0x105)
    0x41, 0x01, 0xfd, 0x0f, 0x41, 0x01, 0xfd, 0x0f, // 2 × i8x16.splat(1)
    0xfd, 0x93, 0x02, // i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113)
    0x0b, // end
  ]);
  try {
    return WebAssembly.validate(probe);
  } catch {
    return false;
  }
};
