// 95 % intervals of a mean over evaluation windows (method.md, "Perplexity protocol"): the normal interval
// of the mean per-window loss, mean ± z·s/√n with s the sample standard deviation (divisor n − 1) and
// z = Φ⁻¹(0.975), mapped through exp for perplexity. A paired difference is the same interval over the
// per-window differences of two settings measured on the same windows.
import Foundation

public struct MeanInterval: Sendable, Equatable {
    public let windows: Int
    public let mean: Double
    /// Sample standard deviation over windows (n − 1); NaN for one window.
    public let sd: Double
    public let lo: Double
    public let hi: Double

    /// The interval of exp(mean): a perplexity's, or a perplexity ratio's for a paired difference.
    public var expInterval: (Double, Double) { (exp(lo), exp(hi)) }
}

/// Φ⁻¹(0.975), the two-sided 95 % normal quantile.
let normalQuantile975 = 1.959963984540054

/// The 95 % normal interval of the mean of `samples` (NaN bounds for fewer than 2 samples: no spread to
/// estimate). Sums run in the samples' order.
public func meanInterval(_ samples: [Double]) -> MeanInterval {
    let n = samples.count
    precondition(n >= 1, "an interval needs at least one sample")
    var sum = 0.0
    for x in samples { sum += x }
    let mean = sum / Double(n)
    guard n >= 2 else { return MeanInterval(windows: n, mean: mean, sd: .nan, lo: .nan, hi: .nan) }
    var squares = 0.0
    for x in samples { squares += (x - mean) * (x - mean) }
    let sd = (squares / Double(n - 1)).squareRoot()
    let half = normalQuantile975 * sd / Double(n).squareRoot()
    return MeanInterval(windows: n, mean: mean, sd: sd, lo: mean - half, hi: mean + half)
}

/// The 95 % interval of the mean of b − a, window by window: a paired difference (a and b on the same
/// windows, in the same order).
public func pairedInterval(_ a: [Double], _ b: [Double]) -> MeanInterval {
    precondition(a.count == b.count, "a paired difference needs the same windows")
    return meanInterval(zip(a, b).map { $0.1 - $0.0 })
}
