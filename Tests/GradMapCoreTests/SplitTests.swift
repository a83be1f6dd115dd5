// What a job promises across rank splits (README "What is the same for any split"), checked on the release
// binary: 1 rank, 2 stages, 2 replicas and 2 stages × 2 replicas take the same decisions, compute the same
// losses and scores to the bit, and write the same tensor bytes. BLAS threads are pinned to 1 per rank for
// every run (GRADMAP_BLAS_THREADS=1): no BLAS promises identical bits across thread counts, so the promise
// is made for a fixed thread count, and thread counts are checked separately against the stated bound.
//
// Bound (weight-gradient metrics across replicas, gradmap and taylor): each replica sums its windows' float32
// weight gradients, and MPI adds the replicas' sums, so one element's sum of W terms is grouped differently;
// float32 sums of W terms in two groupings differ by at most about W·2⁻²⁴ relative to Σ|terms|, and a
// layer's score averages millions of such elements, so scores move by ~1e-7 relative. 1e-5 is the bound.
//
// The release binary matters here: the optimiser ends a value's life at its last use, which is how the
// candidate sweep's send buffers were freed under a pending send (issue 11); the debug build keeps every
// value to the end of its scope and never showed it.
import Foundation
import XCTest

@testable import GradMapFormats
@testable import GradMapRuntime
@testable import GradMapSupport

/// The release build of gradmap-dist (launch/test builds it before the tests; launch/asan points
/// GRADMAP_RELEASE_BIN at its sanitized release build).
let releaseBinaryPath: String = {
    if let path = ProcessInfo.processInfo.environment["GRADMAP_RELEASE_BIN"] { return path }
    return URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/release/gradmap-dist").path
}()

struct MissingPrerequisite: Error, CustomStringConvertible {
    let description: String
}

func requireReleaseBinary() throws {
    guard FileManager.default.isExecutableFile(atPath: releaseBinaryPath) else {
        throw MissingPrerequisite(description: "\(releaseBinaryPath) is missing: run launch/test (it builds it)")
    }
}

/// (ranks, stages): one process, two stages, two replicas, two stages × two replicas.
let everySplit = [(1, 1), (2, 2), (2, 1), (4, 2)]

/// Split jobs and their comparison, shared by the fixture and the real-model tests.
extension XCTestCase {
    /// `prune --json` on `np` ranks of the release binary; returns the JSON and the written folder.
    func prune(_ np: Int, stages: Int, _ args: [String], env: [String: String] = [:], timeout: Double = 600) throws -> ([String: Any], String) {
        let out = temporaryDirectory("split") + "/p"
        let job = [releaseBinaryPath, "prune"] + args + ["--stages", "\(stages)", "--out", out, "--json"]
        let flags = ["--allow-run-as-root", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none", "-np", "\(np)"]
        let r = try runProcess(DistributedTests.mpirun, flags + job, env: env.merging(["GRADMAP_BLAS_THREADS": "1"]) { a, _ in a }, timeout: timeout)
        guard r.status == 0 else { throw GradMapError.runtime("np=\(np) S=\(stages) \(args): exit \(r.status): \(r.stderr)") }
        let line = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw GradMapError.runtime("no JSON: \(r.stdout)")
        }
        return (o, out)
    }

    /// Scores of every decision, NaN for removed or unscored layers.
    func scores(_ o: [String: Any]) -> [[Double]] {
        (o["scores"] as! [[Any]]).map { $0.map { ($0 as? NSNumber)?.doubleValue ?? .nan } }
    }

    func losses(_ o: [String: Any]) -> [Double?] {
        let l = o["calib_loss"] as! [String: Any]
        return ["original", "pruned", "compensated"].map { (l[$0] as? NSNumber)?.doubleValue }
    }

    /// Asserts two runs agree: removed layers and losses exactly; scores exactly, or within `scoreBound`
    /// relative when given.
    func assertSame(_ o: [String: Any], _ ref: [String: Any], scoreBound: Double?, _ label: String) {
        XCTAssertEqual(o["removed"] as! [Int], ref["removed"] as! [Int], "\(label): removed")
        XCTAssertEqual(losses(o), losses(ref), "\(label): calibration losses")
        XCTAssertEqual((o["compensation"] as? [String: Any])?["layer"] as? Int,
                       (ref["compensation"] as? [String: Any])?["layer"] as? Int, "\(label): compensated layer")
        let (a, b) = (scores(o), scores(ref))
        XCTAssertEqual(a.count, b.count, label)
        for (x, y) in zip(a.joined(), b.joined()) where !(x.isNaN && y.isNaN) {
            if let bound = scoreBound {
                XCTAssertEqual(x, y, accuracy: bound * max(abs(y), 1e-30), "\(label): scores")
            } else {
                XCTAssertEqual(x.bitPattern, y.bitPattern, "\(label): score \(x) vs \(y)")
            }
        }
    }

    /// Every tensor of two written checkpoints, by name: byte-identical, or (for the names in `bounded`)
    /// within `bound` of the tensor's largest magnitude. Shards differ with the number of stages, so
    /// tensors are compared, not files.
    func assertSameTensors(_ a: String, _ b: String, bounded: Set<String> = [], bound: Double = 0, _ label: String) throws {
        let (x, y) = (try SafeTensorsFolder(directory: a), try SafeTensorsFolder(directory: b))
        XCTAssertEqual(x.tensorNames.sorted(), y.tensorNames.sorted(), label)
        for name in x.tensorNames {
            let (fa, ia) = try x.info(name), (fb, ib) = try y.info(name)
            XCTAssertEqual(ia.dtype, ib.dtype, "\(label) \(name)")
            XCTAssertEqual(ia.shape, ib.shape, "\(label) \(name)")
            let bytes = ia.end - ia.begin
            guard bytes == ib.end - ib.begin else { XCTFail("\(label) \(name): sizes differ"); continue }
            if memcmp(fa.data(ia), fb.data(ib), bytes) == 0 { continue }
            guard bounded.contains(name) else { XCTFail("\(label) \(name): bytes differ"); continue }
            var u = [Float](repeating: 0, count: ia.count), v = u
            u.withUnsafeMutableBufferPointer { widen(fa.data(ia), dtype: ia.dtype, count: ia.count, into: $0.baseAddress!) }
            v.withUnsafeMutableBufferPointer { widen(fb.data(ib), dtype: ib.dtype, count: ib.count, into: $0.baseAddress!) }
            let scale = v.reduce(0) { max($0, abs(Double($1))) }
            XCTAssertLessThanOrEqual(maxAbsDiff(u, v), bound * scale, "\(label) \(name)")
        }
    }

    /// The first 20 kB of the calibration articles, tokenised for the real SmolLM2 GGUF (4219 tokens).
    func calibrationTokens() throws -> String {
        for path in [RealModelTests.gguf, RealModelTests.calibText] where !FileManager.default.fileExists(atPath: path) {
            throw MissingPrerequisite(description: "\(path) is missing: run launch/fetch-assets (launch/test does)")
        }
        let dir = temporaryDirectory("realsplit")
        let text = try String(contentsOfFile: RealModelTests.calibText, encoding: .utf8)
        try String(text.prefix(20_000)).write(toFile: dir + "/calib.txt", atomically: true, encoding: .utf8)
        let tok = try runProcess(releaseBinaryPath, ["tokenize", "--model", RealModelTests.gguf, "--text", dir + "/calib.txt", "--out", dir + "/calib.bin"])
        guard tok.status == 0 else { throw GradMapError.runtime(tok.stderr) }
        return dir + "/calib.bin"
    }

    /// Asserts a compensated prune (`o`, written to `out`) agrees with the reference run (`ref`, `refOut`):
    /// the same decisions and compensated layer, losses within `lossBound` relative (the original and pruned
    /// ones exactly when `exactLosses`), scores within 1e-5 relative, every tensor byte-identical except the
    /// compensated down_proj, within `tensorBound` of its largest magnitude (the bounds' reasons:
    /// RealModelSplitTests.testCompensationAcrossSplitsAndThreadCounts).
    func assertSameCompensated(_ o: [String: Any], _ out: String, _ ref: [String: Any], _ refOut: String, lossBound: Double,
                               tensorBound: Double, exactLosses: Bool, _ label: String) throws {
        let layer = (ref["compensation"] as! [String: Any])["layer"] as! Int
        let renumbered = layer - (ref["removed"] as! [Int]).filter { $0 < layer }.count
        let compensated: Set<String> = ["model.layers.\(renumbered).mlp.down_proj.weight"]
        XCTAssertEqual(o["removed"] as! [Int], ref["removed"] as! [Int], label)
        XCTAssertEqual((o["compensation"] as! [String: Any])["layer"] as? Int, layer, label)
        // original, pruned, compensated: the first two are forward passes of the same layers.
        for (i, (x, y)) in zip(losses(o), losses(ref)).enumerated() {
            guard let x, let y else { XCTFail("\(label): a loss is missing"); continue }
            if exactLosses && i < 2 { XCTAssertEqual(x, y, "\(label): loss \(i)") }
            XCTAssertEqual(x, y, accuracy: lossBound * y, "\(label): loss \(i)")
        }
        for (x, y) in zip(scores(o).joined(), scores(ref).joined()) where !(x.isNaN && y.isNaN) {
            XCTAssertEqual(x, y, accuracy: 1e-5 * max(abs(y), 1e-30), "\(label): scores")
        }
        try assertSameTensors(out, refOut, bounded: compensated, bound: tensorBound, label)
    }
}

final class SplitTests: XCTestCase {
    /// A pending request holds the storage its transfer reads, whatever the caller does, until it completes.
    func testPendingSendKeepsItsStorage() throws {
        weak var held: Buffer<Float>?
        let request: Communicator.Request
        do {
            let buffer = Buffer<Float>(count: 1 << 16)
            request = Communicator.Request("send to rank 1", storage: buffer)
            held = buffer
        }
        XCTAssertNotNil(held, "released while the send is pending")
        try request.wait()
        XCTAssertNil(held, "kept after the send completed")
    }

    /// The candidate sweep (sleb, --verify-top) on a model with 4 layers per stage and removable layers on
    /// both stages, messages far above Open MPI's 4 KiB eager limit (so they go by single-copy reads of the
    /// sender's memory), and glibc told to return every freed block of 4 KiB or more to the kernel: a send
    /// buffer freed while its send is pending faults at once instead of being read as stale memory.
    func testSweepOnADeepModelUnderEverySplit() throws {
        try requireReleaseBinary()
        let model = try makeModel(layers: 8, seed: 31, hidden: 64)
        let env = ["MALLOC_MMAP_THRESHOLD_": "4096"]
        for metric in [["--metric", "sleb"], ["--metric", "fisher", "--verify-top", "3"], ["--metric", "bi", "--verify-top", "3"]] {
            let args = ["--model", model, "--tokens", model + "/tokens.bin", "--seq-len", "16", "--calib-windows", "8",
                        "--micro-batch", "2", "--remove", "3", "--no-compensate"] + metric
            var reference: ([String: Any], String)? = nil
            for (np, stages) in everySplit {
                let run = try prune(np, stages: stages, args, env: env)
                guard let ref = reference else { reference = run; continue }
                assertSame(run.0, ref.0, scoreBound: nil, "\(metric) np=\(np) S=\(stages)")
                try assertSameTensors(run.1, ref.1, "\(metric) np=\(np) S=\(stages)")
            }
            // sleb's first decision sweeps every removable layer: candidates on both stages.
            if metric[1] == "sleb" {
                let scored = scores(reference!.0)[0].enumerated().filter { !$0.element.isNaN }.map(\.offset)
                XCTAssertEqual(scored, Array(1..<7), "sleb's candidates")
            }
        }
    }
}

/// The real SmolLM2 (GGUF) under every split, every metric: 4 calibration windows of 64 tokens, K = 2.
final class RealModelSplitTests: XCTestCase {
    func testEveryMetricUnderEverySplit() throws {
        try requireReleaseBinary()
        let tokens = try calibrationTokens()
        let settings: [[String]] = [
            ["--metric", "gradmap"], ["--metric", "taylor"], ["--metric", "gate"], ["--metric", "fisher"], ["--metric", "bi"],
            ["--metric", "bi", "--iterative"], ["--metric", "angular"], ["--metric", "sleb"], ["--metric", "random"],
            ["--metric", "fisher", "--verify-top", "3"], ["--metric", "bi", "--verify-top", "3"],
        ]
        for setting in settings {
            let args = ["--model", RealModelTests.gguf, "--tokens", tokens, "--seq-len", "64", "--calib-windows", "4",
                        "--remove", "2", "--no-compensate"] + setting
            var reference: ([String: Any], String)? = nil
            for (np, stages) in everySplit {
                let run = try prune(np, stages: stages, args)
                defer { if reference?.1 != run.1 { try? FileManager.default.removeItem(atPath: run.1) } }
                guard let ref = reference else { reference = run; continue }
                let weightGradients = setting[1] == "gradmap" || setting[1] == "taylor"
                let replicas = np / stages
                assertSame(run.0, ref.0, scoreBound: weightGradients && replicas > 1 ? 1e-5 : nil, "\(setting) np=\(np) S=\(stages)")
                try assertSameTensors(run.1, ref.1, "\(setting) np=\(np) S=\(stages)")
            }
            XCTAssertEqual((reference!.0["removed"] as! [Int]).count, 2, "\(setting)")
            try? FileManager.default.removeItem(atPath: reference!.1)
        }
    }

    /// The compensation and the BLAS thread count, where the promise is a bound (README):
    /// - 2 stages × 2 replicas against 1 rank: the H×H Float64 sums of the compensation are grouped by replica,
    ///   so they differ by ~1e-15 relative; the ridge-regularised solve amplifies that by its condition number
    ///   (≤ (‖B‖ + λ)/λ ≈ H/α ≈ 6e4 here), ~1e-10 in P, and the fold rounds D' = P·D to float32: an element
    ///   differs by at most one rounding step (2⁻²⁴ relative) where the exact value lies near a boundary.
    ///   Bound: 1e-6 of the tensor's largest magnitude; the compensated loss within 1e-9 relative. Every other
    ///   tensor and loss is identical.
    /// - 2 BLAS threads against 1 (one rank): a BLAS may order each product's sums differently per thread
    ///   split (float32, K ≤ 1536 terms: ≤ ~1e-6 relative per element, averaging down in the mean loss). Bound:
    ///   losses and scores within 1e-5 relative, the same decisions and compensated layer, the compensated
    ///   down_proj within 1e-3 of its largest magnitude (the solve's amplification, as above), every copied
    ///   tensor identical.
    func testCompensationAcrossSplitsAndThreadCounts() throws {
        try requireReleaseBinary()
        let tokens = try calibrationTokens()
        let args = ["--model", RealModelTests.gguf, "--tokens", tokens, "--seq-len", "64", "--calib-windows", "4",
                    "--remove", "2", "--metric", "fisher", "--compensate-at", "shift"]
        let (ref, refOut) = try prune(1, stages: 1, args)
        func compare(_ o: [String: Any], _ out: String, lossBound: Double, tensorBound: Double, exactLosses: Bool, _ label: String) throws {
            try assertSameCompensated(o, out, ref, refOut, lossBound: lossBound, tensorBound: tensorBound, exactLosses: exactLosses, label)
        }
        let (split, splitOut) = try prune(4, stages: 2, args)
        try compare(split, splitOut, lossBound: 1e-9, tensorBound: 1e-6, exactLosses: true, "2 stages x 2 replicas")
        let (threads, threadsOut) = try prune(1, stages: 1, args, env: ["GRADMAP_BLAS_THREADS": "2"])
        try compare(threads, threadsOut, lossBound: 1e-5, tensorBound: 1e-3, exactLosses: false, "2 BLAS threads")
        for dir in [refOut, splitOut, threadsOut] { try? FileManager.default.removeItem(atPath: dir) }
    }
}
