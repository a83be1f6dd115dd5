// The jobs' configurations: one validation per job that names the field at fault (the CLI maps fields to
// flags), and defaults that live only in the core.
import XCTest

@testable import GradMapData
@testable import GradMapJob
@testable import GradMapKernels
@testable import GradMapPruning
@testable import GradMapSupport

final class JobConfigTests: XCTestCase {
    /// The field a configuration's validation blames, or nil when it passes.
    func blamed(_ body: () throws -> Void) -> ConfigField? {
        do {
            try body()
            return nil
        } catch GradMapError.badValue(let field, _, _) {
            return field
        } catch {
            XCTFail("not a bad value: \(error)")
            return nil
        }
    }

    func testPruneConfigValidationNamesTheField() {
        let base = PruneConfig(engine: EngineConfig(model: "m", seqLen: 16), calibration: .tokens("t"))
        XCTAssertNil(blamed { try base.validate() })
        let cases: [(ConfigField, (inout PruneConfig) -> Void)] = [
            (.seqLen, { $0.engine.seqLen = 1 }),
            (.stages, { $0.engine.stages = 0 }),
            (.calibWindows, { $0.calibWindows = 0 }),
            (.evalWindows, { $0.evalWindows = 0 }),
            (.validationWindows, { $0.validationWindows = 0 }),
        ]
        for (field, change) in cases {
            var c = base
            change(&c)
            XCTAssertEqual(blamed { try c.validate() }, field)
        }
        // What needs the model's layer count is Pruner.validate's, field by field as well.
        let decisions: [(ConfigField, (inout PruneOptions) -> Void)] = [
            (.remove, { $0.remove = 0 }), (.remove, { $0.remove = 6 }), (.verifyTop, { $0.verifyTop = 0 }),
            (.protectFirst, { $0.protectFirst = -1 }), (.layers, { $0.layers = [1, 1] }),
            (.compensateAt, { $0.compensateAt = .layer(8) }), (.ridge, { $0.ridge = 0 }), (.microBatch, { $0.microBatch = 0 }),
        ]
        for (field, change) in decisions {
            var o = base.decisions
            o.remove = 2
            change(&o)
            XCTAssertEqual(blamed { try Pruner.validate(o, layers: 8) }, field)
        }
    }

    func testWindowAndInspectConfigValidation() {
        var w = WindowJobConfig(engine: EngineConfig(model: "m", seqLen: 8), tokens: "t")
        XCTAssertNil(blamed { try w.validate() })
        w.maxWindows = 0
        XCTAssertEqual(blamed { try w.validate() }, .maxWindows)
        w.maxWindows = nil
        w.microBatch = 0
        XCTAssertEqual(blamed { try w.validate() }, .microBatch)
        var i = InspectConfig(model: "config.json")
        XCTAssertNil(blamed { try i.validate() })
        i.stages = 2
        XCTAssertEqual(blamed { try i.validate() }, .stages, "stages without ranks")
        i.ranks = 0
        XCTAssertEqual(blamed { try i.validate() }, .ranks)
    }

    /// A window count is the setting it came from: calibration or held-out windows.
    func testWindowCountsNameTheirSetting() throws {
        let data = TokenWindows(path: "ids.bin", tokens: [UInt32](repeating: 1, count: 40), seqLen: 8)
        XCTAssertEqual(blamed { _ = try data.spreadWindows(6, field: .calibWindows) }, .calibWindows)
        XCTAssertEqual(blamed { _ = try data.spreadWindows(6, field: .evalWindows) }, .evalWindows)
        XCTAssertEqual(try data.spreadWindows(5, field: .calibWindows), [0, 1, 2, 3, 4])
    }

    /// The defaults front ends show are the job's own.
    func testDefaultsAreTheJobs() {
        let d = PruneConfig.defaults
        XCTAssertEqual(d.decisions.metric, .bi)
        XCTAssertEqual(d.decisions.compensateAt, .auto)
        XCTAssertEqual(d.calibWindows, 32)
        XCTAssertEqual(d.engine.matmul, MatmulPrecision.machineDefault)
    }
}
