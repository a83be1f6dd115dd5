// The built binary, run as users and external checks run it: JSON outputs, exit codes, one-line errors.
import Foundation
import XCTest

@testable import GradMapFormats
@testable import GradMapKernels
@testable import GradMapRuntime

final class CLITests: XCTestCase {
    func json(_ s: String) throws -> [String: Any] {
        let line = s.split(separator: "\n").last.map(String.init) ?? ""
        return try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
    }

    func testEvalJSONMatchesReference() throws {
        for name in ["llama_gqa", "llama_sharded_f16"] {
            let ref = try Fixtures.reference(name)
            let d = Fixtures.dir(name)
            // FP32 products: the reference is float64 PyTorch (the machine's default may be bf16).
            let r = try runProcess(binaryPath, ["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "\(ref.seqLen)", "--matmul", "f32", "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let o = try json(r.stdout)
            XCTAssertEqual(Array(o.keys).sorted(), ["loss", "loss_sd", "ppl", "ppl_interval", "seconds", "tokens", "windows"])
            XCTAssertEqual(o["windows"] as? Int, ref.windows)
            XCTAssertEqual(o["tokens"] as? Int, ref.windows * ref.seqLen)
            let loss = (o["loss"] as! NSNumber).doubleValue
            XCTAssertEqual(loss, ref.loss, accuracy: 1e-4)
            XCTAssertEqual((o["ppl"] as! NSNumber).doubleValue, exp(loss), accuracy: 1e-9 * exp(loss))
        }
    }

    func testMatmulBF16IsRefusedWithoutBF16Products() throws {
        // A CPU without BF16 matrix products (GRADMAP_NO_BF16=1 stands in for one): one line naming the flag,
        // exit 2, and the f32 default still runs.
        let d = Fixtures.dir("llama_gqa")
        let args = ["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "16", "--json"]
        for mode in ["bf16", "wgrad-bf16"] {
            let r = try runProcess(binaryPath, args + ["--matmul", mode], env: ["GRADMAP_NO_BF16": "1"])
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains("--matmul \(mode)") && r.stderr.contains("BF16"), r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stdout.isEmpty)
        }
        XCTAssertEqual(try runProcess(binaryPath, args, env: ["GRADMAP_NO_BF16": "1"]).status, 0)
    }

    func testEvalMaxWindowsAndTail() throws {
        // 2 windows of 16 = 32 tokens; at T = 10 that is 3 windows and a dropped tail of 2.
        let d = Fixtures.dir("llama_gqa")
        let r = try runProcess(binaryPath, ["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "10", "--json"])
        XCTAssertEqual(try json(r.stdout)["windows"] as? Int, 3)
        let r2 = try runProcess(binaryPath, ["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "10", "--max-windows", "2", "--json"])
        XCTAssertEqual(try json(r2.stdout)["windows"] as? Int, 2)
        XCTAssertEqual(try json(r2.stdout)["tokens"] as? Int, 20)
    }

    /// Without --matmul the products run in bf16 where this CPU has BF16 products, else in f32: the default
    /// run's loss equals, to the bit, the run that names that mode, and differs from the other mode's.
    func testMatmulDefaultIsBF16WhereAvailable() throws {
        let d = Fixtures.dir("llama_gqa")
        let ref = try Fixtures.reference("llama_gqa")
        func loss(_ extra: [String], env: [String: String] = [:]) throws -> Double {
            let r = try runProcess(binaryPath, ["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "\(ref.seqLen)", "--json"] + extra, env: env)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try json(r.stdout)["loss"] as! Double
        }
        let expected = MatmulPrecision.bf16Available ? "bf16" : "f32"
        let defaultLoss = try loss([])
        XCTAssertEqual(defaultLoss, try loss(["--matmul", expected]))
        if MatmulPrecision.bf16Available {
            XCTAssertNotEqual(defaultLoss, try loss(["--matmul", "f32"]), "bf16 and f32 products gave the same loss")
        }
        // A CPU without BF16 products (GRADMAP_NO_BF16=1 stands in for one) runs f32 by default, not refused.
        XCTAssertEqual(try loss([], env: ["GRADMAP_NO_BF16": "1"]), try loss(["--matmul", "f32"]))
    }

    func testGradStatsJSONMatchesReferenceNorms() throws {
        let name = "qwen2_tied"
        let ref = try Fixtures.reference(name)
        let d = Fixtures.dir(name)
        let r = try runProcess(binaryPath, ["grad-stats", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "\(ref.seqLen)", "--matmul", "f32", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try json(r.stdout)
        XCTAssertEqual((o["loss"] as! NSNumber).doubleValue, ref.loss, accuracy: 1e-4)
        XCTAssertNotNil(o["seconds"] as? NSNumber)
        let layers = o["layers"] as! [[String: Any]]
        XCTAssertEqual(layers.map { $0["index"] as! Int }, [0, 1, 2])
        for layer in layers {
            let index = layer["index"] as! Int
            let norms = layer["grad_l2"] as! [String: NSNumber]
            // One entry per parameter tensor of the layer, including Qwen2's q/k/v biases.
            XCTAssertEqual(norms.count, 12)
            for (local, value) in norms {
                let g = ref.tensor("grad.model.layers.\(index).\(local)")
                let expected = g.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                XCTAssertEqual(value.doubleValue, expected, accuracy: 1e-3 * expected, "\(index).\(local)")
            }
        }
    }

    func testInspect() throws {
        let r = try runProcess(binaryPath, ["inspect", "--model", Fixtures.dir("mistral_headdim"), "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try json(r.stdout.replacingOccurrences(of: "\n", with: " "))
        XCTAssertEqual(o["model_type"] as? String, "mistral")
        XCTAssertEqual(o["head_dim"] as? Int, 16)
        // Counted from the file: every tensor's element count.
        let ckpt = try Checkpoint(directory: Fixtures.dir("mistral_headdim"))
        let total = try ckpt.source.tensorNames.reduce(0) { $0 + (try ckpt.source.tensorInfo($1).shape.reduce(1, *)) }
        XCTAssertEqual(o["parameters"] as? Int, total)
        let text = try runProcess(binaryPath, ["inspect", "--model", Fixtures.dir("mistral_headdim")])
        XCTAssertTrue(text.stdout.contains("per layer"))
    }

    func testBadInputExitsWithCodeTwoAndOneLine() throws {
        let d = Fixtures.dir("llama_gqa")
        let cases: [([String], String)] = [
            (["eval", "--model", "/no/such/model", "--tokens", d + "/tokens.bin", "--seq-len", "8"], "/no/such/model"),
            (["eval", "--model", d, "--tokens", d + "/config.json", "--seq-len", "8"], "config.json"),
            (["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "100"], "--seq-len 100"),
            (["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "1"], "--seq-len"),
            (["eval", "--model", d, "--tokens", d + "/tokens.bin"], "--seq-len"),
            (["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "8", "--bogus"], "--bogus"),
        ]
        for (args, mention) in cases {
            let r = try runProcess(binaryPath, args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(mention), "\(args): '\(r.stderr)' lacks \(mention)")
            XCTAssertEqual(r.stdout, "")
        }
    }

    /// The flags `--help` lists for a subcommand: the option column only (lines indented by two spaces; the
    /// descriptions, which mention other flags, are indented further), without --help itself.
    func helpFlags(_ command: String) throws -> Set<String> {
        let r = try runProcess(binaryPath, [command, "--help"])
        XCTAssertEqual(r.status, 0, "\(command) --help: \(r.stderr)")
        var flags = Set<String>()
        for line in r.stdout.split(separator: "\n") where line.hasPrefix("  -") {
            let names = line.dropFirst(2).components(separatedBy: "  ")[0]
            for m in names.matches(of: /--[a-z][a-z0-9-]*/) { flags.insert(String(m.output)) }
        }
        flags.remove("--help")
        return flags
    }

    /// README's command synopsis lists, per subcommand, exactly the flags its --help shows.
    func testREADMESynopsisListsExactlyTheFlagsOfHelp() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        // The synopsis: the code block under "## Commands" that starts with a gradmap-dist line (the first
        // block shows the install step and mpirun), a line per command, continued by indented lines.
        let section = readme.components(separatedBy: "## Commands\n")[1]
        let blocks = section.components(separatedBy: "```").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        let block = try XCTUnwrap(blocks.first { $0.hasPrefix("\ngradmap-dist ") }, "README: no synopsis block under ## Commands")
        var synopsis: [String: Set<String>] = [:]
        var current: String? = nil
        for line in block.split(separator: "\n") {
            if line.hasPrefix("gradmap-dist ") {
                current = String(line.split(separator: " ")[1])
            }
            guard let current else { continue }
            for m in line.matches(of: /--[a-z][a-z0-9-]*/) { synopsis[current, default: []].insert(String(m.output)) }
        }
        let commands = ["prune", "score", "eval", "grad-stats", "inspect", "tokenize", "convert", "bench-gemm"]
        XCTAssertEqual(Set(synopsis.keys), Set(commands), "README's synopsis covers every subcommand")
        for command in commands {
            let help = try helpFlags(command)
            let listed = synopsis[command] ?? []
            XCTAssertEqual(listed.subtracting(help).sorted(), [], "\(command): in README, not in --help")
            XCTAssertEqual(help.subtracting(listed).sorted(), [], "\(command): in --help, not in README")
        }
    }

    /// A subcommand takes only the flags it uses: score none of prune's decision, validation and held-out
    /// flags, eval no --activations (no backward), inspect no --matmul (its plan does not depend on it).
    func testEachCommandRefusesFlagsItDoesNotUse() throws {
        let d = Fixtures.dir("llama_gqa")
        let score = ["score", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "8"]
        let cases: [([String], String)] = [
            (score + ["--verify-top", "2"], "--verify-top"),
            (score + ["--iterative"], "--iterative"),
            (score + ["--validation-windows", "2"], "--validation-windows"),
            (score + ["--eval-tokens", d + "/tokens.bin"], "--eval-tokens"),
            (score + ["--eval-windows", "2"], "--eval-windows"),
            (score + ["--skip-original-eval"], "--skip-original-eval"),
            (["eval", "--model", d, "--tokens", d + "/tokens.bin", "--seq-len", "8", "--activations", "recompute"], "--activations"),
            (["inspect", "--model", d, "--matmul", "f32"], "--matmul"),
        ]
        for (args, flag) in cases {
            let r = try runProcess(binaryPath, args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr, "gradmap-dist: Unknown option '\(flag)'\n", "\(args)")
        }
        // What score does use still runs.
        let ok = try runProcess(binaryPath, score + ["--calib-windows", "2", "--metric", "angular", "--remove", "1", "--protect-first", "0", "--protect-last", "0"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
    }

    /// The OpenBLAS core type: chosen from the CPU's flags when OPENBLAS_CORETYPE is unset (the binary
    /// re-executes itself with it), and left exactly as the environment sets it otherwise (the AMD machines
    /// set Haswell on purpose).
    func testBLASCoreTypeIsChosenWhenUnsetAndKeptWhenSet() throws {
        let avx512 = "flags\t\t: fpu sse avx2 fma avx512f avx512bw avx512vl avx512dq avx512cd\n"
        XCTAssertEqual(BLASRuntime.detectCoreType(cpuinfo: avx512), "SkylakeX")
        XCTAssertEqual(BLASRuntime.detectCoreType(cpuinfo: "flags\t: fpu sse avx avx2 fma\n"), "Haswell")
        XCTAssertNil(BLASRuntime.detectCoreType(cpuinfo: "flags\t: fpu sse sse2\n"))
        func coreOfChild(_ coreType: String?) throws -> String {
            var env = ProcessInfo.processInfo.environment.filter { $0.key != "GRADMAP_REEXEC" && $0.key != "OPENBLAS_CORETYPE" }
            if let coreType { env["OPENBLAS_CORETYPE"] = coreType }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binaryPath)
            p.arguments = ["bench-gemm", "--shapes", "8x8x8", "--seconds", "0.01", "--json"]
            p.environment = env
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            p.waitUntilExit()
            return try json(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))["blas_core"] as! String
        }
        let info = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        if let expected = BLASRuntime.detectCoreType(cpuinfo: info) {
            XCTAssertEqual(try coreOfChild(nil).lowercased(), expected.lowercased(), "unset: the CPU's core type")
        }
        if info.contains(" avx2") {
            XCTAssertEqual(try coreOfChild("Haswell").lowercased(), "haswell", "set: kept as given")
        }
    }
}
