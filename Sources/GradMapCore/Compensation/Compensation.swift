// Stage 2 of GradMAP: projection compensation. For the kept layer j* (original index), with u the residual
// stream after its attention, z = D·a its MLP output and y the original model's output at the same layer,
// P = argmin Σ_t ||u_t + P z_t - y_t||² + λ||P - I||²_F = (Σ (y-u) zᵀ + λI)(Σ z zᵀ + λI)⁻¹, folded as D ← P·D.
// The H×H sums are accumulated in Float64 on every rank that owns j*, reduced to rank 0 and solved there
// (LAPACK Cholesky); rank 0 broadcasts P and the owners fold it. j* comes from the mean shifts σ_j, a given
// layer, or (auto) the validation loss over candidate layers and ridge factors.
import CBLAS
import Foundation
import GradMapData
import GradMapDistributed
import GradMapEngine
import GradMapFormats
import GradMapKernels
import GradMapPruning
import GradMapRuntime
import GradMapSupport

public struct CompensationCandidate: Sendable {
    public let layer: Int
    public let alpha: Double
    public let lambda: Double
    public let validationLoss: Double?
    public let reconBefore: Double
    public let reconAfter: Double
    /// Each validation window's loss with this solution folded (auto only): what the choice weighed.
    public var validationWindowLosses: [Double]? = nil
}

public struct CompensationReport: Sendable {
    /// j* (original index), nil when auto found no candidate that lowers the validation loss.
    public let layer: Int?
    /// σ_j of every kept layer (original index), ascending.
    public let shifts: [(Int, Double)]
    public let reconBefore: Double
    public let reconAfter: Double
    /// The ridge factor α used (raised when the system was not positive definite) and λ = α·tr(Σzzᵀ)/H.
    public let alpha: Double
    public let lambda: Double
    public let ridgeRaised: Bool
    public let candidates: [CompensationCandidate]
    /// Validation loss of the pruned model without compensation (auto only), and per window.
    public let baselineValidationLoss: Double?
    public var baselineValidationWindowLosses: [Double]? = nil
    /// Validation rows (the pruned model, each solution) whose head the first stage ran (a tied model in stages).
    public var validationHeadsOnFirstStage = 0
    /// Seconds of each part on rank 0: "shifts", "sums", "solve", "validation", "fold".
    public var seconds: [(String, Double)] = []
}

extension Pruner {
    /// Fits and folds the compensation on the current (pruned) model. All ranks call it; the report is
    /// complete on rank 0.
    /// `means`: the layer sums the calibration-loss passes of the original and the pruned model collected
    /// (nil: two passes of their own).
    public func compensate(target: CompensationTarget, storage: DType, means: CompensationMeans? = nil) throws -> CompensationReport {
        try Compensation(self, means: means).run(target: target, storage: storage, passes: .fromEnvironment)
    }
}

/// The compensation of one pruned model: it compares the pruned model (the kept layers) with the original
/// (every layer), both named by their passes, and folds P into the chosen layer's down_proj in place.
public struct Compensation {
    public typealias F = Float
    let pipeline: Pipeline<F>
    let data: TokenWindows
    let calibration: [Int]
    let validation: [Int]
    let microBatch: Int
    let ridge: Double
    /// The pruned model's layers (original indices).
    let kept: Set<Int>
    let original: Pass
    let pruned: Pass
    let means: CompensationMeans?
    var config: ModelConfig { pipeline.stage.config }
    var seqLen: Int { data.seqLen }

    /// On the pruner's current model, with its windows and options.
    public init(_ p: Pruner, means: CompensationMeans? = nil) {
        self.means = means
        pipeline = p.pipeline
        data = p.data
        calibration = p.calibration
        validation = p.validation
        microBatch = p.options.microBatch
        ridge = p.options.ridge
        kept = p.kept
        original = p.pipeline.pass()
        pruned = p.pass()
    }

    /// Mean hidden state after every layer of `model`, [L × H] (zero rows for layers it lacks).
    func layerMeans(_ model: Pass) throws -> [Double] {
        let l = config.layers, h = config.hidden
        let sums = HiddenSums(layers: l, hidden: h)
        _ = try pipeline.run(data: data, windows: calibration, microBatch: microBatch, pass: model, tap: { sums.add($1) })
        return try means(sums)
    }

    /// The world's per-layer means from this rank's sums.
    func means(_ sums: HiddenSums) throws -> [Double] {
        let tokens = Double(calibration.count * seqLen)
        return try pipeline.world.allReduceSum(sums.values).map { $0 / tokens }
    }

    /// σ_j = ||μ'_j - μ_j|| / ||μ_j|| for every kept layer j.
    public func meanShifts() throws -> [(Int, Double)] {
        shifts(before: try layerMeans(original), after: try layerMeans(pruned))
    }

    func shifts(before: [Double], after: [Double]) -> [(Int, Double)] {
        let h = config.hidden
        return kept.sorted().map { j in
            var d = 0.0, n = 0.0
            for i in 0..<h {
                let a = before[j * h + i], b = after[j * h + i]
                d += (b - a) * (b - a); n += a * a
            }
            return (j, (d / max(n, 1e-300)).squareRoot())
        }
    }

    /// Candidate layers of --compensate-at auto: the 3 largest shifts, and the first kept layer after each
    /// contiguous run of removed layers.
    func autoCandidates(_ shifts: [(Int, Double)]) -> [Int] {
        var set = Set(shifts.sorted { ($0.1, -$0.0) > ($1.1, -$1.0) }.prefix(3).map(\.0))
        for r in 0..<config.layers where !kept.contains(r) && (r + 1 < config.layers) && kept.contains(r + 1) {
            set.insert(r + 1)
        }
        return set.sorted()
    }

    /// Per candidate layer: A = Σ (y - u) zᵀ and B = Σ z zᵀ (H×H, Float64), Σ||y - u||², Σ||y||², and the
    /// traces tr(A), tr(B), summed over every calibration token and reduced to rank 0.
    func sums(_ candidates: [Int]) throws -> [Int: [Double]] {
        let h = config.hidden, t = seqLen
        let hh = h * h
        let width = 2 * hh + 2
        var sums = [Int: [Double]]()
        for c in candidates { sums[c] = [Double](repeating: 0, count: width) }
        // Windows go through the original and the pruned model in chunks of one micro-batch per replica, so
        // that y (original outputs at the candidate layers) is held for one chunk only.
        let chunk = microBatch * pipeline.placement.replicas
        let owned = candidates.filter { pipeline.stage.params.part.layers.contains($0) }
        var y = [Int: Buffer<F>]()
        for c in owned { y[c] = Buffer(count: chunk * t * h) }
        let rd = Buffer<Double>(count: microBatch * t * h), zd = Buffer<Double>(count: microBatch * t * h)
        let yb = Buffer<F>(count: microBatch * t * h)
        var start = 0
        while start < calibration.count {
            let windows = Array(calibration[start..<min(start + chunk, calibration.count)])
            let position = Dictionary(uniqueKeysWithValues: windows.enumerated().map { ($1, $0) })
            _ = try pipeline.run(data: data, windows: windows, microBatch: microBatch, pass: original, tap: { list, tap in
                guard let store = y[tap.layer] else { return }
                for (j, w) in list.enumerated() {
                    (store.pointer + position[w]! * t * h).update(from: tap.out + j * t * h, count: t * h)
                }
            })
            _ = try pipeline.run(data: data, windows: windows, microBatch: microBatch, pass: pruned, tap: { (list: ArraySlice<Int>, tap: LayerTap<F>) in
                guard let store = y[tap.layer] else { return }
                for (j, w) in list.enumerated() {
                    let from: UnsafePointer<F> = UnsafePointer(store.pointer + position[w]! * t * h)
                    (yb.pointer + j * t * h).update(from: from, count: t * h)
                }
                self.addSums(&sums[tap.layer]!, tap: tap, y: yb.pointer, rd: rd, zd: zd)
            })
            start += chunk
        }
        for c in candidates {
            try sums[c]!.withUnsafeMutableBufferPointer { try pipeline.world.reduceSum($0.baseAddress!, count: width, root: 0) }
        }
        return sums
    }

    /// Adds one micro-batch's terms at a candidate layer to its sums: the pruned model's u and output at the
    /// layer (`tap`) against the original model's output y there, [rows × H]. rd and zd: Float64 scratch
    /// of rows × H.
    func addSums(_ sums: inout [Double], tap: LayerTap<F>, y: UnsafePointer<F>, rd: Buffer<Double>, zd: Buffer<Double>) {
        let h = config.hidden, hh = h * h
        let params = pipeline.stage.params
        let bias = params.spec("model.layers.\(tap.layer).mlp.down_proj.bias").map { params.value($0) }
        let rows = tap.rows
        var rr = 0.0, yy = 0.0
        for row in 0..<(rows * h) {
            let i = row % h
            // With a down bias b: h' = u + P·D·a + b, so the target of P·z is y - u - b.
            let u = Double(tap.u[row]) + (bias.map { Double($0[i]) } ?? 0)
            let yv = Double(y[row])
            let r = yv - u
            rd[row] = r
            zd[row] = Double(tap.out[row]) - u
            rr += r * r; yy += yv * yv
        }
        sums.withUnsafeMutableBufferPointer { s in
            let a = s.baseAddress!, b = s.baseAddress! + hh
            // Each product single-threaded, as every OpenBLAS call of the compensation: the sums' order then
            // does not depend on the rank's thread count (README, "What is the same for any split"). A rank
            // with two or more threads runs the two at once, one per thread: the same calls, the same bits.
            // Σ z zᵀ is symmetric: its upper triangle by dsyrk (half the flops), mirrored below after
            // each call, so the matrix is whole between calls. 1.5·2·H²·rows flops per micro-batch.
            BLASRuntime.singleThreaded {
                Parallel.items(2, maxWorkers: 2) { _, product in
                    if product == 0 {
                        Double.gemm(true, false, h, h, rows, 1, rd.pointer, h, zd.pointer, h, 1, a, h)
                    } else {
                        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(h), Int32(rows), 1, zd.pointer, Int32(h), 1, b, Int32(h))
                        for i in 0..<h { for j in (i + 1)..<h { b[j * h + i] = b[i * h + j] } }
                    }
                }
            }
            s[2 * hh] += rr
            s[2 * hh + 1] += yy
        }
    }

    /// Solves P for one candidate's sums and ridge factor α (rank 0). Raises α tenfold while the system is
    /// not positive definite. Returns P (row-major H×H), λ, α and the relative errors before/after.
    static func solve(sums s: [Double], hidden h: Int, alpha: Double) throws -> (p: [Double], lambda: Double, alpha: Double, raised: Bool, before: Double, after: Double) {
        let hh = h * h
        var traceB = 0.0
        for i in 0..<h { traceB += s[hh + i * h + i] }
        var alpha = alpha
        var raised = false
        for _ in 0..<12 {
            // λ scales with the MLP output's energy; a zero trace (no signal) falls back to λ = α.
            let lambda = alpha * (traceB > 0 ? traceB / Double(h) : 1)
            var bm = Array(s[hh..<(2 * hh)])
            var x = [Double](repeating: 0, count: hh)  // Aᵀ + λI
            for i in 0..<h { for j in 0..<h { x[i * h + j] = s[j * h + i] } }
            for i in 0..<h { bm[i * h + i] += lambda; x[i * h + i] += lambda }
            let info = BLASRuntime.singleThreaded {
                LAPACKE_dposv(LAPACK_ROW_MAJOR, Int8(UInt8(ascii: "U")), Int32(h), Int32(h), &bm, Int32(h), &x, Int32(h))
            }
            // Not positive definite (rounding can leave a rank-deficient Σzzᵀ slightly indefinite):
            // raise the ridge, from at least 1e-6, and say so in the report.
            if info > 0 { alpha = max(alpha * 10, 1e-6); raised = true; continue }
            guard info == 0 else { throw GradMapError.runtime("LAPACKE_dposv failed with info \(info)") }
            // x = B'⁻¹ A'ᵀ = Pᵀ.
            var p = [Double](repeating: 0, count: hh)
            for i in 0..<h { for j in 0..<h { p[i * h + j] = x[j * h + i] } }
            let (before, after) = reconErrors(sums: s, p: p, hidden: h)
            return (p, lambda, alpha, raised, before, after)
        }
        throw GradMapError.runtime("compensation: Σ z zᵀ + λI is not positive definite even with ridge \(alpha)")
    }

    /// Σ||u + Pz - y||² / Σ||y||² from the sums: Σ||r||² - 2 Σ_ij P_ij A_ij + tr(P B Pᵀ), and the same with P = I.
    static func reconErrors(sums s: [Double], p: [Double], hidden h: Int) -> (Double, Double) {
        let hh = h * h
        let rr = s[2 * hh], yy = s[2 * hh + 1]
        var traceA = 0.0, traceB = 0.0, pa = 0.0
        for i in 0..<h { traceA += s[i * h + i]; traceB += s[hh + i * h + i] }
        for k in 0..<hh { pa += p[k] * s[k] }
        var pb = [Double](repeating: 0, count: hh)
        p.withUnsafeBufferPointer { pp in
            s.withUnsafeBufferPointer { ss in
                BLASRuntime.singleThreaded {
                    Double.gemm(false, false, h, h, h, 1, pp.baseAddress!, h, ss.baseAddress! + hh, h, 0, &pb, h)
                }
            }
        }
        var pbp = 0.0
        for k in 0..<hh { pbp += pb[k] * p[k] }
        let denominator = max(yy, 1e-300)
        return ((rr - 2 * traceA + traceB) / denominator, (rr - 2 * pa + pbp) / denominator)
    }

    /// Broadcasts P from rank 0 and folds it into layer j's down_proj on the ranks that hold it:
    /// D ← P·D, rounded to `storage` so the model in memory is the one that will be written.
    /// Returns the previous D (to undo), or nil on ranks without layer j.
    @discardableResult
    func fold(_ p: [Double], layer j: Int, storage: DType) throws -> [F]? {
        fold(received: try broadcast([p])[0], layer: j, storage: storage)
    }

    /// Each P of rank 0's list in float32 on every rank (the others pass as many empty ones).
    func broadcast(_ ps: [[Double]]) throws -> [[F]] {
        let hh = config.hidden * config.hidden
        var pf = [F](repeating: 0, count: ps.count * hh)
        for (k, p) in ps.enumerated() where p.count == hh { for e in 0..<hh { pf[k * hh + e] = F(p[e]) } }
        try pf.withUnsafeMutableBufferPointer { try pipeline.world.broadcast($0.baseAddress!, count: ps.count * hh, root: 0) }
        return (0..<ps.count).map { Array(pf[($0 * hh)..<(($0 + 1) * hh)]) }
    }

    /// The fold on this rank, with P already here; no communication.
    func fold(received pf: [F], layer j: Int, storage: DType) -> [F]? {
        let h = config.hidden, i = config.intermediate
        let params = pipeline.stage.params
        let name = "model.layers.\(j).mlp.down_proj.weight"
        guard params.spec(name) != nil else { return nil }
        let old = Array(UnsafeBufferPointer(start: params.value(name), count: h * i))
        var d = [F](repeating: 0, count: h * i)
        old.withUnsafeBufferPointer { o in
            pf.withUnsafeBufferPointer { pp in
                BLASRuntime.singleThreaded { F.gemm(false, false, h, i, h, 1, pp.baseAddress!, h, o.baseAddress!, i, 0, &d, i) }
            }
        }
        d.withUnsafeMutableBufferPointer { roundInPlace($0.baseAddress!, count: h * i, to: storage) }
        params.store(name, from: d)
        return old
    }

    func restore(_ old: [F]?, layer j: Int) {
        let name = "model.layers.\(j).mlp.down_proj.weight"
        guard let old, pipeline.stage.params.spec(name) != nil else { return }
        pipeline.stage.params.store(name, from: old)
    }

    /// The pruned model's (as folded so far) losses on the validation windows; forward only.
    func validationLoss() throws -> LossResult {
        try pipeline.run(data: data, windows: validation, microBatch: microBatch, pass: pruned)
    }

    /// The baseline validation losses and each solution's (folded at its layer), one pass each.
    func separateValidation(layers: [Int], solutions: [[Double]], storage: DType) throws -> ValidationLosses {
        let baseline = try validationLoss()
        let losses = try layers.indices.map { k in
            let old = try fold(solutions[k], layer: layers[k], storage: storage)
            defer { restore(old, layer: layers[k]) }
            return try validationLoss()
        }
        return ValidationLosses(baseline: baseline.windowLosses, solutions: losses.map(\.windowLosses),
                                baselineMean: baseline.loss, solutionMeans: losses.map(\.loss))
    }

    /// Fits and folds the compensation. All ranks call it; the report is complete on rank 0. `passes`: the
    /// shared ones (CompensationSweep.swift, the job's) or each part's own (the reference they are checked
    /// against: the same bits).
    public func run(target: CompensationTarget, storage: DType, passes: CompensationPasses = .shared) throws -> CompensationReport {
        let h = config.hidden
        var clock = PartClock()
        let shifts: [(Int, Double)]
        if passes == .shared, let means {
            shifts = self.shifts(before: try self.means(means.original), after: try self.means(means.pruned))
        } else {
            shifts = try meanShifts()
        }
        clock.lap("shifts")
        let candidates: [Int]
        let alphas: [Double]
        switch target {
        case .shift:
            candidates = [shifts.max { ($0.1, -$0.0) < ($1.1, -$1.0) }!.0]
            alphas = [ridge]
        case .layer(let j):
            guard kept.contains(j) else { throw bad(.compensateAt, j, "layer \(j) was removed") }
            candidates = [j]
            alphas = [ridge]
        case .auto:
            candidates = autoCandidates(shifts)
            alphas = CompensationChoice.ridgeFactors
        }
        let sums = passes == .shared ? try sharedSums(candidates) : try self.sums(candidates)
        clock.lap("sums")
        let root = pipeline.world.rank == 0
        var results: [CompensationCandidate] = []
        var solutions: [[Double]] = []
        var raisedAny = false
        for c in candidates {
            for a in alphas {
                var p = [Double]()
                var row = CompensationCandidate(layer: c, alpha: a, lambda: 0, validationLoss: nil, reconBefore: 0, reconAfter: 0)
                if root {
                    let s = try Compensation.solve(sums: sums[c]!, hidden: h, alpha: a)
                    p = s.p
                    raisedAny = raisedAny || s.raised
                    row = CompensationCandidate(layer: c, alpha: s.alpha, lambda: s.lambda, validationLoss: nil, reconBefore: s.before, reconAfter: s.after)
                }
                results.append(row)
                solutions.append(p)
            }
        }
        clock.lap("solve")
        var chosen: Int? = 0
        var baseline: Double? = nil
        var baselineWindows: [Double]? = nil
        var headsOnFirstStage = 0
        if target == .auto {
            let layers = results.map(\.layer)
            let losses = passes == .shared
                ? try validationSweep(layers: layers, solutions: solutions, storage: storage)
                : try separateValidation(layers: layers, solutions: solutions, storage: storage)
            baseline = losses.baselineMean
            for k in results.indices {
                let r = results[k]
                results[k] = CompensationCandidate(layer: r.layer, alpha: r.alpha, lambda: r.lambda, validationLoss: losses.solutionMeans[k], reconBefore: r.reconBefore, reconAfter: r.reconAfter, validationWindowLosses: losses.solutions[k])
            }
            baselineWindows = losses.baseline
            headsOnFirstStage = losses.headsOnFirstStage
            // Every rank computed the same losses, so every rank makes the same choice.
            chosen = CompensationChoice.choose(losses, ridges: results.map(\.alpha))
            clock.lap("validation")
        }
        if let k = chosen { try fold(solutions[k], layer: results[k].layer, storage: storage) }
        clock.lap("fold")
        let pick = chosen.map { results[$0] }
        var report = CompensationReport(
            layer: pick?.layer, shifts: shifts, reconBefore: pick?.reconBefore ?? .nan, reconAfter: pick?.reconAfter ?? .nan,
            alpha: pick?.alpha ?? .nan, lambda: pick?.lambda ?? .nan, ridgeRaised: raisedAny, candidates: results,
            baselineValidationLoss: baseline)
        report.baselineValidationWindowLosses = baselineWindows
        report.validationHeadsOnFirstStage = headsOnFirstStage
        report.seconds = clock.laps
        return report
    }
}

/// Rounds values to what `dtype` stores (BF16, F16) so that memory and the written file agree.
func roundInPlace<F: Real>(_ p: UnsafeMutablePointer<F>, count: Int, to dtype: DType) {
    switch dtype {
    case .bf16: for i in 0..<count { p[i] = F(Double(bf16ToFloat(floatToBF16(Float(p[i].double))))) }
    case .f16: for i in 0..<count { p[i] = F(Double(halfToFloat(floatToHalf(Float(p[i].double))))) }
    default: break
    }
}
