// What a run will hold on each rank, before it runs: parameter bytes, gradient bytes, activation buffers.
// `inspect --ranks N` prints it so a user can size a cluster job; the benchmarks check it against VmHWM.
import Foundation

public struct RankMemory: Sendable {
    public let placement: RankPlacement
    public let parameterBytes: Int   // float32 copies of the stage's tensors
    public let storedBytes: Int      // the same tensors as stored in the checkpoint
    public let gradientBytes: Int
    public let activationBytes: Int
    /// Process baseline measured on this machine (runtime, MPI, BLAS buffers): 60 MiB.
    public static let baselineBytes = 60 << 20
    public var peakBytes: Int { parameterBytes + gradientBytes + activationBytes + RankMemory.baselineBytes }
}

public enum MemoryPlan {
    public static func ranks(
        _ placement: Placement, storage: DType, seqLen: Int, microBatch: Int, training: Bool,
        policy: ActivationPolicy = .store
    ) -> [RankMemory] {
        (0..<placement.ranks).map { r in
            let p = placement.placement(rank: r)
            let elements = Placement.elements(placement.config, p.part)
            let act = Stage<Float>.activationFloats(
                placement.config, part: p.part, seqLen: seqLen, maxBatch: microBatch,
                slots: training ? placement.stages : 1, policy: policy, training: training)
            return RankMemory(
                placement: p, parameterBytes: elements * 4, storedBytes: elements * storage.size,
                gradientBytes: training ? elements * 4 : 0, activationBytes: act * 4)
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
