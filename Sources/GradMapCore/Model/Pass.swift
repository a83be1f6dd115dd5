// What one run of the model computes, handed to every call of the schedule and the stages instead of being
// left in them as mutable flags: which layers make up the model, which gradients the backward produces, and
// the arithmetic of the products. A run with no gradients is forward only.
import GradMapKernels

public struct Pass: Sendable, Equatable {
    public enum Gradients: Sendable, Equatable {
        /// Forward only.
        case none
        /// dL/dh only, every dL/dW product skipped: what the activation-gradient metrics need, at about a
        /// third of the backward's cost; params.grads stays zero.
        case activations
        /// Only the decoder layers' weight matrices: the products for lm_head, the embedding, norms and biases
        /// are skipped, and so is dL/dh below the first layer on the first stage. What the weight-gradient
        /// metrics read; the rest of params.grads stays zero.
        case layerMatrices
        /// Every parameter's gradient (norms, biases, embedding, lm_head too).
        case allWeights
    }

    /// Original indices of the layers that take part in the computation (pruned ones left out), ascending.
    public let layers: [Int]
    public var gradients: Gradients
    /// Arithmetic of the linear and lm_head products (attention and everything else stay FP32).
    public var precision: MatmulPrecision

    public init(layers: some Sequence<Int>, gradients: Gradients, precision: MatmulPrecision) {
        self.layers = layers.sorted()
        self.gradients = gradients
        self.precision = precision
    }

    package var backward: Bool { gradients != .none }
    /// Whether the backward computes the decoder layers' dL/dW products.
    var layerWeightGradients: Bool { gradients == .layerMatrices || gradients == .allWeights }
    /// Whether the backward also produces the norms', biases', embedding's and lm_head's gradients.
    var allWeightGradients: Bool { gradients == .allWeights }
}
