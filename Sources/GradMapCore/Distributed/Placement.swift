// Where each rank's share of the model and data lies. N = S × R ranks: S pipeline stages of contiguous layer
// blocks (the first also holds the embedding, the last the final norm and lm_head — and a copy of the
// embedding when it is tied) times R data-parallel replicas. Rank = replica · S + stage, so one pipeline's
// ranks are neighbours (the same node under a by-slot mapping). Layers are split to minimise the largest
// stage's cost: its compute per token (default: the pipeline runs at the pace of its slowest stage), or its
// parameter bytes (`--balance memory`, when memory is what binds), embedding and head counted.
import GradMapFormats
import GradMapSupport

/// What the layer split evens out across stages.
public enum Balance: String, Sendable, CaseIterable {
    /// FLOPs per calibration token of a decision (matrix products, attention, lm_head; the embedding is free).
    case compute
    /// Parameter bytes (the embedding costs as much as its size).
    case memory
}

public struct RankPlacement: Sendable, Equatable {
    public let rank: Int
    public let stage: Int
    public let replica: Int
    public let part: StagePart
}

public struct Placement: Sendable {
    public let ranks: Int
    public let stages: Int
    public let replicas: Int
    /// Layer ranges per stage.
    public let layerRanges: [Range<Int>]
    public let config: ModelConfig

    public let balance: Balance

    public init(config c: ModelConfig, ranks: Int, stages requested: Int?, balance: Balance = .compute, seqLen: Int = 256) throws {
        guard ranks >= 1 else { throw bad(.ranks, ranks, "must be at least 1") }
        let s = requested ?? min(ranks, c.layers)
        guard s >= 1 else { throw bad(.stages, s, "must be at least 1") }
        guard s <= c.layers else {
            throw bad(.stages, s, "more stages than the model's \(c.layers) layers")
        }
        guard ranks % s == 0 else {
            throw bad(.stages, s, "the number of ranks \(ranks) must be a multiple of the stages (ranks = stages × replicas)")
        }
        config = c
        self.ranks = ranks
        stages = s
        replicas = ranks / s
        self.balance = balance
        layerRanges = Placement.balance(config: c, stages: s, by: balance, seqLen: seqLen)
    }

    public func placement(rank: Int) -> RankPlacement {
        let stage = rank % stages
        return RankPlacement(
            rank: rank, stage: stage, replica: rank / stages,
            part: StagePart(layers: layerRanges[stage], embedding: stage == 0, head: stage == stages - 1))
    }

    /// Parameter elements of a part.
    public static func elements(_ c: ModelConfig, _ part: StagePart) -> Int {
        ParamLayout.specs(c, part: part).reduce(0) { $0 + $1.count }
    }

    /// FLOPs per token of one forward of a part (a multiply-add counts 2): the layer matrices, QKᵀ and PV over
    /// the full T×T square, and the lm_head on the last stage.
    public static func forwardFlopsPerToken(_ c: ModelConfig, _ part: StagePart, seqLen: Int) -> Double {
        let matrices = Double(ParamLayout.layerTensors(c).filter { $0.1.count == 2 }.reduce(0) { $0 + $1.1.reduce(1, *) })
        let attention = 4 * Double(seqLen) * Double(c.qDim)
        var forward = Double(part.layers.count) * (2 * matrices + attention)
        if part.head { forward += 2 * Double(c.vocabSize * c.hidden) }
        return forward
    }

    /// FLOPs per token of a decision's forward + backward (backward ≈ 2× forward, plus the recomputed scores).
    public static func decisionFlopsPerToken(_ c: ModelConfig, _ part: StagePart, seqLen: Int) -> Double {
        let attention = 4 * Double(seqLen) * Double(c.qDim)
        return 3 * forwardFlopsPerToken(c, part, seqLen: seqLen) + Double(part.layers.count) * attention / 2
    }

    /// A part's cost under a balance.
    public static func cost(_ c: ModelConfig, _ part: StagePart, by balance: Balance, seqLen: Int) -> Double {
        balance == .memory ? Double(elements(c, part)) : decisionFlopsPerToken(c, part, seqLen: seqLen)
    }

    /// Contiguous split of the layers into `stages` non-empty blocks minimising the largest block's cost,
    /// the embedding counted on the first and the head on the last (exact, by DP).
    static func balance(config c: ModelConfig, stages s: Int, by balance: Balance, seqLen: Int) -> [Range<Int>] {
        let l = c.layers
        func cost(_ a: Int, _ b: Int, first: Bool, last: Bool) -> Double {
            Placement.cost(c, StagePart(layers: a..<b, embedding: first, head: last), by: balance, seqLen: seqLen)
        }
        // best[k][j]: minimal max cost splitting layers 0..<j into k stages; cut[k][j]: start of the k-th block.
        let inf = Double.infinity
        var best = [[Double]](repeating: [Double](repeating: inf, count: l + 1), count: s + 1)
        var cut = [[Int]](repeating: [Int](repeating: 0, count: l + 1), count: s + 1)
        best[0][0] = 0
        for k in 1...s {
            for j in k...l {
                for i in (k - 1)..<j where best[k - 1][i] != inf {
                    let c0 = cost(i, j, first: k == 1, last: k == s && j == l)
                    let v = max(best[k - 1][i], c0)
                    // Ties: prefer the later cut, so earlier stages (which also hold more in-flight
                    // activations under 1F1B) get fewer layers.
                    if v < best[k][j] || (v == best[k][j] && i > cut[k][j]) {
                        best[k][j] = v
                        cut[k][j] = i
                    }
                }
            }
        }
        var ranges: [Range<Int>] = []
        var j = l
        for k in stride(from: s, through: 1, by: -1) {
            let i = cut[k][j]
            ranges.append(i..<j)
            j = i
        }
        return ranges.reversed()
    }
}
