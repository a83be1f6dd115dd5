// What a run will hold on each rank, before it runs: parameter bytes, gradient bytes, activation buffers.
// `inspect --ranks N` prints it so a user can size a cluster job; the benchmarks check it against VmHWM.
import Foundation

public struct RankMemory: Sendable {
    public let placement: RankPlacement
    public let parameterBytes: Int   // float32 copies of the stage's tensors
    /// What the rank holds for weights: parameterBytes with --weights f32; with bf16, 2 bytes per layer
    /// parameter plus one widened layer, the embedding and head widened.
    public let weightBytes: Int
    /// The all-reduce's scratch (Open MPI allocates one piece's size): 0 without replicas.
    public let allReduceScratchBytes: Int
    public let storedBytes: Int      // the same tensors as stored in the checkpoint
    public let gradientBytes: Int
    public let activationBytes: Int
    /// Process baseline measured on this machine (Swift runtime, Open MPI, BLAS buffers): 38–39 MiB per rank
    /// for a tiny model at 1 and 2 ranks (benchmarks/run_memory.py --preset tiny); 40 MiB.
    public static let baselineBytes = 40 << 20
    public var peakBytes: Int {
        weightBytes + gradientBytes + activationBytes + allReduceScratchBytes + RankMemory.baselineBytes
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
        _ placement: Placement, storage: DType, seqLen: Int, microBatch: Int, training: Bool,
        policy: ActivationPolicy = .store, weights: WeightFormat = .f32
    ) -> [RankMemory] {
        (0..<placement.ranks).map { r in
            let p = placement.placement(rank: r)
            let elements = Placement.elements(placement.config, p.part)
            let act = Stage<Float>.activationFloats(
                placement.config, part: p.part, seqLen: seqLen, maxBatch: microBatch,
                slots: training ? placement.stages : 1, policy: policy, training: training)
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
            let held = weights == .f32 ? elements * 4 : (elements - inLayers) * 4 + inLayers * 2 + (inLayers > 0 ? layerElements * 4 : 0)
            let scratch = training && r > 1 ? min(elements, Communicator.allReduceChunk) * 4 : 0
            return RankMemory(
                placement: p, parameterBytes: elements * 4, weightBytes: held, allReduceScratchBytes: scratch,
                storedBytes: elements * storage.size,
                gradientBytes: training ? elements * 4 : 0, activationBytes: act * 4,
                forwardFlopsPerToken: forward, decisionFlopsPerToken: decision,
                bytesSentPerToken: boundaries * 4 * c.hidden, allReduceBytes: r > 1 ? 2 * (r - 1) * elements * 4 / r : 0)
        }
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
