// `gradmap-dist inspect`: what a checkpoint holds and, with --ranks, how a job would lay it out.
import ArgumentParser
import GradMapDistributed
import GradMapEngine
import GradMapJob

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Architecture, layer count, parameter count and bytes per layer; with --ranks, the plan per rank.")

    @Option(name: .long, help: "Hugging Face checkpoint folder, a .gguf file, or a bare config.json (to plan a model that is not here).")
    var model: String
    @Option(name: .long, help: "Layer weights held as f32 (default) or bf16, for the memory estimate.")
    var weights: WeightFormat?
    @Option(name: .long, help: "Split the layers evening out compute (default) or memory.")
    var balance: Balance?
    @OptionGroup var activations: ActivationOptions
    @Option(name: .long, help: "Plan a job of N ranks: layers, bytes and estimated peak memory per rank.")
    var ranks: Int?
    @Option(name: .long, help: "Pipeline stages of the plan (default min(ranks, layers)).")
    var stages: Int?
    @Option(name: .long, help: "Tokens per window, for the activation estimate (default 256).")
    var seqLen: Int?
    @Option(name: .long, help: "Windows per micro-batch, for the activation estimate (default 1).")
    var microBatch: Int?
    @Option(name: .long, help: "Calibration tokens per decision, for the compute and traffic estimate (default 8192).")
    var calibTokens: Int?
    @Option(name: .long, help: "Sustained GFLOP/s of one rank, for the time estimate (default 100, about this 2-core machine).")
    var gflops: Double?
    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false

    func run() throws {
        var c = InspectConfig(model: model)
        if let weights { c.weights = weights }
        if let balance { c.balance = balance }
        if let a = activations.activations { c.activations = a }
        c.ranks = ranks
        c.stages = stages
        if let seqLen { c.seqLen = seqLen }
        if let microBatch { c.microBatch = microBatch }
        if let calibTokens { c.calibTokens = calibTokens }
        if let gflops { c.gflops = gflops }
        let result = try InspectResult.make(c)
        print(json ? result.json.render(indent: 2) : result.text)
    }
}
