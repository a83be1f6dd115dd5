// The compensation's shared passes (CompensationSweep.swift: layer means from the job's calibration-loss
// passes, the H×H sums from one forward that runs the shared prefix once, the auto choice's validation
// losses from one sweep) against each part's own passes (GRADMAP_COMPENSATION_PASSES=separate), as whole
// jobs of the release binary under every split: the same floats are computed by the same calls on the same
// inputs, so everything the job reports (shifts, every candidate's λ, reconstruction errors and validation
// loss, the choice, the losses) and every written tensor must be the same bits, not merely close.
import Foundation
import XCTest


final class CompensationSweepTests: XCTestCase {
    /// The report without what may differ between two runs of one job: wall seconds and the command line.
    func comparable(_ o: [String: Any]) -> NSDictionary {
        var o = o
        for key in ["command", "seconds", "total_seconds", "ranks"] { o[key] = nil }
        o["decisions"] = (o["decisions"] as! [[String: Any]]).map { $0.filter { $0.key != "seconds" } }
        if var detail = o["compensation_detail"] as? [String: Any] {
            detail["seconds"] = nil
            detail["validation_heads_on_first_stage"] = nil  // where a head ran, not what it gave
            o["compensation_detail"] = detail
        }
        return o as NSDictionary
    }

    func check(_ model: String, _ extra: [String], microBatch: Int = 2, validation: Int = 3, _ label: String) throws -> [[String: Any]] {
        let args = ["--model", model, "--tokens", model + "/tokens.bin", "--seq-len", "16", "--calib-windows", "7",
                    "--validation-windows", "\(validation)", "--micro-batch", "\(microBatch)"] + extra
        var shared: [[String: Any]] = []
        for (np, stages) in everySplit {
            let (a, aOut) = try prune(np, stages: stages, args)
            let (b, bOut) = try prune(np, stages: stages, args, env: ["GRADMAP_COMPENSATION_PASSES": "separate"])
            let tag = "\(label) np=\(np) S=\(stages)"
            XCTAssertEqual(comparable(a), comparable(b), "\(tag): the reports differ")
            try assertSameTensors(aOut, bOut, tag)
            shared.append(a)
        }
        return shared
    }

    /// auto on three removal patterns: [2, 3, 5] (two runs, removed layers on stage 0 of 2, candidates on both
    /// stages), [2, 3, 4] (a run across the stage boundary; the only one of the three where a solution's gain
    /// is clear of its interval, so something is folded) and [5, 6] (stage 0 identical in both models: the
    /// shared prefix is a whole stage). 7 calibration windows in micro-batches of 2 (a short last one, split
    /// unevenly over replicas), 6 validation windows (with 3, Student's t₂ = 4.3 lets none of them fold). The
    /// reports compared include every validation window's loss of every solution: what the choice weighs, bit
    /// for bit.
    func testAutoChoiceIsTheSameWithSharedPasses() throws {
        try requireReleaseBinary()
        let model = try makeModel(layers: 8, seed: 41, hidden: 32)
        for layers in ["2,3,5", "2,3,4", "5,6"] {
            let runs = try check(model, ["--layers", layers, "--compensate-at", "auto"], validation: 6, "auto --layers \(layers)")
            // The auto choice weighed several candidates, each at three ridge factors, on every window.
            let detail = runs[0]["compensation_detail"] as! [String: Any]
            let candidates = detail["candidates"] as! [[String: Any]]
            XCTAssertGreaterThanOrEqual(Set(candidates.map { $0["layer"] as! Int }).count, 3, layers)
            XCTAssertEqual(candidates.count % 3, 0, layers)
            XCTAssertEqual((detail["baseline_validation_window_losses"] as? [Double])?.count, 6, layers)
            for c in candidates { XCTAssertEqual((c["validation_window_losses"] as? [Double])?.count, 6, layers) }
            if layers == "2,3,4" { XCTAssertNotNil(detail["chosen_layer"] as? Int, "\(layers): nothing was folded") }
        }
    }

    /// A tied model: in stages, the first takes some validation rows' heads off the last (its embedding is
    /// the output matrix, so the same product on the same inputs). The losses, the choice and the tensors
    /// are still the separate passes' bits, under every split, replicas included. A vocabulary of 2,048 makes a
    /// head cost about six layers, so the heads are shared, not all moved (headsOnFirstStage).
    func testAutoChoiceOnATiedModelIsTheSameWithSharedPasses() throws {
        try requireReleaseBinary()
        let model = try makeModel(layers: 8, tied: true, seed: 47, hidden: 32, vocab: 2048)
        let runs = try check(model, ["--layers", "2,3,4", "--compensate-at", "auto"], "auto tied")
        for ((np, stages), run) in zip(everySplit, runs) {
            let detail = run["compensation_detail"] as! [String: Any]
            let heads = detail["validation_heads_on_first_stage"] as! Int
            let rows = (detail["candidates"] as! [[String: Any]]).count + 1
            if stages > 1 {
                XCTAssert(heads > 0 && heads < rows, "np=\(np) S=\(stages): \(heads) of \(rows) heads on the first stage")
            } else {
                XCTAssertEqual(heads, 0, "np=\(np) S=\(stages)")
            }
        }
    }

    /// The largest shift and a given layer: the sums alone, with --activations recompute (the stage's
    /// internals kept per layer differently) and with micro-batches of one.
    func testShiftAndGivenLayerAreTheSameWithSharedPasses() throws {
        try requireReleaseBinary()
        let model = try makeModel(layers: 8, seed: 43, hidden: 32)
        _ = try check(model, ["--layers", "2,3,5", "--compensate-at", "shift"], "shift")
        _ = try check(model, ["--layers", "2,3,5", "--compensate-at", "4", "--activations", "recompute"], "layer 4")
        _ = try check(model, ["--layers", "1,6", "--compensate-at", "7"], microBatch: 1, "layer 7, micro-batch 1")
    }
}
