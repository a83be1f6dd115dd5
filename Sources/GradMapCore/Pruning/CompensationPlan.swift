// The forward passes Compensation.run makes, counted before it runs (the job's time estimate, TimeLeft):
// keep in step with run() when it changes.

extension Compensation {
    /// The ridge factors the auto compensation tries per candidate layer (run()'s).
    static let autoRidgeFactors = 3

    /// run()'s passes: the mean shifts (original and pruned model over the calibration windows), the H×H sums
    /// (the same two), and for auto the validation loss without compensation and with each candidate × ridge
    /// factor folded.
    static func plannedPasses(
        target: CompensationTarget, calibrationWindows: Int, validationWindows: Int, layers: Int, kept: Int, candidates: Int
    ) -> [PlannedPass] {
        let original = PlannedPass(windows: calibrationWindows, layers: layers)
        let pruned = PlannedPass(windows: calibrationWindows, layers: kept)
        var passes = [original, pruned, original, pruned]
        if target == .auto {
            let trials = 1 + candidates * autoRidgeFactors
            passes += [PlannedPass](repeating: PlannedPass(windows: validationWindows, layers: kept), count: trials)
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
