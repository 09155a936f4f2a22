/* 3x3 "same" convolution to few output channels on channels-last (NHWC) float32 input, AVX2 + FMA.
 *
 * out[n, o, y, x] = bias[o] + sum_{ky, kx, c} w[o, ky, kx, c] * in[n, y + ky - 1, x + kx - 1, c]
 * (zero padding). C must be a multiple of 8. Interior pixels are computed 8 at a time: each of the
 * 8 accumulators sums over taps and channels with vector FMAs (the input is read straight from the
 * NHWC rows, no im2col), and one horizontal-add tree turns the 8 accumulators into 8 outputs.
 * Single-threaded: the caller runs independent slices on separate threads.
 */
#include <immintrin.h>
#include <stdint.h>

/* Sum of the 8 lanes of each of a[0..7], as one vector (lane p = sum of a[p]). */
static inline __m256 reduce8(const __m256 a[8]) {
    __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
    __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_hadd_ps(s, s);
    s = _mm_hadd_ps(s, s);
    return _mm_cvtss_f32(s);
}

/* One output pixel with bounds checks (image borders and row remainders). */
static float pixel(const float *in, const float *w, int64_t h, int64_t wd, int64_t c,
                   int64_t y, int64_t x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ky = 0; ky < 3; ky++) {
        int64_t sy = y + ky - 1;
        if (sy < 0 || sy >= h) continue;
        for (int64_t kx = 0; kx < 3; kx++) {
            int64_t sx = x + kx - 1;
            if (sx < 0 || sx >= wd) continue;
            const float *src = in + (sy * wd + sx) * c, *wt = w + (ky * 3 + kx) * c;
            for (int64_t g = 0; g < c; g += 8)
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(src + g), _mm256_loadu_ps(wt + g), acc);
        }
    }
    return hsum(acc);
}

/* in: (n, h, wd, c) float32 contiguous (NHWC); w: (cout, 3, 3, c); bias: (cout);
 * out: (n, cout, h, wd) float32 contiguous. */
void tapconv3x3_nhwc(const float *in, const float *w, const float *bias, float *out,
                     int64_t n, int64_t h, int64_t wd, int64_t c, int64_t cout) {
    for (int64_t b = 0; b < n; b++) {
        const float *img = in + b * h * wd * c;
        for (int64_t o = 0; o < cout; o++) {
            const float *wo = w + o * 9 * c;
            float *dst = out + (b * cout + o) * h * wd;
            for (int64_t y = 0; y < h; y++) {
                int64_t ky0 = y == 0 ? 1 : 0, ky1 = y == h - 1 ? 2 : 3;
                float *row = dst + y * wd;
                row[0] = bias[o] + pixel(img, wo, h, wd, c, y, 0);
                int64_t x = 1;
                for (; x + 8 <= wd - 1; x += 8) {  /* all 8 pixels and their 3x3 windows inside */
                    __m256 acc[8];
                    for (int p = 0; p < 8; p++) acc[p] = _mm256_setzero_ps();
                    for (int64_t ky = ky0; ky < ky1; ky++) {
                        const float *src_row = img + ((y + ky - 1) * wd + x - 1) * c;
                        for (int64_t kx = 0; kx < 3; kx++) {
                            const float *src = src_row + kx * c, *wt = wo + (ky * 3 + kx) * c;
                            for (int64_t g = 0; g < c; g += 8) {
                                __m256 wv = _mm256_loadu_ps(wt + g);
                                for (int p = 0; p < 8; p++)
                                    acc[p] = _mm256_fmadd_ps(_mm256_loadu_ps(src + p * c + g), wv, acc[p]);
                            }
                        }
                    }
                    _mm256_storeu_ps(row + x, _mm256_add_ps(reduce8(acc), _mm256_set1_ps(bias[o])));
                }
                for (; x < wd; x++) row[x] = bias[o] + pixel(img, wo, h, wd, c, y, x);
            }
        }
    }
}
