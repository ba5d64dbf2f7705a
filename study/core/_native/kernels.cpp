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
#include <limits>
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

// the sum of the 16 lanes
inline float hsum(vf v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(v);
#else
  float s = 0.0f;
  for (int i = 0; i < kL; ++i) s += v[i];
  return s;
#endif
}
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

// e^y for y in [−87, 88] (clamped to it): 2^k · e^r with |r| <= ln2/2 and a degree-6
// least-squares polynomial for e^r (relative error 2e-9), so within ~2 ulp
inline vf vexp(vf y) {
  y = y < -87.0f ? splat(-87.0f) : y;
  y = y > 88.0f ? splat(88.0f) : y;
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
  return e * reinterpret_cast<vf>((k + 127) << 23);
}

// tanh to ~2 ulp: an odd polynomial below 0.625 (least-squares fit, relative error 2e-10),
// (1 − e^{−2|x|}) / (1 + e^{−2|x|}) above. NaN stays NaN.
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
  const vf t = vexp((a < 9.5f ? a : splat(9.5f)) * -2.0f);
  const vf large = (1.0f - t) / (1.0f + t);
  vf out = a < 0.625f ? small : large;
  out = reinterpret_cast<vf>(reinterpret_cast<vi>(out) | sign);
  return x != x ? x : out;
}

// the logistic 1 / (1 + e^{−x}); NaN stays NaN
inline vf vsigmoid(vf x) {
  const vf out = 1.0f / (1.0f + vexp(-x));
  return x != x ? x : out;
}

// out[R][16C] (+)= A[R][K] · W[K][16C], accumulators in registers. A[r][k] is
// a[r·a_rs + k·a_ks] (a_ks = 1: row-major A; a_rs = 1: A is the transpose of a row-major
// array); W and out have row strides ldw and ldo. With accumulate, out's values are added to.
template <int R, int C>
void micro(const float* a, int64_t a_rs, int64_t a_ks, const float* w, int64_t ldw, int k_len,
           float* out, int64_t ldo, bool accumulate) {
  vf acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = accumulate ? load(out + r * ldo + c * kL) : vf{};
  for (int k = 0; k < k_len; ++k) {
    vf wk[C];
    for (int c = 0; c < C; ++c) wk[c] = load(w + k * ldw + c * kL);
    const float* ak = a + k * a_ks;
    for (int r = 0; r < R; ++r) {
      const vf ar = splat(ak[r * a_rs]);
      for (int c = 0; c < C; ++c) acc[r][c] += ar * wk[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) store(out + r * ldo + c * kL, acc[r][c]);
}

typedef void (*MicroFn)(const float*, int64_t, int64_t, const float*, int64_t, int, float*,
                        int64_t, bool);

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
// within 32 vector registers), balanced over the rows (20 rows: 7, 7, 6 rather than 8, 8, 4)
inline int block_rows(int n_vec, int64_t rows) {
  const int64_t most = std::min(n_vec, 4) >= 4 ? 6 : 8;
  const int64_t blocks = (rows + most - 1) / most;
  return static_cast<int>((rows + blocks - 1) / blocks);
}

// out[rows][np] = a[rows][k] · w[k][np] for at most 8 rows, np a multiple of 16
void gemm_rows(const float* a, int64_t lda, int rows, const float* w, int np, int k_len,
               float* out) {
  const int n_vec = np / kL;
  for (int c0 = 0; c0 < n_vec; c0 += 4) {
    const int cv = std::min(4, n_vec - c0);
    micro_fn(rows, cv)(a, lda, 1, w + c0 * kL, np, k_len, out + c0 * kL, np, false);
  }
}

// C[rows][nc] (+)= A[rows][K] · W[K][nc] for any number of rows; nc a multiple of 16, W's
// row stride ldw, C's ldc; A[r][k] = a[r·a_rs + k·a_ks]
void gemm(const float* a, int64_t a_rs, int64_t a_ks, int64_t rows, const float* w,
          int64_t ldw, int nc, int k_len, float* c, int64_t ldc, bool accumulate) {
  const int n_vec = nc / kL;
  const int rb = block_rows(n_vec, rows);
  for (int64_t r0 = 0; r0 < rows; r0 += rb) {
    const int nr = static_cast<int>(std::min<int64_t>(rb, rows - r0));
    for (int c0 = 0; c0 < n_vec; c0 += 4) {
      const int cv = std::min(4, n_vec - c0);
      micro_fn(nr, cv)(a + r0 * a_rs, a_rs, a_ks, w + c0 * kL, ldw, k_len,
                       c + r0 * ldc + c0 * kL, ldc, accumulate);
    }
  }
}

inline int padded(int n) { return (n + kL - 1) / kL * kL; }

// W (n × n, row stride n) into wp (n × np), zero columns after n; transposed if asked
void pad_weights(const float* w, int n, int np, bool transpose, float* wp) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < np; ++j)
      wp[i * np + j] = j < n ? (transpose ? w[j * n + i] : w[i * n + j]) : 0.0f;
}

// -- critic helpers ------------------------------------------------------------------------

// ReLU (slope 0) or leaky ReLU, and its backward from the activation's output h
// (h > 0 exactly where the pre-activation was > 0, for slope >= 0)
inline vf activate(vf z, float slope) {
  // z < 0, not z <= 0: a NaN stays NaN, as in torch (a diverged run must be seen)
  return slope == 0.0f ? (z < 0.0f ? vf{} : z) : (z > 0.0f ? z : z * slope);
}

inline vf activate_grad(vf h, vf g, float slope) {
  return slope == 0.0f ? (h > 0.0f ? g : vf{}) : (h > 0.0f ? g : g * slope);
}



// rows × h block: x[i] = act(x[i] + bias) in place (bias may be null)
void bias_act(float* x, int64_t rows, int h, const float* bias, float slope) {
  const int nv = h / kL;
  for (int64_t i = 0; i < rows; ++i)
    for (int c = 0; c < nv; ++c) {
      vf v = load(x + i * h + c * kL);
      if (bias) v += load(bias + c * kL);
      store(x + i * h + c * kL, activate(v, slope));
    }
}

// the transpose of w (rows × cols) into wt (cols × ldt), zero columns from rows to ldt
void transpose_pad(const float* w, int rows, int cols, int ldt, float* wt) {
  for (int j = 0; j < cols; ++j)
    for (int i = 0; i < ldt; ++i) wt[j * ldt + i] = i < rows ? w[i * cols + j] : 0.0f;
}

// out[rows][d] = g[rows][h] · wt[h][dp], written unpadded (d columns of dp)
void gemm_unpad(const float* g, int64_t rows, int h, const float* wt, int d, int dp,
                float* tmp, float* out) {
  gemm(g, h, 1, rows, wt, dp, dp, h, tmp, dp, false);
  for (int64_t i = 0; i < rows; ++i) std::memcpy(out + i * d, tmp + i * dp, sizeof(float) * d);
}

constexpr int64_t kChunk = 48;  // rows of one side per pass (activations stay in L1/L2)

}  // namespace

extern "C" {

// y = tanh(x) over n floats
void tanh_array(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kL <= n; i += kL) store(y + i, vtanh(load(x + i)));
  if (i < n) store_n(y + i, vtanh(load_n(x + i, static_cast<int>(n - i))),
                     static_cast<int>(n - i));
}

// The leaky network of S seeds (study.core.networks.LeakyRNN), drive, recurrence and readout:
//   d_t = α (u_t W_in + b) + σ ξ_t,  x_t = (1 − α) x_{t−1} + α tanh(x_{t−1}) W + d_t,
//   z_t = tanh(x_t) W_out + b_out.
// u (S, T, B, I) or null (I = 0), noise ξ (S, T, B, N) or null (u_ss, noise_ss: their seed
// strides in floats, so a time slice of a longer array is read in place), x0 (S, B, N), w_in (S, I, N),
// bias (S, N) or null, w (S, N, N), w_out (S, N, O) and b_out (S, O) (O = 0: no readout).
// Outputs, each written when not null: xs (S, T, B, N) every state; ys (S, T, B, N) every rate
// tanh(x_t); r0 (S, B, N) = tanh(x0); out (S, T, B, O); x_last (S, B, N).
void leaky_net_forward(const float* u, int64_t u_ss, const float* noise, int64_t noise_ss,
                       float sigma, const float* x0,
                       const float* w_in, const float* bias, const float* w,
                       const float* w_out, const float* b_out, float alpha, int64_t n_seeds,
                       int64_t n_steps, int64_t batch, int64_t n_in, int64_t n, int64_t n_out,
                       float* xs, float* ys, float* r0, float* out, float* x_last) {
  const int ni = static_cast<int>(n), np = padded(ni), nv = np / kL;
  const int rb = block_rows(nv, batch);
  const int64_t bn = batch * n;
  std::vector<float> wp(static_cast<size_t>(n) * np), winp(std::max<int64_t>(n_in, 1) * np),
      biasp(np), woutt(std::max<int64_t>(n_out, 1) * np), x(batch * np), r(batch * np),
      acc(static_cast<size_t>(rb) * np);
  const vf keep = splat(1.0f - alpha), va = splat(alpha), vs = splat(sigma);
  for (int64_t s = 0; s < n_seeds; ++s) {
    pad_weights(w + s * n * n, ni, np, false, wp.data());
    for (int64_t i = 0; i < n_in; ++i)
      for (int j = 0; j < np; ++j) winp[i * np + j] = j < ni ? w_in[(s * n_in + i) * n + j] : 0.0f;
    for (int j = 0; j < np; ++j) biasp[j] = (bias && j < ni) ? bias[s * n + j] : 0.0f;
    for (int64_t o = 0; o < n_out; ++o)
      for (int j = 0; j < np; ++j) woutt[o * np + j] = j < ni ? w_out[(s * n + j) * n_out + o] : 0.0f;
    for (int64_t b = 0; b < batch; ++b)
      for (int c = 0; c < nv; ++c) {
        const vf xv = load_lanes(x0 + s * bn + b * n, c, ni);
        const vf rv = vtanh(xv);
        store(&x[b * np + c * kL], xv);
        store(&r[b * np + c * kL], rv);
        if (r0) store_lanes(r0 + s * bn + b * n, c, ni, rv);
      }
    for (int64_t t = 0; t < n_steps; ++t) {
      const int64_t off = (s * n_steps + t) * bn;
      const float* u_t = u ? u + s * u_ss + t * batch * n_in : nullptr;
      const float* xi_t = noise ? noise + s * noise_ss + t * bn : nullptr;
      for (int64_t b0 = 0; b0 < batch; b0 += rb) {
        const int rows = static_cast<int>(std::min<int64_t>(rb, batch - b0));
        gemm_rows(&r[b0 * np], np, rows, wp.data(), np, ni, acc.data());
        for (int i = 0; i < rows; ++i) {
          const int64_t b = b0 + i;
          for (int c = 0; c < nv; ++c) {
            vf dv = load(&biasp[c * kL]);
            for (int64_t k = 0; k < n_in; ++k)
              dv += splat(u_t[b * n_in + k]) * load(&winp[k * np + c * kL]);
            dv = va * dv;
            if (xi_t) dv += vs * load_lanes(xi_t + b * n, c, ni);
            const vf xn = va * load(&acc[i * np + c * kL]) + (keep * load(&x[b * np + c * kL]) + dv);
            const vf rn = vtanh(xn);
            store(&x[b * np + c * kL], xn);
            store(&r[b * np + c * kL], rn);
            if (xs) store_lanes(xs + off + b * n, c, ni, xn);
            if (ys) store_lanes(ys + off + b * n, c, ni, rn);
          }
          if (out)
            for (int64_t o = 0; o < n_out; ++o) {
              vf z = vf{};
              for (int c = 0; c < nv; ++c) z += load(&r[b * np + c * kL]) * load(&woutt[o * np + c * kL]);
              out[((s * n_steps + t) * batch + b) * n_out + o] = hsum(z) + b_out[s * n_out + o];
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

// BPTT of leaky_net_forward (u, ys, r0 as it wrote them). Upstream gradients, each may be
// null: grad_xs = dL/dx_t, grad_ys = dL/d tanh(x_t), grad_out = dL/dz_t; and the gradient of
// sampled rates, grad_sampled (S, K, N) with sample_map (S, T·B) giving each row t·B + b its
// place k in it (−1: not sampled), so a penalty on a row sample needs no dense gradient.
// Writes dL/dx0 into
// grad_x0 (S, B, N) and, when not null, grad_noise (S, T, B, N) = σ dL/dd_t,
// g_w_in (S, I, N), g_bias (S, N), g_w (S, N, N),
// g_w_out (S, N, O), g_b_out (S, O); each weight gradient is accumulated step by step from
// dL/dd_t while it is in cache, so dL/dd_t is never stored.
void leaky_net_backward(const float* u, int64_t u_ss, const float* ys, const float* r0,
                        const float* w_in,
                        const float* w, const float* w_out, float alpha, int64_t n_seeds,
                        int64_t n_steps, int64_t batch, int64_t n_in, int64_t n,
                        int64_t n_out, const float* grad_xs, const float* grad_ys,
                        const float* grad_out, const int32_t* sample_map,
                        const float* grad_sampled, int64_t n_sampled, float sigma,
                        float* grad_noise, float* grad_x0,
                        float* g_w_in, float* g_bias, float* g_w, float* g_w_out,
                        float* g_b_out) {
  (void)w_in;
  const vf vsig = splat(sigma);
  const int ni = static_cast<int>(n), np = padded(ni), nv = np / kL;
  const int rb = block_rows(nv, batch);
  const int64_t bn = batch * n;
  const int64_t no = grad_out ? n_out : 0;
  std::vector<float> wtp(static_cast<size_t>(n) * np), woutt(std::max<int64_t>(n_out, 1) * np),
      delta(batch * np), acc(static_cast<size_t>(rb) * np), gw(static_cast<size_t>(n) * np),
      gwin(std::max<int64_t>(n_in, 1) * np), gbias(np), gwoutt(std::max<int64_t>(n_out, 1) * np);
  const vf keep = splat(1.0f - alpha), va = splat(alpha), one = splat(1.0f);
  for (int64_t s = 0; s < n_seeds; ++s) {
    pad_weights(w + s * n * n, ni, np, true, wtp.data());
    for (int64_t o = 0; o < n_out; ++o)
      for (int j = 0; j < np; ++j) woutt[o * np + j] = j < ni ? w_out[(s * n + j) * n_out + o] : 0.0f;
    std::fill(delta.begin(), delta.end(), 0.0f);
    std::fill(gw.begin(), gw.end(), 0.0f);
    std::fill(gwin.begin(), gwin.end(), 0.0f);
    std::fill(gbias.begin(), gbias.end(), 0.0f);
    std::fill(gwoutt.begin(), gwoutt.end(), 0.0f);
    std::vector<double> gbout(std::max<int64_t>(n_out, 1), 0.0);
    for (int64_t t = n_steps - 1; t >= 0; --t) {
      const int64_t off = (s * n_steps + t) * bn;
      const float* y_t = ys + off;
      const float* r_prev = t > 0 ? ys + off - bn : r0 + s * bn;
      const float* go = grad_out ? grad_out + (s * n_steps + t) * batch * n_out : nullptr;
      for (int64_t b = 0; b < batch; ++b) {
        for (int c = 0; c < nv; ++c) {
          const vf y = load_lanes(y_t + b * n, c, ni);
          vf gy = grad_ys ? load_lanes(grad_ys + off + b * n, c, ni) : vf{};
          if (sample_map) {
            const int32_t k = sample_map[s * n_steps * batch + t * batch + b];
            if (k >= 0) gy += load_lanes(grad_sampled + (s * n_sampled + k) * n, c, ni);
          }
          for (int64_t o = 0; o < no; ++o) {
            const vf gov = splat(go[b * n_out + o]);
            gy += gov * load(&woutt[o * np + c * kL]);
            store(&gwoutt[o * np + c * kL], load(&gwoutt[o * np + c * kL]) + gov * y);
          }
          vf g = gy * (one - y * y);
          if (grad_xs) g += load_lanes(grad_xs + off + b * n, c, ni);
          const vf dv = load(&delta[b * np + c * kL]) + g;
          store(&delta[b * np + c * kL], dv);
          if (grad_noise) store_lanes(grad_noise + off + b * n, c, ni, vsig * dv);
        }
        for (int64_t o = 0; o < no; ++o) gbout[o] += go[b * n_out + o];
      }
      // delta = dL/dd_t: weight gradients of this step (before delta moves on)
      if (g_w) gemm(r_prev, 1, n, n, delta.data(), np, np, static_cast<int>(batch), gw.data(),
                    np, true);
      if (g_w_in && n_in)
        gemm(u + s * u_ss + t * batch * n_in, 1, n_in, n_in, delta.data(), np, np,
             static_cast<int>(batch), gwin.data(), np, true);
      if (g_bias)
        for (int64_t b = 0; b < batch; ++b)
          for (int c = 0; c < nv; ++c)
            store(&gbias[c * kL], load(&gbias[c * kL]) + load(&delta[b * np + c * kL]));
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
    if (g_w)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) g_w[(s * n + i) * n + j] = alpha * gw[i * np + j];
    if (g_w_in)
      for (int64_t i = 0; i < n_in; ++i)
        for (int64_t j = 0; j < n; ++j) g_w_in[(s * n_in + i) * n + j] = alpha * gwin[i * np + j];
    if (g_bias)
      for (int64_t j = 0; j < n; ++j) g_bias[s * n + j] = alpha * gbias[j];
    if (g_w_out)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t o = 0; o < n_out; ++o)
          g_w_out[(s * n + j) * n_out + o] = grad_out ? gwoutt[o * np + j] : 0.0f;
    if (g_b_out)
      for (int64_t o = 0; o < n_out; ++o)
        g_b_out[s * n_out + o] = grad_out ? static_cast<float>(gbout[o]) : 0.0f;
  }
}

// The GRU of S seeds (study.core.networks.GRU: Keras, reset_after=True), gate blocks (z, r, h):
//   gx = u_t W + b, gh = h_{t−1} U + b_rec,  z = σ(gx_z + gh_z), r = σ(gx_r + gh_r),
//   c = tanh(gx_h + r ⊙ gh_h),  h_t = c + z ⊙ (h_{t−1} − c) + σ_n ξ_t,  y_t = h_t W_out + b_out.
// u (S, T, B, I), noise ξ (S, T, B, N) or null, h0 (S, B, N), w (S, I, 3N), b (S, 3N),
// u_rec (S, N, 3N), b_rec (S, 3N), w_out (S, N, O), b_out (S, O) (O = 0: no readout).
// Outputs, each when not null: hs (S, T, B, N), out (S, T, B, O), h_last (S, B, N).
// Strides: u_ss and noise_ss are the seed strides of u and ξ in floats (a time slice of a
// longer array), their other axes contiguous.

namespace {

struct GruWeights {
  int ni, np, nv;
  std::vector<float> up, upt, wp, bp, brp, woutt;
  // U as (N × 3NP) with each gate block padded to NP columns; Uᵀ as (3NP × NP); W (I × 3NP)
  GruWeights(int64_t n, int64_t n_in, int64_t n_out)
      : ni(static_cast<int>(n)), np(padded(static_cast<int>(n))), nv(np / kL),
        up(n * 3 * np), upt(3 * np * np), wp(std::max<int64_t>(n_in, 1) * 3 * np),
        bp(3 * np), brp(3 * np), woutt(std::max<int64_t>(n_out, 1) * np) {}
  void load_seed(int64_t s, int64_t n, int64_t n_in, int64_t n_out, const float* w,
                 const float* b, const float* u_rec, const float* b_rec, const float* w_out) {
    std::fill(up.begin(), up.end(), 0.0f);
    std::fill(upt.begin(), upt.end(), 0.0f);
    std::fill(wp.begin(), wp.end(), 0.0f);
    std::fill(bp.begin(), bp.end(), 0.0f);
    std::fill(brp.begin(), brp.end(), 0.0f);
    std::fill(woutt.begin(), woutt.end(), 0.0f);
    for (int g = 0; g < 3; ++g)
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t i = 0; i < n; ++i) {
          const float v = u_rec[(s * n + i) * 3 * n + g * n + j];
          up[i * 3 * np + g * np + j] = v;
          upt[(g * np + j) * np + i] = v;
        }
        for (int64_t i = 0; i < n_in; ++i) wp[i * 3 * np + g * np + j] = w[(s * n_in + i) * 3 * n + g * n + j];
        bp[g * np + j] = b[s * 3 * n + g * n + j];
        brp[g * np + j] = b_rec[s * 3 * n + g * n + j];
      }
    for (int64_t o = 0; o < n_out; ++o)
      for (int64_t j = 0; j < n; ++j) woutt[o * np + j] = w_out[(s * n + j) * n_out + o];
  }
  // gx for row u_row (I values), gate g, lanes c
  inline vf gx(const float* u_row, int64_t n_in, int g, int c) const {
    vf v = load(&bp[g * np + c * kL]);
    for (int64_t k = 0; k < n_in; ++k) v += splat(u_row[k]) * load(&wp[k * 3 * np + g * np + c * kL]);
    return v;
  }
};

}  // namespace

void gru_forward(const float* u, int64_t u_ss, const float* noise, int64_t noise_ss,
                 float sigma, const float* h0, const float* w, const float* b,
                 const float* u_rec, const float* b_rec, const float* w_out, const float* b_out,
                 int64_t n_seeds, int64_t n_steps, int64_t batch, int64_t n_in, int64_t n,
                 int64_t n_out, float* hs, float* out, float* h_last) {
  GruWeights gw(n, n_in, n_out);
  const int ni = gw.ni, np = gw.np, nv = gw.nv, np3 = 3 * np;
  const int rb = block_rows(3 * nv, batch);
  const int64_t bn = batch * n;
  std::vector<float> h(batch * np), acc(static_cast<size_t>(rb) * np3);
  const vf vs = splat(sigma);
  for (int64_t s = 0; s < n_seeds; ++s) {
    gw.load_seed(s, n, n_in, n_out, w, b, u_rec, b_rec, w_out);
    for (int64_t bb = 0; bb < batch; ++bb)
      for (int c = 0; c < nv; ++c) store(&h[bb * np + c * kL], load_lanes(h0 + s * bn + bb * n, c, ni));
    for (int64_t t = 0; t < n_steps; ++t) {
      const float* u_t = u + s * u_ss + t * batch * n_in;
      const float* xi_t = noise ? noise + s * noise_ss + t * bn : nullptr;
      const int64_t off = (s * n_steps + t) * bn;
      for (int64_t b0 = 0; b0 < batch; b0 += rb) {
        const int rows = static_cast<int>(std::min<int64_t>(rb, batch - b0));
        gemm_rows(&h[b0 * np], np, rows, gw.up.data(), np3, ni, acc.data());
        for (int i = 0; i < rows; ++i) {
          const int64_t bb = b0 + i;
          const float* u_row = u_t + bb * n_in;
          for (int c = 0; c < nv; ++c) {
            const float* a = &acc[i * np3];
            const vf z = vsigmoid(gw.gx(u_row, n_in, 0, c) + load(a + c * kL) + load(&gw.brp[c * kL]));
            const vf r = vsigmoid(gw.gx(u_row, n_in, 1, c) + load(a + np + c * kL) +
                                  load(&gw.brp[np + c * kL]));
            const vf ghh = load(a + 2 * np + c * kL) + load(&gw.brp[2 * np + c * kL]);
            const vf cand = vtanh(gw.gx(u_row, n_in, 2, c) + r * ghh);
            vf hn = cand + z * (load(&h[bb * np + c * kL]) - cand);
            if (xi_t) hn += vs * load_lanes(xi_t + bb * n, c, ni);
            store(&h[bb * np + c * kL], hn);
            if (hs) store_lanes(hs + off + bb * n, c, ni, hn);
          }
          if (out)
            for (int64_t o = 0; o < n_out; ++o) {
              vf zo = vf{};
              for (int c = 0; c < nv; ++c) zo += load(&h[bb * np + c * kL]) * load(&gw.woutt[o * np + c * kL]);
              out[((s * n_steps + t) * batch + bb) * n_out + o] = hsum(zo) + b_out[s * n_out + o];
            }
        }
      }
    }
    if (h_last)
      for (int64_t bb = 0; bb < batch; ++bb)
        for (int c = 0; c < nv; ++c) store_lanes(h_last + s * bn + bb * n, c, ni, load(&h[bb * np + c * kL]));
  }
}

// BPTT of gru_forward from the states it wrote (hs, h0); the gates are recomputed step by
// step (one product) instead of stored. Upstream gradients grad_hs (S, T, B, N) and grad_out
// (S, T, B, O), each may be null. Writes grad_h0 (S, B, N) and, when not null, g_w (S, I, 3N),
// g_b (S, 3N), g_u (S, N, 3N), g_brec (S, 3N), g_w_out (S, N, O), g_b_out (S, O), each
// accumulated while its step is in cache.
void gru_backward(const float* u, int64_t u_ss, const float* hs, const float* h0,
                  const float* w, const float* b, const float* u_rec, const float* b_rec,
                  const float* w_out, int64_t n_seeds, int64_t n_steps, int64_t batch,
                  int64_t n_in, int64_t n, int64_t n_out, const float* grad_hs,
                  const float* grad_out, float* grad_h0, float* g_w, float* g_b, float* g_u,
                  float* g_brec, float* g_w_out, float* g_b_out) {
  GruWeights gw(n, n_in, n_out);
  const int ni = gw.ni, np = gw.np, nv = gw.nv, np3 = 3 * np;
  const int rb = block_rows(3 * nv, batch);
  const int rbt = block_rows(nv, batch);
  const int64_t bn = batch * n;
  const int64_t no = grad_out ? n_out : 0;
  std::vector<float> dh(batch * np), hp(batch * np), gh(batch * np3), dgh(batch * np3),
      dgx(batch * np3), back(static_cast<size_t>(rbt) * np), acc_u(n * np3),
      acc_w(std::max<int64_t>(n_in, 1) * np3), acc_b(np3), acc_br(np3),
      acc_wo(std::max<int64_t>(n_out, 1) * np);
  const vf one = splat(1.0f);
  for (int64_t s = 0; s < n_seeds; ++s) {
    gw.load_seed(s, n, n_in, n_out, w, b, u_rec, b_rec, w_out);
    std::fill(dh.begin(), dh.end(), 0.0f);
    std::fill(acc_u.begin(), acc_u.end(), 0.0f);
    std::fill(acc_w.begin(), acc_w.end(), 0.0f);
    std::fill(acc_b.begin(), acc_b.end(), 0.0f);
    std::fill(acc_br.begin(), acc_br.end(), 0.0f);
    std::fill(acc_wo.begin(), acc_wo.end(), 0.0f);
    std::vector<double> acc_bo(std::max<int64_t>(n_out, 1), 0.0);
    for (int64_t t = n_steps - 1; t >= 0; --t) {
      const int64_t off = (s * n_steps + t) * bn;
      const float* prev = t > 0 ? hs + off - bn : h0 + s * bn;
      const float* h_t = hs + off;
      const float* u_t = u + s * u_ss + t * batch * n_in;
      const float* go = grad_out ? grad_out + (s * n_steps + t) * batch * n_out : nullptr;
      // dL/dh_t from outside the recurrence (the future's part is already in dh)
      for (int64_t bb = 0; bb < batch; ++bb) {
        for (int c = 0; c < nv; ++c) {
          vf g = grad_hs ? load_lanes(grad_hs + off + bb * n, c, ni) : vf{};
          const vf hv = load_lanes(h_t + bb * n, c, ni);
          for (int64_t o = 0; o < no; ++o) {
            const vf gov = splat(go[bb * n_out + o]);
            g += gov * load(&gw.woutt[o * np + c * kL]);
            store(&acc_wo[o * np + c * kL], load(&acc_wo[o * np + c * kL]) + gov * hv);
          }
          store(&dh[bb * np + c * kL], load(&dh[bb * np + c * kL]) + g);
          store(&hp[bb * np + c * kL], load_lanes(prev + bb * n, c, ni));
        }
        for (int64_t o = 0; o < no; ++o) acc_bo[o] += go[bb * n_out + o];
      }
      // recompute gh = h_{t−1} U for the gates of step t
      for (int64_t b0 = 0; b0 < batch; b0 += rb) {
        const int rows = static_cast<int>(std::min<int64_t>(rb, batch - b0));
        gemm_rows(&hp[b0 * np], np, rows, gw.up.data(), np3, ni, &gh[b0 * np3]);
      }
      for (int64_t bb = 0; bb < batch; ++bb) {
        const float* u_row = u_t + bb * n_in;
        const float* a = &gh[bb * np3];
        for (int c = 0; c < nv; ++c) {
          const vf z = vsigmoid(gw.gx(u_row, n_in, 0, c) + load(a + c * kL) + load(&gw.brp[c * kL]));
          const vf r = vsigmoid(gw.gx(u_row, n_in, 1, c) + load(a + np + c * kL) +
                                load(&gw.brp[np + c * kL]));
          const vf ghh = load(a + 2 * np + c * kL) + load(&gw.brp[2 * np + c * kL]);
          const vf cand = vtanh(gw.gx(u_row, n_in, 2, c) + r * ghh);
          const vf d = load(&dh[bb * np + c * kL]);
          const vf hprev = load(&hp[bb * np + c * kL]);
          const vf dn = d * (one - z) * (one - cand * cand);
          const vf daz = d * (hprev - cand) * z * (one - z);
          const vf dar = dn * ghh * r * (one - r);
          store(&dgh[bb * np3 + c * kL], daz);
          store(&dgh[bb * np3 + np + c * kL], dar);
          store(&dgh[bb * np3 + 2 * np + c * kL], dn * r);
          store(&dgx[bb * np3 + c * kL], daz);
          store(&dgx[bb * np3 + np + c * kL], dar);
          store(&dgx[bb * np3 + 2 * np + c * kL], dn);
          store(&dh[bb * np + c * kL], d * z);  // the direct path h_{t−1} → h_t
        }
      }
      if (g_u) gemm(hp.data(), 1, np, n, dgh.data(), np3, np3, static_cast<int>(batch),
                    acc_u.data(), np3, true);
      if (g_w && n_in) gemm(u_t, 1, n_in, n_in, dgx.data(), np3, np3, static_cast<int>(batch),
                            acc_w.data(), np3, true);
      for (int64_t bb = 0; bb < batch; ++bb)
        for (int c = 0; c < 3 * nv; ++c) {
          store(&acc_b[c * kL], load(&acc_b[c * kL]) + load(&dgx[bb * np3 + c * kL]));
          store(&acc_br[c * kL], load(&acc_br[c * kL]) + load(&dgh[bb * np3 + c * kL]));
        }
      // dL/dh_{t−1} += dgh Uᵀ
      for (int64_t b0 = 0; b0 < batch; b0 += rbt) {
        const int rows = static_cast<int>(std::min<int64_t>(rbt, batch - b0));
        gemm_rows(&dgh[b0 * np3], np3, rows, gw.upt.data(), np, np3, back.data());
        for (int i = 0; i < rows; ++i)
          for (int c = 0; c < nv; ++c)
            store(&dh[(b0 + i) * np + c * kL],
                  load(&dh[(b0 + i) * np + c * kL]) + load(&back[i * np + c * kL]));
      }
    }
    for (int64_t bb = 0; bb < batch; ++bb)
      for (int c = 0; c < nv; ++c) store_lanes(grad_h0 + s * bn + bb * n, c, ni, load(&dh[bb * np + c * kL]));
    for (int g = 0; g < 3; ++g)
      for (int64_t j = 0; j < n; ++j) {
        if (g_u)
          for (int64_t i = 0; i < n; ++i) g_u[(s * n + i) * 3 * n + g * n + j] = acc_u[i * np3 + g * np + j];
        if (g_w)
          for (int64_t i = 0; i < n_in; ++i) g_w[(s * n_in + i) * 3 * n + g * n + j] = acc_w[i * np3 + g * np + j];
        if (g_b) g_b[s * 3 * n + g * n + j] = acc_b[g * np + j];
        if (g_brec) g_brec[s * 3 * n + g * n + j] = acc_br[g * np + j];
      }
    if (g_w_out)
      for (int64_t j = 0; j < n; ++j)
        for (int64_t o = 0; o < n_out; ++o)
          g_w_out[(s * n + j) * n_out + o] = grad_out ? acc_wo[o * np + j] : 0.0f;
    if (g_b_out)
      for (int64_t o = 0; o < n_out; ++o)
        g_b_out[s * n_out + o] = grad_out ? static_cast<float>(acc_bo[o]) : 0.0f;
  }
}

// The subgroup-MI critic T(a, b) = w_oᵀ φ(… φ(a W_a + b W_b + b_1) W_h + b_h …) + b_o of R
// replicas on their joint rows (a, bj) and shuffled rows (a, bs) at once (study.core.mi.Critic;
// φ = ReLU, or leaky ReLU when slope > 0). Shapes: a (R, M, da), bj and bs (R, M, db),
// wa (R, da, H), wb (R, db, H), b1 (R, H), wh[l] (R, H, H) and bh[l] (R, H) for the
// depth − 1 hidden layers, wo (R, H), bo (R) or null; H a multiple of 16.
// scores (R, 2M): joint rows first, shuffled rows after. saved: depth arrays (R, 2M, H) that
// receive each layer's activations for critic_backward, or null. perm (R, M) or null: the
// shuffled rows are bj[perm] (bs is not read), so b's projection is computed once.
void critic_forward(int64_t n_rep, int64_t m, int64_t da, int64_t db, int64_t h,
                    int64_t depth, const float* a, const float* bj, const float* bs,
                    const int64_t* perm, const float* wa, const float* wb, const float* b1,
                    const float* const* wh, const float* const* bh, const float* wo,
                    const float* bo, float slope, float* scores, float* const* saved) {
  const int hi = static_cast<int>(h), nv = hi / kL;
  std::vector<float> scratch(static_cast<size_t>(4 * kChunk * h));
  std::vector<float> hb(perm ? m * h : 0);
  for (int64_t r = 0; r < n_rep; ++r) {
    const float* ar = a + r * m * da;
    const float* wa_r = wa + r * da * h;
    const float* wb_r = wb + r * db * h;
    if (perm)  // b's projection once; the shuffled rows take it permuted
      gemm(bj + r * m * db, db, 1, m, wb_r, h, hi, static_cast<int>(db), hb.data(), h, false);
    for (int64_t m0 = 0; m0 < m; m0 += kChunk) {
      const int64_t rows = std::min(kChunk, m - m0);
      float* prev[2];
      for (int side = 0; side < 2; ++side) {
        const int64_t base = r * 2 * m + side * m + m0;
        prev[side] = saved ? saved[0] + base * h : scratch.data() + side * kChunk * h;
      }
      gemm(ar + m0 * da, da, 1, rows, wa_r, h, hi, static_cast<int>(da), prev[0], h, false);
      for (int64_t i = 0; i < rows; ++i)
        for (int c = 0; c < nv; ++c)
          store(prev[0] + i * h + c * kL,
                load(prev[0] + i * h + c * kL) + load(b1 + r * h + c * kL));
      std::memcpy(prev[1], prev[0], sizeof(float) * rows * h);
      if (perm) {
        const int64_t* pr = perm + r * m + m0;
        for (int64_t i = 0; i < rows; ++i)
          for (int c = 0; c < nv; ++c) {
            store(prev[0] + i * h + c * kL,
                  load(prev[0] + i * h + c * kL) + load(&hb[(m0 + i) * h + c * kL]));
            store(prev[1] + i * h + c * kL,
                  load(prev[1] + i * h + c * kL) + load(&hb[pr[i] * h + c * kL]));
          }
      } else {
        const float* bside[2] = {bj + r * m * db + m0 * db, bs + r * m * db + m0 * db};
        for (int side = 0; side < 2; ++side)
          gemm(bside[side], db, 1, rows, wb_r, h, hi, static_cast<int>(db), prev[side], h,
               true);
      }
      for (int side = 0; side < 2; ++side) bias_act(prev[side], rows, hi, nullptr, slope);
      for (int64_t l = 0; l + 1 < depth; ++l) {
        for (int side = 0; side < 2; ++side) {
          const int64_t base = r * 2 * m + side * m + m0;
          float* next = saved ? saved[l + 1] + base * h
                              : scratch.data() + (2 + side) * kChunk * h;
          if (!saved && (l % 2 == 1)) next = scratch.data() + side * kChunk * h;
          gemm(prev[side], h, 1, rows, wh[l] + r * h * h, h, hi, hi, next, h, false);
          bias_act(next, rows, hi, bh[l] + r * h, slope);
          prev[side] = next;
        }
      }
      const float bias = bo ? bo[r] : 0.0f;
      for (int side = 0; side < 2; ++side)
        for (int64_t i = 0; i < rows; ++i) {
          vf acc = vf{};
          for (int c = 0; c < nv; ++c)
            acc += load(prev[side] + i * h + c * kL) * load(wo + r * h + c * kL);
          scores[r * 2 * m + side * m + m0 + i] = hsum(acc) + bias;
        }
    }
  }
}

// Backward of critic_forward from dscores (R, 2M) and the saved activations. Parameter
// gradients (overwritten): dwa (R, da, H), dwb (R, db, H), db1 (R, H), dwh[l] (R, H, H),
// dbh[l] (R, H), dwo (R, H), dbo (R) or null — all of them, or none when dwa is null.
// Input gradients, each written when not null: da_out (R, M, da), dbj_out and dbs_out (R, M, db)
// (with perm, dbj_out receives the gradient of both b branches and dbs_out is not written).
void critic_backward(int64_t n_rep, int64_t m, int64_t da, int64_t db, int64_t h,
                     int64_t depth, const float* a, const float* bj, const float* bs,
                     const int64_t* perm, const float* wa, const float* wb, const float* const* wh, const float* wo,
                     float slope, const float* const* saved, const float* dscores,
                     float* dwa, float* dwb, float* db1, float* const* dwh, float* const* dbh,
                     float* dwo, float* dbo, float* da_out, float* dbj_out, float* dbs_out) {
  const int hi = static_cast<int>(h), nv = hi / kL;
  const int dap = padded(static_cast<int>(da)), dbp = padded(static_cast<int>(db));
  const bool params = dwa != nullptr;
  std::vector<float> g(2 * kChunk * h), g2(kChunk * h), dpre(2 * kChunk * h),
      sum(kChunk * h), tmp(kChunk * std::max(dap, dbp)), wat(h * dap), wbt(h * dbp),
      wht(std::max<int64_t>(depth - 1, 1) * h * h), dhb(perm ? m * h : 0),
      tmp_all(perm && dbj_out ? m * dbp : 0);
  for (int64_t r = 0; r < n_rep; ++r) {
    if (perm) std::fill(dhb.begin(), dhb.end(), 0.0f);
    const float* ar = a + r * m * da;
    const float* bside[2] = {bj + r * m * db, bs ? bs + r * m * db : nullptr};
    const float* wo_r = wo + r * h;
    transpose_pad(wa + r * da * h, static_cast<int>(da), hi, dap, wat.data());
    transpose_pad(wb + r * db * h, static_cast<int>(db), hi, dbp, wbt.data());
    for (int64_t l = 0; l + 1 < depth; ++l)
      transpose_pad(wh[l] + r * h * h, hi, hi, hi, wht.data() + l * h * h);
    if (params) {
      std::fill(dwa + r * da * h, dwa + (r + 1) * da * h, 0.0f);
      std::fill(dwb + r * db * h, dwb + (r + 1) * db * h, 0.0f);
      std::fill(db1 + r * h, db1 + (r + 1) * h, 0.0f);
      for (int64_t l = 0; l + 1 < depth; ++l) {
        std::fill(dwh[l] + r * h * h, dwh[l] + (r + 1) * h * h, 0.0f);
        std::fill(dbh[l] + r * h, dbh[l] + (r + 1) * h, 0.0f);
      }
      std::fill(dwo + r * h, dwo + (r + 1) * h, 0.0f);
      if (dbo) dbo[r] = 0.0f;
    }
    for (int64_t m0 = 0; m0 < m; m0 += kChunk) {
      const int64_t rows = std::min(kChunk, m - m0);
      for (int side = 0; side < 2; ++side) {
        const int64_t base = r * 2 * m + side * m + m0;
        float* gs = g.data() + side * kChunk * h;
        // top: d h_D = ds · w_o; dw_o += Σ h_D ds; db_o += Σ ds
        const float* h_top = saved[depth - 1] + base * h;
        for (int64_t i = 0; i < rows; ++i) {
          const float ds = dscores[base + i];
          for (int c = 0; c < nv; ++c) {
            store(gs + i * h + c * kL, load(wo_r + c * kL) * ds);
            if (params)
              store(dwo + r * h + c * kL,
                    load(dwo + r * h + c * kL) + load(h_top + i * h + c * kL) * ds);
          }
          if (params && dbo) dbo[r] += ds;
        }
        for (int64_t l = depth - 1; l >= 1; --l) {
          const float* h_l = saved[l] + base * h;
          const float* h_below = saved[l - 1] + base * h;
          for (int64_t i = 0; i < rows; ++i)
            for (int c = 0; c < nv; ++c)
              store(gs + i * h + c * kL, activate_grad(load(h_l + i * h + c * kL),
                                                       load(gs + i * h + c * kL), slope));
          if (params) {
            // dW_h += h_belowᵀ dz: rows of the product are the H units of h_below
            gemm(h_below, 1, h, h, gs, h, hi, static_cast<int>(rows), dwh[l - 1] + r * h * h,
                 h, true);
            for (int64_t i = 0; i < rows; ++i)
              for (int c = 0; c < nv; ++c)
                store(dbh[l - 1] + r * h + c * kL,
                      load(dbh[l - 1] + r * h + c * kL) + load(gs + i * h + c * kL));
          }
          gemm(gs, h, 1, rows, wht.data() + (l - 1) * h * h, h, hi, hi, g2.data(), h, false);
          std::memcpy(gs, g2.data(), sizeof(float) * rows * h);
        }
        const float* h_1 = saved[0] + base * h;
        float* dp = dpre.data() + side * kChunk * h;
        for (int64_t i = 0; i < rows; ++i)
          for (int c = 0; c < nv; ++c)
            store(dp + i * h + c * kL, activate_grad(load(h_1 + i * h + c * kL),
                                                     load(gs + i * h + c * kL), slope));
        if (perm) {  // gather b's gradient by row of b: the shuffled rows scatter back
          const int64_t* pr = perm + r * m + m0;
          for (int64_t i = 0; i < rows; ++i) {
            float* dst = &dhb[(side == 0 ? m0 + i : pr[i]) * h];
            for (int c = 0; c < nv; ++c)
              store(dst + c * kL, load(dst + c * kL) + load(dp + i * h + c * kL));
          }
          continue;
        }
        if (params)  // dW_b += b_sideᵀ dpre_side
          gemm(bside[side] + m0 * db, 1, db, db, dp, h, hi, static_cast<int>(rows),
               dwb + r * db * h, h, true);
        float* din = side == 0 ? dbj_out : dbs_out;
        if (din)
          gemm_unpad(dp, rows, hi, wbt.data(), static_cast<int>(db), dbp, tmp.data(),
                     din + r * m * db + m0 * db);
      }
      // a feeds both sides: its gradient is the sum of theirs
      const float* dpj = dpre.data();
      const float* dps = dpre.data() + kChunk * h;
      for (int64_t i = 0; i < rows; ++i)
        for (int c = 0; c < nv; ++c) {
          const vf v = load(dpj + i * h + c * kL) + load(dps + i * h + c * kL);
          store(sum.data() + i * h + c * kL, v);
          if (params) store(db1 + r * h + c * kL, load(db1 + r * h + c * kL) + v);
        }
      if (params)
        gemm(ar + m0 * da, 1, da, da, sum.data(), h, hi, static_cast<int>(rows),
             dwa + r * da * h, h, true);
      if (da_out)
        gemm_unpad(sum.data(), rows, hi, wat.data(), static_cast<int>(da), dap, tmp.data(),
                   da_out + r * m * da + m0 * da);
    }
    if (perm) {
      if (params)
        gemm(bside[0], 1, db, db, dhb.data(), h, hi, static_cast<int>(m), dwb + r * db * h, h,
             true);
      if (dbj_out)
        gemm_unpad(dhb.data(), m, hi, wbt.data(), static_cast<int>(db), dbp, tmp_all.data(),
                   dbj_out + r * m * db);
    }
  }
}

// The critic's two statistics per replica in one pass, with their gradients, never keeping
// activations beyond one chunk of rows (study.core.mi.estimators: DV and MINE need only these):
//   jm[r] = mean_m T(a_m, bj_m),  lm[r] = log mean_m exp T(a_m, bs_m)
// (bs = bj[perm] when perm is given, as in critic_forward). The gradient of each statistic is
// accumulated while the chunk's activations are in cache: set 0 (of jm) from the joint rows,
// set 1 (of lm) from the shuffled rows with weights softmax(T_s), the softmax kept online
// (running maximum; everything of set 1 is rescaled when it grows, divided by the sum at the
// end). Outputs: jm, lm (R); when grads: dwa (2, R, da, H), dwb (2, R, db, H), db1 (2, R, H),
// dwh[l] and dbh[l] (2, R, H, H) and (2, R, H), dwo (2, R, H), dbo (2, R) or null; when not
// null: da_g (2, R, M, da), dbj_g (2, R, M, db) (with perm: set 1 is the shuffled rows' part,
// scattered back to b's rows), dbs_g (2, R, M, db) (without perm; only set 1 is written).
void critic_stats(int64_t n_rep, int64_t m, int64_t da, int64_t db, int64_t h, int64_t depth,
                  const float* a, const float* bj, const float* bs, const int64_t* perm,
                  const float* wa, const float* wb, const float* b1, const float* const* wh,
                  const float* const* bh, const float* wo, const float* bo, float slope,
                  float* jm, float* lm, int32_t grads, float* dwa, float* dwb, float* db1,
                  float* const* dwh, float* const* dbh, float* dwo, float* dbo, float* da_g,
                  float* dbj_g, float* dbs_g) {
  const int hi = static_cast<int>(h), nv = hi / kL;
  const int dap = padded(static_cast<int>(da)), dbp = padded(static_cast<int>(db));
  const int64_t ch = kChunk;
  const int64_t L = depth;
  // chunk activations: act[(l * 2 + side) * ch * h]
  std::vector<float> act(static_cast<size_t>(L * 2 * ch * h)), hb(perm ? m * h : 0),
      g(2 * ch * h), g2(ch * h), dpre(2 * ch * h), tmp(ch * std::max(dap, dbp)),
      wat(h * dap), wbt(h * dbp), wht(std::max<int64_t>(L - 1, 1) * h * h),
      dhb(perm && grads ? 2 * m * h : 0), tmp_all(perm && dbj_g ? m * dbp : 0), ds(2 * ch);
  const int64_t sz_wa = n_rep * da * h, sz_wb = n_rep * db * h, sz_h = n_rep * h,
                sz_hh = n_rep * h * h;
  const int64_t sz_da = n_rep * m * da, sz_db = n_rep * m * db;
  const bool params = dwa != nullptr;  // weight gradients wanted (not for a frozen critic)
  for (int64_t r = 0; r < n_rep; ++r) {
    const float* ar = a + r * m * da;
    const float* bjr = bj + r * m * db;
    const float* bsr = bs ? bs + r * m * db : nullptr;
    const float* wa_r = wa + r * da * h;
    const float* wb_r = wb + r * db * h;
    const float* wo_r = wo + r * h;
    const int64_t* pr = perm ? perm + r * m : nullptr;
    if (grads) {
      transpose_pad(wa_r, static_cast<int>(da), hi, dap, wat.data());
      transpose_pad(wb_r, static_cast<int>(db), hi, dbp, wbt.data());
      for (int64_t l = 0; l + 1 < L; ++l)
        transpose_pad(wh[l] + r * h * h, hi, hi, hi, wht.data() + l * h * h);
      for (int set = 0; set < 2 && params; ++set) {
        std::fill(dwa + set * sz_wa + r * da * h, dwa + set * sz_wa + (r + 1) * da * h, 0.0f);
        std::fill(dwb + set * sz_wb + r * db * h, dwb + set * sz_wb + (r + 1) * db * h, 0.0f);
        std::fill(db1 + set * sz_h + r * h, db1 + set * sz_h + (r + 1) * h, 0.0f);
        for (int64_t l = 0; l + 1 < L; ++l) {
          std::fill(dwh[l] + set * sz_hh + r * h * h, dwh[l] + set * sz_hh + (r + 1) * h * h,
                    0.0f);
          std::fill(dbh[l] + set * sz_h + r * h, dbh[l] + set * sz_h + (r + 1) * h, 0.0f);
        }
        std::fill(dwo + set * sz_h + r * h, dwo + set * sz_h + (r + 1) * h, 0.0f);
        if (dbo) dbo[set * n_rep + r] = 0.0f;
      }
      if (perm) std::fill(dhb.begin(), dhb.end(), 0.0f);
    }
    if (perm)
      gemm(bjr, db, 1, m, wb_r, h, hi, static_cast<int>(db), hb.data(), h, false);
    double sum_j = 0.0, s_sum = 0.0;
    float mu = -std::numeric_limits<float>::infinity();
    const float bias = bo ? bo[r] : 0.0f;
    for (int64_t m0 = 0; m0 < m; m0 += ch) {
      const int64_t rows = std::min(ch, m - m0);
      // -- forward of both sides of the chunk --
      float* x0p[2] = {act.data(), act.data() + ch * h};
      gemm(ar + m0 * da, da, 1, rows, wa_r, h, hi, static_cast<int>(da), x0p[0], h, false);
      for (int64_t i = 0; i < rows; ++i)
        for (int c = 0; c < nv; ++c)
          store(x0p[0] + i * h + c * kL,
                load(x0p[0] + i * h + c * kL) + load(b1 + r * h + c * kL));
      std::memcpy(x0p[1], x0p[0], sizeof(float) * rows * h);
      if (perm) {
        for (int64_t i = 0; i < rows; ++i)
          for (int c = 0; c < nv; ++c) {
            store(x0p[0] + i * h + c * kL,
                  load(x0p[0] + i * h + c * kL) + load(&hb[(m0 + i) * h + c * kL]));
            store(x0p[1] + i * h + c * kL,
                  load(x0p[1] + i * h + c * kL) + load(&hb[pr[m0 + i] * h + c * kL]));
          }
      } else {
        gemm(bjr + m0 * db, db, 1, rows, wb_r, h, hi, static_cast<int>(db), x0p[0], h, true);
        gemm(bsr + m0 * db, db, 1, rows, wb_r, h, hi, static_cast<int>(db), x0p[1], h, true);
      }
      for (int side = 0; side < 2; ++side) bias_act(x0p[side], rows, hi, nullptr, slope);
      for (int64_t l = 0; l + 1 < L; ++l)
        for (int side = 0; side < 2; ++side) {
          const float* below = act.data() + (l * 2 + side) * ch * h;
          float* above = act.data() + ((l + 1) * 2 + side) * ch * h;
          gemm(below, h, 1, rows, wh[l] + r * h * h, h, hi, hi, above, h, false);
          bias_act(above, rows, hi, bh[l] + r * h, slope);
        }
      float chunk_max = -std::numeric_limits<float>::infinity();
      for (int side = 0; side < 2; ++side) {
        const float* top = act.data() + ((L - 1) * 2 + side) * ch * h;
        for (int64_t i = 0; i < rows; ++i) {
          vf acc = vf{};
          for (int c = 0; c < nv; ++c) acc += load(top + i * h + c * kL) * load(wo_r + c * kL);
          const float t = hsum(acc) + bias;
          ds[side * ch + i] = t;
          if (side == 0) sum_j += t;
          else chunk_max = std::max(chunk_max, t);
        }
      }
      // -- the online softmax of the shuffled scores --
      if (chunk_max > mu) {
        const float scale = std::isinf(mu) ? 0.0f : std::exp(mu - chunk_max);
        s_sum *= scale;
        if (grads) {  // everything of set 1 so far is relative to the old maximum
          auto rescale = [scale](float* p, int64_t n) {
            for (int64_t i = 0; i < n; ++i) p[i] *= scale;
          };
          if (params) {
            rescale(dwa + sz_wa + r * da * h, da * h);
            rescale(dwb + sz_wb + r * db * h, db * h);
            rescale(db1 + sz_h + r * h, h);
            for (int64_t l = 0; l + 1 < L; ++l) {
              rescale(dwh[l] + sz_hh + r * h * h, h * h);
              rescale(dbh[l] + sz_h + r * h, h);
            }
            rescale(dwo + sz_h + r * h, h);
            if (dbo) dbo[n_rep + r] *= scale;
          }
          if (perm) rescale(dhb.data() + m * h, m * h);
          if (da_g) rescale(da_g + sz_da + r * m * da, m0 * da);
          if (dbs_g && !perm) rescale(dbs_g + sz_db + r * m * db, m0 * db);
        }
        mu = chunk_max;
      }
      for (int64_t i = 0; i < rows; ++i) {
        const float w = std::exp(ds[ch + i] - mu);
        ds[ch + i] = w;
        s_sum += w;
        ds[i] = 1.0f / static_cast<float>(m);
      }
      if (!grads) continue;
      // -- backward of both sides: set 0 from the joint rows, set 1 from the shuffled rows --
      for (int side = 0; side < 2; ++side) {
        const int set = side;
        float* gs = g.data() + side * ch * h;
        const float* h_top = act.data() + ((L - 1) * 2 + side) * ch * h;
        float* dwo_s = params ? dwo + set * sz_h + r * h : nullptr;
        for (int64_t i = 0; i < rows; ++i) {
          const float d = ds[side * ch + i];
          for (int c = 0; c < nv; ++c) {
            store(gs + i * h + c * kL, load(wo_r + c * kL) * d);
            if (params)
              store(dwo_s + c * kL, load(dwo_s + c * kL) + load(h_top + i * h + c * kL) * d);
          }
          if (params && dbo) dbo[set * n_rep + r] += d;
        }
        for (int64_t l = L - 1; l >= 1; --l) {
          const float* h_l = act.data() + (l * 2 + side) * ch * h;
          const float* h_below = act.data() + ((l - 1) * 2 + side) * ch * h;
          for (int64_t i = 0; i < rows; ++i)
            for (int c = 0; c < nv; ++c)
              store(gs + i * h + c * kL, activate_grad(load(h_l + i * h + c * kL),
                                                       load(gs + i * h + c * kL), slope));
          if (params) {
            gemm(h_below, 1, h, h, gs, h, hi, static_cast<int>(rows),
                 dwh[l - 1] + set * sz_hh + r * h * h, h, true);
            float* dbh_s = dbh[l - 1] + set * sz_h + r * h;
            for (int64_t i = 0; i < rows; ++i)
              for (int c = 0; c < nv; ++c)
                store(dbh_s + c * kL, load(dbh_s + c * kL) + load(gs + i * h + c * kL));
          }
          gemm(gs, h, 1, rows, wht.data() + (l - 1) * h * h, h, hi, hi, g2.data(), h, false);
          std::memcpy(gs, g2.data(), sizeof(float) * rows * h);
        }
        const float* h_1 = act.data() + side * ch * h;
        float* dp = dpre.data() + side * ch * h;
        float* db1_s = params ? db1 + set * sz_h + r * h : nullptr;
        for (int64_t i = 0; i < rows; ++i)
          for (int c = 0; c < nv; ++c) {
            const vf v = activate_grad(load(h_1 + i * h + c * kL), load(gs + i * h + c * kL),
                                       slope);
            store(dp + i * h + c * kL, v);
            if (params) store(db1_s + c * kL, load(db1_s + c * kL) + v);
          }
        if (params)
          gemm(ar + m0 * da, 1, da, da, dp, h, hi, static_cast<int>(rows),
               dwa + set * sz_wa + r * da * h, h, true);
        if (da_g)
          gemm_unpad(dp, rows, hi, wat.data(), static_cast<int>(da), dap, tmp.data(),
                     da_g + set * sz_da + r * m * da + m0 * da);
        if (perm) {  // b's gradient gathered by row of b, per set
          float* dh_s = dhb.data() + set * m * h;
          for (int64_t i = 0; i < rows; ++i) {
            float* dst = dh_s + (side == 0 ? m0 + i : pr[m0 + i]) * h;
            for (int c = 0; c < nv; ++c)
              store(dst + c * kL, load(dst + c * kL) + load(dp + i * h + c * kL));
          }
        } else {
          const float* bside = side == 0 ? bjr : bsr;
          if (params)
            gemm(bside + m0 * db, 1, db, db, dp, h, hi, static_cast<int>(rows),
                 dwb + set * sz_wb + r * db * h, h, true);
          float* din = side == 0 ? dbj_g : (dbs_g ? dbs_g + sz_db : nullptr);
          if (din)
            gemm_unpad(dp, rows, hi, wbt.data(), static_cast<int>(db), dbp, tmp.data(),
                       din + r * m * db + m0 * db);
        }
      }
    }
    jm[r] = static_cast<float>(sum_j / static_cast<double>(m));
    lm[r] = mu + static_cast<float>(std::log(s_sum) - std::log(static_cast<double>(m)));
    if (!grads) continue;
    if (perm)
      for (int set = 0; set < 2; ++set) {
        if (params)
          gemm(bjr, 1, db, db, dhb.data() + set * m * h, h, hi, static_cast<int>(m),
               dwb + set * sz_wb + r * db * h, h, true);
        if (dbj_g)
          gemm_unpad(dhb.data() + set * m * h, m, hi, wbt.data(), static_cast<int>(db), dbp,
                     tmp_all.data(), dbj_g + set * sz_db + r * m * db);
      }
    // set 1: divide by the softmax's sum
    const float inv = static_cast<float>(1.0 / s_sum);
    auto scale1 = [inv](float* p, int64_t n) {
      for (int64_t i = 0; i < n; ++i) p[i] *= inv;
    };
    if (params) {
      scale1(dwa + sz_wa + r * da * h, da * h);
      scale1(dwb + sz_wb + r * db * h, db * h);
      scale1(db1 + sz_h + r * h, h);
      for (int64_t l = 0; l + 1 < L; ++l) {
        scale1(dwh[l] + sz_hh + r * h * h, h * h);
        scale1(dbh[l] + sz_h + r * h, h);
      }
      scale1(dwo + sz_h + r * h, h);
      if (dbo) dbo[n_rep + r] *= inv;
    }
    if (da_g) scale1(da_g + sz_da + r * m * da, m * da);
    if (perm && dbj_g) scale1(dbj_g + sz_db + r * m * db, m * db);
    if (!perm && dbs_g) scale1(dbs_g + sz_db + r * m * db, m * db);
  }
}

}  // extern "C"
