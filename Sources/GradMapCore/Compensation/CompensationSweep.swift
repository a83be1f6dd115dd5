// The compensation's passes, shared. Today's parts cost passes of their own: the layer means two calibration
// passes, the sums an original and a pruned pass, auto's validation one pass per (candidate, α) and one
// without. Here the means come from the calibration-loss passes the job runs anyway (CompensationMeans);
// the sums from one forward that runs the layers the original and the pruned model share (those before the
// first removed layer) once and then both models side by side, only up to the last candidate, no lm_head;
// the validation losses from one sweep that runs the pruned model once per validation window, keeps the
// hidden state entering each candidate layer, and runs each (candidate, α) only from its layer on, P folded
// in for that variant alone. Every float is computed by the same calls on the same inputs as the separate
// passes do (the same micro-batches, the same fold, the same head), so the choices, losses and written
// tensors are the same bits (CompensationSweepTests).
import Foundation
import GradMapDistributed
import GradMapEngine
import GradMapFormats
import GradMapKernels
import GradMapPruning
import GradMapRuntime
import GradMapSupport

/// Which passes the compensation runs: the shared ones (the job's), or each part's own (kept for the tests
/// that compare them).
public enum CompensationPasses: Sendable {
    case shared, separate

    /// `GRADMAP_COMPENSATION_PASSES=separate` makes a job run the separate passes: the tests' reference for
    /// whole multi-rank jobs (CompensationSweepTests). Anything else: shared.
    static var fromEnvironment: CompensationPasses {
        ProcessInfo.processInfo.environment["GRADMAP_COMPENSATION_PASSES"] == "separate" ? .separate : .shared
    }
}

/// Per-layer sums of the hidden state after each layer, [L × H] on this rank, filled by a pass's tap.
public final class HiddenSums: @unchecked Sendable {
    let hidden: Int
    var values: [Double]

    init(layers: Int, hidden: Int) {
        self.hidden = hidden
        values = [Double](repeating: 0, count: layers * hidden)
    }

    /// Runs inside every calibration-loss pass of a compensated job: one pointer for the whole layer's rows
    /// (not an exclusivity-checked array access per element); the same additions in the same order.
    func add(_ tap: LayerTap<Float>) {
        let h = hidden, base = tap.layer * h
        values.withUnsafeMutableBufferPointer { v in
            let sums = v.baseAddress! + base
            for t in 0..<tap.rows {
                let row = tap.out + t * h
                for i in 0..<h { sums[i] += Double(row[i]) }
            }
        }
    }
}

/// The layer sums of the original and the pruned model over the calibration windows, taken during the
/// job's calibration-loss passes (same windows, same micro-batches as the compensation's own passes).
public final class CompensationMeans: @unchecked Sendable {
    public let original: HiddenSums
    public let pruned: HiddenSums

    public init(_ config: ModelConfig) {
        original = HiddenSums(layers: config.layers, hidden: config.hidden)
        pruned = HiddenSums(layers: config.layers, hidden: config.hidden)
    }
}

extension Pruner {
    /// The calibration loss of the current model (as loss()), adding every layer's output to `sums`.
    public func loss(adding sums: HiddenSums?) throws -> Double {
        guard let sums else { return try loss() }
        return try pipeline.run(data: data, windows: calibration, microBatch: options.microBatch, pass: pass(), tap: { sums.add($1) }).loss
    }
}

/// Wall seconds of consecutive parts of a computation, for the report.
struct PartClock {
    private var last = DispatchTime.now()
    private(set) var laps: [(String, Double)] = []

    mutating func lap(_ part: String) {
        let now = DispatchTime.now()
        laps.append((part, elapsed(since: last)))
        last = now
    }
}

extension Compensation {
    /// The stage holding a layer (original index).
    func stageOf(_ layer: Int) -> Int { pipeline.placement.layerRanges.firstIndex { $0.contains(layer) }! }

    /// sums(_:) in one forward: per micro-batch (the chunks of sums(_:)), the layers before the first removed
    /// one run once, then the original and the pruned model each run their layers up to the last candidate,
    /// and each candidate's terms are added right after both ran it. Stages after the last candidate's idle.
    func sharedSums(_ candidates: [Int]) throws -> [Int: [Double]] {
        let h = config.hidden, t = seqLen
        let width = 2 * h * h + 2
        var sums = [Int: [Double]]()
        for c in candidates { sums[c] = [Double](repeating: 0, count: width) }
        let stage = pipeline.stage, pipe = pipeline.pipe
        let s = pipeline.me.stage
        let last = candidates.max()!
        let lastStage = stageOf(last)
        let layers = stage.params.part.layers
        let removed = Set(0..<config.layers).subtracting(kept)
        let wanted = Set(candidates)
        if s <= lastStage {
            // The two models' hidden states differ from the first removed layer on; until then one is sent.
            let splitIn = removed.contains { $0 < layers.lowerBound }
            let splitOut = removed.contains { $0 < layers.upperBound }
            let block = microBatch * t * h
            let received = Buffer<F>(count: (splitIn ? 2 : 1) * block)
            let sendBuffers = (0..<2).map { _ in Buffer<F>(count: (splitOut ? 2 : 1) * block) }
            var sends = [Communicator.Request?](repeating: nil, count: 2)
            stage.progress = { for r in sends { _ = try? r?.test() } }
            defer { stage.progress = nil }
            // Two ping-pong buffers per model.
            let scratch = (0..<4).map { _ in Buffer<F>(count: block) }
            let ids = Buffer<UInt32>(count: microBatch * t, zero: 0)
            let rd = Buffer<Double>(count: block), zd = Buffer<Double>(count: block)
            let chunk = microBatch * pipeline.placement.replicas
            var start = 0, i = 0
            while start < calibration.count {
                let list = pipeline.share(Array(calibration[start..<min(start + chunk, calibration.count)]))
                start += chunk
                guard !list.isEmpty else { continue }
                let b = list.count, n = b * t * h
                var o: UnsafeMutablePointer<F>, p: UnsafeMutablePointer<F>
                if s == 0 {
                    data.gather(list, into: ids.pointer)
                    o = received.pointer
                    embeddingForward(o, ids.pointer, stage.params.value("model.embed_tokens.weight"), n: b * t, h: h)
                    p = o
                } else {
                    try pipe.recv(received.pointer, count: (splitIn ? 2 : 1) * n, from: s - 1, tag: i)
                    o = received.pointer
                    p = splitIn ? received.pointer + n : o
                }
                // The original model ping-pongs through scratch 0 and 1, the pruned one through 2 and 3.
                var nextO = 0, nextP = 2
                func run(_ l: Int, _ from: UnsafeMutablePointer<F>, _ k: inout Int) -> UnsafeMutablePointer<F> {
                    let out = scratch[k].pointer
                    k ^= 1
                    stage.layerForward(l, b: b, inp: from, out: out, x: stage.internalsFor(slot: 0, layer: l), precision: pruned.precision)
                    stage.progress?()
                    return out
                }
                for l in layers where l <= last {
                    if o == p && kept.contains(l) {
                        o = run(l, o, &nextO)
                        p = o
                    } else {
                        if o == p {  // the first removed layer: the pruned state moves to its own buffers
                            scratch[nextP].pointer.update(from: p, count: n)
                            p = scratch[nextP].pointer
                            nextP ^= 1
                        }
                        o = run(l, o, &nextO)
                        if kept.contains(l) { p = run(l, p, &nextP) }
                    }
                    if wanted.contains(l) {
                        // The pruned model ran l last: the internals hold its u.
                        let x = stage.internalsFor(slot: 0, layer: l)
                        addSums(&sums[l]!, tap: LayerTap(layer: l, rows: b * t, inp: p, u: x.u.pointer, out: p), y: o, rd: rd, zd: zd)
                    }
                }
                if s < lastStage {
                    let out = sendBuffers[i % 2]
                    if let pending = sends[i % 2] { try pending.wait() }
                    out.pointer.update(from: o, count: n)
                    if splitOut { (out.pointer + n).update(from: p, count: n) }
                    sends[i % 2] = try pipe.isend(out.pointer, count: (splitOut ? 2 : 1) * n, to: s + 1, tag: i, storage: out)
                }
                i += 1
            }
            for r in sends { try r?.wait() }
        }
        for c in candidates {
            try sums[c]!.withUnsafeMutableBufferPointer { try pipeline.world.reduceSum($0.baseAddress!, count: width, root: 0) }
        }
        return sums
    }
}

extension Compensation {
    /// The baseline validation loss and each solution's (folded into layers[k]), in one sweep. Per stage, in
    /// the same order on every rank: the pruned model on every validation window (this replica's share, in
    /// micro-batches), keeping the input of each candidate layer the stage holds (V/R × T × H floats per
    /// candidate); then per solution, on the stage holding its layer, P folded in, the windows run from that
    /// layer to the stage's end from the kept inputs, P taken out again; later stages run their layers on
    /// what they receive; the last takes the loss. Earlier stages have nothing to do for that solution, so on
    /// a tied model the first stage (which holds the output matrix as its embedding) takes some rows' heads
    /// off the last one (headsOnFirstStage): their final hidden states go to it, and it takes the loss.
    /// Each P reaches the ranks holding its layer from rank 0 before the sweep (distribute).
    func validationSweep(layers: [Int], solutions: [[Double]], storage: DType) throws -> ValidationLosses {
        let stage = pipeline.stage, pipe = pipeline.pipe
        let t = seqLen, h = config.hidden
        let s = pipeline.me.stage, stages = pipeline.placement.stages
        let active = stage.active(pruned)
        let mine = pipeline.share(validation)
        let m = (mine.count + microBatch - 1) / microBatch
        let block = microBatch * t * h
        let received = Buffer<F>(count: block)
        let sendBuffers = (0..<2).map { _ in Buffer<F>(count: block) }
        var sends = [Communicator.Request?](repeating: nil, count: 2)
        defer { stage.progress = nil }
        let scratch = (Buffer<F>(count: block), Buffer<F>(count: block))
        let ids = Buffer<UInt32>(count: microBatch * t, zero: 0)
        // The pruned model's hidden state entering each of this stage's candidate layers, every window of mine.
        var entering = [Int: Buffer<F>]()
        for c in Set(layers) where stageOf(c) == s { entering[c] = Buffer(count: max(1, mine.count * t * h)) }
        // Every solution this stage folds, here before the first job: no collective between solutions, so
        // a stage goes on to the next solution while the later ones still run the previous.
        let ps = try distribute(solutions, layers: layers)
        // Row 0: the pruned model; row 1 + k: solution k.
        var nll = WindowSums(rows: 1 + layers.count, windows: validation.count)
        // One tag for the whole sweep: both ends walk the same jobs in the same order, and MPI keeps the
        // order of messages between two ranks with one tag.
        let tag = 7
        // The first stage's share of the heads, and what it needs for them: the final norm's weight (from
        // the last stage) and a head's scratch. The last stage hands a row's final states over from a buffer
        // of the whole row, two of them, so that it runs the next row while the first stage takes the losses.
        let headsFirst = headsOnFirstStage(layers: layers)
        let handOffTag = 8
        let borrowed = s == 0 && !headsFirst.isEmpty ? BorrowedHead<F>(config, b: microBatch, t: t) : nil
        let handOff = s == stages - 1 && !headsFirst.isEmpty ? (0..<2).map { _ in Buffer<F>(count: max(1, mine.count * t * h)) } : []
        var handOffSends: [[Communicator.Request]] = [[], []]
        var handOffs = 0
        stage.progress = {
            for r in sends { _ = try? r?.test() }
            for list in handOffSends { for r in list { _ = try? r.test() } }
        }
        if !headsFirst.isEmpty && s == stages - 1 {
            try pipe.isend(stage.params.value("model.norm.weight"), count: h, to: 0, tag: handOffTag, storage: stage.params).wait()
        }
        if let borrowed { try pipe.recv(borrowed.norm.pointer, count: h, from: stages - 1, tag: handOffTag) }

        /// One job over my windows: `body` runs a micro-batch's layers (its input: received or embedded) and
        /// returns the stage's output; the last stage takes the loss into `row`, the others send it on.
        func job(row: Int, receives: Bool, _ body: (Int, Int, UnsafeMutablePointer<F>) -> UnsafeMutablePointer<F>) throws {
            let handsOff = s == stages - 1 && headsFirst.contains(row)
            if handsOff {  // the buffer's previous row has reached the first stage
                for r in handOffSends[handOffs % 2] { try r.wait() }
                handOffSends[handOffs % 2] = []
            }
            defer { if handsOff { handOffs += 1 } }
            for i in 0..<m {
                let lo = mine.startIndex + i * microBatch
                let list = mine[lo..<min(lo + microBatch, mine.endIndex)]
                let b = list.count, n = b * t * h
                data.gather(list, into: ids.pointer)
                if receives { try pipe.recv(received.pointer, count: n, from: s - 1, tag: tag) }
                let out = body(i, b, received.pointer)
                if handsOff {
                    let buffer = handOff[handOffs % 2], at = buffer.pointer + i * microBatch * t * h
                    at.update(from: out, count: n)
                    handOffSends[handOffs % 2].append(try pipe.isend(at, count: n, to: 0, tag: handOffTag, storage: buffer))
                } else if s == stages - 1 {
                    let perWindow = stage.head(hidden: out, ids: ids.pointer, b: b, gradScale: nil, pass: pruned)
                    for (w, value) in perWindow.enumerated() { nll.add(value, row: row, slot: lo + w) }
                } else {
                    let buffer = sendBuffers[i % 2]
                    if let pending = sends[i % 2] { try pending.wait() }
                    buffer.pointer.update(from: out, count: n)
                    sends[i % 2] = try pipe.isend(buffer.pointer, count: n, to: s + 1, tag: tag, storage: buffer)
                }
            }
        }
        /// The first stage's part of a row whose head it runs: each micro-batch's final states, and the loss.
        func borrowedHeads(row: Int) throws {
            guard let borrowed, headsFirst.contains(row) else { return }
            for i in 0..<m {
                let lo = mine.startIndex + i * microBatch
                let list = mine[lo..<min(lo + microBatch, mine.endIndex)]
                data.gather(list, into: ids.pointer)
                try pipe.recv(received.pointer, count: list.count * t * h, from: stages - 1, tag: handOffTag)
                let perWindow = stage.head(hidden: received.pointer, ids: ids.pointer, b: list.count, pass: pruned, borrowed: borrowed)
                for (w, value) in perWindow.enumerated() { nll.add(value, row: row, slot: lo + w) }
            }
        }
        // The pruned model, as Pipeline.run computes it (slot 0's buffers), keeping the candidates' inputs.
        try job(row: 0, receives: s > 0) { i, b, input in
            let n = b * t * h
            if s == 0 { stage.embed(ids: ids.pointer, b: b, slot: 0, pass: pruned) } else {
                stage.inputBuffer(slot: 0, pass: pruned).update(from: input, count: n)
            }
            stage.forwardLayers(b: b, slot: 0, pass: pruned)
            for (c, store) in entering {
                (store.pointer + i * microBatch * t * h).update(from: stage.inputs[0][stage.localIndex(c)].pointer, count: n)
            }
            return stage.outputBuffer(slot: 0)
        }
        try borrowedHeads(row: 0)
        for k in layers.indices {
            let c = layers[k]
            if s == stageOf(c) {
                let old = fold(received: ps[k]!, layer: c, storage: storage)
                let at = active.firstIndex(of: c)!
                try job(row: 1 + k, receives: false) { i, b, _ in
                    stage.runLayers(active[at...], b: b, from: entering[c]!.pointer + i * microBatch * t * h,
                                    scratch: (scratch.0.pointer, scratch.1.pointer), precision: pruned.precision)
                }
                restore(old, layer: c)
            } else if s > stageOf(c) {
                try job(row: 1 + k, receives: true) { _, b, input in
                    stage.runLayers(active[...], b: b, from: input, scratch: (scratch.0.pointer, scratch.1.pointer),
                                    precision: pruned.precision)
                }
            }
            try borrowedHeads(row: 1 + k)
        }
        for r in sends { try r?.wait() }
        for list in handOffSends { for r in list { try r.wait() } }
        let (table, totals) = try nll.reduced(over: pipeline.world)
        let predictions = Double(validation.count * (t - 1))
        let v = validation.count
        let perWindow = Double(t - 1)
        let rows: [[Double]] = (0...layers.count).map { r in (0..<v).map { w in table[r * v + w] / perWindow } }
        return ValidationLosses(baseline: rows[0], solutions: Array(rows.dropFirst()),
                                baselineMean: totals[0] / predictions, solutionMeans: totals.dropFirst().map { $0 / predictions },
                                headsOnFirstStage: headsFirst.count)
    }

    /// The sweep's rows (0: the pruned model, 1 + k: solution k) whose head the first stage runs, on a tied
    /// model in stages: in sweep order each row's head goes to whichever of the first and the last stage has
    /// had less forward work so far (Placement's FLOPs per token: the layers each runs for the row, the head
    /// on the one that takes it). The same set on every rank; empty on one stage or an untied model.
    func headsOnFirstStage(layers: [Int]) -> Set<Int> {
        let ranges = pipeline.placement.layerRanges
        guard ranges.count > 1, config.tieEmbeddings else { return [] }
        let layerCost = Placement.forwardFlopsPerToken(config, StagePart(layers: 0..<1, embedding: false, head: false), seqLen: seqLen)
        let headCost = Placement.forwardFlopsPerToken(config, StagePart(layers: 0..<0, embedding: false, head: true), seqLen: seqLen)
        let first = ranges[0], last = ranges[ranges.count - 1]
        func runs(_ range: Range<Int>, from layer: Int) -> Double {
            Double(pruned.layers.filter { range.contains($0) && $0 >= layer }.count) * layerCost
        }
        var firstLoad = runs(first, from: 0), lastLoad = runs(last, from: 0)
        var rows = Set<Int>()
        for row in 0...layers.count {
            if row > 0 {
                firstLoad += runs(first, from: layers[row - 1])
                lastLoad += runs(last, from: layers[row - 1])
            }
            if firstLoad < lastLoad {
                rows.insert(row)
                firstLoad += headCost
            } else {
                lastLoad += headCost
            }
        }
        return rows
    }

    /// Each solution in float32 on the ranks whose stage holds its layer (one per replica), before the sweep:
    /// rank 0, which solved them, sends them; the others receive theirs. Solution index → P on this rank.
    /// The same float32 values broadcast() gives, held only where they are folded.
    func distribute(_ solutions: [[Double]], layers: [Int]) throws -> [Int: [F]] {
        let hh = config.hidden * config.hidden
        let world = pipeline.world, placement = pipeline.placement, s = pipeline.me.stage
        var mine = [Int: [F]]()
        if world.rank == 0 {
            var sends: [Communicator.Request] = []
            for (k, p) in solutions.enumerated() {
                let pf = Buffer<F>(count: hh)
                for e in 0..<hh { pf.pointer[e] = F(p[e]) }
                let owner = stageOf(layers[k])
                for r in 1..<world.size where placement.placement(rank: r).stage == owner {
                    sends.append(try world.isend(pf.pointer, count: hh, to: r, tag: k, storage: pf))
                }
                if s == owner { mine[k] = Array(UnsafeBufferPointer(start: pf.pointer, count: hh)) }
            }
            for r in sends { try r.wait() }
        } else {
            for k in layers.indices where stageOf(layers[k]) == s {
                var p = [F](repeating: 0, count: hh)
                try p.withUnsafeMutableBufferPointer { try world.recv($0.baseAddress!, count: hh, from: 0, tag: k) }
                mine[k] = p
            }
        }
        return mine
    }
}
