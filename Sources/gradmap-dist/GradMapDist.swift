// The gradmap-dist command line: parses arguments and calls GradMapCore. Errors are one line on stderr for the
// whole job; bad input (a flag, file, tensor or value) exits with code 2, anything else (a failed write, the
// machine) with code 1. What every rank checks alike runs under Communicator.agree, so one rank reports it.
import ArgumentParser
import Foundation
import GradMapDistributed
import GradMapEngine
import GradMapJob
import GradMapKernels
import GradMapRuntime
import GradMapSupport

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
        // A write past the file-size limit then fails with EFBIG, reported with the file's name, instead of
        // SIGXFSZ killing the rank without a word.
        signal(SIGXFSZ, SIG_IGN)
        var command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exitParsing(error)
        }
        do {
            try command.run()
            Communicator.finalize()
        } catch let error where exitCode(for: error) == .success {
            exitParsing(error)  // --help, which parses as a command whose run() throws the help text
        } catch let failure as JobFailure {
            // Every rank has it (Communicator.agree): one rank prints, all exit with its code.
            if let error = failure.error {
                let prefix = failure.everyRank ? "gradmap-dist" : "rank \(failure.reporter)"
                FileHandle.standardError.write(Data("\(prefix): \(line(error))\n".utf8))
            }
            Communicator.endJob(code: failure.code)
        } catch {
            // One rank's own failure (a shard it reads, a file it writes, the machine): it ends the job.
            fail(line(error), code: GradMapError.exitCode(error))
        }
    }

    /// A parse error, before MPI_Init, so no rank can tell the others: each exits 2 and only the first prints
    /// (the arguments, hence the error, are the same on every rank). Help goes to stdout, exit 0.
    static func exitParsing(_ error: Error) -> Never {
        if exitCode(for: error) == .success {
            print(fullMessage(for: error))
            Foundation.exit(0)
        }
        let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        if (ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_RANK"] ?? "0") == "0" {
            FileHandle.standardError.write(Data("gradmap-dist: \(message)\n".utf8))
        }
        Foundation.exit(2)
    }

    /// One line on stderr, then the whole job ends: under MPI this rank aborts every other rank, so none is
    /// left waiting on a message that will never come.
    static func fail(_ message: String, code: Int32) -> Never {
        let prefix = Communicator.mpiStarted ? "rank \(Communicator.worldRank)" : "gradmap-dist"
        FileHandle.standardError.write(Data("\(prefix): \(message)\n".utf8))
        Communicator.abort(code: code)
    }

    /// The flag each configuration field comes from: the one place where the core's settings meet the CLI's
    /// spelling of them (exhaustive, so a new field cannot go unnamed).
    static func flag(_ field: ConfigField) -> String {
        switch field {
        case .model: return "--model"
        case .weights: return "--weights"
        case .balance: return "--balance"
        case .matmul: return "--matmul"
        case .activations: return "--activations"
        case .stages: return "--stages"
        case .ranks: return "--ranks"
        case .calibration: return "--tokens/--text"
        case .heldOut: return "--eval-tokens/--eval-text"
        case .seqLen: return "--seq-len"
        case .calibWindows: return "--calib-windows"
        case .evalWindows: return "--eval-windows"
        case .validationWindows: return "--validation-windows"
        case .maxWindows: return "--max-windows"
        case .microBatch: return "--micro-batch"
        case .remove: return "--remove"
        case .layers: return "--layers"
        case .without: return "--without"
        case .metric: return "--metric"
        case .protectFirst: return "--protect-first"
        case .protectLast: return "--protect-last"
        case .verifyTop: return "--verify-top"
        case .seed: return "--seed"
        case .gradientNorm: return "--gradient-norm"
        case .compensateAt: return "--compensate-at"
        case .ridge: return "--ridge"
        case .out: return "--out"
        case .ggufDown: return "--gguf-down"
        case .resume: return "--resume"
        case .text: return "--text"
        case .addBOS: return "--add-bos"
        case .calibTokens: return "--calib-tokens"
        case .gflops: return "--gflops"
        }
    }

    /// The line for an error, configuration fields named by their flags.
    static func line(_ error: Error) -> String {
        guard case .badValue(let field, let value, let detail)? = error as? GradMapError else { return GradMapError.line(error) }
        return GradMapError.line(flag(field), value, detail)
    }
}

/// The model, how its weights are held and split, and the products' arithmetic: the engine settings of every
/// command that computes. Unset flags leave the core's defaults (EngineConfig).
struct EngineOptions: ParsableArguments {
    @Option(name: .long, help: "Hugging Face checkpoint folder (config.json + safetensors) or a .gguf file.")
    var model: String

    @Option(name: .long, help: "f32: widen every weight at load (default); bf16: keep layer weights as BF16 (memory-mapped from a BF16 checkpoint) and widen one layer at a time when it runs.")
    var weights: WeightFormat?

    @Option(name: .long, help: "Split the layers over pipeline stages evening out compute per token (compute, default) or parameter bytes (memory).")
    var balance: Balance?

    @Option(name: .long, help: "f32: every product in FP32; bf16: the linear and lm_head products (oneDNN) take BF16-rounded inputs and accumulate in FP32 (attention, norms, loss stay FP32); wgrad-bf16: only the weight-gradient products dL/dW do, the forward and activation gradients stay FP32. bf16 and wgrad-bf16 need a CPU with BF16 products (AVX512-BF16 or AMX). Default: bf16 on such a CPU, else f32.")
    var matmul: MatmulPrecision?

    @Option(name: .long, help: "Tokens per window (T).")
    var seqLen: Int

    @Option(name: .long, help: "Pipeline stages S (ranks = S × replicas); default min(ranks, layers).")
    var stages: Int?

    func engine(activations: ActivationPolicy?) -> EngineConfig {
        var e = EngineConfig(model: model, seqLen: seqLen)
        if let weights { e.weights = weights }
        if let balance { e.balance = balance }
        if let matmul { e.matmul = matmul }
        if let activations { e.activations = activations }
        e.stages = stages
        return e
    }
}

/// What the backward keeps, for the commands that run one or plan for it (not eval, which runs none).
struct ActivationOptions: ParsableArguments {
    @Option(name: .long, help: "store: keep each layer's internals for the backward (default); recompute: keep only layer inputs and rerun each layer's forward in the backward (about 1/3 more compute, far less memory).")
    var activations: ActivationPolicy?
}

/// Token windows and output, as `eval` and `grad-stats` read and print them.
struct WindowOptions: ParsableArguments {
    @OptionGroup var engine: EngineOptions

    @Option(name: .long, help: "Raw little-endian uint32 token ids.")
    var tokens: String

    @Option(name: .long, help: "Use only the first N windows.")
    var maxWindows: Int?

    @Option(name: .long, help: "Windows per micro-batch (default 1).")
    var microBatch: Int?

    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false

    @Flag(name: .long, help: "Add per-rank timings, bytes sent and peak memory (\"ranks\") to the JSON.")
    var rankStats = false

    func config(activations: ActivationPolicy? = nil) -> WindowJobConfig {
        var c = WindowJobConfig(engine: engine.engine(activations: activations), tokens: tokens)
        c.maxWindows = maxWindows
        if let microBatch { c.microBatch = microBatch }
        c.rankStats = rankStats
        return c
    }
}

extension WeightFormat: ExpressibleByArgument {}
extension Balance: ExpressibleByArgument {}
extension ActivationPolicy: ExpressibleByArgument {}
extension MatmulPrecision: ExpressibleByArgument {}
