// The gradmap-dist command line: parses arguments and calls GradMapCore. Errors are one line on stderr for the
// whole job; bad input (a flag, file, tensor or value) exits with code 2, anything else (a failed write, the
// machine) with code 1. What every rank checks alike runs under Communicator.agree, so one rank reports it.
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

    /// The engine's parameter names (GradMapError.badValue) and the flag each comes from: the commands pass
    /// these flags' values straight in. Calls where one parameter serves several flags say which (`passing`).
    static let flagOfParameter = [
        "seqLen": "--seq-len", "remove": "--remove", "layers": "--layers", "protectFirst": "--protect-first",
        "protectLast": "--protect-last", "verifyTop": "--verify-top", "microBatch": "--micro-batch",
        "compensateAt": "--compensate-at", "ridge": "--ridge", "stages": "--stages", "out": "--out", "ggufDown": "--gguf-down",
    ]

    /// The line for an error, engine parameters named by their flags.
    static func line(_ error: Error) -> String {
        guard case .badValue(let parameter, let value, let detail)? = error as? GradMapError else { return GradMapError.line(error) }
        return GradMapError.badValue(parameter: flagOfParameter[parameter] ?? parameter, value: value, detail: detail).description
    }
}

/// Runs an engine call whose `parameter` came from `flag` where the table cannot tell (a window count is
/// --calib-windows in one call, --eval-windows in another).
func passing<T>(_ parameter: String, as flag: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch GradMapError.badValue(let p, let value, let detail) where p == parameter {
        throw GradMapError.badValue(parameter: flag, value: value, detail: detail)
    }
}

/// Where the model comes from and how its weights are held.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Hugging Face checkpoint folder (config.json + safetensors) or a .gguf file.")
    var model: String

    @Option(name: .long, help: "f32: widen every weight at load; bf16: keep layer weights as BF16 (memory-mapped from a BF16 checkpoint) and widen one layer at a time when it runs.")
    var weights: WeightFormat = .f32

    @Option(name: .long, help: "Split the layers over pipeline stages evening out compute per token (compute) or parameter bytes (memory).")
    var balance: Balance = .compute

    func checkpoint() throws -> Checkpoint { try Checkpoint(path: model) }
}

/// The precision of the products, for the commands that compute (not inspect).
struct MatmulOptions: ParsableArguments {
    @Option(name: .customLong("matmul"), help: "f32: every product in FP32; bf16: the linear and lm_head products (oneDNN) take BF16-rounded inputs and accumulate in FP32 (attention, norms, loss stay FP32); wgrad-bf16: only the weight-gradient products dL/dW do, the forward and activation gradients stay FP32. bf16 and wgrad-bf16 need a CPU with BF16 products (AVX512-BF16 or AMX). Default: bf16 on such a CPU, else f32.")
    var matmulFlag: MatmulPrecision?

    /// The products' arithmetic: as given, else the machine's default.
    var matmul: MatmulPrecision { matmulFlag ?? .machineDefault }

    func validate() throws { try checkMatmulAvailable(matmul) }
}

/// What the backward keeps, for the commands that run one or plan for it (not eval, which runs none).
struct ActivationOptions: ParsableArguments {
    @Option(name: .long, help: "store: keep each layer's internals for the backward; recompute: keep only layer inputs and rerun each layer's forward in the backward (about 1/3 more compute, far less memory).")
    var activations: ActivationPolicy = .store
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

    /// What every rank checks alike before its own work (run under Communicator.agree): the checkpoint,
    /// the windows and the job's layout.
    func setUp(_ world: Communicator, model: ModelOptions) throws -> (Checkpoint, TokenWindows, [Int]) {
        let ckpt = try model.checkpoint()
        let data = try TokenWindows(path: tokens, seqLen: seqLen, vocabSize: ckpt.config.vocabSize)
        let list = try passing("max", as: "--max-windows") { try data.firstWindows(maxWindows) }
        try checkLayout(ckpt, ranks: world.size, stages: stages, balance: model.balance, seqLen: seqLen)
        return (ckpt, data, list)
    }

    /// This rank's pipeline over the checkpoint.
    func pipeline(
        _ world: Communicator, _ ckpt: Checkpoint, windows: Int, training: Bool, model: ModelOptions,
        matmul: MatmulPrecision, activations: ActivationPolicy = .store
    ) throws -> Pipeline<Float> {
        try Pipeline.load(
            world: world, checkpoint: ckpt, stages: stages, seqLen: seqLen,
            microBatch: min(microBatch, windows), training: training, policy: activations,
            weights: model.weights, balance: model.balance, matmul: matmul)
    }
}

/// The checks of Pipeline.load that are the same on every rank (the placement, no tensor the model would not
/// use), made first so that every rank finds them together; what Pipeline.load still finds is its own.
func checkLayout(_ ckpt: Checkpoint, ranks: Int, stages: Int?, balance: Balance, seqLen: Int) throws {
    _ = try Placement(config: ckpt.config, ranks: ranks, stages: stages, balance: balance, seqLen: seqLen)
    try ckpt.checkNoUnexpectedTensors()
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
