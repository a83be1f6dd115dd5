// The forward passes Compensation.run makes, counted before it runs (the job's time estimate, TimeLeft):
// keep in step with run() and CompensationSweep.swift when they change.
import GradMapCompensation
import GradMapPruning

extension Compensation {
    /// The ridge factors the auto compensation tries per candidate layer (run()'s).
    static var autoRidgeFactors: Int { CompensationChoice.ridgeFactors.count }

    /// run()'s passes with the shared passes: none for the mean shifts (the calibration losses' passes take
    /// them); one over the calibration windows for the sums, running the layers before the first removed one
    /// once and then both models up to the last candidate, without the lm_head; for auto, the pruned model
    /// over the validation windows and each candidate × ridge factor from its layer on. The candidates are
    /// not known before the shifts: the estimate takes the last layer as the last candidate and every
    /// solution as running all kept layers from the first removed one (an upper bound on both).
    /// `removed`: the layers removed so far (exact once every decision is taken).
    static func plannedPasses(
        target: CompensationTarget, calibrationWindows: Int, validationWindows: Int, layers: Int, removed: Set<Int>, kept: Int
    ) -> [PlannedPass] {
        let first = removed.min() ?? layers
        let keptFromFirst = kept - first
        var passes = [PlannedPass(windows: calibrationWindows, layers: layers + keptFromFirst, head: false)]
        if target == .auto {
            let solutions = autoCandidateBound(removed: removed, layers: layers, kept: kept) * autoRidgeFactors
            passes.append(PlannedPass(windows: validationWindows, layers: kept))
            passes += [PlannedPass](repeating: PlannedPass(windows: validationWindows, layers: keptFromFirst), count: solutions)
        }
        return passes
    }

    /// At most how many candidates autoCandidates picks once `removed` are gone: the 3 largest shifts and the
    /// kept layer after each run of removed ones, no more than the kept layers.
    static func autoCandidateBound(removed: Set<Int>, layers: Int, kept: Int) -> Int {
        let runs = removed.filter { $0 + 1 < layers && !removed.contains($0 + 1) }.count
        return min(kept, 3 + runs)
    }
}
