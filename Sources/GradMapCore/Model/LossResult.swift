// The loss a run reports: mean next-token NLL over positions 1..T-1 of each window, averaged over windows
// (the single-process definition the distributed schedule reproduces; the tests' LocalEngine runs it).
import Foundation

public struct LossResult: Sendable {
    public let windows: Int
    public let seqLen: Int
    /// Σ NLL over all predictions.
    public let nll: Double
    /// Σ NLL of each window, in the order of the window list (nll is their in-order sum).
    public let windowNLL: [Double]
    public var predictions: Int { windows * (seqLen - 1) }
    public var loss: Double { nll / Double(predictions) }
    /// Each window's mean NLL over its T − 1 predictions: the samples of the interval (method.md).
    public var windowLosses: [Double] { windowNLL.map { $0 / Double(seqLen - 1) } }

    public init(windows: Int, seqLen: Int, nll: Double, windowNLL: [Double]) {
        self.windows = windows
        self.seqLen = seqLen
        self.nll = nll
        self.windowNLL = windowNLL
    }
}
