// The float32 elementwise and row kernels of the step outside the products: the exponential (one polynomial,
// so the forward's softmax and the backward's recomputed one agree), the causal softmax rows of attention,
// SwiGLU, the cross-entropy rows and the float -> BF16 rounding of product inputs. Plain loops written so
// the compiler vectorises them (no calls, no float -> int conversions, branches as selects); each is built
// for AVX-512, AVX2+FMA and baseline x86-64 and the loader picks the best the CPU has (target_clones), so
// one binary runs everywhere. The lanes of a sum are added in a fixed order whatever the thread count.
#include "ckernels.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && defined(__clang__)
#define GM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GM_CLONES
#endif

// exp(x) = 2^n · e^r with n = round(x·log2 e), r = x - n·ln 2 (ln 2 split in two so r is exact to float),
// e^r by Cephes' degree-7 polynomial on [-ln2/2, ln2/2] (about 1 ulp). n comes out of the float via the
// 1.5·2^23 rounding trick, so no float -> int conversion is needed; 2^n is built from its exponent bits.
// Below -87.3 (where e^x leaves the normal floats) the result is 0; above 88 it is clamped to e^88 (so 2^n
// stays a normal float; only silu of a gate below -88 reaches it, where the result is 0 either way).
static inline float gm_expf(float x) {
    const float magic = 12582912.0f;  // 1.5 · 2^23: adding it rounds to an integer kept in the low bits
    float xc = x > 88.0f ? 88.0f : x;
    xc = xc < -87.3f ? -87.3f : xc;
    float t = xc * 1.44269504088896341f + magic;
    float n = t - magic;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t tb;
    memcpy(&tb, &t, 4);
    uint32_t scaleBits = (tb - 0x4b400000u + 127u) << 23;  // n + 127 in the exponent field
    float scale;
    memcpy(&scale, &scaleBits, 4);
    float y = p * scale;
    return x < -87.3f ? 0.0f : y;
}

// max of x[0 ..< n], n >= 1, over 16 lanes (a strict-FP reduction the compiler would not vectorise itself).
static inline float gm_row_max(const float *x, int n) {
    float lanes[16];
    for (int l = 0; l < 16; l++) lanes[l] = x[0];
    int j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) lanes[l] = x[j + l] > lanes[l] ? x[j + l] : lanes[l];
    float mx = lanes[0];
    for (int l = 1; l < 16; l++) mx = lanes[l] > mx ? lanes[l] : mx;
    for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    return mx;
}

GM_CLONES
void gm_exp(const float *x, float *y, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] = gm_expf(x[i]);
}

GM_CLONES
float gm_softmax_causal_row(float *row, int valid, int total) {
    float mx = gm_row_max(row, valid);
    float lanes[16] = {0};
    int j = 0;
    for (; j + 16 <= valid; j += 16) {
        for (int l = 0; l < 16; l++) {
            float e = gm_expf(row[j + l] - mx);
            row[j + l] = e;
            lanes[l] += e;
        }
    }
    float sum = 0;
    for (int l = 0; l < 16; l++) sum += lanes[l];
    for (; j < valid; j++) {
        float e = gm_expf(row[j] - mx);
        row[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int q = 0; q < valid; q++) row[q] *= inv;
    for (int q = valid; q < total; q++) row[q] = 0;
    return mx + logf(sum);
}

GM_CLONES
void gm_softmax_recompute_row(float *row, int valid, int total, float lse) {
    for (int j = 0; j < valid; j++) row[j] = gm_expf(row[j] - lse);
    for (int j = valid; j < total; j++) row[j] = 0;
}

GM_CLONES
void gm_softmax_backward_row(const float *p, float *ds, int valid, int total, const float *out, const float *dout, int hd) {
    float lanes[16] = {0};
    int e = 0;
    for (; e + 16 <= hd; e += 16)
        for (int l = 0; l < 16; l++) lanes[l] += out[e + l] * dout[e + l];
    float di = 0;
    for (int l = 0; l < 16; l++) di += lanes[l];
    for (; e < hd; e++) di += out[e] * dout[e];
    for (int j = 0; j < valid; j++) ds[j] = p[j] * (ds[j] - di);
    for (int j = valid; j < total; j++) ds[j] = 0;
}

GM_CLONES
void gm_swiglu_forward(float *act, const float *gate, const float *up, size_t count) {
    for (size_t i = 0; i < count; i++) {
        float g = gate[i];
        act[i] = g / (1.0f + gm_expf(-g)) * up[i];
    }
}

GM_CLONES
void gm_swiglu_backward(float *dgate, float *dup, const float *dact, const float *gate, const float *up, size_t count) {
    for (size_t i = 0; i < count; i++) {
        float g = gate[i];
        float s = 1.0f / (1.0f + gm_expf(-g));
        float d = dact[i];
        dgate[i] = d * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] = d * g * s;
    }
}

GM_CLONES
double gm_cross_entropy_row(float *row, int v, int target, float gradScale, int wantGradient) {
    float mx = gm_row_max(row, v);
    float targetLogit = row[target];
    // Double lanes: V terms of very different size.
    double lanes[8] = {0};
    int j = 0;
    if (wantGradient) {
        for (; j + 8 <= v; j += 8)
            for (int l = 0; l < 8; l++) {
                float e = gm_expf(row[j + l] - mx);
                row[j + l] = e;
                lanes[l] += (double)e;
            }
    } else {
        for (; j + 8 <= v; j += 8)
            for (int l = 0; l < 8; l++) lanes[l] += (double)gm_expf(row[j + l] - mx);
    }
    double sum = 0;
    for (int l = 0; l < 8; l++) sum += lanes[l];
    for (; j < v; j++) {
        float e = gm_expf(row[j] - mx);
        if (wantGradient) row[j] = e;
        sum += (double)e;
    }
    if (wantGradient) {
        float k = gradScale / (float)sum;
        for (int q = 0; q < v; q++) row[q] *= k;
        row[target] -= gradScale;
    }
    return log(sum) + (double)(mx - targetLogit);
}

GM_CLONES
void gm_bf16_convert(const float *x, int cols, int ld, uint16_t *y, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        const float *row = x + (size_t)r * ld;
        uint16_t *out = y + (size_t)r * cols;
        for (int c = 0; c < cols; c++) {
            uint32_t u;
            memcpy(&u, &row[c], 4);
            // Nearest even on the dropped 16 bits; infinities and NaNs pass unrounded.
            uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
            out[c] = (uint16_t)(((u & 0x7f800000u) != 0x7f800000u ? rounded : u) >> 16);
        }
    }
}
