// `gradmap-dist grad-stats`: one forward and backward of the mean loss; the L2 norm of every parameter
// gradient, per layer.
import ArgumentParser
import GradMapJob
import GradMapRuntime

struct GradStatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grad-stats", abstract: "Gradient norms of every layer's tensors for the mean loss.")

    @OptionGroup var windows: WindowOptions
    @OptionGroup var activations: ActivationOptions
    @Flag(name: .long, help: "Compute only the decoder layers' weight-matrix gradients, what one gradmap/taylor decision computes (norms, biases, embedding and lm_head report 0).")
    var layerMatricesOnly = false

    func run() throws {
        var config = windows.config(activations: activations.activations)
        config.layerMatricesOnly = layerMatricesOnly
        let result = try WindowJob.gradientStats(config, world: try Communicator.world())
        guard Communicator.worldRank == 0 else { return }
        print(windows.json ? result.json.render() : result.text)
    }
}
