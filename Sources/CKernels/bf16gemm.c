// BF16 matrix products on AMX. Layouts (TDPBF16PS: C[16×16 f32] += A[16×32 bf16] · B[32×16 bf16]):
//   packed A: tile (rb, kc) = rows rb·16 ..+16 of op(A), depth kc·32 ..+32, row-major 16×32 bf16 (1 KiB),
//             tiles ordered rb-major: offset (rb·KC + kc)·512.
//   packed B: for a 32-column panel, tile (kc, t) = depth pairs of kc·32 ..+32 × columns t·16 ..+16 in the
//             "VNNI" layout the instruction wants: row p holds, per column c, the pair (B[2p][c], B[2p+1][c]).
//   C:        a 32×32 block is four tiles; interior blocks are loaded/stored in place, edge blocks through a
//             local buffer. Rounding to BF16 is nearest-even (VCVTNE2PS2BF16); accumulation is FP32 in the
//             order of k, so a result does not depend on how blocks are spread over threads.
// Compiled for any x86-64: the AMX/AVX-512 functions carry target attributes and run only after
// gm_amx_available() said yes.
#include "ckernels.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TGT __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int amx_state = -1;

int gm_amx_available(void) {
    if (amx_state >= 0) return amx_state;
    unsigned a, b, c, d;
    int ok = 0;
    // GRADMAP_NO_AMX=1 acts as a CPU without AMX (this kernel only; GRADMAP_NO_BF16=1 is the engine's switch).
    const char *off = getenv("GRADMAP_NO_AMX");
    if (off && off[0] == '1') {
        amx_state = 0;
        return 0;
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        int amxTile = (d >> 24) & 1, amxBF16 = (d >> 22) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1;
        unsigned a1 = 0, b1, c1, d1;
        __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
        int avx512bf16 = (a1 >> 5) & 1;
        unsigned a0, b0, c0, d0;
        int osxsave = __get_cpuid(1, &a0, &b0, &c0, &d0) && ((c0 >> 27) & 1);
        if (amxTile && amxBF16 && avx512f && avx512bw && avx512bf16 && osxsave) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            // XCR0: SSE, AVX, opmask/ZMM state (bits 1, 2, 5-7) and the tile config/data (17, 18).
            int osState = (lo & 0x600e6) == 0x600e6;
            ok = osState && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
        }
    }
    amx_state = ok;
    return ok;
}

static inline int kchunks(int k) { return (k + 31) / 32; }

size_t gm_bf16_packed_a_count(int m, int k) {
    size_t blocks = (size_t)((m + 31) / 32) * 2;
    return blocks * (size_t)kchunks(k) * 512;
}

size_t gm_bf16_block_scratch_count(int k) { return (size_t)(GM_BF16_BLOCK_COLS / 32) * kchunks(k) * 2 * 512; }

static inline __mmask16 span_mask(int count) {
    if (count <= 0) return 0;
    if (count >= 16) return 0xffff;
    return (__mmask16)((1u << count) - 1);
}

// 32 bf16: the 16 floats at p0 (masked) in the low half, those at p1 in the high half.
TGT static inline __m512i cvt_pair(const float *p0, __mmask16 m0, const float *p1, __mmask16 m1) {
    __m512 lo = m0 ? _mm512_maskz_loadu_ps(m0, p0) : _mm512_setzero_ps();
    __m512 hi = m1 ? _mm512_maskz_loadu_ps(m1, p1) : _mm512_setzero_ps();
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// Interleaves the halves: dword j = (low[j], high[j]).
TGT static inline __m512i interleave_halves(__m512i v) {
    const __m512i idx = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
        23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, v);
}

// Transposes 16×16 dwords held in r[0..15] (row i in r[i]) in registers: unpack 32- and 64-bit pairs, then
// swap 128-bit lanes twice.
TGT static inline void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i + 0], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i + 0], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 4; j++) {
            t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
            t[8 * i + 4 + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
        }
    }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);
        r[8 + j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xdd);
    }
}

// One 1 KiB tile of `rows`×32 in "pair" form from a matrix M stored [outer][ld] where the tile's rows run
// along M's inner (contiguous) axis: tile row r, dword p = (M[o0 + 2p][i0 + r], M[o0 + 2p + 1][i0 + r]),
// with o in [0, oCount) and i in [0, iCount) valid. This is op(A) with A transposed, and B not transposed
// reading the panel rows as pairs of depth.
TGT static void tile_from_pairs_of_rows(
    const float *M, int ld, int o0, int oCount, int i0, int iCount, uint16_t *dst, int transposeOut) {
    __m512i v[16];
    __mmask16 im = span_mask(iCount - i0);
    for (int p = 0; p < 16; p++) {
        int o = o0 + 2 * p;
        const float *r0 = o < oCount ? M + (size_t)o * ld + i0 : M;
        const float *r1 = o + 1 < oCount ? M + (size_t)(o + 1) * ld + i0 : M;
        v[p] = interleave_halves(cvt_pair(r0, o < oCount ? im : 0, r1, o + 1 < oCount ? im : 0));
    }
    if (transposeOut) transpose16(v);
    for (int p = 0; p < 16; p++) _mm512_storeu_si512((void *)((uint32_t *)dst + p * 16), v[p]);
}

// One tile from a matrix M stored [outer][ld] whose tile rows run along `outer`: tile row r = 32 consecutive
// inner elements M[o0 + r][i0 ..< i0 + 32] (op(A) not transposed), or, transposed into pair form,
// dword (p, c) = (M[o0 + c][i0 + 2p], M[o0 + c][i0 + 2p + 1]) (B transposed).
TGT static void tile_from_rows(
    const float *M, int ld, int o0, int oCount, int i0, int iCount, uint16_t *dst, int transposeOut) {
    __m512i v[16];
    __mmask16 m0 = span_mask(iCount - i0), m1 = span_mask(iCount - i0 - 16);
    for (int r = 0; r < 16; r++) {
        int o = o0 + r;
        v[r] = o < oCount
            ? cvt_pair(M + (size_t)o * ld + i0, m0, M + (size_t)o * ld + i0 + 16, m1)
            : _mm512_setzero_si512();
    }
    if (transposeOut) transpose16(v);
    for (int r = 0; r < 16; r++) _mm512_storeu_si512((void *)((uint32_t *)dst + r * 16), v[r]);
}

TGT void gm_bf16_pack_a(int transA, int m, int k, const float *A, int lda, uint16_t *packed, int rb0, int rb1) {
    int kc = kchunks(k);
    for (int rb = rb0; rb < rb1; rb++) {
        for (int c = 0; c < kc; c++) {
            uint16_t *dst = packed + ((size_t)rb * kc + c) * 512;
            if (!transA) tile_from_rows(A, lda, rb * 16, m, c * 32, k, dst, 0);
            else tile_from_pairs_of_rows(A, lda, c * 32, k, rb * 16, m, dst, 1);
        }
    }
}

// The 32-column panel starting at column n0 of op(B), all depth chunks: tile (c, t) at (c·2 + t)·512.
TGT static void pack_b_panel(int transB, int n, int k, const float *B, int ldb, int n0, uint16_t *dst) {
    int kc = kchunks(k);
    for (int c = 0; c < kc; c++) {
        for (int t = 0; t < 2; t++) {
            uint16_t *tile = dst + ((size_t)c * 2 + t) * 512;
            int col = n0 + t * 16;
            if (!transB) tile_from_pairs_of_rows(B, ldb, c * 32, k, col, n, tile, 0);
            else tile_from_rows(B, ldb, col, n, c * 32, k, tile, 1);
        }
    }
}

typedef struct {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tile_config;

TGT static void configure_tiles(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; i++) {
        cfg.rows[i] = 16;
        cfg.colsb[i] = 64;
    }
    _tile_loadconfig(&cfg);
}

// C[r0 ..+32, c0 ..+32] for one 32×32 block; a0/a1 the two 16-row strips of packed A, b the panel.
TGT static void block32(
    const uint16_t *a0, const uint16_t *a1, const uint16_t *b, int kc, float *C, int ldc, int r0, int c0, int m, int n,
    int accumulate) {
    int full = r0 + 32 <= m && c0 + 32 <= n;
    float *c = C + (size_t)r0 * ldc + c0;
    long stride = (long)ldc * 4;
    if (full && accumulate) {
        _tile_loadd(0, c, stride);
        _tile_loadd(1, c + 16, stride);
        _tile_loadd(2, c + (size_t)16 * ldc, stride);
        _tile_loadd(3, c + (size_t)16 * ldc + 16, stride);
    } else {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    }
    for (int q = 0; q < kc; q++) {
        _tile_loadd(4, a0 + (size_t)q * 512, 64);
        _tile_loadd(5, a1 + (size_t)q * 512, 64);
        _tile_loadd(6, b + (size_t)q * 1024, 64);
        _tile_loadd(7, b + (size_t)q * 1024 + 512, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    if (full) {
        _tile_stored(0, c, stride);
        _tile_stored(1, c + 16, stride);
        _tile_stored(2, c + (size_t)16 * ldc, stride);
        _tile_stored(3, c + (size_t)16 * ldc + 16, stride);
        return;
    }
    __attribute__((aligned(64))) float tmp[32 * 32];
    _tile_stored(0, tmp, 128);
    _tile_stored(1, tmp + 16, 128);
    _tile_stored(2, tmp + 16 * 32, 128);
    _tile_stored(3, tmp + 16 * 32 + 16, 128);
    int rows = m - r0 < 32 ? m - r0 : 32, cols = n - c0 < 32 ? n - c0 : 32;
    for (int r = 0; r < rows; r++) {
        float *dst = c + (size_t)r * ldc;
        const float *src = tmp + r * 32;
        if (accumulate) for (int j = 0; j < cols; j++) dst[j] += src[j];
        else for (int j = 0; j < cols; j++) dst[j] = src[j];
    }
}

TGT void gm_bf16_gemm_block(
    const uint16_t *packedA, int m, int n, int k, int transB, const float *B, int ldb, float *C, int ldc,
    int accumulate, int block, uint16_t *scratch) {
    int kc = kchunks(k);
    int col0 = block * GM_BF16_BLOCK_COLS;
    int colEnd = col0 + GM_BF16_BLOCK_COLS < n ? col0 + GM_BF16_BLOCK_COLS : n;
    int panels = (colEnd - col0 + 31) / 32;
    size_t panelSize = (size_t)kc * 1024;
    for (int p = 0; p < panels; p++) pack_b_panel(transB, n, k, B, ldb, col0 + p * 32, scratch + p * panelSize);
    configure_tiles();
    int rowBlocks = (m + 31) / 32;
    for (int rb = 0; rb < rowBlocks; rb++) {
        const uint16_t *a0 = packedA + (size_t)(2 * rb) * kc * 512;
        const uint16_t *a1 = a0 + (size_t)kc * 512;
        for (int p = 0; p < panels; p++)
            block32(a0, a1, scratch + p * panelSize, kc, C, ldc, rb * 32, col0 + p * 32, m, n, accumulate);
    }
    _tile_release();
}

#else
int gm_amx_available(void) { return 0; }
size_t gm_bf16_packed_a_count(int m, int k) { (void)m; (void)k; return 0; }
size_t gm_bf16_block_scratch_count(int k) { (void)k; return 0; }
void gm_bf16_pack_a(int transA, int m, int k, const float *A, int lda, uint16_t *packed, int rb0, int rb1) {
    (void)transA; (void)m; (void)k; (void)A; (void)lda; (void)packed; (void)rb0; (void)rb1;
    abort();
}
void gm_bf16_gemm_block(
    const uint16_t *packedA, int m, int n, int k, int transB, const float *B, int ldb, float *C, int ldc,
    int accumulate, int block, uint16_t *scratch) {
    (void)packedA; (void)m; (void)n; (void)k; (void)transB; (void)B; (void)ldb; (void)C; (void)ldc;
    (void)accumulate; (void)block; (void)scratch;
    abort();
}
#endif

static inline float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    float y;
    memcpy(&y, &u, 4);
    return y;
}

void gm_bf16_round(const float *x, float *y, size_t count) {
    for (size_t i = 0; i < count; i++) y[i] = round_bf16(x[i]);
}

