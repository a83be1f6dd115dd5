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
        subcommands: [EvalCommand.self, GradStatsCommand.self, InspectCommand.self, BenchGemmCommand.self])

    static func main() {
        BLASRuntime.ensureCoreType()
        BLASRuntime.configureThreads()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as GradMapError {
            fail(error.description, code: error.exitCode)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            fail(message, code: 2)
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("gradmap-dist: \(message)\n".utf8))
        Foundation.exit(code)
    }
}

/// Where the model comes from.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Hugging Face checkpoint folder (config.json + safetensors).")
    var model: String

    func checkpoint() throws -> Checkpoint { try Checkpoint(directory: model) }
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

    func validate() throws {
        guard seqLen >= 2 else { throw ValidationError("--seq-len: must be at least 2, got \(seqLen)") }
        guard microBatch >= 1 else { throw ValidationError("--micro-batch: must be at least 1, got \(microBatch)") }
        if let m = maxWindows, m < 1 { throw ValidationError("--max-windows: must be at least 1, got \(m)") }
    }

    func load(vocabSize: Int) throws -> (TokenWindows, [Int]) {
        let data = try TokenWindows(path: tokens, seqLen: seqLen, vocabSize: vocabSize)
        return (data, try data.firstWindows(maxWindows))
    }
}

func elapsed(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
