/* The CNN of one DC-CNN cascade in a single streaming pass, float32, AVX-512 (checked at run time).
 *
 * Layers (all 3x3, stride 1, zero padding 1): layer 0 maps cin0 -> C channels, layers 1 .. L-2 map
 * C -> C, each followed by the activation max(x, 0) + slope * min(x, 0); layer L-1 maps C -> cout with
 * no activation, optionally plus the cascade input (residual). Why one pass: computed layer by layer,
 * every hidden activation (C x H x W floats, 8 MiB at 256^2) goes to L3/DRAM and back, and the cheap
 * first and last layers are bound by that traffic. Here the layers run as a pipeline over image rows:
 * at step s the input row s is staged and layer l computes its row s - 1 - l, which needs rows
 * r - 1 .. r + 1 of layer l - 1, all computed at earlier steps or just before in this one. Each layer
 * keeps only its last 3 rows (a ring, zero-padded by one pixel left and right), so everything a step
 * touches stays in L1/L2 and nothing is computed twice.
 *
 * C -> C (and cin0 -> C) convs: blocks of PX = 16 / V output pixels x 16 V channels (V = C / 16) held
 * in 16 vector accumulators; per (tap, input channel) V weight vectors are loaded and each input value
 * is broadcast once, so the loop is bound by FMAs, not loads. The narrow last conv is a dot product
 * over (tap, channel) per output pixel. Single-threaded: the caller runs slices on separate threads.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f")))
#define INLINE static inline __attribute__((always_inline))

int cascade_cpu_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

/* Output pixels x0 .. x0 + PX - 1 of one row. rows[ky]: padded input rows ((w + 2) x cin floats;
 * column j holds input pixel j - 1); wt: (3, 3, cin, 16 V); bias: (16 V); dst: padded output row. */
INLINE AVX512 void conv_block(const float *const rows[3], const float *wt, const float *bias,
                              float *dst, int64_t x0, int64_t cin, __m512 slope, const int V,
                              const int PX) {
    const int64_t cout = 16 * V;
    __m512 acc[16];
    for (int p = 0; p < PX; p++)
        for (int v = 0; v < V; v++) acc[p * V + v] = _mm512_loadu_ps(bias + 16 * v);
    for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
            const float *src = rows[ky] + (x0 + kx) * cin;
            const float *wk = wt + (ky * 3 + kx) * cin * cout;
            for (int64_t ci = 0; ci < cin; ci++) {
                __m512 wv[4];
                for (int v = 0; v < V; v++) wv[v] = _mm512_loadu_ps(wk + ci * cout + 16 * v);
                for (int p = 0; p < PX; p++) {
                    __m512 b = _mm512_set1_ps(src[p * cin + ci]);
                    for (int v = 0; v < V; v++) acc[p * V + v] = _mm512_fmadd_ps(b, wv[v], acc[p * V + v]);
                }
            }
        }
    }
    const __m512 zero = _mm512_setzero_ps();
    for (int p = 0; p < PX; p++) {
        for (int v = 0; v < V; v++) {
            __m512 a = acc[p * V + v];
            a = _mm512_mask_mul_ps(a, _mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ), a, slope);
            _mm512_storeu_ps(dst + (x0 + 1 + p) * cout + 16 * v, a);
        }
    }
}

/* A whole output row of a conv to C = 16 V channels (PX-pixel blocks, then single pixels). */
#define CONV_ROW(NAME, V)                                                                        \
    static AVX512 void NAME(const float *const rows[3], const float *wt, const float *bias,      \
                            float *dst, int64_t w, int64_t cin, __m512 slope) {                  \
        int64_t x = 0;                                                                           \
        for (; x + 16 / (V) <= w; x += 16 / (V))                                                 \
            conv_block(rows, wt, bias, dst, x, cin, slope, V, 16 / (V));                         \
        for (; x < w; x++) conv_block(rows, wt, bias, dst, x, cin, slope, V, 1);                 \
    }
CONV_ROW(conv_row_c16, 1)
CONV_ROW(conv_row_c32, 2)
CONV_ROW(conv_row_c64, 4)

/* Lane sums of a[0..7] as one 8-lane vector (lane p = sum of the 16 lanes of a[p]). */
INLINE AVX512 __m256 reduce8(const __m512 a[8]) {
    __m256 h[8];
    for (int p = 0; p < 8; p++)  /* 16 -> 8 lanes: low half + high half */
        h[p] = _mm256_add_ps(_mm512_castps512_ps256(a[p]),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a[p]), 1)));
    __m256 t0 = _mm256_hadd_ps(h[0], h[1]), t1 = _mm256_hadd_ps(h[2], h[3]);
    __m256 t2 = _mm256_hadd_ps(h[4], h[5]), t3 = _mm256_hadd_ps(h[6], h[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* Dot products over (tap, channel) of PX pixels from x0 with one output channel's weights wo
 * (3, 3, c): acc[p] holds 16 partial sums of pixel x0 + p. */
INLINE AVX512 void last_block(const float *const rows[3], const float *wo, __m512 acc[8], int64_t x0,
                              int64_t c, const int PX) {
    for (int p = 0; p < PX; p++) acc[p] = _mm512_setzero_ps();
    for (int ky = 0; ky < 3; ky++) {
        for (int kx = 0; kx < 3; kx++) {
            const float *src = rows[ky] + (x0 + kx) * c, *wk = wo + (ky * 3 + kx) * c;
            for (int64_t g = 0; g < c; g += 16) {
                __m512 wv = _mm512_loadu_ps(wk + g);
                for (int p = 0; p < PX; p++)
                    acc[p] = _mm512_fmadd_ps(_mm512_loadu_ps(src + p * c + g), wv, acc[p]);
            }
        }
    }
}

/* One output row of the last conv (C -> cout, no activation) into the planes out[o * hw + x]
 * (plus res[o * hw + x] when res is given). wt: (cout, 3, 3, C). Pixels go 8 at a time, so the
 * weight vector loaded for a (tap, channel group) serves 8 FMAs and one reduction tree sums 8. */
static AVX512 void last_row(const float *const rows[3], const float *wt, const float *bias,
                            float *out, const float *res, int64_t hw, int64_t w, int64_t c,
                            int64_t cout) {
    __m512 acc[8];
    for (int64_t o = 0; o < cout; o++) {
        const float *wo = wt + o * 9 * c, *ro = res ? res + o * hw : NULL;
        float *oo = out + o * hw;
        int64_t x = 0;
        for (; x + 8 <= w; x += 8) {
            last_block(rows, wo, acc, x, c, 8);
            __m256 v = _mm256_add_ps(reduce8(acc), _mm256_set1_ps(bias[o]));
            _mm256_storeu_ps(oo + x, ro ? _mm256_add_ps(v, _mm256_loadu_ps(ro + x)) : v);
        }
        for (; x < w; x++) {
            last_block(rows, wo, acc, x, c, 1);
            float value = _mm512_reduce_add_ps(acc[0]) + bias[o];
            oo[x] = ro ? value + ro[x] : value;
        }
    }
}

/* x: (n, cin0, h, w) float32 contiguous; out: (n, cout, h, w); weights: layer 0 (3, 3, cin0, C),
 * layers 1 .. L-2 (3, 3, C, C), layer L-1 (cout, 3, 3, C), concatenated; biases: (C) x (L-1), then
 * (cout). residual: add x to the output (needs cout == cin0). Only output rows row0 .. row1 - 1 of
 * each slice are computed and written (so that threads can share one slice): layer l then covers
 * its rows row0 - (L-1-l) .. row1 + (L-1-l) (clipped to the image), which is all the rows above it
 * read. Returns 0 on success, 1 for an unsupported shape or CPU, 2 when scratch memory cannot be
 * allocated. */
static AVX512 int cascade_rows(const float *x, float *out, const float *weights,
                               const float *biases, int64_t n, int64_t h, int64_t w, int64_t cin0,
                               int64_t c, int64_t cout, int64_t layers, float slope,
                               int64_t residual, int64_t row0, int64_t row1) {
    void (*conv_row)(const float *const *, const float *, const float *, float *, int64_t,
                     int64_t, __m512) = c == 16 ? conv_row_c16 : c == 32 ? conv_row_c32 : conv_row_c64;
    int64_t widest = c > cin0 ? c : cin0, row = (w + 2) * widest, hw = h * w;
    /* Rings: 3 rows for the staged input and for each hidden layer, plus one zero row. */
    int64_t floats = (3 * layers + 1) * row;
    float *scratch = aligned_alloc(64, ((floats * sizeof(float) + 63) / 64) * 64);
    if (!scratch) return 2;
    float *zero_row = scratch + 3 * layers * row;
    const __m512 slope_v = _mm512_set1_ps(slope);
    int64_t first = row0 - layers > 0 ? row0 - layers : 0;  /* input rows first .. last - 1 */
    int64_t last = row1 + layers < h ? row1 + layers : h;
    for (int64_t b = 0; b < n; b++) {
        const float *xb = x + b * cin0 * hw;
        float *ob = out + b * cout * hw;
        memset(scratch, 0, floats * sizeof(float));  /* the pad columns must read as zeros */
        for (int64_t s = first; s < row1 + layers; s++) {
            if (s < last) {  /* stage input row s, interleaving the cin0 planes into pixel-major order */
                float *dst = scratch + (s % 3) * row + cin0;
                for (int64_t xx = 0; xx < w; xx++)
                    for (int64_t ci = 0; ci < cin0; ci++) dst[xx * cin0 + ci] = xb[ci * hw + s * w + xx];
            }
            const float *wt = weights, *bias = biases;
            for (int64_t l = 0; l < layers; l++) {
                int64_t cin = l == 0 ? cin0 : c, r = s - 1 - l, halo = layers - 1 - l;
                if (r >= 0 && r < h && r >= row0 - halo && r < row1 + halo) {
                    const float *ring = scratch + 3 * l * row, *rows[3];
                    for (int ky = 0; ky < 3; ky++) {
                        int64_t src = r + ky - 1;
                        rows[ky] = src < 0 || src >= h ? zero_row : ring + (src % 3) * row;
                    }
                    if (l < layers - 1)
                        conv_row(rows, wt, bias, scratch + 3 * (l + 1) * row + (r % 3) * row, w, cin,
                                 slope_v);
                    else
                        last_row(rows, wt, bias, ob + r * w, residual ? xb + r * w : NULL, hw, w, c,
                                 cout);
                }
                wt += 9 * cin * (l < layers - 1 ? c : cout);
                bias += c;
            }
        }
    }
    free(scratch);
    return 0;
}

/* The entry point: no AVX-512 code runs before the CPU check (the compiler may use AVX-512
 * anywhere in a function built for it, the prologue included). */
int dccnn_cascade(const float *x, float *out, const float *weights, const float *biases, int64_t n,
                  int64_t h, int64_t w, int64_t cin0, int64_t c, int64_t cout, int64_t layers,
                  float slope, int64_t residual, int64_t row0, int64_t row1) {
    if (!cascade_cpu_supported() || layers < 2 || (c != 16 && c != 32 && c != 64) || cin0 < 1 ||
        cout < 1 || (residual && cout != cin0) || row0 < 0 || row1 > h || row0 >= row1)
        return 1;
    return cascade_rows(x, out, weights, biases, n, h, w, cin0, c, cout, layers, slope, residual,
                        row0, row1);
}
