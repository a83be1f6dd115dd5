// What every job that runs the engine is told: the model, how its weights are held and split, the products'
// arithmetic, and where its tokens come from. One default per setting, here; front ends map their input onto
// these fields and errors name the fields (ConfigField), never a front end's spelling of them.
import Foundation
import GradMapData
import GradMapDistributed
import GradMapEngine
import GradMapFormats
import GradMapKernels
import GradMapRuntime
import GradMapSupport

/// Where a job's tokens come from.
public enum TokenInput: Sendable, Equatable {
    /// Raw little-endian uint32 token ids.
    case tokens(String)
    /// UTF-8 text, tokenised with the model's tokenizer.
    case text(String)

    public var path: String {
        switch self {
        case .tokens(let path), .text(let path): return path
        }
    }

    /// The stream cut into windows of `seqLen` tokens (the tail dropped).
    func windows(seqLen: Int, model: Checkpoint) throws -> TokenWindows {
        let vocab = model.config.vocabSize
        switch self {
        case .tokens(let path):
            return try TokenWindows(path: path, seqLen: seqLen, vocabSize: vocab)
        case .text(let path):
            let ids = try TextTokens.encode(textFile: path, model: model)
            return try TokenWindows(path: path, tokens: ids, seqLen: seqLen, vocabSize: vocab)
        }
    }
}

/// The model and how the engine runs it.
public struct EngineConfig: Sendable {
    /// A Hugging Face folder or a .gguf file (ModelPath).
    public var model: String
    /// Tokens per window (T).
    public var seqLen: Int
    public var weights: WeightFormat = .f32
    public var balance: Balance = .compute
    public var matmul: MatmulPrecision = .machineDefault
    public var activations: ActivationPolicy = .store
    /// Pipeline stages S (ranks = S × replicas); nil: min(ranks, layers).
    public var stages: Int? = nil

    public init(model: String, seqLen: Int) {
        self.model = model
        self.seqLen = seqLen
    }

    /// The checks that need no file.
    public func validate() throws {
        guard seqLen >= 2 else { throw bad(.seqLen, seqLen, "must be at least 2") }
        if let s = stages, s < 1 { throw bad(.stages, s, "must be at least 1") }
        try matmul.checkAvailable()
    }

    /// The checks of Pipeline.load that are the same on every rank (the placement, no tensor the model would
    /// not use), made first so that every rank finds them together; what Pipeline.load still finds is its own.
    func checkLayout(_ ckpt: Checkpoint, ranks: Int) throws {
        _ = try Placement(config: ckpt.config, ranks: ranks, stages: stages, balance: balance, seqLen: seqLen)
        try ckpt.checkNoUnexpectedTensors()
    }

    /// This rank's pipeline over the checkpoint, with room for micro-batches of `microBatch` windows.
    func pipeline(_ world: Communicator, _ ckpt: Checkpoint, microBatch: Int, training: Bool) throws -> Pipeline<Float> {
        try Pipeline.load(
            world: world, checkpoint: ckpt, stages: stages, seqLen: seqLen, microBatch: microBatch, training: training,
            policy: activations, weights: weights, balance: balance, matmul: matmul)
    }
}
