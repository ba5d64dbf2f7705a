// Fused CPU kernels for the population recurrences: the leaky RNN's forward and BPTT, and tanh.
//
// Conventions follow study.core.networks: S seeds, T steps, B sequences, N units; arrays are
// contiguous float32, seed-major then time-major: drive and states (S, T, B, N), x0 (S, B, N),
// W (S, N, N) in the row-vector convention (x W). One seed at a time runs all T steps, so its
// W (N·N floats) stays in L1/L2 for the whole scan; each step is one register-blocked
// (B × N) · (N × N) product with the element-wise update, tanh included, fused into it.
//
// Compiled with -O3 -march=native -ffp-contract=fast: products and sums are fused where the
// compiler likes, so results equal torch's to float rounding, not bit for bit (the order of the
// sums inside a matrix product already differs from MKL's).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int kL = 16;  // floats per vector
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));

inline vf splat(float v) {
#if defined(__AVX512F__)
  return _mm512_set1_ps(v);
#else
  return vf{v, v, v, v, v, v, v, v, v, v, v, v, v, v, v, v};
#endif
}
inline vf load(const float* p) { vf v; std::memcpy(&v, p, 64); return v; }
inline void store(float* p, vf v) { std::memcpy(p, &v, 64); }

// the first n (< 16) floats; the rest of the vector is zero
inline vf load_n(const float* p, int n) {
#if defined(__AVX512F__)
  return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
#else
  vf v = {};
  for (int i = 0; i < n; ++i) v[i] = p[i];
  return v;
#endif
}

inline void store_n(float* p, vf v, int n) {
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
#else
  for (int i = 0; i < n; ++i) p[i] = v[i];
#endif
}

// lanes [16c, 16c + 16) of a row of n floats
inline vf load_lanes(const float* row, int c, int n) {
  const int left = n - c * kL;
  return left >= kL ? load(row + c * kL) : load_n(row + c * kL, left);
}

inline void store_lanes(float* row, int c, int n, vf v) {
  const int left = n - c * kL;
  if (left >= kL) store(row + c * kL, v); else store_n(row + c * kL, v, left);
}

// tanh to ~2 ulp: an odd polynomial below 0.625, (1 − e^{−2|x|}) / (1 + e^{−2|x|}) above;
// the coefficients are least-squares fits (relative error 2e-10 for the polynomial, 2e-9 for
// exp on [−ln2/2, ln2/2]). NaN stays NaN.
inline vf vtanh(vf x) {
  const vi sign = reinterpret_cast<vi>(x) & static_cast<int32_t>(0x80000000u);
  vf a = reinterpret_cast<vf>(reinterpret_cast<vi>(x) & 0x7fffffff);
  // small |x|: x + x·z·P(z), z = x²
  const vf z = a * a;
  vf p = splat(0.0021536122209794097f);
  p = p * z + -0.0081899686238825261f;
  p = p * z + 0.021706260457162053f;
  p = p * z + -0.053947889872659666f;
  p = p * z + 0.13333216148884625f;
  p = p * z + -0.33333331108442127f;
  const vf small = a + a * z * p;
  // large |x|: t = e^{−2a} = 2^k · e^r, |r| <= ln2/2
  const vf y = (a < 9.5f ? a : splat(9.5f)) * -2.0f;
  const vf kf = __builtin_convertvector(__builtin_convertvector(
      y * 1.4426950408889634f + (y < 0.0f ? -0.5f : 0.5f), vi), vf);  // round to nearest
  const vf r = (y - kf * 0.693145751953125f) - kf * 1.428606765330187e-06f;
  vf e = splat(0.0013859292038158574f);
  e = e * r + 0.0083747645730146564f;
  e = e * r + 0.041667724331964195f;
  e = e * r + 0.16666420938058199f;
  e = e * r + 0.49999995350851872f;
  e = e * r + 1.0000000360936792f;
  e = e * r + 1.0f;
  const vi k = __builtin_convertvector(kf, vi);
  const vf t = e * reinterpret_cast<vf>((k + 127) << 23);
  const vf large = (1.0f - t) / (1.0f + t);
  vf out = a < 0.625f ? small : large;
  out = reinterpret_cast<vf>(reinterpret_cast<vi>(out) | sign);
  return x != x ? x : out;
}

// out[R][16C] = A[R][K] · W[K][16C] (row strides lda, ldw, ldo), accumulators in registers
template <int R, int C>
void micro(const float* a, int64_t lda, const float* w, int64_t ldw, int k_len, float* out,
           int64_t ldo) {
  vf acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = vf{};
  for (int k = 0; k < k_len; ++k) {
    vf wk[C];
    for (int c = 0; c < C; ++c) wk[c] = load(w + k * ldw + c * kL);
    for (int r = 0; r < R; ++r) {
      const vf ar = splat(a[r * lda + k]);
      for (int c = 0; c < C; ++c) acc[r][c] += ar * wk[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) store(out + r * ldo + c * kL, acc[r][c]);
}

typedef void (*MicroFn)(const float*, int64_t, const float*, int64_t, int, float*, int64_t);

template <int C>
MicroFn micro_rows(int rows) {
  switch (rows) {
    case 1: return micro<1, C>;
    case 2: return micro<2, C>;
    case 3: return micro<3, C>;
    case 4: return micro<4, C>;
    case 5: return micro<5, C>;
    case 6: return micro<6, C>;
    case 7: return micro<7, C>;
    default: return micro<8, C>;
  }
}

MicroFn micro_fn(int rows, int vecs) {
  switch (vecs) {
    case 1: return micro_rows<1>(rows);
    case 2: return micro_rows<2>(rows);
    case 3: return micro_rows<3>(rows);
    default: return micro_rows<4>(rows);
  }
}

// rows per register block for a product n_vec vectors wide (accumulators + W row + broadcast
// within 32 vector registers), balanced over the batch (20 rows: 7, 7, 6 rather than 8, 8, 4)
inline int block_rows(int n_vec, int64_t batch) {
  const int64_t most = std::min(n_vec, 4) >= 4 ? 6 : 8;
  const int64_t blocks = (batch + most - 1) / most;
  return static_cast<int>((batch + blocks - 1) / blocks);
}

// out[rows][np] = a[rows][k] · w[k][np], np a multiple of 16
void gemm_rows(const float* a, int64_t lda, int rows, const float* w, int np, int k_len,
               float* out) {
  const int n_vec = np / kL;
  for (int c0 = 0; c0 < n_vec; c0 += 4) {
    const int cv = std::min(4, n_vec - c0);
    micro_fn(rows, cv)(a, lda, w + c0 * kL, np, k_len, out + c0 * kL, np);
  }
}

inline int padded(int n) { return (n + kL - 1) / kL * kL; }

// W (n × n, row stride n) into wp (n × np), zero columns after n; transposed if asked
void pad_weights(const float* w, int n, int np, bool transpose, float* wp) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < np; ++j)
      wp[i * np + j] = j < n ? (transpose ? w[j * n + i] : w[i * n + j]) : 0.0f;
}

}  // namespace

extern "C" {

// y = tanh(x) over n floats
void tanh_array(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kL <= n; i += kL) store(y + i, vtanh(load(x + i)));
  if (i < n) store_n(y + i, vtanh(load_n(x + i, static_cast<int>(n - i))),
                     static_cast<int>(n - i));
}

// The leaky recurrence x_t = (1 − α) x_{t−1} + α tanh(x_{t−1}) W + d_t for S seeds.
//   drive (S, T, B, N), x0 (S, B, N), w (S, N, N).
//   xs (S, T, B, N) or null: every state; rates (S, T + 1, B, N) or null: tanh(x_{t−1}) for
//   t = 0..T (rates[0] = tanh(x0), rates[t + 1] = tanh(x_t)); x_last (S, B, N) or null.
void leaky_forward(const float* drive, const float* x0, const float* w, float alpha,
                   int64_t n_seeds, int64_t n_steps, int64_t batch, int64_t n,
                   float* xs, float* rates, float* x_last) {
  const int ni = static_cast<int>(n), np = padded(ni), nv = np / kL;
  const int rb = block_rows(nv, batch);
  const int64_t bn = batch * n;
  std::vector<float> wp(static_cast<size_t>(n) * np), x(batch * np), r(batch * np),
      acc(static_cast<size_t>(rb) * np);
  const vf keep = splat(1.0f - alpha), va = splat(alpha);
  for (int64_t s = 0; s < n_seeds; ++s) {
    pad_weights(w + s * n * n, ni, np, false, wp.data());
    for (int64_t b = 0; b < batch; ++b) {
      for (int c = 0; c < nv; ++c) {
        const vf xv = load_lanes(x0 + s * bn + b * n, c, ni);
        const vf rv = vtanh(xv);
        store(&x[b * np + c * kL], xv);
        store(&r[b * np + c * kL], rv);
        if (rates) store_lanes(rates + s * (n_steps + 1) * bn + b * n, c, ni, rv);
      }
    }
    for (int64_t t = 0; t < n_steps; ++t) {
      const float* d = drive + (s * n_steps + t) * bn;
      float* xs_t = xs ? xs + (s * n_steps + t) * bn : nullptr;
      float* r_t = rates ? rates + (s * (n_steps + 1) + t + 1) * bn : nullptr;
      for (int64_t b0 = 0; b0 < batch; b0 += rb) {
        const int rows = static_cast<int>(std::min<int64_t>(rb, batch - b0));
        gemm_rows(&r[b0 * np], np, rows, wp.data(), np, ni, acc.data());
        for (int i = 0; i < rows; ++i) {
          const int64_t b = b0 + i;
          for (int c = 0; c < nv; ++c) {
            const vf dv = load_lanes(d + b * n, c, ni);
            const vf xn = va * load(&acc[i * np + c * kL]) + (keep * load(&x[b * np + c * kL]) + dv);
            const vf rn = vtanh(xn);
            store(&x[b * np + c * kL], xn);
            store(&r[b * np + c * kL], rn);
            if (xs_t) store_lanes(xs_t + b * n, c, ni, xn);
            if (r_t) store_lanes(r_t + b * n, c, ni, rn);
          }
        }
      }
    }
    if (x_last)
      for (int64_t b = 0; b < batch; ++b)
        for (int c = 0; c < nv; ++c)
          store_lanes(x_last + s * bn + b * n, c, ni, load(&x[b * np + c * kL]));
  }
}

// BPTT of leaky_forward. grad_xs (S, T, B, N) or null = dL/dx_t from outside the recurrence;
// grad_ys (S, T, B, N) or null = dL/d tanh(x_t); rates as written by leaky_forward. Writes
// grad_drive (S, T, B, N) = dL/dd_t and grad_x0 (S, B, N). dL/dW = α Σ_t rates[t]ᵀ
// grad_drive[t] is left to one large matrix product by the caller.
void leaky_backward(const float* grad_xs, const float* grad_ys, const float* rates,
                    const float* w, float alpha, int64_t n_seeds, int64_t n_steps,
                    int64_t batch, int64_t n, float* grad_drive, float* grad_x0) {
  const int ni = static_cast<int>(n), np = padded(ni), nv = np / kL;
  const int rb = block_rows(nv, batch);
  const int64_t bn = batch * n;
  std::vector<float> wtp(static_cast<size_t>(n) * np), delta(batch * np),
      acc(static_cast<size_t>(rb) * np);
  const vf keep = splat(1.0f - alpha), va = splat(alpha), one = splat(1.0f);
  for (int64_t s = 0; s < n_seeds; ++s) {
    pad_weights(w + s * n * n, ni, np, true, wtp.data());
    std::fill(delta.begin(), delta.end(), 0.0f);
    const float* rs = rates + s * (n_steps + 1) * bn;
    for (int64_t t = n_steps - 1; t >= 0; --t) {
      const int64_t off = (s * n_steps + t) * bn;
      const float* y_t = rs + (t + 1) * bn;  // tanh(x_t)
      const float* r_prev = rs + t * bn;  // tanh(x_{t−1})
      for (int64_t b = 0; b < batch; ++b) {
        for (int c = 0; c < nv; ++c) {
          vf g = grad_xs ? load_lanes(grad_xs + off + b * n, c, ni) : vf{};
          if (grad_ys) {
            const vf y = load_lanes(y_t + b * n, c, ni);
            g += load_lanes(grad_ys + off + b * n, c, ni) * (one - y * y);
          }
          const vf dv = load(&delta[b * np + c * kL]) + g;
          store(&delta[b * np + c * kL], dv);
          store_lanes(grad_drive + off + b * n, c, ni, dv);
        }
      }
      for (int64_t b0 = 0; b0 < batch; b0 += rb) {
        const int rows = static_cast<int>(std::min<int64_t>(rb, batch - b0));
        gemm_rows(&delta[b0 * np], np, rows, wtp.data(), np, ni, acc.data());
        for (int i = 0; i < rows; ++i) {
          const int64_t b = b0 + i;
          for (int c = 0; c < nv; ++c) {
            const vf rp = load_lanes(r_prev + b * n, c, ni);
            const vf dv = load(&delta[b * np + c * kL]);
            store(&delta[b * np + c * kL],
                  keep * dv + va * load(&acc[i * np + c * kL]) * (one - rp * rp));
          }
        }
      }
    }
    for (int64_t b = 0; b < batch; ++b)
      for (int c = 0; c < nv; ++c)
        store_lanes(grad_x0 + s * bn + b * n, c, ni, load(&delta[b * np + c * kL]));
  }
}

}  // extern "C"
