// `inspect`: what a checkpoint holds and, given a number of ranks, how a job would lay it out: each rank's
// layers, bytes and estimated peak memory, and compute and traffic per decision. A config.json alone is enough
// to plan (a 70B model that is not on this machine).
import Foundation
import GradMapDistributed
import GradMapEngine
import GradMapFormats
import GradMapKernels
import GradMapSupport

public struct InspectConfig: Sendable {
    /// A Hugging Face folder, a .gguf file, or a bare config.json.
    public var model: String
    public var weights: WeightFormat = .f32
    public var balance: Balance = .compute
    public var activations: ActivationPolicy = .store
    /// The products' arithmetic the plan assumes: what a job on this machine runs without --matmul.
    public var matmul: MatmulPrecision = .machineDefault
    /// Plan a job of this many ranks; nil: describe the model only.
    public var ranks: Int? = nil
    /// Pipeline stages of the plan; nil: min(ranks, layers).
    public var stages: Int? = nil
    /// Tokens per window and windows per micro-batch, for the activation estimate.
    public var seqLen = 256
    public var microBatch = 1
    /// Calibration tokens per decision, for the compute and traffic estimate.
    public var calibTokens = 32 * 256
    /// Sustained GFLOP/s of one rank, for the time estimate (this 2-core machine: about 100).
    public var gflops = 100.0

    public init(model: String) { self.model = model }

    public func validate() throws {
        if let r = ranks, r < 1 { throw bad(.ranks, r, "must be at least 1") }
        if let s = stages, s < 1 { throw bad(.stages, s, "must be at least 1") }
        if stages != nil && ranks == nil { throw bad(.stages, stages, "a plan needs a number of ranks") }
        guard seqLen >= 2 else { throw bad(.seqLen, seqLen, "must be at least 2") }
        guard microBatch >= 1 else { throw bad(.microBatch, microBatch, "must be at least 1") }
        guard calibTokens >= 1 else { throw bad(.calibTokens, calibTokens, "must be at least 1") }
        guard gflops > 0 else { throw bad(.gflops, gflops, "must be positive") }
    }
}

public struct InspectResult: Sendable {
    public let config: InspectConfig
    public let summary: ModelSummary
    /// The plan, when ranks were given.
    public let placement: Placement?
    public let plan: [RankMemory]

    public static func make(_ config: InspectConfig) throws -> InspectResult {
        try config.validate()
        let summary: ModelSummary
        if config.model.hasSuffix(".json") {
            let model = try ModelConfig.load(path: config.model)
            let name = HFConfig.declaredDType(model.raw)
            summary = ModelSummary(config: model, storage: name == "float32" ? .f32 : name == "float16" ? .f16 : .bf16)
        } else {
            summary = try ModelSummary(checkpoint: Checkpoint(path: config.model))
        }
        let model = summary.config
        guard let ranks = config.ranks else { return InspectResult(config: config, summary: summary, placement: nil, plan: []) }
        let placement = try Placement(config: model, ranks: ranks, stages: config.stages, balance: config.balance, seqLen: config.seqLen)
        let plan = MemoryPlan.ranks(
            placement, summary: summary, seqLen: config.seqLen, microBatch: config.microBatch, training: true,
            policy: config.activations, weights: config.weights, matmul: config.matmul)
        return InspectResult(config: config, summary: summary, placement: placement, plan: plan)
    }

    /// Calibration tokens per replica.
    var tokensPerReplica: Double { Double(config.calibTokens) / Double(placement?.replicas ?? 1) }

    public var json: JSONValue {
        guard let placement else { return summary.json }
        let rows: [JSONValue] = plan.map { m in
            .object([
                ("rank", .int(m.placement.rank)), ("stage", .int(m.placement.stage)), ("replica", .int(m.placement.replica)),
                ("layers", .array(m.placement.part.layers.map { .int($0) })),
                ("embedding", .bool(m.placement.part.embedding)), ("head", .bool(m.placement.part.head)),
                ("stored_bytes", .int(m.storedBytes)), ("parameter_bytes_f32", .int(m.parameterBytes)),
                ("weight_bytes", .int(m.weightBytes)), ("gradient_bytes", .int(m.gradientBytes)),
                ("activation_bytes", .int(m.activationBytes)), ("allreduce_scratch_bytes", .int(m.allReduceScratchBytes)),
                ("bf16_scratch_bytes", .int(m.bf16ScratchBytes)),
                ("estimated_peak_bytes", .int(m.peakBytes)), ("estimated_forward_peak_bytes", .int(m.forwardPeakBytes)),
                ("compensation_bytes_per_candidate", .int(m.compensationBytesPerCandidate)),
                ("compensation_bytes_per_candidate_window", .int(m.compensationBytesPerCandidateWindow)),
                ("compensation_bytes_per_solution", .int(m.compensationBytesPerSolution)),
                ("compensation_base_bytes", .int(m.compensationBaseBytes)),
                ("decision_tflop", .double(m.decisionFlopsPerToken * tokensPerReplica / 1e12)),
                ("bytes_sent_per_decision", .int(m.bytesSentPerToken * config.calibTokens / placement.replicas)),
                ("allreduce_bytes_per_decision", .int(m.allReduceBytes)),
            ])
        }
        return .object([
            ("model", summary.json), ("ranks", .int(placement.ranks)), ("stages", .int(placement.stages)),
            ("replicas", .int(placement.replicas)), ("seq_len", .int(config.seqLen)), ("micro_batch", .int(config.microBatch)),
            ("weights", .string(config.weights.rawValue)), ("balance", .string(config.balance.rawValue)),
            ("activations", .string(config.activations.rawValue)), ("matmul", .string(config.matmul.rawValue)),
            ("plan", .array(rows)),
        ])
    }

    public var text: String {
        guard let placement else { return summary.text }
        func mib(_ b: Int) -> String { String(format: "%.1f", Double(b) / 1_048_576) }
        var lines = [summary.text, ""]
        lines.append("plan: \(placement.ranks) ranks = \(placement.stages) stages × \(placement.replicas) replicas; T = \(config.seqLen), micro-batch \(config.microBatch), 1F1B (\(placement.stages) micro-batches in flight at most); layers balanced by \(config.balance.rawValue), --weights \(config.weights.rawValue), --activations \(config.activations.rawValue), products \(config.matmul.rawValue) (this machine's default --matmul)")
        lines.append("rank  stage  replica  layers      stored MiB  held MiB  grads MiB  activations MiB  est. peak MiB  forward-only MiB")
        for m in plan {
            let p = m.placement
            var layers = p.part.layers.isEmpty ? "-" : "\(p.part.layers.lowerBound)-\(p.part.layers.upperBound - 1)"
            if p.part.embedding { layers = "E " + layers }
            if p.part.head { layers += " H" }
            let cells = [
                pad("\(p.rank)", 4), pad("\(p.stage)", 5), pad("\(p.replica)", 7), pad(layers, -10),
                pad(mib(m.storedBytes), 10), pad(mib(m.weightBytes), 8), pad(mib(m.gradientBytes), 9),
                pad(mib(m.activationBytes), 15), pad(mib(m.peakBytes), 13), pad(mib(m.forwardPeakBytes), 16),
            ]
            lines.append(cells.joined(separator: "  "))
        }
        lines.append("E = embedding, H = final norm + lm_head (+ tied embedding copy); held = weights in memory (f32, or bf16 layers + one widened layer); peak = held + gradients (f32) + activations + all-reduce scratch (replicas) + BF16 copies of the largest product's inputs (bf16 products) + 40 MiB runtime; forward-only = the peak of eval, or of prune with a metric that needs no backward (bi, angular, sleb) or --layers: held + one micro-batch of forward activations + BF16 product scratch + 40 MiB")
        if let m = plan.first {
            lines.append("prune's compensation adds on every rank \(mib(m.compensationBaseBytes)) MiB (rank 0; \(mib(plan.last!.compensationBaseBytes)) MiB on the others) + \(mib(m.compensationBytesPerCandidate)) MiB per candidate layer (auto: + \(mib(m.compensationBytesPerCandidateWindow)) MiB per candidate per validation window of a replica) + \(mib(m.compensationBytesPerSolution)) MiB per (layer, ridge) solution on rank 0, \(mib(plan.last!.compensationBytesPerSolution)) MiB on the others (--compensate-at auto: up to 3 + K layers × 3 ridges; a given layer: 1 × 1)")
        }
        lines.append("")
        let tokens = tokensPerReplica
        lines.append("per decision (forward + backward over \(config.calibTokens) calibration tokens, \(Int(tokens)) per replica):")
        lines.append("rank  TFLOP   sent to neighbours MiB  all-reduce MiB")
        for m in plan {
            lines.append([pad("\(m.placement.rank)", 4), pad(String(format: "%.2f", m.decisionFlopsPerToken * tokens / 1e12), 6),
                          pad(mib(Int(Double(m.bytesSentPerToken) * tokens)), 22), pad(mib(m.allReduceBytes), 14)].joined(separator: "  "))
        }
        let slowest = plan.map { $0.decisionFlopsPerToken * tokens }.max() ?? 0
        lines.append(String(format: "at %.0f GFLOP/s per rank the slowest stage needs %.0f s per decision (plus the pipeline bubble)", config.gflops, slowest / (config.gflops * 1e9)))
        return lines.joined(separator: "\n")
    }
}

/// Right-aligns to `width`, or left-aligns to -width.
func pad(_ s: String, _ width: Int) -> String {
    let fill = String(repeating: " ", count: max(0, abs(width) - s.count))
    return width < 0 ? s + fill : fill + s
}
