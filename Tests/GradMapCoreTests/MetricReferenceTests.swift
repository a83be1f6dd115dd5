// Every metric's scores and decisions and every compensation mode against an independent float64
// computation: scripts/make_metric_fixtures.py evaluates the definitions of docs/method.md with transformers'
// layers in float64 and writes Tests/Fixtures/<name>/metrics.json, holding the exact flags of each run. The
// runs go through the built gradmap-dist binary (`score`, `prune --json` and its pruning_report.json), as
// users run it, with --matmul f32 pinned; the projection P itself through the core API, which has it.
//
// Tolerances: the engine computes in float32 (relative rounding 6e-8) and sums metric terms in Float64; the
// reference is float64 throughout. Each tolerance is 10-40x the largest error measured on these three
// fixtures (printed as "metric-reference worst ..." by every test), far below what any wrong formula gives
// (a mean for a sum, a missing window or position, a wrong sign, norm or ridge moves a value by 1e-2 or more).
// Scores are compared as |got - ref| / max|ref| over the run's layers, as ParityTests compares tensors: a
// score near zero is judged at its run's scale.
import Foundation
import XCTest

@testable import GradMapCompensation
@testable import GradMapData
@testable import GradMapDistributed
@testable import GradMapFormats
@testable import GradMapPruning
@testable import GradMapSupport

enum MetricTolerance {
    /// Calibration and validation losses, sleb scores, --verify-top losses: the float32 forward's logits sit
    /// ~1e-6 from float64 (ParityTests) and the mean NLL inherits that; measured ≤ 7e-7 relative (the auto
    /// candidates' validation losses, after a fold rounded to float32), ≤ 6e-8 elsewhere.
    static let loss = 1e-5
    /// bi and angular: cosines of float32 hidden states, accumulated in Float64; measured ≤ 1e-7.
    static let cosine = 2e-6
    /// gradmap (L1, L2) and taylor: sums of |float32 weight gradient| (each ~1e-6 relative from float64 per
    /// ParityTests; summed over a layer they agree better); measured ≤ 1.3e-7.
    static let weightGradient = 5e-6
    /// gate and fisher: <dL/dh_{l+1}, f_l> per token from float32 activation gradients and f = h_{l+1} - h_l
    /// formed in float32 (cancellation in the difference), signed per-token terms summed for gate;
    /// measured ≤ 1.7e-6.
    static let activationGradient = 5e-5
    /// Mean shifts σ_j, λ and the relative reconstruction errors: means and H×H sums of float32 states in
    /// Float64; the error after the fit is a difference of large sums (Σ‖r‖² - 2ΣP∘A + tr(PBPᵀ)) and
    /// cancels most: measured ≤ 2.7e-6 relative to it.
    static let compensation = 5e-5
    /// P and the folded down_proj: P solves (B + λI)Pᵀ = (A + λI)ᵀ from sums of float32 states, amplifying
    /// their ~1e-7 relative error by up to cond(B + λI) ≤ (‖B‖ + λ)/λ, then P·D is rounded to float32;
    /// measured ≤ 3.2e-6 at the scale of the largest element.
    static let projection = 1e-4

    /// The tolerance of a metric's scores (random: its draws do not depend on arithmetic, equal to the bit).
    static func of(_ metric: String) -> Double {
        switch metric {
        case "gradmap", "taylor": return weightGradient
        case "gate", "fisher": return activationGradient
        case "bi", "angular": return cosine
        case "sleb": return loss
        case "random": return 0
        default: preconditionFailure("no tolerance for \(metric)")
        }
    }
}

final class MetricReferenceTests: XCTestCase {
    static let fixtures = ["qwen2_tied", "llama_gqa", "llama_linear_bias"]
    typealias Object = [String: Any]

    // MARK: reading the reference and running the binary

    func reference(_ name: String) throws -> Object {
        let path = Fixtures.dir(name) + "/metrics.json"
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        return object as! Object
    }

    func runs(_ ref: Object, _ kind: String, _ names: (String) -> Bool) -> [Object] {
        (ref[kind] as! [Object]).filter { names($0["name"] as! String) }
    }

    static func number(_ x: Any?) -> Double? { (x as? NSNumber)?.doubleValue }
    static func numbers(_ x: Any?) -> [Double?] { (x as! [Any]).map { number($0) } }

    /// Runs `gradmap-dist <command> --model DIR --tokens DIR/tokens.bin <args>` and returns its JSON (the last
    /// line), and for prune also the written folder's pruning_report.json and the folder.
    func run(_ command: String, _ fixture: String, _ args: [String]) throws -> (json: Object, report: Object?, out: String?) {
        let dir = Fixtures.dir(fixture)
        var all = [command, "--model", dir, "--tokens", dir + "/tokens.bin"] + args
        var out: String? = nil
        if command == "prune" {
            let parent = temporaryDirectory("metricref")
            addTeardownBlock { try? FileManager.default.removeItem(atPath: parent) }
            out = parent + "/p"
            all += ["--out", out!, "--json"]
        }
        // One BLAS thread: the same products as the reference-measured run, and the shared cores spared.
        let r = try runProcess(binaryPath, all, env: ["GRADMAP_BLAS_THREADS": "1"])
        let label = "\(fixture): gradmap-dist \(all.joined(separator: " "))"
        guard r.status == 0 else { throw GradMapError.runtime("\(label): exit \(r.status): \(r.stderr.suffix(2000))") }
        let line = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let json = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? Object else {
            throw GradMapError.runtime("\(label): no JSON in \(r.stdout)")
        }
        var report: Object? = nil
        if let out {
            let data = try Data(contentsOf: URL(fileURLWithPath: out + "/pruning_report.json"))
            report = try JSONSerialization.jsonObject(with: data) as? Object
        }
        return (json, report, out)
    }

    /// Largest error seen per quantity, printed at the end of each test (the tolerances above come from these).
    var worst: [String: Double] = [:]

    override func tearDown() {
        for (k, v) in worst.sorted(by: { $0.key < $1.key }) { print("metric-reference worst \(k): \(v)") }
        worst = [:]
        super.tearDown()
    }

    /// got vs ref element by element: nil (null) exactly where the reference has it, every value within
    /// `tolerance` of the reference relative to the largest reference magnitude.
    func compare(
        _ got: [Double?], _ ref: [Double?], tolerance: Double, _ what: String, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(got.count, ref.count, "\(label) \(what): count", file: file, line: line)
        let scale = ref.compactMap { $0 }.map(abs).max() ?? 0
        for (i, (g, r)) in zip(got, ref).enumerated() {
            guard let r else {
                XCTAssertNil(g, "\(label) \(what)[\(i)]: expected null", file: file, line: line)
                continue
            }
            guard let g else {
                XCTFail("\(label) \(what)[\(i)]: null, expected \(r)", file: file, line: line)
                continue
            }
            let err = abs(g - r) / max(scale, 1e-300)
            worst[what] = max(worst[what] ?? 0, err)
            XCTAssertLessThanOrEqual(err, tolerance, "\(label) \(what)[\(i)]: \(g) vs reference \(r)", file: file, line: line)
        }
    }

    func compare(
        _ got: Double?, _ ref: Double?, tolerance: Double, _ what: String, _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        compare([got], [ref], tolerance: tolerance, what, label, file: file, line: line)
    }

    // MARK: metrics

    /// `score` runs named `scoreNames` and `prune` runs named `pruneNames` of every fixture: every score at
    /// every decision, the removed layers in order, the chosen score and the losses.
    func checkMetric(
        score scoreNames: (String) -> Bool, prune pruneNames: (String) -> Bool,
        file: StaticString = #filePath, line: UInt = #line
    ) throws {
        var checked = 0
        for fixture in Self.fixtures {
            let ref = try reference(fixture)
            for r in runs(ref, "score", scoreNames) {
                let label = "\(fixture) score \(r["name"]!)"
                let what = r["metric"] as! String, tolerance = MetricTolerance.of(what)
                let got = try run("score", fixture, r["args"] as! [String]).json
                compare(Self.numbers(got["scores"]), Self.numbers(r["scores"]), tolerance: tolerance, what, label, file: file, line: line)
                XCTAssertEqual(got["calibration_windows"] as? [Int], ref["calibration_windows"] as? [Int], label, file: file, line: line)
                checked += 1
            }
            for r in runs(ref, "prune", pruneNames) {
                try checkPrune(r, fixture, file: file, line: line)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0, "no reference runs", file: file, line: line)
    }

    func checkPrune(_ r: Object, _ fixture: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let label = "\(fixture) prune \(r["name"]!)"
        let what = r["metric"] as! String, tolerance = MetricTolerance.of(what)
        let args = r["args"] as! [String]
        let (got, report, out) = try run("prune", fixture, args)
        XCTAssertEqual(got["removed"] as? [Int], r["removed"] as? [Int], "\(label): decisions", file: file, line: line)
        if let i = args.firstIndex(of: "--seed") {
            // The report states the seed as given, exactly (a UInt64 may exceed Int).
            let text = try String(contentsOfFile: out! + "/pruning_report.json", encoding: .utf8)
            XCTAssertTrue(text.contains("\"seed\": \(args[i + 1]),"), "\(label): seed in the report", file: file, line: line)
        }
        let scores = got["scores"] as! [Any], refScores = r["scores"] as! [Any]
        XCTAssertEqual(scores.count, refScores.count, label, file: file, line: line)
        for (k, (s, rs)) in zip(scores, refScores).enumerated() {
            compare(Self.numbers(s), Self.numbers(rs), tolerance: tolerance, what, "\(label) decision \(k + 1)", file: file, line: line)
        }
        let decisions = report!["decisions"] as! [Object]
        let refVerified = r["verified"] as! [[[Any]]]
        let refChosen = Self.numbers(r["decision_scores"])
        XCTAssertEqual(decisions.count, refChosen.count, label, file: file, line: line)
        for (k, d) in decisions.enumerated() where k < refChosen.count {
            let verified = d["verified"] as! [Object]
            let v = refVerified[k]
            // The chosen layer's score is the metric's, or its loss when --verify-top chose it.
            let tol = v.isEmpty ? tolerance : MetricTolerance.loss
            compare(Self.number(d["score"]), refChosen[k], tolerance: tol, v.isEmpty ? what : "loss", "\(label) decision \(k + 1) score", file: file, line: line)
            XCTAssertEqual(verified.map { $0["layer"] as! Int }, v.map { ($0[0] as! NSNumber).intValue },
                           "\(label) decision \(k + 1): verified candidates", file: file, line: line)
            for (x, y) in zip(verified, v) {
                compare(Self.number(x["calib_loss"]), Self.number(y[1]), tolerance: MetricTolerance.loss, "loss",
                        "\(label) decision \(k + 1) verified \(y[0])", file: file, line: line)
            }
        }
        let losses = got["calib_loss"] as! Object, refLosses = r["calib_loss"] as! Object
        for key in ["original", "pruned"] {
            compare(Self.number(losses[key]), Self.number(refLosses[key]), tolerance: MetricTolerance.loss, "loss", "\(label) calib_loss \(key)", file: file, line: line)
        }
    }

    func testGradmapL1() throws {
        try checkMetric(score: { $0 == "gradmap_l1" }, prune: { $0 == "gradmap" })
    }

    func testGradmapL2() throws {
        try checkMetric(score: { $0 == "gradmap_l2" }, prune: { $0 == "gradmap_l2" })
    }

    func testTaylor() throws {
        try checkMetric(score: { $0 == "taylor" }, prune: { $0 == "taylor" })
    }

    func testGate() throws {
        try checkMetric(score: { $0 == "gate" }, prune: { $0 == "gate" })
    }

    func testFisher() throws {
        try checkMetric(score: { $0 == "fisher" }, prune: { $0 == "fisher" })
    }

    func testBlockInfluenceOneShot() throws {
        try checkMetric(score: { $0 == "bi" }, prune: { $0 == "bi" || $0 == "bi_verify2" })
    }

    /// --iterative rescores the current model. Where the first removal is the last layer (bi falls with depth
    /// on these models) that changes no score, so qwen2_tied also runs bi with --verify-top 2, whose loss
    /// removes layer 1 first: the rescored layer 2 (now fed by layer 0) must then differ from its one-shot score.
    func testBlockInfluenceIterative() throws {
        try checkMetric(score: { _ in false }, prune: { $0 == "bi_iterative" || $0 == "bi_iterative_verify2" })
        let ref = try reference("qwen2_tied")
        let oneShot = runs(ref, "prune") { $0 == "bi_verify2" }[0]["scores"] as! [Any]
        let iterative = runs(ref, "prune") { $0 == "bi_iterative_verify2" }[0]["scores"] as! [Any]
        let a = Self.numbers(oneShot[1])[2]!, b = Self.numbers(iterative[1])[2]!
        XCTAssertGreaterThan(abs(a - b), 100 * MetricTolerance.cosine * a, "the reference must tell --iterative from one-shot")
    }

    func testAngular() throws {
        try checkMetric(score: { $0.hasPrefix("angular") }, prune: { $0 == "angular" })
    }

    func testSLEB() throws {
        try checkMetric(score: { $0 == "sleb" }, prune: { $0 == "sleb" })
    }

    /// Tolerance 0: the draws do not depend on arithmetic, equal to the bit (SplitMix64 with state seed + 0x5eed, one draw
    /// per kept layer in ascending order at each decision, protected layers included).
    func testRandom() throws {
        try checkMetric(score: { $0.hasPrefix("random") }, prune: { $0.hasPrefix("random") })
    }

    func testVerifyTop() throws {
        try checkMetric(score: { _ in false }, prune: { $0.hasSuffix("_verify2") || $0.hasSuffix("_verify3") })
    }

    // MARK: compensation

    func checkCompensation(_ mode: (String) -> Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        var checked = 0
        for fixture in Self.fixtures {
            let ref = try reference(fixture)
            for r in runs(ref, "compensation", { _ in true }) where mode(r["mode"] as! String) {
                try checkCompensationRun(r, fixture, file: file, line: line)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0, file: file, line: line)
    }

    func checkCompensationRun(_ r: Object, _ fixture: String, file: StaticString, line: UInt) throws {
        let label = "\(fixture) compensation \(r["name"]!)"
        let (got, report, out) = try run("prune", fixture, r["args"] as! [String])
        XCTAssertEqual(got["removed"] as? [Int], r["removed"] as? [Int], label, file: file, line: line)
        let detail = report!["compensation_detail"] as! Object
        let chosen = r["chosen_layer"] as? Int
        XCTAssertEqual(detail["chosen_layer"] as? Int, chosen, "\(label): j*", file: file, line: line)
        // σ_j of every kept layer.
        let shifts = detail["shifts"] as! [Object], refShifts = r["shifts"] as! [[Any]]
        XCTAssertEqual(shifts.map { $0["layer"] as! Int }, refShifts.map { ($0[0] as! NSNumber).intValue }, label, file: file, line: line)
        compare(shifts.map { Self.number($0["sigma"]) }, refShifts.map { Self.number($0[1]) },
                tolerance: MetricTolerance.compensation, "sigma", "\(label) shifts", file: file, line: line)
        // Every candidate (layer, α): λ, errors before/after, validation loss (auto).
        let cands = detail["candidates"] as! [Object], refCands = r["candidates"] as! [Object]
        XCTAssertEqual(cands.count, refCands.count, "\(label): candidates", file: file, line: line)
        for (c, rc) in zip(cands, refCands) {
            let tag = "\(label) candidate \(rc["layer"]!) α \(rc["alpha"]!)"
            XCTAssertEqual(c["layer"] as? Int, rc["layer"] as? Int, tag, file: file, line: line)
            XCTAssertEqual(Self.number(c["alpha"]), Self.number(rc["alpha"]), tag, file: file, line: line)
            compare(Self.number(c["lambda"]), Self.number(rc["lambda"]), tolerance: MetricTolerance.compensation, "lambda", tag, file: file, line: line)
            for key in ["recon_error_before", "recon_error_after"] {
                compare(Self.number(c[key]), Self.number(rc[key]), tolerance: MetricTolerance.compensation, "recon", "\(tag) \(key)", file: file, line: line)
            }
            compare(Self.number(c["validation_loss"]), Self.number(rc["validation_loss"]), tolerance: MetricTolerance.loss, "loss", "\(tag) validation", file: file, line: line)
        }
        compare(Self.number(detail["baseline_validation_loss"]), Self.number(r["baseline_validation_loss"]),
                tolerance: MetricTolerance.loss, "loss", "\(label) baseline validation", file: file, line: line)
        XCTAssertEqual(detail["ridge_raised"] as? Bool, false, label, file: file, line: line)
        // The chosen candidate as --json reports it, and the losses.
        let comp = got["compensation"] as? Object
        XCTAssertEqual(comp?["layer"] as? Int, chosen, label, file: file, line: line)
        if let comp {
            XCTAssertEqual(Self.number(comp["ridge"]), Self.number(r["alpha"]), "\(label): α", file: file, line: line)
            compare(Self.number(detail["lambda"]), Self.number(r["lambda"]), tolerance: MetricTolerance.compensation, "lambda", label, file: file, line: line)
            for key in ["recon_error_before", "recon_error_after"] {
                compare(Self.number(comp[key]), Self.number(r[key]), tolerance: MetricTolerance.compensation, "recon", "\(label) \(key)", file: file, line: line)
            }
            compare(Self.numbers(comp["shifts"]), refShifts.map { Self.number($0[1]) },
                    tolerance: MetricTolerance.compensation, "sigma", "\(label) --json shifts", file: file, line: line)
        }
        let losses = got["calib_loss"] as! Object, refLosses = r["calib_loss"] as! Object
        for key in ["original", "pruned", "compensated"] {
            compare(Self.number(losses[key]), Self.number(refLosses[key]), tolerance: MetricTolerance.loss, "loss", "\(label) calib_loss \(key)", file: file, line: line)
        }
        // The fold: the written down_proj of j* (renumbered) is P·D with the reference P.
        guard let j = chosen, let out else { return }
        try checkFold(r, fixture, layer: j, out: out, label: label, file: file, line: line)
    }

    func checkFold(_ r: Object, _ fixture: String, layer j: Int, out: String, label: String, file: StaticString, line: UInt) throws {
        let src = try Checkpoint(path: Fixtures.dir(fixture))
        let h = src.config.hidden, inter = src.config.intermediate
        let removed = r["removed"] as! [Int]
        let renumbered = (0..<src.config.layers).filter { !removed.contains($0) }.firstIndex(of: j)!
        var d = [Float](repeating: 0, count: h * inter), folded = d
        try src.load("model.layers.\(j).mlp.down_proj.weight", shape: [h, inter], into: &d)
        try Checkpoint(path: out).load("model.layers.\(renumbered).mlp.down_proj.weight", shape: [h, inter], into: &folded)
        let p = Self.numbers(r["p"]).map { $0! }
        var expected = [Double?](repeating: 0, count: h * inter)
        for row in 0..<h {
            for col in 0..<inter {
                var acc = 0.0
                for k in 0..<h { acc += p[row * h + k] * Double(d[k * inter + col]) }
                expected[row * inter + col] = acc
            }
        }
        compare(folded.map { Optional(Double($0)) }, expected, tolerance: MetricTolerance.projection, "folded down_proj", label, file: file, line: line)
    }

    func testCompensationAtTheLargestShift() throws {
        try checkCompensation { $0 == "shift" }
    }

    func testCompensationAtAGivenLayer() throws {
        try checkCompensation { Int($0) != nil }
    }

    func testCompensationAutoChoice() throws {
        try checkCompensation { $0 == "auto" }
    }

    /// P itself, which no output carries: the same sums and solve the prune command runs (Compensation's
    /// sums and solve), on the model with the reference's layers removed.
    func testProjectionMatrix() throws {
        var checked = 0
        for fixture in Self.fixtures {
            let ref = try reference(fixture)
            for r in runs(ref, "compensation", { _ in true }) {
                guard let j = r["chosen_layer"] as? Int else { continue }
                let ckpt = try Checkpoint(path: Fixtures.dir(fixture))
                let t = ref["seq_len"] as! Int
                let data = try TokenWindows(path: Fixtures.dir(fixture) + "/tokens.bin", seqLen: t, vocabSize: ckpt.config.vocabSize)
                var o = PruneOptions()
                o.layers = r["removed"] as? [Int]
                o.protectFirst = 0
                o.protectLast = 0
                let pipeline: Pipeline<Float> = try Pipeline.load(world: .solo, checkpoint: ckpt, stages: 1, seqLen: t, microBatch: 1, training: false)
                // The run's own windows where it has them (the two-validation-window auto runs).
                let calibration = (r["calibration_windows"] ?? ref["calibration_windows"]) as! [Int]
                XCTAssertEqual(try data.spreadWindows(calibration.count, field: .calibWindows), calibration)
                let pruner = try Pruner(pipeline: pipeline, data: data, calibration: calibration, validation: [], options: o)
                _ = try pruner.decide()
                let sums = try Compensation(pruner).sums([j])
                let alpha = Self.number(r["alpha"])!
                let s = try Compensation.solve(sums: sums[j]!, hidden: ckpt.config.hidden, alpha: alpha)
                let label = "\(fixture) \(r["name"]!) P at layer \(j), α \(alpha)"
                compare(s.p.map { Optional($0) }, Self.numbers(r["p"]), tolerance: MetricTolerance.projection, "P", label)
                compare(s.lambda, Self.number(r["lambda"]), tolerance: MetricTolerance.compensation, "lambda", label)
                compare(s.after, Self.number(r["recon_error_after"]), tolerance: MetricTolerance.compensation, "recon", label)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0)
    }
}
