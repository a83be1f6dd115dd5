// `gradmap-dist grad-stats`: one forward and backward of the mean loss; the L2 norm of every parameter
// gradient, per layer.
import ArgumentParser
import Foundation
import GradMapCore

struct GradStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grad-stats", abstract: "Gradient norms of every layer's tensors for the mean loss.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var matmul: MatmulOptions
    @OptionGroup var activations: ActivationOptions
    @OptionGroup var windows: WindowOptions
    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false
    @Flag(name: .long, help: "Compute only the decoder layers' weight-matrix gradients, what one gradmap/taylor decision computes (norms, biases, embedding and lm_head report 0).")
    var layerMatricesOnly = false
    @Flag(name: .long, help: "Add per-rank timings, bytes sent and peak memory (\"ranks\") to the JSON.")
    var rankStats = false

    func run() throws {
        let world = try Communicator.world()
        let (ckpt, data, list) = try world.agree { try windows.setUp(world, model: model) }
        let pipeline = try windows.pipeline(
            world, ckpt, windows: list.count, training: true, model: model, matmul: matmul.matmul,
            activations: activations.activations)
        try world.barrier()
        let start = DispatchTime.now()
        let pass = pipeline.pass(layerMatricesOnly ? .layerMatrices : .allWeights)
        let r = try pipeline.run(data: data, windows: list, microBatch: windows.microBatch, pass: pass)
        let seconds = elapsed(since: start)
        let norms = try GradientStats.gatherLayerL2(pipeline)
        let ranks = rankStats ? try pipeline.gatherRankStats() : []
        guard world.rank == 0 else { return }
        if json {
            let layers: [JSONValue] = norms.map { layer in
                .object([
                    ("index", .int(layer.index)),
                    ("grad_l2", .object(layer.norms.map { ($0.0, JSONValue.double($0.1)) })),
                ])
            }
            var fields: [(String, JSONValue)] = [("loss", .double(r.loss)), ("seconds", .double(seconds)), ("layers", .array(layers))]
            if rankStats { fields.append(("ranks", .array(ranks))) }
            print(JSONValue.object(fields).render())
        } else {
            print(String(format: "loss %.6f  forward+backward %.2f s (%.0f tokens/s)", r.loss, seconds,
                         Double(r.windows * r.seqLen) / seconds))
            for layer in norms {
                let total = layer.norms.reduce(0.0) { $0 + $1.1 * $1.1 }.squareRoot()
                print(String(format: "layer %3d  |grad|_2 %.6e", layer.index, total))
            }
        }
    }
}
