// The gradmap-dist command line: parses arguments and calls GradMapCore. Errors are one line on stderr;
// bad input (a flag, file, tensor or value) exits with code 2.
import ArgumentParser
import Foundation
import GradMapCore

@main
struct GradMapDist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gradmap-dist",
        abstract: "Prune whole decoder layers from LLaMA-family models (GradMAP and baselines).",
        subcommands: [
            PruneCommand.self, ScoreCommand.self, EvalCommand.self, GradStatsCommand.self, InspectCommand.self,
            TokenizeCommand.self, ConvertCommand.self, BenchGemmCommand.self,
        ])

    static func main() {
        BLASRuntime.ensureLibraryEnvironment()
        BLASRuntime.configureThreads()
        Interrupt.install()  // SIGTERM/SIGINT: remove a partial --out folder, one line saying why, then die of it
        do {
            var command = try parseAsRoot()
            try command.run()
            Communicator.finalize()
        } catch let error as GradMapError {
            fail(error.description, code: error.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            // Argument errors are the same on every rank: only the first prints.
            let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            if (ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0") == "0" {
                FileHandle.standardError.write(Data("gradmap-dist: \(message)\n".utf8))
            }
            Foundation.exit(2)
        }
    }

    /// One line on stderr, then the whole job ends: under MPI this rank aborts every other rank, so none is
    /// left waiting on a message that will never come.
    static func fail(_ message: String, code: Int32) -> Never {
        let prefix = Communicator.mpiStarted ? "rank \(Communicator.worldRank)" : "gradmap-dist"
        FileHandle.standardError.write(Data("\(prefix): \(message)\n".utf8))
        Communicator.abort(code: code)
    }
}

/// Where the model comes from.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Hugging Face checkpoint folder (config.json + safetensors) or a .gguf file.")
    var model: String

    @Option(name: .long, help: "f32: widen every weight at load; bf16: keep layer weights as BF16 (memory-mapped from a BF16 checkpoint) and widen one layer at a time when it runs.")
    var weights: WeightFormat = .f32

    @Option(name: .long, help: "Split the layers over pipeline stages evening out compute per token (compute) or parameter bytes (memory).")
    var balance: Balance = .compute

    @Option(name: .long, help: "store: keep each layer's internals for the backward; recompute: keep only layer inputs and rerun each layer's forward in the backward (about 1/3 more compute, far less memory).")
    var activations: ActivationPolicy = .store

    @Option(name: .customLong("matmul"), help: "f32: every product in FP32; bf16: the linear and lm_head products (oneDNN) take BF16-rounded inputs and accumulate in FP32 (attention, norms, loss stay FP32); wgrad-bf16: only the weight-gradient products dL/dW do, the forward and activation gradients stay FP32. bf16 and wgrad-bf16 need a CPU with BF16 products (AVX512-BF16 or AMX). Default: bf16 on such a CPU, else f32.")
    var matmulFlag: MatmulPrecision?

    /// The products' arithmetic: as given, else the machine's default.
    var matmul: MatmulPrecision { matmulFlag ?? .machineDefault }

    func validate() throws { try checkMatmulAvailable(matmul) }

    func checkpoint() throws -> Checkpoint { try Checkpoint(path: model) }
}

/// Token windows, as `eval` and `grad-stats` read them.
struct WindowOptions: ParsableArguments {
    @Option(name: .long, help: "Raw little-endian uint32 token ids.")
    var tokens: String

    @Option(name: .long, help: "Tokens per window (T).")
    var seqLen: Int

    @Option(name: .long, help: "Use only the first N windows.")
    var maxWindows: Int?

    @Option(name: .long, help: "Windows per micro-batch.")
    var microBatch: Int = 1

    @Option(name: .long, help: "Pipeline stages S (ranks = S × replicas); default min(ranks, layers).")
    var stages: Int?

    func validate() throws {
        guard seqLen >= 2 else { throw ValidationError("--seq-len: must be at least 2, got \(seqLen)") }
        guard microBatch >= 1 else { throw ValidationError("--micro-batch: must be at least 1, got \(microBatch)") }
        if let m = maxWindows, m < 1 { throw ValidationError("--max-windows: must be at least 1, got \(m)") }
        if let s = stages, s < 1 { throw ValidationError("--stages: must be at least 1, got \(s)") }
    }

    func load(vocabSize: Int) throws -> (TokenWindows, [Int]) {
        let data = try TokenWindows(path: tokens, seqLen: seqLen, vocabSize: vocabSize)
        return (data, try data.firstWindows(maxWindows))
    }

    /// This rank's pipeline over the checkpoint, and the windows.
    func pipeline(
        _ world: Communicator, _ ckpt: Checkpoint, training: Bool, model: ModelOptions
    ) throws -> (Pipeline<Float>, TokenWindows, [Int]) {
        let (data, list) = try load(vocabSize: ckpt.config.vocabSize)
        let p: Pipeline<Float> = try Pipeline.load(
            world: world, checkpoint: ckpt, stages: stages, seqLen: seqLen,
            microBatch: min(microBatch, list.count), training: training, policy: model.activations,
            weights: model.weights, balance: model.balance, matmul: model.matmul)
        return (p, data, list)
    }
}

extension WeightFormat: ExpressibleByArgument {}
extension Balance: ExpressibleByArgument {}
extension ActivationPolicy: ExpressibleByArgument {}
extension MatmulPrecision: ExpressibleByArgument {}

/// `--matmul` other than f32 needs BF16 products in oneDNN: one line naming the flag otherwise (exit 2).
func checkMatmulAvailable(_ matmul: MatmulPrecision) throws {
    if matmul != .f32 && !MatmulPrecision.bf16Available {
        throw ValidationError("--matmul \(matmul.rawValue): this CPU has no BF16 matrix products (oneDNN finds neither AVX512-BF16 nor AMX); use --matmul f32")
    }
}

func elapsed(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
