// The calibration loss of the current model with each of several candidate layers removed, in one forward
// sweep that reuses activations as SLEB does: a micro-batch's hidden states up to a candidate are computed
// once, and only the layers after it run again for that candidate. In the pipeline each stage receives the
// base hidden state plus one variant per candidate of an earlier stage, runs its layers on each, branches
// off one variant per candidate it holds (from that candidate's input), and sends them all on; the last
// stage takes the loss of every variant. Cost per micro-batch ≈ L + Σ_c (layers after c) layer forwards,
// instead of L per candidate.
import Foundation
import GradMapData
import GradMapEngine
import GradMapRuntime
import GradMapSupport

extension Pipeline {
    /// Mean calibration loss of the model of `pass` (forward only) with each candidate (original index, one
    /// of its layers) removed, in the order given; identical on every rank.
    @_specialize(where F == Float)  // the pruner (another module) runs it on the Float pipeline
    public func sweep(data: TokenWindows, windows: [Int], microBatch: Int, pass: Pass, candidates: [Int]) throws -> [Double] {
        precondition(!pass.backward, "the candidate sweep is forward only")
        let cands = candidates.sorted()
        let t = stage.seqLen, h = stage.config.hidden
        let s = me.stage, stages = placement.stages
        let active = stage.active(pass)
        let precision = pass.precision
        let mine = share(windows)
        let m = (mine.count + microBatch - 1) / microBatch
        let owner = { (c: Int) in self.placement.layerRanges.firstIndex { $0.contains(c) }! }
        // Variants entering this stage: base + candidates of earlier stages; leaving: + this stage's.
        let incoming = cands.filter { owner($0) < s }
        let local = cands.filter { owner($0) == s }
        let outgoing = incoming + local
        let block = microBatch * t * h
        let received = Buffer<F>(count: max(1, (1 + incoming.count) * block))
        let sendBuffers = (0..<2).map { _ in Buffer<F>(count: max(1, (1 + outgoing.count) * block)) }
        var sends = [Communicator.Request?](repeating: nil, count: 2)
        stage.progress = { for r in sends { _ = try? r?.test() } }
        defer { stage.progress = nil }
        let scratch = (Buffer<F>(count: block), Buffer<F>(count: block))
        let ids = Buffer<UInt32>(count: microBatch * t, zero: 0)
        var nll = WindowSums(rows: cands.count, windows: windows.count)
        for i in 0..<m {
            let lo = mine.startIndex + i * microBatch
            let list = mine[lo..<min(lo + microBatch, mine.endIndex)]
            let b = list.count, n = b * t * h
            data.gather(list, into: ids.pointer)
            let inputCount = (1 + incoming.count) * n
            let base = stage.inputBuffer(slot: 0, pass: pass)
            if s == 0 {
                stage.embed(ids: ids.pointer, b: b, slot: 0, pass: pass)
            } else {
                try pipe.recv(received.pointer, count: inputCount, from: s - 1, tag: 2 * i)
                base.update(from: received.pointer, count: n)
            }
            let out = sendBuffers[i % 2]
            if let pending = sends[i % 2] { try pending.wait() }
            // Base: the current model, keeping every layer's input for the branches below.
            stage.forwardLayers(b: b, slot: 0, pass: pass)
            out.pointer.update(from: stage.outputBuffer(slot: 0), count: n)
            // Variants of earlier candidates run through all of this stage's layers.
            for (k, _) in incoming.enumerated() {
                let r = stage.runLayers(active[...], b: b, from: received.pointer + (1 + k) * n, scratch: (scratch.0.pointer, scratch.1.pointer),
                    precision: precision)
                (out.pointer + (1 + k) * n).update(from: r, count: n)
            }
            // This stage's candidates branch off from their own input.
            for (k, c) in local.enumerated() {
                let at = active.firstIndex(of: c)!
                let start = stage.inputs[0][stage.localIndex(c)].pointer
                let r = stage.runLayers(active[(at + 1)...], b: b, from: start, scratch: (scratch.0.pointer, scratch.1.pointer),
                    precision: precision)
                (out.pointer + (1 + incoming.count + k) * n).update(from: r, count: n)
            }
            if s == stages - 1 {
                for v in 0..<outgoing.count {
                    let perWindow = stage.head(hidden: out.pointer + (1 + v) * n, ids: ids.pointer, b: b, gradScale: nil, pass: pass)
                    for (w, value) in perWindow.enumerated() { nll.add(value, row: v, slot: lo + w) }
                }
            } else {
                sends[i % 2] = try pipe.isend(out.pointer, count: (1 + outgoing.count) * n, to: s + 1, tag: 2 * i, storage: out)
            }
        }
        for r in sends { try r?.wait() }
        let total = try nll.totals(over: world)
        let predictions = Double(windows.count * (t - 1))
        let byLayer = Dictionary(uniqueKeysWithValues: zip(cands, total.map { $0 / predictions }))
        return candidates.map { byLayer[$0]! }
    }
}
