// The single-process driver the tests compare against: one stage holding the whole model, windows processed
// in micro-batches. It defines the loss the distributed schedule must reproduce: mean next-token NLL over
// positions 1..T-1 of each window, averaged over windows, with gradients of exactly that mean.
import Foundation

@testable import GradMapData
@testable import GradMapDistributed
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapKernels
@testable import GradMapRuntime

enum LocalEngine {
    /// Loads every tensor of the checkpoint into a single stage (strict: shapes checked, nothing left over).
    static func load<F: Real>(
        _ ckpt: Checkpoint, seqLen: Int, maxBatch: Int, training: Bool, policy: ActivationPolicy = .store
    ) throws -> Stage<F> {
        let c = ckpt.config
        try ckpt.checkNoUnexpectedTensors()
        try ckpt.checkShapes(ParamLayout.specs(c, part: .whole(c)))
        let params = ParameterSet<F>(config: c, part: .whole(c))
        try params.load(from: ckpt)
        return Stage(config: c, params: params, seqLen: seqLen, maxBatch: maxBatch, policy: policy, training: training)
    }

    /// Mean loss over the windows; with `backward`, params.grads receives ∂loss/∂θ (zeroed first): every
    /// parameter's, or the part `gradients` names.
    /// The single-process case of the distributed schedule: one stage, one replica, no messages.
    static func run<F: Real & MPIScalar>(
        _ stage: Stage<F>, data: TokenWindows, windows: [Int], microBatch: Int, backward: Bool,
        gradients: Pass.Gradients = .allWeights, matmul: MatmulPrecision = .f32,
        onLogits: ((Int, UnsafePointer<F>) -> Void)? = nil
    ) -> LossResult {
        do {
            let placement = try Placement(config: stage.config, ranks: 1, stages: 1)
            let pipeline = try Pipeline(world: .solo, placement: placement, stage: stage, matmul: matmul)
            let pass = pipeline.pass(backward ? gradients : .none)
            return try pipeline.run(data: data, windows: windows, microBatch: microBatch, pass: pass, onLogits: onLogits)
        } catch {
            preconditionFailure("a single-process run cannot fail after loading: \(error)")
        }
    }
}
