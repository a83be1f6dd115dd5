// `gradmap-dist prune` and `score` as users run them: the written checkpoint's structure and loss, the same
// decisions for any number of ranks, and bad input refused before anything is written.
import Foundation
import XCTest
@testable import GradMapSupport

@testable import GradMapFormats
@testable import GradMapReport

final class PruneCLITests: XCTestCase {
    func json(_ r: ProcessResult) throws -> [String: Any] {
        try lastJSON(r)
    }

    func prune(_ model: String, _ out: String, _ extra: [String], np: Int = 1) throws -> ProcessResult {
        let args = ["prune", "--model", model, "--tokens", model + "/tokens.bin", "--seq-len", "16", "--calib-windows", "8",
                    "--out", out, "--json"] + extra
        if np == 1 { return try runProcess(binaryPath, args) }
        let flags = ["--allow-run-as-root", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none", "-np", "\(np)"]
        return try runProcess(DistributedTests.mpirun, flags + [binaryPath] + args, env: ["GRADMAP_BLAS_THREADS": "1"])
    }

    /// The calibration windows of a run as their own token file, to evaluate the written model on them.
    func calibrationTokens(_ model: String, report: [String: Any]) throws -> String {
        let windows = report["calibration_windows"] as! [Int]
        let all = try Data(contentsOf: URL(fileURLWithPath: model + "/tokens.bin"))
        var d = Data()
        for w in windows { d.append(all[(w * 64)..<((w + 1) * 64)]) }
        let path = temporaryDirectory("calib") + "/calib.bin"
        try d.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Held-out perplexities with 95 % intervals and the paired differences in --json; the report adds the
    /// per-window losses they come from (and is otherwise --json).
    func testHeldOutIntervalsAndPairedDifferences() throws {
        let model = try makeModel(layers: 8, tied: false, dtype: .f32)
        let out = temporaryDirectory("out") + "/pruned"
        let r = try prune(model, out, ["--remove", "3", "--compensate-at", "shift", "--eval-tokens", model + "/tokens.bin", "--eval-windows", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try json(r)
        var saved = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/pruning_report.json"))) as! [String: Any]
        var eval = saved["eval"] as! [String: Any]
        let losses = (eval.removeValue(forKey: "window_losses") as! [String: [NSNumber]]).mapValues { $0.map(\.doubleValue) }
        saved["eval"] = eval
        XCTAssertEqual(NSDictionary(dictionary: saved), NSDictionary(dictionary: o), "the report is --json plus eval.window_losses")
        XCTAssertEqual(Set(losses.keys), ["original", "pruned", "compensated"])
        let e = o["eval"] as! [String: Any]
        for (label, l) in losses {
            XCTAssertEqual(l.count, 4, label)
            let ppl = (e["ppl_" + label] as! NSNumber).doubleValue
            // ppl is exp of the in-order mean of the windows' NLL sums; the interval's centre is the mean of
            // the per-window means: the same number to rounding (4 windows: a few ε).
            XCTAssertEqual(ppl, exp(meanInterval(l).mean), accuracy: 1e-12 * ppl, label)
            let want = meanInterval(l).expInterval
            let got = (e["ppl_\(label)_interval"] as! [NSNumber]).map(\.doubleValue)
            XCTAssertEqual(got[0], want.0, accuracy: 1e-12 * want.0, label)  // the reader's ulp, as below
            XCTAssertEqual(got[1], want.1, accuracy: 1e-12 * want.1, label)
            XCTAssertTrue(got[0] < ppl && ppl < got[1], "\(label): \(got) around \(ppl)")
        }
        // Foundation's JSON reader on Linux may read a printed double 1 ulp off, and the differences of
        // 4 such losses cancel to ~0.02: 1e-12 of the losses' magnitude (~3) is thousands of those ulps.
        func near(_ x: Any?, _ want: [Double], _ label: String) {
            let got = (x as? [NSNumber])?.map(\.doubleValue) ?? (x as? NSNumber).map { [$0.doubleValue] } ?? []
            XCTAssertEqual(got.count, want.count, label)
            for (g, w) in zip(got, want) { XCTAssertEqual(g, w, accuracy: 1e-12 * 4, label) }
        }
        for (b, a) in [("pruned", "original"), ("compensated", "pruned")] {
            let d = e["\(b)_vs_\(a)"] as! [String: Any]
            let want = pairedInterval(losses[a]!, losses[b]!)
            near(d["loss_diff"], [want.mean], "\(b) - \(a)")
            near(d["loss_diff_interval"], [want.lo, want.hi], "\(b) - \(a) interval")
            near(d["ppl_ratio"], [exp(want.mean)], "\(b) / \(a)")
            near(d["ppl_ratio_interval"], [want.expInterval.0, want.expInterval.1], "\(b) / \(a) interval")
        }
        // Pruning 3 of 8 layers of a random model changes every window's loss: a paired difference with spread.
        XCTAssertNotEqual(losses["pruned"]!, losses["original"]!)
    }

    func testWrittenCheckpointStructureAndLoss() throws {
        for (tied, dtype) in [(false, DType.f32), (true, DType.bf16)] {
            let model = try makeModel(layers: 8, tied: tied, dtype: dtype)
            let out = temporaryDirectory("out") + "/pruned"
            let r = try prune(model, out, ["--remove", "3", "--compensate-at", "shift"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let o = try json(r)
            let removed = o["removed"] as! [Int]
            XCTAssertEqual(removed.count, 3)
            XCTAssertFalse(removed.contains(0) || removed.contains(7), "protected layers removed: \(removed)")
            XCTAssertEqual((o["scores"] as! [[Any]]).count, 3)
            // One result schema: --json prints what the report file holds, key for key and value for value.
            let reportData = try Data(contentsOf: URL(fileURLWithPath: out + "/pruning_report.json"))
            let saved = try JSONSerialization.jsonObject(with: reportData) as! [String: Any]
            XCTAssertEqual(NSDictionary(dictionary: saved), NSDictionary(dictionary: o), "--json and pruning_report.json differ")
            XCTAssertEqual((saved["decisions"] as? [Any])?.count, 3)
            // Files: shards, index, config, report.
            let files = Set(try FileManager.default.contentsOfDirectory(atPath: out))
            XCTAssertTrue(files.isSuperset(of: ["config.json", "model.safetensors.index.json", "pruning_report.json", "pruning_report.svg"]), "\(files)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: PartialFolder.path(for: out)))
            let cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
            XCTAssertEqual(cfg["num_hidden_layers"] as? Int, 5)
            let ckpt = try Checkpoint(path: out)
            let names = Set(ckpt.source.tensorNames)
            XCTAssertEqual(names, ParamLayout.allNames(ckpt.config), "layers renumbered 0..4, nothing else")
            XCTAssertEqual(names.contains("lm_head.weight"), !tied)
            XCTAssertEqual(ckpt.storageDType(), dtype, "source dtype kept")
            let folder = ckpt.source as! SafeTensorsFolder
            for name in names {
                let (file, info) = try folder.info(name)
                XCTAssertEqual((file.tensors.values.map(\.begin).min()! + 8 + (file.dataStartForTests)) % 8, 0)
                XCTAssertEqual(info.begin % 8, 0, "\(name) not 8-byte aligned")
                XCTAssertEqual(file.metadata["format"], "pt")
            }
            // Kept layers are the originals, renumbered in order (an unmodified one compared bit for bit).
            let kept = (0..<8).filter { !removed.contains($0) }
            let src = try Checkpoint(path: model)
            var a = [Float](repeating: 0, count: 16 * 16), b = a
            try src.load("model.layers.\(kept[1]).self_attn.q_proj.weight", shape: [16, 16], into: &a)
            try ckpt.load("model.layers.1.self_attn.q_proj.weight", shape: [16, 16], into: &b)
            XCTAssertEqual(a, b)
            // The written model's loss is the in-memory one.
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/pruning_report.json"))) as! [String: Any]
            let calib = try calibrationTokens(model, report: report)
            let e = try runProcess(binaryPath, ["eval", "--model", out, "--tokens", calib, "--seq-len", "16", "--json"])
            let evalLoss = (try json(e)["loss"] as! NSNumber).doubleValue
            let losses = o["calib_loss"] as! [String: Any]
            let inMemory = ((losses["compensated"] as? NSNumber) ?? (losses["pruned"] as! NSNumber)).doubleValue
            XCTAssertEqual(evalLoss, inMemory, accuracy: 1e-5 * inMemory, "tied=\(tied) \(dtype)")
            XCTAssertNotNil(o["compensation"] as? [String: Any])
            // The report carries the command line, windows and per-rank timings; the chart is an SVG.
            XCTAssertTrue((report["command"] as! String).contains("prune"))
            XCTAssertEqual((report["ranks"] as! [Any]).count, 1)
            let svg = try String(contentsOfFile: out + "/pruning_report.svg", encoding: .utf8)
            XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("compensated at layer"))
        }
    }

    /// Two `prune --json` objects took the same decisions: removed layers, every score (1e-5 relative: the
    /// replicas' sum order) and the named calibration losses (1e-5).
    func assertSameDecisions(
        _ o: [String: Any], _ ref: [String: Any], losses: [String], _ label: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(o["removed"] as! [Int], ref["removed"] as! [Int], label, file: file, line: line)
        let s = (o["scores"] as! [[Any]]).flatMap { $0 }.compactMap { ($0 as? NSNumber)?.doubleValue }
        let rs = (ref["scores"] as! [[Any]]).flatMap { $0 }.compactMap { ($0 as? NSNumber)?.doubleValue }
        XCTAssertEqual(s.count, rs.count, label, file: file, line: line)
        for (x, y) in zip(s, rs) {
            XCTAssertEqual(x, y, accuracy: 1e-5 * max(abs(y), 1e-3), "\(label) scores", file: file, line: line)
        }
        let l = o["calib_loss"] as! [String: Any], rl = ref["calib_loss"] as! [String: Any]
        for key in losses {
            XCTAssertEqual((l[key] as! NSNumber).doubleValue, (rl[key] as! NSNumber).doubleValue, accuracy: 1e-5,
                           "\(label) \(key)", file: file, line: line)
        }
    }

    func testDecisionsAreTheSameForAnyNumberOfRanks() throws {
        let model = try makeModel(layers: 8, seed: 21)
        for (metric, more) in [("gradmap", ["--verify-top", "3"]), ("fisher", []), ("bi", []), ("sleb", [])] {
            var reference: [String: Any]? = nil
            for (np, stages) in [(1, 1), (2, 2), (4, 2)] {
                let out = temporaryDirectory("ranks") + "/p"
                let r = try prune(model, out, ["--remove", "2", "--metric", metric, "--stages", "\(stages)", "--compensate-at", "auto",
                                               "--micro-batch", "2"] + more, np: np)
                XCTAssertEqual(r.status, 0, "\(metric) np=\(np): \(r.stderr)")
                let o = try json(r)
                guard let ref = reference else { reference = o; continue }
                assertSameDecisions(o, ref, losses: ["original", "pruned"], "\(metric) np=\(np)")
                XCTAssertEqual((o["compensation"] as? [String: Any])?["layer"] as? Int, (ref["compensation"] as? [String: Any])?["layer"] as? Int)
            }
        }
    }

    /// --matmul bf16 / wgrad-bf16 change the arithmetic of the products, not how it is split: every rank runs
    /// whole products of its own layers, so decisions, scores and losses are the same for 1 rank, 2 stages and
    /// 2 replicas (up to the replicas' sum order, 1e-5 as above); wgrad-bf16 leaves the losses of f32 as they are.
    func testBF16MatmulDecisionsAreTheSameForAnyNumberOfRanks() throws {
        try requireBF16()
        let model = try makeModel(layers: 8, seed: 23)
        var f32Loss: Double? = nil
        for matmul in ["f32", "wgrad-bf16", "bf16"] {
            var reference: [String: Any]? = nil
            for (np, stages) in [(1, 1), (2, 2), (2, 1)] {
                let out = temporaryDirectory("mm") + "/p"
                let r = try prune(model, out, ["--remove", "2", "--metric", "gradmap", "--stages", "\(stages)",
                                               "--compensate-at", "shift", "--micro-batch", "2", "--matmul", matmul], np: np)
                XCTAssertEqual(r.status, 0, "\(matmul) np=\(np): \(r.stderr)")
                let o = try json(r)
                let loss = ((o["calib_loss"] as! [String: Any])["original"] as! NSNumber).doubleValue
                if matmul == "f32" && np == 1 { f32Loss = loss }
                if matmul == "wgrad-bf16" && np == 1 { XCTAssertEqual(loss, f32Loss!, "wgrad-bf16 keeps the f32 forward") }
                if matmul == "bf16" && np == 1 {
                    XCTAssertNotEqual(loss, f32Loss!, "bf16 rounds the forward's inputs")
                    XCTAssertEqual(loss, f32Loss!, accuracy: 1e-2, "bf16 within BF16 rounding of f32")
                }
                guard let ref = reference else { reference = o; continue }
                assertSameDecisions(o, ref, losses: ["pruned"], "\(matmul) np=\(np)")
            }
        }
    }

    /// --weights bf16 widens each layer from the BF16 bits when it runs. On a BF16 checkpoint that widening is
    /// exact, so every number and the written files must be identical to --weights f32, for 1 and 2 ranks,
    /// through the taylor metric (reads W), the compensation fold (writes down_proj) and the writer.
    func testBF16WeightsAreExactOnABF16Checkpoint() throws {
        let model = try makeModel(layers: 8, dtype: .bf16, seed: 5)
        var runs: [(String, [String: Any], Data)] = []
        for (weights, np) in [("f32", 1), ("bf16", 1), ("bf16", 2)] {
            let out = temporaryDirectory("bf16w") + "/p"
            let r = try prune(model, out, ["--remove", "3", "--metric", "taylor", "--compensate-at", "shift", "--weights", weights,
                                           "--stages", "\(np)"], np: np)
            XCTAssertEqual(r.status, 0, "\(weights) np=\(np): \(r.stderr)")
            // The written tensors, in name order, as bytes (shards differ with the number of stages).
            let ckpt = try Checkpoint(path: out)
            let folder = ckpt.source as! SafeTensorsFolder
            var bytes = Data()
            for name in folder.tensorNames.sorted() {
                let (file, info) = try folder.info(name)
                XCTAssertEqual(info.dtype, .bf16, name)
                bytes.append(Data(bytes: file.data(info), count: info.end - info.begin))
            }
            runs.append(("\(weights) np=\(np)", try json(r), bytes))
        }
        let (_, ref, refBytes) = runs[0]
        for (label, o, bytes) in runs.dropFirst() {
            XCTAssertEqual(o["removed"] as! [Int], ref["removed"] as! [Int], label)
            XCTAssertEqual((o["compensation"] as? [String: Any])?["layer"] as? Int, (ref["compensation"] as? [String: Any])?["layer"] as? Int, label)
            let l = o["calib_loss"] as! [String: Any], rl = ref["calib_loss"] as! [String: Any]
            for key in ["original", "pruned", "compensated"] {
                // Same arithmetic on the same values: equal up to the cross-rank sum order (np=2), 1e-9 relative.
                let x = (l[key] as? NSNumber)?.doubleValue, y = (rl[key] as? NSNumber)?.doubleValue
                XCTAssertEqual(x == nil, y == nil, "\(label) \(key)")
                if let x, let y { XCTAssertEqual(x, y, accuracy: 1e-9 * y, "\(label) \(key)") }
            }
            XCTAssertEqual(bytes, refBytes, "\(label): written tensors differ")
        }
    }

    /// On an F32 checkpoint, --weights bf16 rounds the layer weights once: the loss moves by about BF16's
    /// relative precision (2^-8), and pruning still works end to end.
    func testBF16WeightsOnAnF32Checkpoint() throws {
        let model = try makeModel(layers: 6, seed: 8)
        var losses: [Double] = []
        for weights in ["f32", "bf16"] {
            let out = temporaryDirectory("bf16f") + "/p"
            let r = try prune(model, out, ["--remove", "2", "--weights", weights, "--compensate-at", "shift"])
            XCTAssertEqual(r.status, 0, r.stderr)
            losses.append(((try json(r)["calib_loss"] as! [String: Any])["original"] as! NSNumber).doubleValue)
        }
        XCTAssertNotEqual(losses[0], losses[1], "the bf16 run must use rounded weights")
        XCTAssertEqual(losses[1], losses[0], accuracy: 2e-2 * losses[0], "BF16 rounding of the weights (8-bit mantissa)")
    }

    func testGivenLayersAndScore() throws {
        let model = try makeModel(layers: 6)
        let out = temporaryDirectory("given") + "/p"
        let r = try prune(model, out, ["--layers", "3,1", "--no-compensate"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try json(r)["removed"] as! [Int], [3, 1])
        XCTAssertEqual(try Checkpoint(path: out).config.layers, 4)
        let s = try runProcess(binaryPath, ["score", "--model", model, "--tokens", model + "/tokens.bin", "--seq-len", "16",
                                            "--calib-windows", "4", "--metric", "taylor"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let scores = try json(s)["scores"] as! [Any]
        XCTAssertEqual(scores.count, 6)
        XCTAssertTrue(scores.allSatisfy { ($0 as? NSNumber).map { $0.doubleValue > 0 } ?? false })
    }

    /// `score --without L` scores the decision a prune job takes after removing L: the same scores to the bit
    /// and, as `choice`, the layer it removed (sleb: a forward per candidate; fisher: a backward pass). How
    /// scripts/results.py asks which layer SLEB would take from another metric's model state.
    func testScoreWithoutIsTheNextDecisionOfAPruneJob() throws {
        let model = try makeModel(layers: 6)
        for metric in ["sleb", "fisher"] {
            let r = try prune(model, temporaryDirectory("without") + "/p", ["--metric", metric, "--remove", "2", "--no-compensate"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let report = try json(r)
            let removed = try XCTUnwrap(report["removed"] as? [Int]), scoresPerDecision = try XCTUnwrap(report["scores"] as? [[Any]])
            XCTAssertEqual(removed.count, 2)
            let first = removed[0], second = removed[1]
            let s = try runProcess(binaryPath, ["score", "--model", model, "--tokens", model + "/tokens.bin", "--seq-len", "16",
                                                "--calib-windows", "8", "--metric", metric, "--without", "\(first)"])
            XCTAssertEqual(s.status, 0, s.stderr)
            let scored = try json(s)
            XCTAssertEqual(scored["choice"] as? Int, second, metric)
            XCTAssertEqual(scored["without"] as? [Int], [first])
            let expected = scoresPerDecision[1].map { ($0 as? NSNumber)?.doubleValue }
            let got = (scored["scores"] as! [Any]).map { ($0 as? NSNumber)?.doubleValue }
            XCTAssertEqual(got, expected, "\(metric): the scores of the job's second decision")
            XCTAssertNil(got[first] ?? nil, "the removed layer has no score")
        }
        let bad = try runProcess(binaryPath, ["score", "--model", model, "--tokens", model + "/tokens.bin", "--seq-len", "16",
                                              "--without", "1,2,3,4"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("--without: no layer is left"), bad.stderr)
    }

    /// --skip-pruned-eval leaves the pruned model's held-out evaluation out and keeps the compensated one.
    func testSkipPrunedEval() throws {
        let model = try makeModel(layers: 6)
        let r = try prune(model, temporaryDirectory("skip") + "/p", ["--layers", "2,3", "--compensate-at", "4", "--eval-tokens",
                                                                     model + "/tokens.bin", "--skip-original-eval", "--skip-pruned-eval"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let eval = try XCTUnwrap(try json(r)["eval"] as? [String: Any])
        XCTAssertNil(eval["ppl_pruned"])
        XCTAssertNil(eval["ppl_original"])
        XCTAssertNotNil(eval["ppl_compensated"])
    }

    func testBadInputIsRefusedAndNothingIsWritten() throws {
        let model = try makeModel(layers: 6)
        let parent = temporaryDirectory("badprune")
        let out = parent + "/p"
        let file = parent + "/a-file"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        let short = parent + "/short.bin"
        XCTAssertTrue(FileManager.default.createFile(atPath: short, contents: Data(count: 4 * 10)))
        let cases: [([String], String)] = [
            (["--remove", "4"], "--remove 4"),
            (["--layers", "2,9"], "--layers: layer 9"),
            (["--layers", "2,3,2"], "--layers: layer 2 is given twice"),
            (["--layers", "2,3", "--compensate-at", "3"], "--compensate-at 3"),
            (["--remove", "1", "--compensate-at", "bogus"], "--compensate-at"),
            (["--remove", "1", "--calib-windows", "100"], "fewer than the 100"),
        ]
        for (extra, mention) in cases {
            let r = try prune(model, out, extra)
            XCTAssertEqual(r.status, 2, "\(extra): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(mention), "\(extra): '\(r.stderr)' lacks \(mention)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        let f = try prune(model, file, ["--remove", "1"])
        XCTAssertEqual(f.status, 2)
        XCTAssertTrue(f.stderr.contains("is a file"), f.stderr)
        let s = try runProcess(binaryPath, ["prune", "--model", model, "--tokens", short, "--seq-len", "16", "--remove", "1", "--out", out])
        XCTAssertEqual(s.status, 2)
        XCTAssertTrue(s.stderr.contains("shorter than one window"), s.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent).sorted(), ["a-file", "short.bin"], "nothing written")
        // An existing --out is kept unless --force.
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        let e = try prune(model, out, ["--remove", "1"])
        XCTAssertEqual(e.status, 2)
        XCTAssertTrue(e.stderr.contains("already exists"), e.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out), [])
    }
}
