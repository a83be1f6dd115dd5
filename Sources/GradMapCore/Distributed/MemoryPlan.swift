// What a run will hold on each rank, before it runs: parameter bytes, gradient bytes, activation buffers.
// `inspect --ranks N` prints it so a user can size a cluster job; the benchmarks check it against VmHWM.
import Foundation
import GradMapEngine
import GradMapFormats
import GradMapKernels
import GradMapRuntime

public struct RankMemory: Sendable {
    public let placement: RankPlacement
    public let parameterBytes: Int   // float32 copies of the stage's tensors
    /// What the rank holds for weights: parameterBytes with --weights f32; with bf16, 2 bytes per layer
    /// parameter plus one widened layer, the embedding and head widened.
    public let weightBytes: Int
    /// The all-reduce's scratch (Open MPI allocates one piece's size): 0 without replicas.
    public let allReduceScratchBytes: Int
    /// The BF16 copies of both inputs of the largest product (--matmul bf16: for a head stage, the lm_head's
    /// [V, H] weight, 2 bytes each): the scratch area BF16 products round into; 0 with f32 products.
    public let bf16ScratchBytes: Int
    /// The same tensors as their file stores them (a quantised GGUF: its blocks, ~4.5 bits per Q4_K weight).
    public let storedBytes: Int
    public let gradientBytes: Int
    public let activationBytes: Int
    /// Process baseline measured on this machine (Swift runtime, Open MPI, BLAS buffers): 38–39 MiB per rank
    /// for a tiny model at 1 and 2 ranks (benchmarks/run_memory.py --preset tiny); 40 MiB.
    public static let baselineBytes = 40 << 20
    public var peakBytes: Int {
        weightBytes + gradientBytes + activationBytes + allReduceScratchBytes + bf16ScratchBytes + RankMemory.baselineBytes
    }
    /// The peak of a forward-only job on this placement (eval; prune with bi, angular, sleb or --layers): no
    /// gradients, no all-reduce, one micro-batch slot of activations without what the backward keeps.
    public let forwardPeakBytes: Int
    /// What prune's compensation (Compensation/Compensation.swift, CompensationSweep.swift) adds per candidate
    /// layer, on every rank: the H×H sums Σ (y-u)zᵀ and Σ zzᵀ in Float64. --compensate-at auto has up to 3 + K
    /// candidate layers (the 3 largest shifts and the layer after each run of removed ones), a given layer 1;
    /// --no-compensate none.
    public let compensationBytesPerCandidate: Int
    /// auto's validation sweep keeps, on the stage holding a candidate, the hidden state entering it for
    /// each of the replica's validation windows: T×H floats per candidate per window.
    public let compensationBytesPerCandidateWindow: Int
    /// Per (layer, ridge) solution P: rank 0 solves it in Float64 and sends it as float32 (both held until
    /// the sweep starts); a rank whose stage holds the layer keeps the float32 copy (counted on every rank:
    /// which stage holds a candidate is known only once the shifts are).
    public let compensationBytesPerSolution: Int
    /// Once per rank: the sums' forward (both models' hidden states in flight: 10 micro-batches of floats,
    /// and residuals and MLP outputs in Float64), the folded down_proj with its saved copy (2·H·I floats);
    /// on rank 0 also the solver's two H×H Float64 copies.
    public let compensationBaseBytes: Int
    public func compensationBytes(candidates: Int, solutions: Int, validationWindows: Int) -> Int {
        guard candidates > 0 else { return 0 }
        return compensationBaseBytes + candidates * (compensationBytesPerCandidate + validationWindows * compensationBytesPerCandidateWindow)
            + solutions * compensationBytesPerSolution
    }
    /// FLOPs of this rank's layers per token: forward (matrix products, attention with its full T×T square,
    /// lm_head) and forward + backward (backward ≈ 2× forward, plus recomputing the attention scores).
    public let forwardFlopsPerToken: Double
    public let decisionFlopsPerToken: Double
    /// Bytes this rank sends per calibration token of its replica in one forward + backward (activations
    /// forward to the next stage, their gradients back to the previous one).
    public let bytesSentPerToken: Int
    /// Bytes of the gradient all-reduce across replicas per decision (ring: 2·(R-1)/R of the gradients).
    public let allReduceBytes: Int
}

public enum MemoryPlan {
    public static func ranks(
        _ placement: Placement, summary: ModelSummary, seqLen: Int, microBatch: Int, training: Bool,
        policy: ActivationPolicy = .store, weights: WeightFormat = .f32, matmul: MatmulPrecision = .f32
    ) -> [RankMemory] {
        (0..<placement.ranks).map { r in
            let p = placement.placement(rank: r)
            let elements = Placement.elements(placement.config, p.part)
            let act = Stage<Float>.activationFloats(
                placement.config, part: p.part, seqLen: seqLen, maxBatch: microBatch,
                slots: training ? placement.stages : 1, policy: policy, training: training)
            let forwardAct = Stage<Float>.activationFloats(
                placement.config, part: p.part, seqLen: seqLen, maxBatch: microBatch, slots: 1, policy: policy, training: false)
            let c = placement.config
            let forward = Placement.forwardFlopsPerToken(c, p.part, seqLen: seqLen)
            var decision = Placement.decisionFlopsPerToken(c, p.part, seqLen: seqLen)
            if training && policy == .recompute {
                // Each layer's forward runs again in the backward (the head's does not).
                let layersOnly = StagePart(layers: p.part.layers, embedding: false, head: false)
                decision += Placement.forwardFlopsPerToken(c, layersOnly, seqLen: seqLen)
            }
            let boundaries = (p.stage > 0 ? 1 : 0) + (p.stage < placement.stages - 1 ? 1 : 0)
            let r = placement.replicas
            let layerElements = ParamLayout.layerTensors(c).reduce(0) { $0 + $1.1.reduce(1, *) }
            let inLayers = p.part.layers.count * layerElements
            // bf16 holds the same for any source: BF16 bits of every layer tensor (mapped from a BF16 file, else
            // rounded once from its decoded floats, a quantised GGUF's included), one widened layer, the rest f32.
            let held = weights == .f32 ? elements * 4 : (elements - inLayers) * 4 + inLayers * 2 + (inLayers > 0 ? layerElements * 4 : 0)
            let scratch = training && r > 1 ? min(elements, Communicator.allReduceChunk) * 4 : 0
            let bf16 = bf16ScratchElements(c, p.part, rows: microBatch * seqLen, seqLen: seqLen, matmul: matmul, backward: training) * 2
            let forwardBF16 = bf16ScratchElements(c, p.part, rows: microBatch * seqLen, seqLen: seqLen, matmul: matmul, backward: false) * 2
            return RankMemory(
                placement: p, parameterBytes: elements * 4, weightBytes: held, allReduceScratchBytes: scratch,
                bf16ScratchBytes: bf16,
                storedBytes: summary.storedBytes(p.part),
                gradientBytes: training ? elements * 4 : 0, activationBytes: act * 4,
                forwardPeakBytes: held + forwardAct * 4 + forwardBF16 + RankMemory.baselineBytes,
                compensationBytesPerCandidate: (2 * c.hidden * c.hidden + 2) * 8,
                compensationBytesPerCandidateWindow: seqLen * c.hidden * 4,
                compensationBytesPerSolution: c.hidden * c.hidden * (p.rank == 0 ? 8 + 4 : 4),
                compensationBaseBytes: 2 * microBatch * seqLen * c.hidden * 8 + 10 * microBatch * seqLen * c.hidden * 4
                    + 2 * c.hidden * c.intermediate * 4 + (p.rank == 0 ? 2 * c.hidden * c.hidden * 8 : 0),
                forwardFlopsPerToken: forward, decisionFlopsPerToken: decision,
                bytesSentPerToken: boundaries * 4 * c.hidden, allReduceBytes: r > 1 ? 2 * (r - 1) * elements * 4 / r : 0)
        }
    }
}

extension MemoryPlan {
    /// Elements the BF16 input scratch of the products (Support/Buffer.swift, BF16Scratch) grows to over one
    /// forward (and backward) of a part: each product asks for op(A) and op(B) of its BF16 products; the area
    /// grows to the request, or to 5/4 of itself when that is more, so the products are replayed in the order a
    /// pass runs them (after one pass every request fits). `rows` = windows × T of a micro-batch; the head
    /// runs one window (T rows) at a time.
    static func bf16ScratchElements(
        _ c: ModelConfig, _ part: StagePart, rows n: Int, seqLen t: Int, matmul: MatmulPrecision, backward: Bool
    ) -> Int {
        var capacity = 0
        func ask(_ count: Int) { if count > capacity { capacity = max(count, capacity * 5 / 4) } }
        let forwardBF16 = matmul.activations == .bf16, gradBF16 = matmul.weightGradients == .bf16
        let h = c.hidden, i = c.intermediate, q = c.qDim, kv = c.kvDim, v = c.vocabSize
        // (in, out) of q, k, v, o, gate, up, down: the order Stage.layerForward runs them.
        let linears = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
        for _ in part.layers where forwardBF16 { for (inDim, out) in linears { ask(n * inDim + out * inDim) } }
        if part.head && forwardBF16 { ask(t * h + v * h) }
        guard backward else { return capacity }
        if part.head {
            if forwardBF16 { ask(t * v + v * h) }  // dL/dx = dlogits · W
            if gradBF16 { ask(t * v + t * h) }      // dL/dW = dlogitsᵀ · x
        }
        for _ in part.layers {
            for (inDim, out) in linears.reversed() {
                if forwardBF16 { ask(n * out + out * inDim) }
                if gradBF16 { ask(n * out + n * inDim) }
            }
        }
        return capacity
    }
}

public enum ProcessMemory {
    /// Peak resident set (VmHWM) of this process in bytes, from /proc/self/status.
    public static func peakResidentBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        let kb = line.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.first ?? 0
        return kb * 1024
    }
}
