// The oneDNN products (every linear and lm_head product) against float64: f32 on the inputs as given, bf16
// (`--matmul bf16`) on the BF16-rounded inputs; the hand-written AMX kernel against the same reference; and
// the engine in the BF16 modes against the float64 transformers fixtures.
//
// Product tolerance: with BF16 inputs the products of two 8-bit significands are exact in FP32, so in both
// precisions the only error left is FP32 accumulation over k terms (and the added C), bounded by
// (k+1)·2⁻²⁴·Σ|a||b|. The bound is for the worst order; blocked sums (oneDNN's and the AMX kernel's) stay far
// below it, and 2⁻¹⁹·Σ|a||b| per element (k ≤ 300 here) catches any wrong element, layout, stride or edge,
// which would be off by O(Σ|a||b|).
import CKernels
import XCTest

@testable import GradMapData
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapKernels
@testable import GradMapRuntime

/// Where oneDNN has BF16 products (AVX512-BF16 or AMX; launch/test sets GRADMAP_REQUIRE_BF16=1 when
/// /proc/cpuinfo shows either) these tests must run, not skip.
func requireBF16() throws {
    if ProcessInfo.processInfo.environment["GRADMAP_REQUIRE_BF16"] == "1" {
        XCTAssertTrue(MatmulPrecision.bf16Available, "GRADMAP_REQUIRE_BF16=1 but oneDNN has no BF16 matmul here")
    }
    try XCTSkipUnless(MatmulPrecision.bf16Available, "no BF16 matmul in oneDNN on this CPU")
}

/// The hand-written AMX kernel's own tests (launch/test sets GRADMAP_REQUIRE_AMX=1 on AMX CPUs).
func requireAMX() throws {
    if ProcessInfo.processInfo.environment["GRADMAP_REQUIRE_AMX"] == "1" {
        XCTAssertTrue(BF16Matmul.available, "GRADMAP_REQUIRE_AMX=1 but AMX-BF16 is not usable")
    }
    try XCTSkipUnless(BF16Matmul.available, "no AMX-BF16 on this CPU")
}

final class BF16MatmulTests: XCTestCase {
    struct Rand {
        var s: UInt64
        mutating func next() -> Float {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2001 - 1000) / 997
        }
    }

    /// The product of one form by the given path (oneDNN f32, oneDNN bf16, or the AMX kernel), against float64
    /// of the inputs it sees, with padded leading dimensions.
    enum Path { case f32, bf16, amx }
    func check(_ path: Path, _ form: GemmBenchmark.Form, m: Int, n: Int, k: Int, accumulate: Bool, seed: UInt64) {
        var r = Rand(s: seed)
        let lda = (form.transA ? m : k) + 3, ldb = (form.transB ? k : n) + 5, ldc = n + 2
        let a = (0..<((form.transA ? k : m) * lda)).map { _ in r.next() }
        let b = (0..<((form.transB ? n : k) * ldb)).map { _ in r.next() }
        let c0 = (0..<(m * ldc)).map { _ in r.next() }
        var ar = a, br = b
        if path != .f32 {
            gm_bf16_round(a, &ar, a.count)
            gm_bf16_round(b, &br, b.count)
        }
        func opA(_ i: Int, _ p: Int) -> Double { Double(form.transA ? ar[p * lda + i] : ar[i * lda + p]) }
        func opB(_ p: Int, _ j: Int) -> Double { Double(form.transB ? br[j * ldb + p] : br[p * ldb + j]) }
        var c = c0
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    if path == .amx {
                        BF16Matmul.gemm(form.transA, form.transB, m, n, k, ap.baseAddress!, lda, bp.baseAddress!, ldb,
                                        accumulate: accumulate, cp.baseAddress!, ldc)
                    } else {
                        gemm(path == .bf16 ? MatmulPrecision.bf16 : .f32, form.transA, form.transB, m, n, k, 1, ap.baseAddress!, lda,
                             bp.baseAddress!, ldb, accumulate ? 1 : 0, cp.baseAddress!, ldc)
                    }
                }
            }
        }
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var ref = accumulate ? Double(c0[i * ldc + j]) : 0, scale = abs(ref)
                for p in 0..<k {
                    ref += opA(i, p) * opB(p, j)
                    scale += abs(opA(i, p) * opB(p, j))
                }
                worst = max(worst, abs(Double(c[i * ldc + j]) - ref) / max(scale, 1e-30))
            }
            // Padding columns of C are untouched.
            for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j]) }
        }
        XCTAssertLessThan(worst, pow(2, -19), "\(path) \(form) \(m)x\(n)x\(k) accumulate \(accumulate)")
    }

    /// Every form, accumulate on and off, at shapes below, at and across the usual block edges (16/32 rows,
    /// 16/32/64 columns, 32-deep, 128 columns) and odd sizes.
    func checkAll(_ path: Path) {
        let shapes = [(1, 1, 1), (5, 7, 3), (16, 16, 32), (32, 32, 32), (33, 47, 31), (17, 130, 65), (64, 257, 96), (70, 40, 300)]
        var seed: UInt64 = 1
        for form in GemmBenchmark.Form.allCases {
            for (m, n, k) in shapes {
                for accumulate in [false, true] {
                    seed += 1
                    check(path, form, m: m, n: n, k: k, accumulate: accumulate, seed: seed)
                }
            }
        }
    }

    func testF32ProductsMatchFloat64() { checkAll(.f32) }

    func testBF16ProductsMatchFloat64OfTheRoundedInputs() throws {
        try requireBF16()
        checkAll(.bf16)
    }

    func testAMXKernelMatchesFloat64OfTheRoundedInputs() throws {
        try requireAMX()
        checkAll(.amx)
    }

    func testRoundingIsNearestEven() {
        // 1 + 2⁻⁸ is halfway between BF16 neighbours 1 and 1 + 2⁻⁷: ties go to the even one (1); just above
        // the tie rounds up; negative values mirror.
        let x: [Float] = [1 + 0x1p-8, 1 + 0x1p-8 + 0x1p-20, 1 + 3 * 0x1p-8, -(1 + 0x1p-8 + 0x1p-20), .infinity]
        var y = [Float](repeating: 0, count: x.count)
        gm_bf16_round(x, &y, x.count)
        XCTAssertEqual(y, [1, 1 + 0x1p-7, 1 + 2 * 0x1p-7, -(1 + 0x1p-7), .infinity])
    }

    func testAMXKernelResultDoesNotDependOnThreads() throws {
        try requireAMX()
        var r = Rand(s: 99)
        let m = 96, n = 300, k = 200
        let a = (0..<(m * k)).map { _ in r.next() }, b = (0..<(k * n)).map { _ in r.next() }
        func run(_ threads: Int) -> [Float] {
            let saved = Parallel.workers
            Parallel.workers = threads
            defer { Parallel.workers = saved }
            var c = [Float](repeating: 0, count: m * n)
            BF16Matmul.gemm(true, false, m, n, k, a, m, b, n, accumulate: false, &c, n)
            return c
        }
        XCTAssertEqual(run(1), run(2))
    }
}

final class MatmulModeTests: XCTestCase {
    /// Loss and gradients of a fixture with the given stage settings, against the float64 reference.
    func errors(_ name: String, matmul: MatmulPrecision, layerMatricesOnly: Bool = false) throws -> (loss: Double, grads: [String: Double], stage: Stage<Float>) {
        let ref = try Fixtures.reference(name)
        let ckpt = try Checkpoint(directory: Fixtures.dir(name))
        let data = try TokenWindows(path: Fixtures.dir(name) + "/tokens.bin", seqLen: ref.seqLen, vocabSize: ckpt.config.vocabSize)
        let stage: Stage<Float> = try LocalEngine.load(ckpt, seqLen: ref.seqLen, maxBatch: 1, training: true)
        let result = LocalEngine.run(
            stage, data: data, windows: Array(0..<data.windowCount), microBatch: 1, backward: true,
            gradients: layerMatricesOnly ? .layerMatrices : .allWeights, matmul: matmul)
        var grads: [String: Double] = [:]
        for spec in stage.params.specs {
            let got = UnsafeBufferPointer(start: stage.params.grads!.pointer + spec.offset, count: spec.count)
            grads[spec.name] = relativeError(got, ref.tensor("grad." + spec.name))
        }
        return (abs(result.loss - ref.loss), grads, stage)
    }

    // Tolerances for `--matmul bf16`: every linear/lm_head input is rounded to 8 significant bits (relative
    // 2⁻⁹ = 2e-3 per rounding), and those errors pass through every layer. Measured on these fixtures: loss
    // off by ≤ 3.5e-3, gradients by ≤ 6.4e-2 of the tensor's largest entry (qwen2_tied, a tiny random model
    // with much cancellation). 1e-2 and 0.15 hold those with margin; a wrongly wired product (a transposed
    // operand, a missed accumulation, a dropped block) is off by O(1).
    func testBF16ProductsStayWithinBF16RoundingOfTheReference() throws {
        try requireBF16()
        for name in Fixtures.names {
            let (loss, grads, _) = try errors(name, matmul: .bf16)
            print("bf16 \(name): loss |diff| \(loss), worst gradient relative error \(grads.values.max()!)")
            XCTAssertLessThan(loss, 1e-2, "\(name): loss")
            for (tensor, err) in grads { XCTAssertLessThan(err, 0.15, "\(name): gradient of \(tensor)") }
        }
    }

    func testWgradBF16ChangesOnlyTheWeightGradientProducts() throws {
        // Forward and activation gradients stay FP32: the loss and every non-matrix gradient (norms, biases,
        // embedding, built from activation gradients) are bit-for-bit those of f32. Matrix gradients are one
        // BF16 product each: every term's inputs rounded once (≤ 2⁻⁸ relative per term), so within 1e-2 of
        // the tensor's largest entry (measured: printed below).
        try requireBF16()
        for name in ["llama_linear_bias", "qwen2_tied", "mistral_headdim"] {
            let f = try errors(name, matmul: .f32), w = try errors(name, matmul: .wgradBF16)
            XCTAssertEqual(f.loss, w.loss, "\(name): loss")
            var worst = 0.0
            for spec in f.stage.params.specs {
                let a = Array(UnsafeBufferPointer(start: f.stage.params.grads!.pointer + spec.offset, count: spec.count))
                let b = UnsafeBufferPointer(start: w.stage.params.grads!.pointer + spec.offset, count: spec.count)
                if spec.isMatrix {
                    let err = relativeError(b, a)
                    worst = max(worst, err)
                    XCTAssertLessThan(err, 1e-2, "\(name): \(spec.name)")
                    XCTAssertGreaterThan(err, 0, "\(name): \(spec.name) should differ (BF16 inputs)")
                } else if spec.shape.count == 2 {
                    // lm_head's dW is a BF16 product too (and is the tied embedding's gradient).
                    XCTAssertLessThan(relativeError(b, a), 1e-2, "\(name): \(spec.name)")
                } else {
                    XCTAssertEqual(a, Array(b), "\(name): \(spec.name)")
                }
            }
            print("wgrad-bf16 \(name): worst matrix-gradient relative difference from f32 \(worst)")
        }
    }

    func testLayerMatricesOnlySkipsTheRestAndChangesNothingElse() throws {
        // What gradmap/taylor decisions compute: the layer matrices' gradients, bit-for-bit those of the full
        // backward, and nothing else (lm_head, embedding, norms and biases stay zero).
        for name in ["llama_linear_bias", "qwen2_tied", "llama_gqa"] {
            let full = try errors(name, matmul: .f32).stage
            let only = try errors(name, matmul: .f32, layerMatricesOnly: true).stage
            var matrices = 0, others = 0
            for spec in full.params.specs {
                let a = Array(UnsafeBufferPointer(start: full.params.grads!.pointer + spec.offset, count: spec.count))
                let b = Array(UnsafeBufferPointer(start: only.params.grads!.pointer + spec.offset, count: spec.count))
                if spec.isMatrix {
                    XCTAssertEqual(a, b, "\(name): \(spec.name)")
                    matrices += 1
                } else {
                    XCTAssertTrue(b.allSatisfy { $0 == 0 }, "\(name): \(spec.name) should be skipped")
                    XCTAssertTrue(a.contains { $0 != 0 }, "\(name): \(spec.name) has a gradient in the full backward")
                    others += 1
                }
            }
            XCTAssertEqual(matrices, 7 * full.config.layers)
            XCTAssertGreaterThan(others, 0)
        }
    }
}
