// Bulk uniform and normal draws from a torch CPU generator, equal bit for bit to torch's own
// `Tensor.uniform_()` (on [0, 1)) and `Tensor.normal_()` (contiguous float32, >= 16 values).
//
// torch's CPU generator is a 32-bit Mersenne Twister (MT19937). torch draws one value per
// virtual-free but non-inlined call (~6 ns each here); this file regenerates the 624-word state
// a vector at a time and tempers a whole block at once. The normal draw then follows torch's
// AVX2 Box-Muller step exactly: 16 uniforms u at a time, pairs (u_j, u_{j+8}), a Cephes-style
// polynomial log and sin/cos, with the fused multiply-adds where torch's compiler fused them.
// Compiled with -ffp-contract=off, so every fma here is written out and nothing else is fused.
//
// The generator state travels as the byte tensor of `torch.Generator.get_state()`:
//   offset 8: int32 left, offset 16: uint64 next, offset 24: uint64 state[624] (low 32 bits used)
// torch's step: if (--left == 0) regenerate (left = 624, next = 0); output temper(state[next++]).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

// a float constant written the way torch's tables hold it: a double literal rounded to float
constexpr float F(double v) { return static_cast<float>(v); }

constexpr int kN = 624;
constexpr int kM = 397;
constexpr uint32_t kMatrixA = 0x9908b0dfu;
constexpr uint32_t kUpper = 0x80000000u;
constexpr uint32_t kLower = 0x7fffffffu;

struct Engine {
  uint32_t s[kN];
  int32_t left;
  uint64_t next;
};

void load(const uint8_t* st, Engine* e) {
  std::memcpy(&e->left, st + 8, 4);
  std::memcpy(&e->next, st + 16, 8);
  for (int i = 0; i < kN; ++i) {
    uint64_t v;
    std::memcpy(&v, st + 24 + 8 * i, 8);
    e->s[i] = static_cast<uint32_t>(v);
  }
}

void store(const Engine& e, uint8_t* st) {
  std::memcpy(st + 8, &e.left, 4);
  std::memcpy(st + 16, &e.next, 8);
  for (int i = 0; i < kN; ++i) {
    uint64_t v = e.s[i];
    std::memcpy(st + 24 + 8 * i, &v, 8);
  }
}

inline uint32_t twist(uint32_t u, uint32_t v) {
  return (((u & kUpper) | (v & kLower)) >> 1) ^ ((v & 1u) ? kMatrixA : 0u);
}

// One regeneration of the whole state. Word j depends on words j + 1 and j + 397 (old values)
// for j < 227 and on word j − 227 (already new) after that, so runs of up to 227 words have no
// dependency inside them: each loop below vectorises.
void regenerate(uint32_t* p) {
  constexpr int kFirst = kN - kM;  // 227
  for (int j = 0; j < kFirst; ++j) p[j] = p[j + kM] ^ twist(p[j], p[j + 1]);
  // chunks shorter than 227 keep every p[j − 227] read after it was written
  for (int base = kFirst; base < kN - 1; base += 128) {
    const int end = base + 128 < kN - 1 ? base + 128 : kN - 1;
    uint32_t tmp[128];
    for (int j = base; j < end; ++j) tmp[j - base] = p[j - kFirst] ^ twist(p[j], p[j + 1]);
    std::memcpy(p + base, tmp, sizeof(uint32_t) * (end - base));
  }
  p[kN - 1] = p[kM - 1] ^ twist(p[kN - 1], p[0]);
}

inline float temper_uniform(uint32_t y) {
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  // torch: (y & (2^24 − 1)) · 2^−24, exact in float
  return static_cast<float>(y & 0xffffffu) * (1.0f / 16777216.0f);
}

void tempered(const uint32_t* src, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = temper_uniform(src[i]);
}

void draw_uniform(Engine* e, float* out, int64_t n) {
  int64_t done = 0;
  int64_t avail = static_cast<int64_t>(e->left) - 1;  // left in the current block
  if (avail > 0) {
    const int64_t take = avail < n ? avail : n;
    tempered(e->s + e->next, out, take);
    e->next += take;
    e->left -= static_cast<int32_t>(take);
    done = take;
  }
  while (done < n) {
    regenerate(e->s);
    const int64_t take = (n - done) < kN ? (n - done) : kN;
    tempered(e->s, out + done, take);
    e->left = static_cast<int32_t>(kN + 1 - take);
    e->next = static_cast<uint64_t>(take);
    done += take;
  }
}

inline uint32_t bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
inline float from_bits(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }

// log(x) for x in (0, 1], the Cephes single-precision scheme as torch's log256_ps runs it
inline float cephes_log(float x) {
  const float min_normal = from_bits(0x00800000u);
  x = x > min_normal ? x : min_normal;  // max with the smallest normal float
  int32_t expo = static_cast<int32_t>(bits(x) >> 23) - 0x7f;
  x = from_bits((bits(x) & ~0x7f800000u) | bits(0.5f));  // mantissa in [0.5, 1)
  float e = static_cast<float>(expo) + 1.0f;
  // masks instead of branches (as the vector code does), so the loop vectorises
  const uint32_t below = 0u - static_cast<uint32_t>(x < F(0.707106781186547524));
  const float extra = from_bits(bits(x) & below);
  x = x - 1.0f;
  e = e - from_bits(bits(1.0f) & below);
  x = x + extra;
  const float z = x * x;
  float y = std::fma(F(7.0376836292E-2), x, F(-1.1514610310E-1));
  y = std::fma(y, x, F(1.1676998740E-1));
  y = std::fma(y, x, F(-1.2420140846E-1));
  y = std::fma(y, x, F(1.4249322787E-1));
  y = std::fma(y, x, F(-1.6668057665E-1));
  y = std::fma(y, x, F(2.0000714765E-1));
  y = std::fma(y, x, F(-2.4999993993E-1));
  y = std::fma(y, x, F(3.3333331174E-1));
  y = y * x;
  y = std::fma(y, z, e * F(-2.12194440e-4));
  y = std::fma(-z, 0.5f, y);
  x = x + y;
  return std::fma(e, F(0.693359375), x);
}

// sin and cos of x >= 0, the Cephes scheme of torch's sincos256_ps
inline void cephes_sincos(float x, float* s, float* c) {
  const uint32_t sign_sin0 = bits(x) & 0x80000000u;
  x = from_bits(bits(x) & 0x7fffffffu);
  float y = x * F(1.27323954473516);  // 4/π
  int32_t j = static_cast<int32_t>(y);  // truncation, as cvttps
  j = (j + 1) & ~1;
  y = static_cast<float>(j);
  const uint32_t swap_sin = static_cast<uint32_t>(j & 4) << 29;
  // all ones where the sine comes from the sine polynomial
  const uint32_t poly_cos = 0u - static_cast<uint32_t>((j & 2) == 0);
  x = std::fma(y, F(-0.78515625), x);
  x = std::fma(y, F(-2.4187564849853515625e-4), x);
  x = std::fma(y, F(-3.77489497744594108e-8), x);
  const uint32_t sign_cos = static_cast<uint32_t>(~(j - 2) & 4) << 29;
  const uint32_t sign_sin = sign_sin0 ^ swap_sin;
  const float z = x * x;
  float yc = std::fma(F(2.443315711809948E-005), z, F(-1.388731625493765E-003));
  yc = std::fma(yc, z, F(4.166664568298827E-002));
  yc = yc * z;
  yc = std::fma(yc, z, -(z * 0.5f));
  yc = yc + 1.0f;
  float ys = std::fma(F(-1.9515295891E-4), z, F(8.3321608736E-3));
  ys = std::fma(ys, z, F(-1.6666654611E-1));
  ys = ys * z;
  ys = std::fma(ys, x, x);
  // torch selects with masks and adds: ysin2 = mask & ys, ysin1 = ~mask & yc
  const float ysin2 = from_bits(bits(ys) & poly_cos);
  const float ysin1 = from_bits(bits(yc) & ~poly_cos);
  const float ys_rest = ys - ysin2;
  const float yc_rest = yc - ysin1;
  *s = from_bits(bits(ysin1 + ysin2) ^ sign_sin);
  *c = from_bits(bits(yc_rest + ys_rest) ^ sign_cos);
}

// torch's Box-Muller on 16 uniforms in place: pairs (j, j + 8)
inline void box_muller16(float* d, float mean, float std) {
  const float two_pi = static_cast<float>(2.0f * 3.14159265358979323846);
  float out[16];
  for (int j = 0; j < 8; ++j) {
    const float u1 = 1.0f - d[j];
    const float u2 = d[j + 8];
    const float radius = std::sqrt(F(-2.0) * cephes_log(u1));
    const float theta = two_pi * u2;
    float s, c;
    cephes_sincos(theta, &s, &c);
    out[j] = std::fma(radius * c, std, mean);
    out[j + 8] = std::fma(radius * s, std, mean);
  }
  std::memcpy(d, out, sizeof(out));
}

// The same arithmetic on 16 lanes (two 16-value blocks at once) with GCC vector types; every
// operation is the scalar one lane by lane, so the results are identical.
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef uint32_t vu __attribute__((vector_size(64)));

inline vf vfma(vf a, vf b, vf c) {
#if defined(__AVX512F__)
  return _mm512_fmadd_ps(a, b, c);
#else
  vf r;
  for (int i = 0; i < 16; ++i) r[i] = std::fma(a[i], b[i], c[i]);
  return r;
#endif
}

inline vf vsqrt(vf a) {
#if defined(__AVX512F__)
  return _mm512_sqrt_ps(a);
#else
  vf r;
  for (int i = 0; i < 16; ++i) r[i] = std::sqrt(a[i]);
  return r;
#endif
}

inline vf splat(float v) { return vf{} + v; }
inline vu ubits(vf x) { return reinterpret_cast<vu>(x); }
inline vf fbits(vu x) { return reinterpret_cast<vf>(x); }

inline vf vlog(vf x) {
  const vf min_normal = fbits(vu{} + 0x00800000u);
  x = x > min_normal ? x : min_normal;
  const vi expo = reinterpret_cast<vi>(ubits(x) >> 23) - 0x7f;
  x = fbits((ubits(x) & ~0x7f800000u) | ubits(splat(0.5f)));
  vf e = __builtin_convertvector(expo, vf) + 1.0f;
  const vu below = reinterpret_cast<vu>(x < F(0.707106781186547524));
  const vf extra = fbits(ubits(x) & below);
  x = x - 1.0f;
  e = e - fbits(ubits(splat(1.0f)) & below);
  x = x + extra;
  const vf z = x * x;
  vf y = vfma(splat(F(7.0376836292E-2)), x, splat(F(-1.1514610310E-1)));
  y = vfma(y, x, splat(F(1.1676998740E-1)));
  y = vfma(y, x, splat(F(-1.2420140846E-1)));
  y = vfma(y, x, splat(F(1.4249322787E-1)));
  y = vfma(y, x, splat(F(-1.6668057665E-1)));
  y = vfma(y, x, splat(F(2.0000714765E-1)));
  y = vfma(y, x, splat(F(-2.4999993993E-1)));
  y = vfma(y, x, splat(F(3.3333331174E-1)));
  y = y * x;
  y = vfma(y, z, e * F(-2.12194440e-4));
  y = vfma(-z, splat(0.5f), y);
  x = x + y;
  return vfma(e, splat(F(0.693359375)), x);
}

inline void vsincos(vf x, vf* s, vf* c) {
  const vu sign_sin0 = ubits(x) & 0x80000000u;
  x = fbits(ubits(x) & 0x7fffffffu);
  vf y = x * F(1.27323954473516);
  vi j = __builtin_convertvector(y, vi);  // truncation
  j = (j + 1) & ~1;
  y = __builtin_convertvector(j, vf);
  const vu swap_sin = reinterpret_cast<vu>(j & 4) << 29;
  const vu poly_cos = reinterpret_cast<vu>((j & 2) == 0);
  x = vfma(y, splat(F(-0.78515625)), x);
  x = vfma(y, splat(F(-2.4187564849853515625e-4)), x);
  x = vfma(y, splat(F(-3.77489497744594108e-8)), x);
  const vu sign_cos = reinterpret_cast<vu>(~(j - 2) & 4) << 29;
  const vu sign_sin = sign_sin0 ^ swap_sin;
  const vf z = x * x;
  vf yc = vfma(splat(F(2.443315711809948E-005)), z, splat(F(-1.388731625493765E-003)));
  yc = vfma(yc, z, splat(F(4.166664568298827E-002)));
  yc = yc * z;
  yc = vfma(yc, z, -(z * 0.5f));
  yc = yc + 1.0f;
  vf ys = vfma(splat(F(-1.9515295891E-4)), z, splat(F(8.3321608736E-3)));
  ys = vfma(ys, z, splat(F(-1.6666654611E-1)));
  ys = ys * z;
  ys = vfma(ys, x, x);
  const vf ysin2 = fbits(ubits(ys) & poly_cos);
  const vf ysin1 = fbits(ubits(yc) & ~poly_cos);
  const vf ys_rest = ys - ysin2;
  const vf yc_rest = yc - ysin1;
  *s = fbits(ubits(ysin1 + ysin2) ^ sign_sin);
  *c = fbits(ubits(yc_rest + ys_rest) ^ sign_cos);
}

// two consecutive 16-value blocks (32 floats) in place
inline void box_muller32(float* d, float mean, float std) {
  vf a, b;
  std::memcpy(&a, d, 64);
  std::memcpy(&b, d + 16, 64);
  const vi lo = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  const vi hi = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  const vf u1 = 1.0f - __builtin_shuffle(a, b, lo);
  const vf u2 = __builtin_shuffle(a, b, hi);
  const vf radius = vsqrt(F(-2.0) * vlog(u1));
  const vf theta = static_cast<float>(2.0f * 3.14159265358979323846) * u2;
  vf s, c;
  vsincos(theta, &s, &c);
  const vf n1 = vfma(radius * c, splat(std), splat(mean));
  const vf n2 = vfma(radius * s, splat(std), splat(mean));
  a = __builtin_shuffle(n1, n2, lo);
  b = __builtin_shuffle(n1, n2, hi);
  std::memcpy(d, &a, 64);
  std::memcpy(d + 16, &b, 64);
}

void box_muller(float* d, int64_t n, float mean, float std) {
  int64_t i = 0;
  for (; i + 31 < n; i += 32) box_muller32(d + i, mean, std);
  for (; i + 15 < n; i += 16) box_muller16(d + i, mean, std);
}

}  // namespace

extern "C" {

// n uniform [0, 1) floats, as torch.rand / Tensor.uniform_(0, 1)
void mt_uniform(uint8_t* state, float* out, int64_t n) {
  Engine e;
  load(state, &e);
  draw_uniform(&e, out, n);
  store(e, state);
}

// n >= 16 normal floats, as Tensor.normal_(mean, std) on a contiguous float32 tensor
void mt_normal(uint8_t* state, float* out, int64_t n, float mean, float std) {
  Engine e;
  load(state, &e);
  draw_uniform(&e, out, n);
  box_muller(out, n, mean, std);
  if (n % 16 != 0) {  // torch redraws and recomputes the last 16 values
    draw_uniform(&e, out + n - 16, 16);
    box_muller16(out + n - 16, mean, std);
  }
  store(e, state);
}

}  // extern "C"

// -- the working-memory task's signals (study.core.tasks.working_memory), equal to torch's ----

extern "C" {

// From onsets (S, B, 2n, T + 1) (bytes 0/1; line 2k is bit k's "on", 2k + 1 its "off") to
// inputs (S, T_in, B, 2n) and targets (S, T_out, B, n), float32, time-major as the networks
// take them: T_in = transient + segment steps of pulses (high while an onset lies in the
// last pulse_len steps), targets the ramped ±1 memory y[lead + transient .. lead + T_in).
// The ramp is computed as WorkingMemory._signals / ramp_targets compute it, run by run with
// the same float64 operations in the same order, so the values are torch's bit for bit.
// off_cue sets every "off" line's onset at t = 0 (in the onsets array too).
void wm_signals(uint8_t* onsets, int64_t n_seeds, int64_t batch, int64_t n_bits,
                int64_t t_plus, int64_t pulse_len, double slope, int64_t transient,
                int64_t segment, int64_t lead, int32_t off_cue, float* inputs,
                float* targets) {
  const int64_t lines = 2 * n_bits, total = transient + segment;
  const float slope32 = static_cast<float>(slope);
  std::vector<int8_t> sgn(t_plus);
  std::vector<double> y(t_plus);
  for (int64_t s = 0; s < n_seeds; ++s)
    for (int64_t b = 0; b < batch; ++b) {
      uint8_t* on_sb = onsets + (s * batch + b) * lines * t_plus;
      if (off_cue)
        for (int64_t k = 0; k < n_bits; ++k) on_sb[(2 * k + 1) * t_plus] = 1;
      for (int64_t j = 0; j < lines; ++j) {  // pulses
        const uint8_t* o = on_sb + j * t_plus;
        int64_t count = 0;
        for (int64_t t = 0; t < total; ++t) {
          count += o[t];
          if (t >= pulse_len) count -= o[t - pulse_len];
          inputs[((s * total + t) * batch + b) * lines + j] = count > 0 ? 1.0f : 0.0f;
        }
      }
      for (int64_t k = 0; k < n_bits; ++k) {  // targets
        const uint8_t* on = on_sb + 2 * k * t_plus;
        const uint8_t* off = on_sb + (2 * k + 1) * t_plus;
        // the state sign at each t: the last event at or before t ("on" wins ties; at t = 0
        // the state is +1 after an "on" onset, else −1)
        sgn[0] = on[0] ? 1 : -1;
        for (int64_t t = 1; t < t_plus; ++t)
          sgn[t] = on[t] ? 1 : (off[t] ? -1 : sgn[t - 1]);
        // runs of constant sign over t >= 1 (column j = t − 1 in torch's arrays); v = value
        // before each run (clamped ramps), offset = v − slope·sign·(j_start − 1),
        // y_t = clamp(offset + float(slope)·s·j)
        y[0] = 0.0;
        double v = 0.0, offset = 0.0;
        int64_t start = 1;
        for (int64_t t = 1; t < t_plus; ++t) {
          if (t == 1 || sgn[t] != sgn[t - 1]) {
            if (t > 1) {
              const double run_sign = static_cast<double>(sgn[t - 1]);
              const double run_len = static_cast<double>(t - start);
              const double next = v + slope * run_sign * run_len;
              v = next < -1.0 ? -1.0 : (next > 1.0 ? 1.0 : next);
            }
            start = t;
            // torch indexes steps from t = 1 (its column j = t − 1): start − 1 − 1
            offset = v - slope * static_cast<double>(sgn[t]) * static_cast<double>(start - 2);
          }
          const double step = static_cast<double>(slope32 * static_cast<float>(sgn[t]));
          const double ramp = offset + step * static_cast<double>(t - 1);
          y[t] = ramp < -1.0 ? -1.0 : (ramp > 1.0 ? 1.0 : ramp);
        }
        for (int64_t t = 0; t < segment; ++t)
          targets[((s * segment + t) * batch + b) * n_bits + k] =
              static_cast<float>(y[lead + transient + t]);
      }
    }
}

}  // extern "C"
