// `gradmap-dist prune` and `gradmap-dist score`: flags mapped onto a PruneConfig, the job run, its result
// printed. Every default is the core's (PruneConfig.defaults, EngineConfig).
import ArgumentParser
import Foundation
import GradMapJob
import GradMapPruning
import GradMapRuntime
import GradMapSupport
import GradMapWriter

extension Metric: ExpressibleByArgument {}
extension GradientNorm: ExpressibleByArgument {}
extension GGUFDownStorage: ExpressibleByArgument {}

extension CompensationTarget: ExpressibleByArgument {
    /// auto | shift | LAYER (an original layer index).
    public init?(argument: String) {
        switch argument {
        case "auto": self = .auto
        case "shift": self = .shift
        default:
            guard let j = Int(argument) else { return nil }
            self = .layer(j)
        }
    }

    public var defaultValueDescription: String {
        switch self {
        case .auto: return "auto"
        case .shift: return "shift"
        case .layer(let j): return "\(j)"
        }
    }
}

private let defaults = PruneConfig.defaults

/// A comma-separated list of original layer indices.
private func layerList(_ list: String, field: ConfigField) throws -> [Int] {
    try list.split(separator: ",").map { item in
        guard let v = Int(item.trimmingCharacters(in: .whitespaces)) else {
            throw GradMapError.badValue(field: field, value: nil, detail: "'\(item)' is not a layer index")
        }
        return v
    }
}

/// The settings shared by prune and score: model, calibration data, metric.
struct ScoringInputs: ParsableArguments {
    @OptionGroup var engine: EngineOptions
    @OptionGroup var activations: ActivationOptions

    @Option(name: .long, help: "Calibration token ids (raw little-endian uint32).")
    var tokens: String?
    @Option(name: .long, help: "Calibration text (UTF-8), tokenised with the model's tokenizer.")
    var text: String?
    @Option(name: .long, help: "Calibration windows, spread evenly over the token stream.")
    var calibWindows = defaults.calibWindows
    @Option(name: .long, help: "gradmap | fisher | gate | taylor | bi | angular | sleb | random")
    var metric = defaults.decisions.metric
    @Option(name: .long, help: "Never remove the first N layers.")
    var protectFirst = defaults.decisions.protectFirst
    @Option(name: .long, help: "Never remove the last N layers.")
    var protectLast = defaults.decisions.protectLast
    @Option(name: .long, help: "Seed for the random metric.")
    var seed = defaults.decisions.seed
    @Option(name: .long, help: "gradmap: l1 (mean |gradient|) or l2 (gradient norm per element).")
    var gradientNorm = defaults.decisions.gradientNorm
    @Option(name: .long, help: "Windows per micro-batch.")
    var microBatch = defaults.decisions.microBatch

    func validate() throws {
        guard (tokens == nil) != (text == nil) else { throw ValidationError("give exactly one of --tokens FILE or --text FILE") }
    }

    func config() -> PruneConfig {
        var c = PruneConfig(engine: engine.engine(activations: activations.activations), calibration: tokens.map { .tokens($0) } ?? .text(text!))
        c.calibWindows = calibWindows
        c.decisions.metric = metric
        c.decisions.protectFirst = protectFirst
        c.decisions.protectLast = protectLast
        c.decisions.seed = seed
        c.decisions.gradientNorm = gradientNorm
        c.decisions.microBatch = microBatch
        return c
    }
}

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Remove K decoder layers, optionally compensate, write a Hugging Face checkpoint or a GGUF.")

    @OptionGroup var scoring: ScoringInputs
    @Option(name: .long, help: "Layers to remove (K).")
    var remove: Int?
    @Option(name: .long, help: "Remove exactly these layers (comma-separated original indices), without scoring.")
    var layers: String?
    @Option(name: .long, help: "Verify the M lowest-scored candidates by calibration loss.")
    var verifyTop = defaults.decisions.verifyTop
    @Flag(name: .long, help: "bi: rescore after each removal instead of one-shot.")
    var iterative = defaults.decisions.iterative
    @Flag(inversion: .prefixedNo, help: "Fit and fold the projection compensation.")
    var compensate = defaults.decisions.compensateAt != nil
    @Option(name: .long, help: "auto | shift | LAYER (original index).")
    var compensateAt = defaults.decisions.compensateAt ?? .auto
    @Option(name: .long, help: "Ridge factor α: λ = α·tr(Σzzᵀ)/H.")
    var ridge = defaults.decisions.ridge
    @Option(name: .long, help: "Validation windows for --compensate-at auto (default max(1, calib-windows/8)).")
    var validationWindows: Int?
    @Option(name: .long, help: "Held-out token ids: report perplexity before pruning, after, and after compensation.")
    var evalTokens: String?
    @Option(name: .long, help: "Held-out text for the same (tokenised with the model's tokenizer).")
    var evalText: String?
    @Option(name: .long, help: "Evaluate on N windows spread evenly over the held-out stream (default: all).")
    var evalWindows: Int?
    @Flag(name: .long, help: "Do not evaluate the unpruned model (when it is known already).")
    var skipOriginalEval = !defaults.evaluateOriginal
    @Flag(name: .long, help: "Do not evaluate the pruned model before its compensation (when another run of the same layers has).")
    var skipPrunedEval = !defaults.evaluatePruned
    @Option(name: .long, help: "Output folder (a Hugging Face checkpoint), or FILE.gguf from a GGUF --model.")
    var out: String
    @Option(name: .long, help: "GGUF --out: the compensated ffn_down as f16 or re-quantised to its source type (default: f16).")
    var ggufDown: GGUFDownStorage?
    @Flag(name: .long, help: "Replace an existing --out folder or file.")
    var force = defaults.force
    @Flag(name: .long, help: "Continue a job that stopped (crash, preemption): replay the decisions journaled in .OUT.partial, then go on. The model, windows and options must be the job's; ranks and stages may differ.")
    var resume = defaults.resume
    @Flag(name: .long, help: "Print the result on stdout as one JSON object (last): the object pruning_report.json holds.")
    var json = false

    func validate() throws {
        guard (remove == nil) != (layers == nil) else { throw ValidationError("give exactly one of --remove K or --layers LIST") }
        guard evalTokens == nil || evalText == nil else { throw ValidationError("give at most one of --eval-tokens FILE or --eval-text FILE") }
    }

    func config() throws -> PruneConfig {
        var c = scoring.config()
        if let remove { c.decisions.remove = remove }
        c.decisions.layers = try layers.map { try layerList($0, field: .layers) }
        c.decisions.verifyTop = verifyTop
        c.decisions.iterative = iterative
        c.decisions.compensateAt = compensate ? compensateAt : nil
        c.decisions.ridge = ridge
        c.validationWindows = validationWindows
        c.heldOut = evalTokens.map { .tokens($0) } ?? evalText.map { .text($0) }
        c.evalWindows = evalWindows
        c.evaluateOriginal = !skipOriginalEval
        c.evaluatePruned = !skipPrunedEval
        c.out = out
        c.ggufDown = ggufDown
        c.force = force
        c.resume = resume
        c.command = CommandLine.arguments.joined(separator: " ")
        return c
    }

    func run() throws {
        let world = try Communicator.world()
        let job = try PruneJob(config: try world.agree { try config() }, world: world)
        job.progress = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        let result = try job.run()
        if world.rank == 0 && json { print(result.json.render()) }
    }
}

struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score", abstract: "Scores of one decision on the unpruned model (or without --without), as JSON.")

    @OptionGroup var scoring: ScoringInputs
    @Option(name: .long, help: "angular: block size n (layers removed together).")
    var remove = 1
    @Option(name: .long, help: "Score the decision on the model with these layers (comma-separated original indices) already removed.")
    var without: String?

    func run() throws {
        var config = scoring.config()
        config.decisions.remove = remove
        config.scoredWithout = try without.map { try layerList($0, field: .without) } ?? []
        config.decisions.compensateAt = nil
        let world = try Communicator.world()
        let result = try PruneJob(config: config, world: world).score()
        if world.rank == 0 { print(result.json.render()) }
    }
}
