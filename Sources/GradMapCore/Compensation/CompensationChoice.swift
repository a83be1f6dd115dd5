// The choice --compensate-at auto makes among its solutions (method.md, stage 2 step 6). Fitted on a few
// calibration windows, the lowest validation loss alone picked weak ridges that fit the calibration domain
// and made text from another domain worse (docs/results-notes.md, "Compensation out of domain"). So the
// choice is made with the validation windows' own spread: among the solutions whose paired 95 % interval
// against the best one contains 0, the strongest ridge (the pull toward P = I) wins, and it is folded only
// when its paired interval against the uncompensated model lies wholly below 0.
import Foundation
import GradMapSupport

/// Mean NLL of each validation window (over its T − 1 predictions), the windows in the same order for every
/// row: the uncompensated (pruned) model and each solution folded at its layer.
struct ValidationLosses {
    var baseline: [Double]
    var solutions: [[Double]]
    /// The mean over windows of each row, as the pass totals give it (the report's validation losses).
    var baselineMean: Double
    var solutionMeans: [Double]
    /// Rows whose head the first stage took off the last (the shared sweep on a tied model in stages).
    var headsOnFirstStage = 0
}

package enum CompensationChoice {
    /// The ridge factors α the auto compensation tries per candidate layer (λ = α·tr(Σzzᵀ)/H), weakest
    /// first: 0.1 is near the plain least-squares fit, 10 pulls P well toward I (the set measured in
    /// results-notes.md, "Compensation out of domain").
    package static let ridgeFactors: [Double] = [0.1, 1, 10]

    /// The relative validation-loss gain a solution must exceed besides the interval (1e-6: far above the
    /// ~1e-8 a no-op fold moves the loss by rounding, far below any compensation worth having). It is the
    /// whole test when there is one validation window (no spread to estimate).
    static let minimumGain = 1e-6

    /// The solution to fold (an index into `losses.solutions`), or nil for none. `ridges`: each solution's
    /// α as solved (raised where the system needed it). Ties go to the lower loss, then the lower index.
    static func choose(_ losses: ValidationLosses, ridges: [Double]) -> Int? {
        let means = losses.solutionMeans
        guard !means.isEmpty else { return nil }
        let best = means.indices.min { (means[$0], $0) < (means[$1], $1) }!
        let spread = losses.baseline.count >= 2
        // Not distinguishable from the best: the paired interval of (k − best) reaches 0. With one window,
        // only an exact tie is.
        func isTied(_ k: Int) -> Bool {
            guard spread else { return means[k] == means[best] }
            return pairedInterval(losses.solutions[best], losses.solutions[k]).lo <= 0
        }
        let tied = means.indices.filter(isTied)
        // The strongest ridge; then the lower loss, then the lower index.
        func before(_ a: Int, _ b: Int) -> Bool {
            if ridges[a] != ridges[b] { return ridges[a] < ridges[b] }
            if means[a] != means[b] { return means[a] > means[b] }
            return a > b
        }
        let pick = tied.max(by: before)!
        guard means[pick] < losses.baselineMean * (1 - minimumGain) else { return nil }
        if spread && !(pairedInterval(losses.baseline, losses.solutions[pick]).hi < 0) { return nil }
        return pick
    }
}
