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

// 16-byte vectors: the widest load one thread issues per instruction. A thread that loads its
// share of a row as a few vectors keeps all of them in flight at once; two-byte loads of bf16
// cost one instruction each and, in dependent loops, one round trip each.
template <typename T> struct Vec {
    static constexpr int N = 16 / sizeof(T);
};
__device__ __forceinline__ uint4 ld16(const void *p) { return *reinterpret_cast<const uint4 *>(p); }
__device__ __forceinline__ bool aligned16(const void *p) {
    return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}
template <typename T> __device__ __forceinline__ void unpack(uint4 r, float *f);
template <> __device__ __forceinline__ void unpack<float>(uint4 r, float *f) {
    f[0] = __uint_as_float(r.x);
    f[1] = __uint_as_float(r.y);
    f[2] = __uint_as_float(r.z);
    f[3] = __uint_as_float(r.w);
}
template <> __device__ __forceinline__ void unpack<__nv_bfloat16>(uint4 r, float *f) {
    const __nv_bfloat162 *p = reinterpret_cast<const __nv_bfloat162 *>(&r);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const float2 v = __bfloat1622float2(p[k]);
        f[2 * k] = v.x;
        f[2 * k + 1] = v.y;
    }
}
template <typename T> __device__ __forceinline__ uint4 pack(const float *f);
template <> __device__ __forceinline__ uint4 pack<float>(const float *f) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                      __float_as_uint(f[3]));
}
template <> __device__ __forceinline__ uint4 pack<__nv_bfloat16>(const float *f) {
    uint4 r;
    __nv_bfloat162 *p = reinterpret_cast<__nv_bfloat162 *>(&r);
#pragma unroll
    for (int k = 0; k < 4; k++) p[k] = __floats2bfloat162_rn(f[2 * k], f[2 * k + 1]);
    return r;
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
// decode step has one row per sequence, so the block must keep many loads in flight: when the
// row is 16-byte aligned and fits, each thread loads its (up to NORM_VECS) vectors of x, y and
// w in one burst and keeps the sums in registers for the second pass. Other rows take a loop
// that re-reads the sums.
#define NORM_THREADS 512
#define NORM_VECS 4
template <typename T>
__device__ void add_rms_norm(const T *__restrict__ x, const T *__restrict__ y,
                             const T *__restrict__ w, T *__restrict__ out, int64_t rows,
                             int64_t h, float eps) {
    constexpr int VEC = Vec<T>::N;
    const int64_t row = blockIdx.x;
    const T *xr = x + row * h, *yr = y + row * h;
    T *sum = out + row * h, *normed = out + (rows + row) * h;
    const bool cached = h % VEC == 0 && h <= (int64_t)NORM_THREADS * VEC * NORM_VECS &&
                        aligned16(xr) && aligned16(yr) && aligned16(w) && aligned16(sum) &&
                        aligned16(normed);
    float v[NORM_VECS][VEC], wv[NORM_VECS][VEC];
    float ss = 0.0f;
    if (cached) {
        uint4 xa[NORM_VECS], ya[NORM_VECS], wa[NORM_VECS];
#pragma unroll
        for (int j = 0; j < NORM_VECS; j++) {
            const int64_t i = (threadIdx.x + (int64_t)j * NORM_THREADS) * VEC;
            if (i < h) {
                xa[j] = ld16(xr + i);
                ya[j] = ld16(yr + i);
                wa[j] = ld16(w + i);
            }
        }
#pragma unroll
        for (int j = 0; j < NORM_VECS; j++) {
            const int64_t i = (threadIdx.x + (int64_t)j * NORM_THREADS) * VEC;
            float a[VEC], b[VEC];
#pragma unroll
            for (int e = 0; e < VEC; e++) v[j][e] = wv[j][e] = 0.0f;
            if (i < h) {
                unpack<T>(xa[j], a);
                unpack<T>(ya[j], b);
                unpack<T>(wa[j], wv[j]);
#pragma unroll
                for (int e = 0; e < VEC; e++) a[e] += b[e];
                const uint4 s = pack<T>(a); // rounded once to T; the norm reads the rounded sum
                *reinterpret_cast<uint4 *>(sum + i) = s;
                unpack<T>(s, v[j]);
            }
#pragma unroll
            for (int e = 0; e < VEC; e++) ss += v[j][e] * v[j][e];
        }
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
        for (int j = 0; j < NORM_VECS; j++) {
            const int64_t i = (threadIdx.x + (int64_t)j * NORM_THREADS) * VEC;
            if (i < h) {
                float o[VEC];
#pragma unroll
                for (int e = 0; e < VEC; e++) o[e] = v[j][e] * inv * wv[j][e];
                *reinterpret_cast<uint4 *>(normed + i) = pack<T>(o);
            }
        }
    } else {
        // Each thread reads back only the sums it wrote itself: no barrier needed.
        for (int64_t i = threadIdx.x; i < h; i += NORM_THREADS) {
            normed[i] = from_f32<T>(to_f32(sum[i]) * inv * to_f32(w[i]));
        }
    }
}

// Attention for a few queries per sequence (decode), straight from the packed projection and
// the cache, in one launch ("flash decoding" with the combine in the last block). One block per
// (split of DEC_KEYS keys, query row); query row r = (bi * heads + h) * t + ti sees keys
// [pad[bi], q_slot0 + ti]. A block writes its partial (max, sum of exp, sum of exp * V) in f32
// to part (rows, splits, hd + 2); the last block of a row to finish (a per-row counter in
// `done`, which that block resets to 0 for the next launch) combines them into the output.
//
// Latency, not bandwidth, bounds a block (the whole split is 32 KB of K and V): so each lane
// loads its slice of the query (biased, rotated, scaled) and its 16-byte slices of the split's
// K rows all at once, before using any of them, then its V slices the same way while the
// scores are reduced: two memory round trips per block. A key row is read by hd / VEC lanes (a
// "row group"), so a warp covers 32 / (hd / VEC) keys per load and the dot products are
// reduced by shuffles inside a row group. (Loading K and V in one burst took 123 registers:
// 4 blocks per SM, so 1k keys x 32 heads needed two waves, and measured 18 us per call.)
// (Earlier versions: 2-byte loads in dependent batches, a serial softmax over shared scores
// and a second launch for the combine measured ~16 us per call at 1k keys; one block per KV
// head, 2x slower; full unrolling of 2-byte loads, register spills.)
// Instantiated for hd = 16, 32, 64, 128 (the host picks the kernel by name); rows must start
// on 16-byte boundaries (the host checks).
#define DEC_THREADS 128
#define DEC_WARPS (DEC_THREADS / 32)
#define DEC_KEYS 64

// The last block of a query row: combine the splits' partials into the output row. One pass,
// no barrier: thread i owns output element i and reads the splits DEC_COMBINE at a time (all of
// a batch's loads in flight together), merging them into a running (max, sum, weighted sum).
// The maxima are in base 2, as the split phase writes them (scores scaled by log2 e, exp2f).
// The partials of other blocks (and of the cascade's prefix kernel) are read through L2
// (__ldcg): this SM's L1 never saw them. `attn_decode_fold` merges one array of `splits`
// partials (`hd + 2` floats each) into the running state of element i; a cascade row folds its
// own keys' partials, then the shared prefix's.
#define DEC_COMBINE 8
__device__ __forceinline__ void attn_decode_fold(const float *__restrict__ p, int64_t i,
                                                 int64_t hd, int64_t splits, float &m, float &l,
                                                 float &acc) {
    for (int64_t s0 = 0; s0 < splits; s0 += DEC_COMBINE) {
        float ms[DEC_COMBINE], ls[DEC_COMBINE], vs[DEC_COMBINE];
#pragma unroll
        for (int k = 0; k < DEC_COMBINE; k++) {
            const float *q = p + (s0 + k) * (hd + 2);
            const bool in = s0 + k < splits;
            ms[k] = in ? __ldcg(q) : -INFINITY;
            ls[k] = in ? __ldcg(q + 1) : 0.0f;
            vs[k] = in ? __ldcg(q + 2 + i) : 0.0f;
        }
        float mx = m;
#pragma unroll
        for (int k = 0; k < DEC_COMBINE; k++) mx = fmaxf(mx, ms[k]);
        if (mx == -INFINITY) continue; // nothing visible so far
        const float keep = m == -INFINITY ? 0.0f : exp2f(m - mx);
        l *= keep;
        acc *= keep;
#pragma unroll
        for (int k = 0; k < DEC_COMBINE; k++) {
            const float w = ms[k] == -INFINITY ? 0.0f : exp2f(ms[k] - mx);
            l += ls[k] * w;
            acc += vs[k] * w;
        }
        m = mx;
    }
}

// `p`: this row's own partials (`splits`); `pp`: its prefix partials (`psplits`, 0 without a
// shared prefix).
template <typename T>
__device__ void attn_decode_combine(const float *__restrict__ p, const float *__restrict__ pp,
                                    T *__restrict__ o, int64_t hd, int64_t splits,
                                    int64_t psplits) {
    const int64_t i = threadIdx.x;
    if (i >= hd) return;
    float m = -INFINITY, l = 0.0f, acc = 0.0f;
    attn_decode_fold(p, i, hd, splits, m, l, acc);
    if (psplits > 0) attn_decode_fold(pp, i, hd, psplits, m, l, acc);
    o[i] = from_f32<T>(l > 0.0f ? acc / l : 0.0f); // no visible key: zeros
}

template <typename T, int HD>
__device__ void attn_decode(const T *__restrict__ qkv, const T *__restrict__ bias,
                            const T *__restrict__ cs, const T *__restrict__ cache,
                            const uint32_t *__restrict__ pad, float *__restrict__ part,
                            const float *__restrict__ ppart, T *__restrict__ out,
                            uint32_t *__restrict__ done, int64_t b, int64_t t, int64_t heads,
                            int64_t kv_heads, int64_t cap, int64_t q_slot0, int64_t splits,
                            int64_t psplits, float scale) {
    // Everything that depends on the head dimension is a constant: loops unroll completely and
    // the in-block offsets fold. (A runtime head dimension took ~1,800 instructions per warp,
    // and the kernel was bound by issuing them: 14.5 us under ncu at 1k keys.)
    constexpr int VEC = Vec<T>::N;
    constexpr int LPR = HD / VEC;                        // lanes per key row
    constexpr int KPW = 32 / LPR;                        // keys per warp per load
    constexpr int ROUNDS = DEC_KEYS / (DEC_WARPS * KPW); // loads per lane, of K and of V
    constexpr int HALF = HD / 2;
    static_assert(LPR >= 1 && LPR <= 32 && ROUNDS >= 1 && HALF % VEC == 0, "head dim");
    const int64_t row = blockIdx.y, split = blockIdx.x;
    const int64_t ti = row % t, h = (row / t) % heads, bi = row / (t * heads);
    const int64_t kvh = h / (heads / kv_heads);
    const int64_t tok = bi * t + ti, width = (heads + 2 * kv_heads) * HD;
    const int64_t lo = pad[bi], hi = q_slot0 + ti + 1; // visible keys [lo, hi)
    const int64_t k0 = lo + split * DEC_KEYS, k1 = min(k0 + DEC_KEYS, hi);
    const int n = k1 > k0 ? (int)(k1 - k0) : 0; // keys of this split (0: a neutral partial)
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int sub = lane / LPR, d0 = (lane % LPR) * VEC; // this lane: key `sub`, dims d0..
    // The loads of K first, all at once; V follows while the scores are reduced.
    const T *K = cache + (((0 * b + bi) * kv_heads + kvh) * cap + k0) * HD;
    const T *V = cache + (((1 * b + bi) * kv_heads + kvh) * cap + k0) * HD;
    uint4 kr[ROUNDS];
#pragma unroll
    for (int u = 0; u < ROUNDS; u++) {
        const int j = (u * DEC_WARPS + warp) * KPW + sub;
        kr[u] = j < n ? ld16(K + j * HD + d0) : make_uint4(0, 0, 0, 0);
    }
    // The query slice: [x1 c - x2 s] below half, [x2 c + x1 s] above (the NeoX rotation),
    // scaled by 1/sqrt(hd) and log2(e): scores live in base 2, for exp2f.
    float q[VEC];
    {
        const T *x = qkv + tok * width + h * HD, *bb = bias + h * HD, *c = cs + tok * HD;
        const int dp = d0 < HALF ? d0 + HALF : d0 - HALF, dc = d0 < HALF ? d0 : d0 - HALF;
        float a[VEC], p[VEC], ba[VEC], bp[VEC], co[VEC], si[VEC];
        unpack<T>(ld16(x + d0), a);
        unpack<T>(ld16(x + dp), p);
        unpack<T>(ld16(bb + d0), ba);
        unpack<T>(ld16(bb + dp), bp);
        unpack<T>(ld16(c + dc), co);
        unpack<T>(ld16(c + HALF + dc), si);
        const float sign = d0 < HALF ? -1.0f : 1.0f, qs = scale * 1.4426950408889634f;
#pragma unroll
        for (int e = 0; e < VEC; e++)
            q[e] = ((a[e] + ba[e]) * co[e] + sign * (p[e] + bp[e]) * si[e]) * qs;
    }
    __shared__ float ps[DEC_KEYS];
#pragma unroll
    for (int u = 0; u < ROUNDS; u++) {
        float k[VEC];
        unpack<T>(kr[u], k);
        float d = 0.0f;
#pragma unroll
        for (int e = 0; e < VEC; e++) d += q[e] * k[e];
#pragma unroll
        for (int off = LPR / 2; off > 0; off /= 2) d += __shfl_xor_sync(0xffffffff, d, off);
        const int j = (u * DEC_WARPS + warp) * KPW + sub;
        if (d0 == 0 && j < n) ps[j] = d;
    }
    uint4 vr[ROUNDS];
#pragma unroll
    for (int u = 0; u < ROUNDS; u++) {
        const int j = (u * DEC_WARPS + warp) * KPW + sub;
        vr[u] = j < n ? ld16(V + j * HD + d0) : make_uint4(0, 0, 0, 0);
    }
    __syncthreads();
    // Softmax statistics of the split (base 2): every warp reduces the 64 scores itself.
    float m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int j = lane; j < DEC_KEYS; j += 32)
        if (j < n) m = fmaxf(m, ps[j]);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, off));
#pragma unroll
    for (int j = lane; j < DEC_KEYS; j += 32)
        if (j < n) l += exp2f(ps[j] - m);
#pragma unroll
    for (int off = 16; off > 0; off /= 2) l += __shfl_xor_sync(0xffffffff, l, off);
    // Weighted values: this lane's keys, then the lanes of the same dims, then the warps.
    float acc[VEC];
#pragma unroll
    for (int e = 0; e < VEC; e++) acc[e] = 0.0f;
#pragma unroll
    for (int u = 0; u < ROUNDS; u++) {
        const int j = (u * DEC_WARPS + warp) * KPW + sub;
        const float w = j < n ? exp2f(ps[j] - m) : 0.0f;
        float v[VEC];
        unpack<T>(vr[u], v);
#pragma unroll
        for (int e = 0; e < VEC; e++) acc[e] += w * v[e];
    }
#pragma unroll
    for (int off = LPR; off < 32; off *= 2) {
#pragma unroll
        for (int e = 0; e < VEC; e++) acc[e] += __shfl_xor_sync(0xffffffff, acc[e], off);
    }
    __shared__ float red[DEC_WARPS][HD];
    if (sub == 0) {
#pragma unroll
        for (int e = 0; e < VEC; e++) red[warp][d0 + e] = acc[e];
    }
    __syncthreads();
    float *mine = part + (row * splits + split) * (HD + 2);
    for (int i = threadIdx.x; i < HD; i += DEC_THREADS) {
        float sum = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) sum += red[w][i];
        mine[2 + i] = sum;
    }
    if (threadIdx.x == 0) {
        mine[0] = m;
        mine[1] = l;
    }
    // The last block of the row to get here combines. Each thread fences its own writes before
    // the count (the threadFenceReduction pattern of the CUDA samples).
    __threadfence();
    __syncthreads();
    __shared__ bool last;
    if (threadIdx.x == 0) {
        last = atomicAdd(done + row, 1u) == (uint32_t)(splits - 1);
        if (last) done[row] = 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    attn_decode_combine<T>(part + row * splits * (HD + 2), ppart + row * psplits * (HD + 2),
                           out + ((bi * t + ti) * heads + h) * HD, HD, splits, psplits);
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
    }

INSTANTIATE(bf16, __nv_bfloat16)
INSTANTIATE(f32, float)

#define INSTANTIATE_DECODE(SUFFIX, T, HD)                                                         \
    extern "C" __global__ void __launch_bounds__(DEC_THREADS) attn_decode_##SUFFIX##_##HD(         \
        const T *qkv, const T *bias, const T *cs, const T *cache, const uint32_t *pad,            \
        float *part, const float *ppart, T *out, uint32_t *done, int64_t b, int64_t t,            \
        int64_t heads, int64_t kv_heads, int64_t cap, int64_t q_slot0, int64_t splits,            \
        int64_t psplits, float scale) {                                                           \
        attn_decode<T, HD>(qkv, bias, cs, cache, pad, part, ppart, out, done, b, t, heads,        \
                           kv_heads, cap, q_slot0, splits, psplits, scale);                       \
    }

// The head dimensions of `decode_head_dim` in mod.rs.
INSTANTIATE_DECODE(bf16, __nv_bfloat16, 16)
INSTANTIATE_DECODE(bf16, __nv_bfloat16, 32)
INSTANTIATE_DECODE(bf16, __nv_bfloat16, 64)
INSTANTIATE_DECODE(bf16, __nv_bfloat16, 128)
INSTANTIATE_DECODE(f32, float, 16)
INSTANTIATE_DECODE(f32, float, 32)
INSTANTIATE_DECODE(f32, float, 64)
INSTANTIATE_DECODE(f32, float, 128)

// The shared-prefix half of cascade decode attention (rows continuing one shared prefix, see
// `attention_shared` in attention.rs). The rows' own keys go through `attn_decode` above, whose
// combine folds in the partials this kernel writes, so the two parts are joined exactly through
// their softmax statistics (max, sum) in one place.
//
// Why a kernel of its own: every query row of a KV head (b rows x g query heads x t queries)
// attends to the same prefix keys, so the prefix is a small matrix product per KV head,
// (b g t) x P x d, not b g t dot-product sweeps. One block per (split of the prefix's keys, KV
// head, tile of CAS_ROWS query rows) loads each 64-key tile of K and V once into shared memory
// and all its warps (16 query rows each) use it: tensor-core mma.sync (bf16 in, f32
// accumulate) for the scores and for P V, an online softmax in registers between them (the
// FlashAttention-2 scheme: the score accumulators are re-packed in place as the A operand of
// P V). At the 72B rank's decode shapes (16 rows x 8 heads = 128 query rows per KV head, a 16k
// prefix) the candle-op path ran ~37 launches per layer; this is one, and the prefix's K/V is
// read once per KV head and row tile (one tile up to 128 rows).
//
// Queries: rotated here from the packed projection (as `rope_q`: q + bias, NeoX rotation,
// rounded once to bf16, the operand type of mma), stored in shared memory, then held as A
// fragments in registers for the whole block. Scores: f32 from the mma, scaled by
// scale x log2(e) (base 2, as attn_decode's partials). Probabilities: rounded to bf16 for P V
// (as the candle path's `e.to_dtype(bf16).matmul(v)`), their sum kept in f32.
// Output: for query row `row` = (bi * heads + h) * t + ti and split s, the partial
// (max, sum, unnormalised sum of p V) at ppart[(row * psplits + s) * (HD + 2)].
// The next tile's K/V is loaded into registers while the current one is multiplied.
#define CAS_THREADS 256
#define CAS_WARPS (CAS_THREADS / 32)
#define CAS_ROWS (CAS_WARPS * 16) // query rows of a block: 16 per warp (the mma's M)
#define CAS_KEYS 64               // keys of a shared-memory tile

__device__ __forceinline__ void mma_bf16_16816(float *c, const uint32_t *a, uint32_t b0,
                                               uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a bf16 pair in one register: `lo` in the low half (the lower column/row index,
// as mma fragments order their elements).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t *>(&v);
}
__device__ __forceinline__ uint32_t pack_raw_bf16x2(__nv_bfloat16 lo, __nv_bfloat16 hi) {
    return (uint32_t)__bfloat16_as_ushort(lo) | ((uint32_t)__bfloat16_as_ushort(hi) << 16);
}

template <int HD>
__device__ void cascade_prefix(const __nv_bfloat16 *__restrict__ qkv,
                               const __nv_bfloat16 *__restrict__ bias,
                               const __nv_bfloat16 *__restrict__ cs,
                               const __nv_bfloat16 *__restrict__ prefix, float *__restrict__ ppart,
                               int64_t b, int64_t t, int64_t heads, int64_t kv_heads, int64_t pcap,
                               int64_t plen, int64_t tiles_per_split, int64_t psplits,
                               float scale) {
    typedef __nv_bfloat16 T;
    // Shared row stride in elements: 16 bytes of padding per row make the fragment loads
    // (8 rows x 4 words per warp) fall in 32 distinct banks.
    constexpr int STRIDE = HD + 8;
    constexpr int KSTEPS = HD / 16; // k-steps of Q K^T
    constexpr int DTILES = HD / 8;  // n-tiles of P V
    constexpr int HALF = HD / 2;
    constexpr int VEC = 8; // bf16 per 16-byte vector
    constexpr int TILE_VECS = CAS_KEYS * HD / VEC;
    constexpr int LOADS = (TILE_VECS + CAS_THREADS - 1) / CAS_THREADS;
    constexpr int QITEMS = CAS_ROWS * HALF / VEC; // (row, 8 dims of the lower half) items
    constexpr int QLOADS = (QITEMS + CAS_THREADS - 1) / CAS_THREADS;
    static_assert(HD % 16 == 0 && HALF % VEC == 0, "head dim");
    // K tile | V tile; first the block's queries (CAS_ROWS = 2 x CAS_KEYS rows: same size).
    __shared__ __align__(16) T smem[2 * CAS_KEYS * STRIDE];

    const int64_t split = blockIdx.x, kvh = blockIdx.y, rtile = blockIdx.z;
    const int64_t g = heads / kv_heads, nrows = b * g * t; // query rows of this KV head
    const int64_t width = (heads + 2 * kv_heads) * HD;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int gid = lane / 4, tig = lane % 4; // the mma fragments' row group, thread in group
    // Local row lr = (bi * g + gi) * t + ti; its output row is (bi * heads + kvh * g + gi) * t + ti.
    auto out_row = [&](int64_t lr) {
        const int64_t ti = lr % t, gi = (lr / t) % g, bi = lr / (t * g);
        return (bi * heads + kvh * g + gi) * t + ti;
    };

    // Phase 0: the block's queries, rotated, into shared memory (zeros past the last row). All
    // loads first (one round trip), then the arithmetic.
    {
        uint4 xa[QLOADS], xb[QLOADS], ba[QLOADS], bb[QLOADS], co[QLOADS], si[QLOADS];
#pragma unroll
        for (int u = 0; u < QLOADS; u++) {
            const int item = u * CAS_THREADS + tid;
            const int r = item / (HALF / VEC), d = (item % (HALF / VEC)) * VEC;
            const int64_t lr = rtile * CAS_ROWS + r;
            const uint4 z = make_uint4(0, 0, 0, 0);
            xa[u] = xb[u] = ba[u] = bb[u] = co[u] = si[u] = z;
            if (item < QITEMS && lr < nrows) {
                const int64_t ti = lr % t, gi = (lr / t) % g, bi = lr / (t * g);
                const int64_t h = kvh * g + gi, tok = bi * t + ti;
                const T *x = qkv + tok * width + h * HD, *bs = bias + h * HD, *c = cs + tok * HD;
                xa[u] = ld16(x + d);
                xb[u] = ld16(x + d + HALF);
                ba[u] = ld16(bs + d);
                bb[u] = ld16(bs + d + HALF);
                co[u] = ld16(c + d);
                si[u] = ld16(c + HALF + d);
            }
        }
#pragma unroll
        for (int u = 0; u < QLOADS; u++) {
            const int item = u * CAS_THREADS + tid;
            if (item >= QITEMS) continue;
            const int r = item / (HALF / VEC), d = (item % (HALF / VEC)) * VEC;
            float x1[VEC], x2[VEC], b1[VEC], b2[VEC], c[VEC], s[VEC], o1[VEC], o2[VEC];
            unpack<T>(xa[u], x1);
            unpack<T>(xb[u], x2);
            unpack<T>(ba[u], b1);
            unpack<T>(bb[u], b2);
            unpack<T>(co[u], c);
            unpack<T>(si[u], s);
#pragma unroll
            for (int e = 0; e < VEC; e++)
                rotate(x1[e] + b1[e], x2[e] + b2[e], c[e], s[e], &o1[e], &o2[e]);
            *reinterpret_cast<uint4 *>(smem + r * STRIDE + d) = pack<T>(o1);
            *reinterpret_cast<uint4 *>(smem + r * STRIDE + d + HALF) = pack<T>(o2);
        }
    }
    __syncthreads();
    // A fragments of this warp's 16 query rows (rows gid and gid + 8 of the warp's slice).
    uint32_t qa[KSTEPS][4];
    {
        const T *q0 = smem + (warp * 16 + gid) * STRIDE + tig * 2, *q1 = q0 + 8 * STRIDE;
#pragma unroll
        for (int kk = 0; kk < KSTEPS; kk++) {
            qa[kk][0] = *reinterpret_cast<const uint32_t *>(q0 + kk * 16);
            qa[kk][1] = *reinterpret_cast<const uint32_t *>(q1 + kk * 16);
            qa[kk][2] = *reinterpret_cast<const uint32_t *>(q0 + kk * 16 + 8);
            qa[kk][3] = *reinterpret_cast<const uint32_t *>(q1 + kk * 16 + 8);
        }
    }
    __syncthreads(); // the query rows' memory becomes the K/V tiles
    const bool active = rtile * CAS_ROWS + warp * 16 < nrows; // warp-uniform

    const int64_t key0 = split * tiles_per_split * CAS_KEYS;
    const int64_t key_end = min(plen, key0 + tiles_per_split * CAS_KEYS);
    const int64_t ntiles = (key_end - key0 + CAS_KEYS - 1) / CAS_KEYS; // >= 1 (host's split)
    const T *Kg = prefix + (0 * kv_heads + kvh) * pcap * HD;
    const T *Vg = prefix + (1 * kv_heads + kvh) * pcap * HD;
    uint4 kr[LOADS], vr[LOADS];
    // Keys past key_end load as zeros (a zero V row times a zero probability stays 0, where
    // whatever the cache holds past the prefix might not).
#define CAS_LOAD(K0)                                                                              \
    _Pragma("unroll") for (int u = 0; u < LOADS; u++) {                                           \
        const int idx = u * CAS_THREADS + tid;                                                    \
        const int64_t key = (K0) + idx / (HD / VEC);                                              \
        const int c = (idx % (HD / VEC)) * VEC;                                                   \
        const bool in = idx < TILE_VECS && key < key_end;                                         \
        kr[u] = in ? ld16(Kg + key * HD + c) : make_uint4(0, 0, 0, 0);                            \
        vr[u] = in ? ld16(Vg + key * HD + c) : make_uint4(0, 0, 0, 0);                            \
    }
    CAS_LOAD(key0)

    const float qs = scale * 1.4426950408889634f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // rows gid, gid + 8
    float o[DTILES][4];
#pragma unroll
    for (int dt = 0; dt < DTILES; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;

    for (int64_t tile = 0; tile < ntiles; tile++) {
        const int64_t k0 = key0 + tile * CAS_KEYS;
#pragma unroll
        for (int u = 0; u < LOADS; u++) {
            const int idx = u * CAS_THREADS + tid;
            if (idx < TILE_VECS) {
                const int key = idx / (HD / VEC), c = (idx % (HD / VEC)) * VEC;
                *reinterpret_cast<uint4 *>(smem + key * STRIDE + c) = kr[u];
                *reinterpret_cast<uint4 *>(smem + (CAS_KEYS + key) * STRIDE + c) = vr[u];
            }
        }
        __syncthreads();
        if (tile + 1 < ntiles) {
            CAS_LOAD(k0 + CAS_KEYS)
        }
        if (active) {
            // Scores of the warp's 16 rows x 64 keys: 8 n-tiles of 8 keys.
            float s[CAS_KEYS / 8][4];
#pragma unroll
            for (int nt = 0; nt < CAS_KEYS / 8; nt++) {
                s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
                const T *kp = smem + (nt * 8 + gid) * STRIDE + tig * 2;
#pragma unroll
                for (int kk = 0; kk < KSTEPS; kk++) {
                    const uint32_t b0 = *reinterpret_cast<const uint32_t *>(kp + kk * 16);
                    const uint32_t b1 = *reinterpret_cast<const uint32_t *>(kp + kk * 16 + 8);
                    mma_bf16_16816(s[nt], qa[kk], b0, b1);
                }
            }
            // Online softmax: element e of s[nt] is row gid (e < 2) or gid + 8, key
            // nt * 8 + tig * 2 + (e & 1); a row's 64 scores live in the 4 lanes of its group.
            float mx[2] = {m[0], m[1]};
#pragma unroll
            for (int nt = 0; nt < CAS_KEYS / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int64_t key = k0 + nt * 8 + tig * 2 + (e & 1);
                    const float v = key < key_end ? s[nt][e] * qs : -INFINITY;
                    s[nt][e] = v;
                    mx[e >> 1] = fmaxf(mx[e >> 1], v);
                }
            }
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 1));
                mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffff, mx[r], 2));
            }
            // Every tile holds at least one key: mx is finite; exp2f(-inf) = 0 on the first.
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                alpha[r] = exp2f(m[r] - mx[r]);
                m[r] = mx[r];
                l[r] *= alpha[r];
            }
#pragma unroll
            for (int dt = 0; dt < DTILES; dt++) {
                o[dt][0] *= alpha[0];
                o[dt][1] *= alpha[0];
                o[dt][2] *= alpha[1];
                o[dt][3] *= alpha[1];
            }
#pragma unroll
            for (int nt = 0; nt < CAS_KEYS / 8; nt++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float p = exp2f(s[nt][e] - m[e >> 1]);
                    s[nt][e] = p;
                    l[e >> 1] += p; // this lane's share; the group's lanes add up at the end
                }
            }
            // P V: the score accumulators of key n-tiles 2kk, 2kk + 1 are the A fragment of
            // k-step kk; B = V (keys x dims) read as bf16 pairs of consecutive keys.
#pragma unroll
            for (int kk = 0; kk < CAS_KEYS / 16; kk++) {
                uint32_t a[4];
                a[0] = pack_bf16x2(s[2 * kk][0], s[2 * kk][1]);
                a[1] = pack_bf16x2(s[2 * kk][2], s[2 * kk][3]);
                a[2] = pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                a[3] = pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
                const T *vp = smem + (CAS_KEYS + kk * 16 + tig * 2) * STRIDE + gid;
#pragma unroll
                for (int dt = 0; dt < DTILES; dt++) {
                    const T *v = vp + dt * 8;
                    const uint32_t b0 = pack_raw_bf16x2(v[0], v[STRIDE]);
                    const uint32_t b1 = pack_raw_bf16x2(v[8 * STRIDE], v[9 * STRIDE]);
                    mma_bf16_16816(o[dt], a, b0, b1);
                }
            }
        }
        __syncthreads(); // the tile is read before the next one overwrites it
    }
#undef CAS_LOAD
    if (!active) return;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffff, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffff, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int64_t lr = rtile * CAS_ROWS + warp * 16 + gid + 8 * r;
        if (lr >= nrows) continue;
        float *dst = ppart + (out_row(lr) * psplits + split) * (HD + 2);
        if (tig == 0) {
            dst[0] = m[r];
            dst[1] = l[r];
        }
#pragma unroll
        for (int dt = 0; dt < DTILES; dt++) {
            dst[2 + dt * 8 + tig * 2] = o[dt][2 * r];
            dst[2 + dt * 8 + tig * 2 + 1] = o[dt][2 * r + 1];
        }
    }
}

#define INSTANTIATE_CASCADE(HD)                                                                   \
    extern "C" __global__ void __launch_bounds__(CAS_THREADS, 1) cascade_prefix_bf16_##HD(        \
        const __nv_bfloat16 *qkv, const __nv_bfloat16 *bias, const __nv_bfloat16 *cs,             \
        const __nv_bfloat16 *prefix, float *ppart, int64_t b, int64_t t, int64_t heads,           \
        int64_t kv_heads, int64_t pcap, int64_t plen, int64_t tiles_per_split, int64_t psplits,   \
        float scale) {                                                                            \
        cascade_prefix<HD>(qkv, bias, cs, prefix, ppart, b, t, heads, kv_heads, pcap, plen,       \
                           tiles_per_split, psplits, scale);                                      \
    }

// The head dimensions of `decode_head_dim` in mod.rs; bf16 only (the mma operand type).
INSTANTIATE_CASCADE(16)
INSTANTIATE_CASCADE(32)
INSTANTIATE_CASCADE(64)
INSTANTIATE_CASCADE(128)
