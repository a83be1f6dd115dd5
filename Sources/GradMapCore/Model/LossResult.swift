// The loss a run reports: mean next-token NLL over positions 1..T-1 of each window, averaged over windows
// (the single-process definition the distributed schedule reproduces; the tests' LocalEngine runs it).
import Foundation

public struct LossResult: Sendable {
    public let windows: Int
    public let seqLen: Int
    /// Σ NLL over all predictions.
    public let nll: Double
    public var predictions: Int { windows * (seqLen - 1) }
    public var loss: Double { nll / Double(predictions) }
}
