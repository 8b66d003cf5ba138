// Fused kernels of the Qwen2 layer (see src/model/fused/mod.rs for what each replaces and why).
// Compiled to PTX by build.rs with nvcc when the `cuda` feature is on; loaded once per device.
//
// Conventions: every tensor is contiguous and row-major; `T` is the storage type (bf16 or f32),
// all arithmetic is f32 and each output element is rounded to `T` exactly once. Index math is
// 64-bit: a 30k-token prefill block has more than 2^31 score elements.

#include <cuda_bf16.h>
#include <stdint.h>

template <typename T> __device__ __forceinline__ float to_f32(T x);
template <> __device__ __forceinline__ float to_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 x) {
    return __bfloat162float(x);
}
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

#define GRID_STRIDE(i, n)                                                                         \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                     \
         i += (int64_t)gridDim.x * blockDim.x)

// out[r, c] = silu(gu[r, c]) * gu[r, f + c]: gate and up come from one packed projection.
template <typename T>
__device__ void silu_mul(const T *__restrict__ gu, T *__restrict__ out, int64_t rows, int64_t f) {
    GRID_STRIDE(i, rows * f) {
        const int64_t r = i / f, c = i - r * f;
        const float g = to_f32(gu[r * 2 * f + c]);
        const float u = to_f32(gu[r * 2 * f + f + c]);
        out[i] = from_f32<T>(g / (1.0f + expf(-g)) * u);
    }
}

// Rotates one pair (x1, x2) = (x[i], x[i + half]) of a head by the token's cos/sin (the NeoX
// layout Qwen2 uses): [x1 c - x2 s, x2 c + x1 s].
__device__ __forceinline__ void rotate(float x1, float x2, float c, float s, float *o1, float *o2) {
    *o1 = x1 * c - x2 * s;
    *o2 = x2 * c + x1 * s;
}

// q[bi, h, ti, :] = rope(qkv[bi, ti, h*hd : (h+1)*hd] + bias): the query heads of the packed
// projection, biased, rotated and laid out head-major for attention.
// qkv: (b*t, (H + 2 KV) hd); bias: ((H + 2 KV) hd); cs: (b*t, hd) = [cos(half) | sin(half)].
template <typename T>
__device__ void rope_q(const T *__restrict__ qkv, const T *__restrict__ bias,
                       const T *__restrict__ cs, T *__restrict__ q, int64_t b, int64_t t,
                       int64_t heads, int64_t kv_heads, int64_t hd) {
    const int64_t half = hd / 2, width = (heads + 2 * kv_heads) * hd;
    GRID_STRIDE(idx, b * t * heads * half) {
        const int64_t i = idx % half;
        const int64_t h = (idx / half) % heads;
        const int64_t row = idx / (half * heads); // bi * t + ti
        const int64_t bi = row / t, ti = row - bi * t;
        const T *x = qkv + row * width + h * hd;
        const T *bb = bias + h * hd;
        float o1, o2;
        rotate(to_f32(x[i]) + to_f32(bb[i]), to_f32(x[i + half]) + to_f32(bb[i + half]),
               to_f32(cs[row * hd + i]), to_f32(cs[row * hd + half + i]), &o1, &o2);
        T *o = q + ((bi * heads + h) * t + ti) * hd;
        o[i] = from_f32<T>(o1);
        o[i + half] = from_f32<T>(o2);
    }
}

// Writes the new tokens' keys (biased, rotated) and values (biased) into the cache in place.
// cache: (2, b, KV, cap, hd) (K then V); the tokens go to slots slot0 .. slot0 + t.
template <typename T>
__device__ void kv_append(T *__restrict__ cache, const T *__restrict__ qkv,
                          const T *__restrict__ bias, const T *__restrict__ cs, int64_t b,
                          int64_t t, int64_t heads, int64_t kv_heads, int64_t hd, int64_t cap,
                          int64_t slot0) {
    const int64_t half = hd / 2, width = (heads + 2 * kv_heads) * hd;
    GRID_STRIDE(idx, b * t * kv_heads * half) {
        const int64_t i = idx % half;
        const int64_t h = (idx / half) % kv_heads;
        const int64_t row = idx / (half * kv_heads);
        const int64_t bi = row / t, ti = row - bi * t;
        const int64_t kcol = (heads + h) * hd, vcol = (heads + kv_heads + h) * hd;
        const T *k = qkv + row * width + kcol;
        const T *v = qkv + row * width + vcol;
        float k1, k2;
        rotate(to_f32(k[i]) + to_f32(bias[kcol + i]),
               to_f32(k[i + half]) + to_f32(bias[kcol + i + half]), to_f32(cs[row * hd + i]),
               to_f32(cs[row * hd + half + i]), &k1, &k2);
        const int64_t slot = slot0 + ti;
        T *kc = cache + (((0 * b + bi) * kv_heads + h) * cap + slot) * hd;
        T *vc = cache + (((1 * b + bi) * kv_heads + h) * cap + slot) * hd;
        kc[i] = from_f32<T>(k1);
        kc[i + half] = from_f32<T>(k2);
        vc[i] = from_f32<T>(to_f32(v[i]) + to_f32(bias[vcol + i]));
        vc[i + half] = from_f32<T>(to_f32(v[i + half]) + to_f32(bias[vcol + i + half]));
    }
}

// Combines two partial (max, sum of exp(x - max)) pairs of an online softmax.
__device__ __forceinline__ void merge(float &m, float &l, float m2, float l2) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) {
        m = m2;
        l = l2;
        return;
    }
    const float mx = fmaxf(m, m2);
    l = l * expf(m - mx) + l2 * expf(m2 - mx);
    m = mx;
}

// In place: each row of scores becomes softmax(scale * scores) over its visible keys and 0
// elsewhere. Row r = ((bi * KV + kvh) * G + g) * n + qi is query qi (cache slot q_slot0 + qi) of
// sequence bi; key k is visible when pad[bi] <= k <= q_slot0 + qi (causal, no left padding).
// A row with no visible key (a padding query) becomes all zeros: finite, and ignored.
// One block of SOFTMAX_THREADS threads per row; two passes over the row (online max/sum, write).
#define SOFTMAX_THREADS 256
template <typename T>
__device__ void masked_softmax(T *__restrict__ s, const uint32_t *__restrict__ pad,
                               int64_t rows_per_seq, int64_t n, int64_t keys, int64_t q_slot0,
                               float scale) {
    const int64_t row = blockIdx.x;
    const int64_t bi = row / rows_per_seq, qi = row % n;
    const int64_t lo = pad[bi];
    const int64_t hi = min(q_slot0 + qi, keys - 1); // inclusive
    T *x = s + row * keys;
    float m = -INFINITY, l = 0.0f;
    for (int64_t k = lo + threadIdx.x; k <= hi; k += SOFTMAX_THREADS) {
        const float v = to_f32(x[k]) * scale;
        if (v > m) {
            l = l * expf(m - v) + 1.0f;
            m = v;
        } else {
            l += expf(v - m);
        }
    }
    // Warp, then block reduction of (m, l).
    for (int off = 16; off > 0; off /= 2) {
        const float m2 = __shfl_xor_sync(0xffffffff, m, off);
        const float l2 = __shfl_xor_sync(0xffffffff, l, off);
        merge(m, l, m2, l2);
    }
    __shared__ float sm[SOFTMAX_THREADS / 32], sl[SOFTMAX_THREADS / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sm[warp] = m;
        sl[warp] = l;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < SOFTMAX_THREADS / 32 ? sm[lane] : -INFINITY;
        l = lane < SOFTMAX_THREADS / 32 ? sl[lane] : 0.0f;
        for (int off = 16; off > 0; off /= 2) {
            const float m2 = __shfl_xor_sync(0xffffffff, m, off);
            const float l2 = __shfl_xor_sync(0xffffffff, l, off);
            merge(m, l, m2, l2);
        }
        if (lane == 0) {
            sm[0] = m;
            sl[0] = l;
        }
    }
    __syncthreads();
    m = sm[0];
    const float inv = sl[0] > 0.0f ? 1.0f / sl[0] : 0.0f;
    for (int64_t k = threadIdx.x; k < keys; k += SOFTMAX_THREADS) {
        const float p = (k >= lo && k <= hi) ? expf(to_f32(x[k]) * scale - m) * inv : 0.0f;
        x[k] = from_f32<T>(p);
    }
}

// out[0] = x + y (rounded to T), out[1] = rms_norm(out[0]) * w: the residual add and the next
// sublayer's RMSNorm in one pass. The norm reads the rounded sum, as the plain path does.
// x, y: (rows, h); w: (h); out: (2, rows, h). One block of NORM_THREADS threads per row; a
// decode step has one row per sequence, so the block must keep many loads in flight: each
// thread loads its (up to NORM_PER_THREAD) elements in one unrolled burst and keeps the sums in
// registers for the second pass. Wider rows fall back to a loop that re-reads the sums.
#define NORM_THREADS 512
#define NORM_PER_THREAD 16
template <typename T>
__device__ void add_rms_norm(const T *__restrict__ x, const T *__restrict__ y,
                             const T *__restrict__ w, T *__restrict__ out, int64_t rows,
                             int64_t h, float eps) {
    const int64_t row = blockIdx.x;
    const T *xr = x + row * h, *yr = y + row * h;
    T *sum = out + row * h, *normed = out + (rows + row) * h;
    const bool cached = h <= (int64_t)NORM_THREADS * NORM_PER_THREAD;
    float v[NORM_PER_THREAD], wv[NORM_PER_THREAD];
    float ss = 0.0f;
    if (cached) {
        // x, y and the weight in one burst of loads: one memory round trip for the whole row.
#pragma unroll
        for (int j = 0; j < NORM_PER_THREAD; j++) {
            const int64_t i = threadIdx.x + (int64_t)j * NORM_THREADS;
            v[j] = 0.0f;
            wv[j] = 0.0f;
            if (i < h) {
                const T s = from_f32<T>(to_f32(xr[i]) + to_f32(yr[i]));
                wv[j] = to_f32(w[i]);
                sum[i] = s;
                v[j] = to_f32(s);
            }
        }
#pragma unroll
        for (int j = 0; j < NORM_PER_THREAD; j++) ss += v[j] * v[j];
    } else {
        for (int64_t i = threadIdx.x; i < h; i += NORM_THREADS) {
            const T s = from_f32<T>(to_f32(xr[i]) + to_f32(yr[i]));
            sum[i] = s;
            const float f = to_f32(s);
            ss += f * f;
        }
    }
    for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffff, ss, off);
    __shared__ float part[NORM_THREADS / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) part[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        ss = lane < NORM_THREADS / 32 ? part[lane] : 0.0f;
        for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffff, ss, off);
        if (lane == 0) part[0] = ss;
    }
    __syncthreads();
    const float inv = rsqrtf(part[0] / (float)h + eps);
    if (cached) {
#pragma unroll
        for (int j = 0; j < NORM_PER_THREAD; j++) {
            const int64_t i = threadIdx.x + (int64_t)j * NORM_THREADS;
            if (i < h) normed[i] = from_f32<T>(v[j] * inv * wv[j]);
        }
    } else {
        // Each thread reads back only the sums it wrote itself: no barrier needed.
        for (int64_t i = threadIdx.x; i < h; i += NORM_THREADS) {
            normed[i] = from_f32<T>(to_f32(sum[i]) * inv * to_f32(w[i]));
        }
    }
}

// Attention for a few queries per sequence (decode), straight from the packed projection and
// the cache, in two kernels (split keys, then combine: "flash decoding"). Phase 1: one block
// per (split of DEC_KEYS keys, query row); the query is biased, rotated and scaled on load; the
// block writes its partial (max, sum of exp, sum of exp * V) in f32. Query row r =
// (bi * heads + h) * t + ti sees keys [pad[bi], q_slot0 + ti]. part: (rows, splits, hd + 2).
// Latency, not bandwidth, bounds a block: each warp loads the K rows of DEC_BATCH keys before
// reducing any of them, and the V loop is unrolled, so that many loads are in flight at once.
// (Loading all 16 keys of a warp at once and unrolling V over all 64 keys measured 1.7x slower:
// the registers spill.)
// (A version with one block per KV head serving its G query heads measured 2x slower at batch
// 1: fewer blocks, and each thread walked a whole K row alone.)
#define DEC_THREADS 128
#define DEC_KEYS 64
#define DEC_MAX_HD 128
#define DEC_BATCH 4
template <typename T>
__device__ void attn_decode_split(const T *__restrict__ qkv, const T *__restrict__ bias,
                                  const T *__restrict__ cs, const T *__restrict__ cache,
                                  const uint32_t *__restrict__ pad, float *__restrict__ part,
                                  int64_t b, int64_t t, int64_t heads, int64_t kv_heads,
                                  int64_t hd, int64_t cap, int64_t q_slot0, int64_t splits,
                                  float scale) {
    const int64_t row = blockIdx.y, split = blockIdx.x;
    const int64_t ti = row % t, h = (row / t) % heads, bi = row / (t * heads);
    const int64_t kvh = h / (heads / kv_heads);
    const int64_t tok = bi * t + ti, half = hd / 2, width = (heads + 2 * kv_heads) * hd;
    const int64_t lo = pad[bi], hi = q_slot0 + ti + 1; // visible keys [lo, hi)
    const int64_t k0 = lo + split * DEC_KEYS, k1 = min(k0 + DEC_KEYS, hi);
    __shared__ float qs[DEC_MAX_HD];
    __shared__ float ps[DEC_KEYS];
    float *out = part + (row * splits + split) * (hd + 2);
    if (k0 >= k1) { // nothing visible in this split: a neutral partial
        for (int64_t i = threadIdx.x; i < hd + 2; i += DEC_THREADS)
            out[i] = i == 0 ? -INFINITY : 0.0f;
        return;
    }
    const T *x = qkv + tok * width + h * hd;
    const T *bb = bias + h * hd;
    for (int64_t i = threadIdx.x; i < half; i += DEC_THREADS) {
        float o1, o2;
        rotate(to_f32(x[i]) + to_f32(bb[i]), to_f32(x[i + half]) + to_f32(bb[i + half]),
               to_f32(cs[tok * hd + i]), to_f32(cs[tok * hd + half + i]), &o1, &o2);
        qs[i] = o1 * scale;
        qs[i + half] = o2 * scale;
    }
    __syncthreads();
    const T *K = cache + ((0 * b + bi) * kv_heads + kvh) * cap * hd;
    const T *V = cache + ((1 * b + bi) * kv_heads + kvh) * cap * hd;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int n = (int)(k1 - k0);
    // Scores: warp w takes keys w, w + 4, ...; lanes over the head dimension (coalesced K rows),
    // DEC_BATCH keys loaded before any is reduced.
    constexpr int PER_LANE = DEC_MAX_HD / 32;
    float qr[PER_LANE];
#pragma unroll
    for (int c = 0; c < PER_LANE; c++) {
        const int64_t i = lane + 32 * c;
        qr[c] = i < hd ? qs[i] : 0.0f;
    }
    constexpr int WARPS = DEC_THREADS / 32;
    for (int base = warp; base < n; base += WARPS * DEC_BATCH) {
        float dot[DEC_BATCH];
#pragma unroll
        for (int u = 0; u < DEC_BATCH; u++) {
            const int j = base + u * WARPS;
            dot[u] = 0.0f;
            if (j < n) {
                const T *kr = K + (k0 + j) * hd;
#pragma unroll
                for (int c = 0; c < PER_LANE; c++) {
                    const int64_t i = lane + 32 * c;
                    if (i < hd) dot[u] += qr[c] * to_f32(kr[i]);
                }
            }
        }
#pragma unroll
        for (int off = 16; off > 0; off /= 2) {
#pragma unroll
            for (int u = 0; u < DEC_BATCH; u++)
                dot[u] += __shfl_xor_sync(0xffffffff, dot[u], off);
        }
        if (lane == 0) {
#pragma unroll
            for (int u = 0; u < DEC_BATCH; u++) {
                const int j = base + u * WARPS;
                if (j < n) ps[j] = dot[u];
            }
        }
    }
    __syncthreads();
    float m = -INFINITY;
    for (int j = 0; j < n; j++) m = fmaxf(m, ps[j]);
    __syncthreads(); // everyone has read the raw scores
    if (threadIdx.x < n) ps[threadIdx.x] = expf(ps[threadIdx.x] - m);
    __syncthreads();
    float l = 0.0f;
    for (int j = 0; j < n; j++) l += ps[j];
    // Weighted values: threads over the head dimension (coalesced rows of V).
    for (int64_t i = threadIdx.x; i < hd; i += DEC_THREADS) {
        float acc = 0.0f;
#pragma unroll 16
        for (int j = 0; j < n; j++) acc += ps[j] * to_f32(V[(k0 + j) * hd + i]);
        out[2 + i] = acc;
    }
    if (threadIdx.x == 0) {
        out[0] = m;
        out[1] = l;
    }
}

// Phase 2: one block per query row combines its splits and writes the output in the layout
// o_proj reads, (b, t, heads * hd). A row without visible keys (a padding query) gets zeros.
// The splits' (max, sum) pairs are loaded once, in parallel, into shared memory (a loop over
// them in every thread would wait on one load at a time); the weighted sums are then read with
// the split loop unrolled so that several loads are in flight.
#define DEC_MAX_SPLITS 1024
template <typename T>
__device__ void attn_decode_combine(const float *__restrict__ part, T *__restrict__ out,
                                    int64_t t, int64_t heads, int64_t hd, int64_t splits) {
    const int64_t row = blockIdx.x;
    const int64_t ti = row % t, h = (row / t) % heads, bi = row / (t * heads);
    const float *p = part + row * splits * (hd + 2);
    __shared__ float wsh[DEC_MAX_SPLITS];
    __shared__ float red[DEC_THREADS / 32];
    __shared__ float total;
    // Max over the splits (a block reduction), then each split's weight exp(m_s - M).
    float mx = -INFINITY;
    for (int64_t s = threadIdx.x; s < splits; s += DEC_THREADS) mx = fmaxf(mx, p[s * (hd + 2)]);
    for (int off = 16; off > 0; off /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, off));
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int w = 0; w < DEC_THREADS / 32; w++) mx = fmaxf(mx, red[w]);
    __syncthreads();
    float l = 0.0f;
    for (int64_t s = threadIdx.x; s < splits; s += DEC_THREADS) {
        const float ms = p[s * (hd + 2)];
        const float wgt = (mx == -INFINITY || ms == -INFINITY) ? 0.0f : expf(ms - mx);
        wsh[s] = wgt;
        l += p[s * (hd + 2) + 1] * wgt;
    }
    for (int off = 16; off > 0; off /= 2) l += __shfl_xor_sync(0xffffffff, l, off);
    if (lane == 0) red[warp] = l;
    __syncthreads();
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (int w = 0; w < DEC_THREADS / 32; w++) sum += red[w];
        total = sum;
    }
    __syncthreads();
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    T *o = out + ((bi * t + ti) * heads + h) * hd;
    for (int64_t i = threadIdx.x; i < hd; i += DEC_THREADS) {
        float acc = 0.0f;
#pragma unroll 8
        for (int64_t s = 0; s < splits; s++) acc += p[s * (hd + 2) + 2 + i] * wsh[s];
        o[i] = from_f32<T>(acc * inv);
    }
}

#define INSTANTIATE(SUFFIX, T)                                                                    \
    extern "C" __global__ void silu_mul_##SUFFIX(const T *gu, T *out, int64_t rows, int64_t f) {  \
        silu_mul<T>(gu, out, rows, f);                                                            \
    }                                                                                             \
    extern "C" __global__ void rope_q_##SUFFIX(const T *qkv, const T *bias, const T *cs, T *q,    \
                                               int64_t b, int64_t t, int64_t heads,               \
                                               int64_t kv_heads, int64_t hd) {                    \
        rope_q<T>(qkv, bias, cs, q, b, t, heads, kv_heads, hd);                                   \
    }                                                                                             \
    extern "C" __global__ void kv_append_##SUFFIX(T *cache, const T *qkv, const T *bias,          \
                                                  const T *cs, int64_t b, int64_t t,              \
                                                  int64_t heads, int64_t kv_heads, int64_t hd,    \
                                                  int64_t cap, int64_t slot0) {                   \
        kv_append<T>(cache, qkv, bias, cs, b, t, heads, kv_heads, hd, cap, slot0);                \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(SOFTMAX_THREADS)                                 \
        masked_softmax_##SUFFIX(T *s, const uint32_t *pad, int64_t rows_per_seq, int64_t n,       \
                                int64_t keys, int64_t q_slot0, float scale) {                     \
        masked_softmax<T>(s, pad, rows_per_seq, n, keys, q_slot0, scale);                         \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(NORM_THREADS)                                    \
        add_rms_norm_##SUFFIX(const T *x, const T *y, const T *w, T *out, int64_t rows, int64_t h, \
                              float eps) {                                                        \
        add_rms_norm<T>(x, y, w, out, rows, h, eps);                                              \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(DEC_THREADS) attn_decode_split_##SUFFIX(          \
        const T *qkv, const T *bias, const T *cs, const T *cache, const uint32_t *pad,            \
        float *part, int64_t b, int64_t t, int64_t heads, int64_t kv_heads, int64_t hd,           \
        int64_t cap, int64_t q_slot0, int64_t splits, float scale) {                              \
        attn_decode_split<T>(qkv, bias, cs, cache, pad, part, b, t, heads, kv_heads, hd, cap,     \
                             q_slot0, splits, scale);                                             \
    }                                                                                             \
    extern "C" __global__ void __launch_bounds__(DEC_THREADS) attn_decode_combine_##SUFFIX(       \
        const float *part, T *out, int64_t t, int64_t heads, int64_t hd, int64_t splits) {        \
        attn_decode_combine<T>(part, out, t, heads, hd, splits);                                  \
    }

INSTANTIATE(bf16, __nv_bfloat16)
INSTANTIATE(f32, float)
