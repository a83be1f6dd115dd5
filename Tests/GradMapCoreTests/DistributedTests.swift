// Real multi-process jobs: `mpirun -np N gradmap-dist ...` for N = 1..4 and every S × R split, against the
// single-process engine in this process; and a failing rank that must bring the whole job down.
//
// Tolerance 1e-5 relative: the splits change only the order of float32 sums (gemm rows per micro-batch,
// replica partial sums added by MPI), which moves results by ~1e-7 relative; a lost micro-batch, a wrong
// window share or a missing stage changes them by far more than 1e-3.
import Foundation
import XCTest

@testable import GradMapData
@testable import GradMapDistributed
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapSupport

final class DistributedTests: XCTestCase {
    static let mpirun: String = {
        for dir in ["/usr/bin", "/usr/local/bin"] where FileManager.default.isExecutableFile(atPath: dir + "/mpirun") {
            return dir + "/mpirun"
        }
        return "/usr/bin/mpirun"
    }()

    /// 8 windows of 16 random tokens, so that every replica count up to 4 gets a share.
    static let tokens: String = {
        let path = temporaryDirectory("mpi") + "/tokens.bin"
        var rng = SeededRandom(state: 42)
        var d = Data()
        for _ in 0..<(8 * 16) {
            let id = UInt32((rng.next() + 1) / 2 * 95.99)
            withUnsafeBytes(of: id.littleEndian) { d.append(contentsOf: $0) }
        }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: d))
        return path
    }()

    /// `wrapper` goes before the binary (a shell that sets a limit on some ranks, then execs the rest).
    func mpi(_ np: Int, _ args: [String], env: [String: String] = [:], wrapper: [String] = [], timeout: Double = 120) throws -> ProcessResult {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: Self.mpirun), "mpirun not installed (apt package openmpi-bin)")
        let flags = ["--allow-run-as-root", "--oversubscribe", "--mca", "mpi_yield_when_idle", "1", "--bind-to", "none", "-np", "\(np)"]
        return try runProcess(
            Self.mpirun, flags + wrapper + [binaryPath] + args, env: env.merging(["GRADMAP_BLAS_THREADS": "1"]) { a, _ in a },
            timeout: timeout)
    }

    /// The job's own lines on stderr (prefixed `gradmap-dist:` or `rank N:`), without mpirun's banners.
    func ownLines(_ r: ProcessResult) -> [String] {
        r.stderr.split(separator: "\n").map(String.init).filter { $0.hasPrefix("gradmap-dist: ") || $0.range(of: #"^rank \d+: "#, options: .regularExpression) != nil }
    }

    func lastJSON(_ r: ProcessResult) throws -> [String: Any] {
        let line = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw GradMapError.runtime("no JSON in: \(r.stdout) \(r.stderr)")
        }
        return o
    }

    /// Loss and per-layer gradient norms of the single-process engine.
    func reference(_ name: String) throws -> (Double, [LayerGradNorms]) {
        let ckpt = try Checkpoint(directory: Fixtures.dir(name))
        let data = try TokenWindows(path: Self.tokens, seqLen: 16, vocabSize: ckpt.config.vocabSize)
        let stage: Stage<Float> = try LocalEngine.load(ckpt, seqLen: 16, maxBatch: 1, training: true)
        let r = LocalEngine.run(stage, data: data, windows: Array(0..<data.windowCount), microBatch: 1, backward: true)
        return (r.loss, GradientStats.layerL2(stage.params))
    }

    func testEverySplitMatchesSingleProcess() throws {
        for name in ["llama_sharded_f16", "qwen2_tied"] {
            let (refLoss, refNorms) = try reference(name)
            let d = Fixtures.dir(name)
            // FP32 products, as the in-process reference runs them (the machine's default may be bf16).
            let base = ["--model", d, "--tokens", Self.tokens, "--seq-len", "16", "--matmul", "f32", "--json"]
            for (np, stages) in [(1, 1), (2, 1), (2, 2), (3, 1), (3, 3), (4, 1), (4, 2)] {
                for microBatch in [1, 3] {
                    let label = "\(name) np=\(np) S=\(stages) B=\(microBatch)"
                    let r = try mpi(np, ["grad-stats"] + base + ["--stages", "\(stages)", "--micro-batch", "\(microBatch)"])
                    XCTAssertEqual(r.status, 0, "\(label): \(r.stderr)")
                    // Output is printed once, by rank 0.
                    XCTAssertEqual(r.stdout.split(separator: "\n").count, 1, "\(label): \(r.stdout)")
                    let o = try lastJSON(r)
                    let loss = (o["loss"] as! NSNumber).doubleValue
                    XCTAssertEqual(loss, refLoss, accuracy: 1e-5 * refLoss, label)
                    let layers = o["layers"] as! [[String: Any]]
                    XCTAssertEqual(layers.count, refNorms.count, label)
                    for (layer, ref) in zip(layers, refNorms) {
                        let norms = layer["grad_l2"] as! [String: NSNumber]
                        for (tensor, value) in ref.norms {
                            XCTAssertEqual(norms[tensor]!.doubleValue, value, accuracy: 1e-5 * value, "\(label) layer \(ref.index) \(tensor)")
                        }
                    }
                    let e = try mpi(np, ["eval"] + base + ["--stages", "\(stages)", "--micro-batch", "\(microBatch)"])
                    XCTAssertEqual(e.status, 0, "\(label) eval: \(e.stderr)")
                    XCTAssertEqual((try lastJSON(e)["loss"] as! NSNumber).doubleValue, refLoss, accuracy: 1e-5 * refLoss, "\(label) eval")
                }
            }
        }
    }

    func testLongBuffersAreSentInPieces() throws {
        // With at most 100 elements per MPI call every activation, gradient and reduction is split.
        let name = "qwen2_tied"
        let (refLoss, refNorms) = try reference(name)
        let r = try mpi(4, ["grad-stats", "--model", Fixtures.dir(name), "--tokens", Self.tokens, "--seq-len", "16", "--matmul", "f32", "--json", "--stages", "2"],
                        env: ["GRADMAP_MPI_MAX_CHUNK": "100"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try lastJSON(r)
        XCTAssertEqual((o["loss"] as! NSNumber).doubleValue, refLoss, accuracy: 1e-5 * refLoss)
        let first = (o["layers"] as! [[String: Any]])[0]["grad_l2"] as! [String: NSNumber]
        XCTAssertEqual(first["self_attn.q_proj.weight"]!.doubleValue, refNorms[0].norms[1].1, accuracy: 1e-5 * refNorms[0].norms[1].1)
    }

    func testAFailingRankEndsTheJobWithItsMessage() throws {
        // Corrupt the last shard: with 2 stages only rank 1 (layer 2, final norm, lm_head) reads it.
        let dir = temporaryDirectory("corrupt")
        for f in try FileManager.default.contentsOfDirectory(atPath: Fixtures.dir("llama_sharded_f16")) {
            try FileManager.default.copyItem(atPath: Fixtures.dir("llama_sharded_f16") + "/" + f, toPath: dir + "/" + f)
        }
        let shard = dir + "/model-00004-of-00004.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: shard))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: shard))
        let placement = try Placement(config: try ModelConfig.load(path: dir + "/config.json"), ranks: 2, stages: nil)
        XCTAssertEqual(placement.layerRanges, [0..<2, 2..<3], "the test assumes rank 0 never reads the last shard")
        // A hang would end in runProcess's timeout, which throws: the test fails rather than waits.
        let r = try mpi(2, ["grad-stats", "--model", dir, "--tokens", Self.tokens, "--seq-len", "16", "--json"], timeout: 120)
        XCTAssertEqual(r.status, 2, "bad input on one rank is the job's exit code: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("rank 1: \(shard)"), r.stderr)
        XCTAssertEqual(r.stdout, "")
        // The whole job ended: no rank of it outlives mpirun.
        let left = try runProcess("/usr/bin/pgrep", ["-f", "gradmap-dist grad-stats --model \(dir)"])
        XCTAssertEqual(left.stdout, "", "ranks left running")
    }

    /// Bad input that every rank finds after MPI_Init (flag values checked against the model and the files,
    /// the layout, an existing --out) is one line for the job, exit code 2, and nothing written; so is a flag
    /// error found before MPI_Init.
    func testBadInputFoundOnEveryRankIsOneLineForTheJob() throws {
        let model = Fixtures.dir("llama_gqa")
        let parent = temporaryDirectory("badjob")
        let out = parent + "/p"
        let existing = parent + "/existing"
        try FileManager.default.createDirectory(atPath: existing, withIntermediateDirectories: false)
        // llama_gqa has 2 layers, so --layers 1 is the one valid removal.
        let prune = ["prune", "--model", model, "--tokens", Self.tokens, "--seq-len", "16"]
        let eval = ["eval", "--model", model, "--tokens", Self.tokens]
        let cases: [(Int, [String], String)] = [
            (2, prune + ["--remove", "5", "--out", out], "--remove 5: must be less than"),
            (3, prune + ["--layers", "1", "--compensate-at", "1", "--out", out], "--compensate-at 1: layer 1 is one of the layers to remove"),
            (2, prune + ["--layers", "1", "--calib-windows", "20", "--out", out], "--calib-windows 20: \(Self.tokens): 8 windows"),
            (2, prune + ["--layers", "1", "--calib-windows", "2", "--out", existing], "--out \(existing): already exists"),
            (2, eval + ["--seq-len", "200"], "--seq-len 200: \(Self.tokens): 128 tokens is shorter than one window"),
            (2, eval + ["--seq-len", "16", "--stages", "3"], "--stages 3: more stages than the model's 2 layers"),
            (3, eval + ["--seq-len", "16", "--stages", "2"], "--stages 2: the number of ranks 3 must be a multiple"),
            (2, eval + ["--seq-len", "16", "--bogus"], "Unknown option '--bogus'"),
        ]
        for (np, args, mention) in cases {
            let r = try mpi(np, args)
            let label = "np \(np) \(args.dropFirst(5).joined(separator: " "))"
            XCTAssertEqual(r.status, 2, "\(label): \(r.stderr)")
            let lines = ownLines(r)
            XCTAssertEqual(lines.count, 1, "\(label): one line for the job: \(r.stderr)")
            XCTAssertTrue(lines.first?.hasPrefix("gradmap-dist: ") ?? false, "\(label): the job's line, not a rank's: \(r.stderr)")
            XCTAssertTrue(lines.first?.contains(mention) ?? false, "\(label): '\(r.stderr)' lacks \(mention)")
            XCTAssertEqual(r.stdout, "", label)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), ["existing"], "nothing written")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: existing), [], "an existing --out is left as it was")
    }

    /// A write that fails after MPI_Init (here: past a file-size limit, as a full disk would) ends the whole job
    /// with exit code 1 and one line naming the file, whichever rank it happens on and whether Foundation
    /// (a copied tokenizer.json, on rank 0) or the shard writer (rank 1's shard) fails; nothing is left behind.
    func testAFailedWriteEndsTheJobWithExitOneNamingTheFile() throws {
        let model = temporaryDirectory("iofail")
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(atPath: Fixtures.dir("llama_gqa") + "/" + f, toPath: model + "/" + f)
        }
        // Larger than the limit below, which itself leaves room for Open MPI's shared-memory segments.
        XCTAssertTrue(FileManager.default.createFile(atPath: model + "/tokenizer.json", contents: Data(count: 20 << 20)))
        let parent = temporaryDirectory("iofail-out")
        let out = parent + "/p"
        let args = ["prune", "--model", model, "--tokens", Self.tokens, "--seq-len", "16", "--calib-windows", "2", "--layers", "1",
                    "--no-compensate", "--stages", "2", "--out", out]
        let partial = parent + "/.p.partial"
        let cases: [(String, String)] = [
            // ulimit -f counts KiB in bash.
            ("ulimit -f 16384", "rank 0: \(partial)/tokenizer.json: cannot write (File too large)"),
            ("[ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && ulimit -f 8", "rank 1: \(partial)/model-00002-of-00002.safetensors: cannot write (File too large)"),
        ]
        for (limit, expected) in cases {
            // A hang would end in runProcess's timeout, which throws: the test fails rather than waits.
            let r = try mpi(2, args, wrapper: ["/bin/bash", "-c", limit + "; exec \"$0\" \"$@\""])
            XCTAssertEqual(r.status, 1, "\(limit): \(r.stderr)")
            XCTAssertEqual(ownLines(r), [expected], "\(limit): one line, no 'stopped by SIGTERM' from the others: \(r.stderr)")
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: parent), [], "\(limit): nothing left behind")
            let left = try runProcess("/usr/bin/pgrep", ["-f", "gradmap-dist prune --model \(model)"])
            XCTAssertEqual(left.stdout, "", "\(limit): ranks left running")
        }
    }

    /// inspect's plan counts exactly what the ranks allocate: the placement, the float32 parameter bytes and
    /// the weights held (f32, or BF16 layers plus one widened layer) of every rank of a real 2-stage job.
    func testInspectPlanMatchesWhatRanksHold() throws {
        let model = Fixtures.dir("llama_gqa")
        for weights in ["f32", "bf16"] {
            let r = try mpi(2, ["grad-stats", "--model", model, "--tokens", Self.tokens, "--seq-len", "16", "--stages", "2",
                                "--weights", weights, "--json", "--rank-stats"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let ranks = try lastJSON(r)["ranks"] as! [[String: Any]]
            let i = try runProcess(binaryPath, ["inspect", "--model", model, "--ranks", "2", "--seq-len", "16", "--weights", weights, "--json"])
            XCTAssertEqual(i.status, 0, i.stderr)
            let plan = (try JSONSerialization.jsonObject(with: Data(i.stdout.utf8)) as! [String: Any])["plan"] as! [[String: Any]]
            XCTAssertEqual(ranks.count, 2)
            for (have, planned) in zip(ranks, plan) {
                XCTAssertEqual(have["layers"] as! [Int], planned["layers"] as! [Int], weights)
                XCTAssertEqual(have["parameter_bytes"] as! Int, planned["parameter_bytes_f32"] as! Int, weights)
                XCTAssertEqual(have["weight_bytes"] as! Int, planned["weight_bytes"] as! Int, weights)
            }
            // bf16 holds 2 bytes per layer parameter plus one widened layer (more than f32 for a 1-layer stage).
            if weights == "bf16" { XCTAssertNotEqual(ranks[0]["weight_bytes"] as! Int, ranks[0]["parameter_bytes"] as! Int) }
        }
    }

    func testPlacementBalancesComputeOrParameterBytes() throws {
        let c = try ModelConfig.load(path: Fixtures.dir("llama_sharded_f16") + "/config.json")
        XCTAssertEqual(try Placement(config: c, ranks: 3, stages: nil).layerRanges, [0..<1, 1..<2, 2..<3])
        XCTAssertEqual(try Placement(config: c, ranks: 4, stages: 1).replicas, 4)
        // A model whose embedding is as large as several layers.
        var big = c
        big.layers = 12
        big.vocabSize = 2000
        for balance in Balance.allCases {
            let p = try Placement(config: big, ranks: 4, stages: 4, balance: balance, seqLen: 16)
            let sizes = p.layerRanges.map(\.count)
            XCTAssertEqual(sizes.reduce(0, +), 12)
            switch balance {
            case .memory: XCTAssertLessThan(sizes[0], sizes[1], "the embedding's bytes count")
            case .compute: XCTAssertGreaterThanOrEqual(sizes[0], sizes[1], "a lookup costs no FLOPs: \(sizes)")
            }
            XCTAssertLessThan(sizes[3], sizes[2], "\(balance): the lm_head costs bytes and FLOPs")
            func cost(_ r: Range<Int>, _ i: Int) -> Double {
                Placement.cost(big, StagePart(layers: r, embedding: i == 0, head: i == 3), by: balance, seqLen: 16)
            }
            // No contiguous split does better than the largest stage found (checked by brute force).
            var bestMax = Double.infinity
            for a in 1..<10 { for b in (a + 1)..<11 { for d in (b + 1)..<12 {
                bestMax = min(bestMax, [0..<a, a..<b, b..<d, d..<12].enumerated().map { cost($1, $0) }.max()!)
            } } }
            XCTAssertEqual(p.layerRanges.enumerated().map { cost($1, $0) }.max(), bestMax, "\(balance)")
        }
        XCTAssertThrowsError(try Placement(config: c, ranks: 4, stages: 3))
        XCTAssertThrowsError(try Placement(config: c, ranks: 8, stages: 8))
    }
}
