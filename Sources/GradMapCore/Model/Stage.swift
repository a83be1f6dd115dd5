// One pipeline stage of a LLaMA-family decoder: a contiguous block of layers, plus the embedding on the first
// stage and final norm + lm_head + loss on the last. The single-process engine is one stage holding
// everything; the MPI schedule drives several through the same entry points:
//   embed → forwardLayers → head (loss, dL/dh) → backwardLayers → embedBackward.
// Gradients accumulate into params.grads across micro-batches; zeroing them is the caller's step.
import GradMapFormats
import GradMapKernels
import GradMapRuntime
import GradMapSupport

public final class Stage<F: Real>: @unchecked Sendable {
    public let config: ModelConfig
    public let params: ParameterSet<F>
    public let seqLen: Int
    public let maxBatch: Int
    public let policy: ActivationPolicy
    /// Called between layers (forward and backward) so the pipeline can drive its pending transfers.
    public var progress: (() -> Void)? = nil

    let rope: RopeTables<F>
    /// inputs[slot][i] = h entering part.layers[i], [N, H]; outputs[slot] = h leaving the stage, [N, H].
    package let inputs: [[Buffer<F>]]
    let outputs: [Buffer<F>]
    /// internals[slot][i] (store) or a single shared set (recompute).
    let internals: [[LayerInternals<F>]]
    let back: BackwardScratch<F>?
    let head: HeadScratch<F>?
    /// The gradient flowing along the residual stream, [N, H]; dL/dh at the stage's input after backward.
    public let dresidual: Buffer<F>
    let attP: Buffer<F>  // [workers, T, T]
    let attD: Buffer<F>  // [workers, T, T]
    /// Threads the attention may use (one T×T scratch each), fixed when the stage is built.
    let attentionWorkers: Int

    public init(
        config: ModelConfig, params: ParameterSet<F>, seqLen t: Int, maxBatch b: Int,
        slots: Int = 1, policy: ActivationPolicy = .store, training: Bool = true
    ) {
        self.config = config
        self.params = params
        seqLen = t
        maxBatch = b
        self.policy = training ? policy : .recompute
        rope = RopeTables(invFreq: config.rope.inverseFrequencies(headDim: config.headDim), seqLen: t)
        let n = b * t
        let count = params.part.layers.count
        inputs = (0..<slots).map { _ in (0..<count).map { _ in Buffer(count: n * config.hidden) } }
        outputs = (0..<slots).map { _ in Buffer(count: n * config.hidden) }
        if training && policy == .store {
            internals = (0..<slots).map { _ in (0..<count).map { _ in LayerInternals(config, b: b, t: t) } }
        } else {
            internals = [[LayerInternals(config, b: b, t: t)]]
        }
        back = training ? BackwardScratch(config, b: b, t: t) : nil
        head = params.part.head ? HeadScratch(config, b: b, t: t) : nil
        dresidual = Buffer(count: n * config.hidden)
        attentionWorkers = max(1, Parallel.workers)
        attP = Buffer(count: attentionWorkers * t * t)
        attD = Buffer(count: training ? attentionWorkers * t * t : 0)
        if training { params.enableGradients() }
    }

    /// Floats of activation memory a stage of this shape allocates (for planning and reports).
    public static func activationFloats(
        _ c: ModelConfig, part: StagePart, seqLen t: Int, maxBatch b: Int, slots: Int,
        policy: ActivationPolicy, training: Bool
    ) -> Int {
        let n = b * t
        let layers = part.layers.count
        var total = slots * (layers + 1) * n * c.hidden + n * c.hidden + 2 * max(1, Parallel.workers) * t * t
        let internalSets = (training && policy == .store) ? slots * layers : 1
        total += internalSets * LayerInternals<F>.floats(c, b: b, t: t)
        if training { total += BackwardScratch<F>.floats(c, b: b, t: t) }
        if part.head { total += 3 * n * c.hidden + n + t * c.vocabSize }
        return total
    }

    package func localIndex(_ layer: Int) -> Int { layer - params.part.layers.lowerBound }

    /// This stage's layers among the pass's, in order.
    package func active(_ pass: Pass) -> [Int] { pass.layers.filter { params.part.layers.contains($0) } }

    package func internalsFor(slot: Int, layer: Int) -> LayerInternals<F> {
        internals.count == 1 && internals[0].count == 1 ? internals[0][0] : internals[slot][localIndex(layer)]
    }

    /// Where the stage's input goes for a micro-batch: h_0 on the first stage, else what the previous sent.
    public func inputBuffer(slot: Int, pass: Pass) -> UnsafeMutablePointer<F> {
        if let first = active(pass).first { return inputs[slot][localIndex(first)].pointer }
        return outputs[slot].pointer
    }

    public func outputBuffer(slot: Int) -> UnsafeMutablePointer<F> { outputs[slot].pointer }

    // MARK: embedding

    /// h_0[N, H] of the micro-batch into the slot's input buffer.
    public func embed(ids: UnsafePointer<UInt32>, b: Int, slot: Int, pass: Pass) {
        let table = params.value("model.embed_tokens.weight")
        embeddingForward(inputBuffer(slot: slot, pass: pass), ids, table, n: b * seqLen, h: config.hidden)
    }

    /// dE += scatter of dresidual (dL/dh_0).
    public func embedBackward(ids: UnsafePointer<UInt32>, b: Int, pass: Pass) {
        guard pass.allWeightGradients else { return }
        embeddingBackward(params.grad("model.embed_tokens.weight"), dresidual.pointer, ids, n: b * seqLen, h: config.hidden)
    }

    // MARK: decoder layers

    /// Runs the active layers on the slot's input; the result is in outputBuffer(slot). `tap` sees each
    /// layer's input, residual after attention and output right after the layer ran.
    public func forwardLayers(b: Int, slot: Int, pass: Pass, tap: ((LayerTap<F>) -> Void)? = nil) {
        let active = active(pass)
        for (i, l) in active.enumerated() {
            let out = i + 1 < active.count ? inputs[slot][localIndex(active[i + 1])].pointer : outputs[slot].pointer
            let inp = inputs[slot][localIndex(l)].pointer
            let x = internalsFor(slot: slot, layer: l)
            layerForward(l, b: b, inp: inp, out: out, x: x, precision: pass.precision)
            tap?(LayerTap(layer: l, rows: b * seqLen, inp: inp, u: x.u.pointer, out: out))
            progress?()
        }
    }

    /// Backward through the active layers: dresidual holds dL/dh at the stage output on entry and dL/dh at
    /// the stage input on return. `observe(layer, rows, dOut, f)` sees, before each layer's backward,
    /// dL/dh_{l+1} and the layer's residual contribution f_l = h_{l+1} - h_l ([rows, H] each), for the
    /// activation-gradient metrics.
    public func backwardLayers(
        b: Int, slot: Int, pass: Pass,
        observe: ((Int, Int, UnsafePointer<F>, UnsafePointer<F>) -> Void)? = nil
    ) {
        let active = active(pass)
        let n = b * seqLen
        let h = config.hidden
        for (i, l) in active.enumerated().reversed() {
            let inp = inputs[slot][localIndex(l)].pointer
            let out = i + 1 < active.count ? inputs[slot][localIndex(active[i + 1])].pointer : outputs[slot].pointer
            let x = internalsFor(slot: slot, layer: l)
            if policy == .recompute {
                // Rebuild this layer's internals from its saved input; the output is not needed again.
                layerForward(l, b: b, inp: inp, out: back!.dln.pointer, x: x, precision: pass.precision)
            }
            if let observe {
                // f = out - inp, built in the dln scratch (free until the MLP backward below).
                let f = back!.dln.pointer
                for j in 0..<(n * h) { f[j] = out[j] - inp[j] }
                observe(l, n, dresidual.pointer, f)
            }
            layerBackward(l, b: b, inp: inp, x: x, pass: pass, first: i == 0)
            progress?()
        }
    }

    /// Runs `layers` (in order) on inp[N, H] without touching the stored activations of slot 0's later
    /// backward, ping-ponging between two scratch buffers; returns where the result is.
    @_specialize(where F == Float)  // called from CandidateSweep and the compensation (other modules)
    package func runLayers(
        _ layers: ArraySlice<Int>, b: Int, from inp: UnsafeMutablePointer<F>,
        scratch: (UnsafeMutablePointer<F>, UnsafeMutablePointer<F>), precision: MatmulPrecision
    ) -> UnsafeMutablePointer<F> {
        var current = inp
        var next = scratch.0
        for l in layers {
            let x = internalsFor(slot: 0, layer: l)
            layerForward(l, b: b, inp: current, out: next, x: x, precision: precision)
            progress?()
            current = next
            next = next == scratch.0 ? scratch.1 : scratch.0
        }
        return current
    }

    @_specialize(where F == Float)  // called from CandidateSweep and the compensation (other modules)
    package func layerForward(
        _ l: Int, b: Int, inp: UnsafeMutablePointer<F>, out: UnsafeMutablePointer<F>, x: LayerInternals<F>,
        precision matmul: MatmulPrecision
    ) {
        let c = config
        let t = seqLen, n = b * t, h = c.hidden, i = c.intermediate, qd = c.qDim, kvd = c.kvDim
        let w = params.layerWeights(l)
        let eps = F(c.rmsEps)
        rmsnormForward(x.ln1.pointer, x.rstd1.pointer, inp, w.ln1, n: n, c: h, eps: eps)
        linearForward(x.q.pointer, x.ln1.pointer, w.wq, w.bq, n: n, inDim: h, outDim: qd, precision: matmul)
        linearForward(x.k.pointer, x.ln1.pointer, w.wk, w.bk, n: n, inDim: h, outDim: kvd, precision: matmul)
        linearForward(x.v.pointer, x.ln1.pointer, w.wv, w.bv, n: n, inDim: h, outDim: kvd, precision: matmul)
        ropeApply(x.q.pointer, rope, n: n, heads: c.heads, hd: c.headDim, inverse: false)
        ropeApply(x.k.pointer, rope, n: n, heads: c.kvHeads, hd: c.headDim, inverse: false)
        attentionForward(
            out: x.att.pointer, lse: x.lse.pointer, q: x.q.pointer, k: x.k.pointer, v: x.v.pointer,
            scratch: attP.pointer, scratchSlots: attentionWorkers, b: b, t: t, nh: c.heads, nkv: c.kvHeads, hd: c.headDim)
        let u = x.u.pointer
        linearForward(u, x.att.pointer, w.wo, w.bo, n: n, inDim: qd, outDim: h, precision: matmul)
        addInPlace(u, inp, count: n * h)
        rmsnormForward(x.ln2.pointer, x.rstd2.pointer, u, w.ln2, n: n, c: h, eps: eps)
        linearForward(x.gate.pointer, x.ln2.pointer, w.wg, w.bg, n: n, inDim: h, outDim: i, precision: matmul)
        linearForward(x.up.pointer, x.ln2.pointer, w.wu, w.bu, n: n, inDim: h, outDim: i, precision: matmul)
        swigluForward(x.act.pointer, x.gate.pointer, x.up.pointer, count: n * i)
        linearForward(out, x.act.pointer, w.wd, w.bd, n: n, inDim: i, outDim: h, precision: matmul)
        addInPlace(out, u, count: n * h)
    }

    /// dresidual: dL/dh_{l+1} on entry, dL/dh_l on return; weight gradients accumulate. `first`: l is this
    /// stage's first active layer.
    func layerBackward(_ l: Int, b: Int, inp: UnsafeMutablePointer<F>, x: LayerInternals<F>, pass: Pass, first: Bool) {
        let c = config
        let t = seqLen, n = b * t, h = c.hidden, i = c.intermediate, qd = c.qDim, kvd = c.kvDim
        let w = params.layerWeights(l)
        let g = params.layerGrads(l)
        let matmul = pass.precision
        let keep = pass.layerWeightGradients, all = pass.allWeightGradients
        // Weight-gradient destinations, or nil to skip those products: G for the matrices, N for norms/biases.
        func G(_ p: UnsafeMutablePointer<F>?) -> UnsafeMutablePointer<F>? { keep ? p : nil }
        func N(_ p: UnsafeMutablePointer<F>?) -> UnsafeMutablePointer<F>? { all ? p : nil }
        // dL/dh_l of the model's first layer only feeds the embedding gradient.
        let needInputGrad = !(pass.gradients == .layerMatrices && params.part.embedding && first)
        let s = back!
        let dres = dresidual.pointer
        // MLP branch: h_{l+1} = u + down(act)
        linearBackward(
            dinp: s.dact.pointer, dweight: G(g.wd), dbias: N(g.bd), dout: dres, inp: x.act.pointer, weight: w.wd,
            n: n, inDim: i, outDim: h, accumulateInput: false, precision: matmul)
        swigluBackward(
            dgate: s.dgate.pointer, dup: s.dup.pointer, dact: s.dact.pointer, gate: x.gate.pointer,
            up: x.up.pointer, count: n * i)
        linearBackward(
            dinp: s.dln.pointer, dweight: G(g.wg), dbias: N(g.bg), dout: s.dgate.pointer, inp: x.ln2.pointer,
            weight: w.wg, n: n, inDim: h, outDim: i, accumulateInput: false, precision: matmul)
        linearBackward(
            dinp: s.dln.pointer, dweight: G(g.wu), dbias: N(g.bu), dout: s.dup.pointer, inp: x.ln2.pointer,
            weight: w.wu, n: n, inDim: h, outDim: i, accumulateInput: true, precision: matmul)
        rmsnormBackward(
            dinp: dres, dweight: N(g.ln2), dout: s.dln.pointer, inp: x.u.pointer, weight: w.ln2,
            rstd: x.rstd2.pointer, n: n, c: h)
        // Attention branch: u = h_l + o(att)
        linearBackward(
            dinp: s.datt.pointer, dweight: G(g.wo), dbias: N(g.bo), dout: dres, inp: x.att.pointer, weight: w.wo,
            n: n, inDim: qd, outDim: h, accumulateInput: false, precision: matmul)
        s.dk.zero()
        s.dv.zero()
        attentionBackward(
            dq: s.dq.pointer, dk: s.dk.pointer, dv: s.dv.pointer, dout: s.datt.pointer, q: x.q.pointer,
            k: x.k.pointer, v: x.v.pointer, out: x.att.pointer, lse: x.lse.pointer,
            scratchP: attP.pointer, scratchD: attD.pointer, scratchSlots: attentionWorkers, b: b, t: t, nh: c.heads,
            nkv: c.kvHeads, hd: c.headDim)
        ropeApply(s.dq.pointer, rope, n: n, heads: c.heads, hd: c.headDim, inverse: true)
        ropeApply(s.dk.pointer, rope, n: n, heads: c.kvHeads, hd: c.headDim, inverse: true)
        linearBackward(
            dinp: needInputGrad ? s.dln.pointer : nil, dweight: G(g.wq), dbias: N(g.bq), dout: s.dq.pointer, inp: x.ln1.pointer, weight: w.wq,
            n: n, inDim: h, outDim: qd, accumulateInput: false, precision: matmul)
        linearBackward(
            dinp: needInputGrad ? s.dln.pointer : nil, dweight: G(g.wk), dbias: N(g.bk), dout: s.dk.pointer, inp: x.ln1.pointer, weight: w.wk,
            n: n, inDim: h, outDim: kvd, accumulateInput: true, precision: matmul)
        linearBackward(
            dinp: needInputGrad ? s.dln.pointer : nil, dweight: G(g.wv), dbias: N(g.bv), dout: s.dv.pointer, inp: x.ln1.pointer, weight: w.wv,
            n: n, inDim: h, outDim: kvd, accumulateInput: true, precision: matmul)
        guard needInputGrad else { return }
        rmsnormBackward(
            dinp: dres, dweight: N(g.ln1), dout: s.dln.pointer, inp: inp, weight: w.ln1, rstd: x.rstd1.pointer,
            n: n, c: h)
    }

    // MARK: head

    /// Final norm, logits and next-token NLL of the micro-batch whose last hidden state is in outputBuffer(slot).
    /// Returns each window's Σ NLL over its T-1 predictions. With `gradScale`, also accumulates the head's gradients
    /// for the loss gradScale·Σ NLL and leaves dL/dh_L in dresidual. `onLogits(window, logits[T, V])` sees
    /// each window's logits before the loss is taken.
    public func head(
        ids: UnsafePointer<UInt32>, b: Int, slot: Int, gradScale: F?, pass: Pass,
        onLogits: ((Int, UnsafePointer<F>) -> Void)? = nil
    ) -> [Double] {
        head(hidden: outputs[slot].pointer, ids: ids, b: b, gradScale: gradScale, pass: pass, onLogits: onLogits)
    }

    /// The same on any final hidden state hL[N, H].
    public func head(
        hidden hL: UnsafePointer<F>, ids: UnsafePointer<UInt32>, b: Int, gradScale: F?, pass: Pass,
        onLogits: ((Int, UnsafePointer<F>) -> Void)? = nil
    ) -> [Double] {
        let outW = config.tieEmbeddings ? params.value("model.embed_tokens.weight") : params.value("lm_head.weight")
        return head(hidden: hL, ids: ids, b: b, gradScale: gradScale, pass: pass, onLogits: onLogits,
                    normW: params.value("model.norm.weight"), outW: outW, hs: head!)
    }

    /// The loss part of head(hidden:…) (no gradient) on the first stage of a tied model, which holds the
    /// output matrix (the embedding) but not the head: the final norm's weight is given, the scratch is the
    /// borrowed head's. The same calls on the same inputs, so the same bits as the last stage computes.
    package func head(hidden hL: UnsafePointer<F>, ids: UnsafePointer<UInt32>, b: Int, pass: Pass, borrowed: BorrowedHead<F>) -> [Double] {
        precondition(config.tieEmbeddings && params.part.embedding, "a borrowed head needs the tied output matrix")
        return head(hidden: hL, ids: ids, b: b, gradScale: nil, pass: pass, onLogits: nil,
                    normW: borrowed.norm.pointer, outW: params.value("model.embed_tokens.weight"), hs: borrowed.scratch)
    }

    private func head(
        hidden hL: UnsafePointer<F>, ids: UnsafePointer<UInt32>, b: Int, gradScale: F?, pass: Pass,
        onLogits: ((Int, UnsafePointer<F>) -> Void)?, normW: UnsafeMutablePointer<F>, outW: UnsafeMutablePointer<F>,
        hs: HeadScratch<F>
    ) -> [Double] {
        let c = config
        let matmul = pass.precision, allWeightGradients = pass.allWeightGradients
        let t = seqLen, n = b * t, h = c.hidden, v = c.vocabSize
        rmsnormForward(hs.lnf.pointer, hs.rstdf.pointer, hL, normW, n: n, c: h, eps: F(c.rmsEps))
        var nll = [Double](repeating: 0, count: b)
        for w in 0..<b {
            let x = hs.lnf.pointer + w * t * h
            let logits = hs.logits.pointer
            gemm(matmul.activations, false, true, t, v, h, 1, x, h, outW, h, 0, logits, v)
            onLogits?(w, logits)
            nll[w] = crossEntropy(logits, ids: ids + w * t, t: t, v: v, gradScale: gradScale, rowLoss: hs.rowLoss.pointer)
            if gradScale != nil {
                gemm(matmul.activations, false, false, t, h, v, 1, logits, v, outW, h, 0, hs.dlnf.pointer + w * t * h, h)
            }
            if gradScale != nil && allWeightGradients {
                let gOut = c.tieEmbeddings ? params.grad("model.embed_tokens.weight") : params.grad("lm_head.weight")
                gemm(matmul.weightGradients, true, false, v, h, t, 1, logits, v, x, h, 1, gOut, h)
            }
        }
        if gradScale != nil {
            dresidual.zero()
            rmsnormBackward(
                dinp: dresidual.pointer,
                dweight: allWeightGradients ? params.grad("model.norm.weight") : nil,
                dout: hs.dlnf.pointer,
                inp: hL, weight: normW, rstd: hs.rstdf.pointer, n: n, c: h)
        }
        return nll
    }
}

/// What the first stage of a tied model needs to take a head's loss off the last stage: the final norm's
/// weight (sent by the last stage) and a head's scratch (the logits of one window, [T, V]).
package final class BorrowedHead<F: Real>: @unchecked Sendable {
    package let norm: Buffer<F>
    let scratch: HeadScratch<F>

    package init(_ c: ModelConfig, b: Int, t: Int) {
        norm = Buffer(count: c.hidden)
        scratch = HeadScratch(c, b: b, t: t)
    }
}

/// One layer as a forward hook sees it, just after it ran: rows × H each.
public struct LayerTap<F: Real> {
    public let layer: Int
    public let rows: Int
    /// h_l, the layer's input.
    public let inp: UnsafePointer<F>
    /// h_l + attention output: the residual stream between the attention and the MLP.
    public let u: UnsafePointer<F>
    /// h_{l+1}, the layer's output.
    public let out: UnsafePointer<F>

    package init(layer: Int, rows: Int, inp: UnsafePointer<F>, u: UnsafePointer<F>, out: UnsafePointer<F>) {
        self.layer = layer; self.rows = rows; self.inp = inp; self.u = u; self.out = out
    }
}
