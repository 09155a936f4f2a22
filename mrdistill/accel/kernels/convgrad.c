/* Weight and bias gradients of a 3x3 "same" convolution on channels-last (NHWC) float32 tensors,
 * AVX2 + FMA.
 *
 * gw[o, ky, kx, c] += sum_{n, y, x} dy[n, y, x, o] * in[n, y + ky - 1, x + kx - 1, c]  (zero padding)
 * gb[o]            += sum_{n, y, x} dy[n, y, x, o]
 *
 * Why: oneDNN's weight gradient is the slowest part of a DC-CNN training step on AVX2 CPUs (about
 * half the machine's matmul rate in NCHW, a quarter in channels-last), while its forward and
 * input-gradient convolutions run near that rate in channels-last. Here every (row, tap) is a
 * rank-K update of a small (Cout x C) block, done with register-blocked FMAs straight from the NHWC
 * rows (no im2col, no padded copy). Rows are cut into column chunks so that a chunk of the input
 * and of dy stay in L1 while all nine taps and every output channel pass over them.
 * C must be a multiple of 8. Single-threaded: the caller gives each thread its own rows and its own
 * gw/gb buffers and sums them.
 */
#include <immintrin.h>
#include <stdint.h>

#define CHUNK 64 /* pixels of one row per pass: 2 x 64 x 32 floats = 16 KB of L1 at C = Cout = 32 */

/* g_k[v0 .. v0 + 32) += sum_x dy[x, k] * src[x, v0 .. v0 + 32) for K output channels k, over xs
 * pixels. Each (K, 32 channels) pair is its own function with named accumulators so that they stay
 * in registers. K = 2 (8 accumulators) ran faster than K = 3 (12 accumulators, which spill the
 * 16 AVX2 registers). */
#define LOAD4(a, g) __m256 a##0 = _mm256_loadu_ps(g), a##1 = _mm256_loadu_ps((g) + 8), \
                           a##2 = _mm256_loadu_ps((g) + 16), a##3 = _mm256_loadu_ps((g) + 24)
#define STORE4(a, g) _mm256_storeu_ps(g, a##0); _mm256_storeu_ps((g) + 8, a##1); \
                     _mm256_storeu_ps((g) + 16, a##2); _mm256_storeu_ps((g) + 24, a##3)
#define FMA4(a, d, s) a##0 = _mm256_fmadd_ps(d, _mm256_loadu_ps(s), a##0);        \
                      a##1 = _mm256_fmadd_ps(d, _mm256_loadu_ps((s) + 8), a##1);  \
                      a##2 = _mm256_fmadd_ps(d, _mm256_loadu_ps((s) + 16), a##2); \
                      a##3 = _mm256_fmadd_ps(d, _mm256_loadu_ps((s) + 24), a##3)

static void block2x32(const float *dy, const float *src, int64_t xs, int64_t cout, int64_t c,
                      float *g0, float *g1) {
    LOAD4(a, g0); LOAD4(b, g1);
    for (int64_t x = 0; x < xs; x++) {
        const float *s = src + x * c, *d = dy + x * cout;
        __m256 d0 = _mm256_broadcast_ss(d), d1 = _mm256_broadcast_ss(d + 1);
        FMA4(a, d0, s); FMA4(b, d1, s);
    }
    STORE4(a, g0); STORE4(b, g1);
}

/* One output channel (Cout = 1, the last conv of a cascade): two pixels per step into two sets
 * of accumulators, so 8 FMA chains run at once instead of 4. */
static void block1x32(const float *dy, const float *src, int64_t xs, int64_t cout, int64_t c, float *g0) {
    LOAD4(a, g0);
    __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
    int64_t x = 0;
    for (; x + 2 <= xs; x += 2) {
        const float *s = src + x * c;
        __m256 d0 = _mm256_broadcast_ss(dy + x * cout), d1 = _mm256_broadcast_ss(dy + (x + 1) * cout);
        FMA4(a, d0, s); FMA4(b, d1, s + c);
    }
    if (x < xs) { __m256 d0 = _mm256_broadcast_ss(dy + x * cout); FMA4(a, d0, src + x * c); }
    a0 = _mm256_add_ps(a0, b0); a1 = _mm256_add_ps(a1, b1);
    a2 = _mm256_add_ps(a2, b2); a3 = _mm256_add_ps(a3, b3);
    STORE4(a, g0);
}

/* Channels left over after the blocks of 32 (C = 8, 16 or 24 mod 32), one vector at a time. */
static void block1x8(const float *dy, const float *src, int64_t xs, int64_t cout, int64_t c, float *g0) {
    __m256 a = _mm256_loadu_ps(g0);
    for (int64_t x = 0; x < xs; x++)
        a = _mm256_fmadd_ps(_mm256_broadcast_ss(dy + x * cout), _mm256_loadu_ps(src + x * c), a);
    _mm256_storeu_ps(g0, a);
}

/* gw[o, tap, :] += sum_x dy[x, o] * src[x, :] for every output channel o (g = gw at this tap,
 * output channel o at g + o * 9 * c). */
static void taps(const float *dy, const float *src, int64_t xs, int64_t cout, int64_t c, float *g) {
    const int64_t gs = 9 * c;
    for (int64_t v = 0; v + 32 <= c; v += 32) {
        int64_t o = 0;
        for (; o + 2 <= cout; o += 2) block2x32(dy + o, src + v, xs, cout, c, g + o * gs + v, g + (o + 1) * gs + v);
        if (cout - o == 1) block1x32(dy + o, src + v, xs, cout, c, g + o * gs + v);
    }
    for (int64_t v = c - c % 32; v < c; v += 8)
        for (int64_t o = 0; o < cout; o++) block1x8(dy + o, src + v, xs, cout, c, g + o * gs + v);
}

/* in: (n, h, wd, c) NHWC float32; dy: (n, h, wd, cout) NHWC float32; gw: (cout, 3, 3, c) (the
 * channels-last layout of a (cout, c, 3, 3) weight) and
 * gb: (cout) float32 accumulators (added to). Only output rows r0 <= b * h + y < r1 are summed. */
void conv3x3_weight_grad_nhwc(const float *in, const float *dy, float *gw, float *gb, int64_t n,
                              int64_t h, int64_t wd, int64_t c, int64_t cout, int64_t r0, int64_t r1) {
    (void)n;
    for (int64_t r = r0; r < r1; r++) {
        int64_t b = r / h, y = r % h;
        const float *dyrow = dy + r * wd * cout;
        for (int64_t x = 0; x < wd; x++)
            for (int64_t o = 0; o < cout; o++) gb[o] += dyrow[x * cout + o];
        for (int64_t x0 = 0; x0 < wd; x0 += CHUNK) {
            int64_t x1 = x0 + CHUNK < wd ? x0 + CHUNK : wd;
            for (int64_t ky = 0; ky < 3; ky++) {
                int64_t sy = y + ky - 1;
                if (sy < 0 || sy >= h) continue;
                const float *srow = in + (b * h + sy) * wd * c;
                for (int64_t kx = 0; kx < 3; kx++) {
                    /* output pixels x in [xa, xb) read input column x + kx - 1 inside the image */
                    int64_t xa = x0 > 1 - kx ? x0 : 1 - kx, xb = x1 < wd + 1 - kx ? x1 : wd + 1 - kx;
                    if (xb <= xa) continue;
                    const float *d = dyrow + xa * cout, *s = srow + (xa + kx - 1) * c;
                    float *g = gw + (ky * 3 + kx) * c;
                    taps(d, s, xb - xa, cout, c, g);
                }
            }
        }
    }
}
