// `gradmap-dist prune` and `gradmap-dist score`: GradMAP layer pruning and its baselines.
import ArgumentParser
import Foundation
import GradMapCore

extension Metric: ExpressibleByArgument {}
extension GradientNorm: ExpressibleByArgument {}
extension GGUFDownStorage: ExpressibleByArgument {}

/// Inputs shared by prune and score: model, calibration data, metric.
struct ScoringInputs: ParsableArguments {
    @OptionGroup var model: ModelOptions
    @OptionGroup var matmul: MatmulOptions
    @OptionGroup var activations: ActivationOptions

    @Option(name: .long, help: "Calibration token ids (raw little-endian uint32).")
    var tokens: String?
    @Option(name: .long, help: "Calibration text (UTF-8), tokenised with the model's tokenizer.")
    var text: String?
    @Option(name: .long, help: "Tokens per window (T).")
    var seqLen: Int
    @Option(name: .long, help: "Calibration windows, spread evenly over the token stream.")
    var calibWindows: Int = 32
    @Option(name: .long, help: "gradmap | fisher | gate | taylor | bi | angular | sleb | random")
    var metric: Metric = .bi
    @Option(name: .long, help: "Never remove the first N layers.")
    var protectFirst: Int = 1
    @Option(name: .long, help: "Never remove the last N layers.")
    var protectLast: Int = 1
    @Option(name: .long, help: "Seed for the random metric.")
    var seed: UInt64 = 0
    @Option(name: .long, help: "gradmap: l1 (mean |gradient|) or l2 (gradient norm per element).")
    var gradientNorm: GradientNorm = .l1
    @Option(name: .long, help: "Windows per micro-batch.")
    var microBatch: Int = 1
    @Option(name: .long, help: "Pipeline stages S (ranks = S × replicas); default min(ranks, layers).")
    var stages: Int?

    func validate() throws {
        guard (tokens == nil) != (text == nil) else { throw ValidationError("give exactly one of --tokens FILE or --text FILE") }
        guard seqLen >= 2 else { throw ValidationError("--seq-len: must be at least 2, got \(seqLen)") }
        guard calibWindows >= 1 else { throw ValidationError("--calib-windows: must be at least 1, got \(calibWindows)") }
    }

    func options(remove: Int) -> PruneOptions {
        var o = PruneOptions()
        o.metric = metric; o.remove = remove; o.protectFirst = protectFirst; o.protectLast = protectLast
        o.seed = seed; o.gradientNorm = gradientNorm; o.microBatch = microBatch
        return o
    }

    /// Token windows and the calibration windows (method.md: spread evenly over the stream).
    func calibration(_ ckpt: Checkpoint) throws -> (TokenWindows, [Int]) {
        let data: TokenWindows
        if let tokens {
            data = try TokenWindows(path: tokens, seqLen: seqLen, vocabSize: ckpt.config.vocabSize)
        } else {
            data = try TokenWindows(path: text!, tokens: try TextTokens.encode(textFile: text!, model: ckpt), seqLen: seqLen,
                                    vocabSize: ckpt.config.vocabSize)
        }
        return (data, try passing("count", as: "--calib-windows") { try data.spreadWindows(calibWindows) })
    }

    /// This rank's pipeline for `calib` windows.
    func pipeline(_ world: Communicator, _ ckpt: Checkpoint, windows: Int, training: Bool) throws -> Pipeline<Float> {
        try Pipeline.load(
            world: world, checkpoint: ckpt, stages: stages, seqLen: seqLen, microBatch: min(microBatch, windows),
            training: training, policy: activations.activations, weights: model.weights, balance: model.balance,
            matmul: matmul.matmul)
    }
}

/// What prune reads besides the scoring inputs: how decisions are taken and checked, validation and
/// held-out windows.
struct PruneInputs: ParsableArguments {
    @OptionGroup var scoring: ScoringInputs

    @Option(name: .long, help: "Verify the M lowest-scored candidates by calibration loss.")
    var verifyTop: Int = 1
    @Flag(name: .long, help: "bi: rescore after each removal instead of one-shot.")
    var iterative = false
    @Option(name: .long, help: "Validation windows for --compensate-at auto (default max(1, calib-windows/8)).")
    var validationWindows: Int?
    @Option(name: .long, help: "Held-out token ids: report perplexity before pruning, after, and after compensation.")
    var evalTokens: String?
    @Option(name: .long, help: "Held-out text for the same (tokenised with the model's tokenizer).")
    var evalText: String?
    @Option(name: .long, help: "Evaluate on N windows spread evenly over the held-out stream (default: all).")
    var evalWindows: Int?
    @Flag(name: .long, help: "Do not evaluate the unpruned model (when it is known already).")
    var skipOriginalEval = false

    func validate() throws {
        guard evalTokens == nil || evalText == nil else { throw ValidationError("give at most one of --eval-tokens FILE or --eval-text FILE") }
        if let n = evalWindows, n < 1 { throw ValidationError("--eval-windows: must be at least 1, got \(n)") }
        if let v = validationWindows, v < 1 { throw ValidationError("--validation-windows: must be at least 1, got \(v)") }
    }

    func options(remove: Int) -> PruneOptions {
        var o = scoring.options(remove: remove)
        o.verifyTop = verifyTop; o.iterative = iterative
        return o
    }

    /// Held-out windows for perplexity, when asked for.
    func evaluation(_ ckpt: Checkpoint) throws -> (TokenWindows, [Int])? {
        let data: TokenWindows
        let seqLen = scoring.seqLen
        if let evalTokens {
            data = try TokenWindows(path: evalTokens, seqLen: seqLen, vocabSize: ckpt.config.vocabSize)
        } else if let evalText {
            data = try TokenWindows(path: evalText, tokens: try TextTokens.encode(textFile: evalText, model: ckpt), seqLen: seqLen,
                                    vocabSize: ckpt.config.vocabSize)
        } else {
            return nil
        }
        let count = min(evalWindows ?? data.windowCount, data.windowCount)
        return (data, try passing("count", as: "--eval-windows") { try data.spreadWindows(count) })
    }

    /// The validation windows: spread over the windows the calibration left.
    func validation(_ data: TokenWindows, calib: [Int]) throws -> [Int] {
        let rest = Array(Set(0..<data.windowCount).subtracting(calib)).sorted()
        let v = validationWindows ?? max(1, scoring.calibWindows / 8)
        guard v <= rest.count else {
            throw GradMapError.badInput("--validation-windows \(v): only \(rest.count) windows are left after the \(calib.count) calibration windows of \(data.path)")
        }
        return (0..<v).map { rest[$0 * rest.count / v] }
    }
}

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Remove K decoder layers, optionally compensate, write a Hugging Face checkpoint or a GGUF.")

    @OptionGroup var inputs: PruneInputs
    @Option(name: .long, help: "Layers to remove (K).")
    var remove: Int?
    @Option(name: .long, help: "Remove exactly these layers (comma-separated original indices), without scoring.")
    var layers: String?
    @Option(name: .long, help: "Output folder (a Hugging Face checkpoint), or FILE.gguf from a GGUF --model.")
    var out: String
    @Option(name: .long, help: "GGUF --out: the compensated ffn_down as f16 or re-quantised to its source type (default: f16).")
    var ggufDown: GGUFDownStorage?
    @Flag(inversion: .prefixedNo, help: "Fit and fold the projection compensation.")
    var compensate = true
    @Option(name: .long, help: "auto | shift | LAYER (original index).")
    var compensateAt: String = "auto"
    @Option(name: .long, help: "Ridge factor α: λ = α·tr(Σzzᵀ)/H.")
    var ridge: Double = 1e-2
    @Flag(name: .long, help: "Replace an existing --out folder or file.")
    var force = false
    @Flag(name: .long, help: "Print one JSON object on stdout (last).")
    var json = false

    func validate() throws {
        guard (remove == nil) != (layers == nil) else { throw ValidationError("give exactly one of --remove K or --layers LIST") }
    }

    func parsedLayers() throws -> [Int]? {
        guard let layers else { return nil }
        return try layers.split(separator: ",").map { item in
            guard let v = Int(item.trimmingCharacters(in: .whitespaces)) else {
                throw GradMapError.badInput("--layers: '\(item)' is not a layer index")
            }
            return v
        }
    }

    func target() throws -> CompensationTarget? {
        guard compensate else { return nil }
        switch compensateAt {
        case "auto": return .auto
        case "shift": return .shift
        default:
            guard let j = Int(compensateAt) else { throw GradMapError.badInput("--compensate-at: expected auto, shift or a layer index, got '\(compensateAt)'") }
            return .layer(j)
        }
    }

    /// What every rank reads and checks alike before its own work.
    struct SetUp {
        let ckpt: Checkpoint
        let options: PruneOptions
        let data: TokenWindows
        let calib: [Int]
        let validation: [Int]
        let heldOut: (TokenWindows, [Int])?
    }

    /// Run under Communicator.agree: bad input found here is one line for the job, before anything is written.
    func setUp(_ world: Communicator) throws -> SetUp {
        let scoring = inputs.scoring
        let ckpt = try scoring.model.checkpoint()
        var options = inputs.options(remove: remove ?? 0)
        options.layers = try parsedLayers()
        options.compensateAt = try target()
        options.ridge = ridge
        try Pruner.validate(options, layers: ckpt.config.layers)
        try PrunedOutput(out).check(force: force, source: ckpt, down: ggufDown, compensating: options.compensateAt != nil)
        let (data, calib) = try scoring.calibration(ckpt)
        let validation = options.compensateAt == .auto ? try inputs.validation(data, calib: calib) : []
        let heldOut = try inputs.evaluation(ckpt)
        try checkLayout(ckpt, ranks: world.size, stages: scoring.stages, balance: scoring.model.balance, seqLen: scoring.seqLen)
        return SetUp(ckpt: ckpt, options: options, data: data, calib: calib, validation: validation, heldOut: heldOut)
    }

    func run() throws {
        let started = DispatchTime.now()
        let world = try Communicator.world()
        let setUp = try world.agree { try self.setUp(world) }
        let (ckpt, options, data, calib, validation) = (setUp.ckpt, setUp.options, setUp.data, setUp.calib, setUp.validation)
        let scoring = inputs.scoring
        let training = options.layers == nil && scoring.metric.needsBackward
        let pipeline = try scoring.pipeline(world, ckpt, windows: calib.count, training: training)
        let pruner = try Pruner(pipeline: pipeline, data: data, calibration: calib, validation: validation, options: options)
        let log: (String) -> Void = { line in if world.rank == 0 { FileHandle.standardError.write(Data((line + "\n").utf8)) } }
        pruner.progress = log
        let heldOut = setUp.heldOut
        var evalRows: [(String, JSONValue)] = []
        func evaluate(_ label: String) throws {
            guard let (evalData, evalList) = heldOut else { return }
            let t = DispatchTime.now()
            // The current model: the original before the decisions, then the pruned one.
            let r = try pipeline.run(data: evalData, windows: evalList, microBatch: scoring.microBatch, pass: pruner.pass())
            let seconds = elapsed(since: t)
            evalRows.append(("ppl_" + label, .double(exp(r.loss))))
            log(String(format: "held-out perplexity %@: %.3f (%d windows of %d tokens, %.1f s)", label, exp(r.loss), evalList.count, scoring.seqLen, seconds))
        }
        if !inputs.skipOriginalEval { try evaluate("original") }
        let original = try pruner.loss()
        log(String(format: "calibration: %d windows of %d tokens; loss %.6f (ppl %.3f) before pruning", calib.count, scoring.seqLen, original, exp(original)))
        let t0 = DispatchTime.now()
        let decisions = try pruner.decide()
        let scoringSeconds = elapsed(since: t0)
        let pruned = try pruner.loss()
        log(String(format: "pruned: loss %.6f (ppl %.3f)", pruned, exp(pruned)))
        try evaluate("pruned")
        var comp: CompensationReport? = nil
        var compensated: Double? = nil
        let t1 = DispatchTime.now()
        if let target = options.compensateAt {
            // The decisions are the same on every rank, so is this bad input: one line for the job.
            if case .layer(let j) = target {
                try world.agree {
                    guard pruner.kept.contains(j) else { throw GradMapError.badInput("--compensate-at \(j): layer \(j) was removed") }
                }
            }
            comp = try pruner.compensate(target: target, storage: PrunedOutput(out).storage(folder: outputDType(ckpt), down: ggufDown ?? .f16))
            if let j = comp?.layer {
                compensated = try pruner.loss()
                log(String(format: "compensated at layer %d: loss %.6f (ppl %.3f)", j, compensated!, exp(compensated!)))
                try evaluate("compensated")
            } else {
                log("compensation: no candidate lowered the validation loss; none applied")
            }
        }
        let compensating = elapsed(since: t1)
        let ranks = try pipeline.gatherRankStats()
        var result = PruningResult(
            metric: options.layers == nil ? scoring.metric.rawValue : "given", decisions: decisions, compensation: comp, calibLossOriginal: original,
            calibLossPruned: pruned, calibLossCompensated: compensated, scoringSeconds: scoringSeconds,
            compensationSeconds: compensating, writingSeconds: 0)
        let t2 = DispatchTime.now()
        var extra: [String: Data] = [:]
        if world.rank == 0 {
            var rep = report(result, calib: calib, validation: validation, ranks: ranks, total: elapsed(since: started))
            if case .object(var fields) = rep, let (_, list) = heldOut {
                fields.append(("eval", .object([("windows", .int(list.count)), ("window_indices", .array(list.map { .int($0) }))] + evalRows)))
                rep = .object(fields)
            }
            extra["pruning_report.json"] = Data(rep.render(indent: 2).utf8)
            let title = "\(scoring.metric.rawValue): \(decisions.count) of \(ckpt.config.layers) layers removed from \(URL(fileURLWithPath: ckpt.path).lastPathComponent)"
            extra["pruning_report.svg"] = Data(ScoreChart.svg(result, layers: ckpt.config.layers, title: title).utf8)
        }
        try PrunedOutput(out).write(pipeline: pipeline, source: ckpt, kept: pruner.kept, dtype: outputDType(ckpt), compensated: comp?.layer,
                                    down: ggufDown ?? .f16, force: force, extraFiles: extra)
        result.writingSeconds = elapsed(since: t2)
        log(String(format: "wrote %@ (%.1f s in all)", out, elapsed(since: started)))
        if world.rank == 0 && json {
            var object = result.json
            if case .object(var fields) = object, let (_, list) = heldOut {
                fields.append(("eval", .object([("windows", .int(list.count))] + evalRows)))
                object = .object(fields)
            }
            print(object.render())
        }
    }

    /// The source dtype, kept; quantised GGUF weights are written as float32 (their exact dequantised values).
    func outputDType(_ ckpt: Checkpoint) -> DType {
        let d = ckpt.storageDType()
        return [.f32, .f16, .bf16].contains(d) ? d : .f32
    }

    func report(_ r: PruningResult, calib: [Int], validation: [Int], ranks: [JSONValue], total: Double) -> JSONValue {
        guard case .object(let fields) = r.json else { return r.json }
        var out: [(String, JSONValue)] = [("command", .string(CommandLine.arguments.joined(separator: " ")))]
        out += fields
        out += [
            ("seq_len", .int(inputs.scoring.seqLen)), ("seed", .uint(inputs.scoring.seed)),
            ("matmul", .string(inputs.scoring.matmul.matmul.rawValue)),
            ("calibration_windows", .array(calib.map { .int($0) })),
            ("validation_windows", .array(validation.map { .int($0) })),
            ("decisions", r.decisionDetail), ("compensation_detail", r.compensationDetail),
            ("total_seconds", .double(total)), ("ranks", .array(ranks)),
        ]
        return .object(out)
    }
}

struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score", abstract: "Scores of one decision on the unpruned model, as JSON.")

    @OptionGroup var inputs: ScoringInputs
    @Option(name: .long, help: "angular: block size n (layers removed together).")
    var remove: Int = 1

    func run() throws {
        let world = try Communicator.world()
        let (ckpt, options, data, calib) = try world.agree { () -> (Checkpoint, PruneOptions, TokenWindows, [Int]) in
            let ckpt = try inputs.model.checkpoint()
            var options = inputs.options(remove: remove)
            options.compensateAt = nil
            try Pruner.validate(options, layers: ckpt.config.layers)
            let (data, calib) = try inputs.calibration(ckpt)
            try checkLayout(ckpt, ranks: world.size, stages: inputs.stages, balance: inputs.model.balance, seqLen: inputs.seqLen)
            return (ckpt, options, data, calib)
        }
        let pipeline = try inputs.pipeline(world, ckpt, windows: calib.count, training: inputs.metric.needsBackward)
        let pruner = try Pruner(pipeline: pipeline, data: data, calibration: calib, validation: [], options: options)
        let t0 = DispatchTime.now()
        let scores = try pruner.scoreOnce()
        let seconds = elapsed(since: t0)
        guard world.rank == 0 else { return }
        print(JSONValue.object([
            ("metric", .string(inputs.metric.rawValue)),
            ("scores", .array(scores.map { $0.isNaN ? .null : .double($0) })),
            ("calibration_windows", .array(calib.map { .int($0) })), ("seconds", .double(seconds)),
        ]).render())
    }
}
