// The auto compensation's choice rule (method.md stage 2 step 5) on hand-made validation losses, each case
// built so that one clause of the rule decides it; the real models' choices are checked against the float64
// reference in MetricReferenceTests.
import XCTest

@testable import GradMapCompensation
@testable import GradMapSupport

final class CompensationChoiceTests: XCTestCase {
    /// Rows of per-window losses; the means are computed here the plain way.
    func losses(_ baseline: [Double], _ solutions: [[Double]]) -> ValidationLosses {
        let mean = { (w: [Double]) in w.reduce(0, +) / Double(w.count) }
        return ValidationLosses(baseline: baseline, solutions: solutions, baselineMean: mean(baseline),
                                solutionMeans: solutions.map(mean))
    }

    let base = [3.0, 3.4, 2.8, 3.1]

    func testTheStrongestRidgeTiedWithTheBestIsChosen() {
        // Solution 0 (α 0.1) is lowest; solution 1 (α 10) is 0.01 higher on average with differences that
        // spread ±0.05 around it: its paired interval against the best reaches 0. Both beat the baseline by 0.3.
        let weak = base.map { $0 - 0.3 }
        let strong = zip(weak, [0.06, -0.04, 0.05, -0.03]).map { $0 + $1 }
        XCTAssertEqual(CompensationChoice.choose(losses(base, [weak, strong]), ridges: [0.1, 10]), 1)
        // The same losses with the ridges swapped: the strong ridge is now the best itself.
        XCTAssertEqual(CompensationChoice.choose(losses(base, [weak, strong]), ridges: [10, 0.1]), 0)
    }

    func testASignificantlyWorseStrongRidgeLosesToTheBest() {
        let weak = base.map { $0 - 0.3 }
        let strong = zip(weak, [0.10, 0.11, 0.09, 0.10]).map { $0 + $1 }  // worse on every window
        XCTAssertEqual(CompensationChoice.choose(losses(base, [weak, strong]), ridges: [0.1, 10]), 0)
    }

    func testAGainTheWindowsCannotTellFromZeroIsNotFolded() {
        // Lower on average by 0.025, but worse on one window by 0.2: the interval of (pick − baseline) reaches 0.
        let noisy = zip(base, [-0.1, -0.1, -0.1, 0.2]).map { $0 + $1 }
        XCTAssertNil(CompensationChoice.choose(losses(base, [noisy]), ridges: [1]))
        // Consistently lower by the same 0.025: folded.
        let steady = base.map { $0 - 0.025 }
        XCTAssertEqual(CompensationChoice.choose(losses(base, [steady]), ridges: [1]), 0)
    }

    func testNoSolutionBelowTheBaselineIsNotFolded() {
        XCTAssertNil(CompensationChoice.choose(losses(base, [base.map { $0 + 0.01 }]), ridges: [1]))
        // A relative gain of 1e-7 (rounding, not compensation) on every window.
        XCTAssertNil(CompensationChoice.choose(losses(base, [base.map { $0 * (1 - 1e-7) }]), ridges: [1]))
    }

    func testOneWindowTiesOnlyEqualMeans() {
        // No spread to estimate: the lowest loss wins unless another equals it exactly, then the stronger ridge.
        XCTAssertEqual(CompensationChoice.choose(losses([3], [[2.5], [2.6]]), ridges: [0.1, 10]), 0)
        XCTAssertEqual(CompensationChoice.choose(losses([3], [[2.5], [2.5]]), ridges: [0.1, 10]), 1)
        XCTAssertEqual(CompensationChoice.choose(losses([3], [[2.5], [2.5]]), ridges: [10, 10]), 0)
        XCTAssertNil(CompensationChoice.choose(losses([3], [[3]]), ridges: [1]))
    }
}
