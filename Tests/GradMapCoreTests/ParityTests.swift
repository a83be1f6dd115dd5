// Parity with transformers: logits, loss and every parameter gradient of each fixture model against the
// float64 reference made by scripts/make_fixtures.py.
//
// Tolerances: the engine computes in Float32 (relative rounding 6e-8) through reductions of at most a few
// hundred terms, so its logits and loss sit ~1e-6 from the float64 reference; 1e-4 absolute on logits of
// magnitude O(1) and on the loss leaves two orders of margin while catching any wrong formula (a missing
// bias or a wrong RoPE frequency moves them by 1e-2 or more). Gradients are compared as max|diff| / max|ref|
// per tensor at 1e-3: float32 accumulation over all tokens, and small entries are judged at the tensor's scale.
import XCTest

@testable import GradMapData
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapRuntime

final class ParityTests: XCTestCase {
    func checkFixture(_ name: String, microBatch: Int, policy: ActivationPolicy) throws {
        let ref = try Fixtures.reference(name)
        let ckpt = try Checkpoint(directory: Fixtures.dir(name))
        let c = ckpt.config
        let data = try TokenWindows(path: Fixtures.dir(name) + "/tokens.bin", seqLen: ref.seqLen, vocabSize: c.vocabSize)
        XCTAssertEqual(data.windowCount, ref.windows)
        let stage: Stage<Float> = try LocalEngine.load(ckpt, seqLen: ref.seqLen, maxBatch: microBatch, training: true, policy: policy)
        let refLogits = ref.tensor("logits")
        let perWindow = ref.seqLen * c.vocabSize
        var worstLogit = 0.0
        let result = LocalEngine.run(stage, data: data, windows: Array(0..<data.windowCount), microBatch: microBatch, backward: true) { w, logits in
            for i in 0..<perWindow { worstLogit = max(worstLogit, abs(Double(logits[i]) - Double(refLogits[w * perWindow + i]))) }
        }
        print("parity \(name) B=\(microBatch) \(policy): logits max |diff| \(worstLogit), loss |diff| \(abs(result.loss - ref.loss))")
        XCTAssertLessThan(worstLogit, 1e-4, "\(name): logits max |diff|")
        XCTAssertEqual(result.loss, ref.loss, accuracy: 1e-4, "\(name): loss")
        var checked = 0
        for spec in stage.params.specs {
            let refGrad = ref.tensor("grad." + spec.name)
            XCTAssertEqual(refGrad.count, spec.count, "\(name): \(spec.name) size")
            let got = UnsafeBufferPointer(start: stage.params.grads!.pointer + spec.offset, count: spec.count)
            let err = relativeError(got, refGrad)
            XCTAssertLessThan(err, 1e-3, "\(name): gradient of \(spec.name), relative error \(err)")
            checked += 1
        }
        // Every reference gradient was matched by a parameter of ours.
        XCTAssertEqual(checked, ref.file.tensors.keys.filter { $0.hasPrefix("grad.") }.count, "\(name): gradient count")
    }

    func testAllFixturesMatchTransformers() throws {
        for name in Fixtures.names {
            try checkFixture(name, microBatch: 1, policy: .store)
        }
    }

    func testMicroBatchAndRecomputeGiveTheSameResult() throws {
        for name in ["llama_gqa", "qwen2_tied", "llama3_rope"] {
            try checkFixture(name, microBatch: 2, policy: .recompute)
        }
    }

    func testTwoThreadsMatchTransformersToo() throws {
        // Norms, activations, attention heads and the loss shared among 2 threads (BLAS single-threaded
        // inside the attention): the same tolerances hold.
        BLASRuntime.configureThreads(2)
        defer { BLASRuntime.configureThreads(1) }
        for name in ["llama_gqa", "qwen2_tied", "mistral_headdim"] {
            try checkFixture(name, microBatch: 2, policy: .store)
        }
    }

    /// The strict loader reads F16/BF16 storage exactly: the widened values equal the reference's weights'
    /// float32 view bit for bit (checked through the gradient-free forward above) and F32 checkpoints too.
    func testEveryFixtureTensorIsUsed() throws {
        for name in Fixtures.names {
            let ckpt = try Checkpoint(directory: Fixtures.dir(name))
            XCTAssertNoThrow(try ckpt.checkNoUnexpectedTensors(), name)
            XCTAssertEqual(ckpt.unclaimedTensors(), [], name)
            XCTAssertEqual(Set(ckpt.source.tensorNames), ParamLayout.allNames(ckpt.config), name)
        }
    }
}
