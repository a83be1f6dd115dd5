// Matrix products with BF16 inputs and FP32 accumulation on Intel AMX (TDPBF16PS), for `--matmul bf16`.
// Row-major. The caller splits the work: gm_bf16_pack_a over 16-row blocks of op(A), then
// gm_bf16_gemm_block over 128-column blocks of C, each from any thread (every call writes disjoint memory).
#ifndef GRADMAP_CKERNELS_H
#define GRADMAP_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// 1 when the CPU has AMX-TILE, AMX-BF16 and AVX512-BF16 and the kernel granted this process the tile data
/// state (Linux arch_prctl ARCH_REQ_XCOMP_PERM); 0 otherwise. Safe to call repeatedly.
int gm_amx_available(void);

/// Columns of C one gm_bf16_gemm_block call covers.
enum { GM_BF16_BLOCK_COLS = 128 };

/// bf16 elements of packed op(A) for an m×k product (rows padded to 32, k to 32).
size_t gm_bf16_packed_a_count(int m, int k);
/// bf16 elements of the per-call scratch gm_bf16_gemm_block needs for depth k.
size_t gm_bf16_block_scratch_count(int k);

/// Packs 16-row blocks [rb0, rb1) of op(A) (m×k; A is [m][lda] or, transposed, [k][lda]) into `packed`,
/// rounding to BF16 (nearest even). Blocks up to 2·ceil(m/32) exist; rows past m are zero.
void gm_bf16_pack_a(int transA, int m, int k, const float *A, int lda, uint16_t *packed, int rb0, int rb1);

/// C[:, block·128 ..< min(n, block·128+128)] (= or +=) op(A)·op(B), op(B) k×n (B is [k][ldb] or, transposed,
/// [n][ldb]), with op(A) packed by gm_bf16_pack_a. `scratch` holds gm_bf16_block_scratch_count(k) elements.
void gm_bf16_gemm_block(
    const uint16_t *packedA, int m, int n, int k, int transB, const float *B, int ldb,
    float *C, int ldc, int accumulate, int block, uint16_t *scratch);

/// Rounds count floats to BF16 and back (nearest even), as the products see them.
void gm_bf16_round(const float *x, float *y, size_t count);

/// Rows [r0, r1) of x (rows × cols floats, row stride ld) rounded to BF16 bits (nearest even, as
/// gm_bf16_round), written densely: row r of y starts at r·cols. The inputs of oneDNN's BF16 products.
void gm_bf16_convert(const float *x, int cols, int ld, uint16_t *y, int r0, int r1);

// The step's float32 kernels outside the products (elementwise.c). One exponential serves them all.

/// y[i] = exp(x[i]) (about 1 ulp on [-87.3, 88]; 0 below, e^88 above).
void gm_exp(const float *x, float *y, size_t count);

/// One causal attention row: row[0 ..< valid] = softmax(row[0 ..< valid]), row[valid ..< total] = 0.
/// Returns the row's log-sum-exp.
float gm_softmax_causal_row(float *row, int valid, int total);

/// The row's probabilities again from its log-sum-exp: row[j] = exp(row[j] - lse) for j < valid, else 0.
void gm_softmax_recompute_row(float *row, int valid, int total, float lse);

/// dS row of attention: with D = Σ_e out[e]·dout[e] (hd terms), ds[j] = p[j]·(ds[j] - D) for j < valid,
/// else 0.
void gm_softmax_backward_row(const float *p, float *ds, int valid, int total, const float *out, const float *dout, int hd);

/// act[i] = silu(gate[i]) · up[i], silu(g) = g·σ(g).
void gm_swiglu_forward(float *act, const float *gate, const float *up, size_t count);

/// dgate = dact·up·σ(g)(1 + g(1 - σ(g))), dup = dact·silu(g).
void gm_swiglu_backward(float *dgate, float *dup, const float *dact, const float *gate, const float *up, size_t count);

/// One next-token row of cross-entropy: returns logsumexp(row) - row[target] (the sum of exponentials in
/// double). With wantGradient, row becomes gradScale·(softmax(row) - onehot(target)).
double gm_cross_entropy_row(float *row, int v, int target, float gradScale, int wantGradient);

#endif
