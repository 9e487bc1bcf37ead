// The synthetic KPL fit data of crates/kpl-core/examples/bench_fit.rs, bit for bit:
// n = 1000 L2-normalised image rows around C = 5 class directions with a modality gap,
// M = 50 descriptions per class, imbalanced labels; the same xorshift64* stream
// (seed 0x9E3779B97F4A7C15), the same f64 arithmetic, rounded to f32 at the end.

export const N = 1000, D = 768, C = 5, M = 50;

/** xorshift64* on two uint32 halves (no BigInt: ~20× faster in V8). */
class Rng {
  constructor(hi, lo) {
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
  }
  /** The top 53 bits of the next output, as a double in [0, 2^53). */
  next53() {
    let { hi, lo } = this;
    // s ^= s >> 12
    lo = (lo ^ ((lo >>> 12) | (hi << 20))) >>> 0;
    hi = (hi ^ (hi >>> 12)) >>> 0;
    // s ^= s << 25
    hi = (hi ^ ((hi << 25) | (lo >>> 7))) >>> 0;
    lo = (lo ^ (lo << 25)) >>> 0;
    // s ^= s >> 27
    lo = (lo ^ ((lo >>> 27) | (hi << 5))) >>> 0;
    hi = (hi ^ (hi >>> 27)) >>> 0;
    this.hi = hi;
    this.lo = lo;
    // s * 0x2545F4914F6CDD1D mod 2^64
    const MH = 0x2545f491, ML = 0x4f6cdd1d;
    const outLo = Math.imul(lo, ML) >>> 0;
    const outHi = (mulhi(lo, ML) + Math.imul(hi, ML) + Math.imul(lo, MH)) >>> 0;
    return outHi * 2097152 + (outLo >>> 11);
  }
  uniform() {
    return this.next53() / 9007199254740992;
  }
  normal() {
    let s = 0;
    for (let i = 0; i < 4; i++) s += this.uniform();
    return (s - 2.0) * Math.sqrt(3.0);
  }
  unit(d) {
    const v = new Float64Array(d);
    for (let i = 0; i < d; i++) v[i] = this.normal();
    return normalized64(v);
  }
}

/** High 32 bits of the unsigned 32×32 product. */
function mulhi(a, b) {
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  return p11 + (p01 >>> 16) + (p10 >>> 16) + Math.floor(mid / 65536);
}

function norm(v) {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

function normalized64(v) {
  const n = norm(v);
  for (let i = 0; i < v.length; i++) v[i] /= n;
  return v;
}

function pushNormalized32(out, offset, v) {
  const n = norm(v);
  for (let i = 0; i < v.length; i++) out[offset + i] = Math.fround(v[i] / n);
}

/** { images: Float32Array(N*D), descriptions: Float32Array(C*M*D), classOf: Uint32Array(C*M), labels } */
export function fitData() {
  const rng = new Rng(0x9e3779b9, 0x7f4a7c15);
  const classes = Array.from({ length: C }, () => rng.unit(D));
  const shared = rng.unit(D);
  const gap = rng.unit(D);
  const descriptions = new Float32Array(C * M * D);
  const classOf = new Uint32Array(C * M);
  const row = new Float64Array(D);
  for (let c = 0; c < C; c++) {
    const u = classes[c];
    for (let j = 0; j < M; j++) {
      const rel = 0.1 + 0.9 * rng.uniform();
      const noise = rng.unit(D);
      for (let k = 0; k < D; k++) row[k] = 0.8 * shared[k] + rel * u[k] + 0.35 * noise[k];
      pushNormalized32(descriptions, (c * M + j) * D, row);
      classOf[c * M + j] = c;
    }
  }
  const images = new Float32Array(N * D);
  const labels = new Uint32Array(N);
  for (let i = 0; i < N; i++) {
    const c = ((i * i + 3 * i) % 7) % C;
    labels[i] = c;
    const off = rng.unit(D);
    const noise = rng.unit(D);
    for (let k = 0; k < D; k++) row[k] = 1.2 * gap[k] + 0.55 * (classes[c][k] + 0.9 * off[k]) + 0.45 * noise[k];
    pushNormalized32(images, i * D, row);
  }
  return { images, descriptions, classOf, labels };
}

// Self-check against BigInt arithmetic: `node bench/fit_data.mjs`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const MASK = (1n << 64n) - 1n;
  let s = 0x9e3779b97f4a7c15n;
  const rng = new Rng(0x9e3779b9, 0x7f4a7c15);
  for (let i = 0; i < 100000; i++) {
    s ^= s >> 12n;
    s ^= (s << 25n) & MASK;
    s ^= s >> 27n;
    const want = Number(((s * 0x2545f4914f6cdd1dn) & MASK) >> 11n);
    const got = rng.next53();
    if (want !== got) throw new Error(`step ${i}: ${got} != ${want}`);
  }
  const t = performance.now();
  const data = fitData();
  console.log(`xorshift64* matches BigInt; data in ${(performance.now() - t).toFixed(0)} ms; images[0..3] = ${Array.from(data.images.slice(0, 3))}`);
}
