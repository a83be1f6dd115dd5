// HFConfig: the config.json written for a GGUF or a model built in code parses back to the same model, and its
// floats are checked before JSONEncoder (which cannot write NaN or infinity) with the parser's messages.
import Foundation
import XCTest

@testable import GradMapFormats
@testable import GradMapSupport

final class HFConfigTests: XCTestCase {
    func badInputMessage(_ body: () throws -> Void) -> String? {
        do { try body() } catch GradMapError.badInput(let m) { return m } catch { return "\(error)" }
        return nil
    }

    func testBuiltInCodeRoundTrips() throws {
        var rope = RopeConfig()
        rope.kind = .llama3; rope.theta = 500000; rope.factor = 8; rope.originalMaxPositions = 32
        let c = ModelConfig(
            modelType: "llama", vocabSize: 64, hidden: 16, intermediate: 32, layers: 3, heads: 4, kvHeads: 2,
            headDim: 4, rmsEps: 1e-5, tieEmbeddings: true, qkvBias: true, attentionOutputBias: true, mlpBias: false,
            rope: rope)
        let raw = try c.huggingFaceJSON()
        let back = try ModelConfig.parse(raw, source: "test")
        XCTAssertEqual([back.layers, back.hidden, back.intermediate, back.heads, back.kvHeads, back.headDim, back.vocabSize],
                       [3, 16, 32, 4, 2, 4, 64])
        XCTAssertEqual(back.rmsEps, 1e-5)
        XCTAssertTrue(back.tieEmbeddings && back.attentionOutputBias)
        XCTAssertEqual(back.rope, rope)
        // Without scaling rope_scaling is written as null, as transformers writes it.
        var plain = c
        plain.rope = RopeConfig()
        XCTAssertTrue(try plain.huggingFaceJSON()["rope_scaling"] is NSNull)
        // Decodable reads back what Encodable wrote.
        let data = try JSONEncoder().encode(c.huggingFace)
        XCTAssertEqual(try JSONDecoder().decode(HFConfig.self, from: data), c.huggingFace)
    }

    func testGGUFFloatsAreCheckedBeforeEncoding() throws {
        let dir = temporaryDirectory("hfconfig")
        let cases: [(String, [String: GGUFValue], String)] = [
            ("eps_nan", ["llama.attention.layer_norm_rms_epsilon": .f32(.nan)], "rms_norm_eps must be a positive number, got nan"),
            ("eps_negative", ["llama.attention.layer_norm_rms_epsilon": .f32(-1)], "rms_norm_eps must be a positive number, got -1.0"),
            ("theta_inf", ["llama.rope.freq_base": .f32(.infinity)], "rope_theta must be a positive number, got inf"),
            ("factor_negative", ["llama.rope.scaling.type": .string("linear"), "llama.rope.scaling.factor": .f32(-2)],
             "rope_scaling factor must be a positive number, got -2.0"),
        ]
        for (name, metadata, message) in cases {
            let path = dir + "/\(name).gguf"
            GGUFTestWriter.write(path, GGUFTestWriter.tinyModel(metadata: metadata))
            XCTAssertEqual(badInputMessage { _ = try Checkpoint(path: path) }, "\(path): \(message)", name)
        }
    }
}
