// Pruning end to end on small generated models: the compensation solve, the written checkpoint, agreement
// across rank counts, and bad input.
import Foundation
import XCTest

@testable import GradMapCompensation
@testable import GradMapData
@testable import GradMapDistributed
@testable import GradMapFormats
@testable import GradMapPruning
@testable import GradMapWriter

/// A random LLaMA checkpoint folder (config.json + model.safetensors) with `layers` layers.
func makeModel(layers: Int, tied: Bool = false, dtype: DType = .f32, seed: UInt64 = 11, hidden: Int = 16, vocab: Int = 64,
               edit: ((String, inout [Float]) -> Void)? = nil) throws -> String {
    var rope = RopeConfig()
    rope.theta = 10000
    let c = ModelConfig(
        modelType: "llama", vocabSize: vocab, hidden: hidden, intermediate: 2 * hidden, layers: layers, heads: 4, kvHeads: 2,
        headDim: hidden / 4, rmsEps: 1e-6, tieEmbeddings: tied, qkvBias: false, attentionOutputBias: false, mlpBias: false,
        rope: rope)
    let dir = temporaryDirectory("model")
    try writeJSON(c.huggingFaceJSON(), to: dir + "/config.json")
    var rng = SeededRandom(state: seed)
    var entries: [SafeTensorsEntry] = []
    for s in ParamLayout.specs(c, part: .whole(c)) {
        let norm = s.shape.count == 1
        var v = (0..<s.count).map { _ in Float(norm ? 1 + 0.1 * rng.next() : 0.3 * rng.next()) }
        edit?(s.name, &v)
        entries.append(v.withUnsafeBufferPointer { SafeTensorsEntry(name: s.name, dtype: dtype, shape: s.shape, values: $0) })
    }
    try SafeTensorsWriter.write(entries, to: dir + "/model.safetensors")
    // A text-like token stream: 24 windows of 16 tokens.
    var d = Data()
    for _ in 0..<(24 * 16) {
        let id = UInt32((rng.next() + 1) / 2 * 63.99)
        withUnsafeBytes(of: id.littleEndian) { d.append(contentsOf: $0) }
    }
    XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/tokens.bin", contents: d))
    return dir
}

final class PruningTests: XCTestCase {
    func testSolveRecoversAnExactProjection() throws {
        // y = u + P z exactly for a random P: the closed form with a vanishing ridge returns P.
        let h = 12, n = 400
        var rng = SeededRandom(state: 5)
        let p = rng.array(h * h, scale: 0.5)
        var sums = [Double](repeating: 0, count: 2 * h * h + 2)
        for _ in 0..<n {
            let z = rng.array(h), u = rng.array(h)
            var y = u
            for i in 0..<h { for j in 0..<h { y[i] += p[i * h + j] * z[j] } }
            for i in 0..<h {
                for j in 0..<h {
                    sums[i * h + j] += (y[i] - u[i]) * z[j]
                    sums[h * h + i * h + j] += z[i] * z[j]
                }
                sums[2 * h * h] += (y[i] - u[i]) * (y[i] - u[i])
                sums[2 * h * h + 1] += y[i] * y[i]
            }
        }
        let s = try Compensation.solve(sums: sums, hidden: h, alpha: 1e-12)
        let err = zip(s.p, p).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(err, 1e-6, "max |P - P_true| = \(err)")
        XCTAssertFalse(s.raised)
        XCTAssertLessThan(s.after, 1e-10)
        XCTAssertGreaterThan(s.before, 0.01)
        // An indefinite Σzzᵀ (as rounding can leave a rank-deficient one) with a ridge too small to help:
        // α is raised until the Cholesky factorisation succeeds.
        var singular = sums
        for i in 0..<h { for j in 0..<h { singular[h * h + i * h + j] = i == j ? (i == 0 ? 1 : -1e-9) : 0 } }
        let r = try Compensation.solve(sums: singular, hidden: h, alpha: 1e-300)
        XCTAssertTrue(r.raised)
        XCTAssertGreaterThan(r.alpha, 1e-300)
    }

    func testCompensationThroughTheEngineFindsTheIdentityForANoOpLayer() throws {
        // Layer 2 adds nothing (o_proj and down_proj zero): removing it changes nothing, so the exact
        // projection at layer 3 is P = I, and folding it must leave down_proj as it was.
        let dir = try makeModel(layers: 6) { name, v in
            if name.hasPrefix("model.layers.2.") && (name.contains("o_proj") || name.contains("down_proj")) {
                v = v.map { _ in 0 }
            }
        }
        let ckpt = try Checkpoint(path: dir)
        let data = try TokenWindows(path: dir + "/tokens.bin", seqLen: 16, vocabSize: 64)
        var o = PruneOptions()
        o.layers = [2]
        o.compensateAt = .layer(3)
        o.ridge = 1e-9
        let pipeline: Pipeline<Float> = try Pipeline.load(world: .solo, checkpoint: ckpt, stages: 1, seqLen: 16, microBatch: 2, training: false)
        let pruner = try Pruner(pipeline: pipeline, data: data, calibration: try data.spreadWindows(8, field: .calibWindows), validation: [], options: o)
        let before = pruner.loss()
        _ = try pruner.decide()
        let d = pipeline.stage.params.value("model.layers.3.mlp.down_proj.weight")
        let original = Array(UnsafeBufferPointer(start: d, count: 16 * 32))
        let report = try pruner.compensate(target: .layer(3), storage: .f32)
        XCTAssertEqual(report.layer, 3)
        XCTAssertLessThan(report.reconBefore, 1e-10)
        XCTAssertLessThan(report.reconAfter, 1e-10)
        let folded = Array(UnsafeBufferPointer(start: d, count: 16 * 32))
        XCTAssertLessThan(maxAbsDiff(folded, original), 1e-6)
        XCTAssertEqual(pruner.loss(), before, accuracy: 1e-6)
    }
}

extension PruningTests {
    func testCandidateSweepEqualsOneForwardPerCandidate() throws {
        let dir = try makeModel(layers: 7, seed: 3)
        let ckpt = try Checkpoint(path: dir)
        let data = try TokenWindows(path: dir + "/tokens.bin", seqLen: 16, vocabSize: 64)
        var o = PruneOptions()
        o.layers = [2]
        let pipeline: Pipeline<Float> = try Pipeline.load(world: .solo, checkpoint: ckpt, stages: 1, seqLen: 16, microBatch: 3, training: false)
        let pruner = try Pruner(pipeline: pipeline, data: data, calibration: try data.spreadWindows(7, field: .calibWindows), validation: [], options: o)
        _ = try pruner.decide()
        let candidates = [5, 1, 3, 4]
        let swept = try pruner.lossesWithout(candidates)
        for (c, v) in zip(candidates, swept) {
            // Same layer computations on the same inputs: equal up to float32 summation order (none here).
            XCTAssertEqual(v, try pruner.loss(without: [c]), accuracy: 1e-6, "candidate \(c)")
        }
    }
}

extension Pruner {
    /// Test convenience: the calibration loss, crashing on error.
    func loss() -> Double { try! loss(without: []) }
}
