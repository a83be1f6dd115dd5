// 95 % intervals of a mean over evaluation windows (method.md, "Perplexity protocol"): Student's interval of
// the mean per-window loss, mean ± t·s/√n with s the sample standard deviation (divisor n − 1) and t the
// 0.975 quantile of Student's t with n − 1 degrees of freedom (the normal z = 1.96 is its limit; at the
// 2–4 validation windows the auto compensation decides on, z would claim intervals 1.6–6.5× too narrow),
// mapped through exp for perplexity. A paired difference is the same interval over the per-window differences of
// two settings measured on the same windows.
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

/// Φ⁻¹(0.975), the two-sided 95 % normal quantile: Student's t's for unbounded degrees of freedom.
let normalQuantile975 = 1.959963984540054

/// The 0.975 quantile of Student's t with `dof` ≥ 1 degrees of freedom: the two-sided 95 % factor of the
/// interval of a mean of dof + 1 samples. Bisection on the distribution function, whose integral from 0 is
/// taken by Simpson's rule over 16,384 steps of the density (smooth, so the error is ~1e-12; IntervalTests
/// checks scipy's values to 1e-9). Memoised: every interval of a job uses one or two counts.
public func studentQuantile975(dof: Int) -> Double {
    precondition(dof >= 1, "Student's t needs at least one degree of freedom")
    studentQuantiles.lock.lock()
    defer { studentQuantiles.lock.unlock() }
    if let q = studentQuantiles.byDof[dof] { return q }
    let d = Double(dof)
    let logScale = lgamma((d + 1) / 2) - lgamma(d / 2) - 0.5 * log(d * Double.pi)
    func density(_ x: Double) -> Double { exp(logScale - (d + 1) / 2 * log1p(x * x / d)) }
    // P(0 < T < x), which is 0.475 at the quantile.
    func mass(_ x: Double) -> Double {
        let steps = 16384, h = x / Double(steps)
        var sum = density(0) + density(x)
        for i in 1..<steps { sum += (i % 2 == 1 ? 4 : 2) * density(Double(i) * h) }
        return sum * h / 3
    }
    var lo = normalQuantile975, hi = 13.0  // t₀.₉₇₅ falls from 12.71 (one degree) toward z
    for _ in 0..<64 {
        let mid = (lo + hi) / 2
        if mass(mid) < 0.475 { lo = mid } else { hi = mid }
    }
    let q = (lo + hi) / 2
    studentQuantiles.byDof[dof] = q
    return q
}

private final class StudentQuantiles: @unchecked Sendable {
    let lock = NSLock()
    var byDof: [Int: Double] = [:]
}

private let studentQuantiles = StudentQuantiles()

/// The 95 % Student interval of the mean of `samples` (NaN bounds for fewer than 2 samples: no spread to
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
    let half = studentQuantile975(dof: n - 1) * sd / Double(n).squareRoot()
    return MeanInterval(windows: n, mean: mean, sd: sd, lo: mean - half, hi: mean + half)
}

/// The 95 % interval of the mean of b − a, window by window: a paired difference (a and b on the same
/// windows, in the same order).
public func pairedInterval(_ a: [Double], _ b: [Double]) -> MeanInterval {
    precondition(a.count == b.count, "a paired difference needs the same windows")
    return meanInterval(zip(a, b).map { $0.1 - $0.0 })
}
