// `gradmap-dist inspect`: what a checkpoint holds and, with --ranks, how a job would lay it out.
import ArgumentParser
import Foundation
import GradMapCore

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Architecture, layer count, parameter count and bytes per layer; with --ranks, the plan per rank.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var activations: ActivationOptions
    @Option(name: .long, help: "Plan a job of N ranks: layers, bytes and estimated peak memory per rank.")
    var ranks: Int?
    @Option(name: .long, help: "Pipeline stages of the plan (default min(ranks, layers)).")
    var stages: Int?
    @Option(name: .long, help: "Tokens per window, for the activation estimate.")
    var seqLen: Int = 256
    @Option(name: .long, help: "Windows per micro-batch, for the activation estimate.")
    var microBatch: Int = 1
    @Option(name: .long, help: "Sustained GFLOP/s of one rank, for the time estimate (this 2-core machine: about 100).")
    var gflops: Double = 100
    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false

    func validate() throws {
        if let r = ranks, r < 1 { throw ValidationError("--ranks: must be at least 1, got \(r)") }
        if let s = stages, s < 1 { throw ValidationError("--stages: must be at least 1, got \(s)") }
        if stages != nil && ranks == nil { throw ValidationError("--stages: needs --ranks") }
        guard seqLen >= 2 else { throw ValidationError("--seq-len: must be at least 2, got \(seqLen)") }
        guard microBatch >= 1 else { throw ValidationError("--micro-batch: must be at least 1, got \(microBatch)") }
    }

    @Option(name: .long, help: "Calibration tokens per decision, for the compute and traffic estimate.")
    var calibTokens: Int = 32 * 256

    func run() throws {
        // A config.json alone is enough to plan (e.g. a 70B model that is not on this machine).
        let config: ModelConfig
        let storage: DType
        if model.model.hasSuffix(".json") {
            config = try ModelConfig.load(path: model.model)
            let name = HFConfig.declaredDType(config.raw)
            storage = name == "float32" ? .f32 : name == "float16" ? .f16 : .bf16
        } else {
            let ckpt = try model.checkpoint()
            config = ckpt.config
            storage = ckpt.storageDType()
        }
        let summary = ModelSummary(config: config, storage: storage)
        guard let ranks else {
            print(json ? summary.json.render(indent: 2) : summary.text)
            return
        }
        let placement = try passing("ranks", as: "--ranks") {
            try Placement(config: config, ranks: ranks, stages: stages, balance: model.balance, seqLen: seqLen)
        }
        let plan = MemoryPlan.ranks(
            placement, storage: storage, seqLen: seqLen, microBatch: microBatch, training: true,
            policy: activations.activations, weights: model.weights)
        func mib(_ b: Int) -> String { String(format: "%.1f", Double(b) / 1_048_576) }
        if json {
            let rows: [JSONValue] = plan.map { m in
                .object([
                    ("rank", .int(m.placement.rank)), ("stage", .int(m.placement.stage)), ("replica", .int(m.placement.replica)),
                    ("layers", .array(m.placement.part.layers.map { .int($0) })),
                    ("embedding", .bool(m.placement.part.embedding)), ("head", .bool(m.placement.part.head)),
                    ("stored_bytes", .int(m.storedBytes)), ("parameter_bytes_f32", .int(m.parameterBytes)),
                    ("weight_bytes", .int(m.weightBytes)), ("gradient_bytes", .int(m.gradientBytes)),
                    ("activation_bytes", .int(m.activationBytes)), ("allreduce_scratch_bytes", .int(m.allReduceScratchBytes)),
                    ("estimated_peak_bytes", .int(m.peakBytes)),
                    ("decision_tflop", .double(m.decisionFlopsPerToken * Double(calibTokens) / Double(placement.replicas) / 1e12)),
                    ("bytes_sent_per_decision", .int(m.bytesSentPerToken * calibTokens / placement.replicas)),
                    ("allreduce_bytes_per_decision", .int(m.allReduceBytes)),
                ])
            }
            print(JSONValue.object([
                ("model", summary.json), ("ranks", .int(ranks)), ("stages", .int(placement.stages)),
                ("replicas", .int(placement.replicas)), ("seq_len", .int(seqLen)), ("micro_batch", .int(microBatch)),
                ("weights", .string(model.weights.rawValue)), ("balance", .string(model.balance.rawValue)),
                ("activations", .string(activations.activations.rawValue)),
                ("plan", .array(rows)),
            ]).render(indent: 2))
            return
        }
        print(summary.text)
        print("")
        print("plan: \(ranks) ranks = \(placement.stages) stages × \(placement.replicas) replicas; T = \(seqLen), micro-batch \(microBatch), 1F1B (\(placement.stages) micro-batches in flight at most); layers balanced by \(model.balance.rawValue), --weights \(model.weights.rawValue), --activations \(activations.activations.rawValue)")
        print("rank  stage  replica  layers      stored MiB  held MiB  grads MiB  activations MiB  est. peak MiB")
        for m in plan {
            let p = m.placement
            var layers = p.part.layers.isEmpty ? "-" : "\(p.part.layers.lowerBound)-\(p.part.layers.upperBound - 1)"
            if p.part.embedding { layers = "E " + layers }
            if p.part.head { layers += " H" }
            let cells = [
                pad("\(p.rank)", 4), pad("\(p.stage)", 5), pad("\(p.replica)", 7), pad(layers, -10),
                pad(mib(m.storedBytes), 10), pad(mib(m.weightBytes), 8), pad(mib(m.gradientBytes), 9),
                pad(mib(m.activationBytes), 15), pad(mib(m.peakBytes), 13),
            ]
            print(cells.joined(separator: "  "))
        }
        print("E = embedding, H = final norm + lm_head (+ tied embedding copy); held = weights in memory (f32, or bf16 layers + one widened layer); peak = held + gradients (f32) + activations + all-reduce scratch (replicas) + 40 MiB runtime")
        print("")
        let tokens = Double(calibTokens) / Double(placement.replicas)
        print("per decision (forward + backward over \(calibTokens) calibration tokens, \(Int(tokens)) per replica):")
        print("rank  TFLOP   sent to neighbours MiB  all-reduce MiB")
        for m in plan {
            print([pad("\(m.placement.rank)", 4), pad(String(format: "%.2f", m.decisionFlopsPerToken * tokens / 1e12), 6),
                   pad(mib(Int(Double(m.bytesSentPerToken) * tokens)), 22), pad(mib(m.allReduceBytes), 14)].joined(separator: "  "))
        }
        let slowest = plan.map { $0.decisionFlopsPerToken * tokens }.max() ?? 0
        print(String(format: "at %.0f GFLOP/s per rank the slowest stage needs %.0f s per decision (plus the pipeline bubble)", gflops, slowest / (gflops * 1e9)))
    }
}

/// Right-aligns to `width`, or left-aligns to -width.
func pad(_ s: String, _ width: Int) -> String {
    let fill = String(repeating: " ", count: max(0, abs(width) - s.count))
    return width < 0 ? s + fill : fill + s
}
