// The jobs over the first windows of a token file: `eval` (the loss of a forward) and `grad-stats` (the
// gradient norms of one forward and backward), with the result each front end prints.
import Foundation
import GradMapData
import GradMapDistributed
import GradMapEngine
import GradMapFormats
import GradMapReport
import GradMapRuntime
import GradMapSupport

public struct WindowJobConfig: Sendable {
    public var engine: EngineConfig
    /// Raw little-endian uint32 token ids.
    public var tokens: String
    /// Use only the first N windows; nil: all.
    public var maxWindows: Int? = nil
    /// Windows per micro-batch.
    public var microBatch = 1
    /// Add per-rank timings, bytes sent and peak memory to the result.
    public var rankStats = false
    /// grad-stats: only the decoder layers' weight-matrix gradients (what one gradmap/taylor decision computes).
    public var layerMatricesOnly = false

    public init(engine: EngineConfig, tokens: String) {
        self.engine = engine
        self.tokens = tokens
    }

    public func validate() throws {
        try engine.validate()
        guard microBatch >= 1 else { throw bad(.microBatch, microBatch, "must be at least 1") }
        if let m = maxWindows, m < 1 { throw bad(.maxWindows, m, "must be at least 1") }
    }
}

public struct EvalResult: Sendable {
    public let loss: LossResult
    public let seconds: Double
    /// Per rank (rank 0 only), when asked for.
    public let ranks: [JSONValue]?

    public var tokens: Int { loss.windows * loss.seqLen }
    public var ppl: Double { exp(loss.loss) }
    /// The 95 % interval over the per-window losses (method.md).
    public var interval: MeanInterval { meanInterval(loss.windowLosses) }

    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [
            ("windows", .int(loss.windows)), ("tokens", .int(tokens)), ("loss", .double(loss.loss)),
            ("loss_sd", PruningResult.number(interval.sd)), ("ppl", .double(ppl)),
            ("ppl_interval", PruningResult.interval(interval.expInterval)), ("seconds", .double(seconds)),
        ]
        if let ranks { fields.append(("ranks", .array(ranks))) }
        return .object(fields)
    }

    public var text: String {
        let (lo, hi) = interval.expInterval
        return String(format: "windows %d  tokens %d  loss %.6f  ppl %.4f [95%% %.4f, %.4f]  %.2f s (%.0f tokens/s)",
                      loss.windows, tokens, loss.loss, ppl, lo, hi, seconds, Double(tokens) / seconds)
    }
}

public struct GradStatsResult: Sendable {
    public let loss: LossResult
    public let seconds: Double
    public let layers: [LayerGradNorms]
    public let ranks: [JSONValue]?

    public var json: JSONValue {
        let rows: [JSONValue] = layers.map { layer in
            .object([
                ("index", .int(layer.index)),
                ("grad_l2", .object(layer.norms.map { ($0.0, JSONValue.double($0.1)) })),
            ])
        }
        var fields: [(String, JSONValue)] = [("loss", .double(loss.loss)), ("seconds", .double(seconds)), ("layers", .array(rows))]
        if let ranks { fields.append(("ranks", .array(ranks))) }
        return .object(fields)
    }

    public var text: String {
        var lines = [String(format: "loss %.6f  forward+backward %.2f s (%.0f tokens/s)", loss.loss, seconds,
                            Double(loss.windows * loss.seqLen) / seconds)]
        for layer in layers {
            let total = layer.norms.reduce(0.0) { $0 + $1.1 * $1.1 }.squareRoot()
            lines.append(String(format: "layer %3d  |grad|_2 %.6e", layer.index, total))
        }
        return lines.joined(separator: "\n")
    }
}

/// A job over the first windows of a token file: set up (checked alike on every rank) and its pipeline.
public final class WindowJob {
    public let config: WindowJobConfig
    let world: Communicator
    let data: TokenWindows
    let windows: [Int]
    let pipeline: Pipeline<Float>

    /// Checks the configuration, the checkpoint and the windows under Communicator.agree (bad input: one line
    /// for the job), then loads this rank's share.
    public init(config: WindowJobConfig, world: Communicator, training: Bool) throws {
        self.config = config
        self.world = world
        let engine = config.engine
        let (ckpt, data, windows) = try world.agree { () -> (Checkpoint, TokenWindows, [Int]) in
            try config.validate()
            let ckpt = try Checkpoint(path: engine.model)
            let data = try TokenWindows(path: config.tokens, seqLen: engine.seqLen, vocabSize: ckpt.config.vocabSize)
            let windows = try data.firstWindows(config.maxWindows, field: .maxWindows)
            try engine.checkLayout(ckpt, ranks: world.size)
            return (ckpt, data, windows)
        }
        self.data = data
        self.windows = windows
        pipeline = try engine.pipeline(world, ckpt, microBatch: min(config.microBatch, windows.count), training: training)
    }

    /// The timed pass, started together on every rank.
    func timedRun(_ pass: Pass) throws -> (LossResult, Double) {
        try world.barrier()
        let start = DispatchTime.now()
        let r = try pipeline.run(data: data, windows: windows, microBatch: config.microBatch, pass: pass)
        return (r, elapsed(since: start))
    }

    /// Loss and perplexity of the model over the windows.
    public static func evaluate(_ config: WindowJobConfig, world: Communicator) throws -> EvalResult {
        let job = try WindowJob(config: config, world: world, training: false)
        let (loss, seconds) = try job.timedRun(job.pipeline.pass())
        let ranks = config.rankStats ? try job.pipeline.gatherRankStats() : nil
        return EvalResult(loss: loss, seconds: seconds, ranks: ranks)
    }

    /// One forward and backward of the mean loss; the L2 norm of every layer tensor's gradient.
    public static func gradientStats(_ config: WindowJobConfig, world: Communicator) throws -> GradStatsResult {
        let job = try WindowJob(config: config, world: world, training: true)
        let (loss, seconds) = try job.timedRun(job.pipeline.pass(config.layerMatricesOnly ? .layerMatrices : .allWeights))
        let layers = try GradientStats.gatherLayerL2(job.pipeline)
        let ranks = config.rankStats ? try job.pipeline.gatherRankStats() : nil
        return GradStatsResult(loss: loss, seconds: seconds, layers: layers, ranks: ranks)
    }
}
