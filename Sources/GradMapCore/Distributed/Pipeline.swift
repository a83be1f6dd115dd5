// The distributed schedule. Each replica's windows are cut into micro-batches of B windows; each stage runs
// one-forward-one-backward (PipeDream-flush 1F1B): stage s first runs S-s-1 forwards, then alternates one
// forward and one backward, then drains the backwards — so at most S micro-batches of activations are alive
// on a stage. Activations [B, T, H] go forward and dL/dh goes back with non-blocking sends (a send buffer is
// only reused after its send completed) and blocking receives. Then the loss is summed over the world and
// the gradients over replicas; every sum has a fixed order, so results do not depend on timing.
import Foundation
import GradMapData
import GradMapEngine
import GradMapFormats
import GradMapKernels
import GradMapRuntime
import GradMapSupport

public struct PipelineTimings: Sendable {
    /// Wall time of the schedule on this rank.
    public var total = 0.0
    /// Time blocked waiting for a neighbour (receives and send completions): the pipeline bubble.
    public var waiting = 0.0
    /// Time in the gradient all-reduce across replicas.
    public var reducing = 0.0
    public var bytesSent = 0
    public var microBatches = 0
}

public final class Pipeline<F: Real & MPIScalar>: @unchecked Sendable {
    public let world: Communicator
    /// The ranks of this replica's pipeline, ordered by stage.
    public let pipe: Communicator
    /// The ranks holding the same stage in every replica, ordered by replica.
    public let peers: Communicator
    public let placement: Placement
    public let me: RankPlacement
    public let stage: Stage<F>
    /// The products' arithmetic this job was asked for (--matmul): the precision of the passes it builds.
    public let matmul: MatmulPrecision
    public private(set) var timings = PipelineTimings()

    public init(world: Communicator, placement: Placement, stage: Stage<F>, matmul: MatmulPrecision = .f32) throws {
        self.world = world
        self.matmul = matmul
        self.placement = placement
        me = placement.placement(rank: world.rank)
        self.stage = stage
        if world.size == 1 {
            pipe = .solo
            peers = .solo
        } else {
            pipe = try world.split(color: me.replica, key: me.stage)
            peers = try world.split(color: me.stage, key: me.replica)
        }
    }

    /// Loads this rank's share of the checkpoint (its tensors only) and builds its stage.
    public static func load(
        world: Communicator, checkpoint ckpt: Checkpoint, stages: Int?, seqLen: Int, microBatch: Int,
        training: Bool, policy: ActivationPolicy = .store, weights: WeightFormat = .f32, balance: Balance = .compute,
        matmul: MatmulPrecision = .f32
    ) throws -> Pipeline<F> {
        let c = ckpt.config
        let placement = try Placement(config: c, ranks: world.size, stages: stages, balance: balance, seqLen: seqLen)
        try ckpt.checkNoUnexpectedTensors()
        let me = placement.placement(rank: world.rank)
        try ckpt.checkShapes(ParamLayout.specs(c, part: me.part))
        let params = ParameterSet<F>(config: c, part: me.part, weights: weights)
        try params.load(from: ckpt)
        let stage = Stage(
            config: c, params: params, seqLen: seqLen, maxBatch: microBatch,
            slots: training ? placement.stages : 1, policy: policy, training: training)
        return try Pipeline(world: world, placement: placement, stage: stage, matmul: matmul)
    }

    /// A pass over the model made of `layers` (original indices; default every layer) in this job's arithmetic.
    public func pass(_ gradients: Pass.Gradients = .none, layers: Set<Int>? = nil) -> Pass {
        Pass(layers: layers ?? Set(0..<stage.config.layers), gradients: gradients, precision: matmul)
    }

    /// This replica's windows: a contiguous, balanced share of the list.
    public func share(_ windows: [Int]) -> ArraySlice<Int> {
        let r = placement.replicas, w = windows.count
        return windows[(me.replica * w / r)..<((me.replica + 1) * w / r)]
    }

    /// Mean loss over all windows (on every rank), the windows' NLLs added in list order whatever the split
    /// (WindowSums), of the model and with the gradients `pass` describes. With gradients, params.grads holds
    /// ∂loss/∂θ of this stage (the part the pass asks for, the rest zero), summed over replicas.
    /// `observe` and `tap` see each micro-batch's windows (a slice of `windows`, indexed by position in it)
    /// with each layer's backward and forward (the activation metrics).
    public func run(
        data: TokenWindows, windows: [Int], microBatch: Int, pass: Pass,
        observe: ((ArraySlice<Int>, Int, Int, UnsafePointer<F>, UnsafePointer<F>) -> Void)? = nil,
        tap: ((ArraySlice<Int>, LayerTap<F>) -> Void)? = nil,
        onLogits: ((Int, UnsafePointer<F>) -> Void)? = nil
    ) throws -> LossResult {
        let start = DispatchTime.now().uptimeNanoseconds
        let backward = pass.backward
        timings = PipelineTimings()
        let t = stage.seqLen, h = stage.config.hidden
        let s = me.stage, stages = placement.stages
        let mine = share(windows)
        let m = (mine.count + microBatch - 1) / microBatch
        timings.microBatches = m
        let slots = stage.inputs.count
        let ids = (0..<slots).map { _ in Buffer<UInt32>(count: microBatch * t, zero: 0) }
        var forwardSends = [Communicator.Request?](repeating: nil, count: slots)
        var backwardSend: Communicator.Request? = nil
        // Between layers, poke the pending sends: a large message moves only while its sender is in MPI,
        // and the next stage is waiting for it.
        stage.progress = {
            for r in forwardSends { _ = try? r?.test() }
            _ = try? backwardSend?.test()
        }
        defer { stage.progress = nil }
        let scale = F(1.0 / Double(windows.count * (t - 1)))
        if backward { stage.params.grads!.zero() }
        var nll = WindowSums(rows: 1, windows: windows.count)

        func batch(_ i: Int) -> (ArraySlice<Int>, Int) {
            let lo = mine.startIndex + i * microBatch
            let hi = min(lo + microBatch, mine.endIndex)
            return (mine[lo..<hi], hi - lo)
        }
        func timedWait(_ body: () throws -> Void) rethrows {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try body()
            timings.waiting += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        }
        func forward(_ i: Int) throws {
            let slot = i % slots
            let (list, b) = batch(i)
            data.gather(list, into: ids[slot].pointer)
            if let pending = forwardSends[slot] { try timedWait { try pending.wait() } }
            if s == 0 {
                stage.embed(ids: ids[slot].pointer, b: b, slot: slot, pass: pass)
            } else {
                let input = stage.inputBuffer(slot: slot, pass: pass)
                try timedWait { try pipe.recv(input, count: b * t * h, from: s - 1, tag: 2 * i) }
            }
            stage.forwardLayers(b: b, slot: slot, pass: pass, tap: tap.map { f in { f(list, $0) } })
            if s == stages - 1 {
                let base = list.startIndex
                if backward, let pending = backwardSend { try timedWait { try pending.wait() }; backwardSend = nil }
                let perWindow = stage.head(
                    ids: ids[slot].pointer, b: b, slot: slot, gradScale: backward ? scale : nil, pass: pass,
                    onLogits: onLogits.map { f in { w, p in f(mine[base + w], p) } })
                for (w, value) in perWindow.enumerated() { nll.add(value, row: 0, slot: base + w) }
            } else {
                forwardSends[slot] = try pipe.isend(
                    stage.outputBuffer(slot: slot), count: b * t * h, to: s + 1, tag: 2 * i, storage: stage)
                timings.bytesSent += b * t * h * MemoryLayout<F>.size
            }
        }
        func backwardStep(_ i: Int) throws {
            let slot = i % slots
            let (list, b) = batch(i)
            if s < stages - 1 {
                if let pending = backwardSend { try timedWait { try pending.wait() }; backwardSend = nil }
                try timedWait { try pipe.recv(stage.dresidual.pointer, count: b * t * h, from: s + 1, tag: 2 * i + 1) }
            }
            stage.backwardLayers(b: b, slot: slot, pass: pass, observe: observe.map { f in { f(list, $0, $1, $2, $3) } })
            if s == 0 {
                stage.embedBackward(ids: ids[slot].pointer, b: b, pass: pass)
            } else {
                backwardSend = try pipe.isend(
                    stage.dresidual.pointer, count: b * t * h, to: s - 1, tag: 2 * i + 1, storage: stage.dresidual)
                timings.bytesSent += b * t * h * MemoryLayout<F>.size
            }
        }

        if backward {
            let warmup = min(stages - s - 1, m)
            for i in 0..<warmup { try forward(i) }
            for i in warmup..<m {
                try forward(i)
                try backwardStep(i - warmup)
            }
            for i in max(m - warmup, 0)..<m { try backwardStep(i) }
        } else {
            for i in 0..<m { try forward(i) }
        }
        for r in forwardSends { try r.map { req in try timedWait { try req.wait() } } }
        if let r = backwardSend { try timedWait { try r.wait() } }
        timings.total = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9

        if backward {
            let r0 = DispatchTime.now().uptimeNanoseconds
            try reduceGradients(pass.gradients)
            timings.reducing = Double(DispatchTime.now().uptimeNanoseconds - r0) / 1e9
        }
        // Only last stages hold NLL; the total and every window's sum are the same on every rank.
        let (perWindow, totals) = try nll.reduced(over: world)
        return LossResult(windows: windows.count, seqLen: t, nll: totals[0], windowNLL: perWindow)
    }

    /// Every rank's timings and peak memory, on rank 0 (empty elsewhere), in rank order.
    public func gatherRankStats() throws -> [JSONValue] {
        let mine: [Double] = [
            Double(world.rank), Double(me.stage), Double(me.replica), Double(stage.params.part.layers.lowerBound),
            Double(stage.params.part.layers.upperBound), timings.total, timings.waiting, timings.reducing,
            Double(timings.bytesSent), Double(timings.microBatches), Double(ProcessMemory.peakResidentBytes()),
            Double(stage.params.count * MemoryLayout<F>.size), Double(stage.params.weightBytes),
        ]
        let all = try world.gather(mine, root: 0)
        return stride(from: 0, to: all.count, by: mine.count).map { i in
            let v = Array(all[i..<(i + mine.count)])
            return .object([
                ("rank", .int(Int(v[0]))), ("stage", .int(Int(v[1]))), ("replica", .int(Int(v[2]))),
                ("layers", .array((Int(v[3])..<Int(v[4])).map { .int($0) })),
                ("seconds", .double(v[5])), ("waiting_seconds", .double(v[6])), ("reduce_seconds", .double(v[7])),
                ("bubble", .double(v[5] > 0 ? v[6] / v[5] : 0)), ("bytes_sent", .int(Int(v[8]))),
                ("micro_batches", .int(Int(v[9]))), ("peak_rss_bytes", .int(Int(v[10]))),
                ("parameter_bytes", .int(Int(v[11]))), ("weight_bytes", .int(Int(v[12]))),
            ])
        }
    }

    /// Sums gradients over replicas; with tied embeddings split across stages, the first and last stage
    /// each hold part of the embedding's gradient and exchange them so both hold the sum.
    func reduceGradients(_ gradients: Pass.Gradients) throws {
        let grads = stage.params.grads!
        // Activation-gradient metrics leave every weight gradient zero: nothing to reduce.
        guard gradients != .activations else { return }
        if gradients == .layerMatrices {
            // Only the decoder layers' tensors (contiguous in the layout) carry gradients; the tied
            // embedding has none to exchange.
            let layers = stage.params.specs.filter { $0.layer != nil }
            if let first = layers.first, let last = layers.last {
                try peers.allReduceSum(grads.pointer + first.offset, count: last.offset + last.count - first.offset)
            }
            return
        }
        try peers.allReduceSum(grads.pointer, count: grads.count)
        let c = stage.config
        guard c.tieEmbeddings, placement.stages > 1, me.stage == 0 || me.stage == placement.stages - 1 else { return }
        let g = stage.params.grad("model.embed_tokens.weight")
        let n = c.vocabSize * c.hidden
        let other = Buffer<F>(count: n)
        let peer = me.stage == 0 ? placement.stages - 1 : 0
        let req = try pipe.isend(g, count: n, to: peer, tag: 1 << 28, storage: stage.params)
        try pipe.recv(other.pointer, count: n, from: peer, tag: 1 << 28)
        try req.wait()
        // Add in a fixed order (first stage's part + last stage's part) so both ranks hold identical sums.
        if me.stage == 0 { for i in 0..<n { g[i] = g[i] + other[i] } } else { for i in 0..<n { g[i] = other[i] + g[i] } }
    }
}
