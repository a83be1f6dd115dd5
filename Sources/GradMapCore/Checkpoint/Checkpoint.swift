// A model checkpoint: a Hugging Face folder (config.json + safetensors, maybe sharded) or a GGUF file.
// Both are tensor sources behind one strict interface: each tensor is asked for by name and shape, and
// `unexpectedTensors` reports whatever a full model would leave unused.
import Foundation
import GradMapRuntime
import GradMapSupport

/// Where tensors come from. Names are Hugging Face names whatever the file format.
public protocol TensorSource: AnyObject, Sendable {
    /// Every tensor name the source holds.
    var tensorNames: [String] { get }
    /// Shape (row-major, Hugging Face order) and storage dtype of a tensor; throws .badInput when missing.
    func tensorInfo(_ name: String) throws -> (shape: [Int], dtype: String)
    /// Reads the tensor, which must have exactly `shape`, widened into dst.
    func load<F: Real>(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<F>) throws
    /// The tensor's BF16 bits in place (memory-mapped), when it is stored as BF16 and 2-byte aligned; else nil.
    /// `owner` keeps the mapping alive.
    func mappedBF16(_ name: String, shape: [Int]) throws -> (bits: UnsafePointer<UInt16>, owner: AnyObject)?
    /// The file a listed tensor name comes from (for messages about it).
    func file(holding name: String) -> String
    /// Bytes the tensor takes in its file (a quantised GGUF tensor: its blocks, not elements × 4).
    func storedBytes(_ name: String) throws -> Int
}

extension TensorSource {
    public func storedBytes(_ name: String) throws -> Int {
        let i = try tensorInfo(name)
        return i.shape.reduce(1, *) * (DType(rawValue: i.dtype)?.size ?? 4)
    }
    public func mappedBF16(_ name: String, shape: [Int]) throws -> (bits: UnsafePointer<UInt16>, owner: AnyObject)? { nil }
}

public final class Checkpoint: @unchecked Sendable {
    /// The folder or file the user named.
    public let path: String
    public let config: ModelConfig
    public let source: any TensorSource
    /// The GGUF file when the checkpoint is one: its metadata also holds the tokenizer.
    public let gguf: GGUFFile?

    public static let ignoredTensorSuffixes = ["rotary_emb.inv_freq"]

    /// Opens a Hugging Face folder, or a GGUF file (by its name ending in .gguf): the one place a model path is
    /// opened, so every command refuses a wrong one with the same line.
    public init(path: String) throws {
        self.path = path
        switch ModelPath(path) {
        case .missing:
            throw bad("\(path): model not found (expected a Hugging Face checkpoint folder or a .gguf file)")
        case .folder:
            config = try ModelConfig.load(path: path + "/config.json")
            source = try SafeTensorsFolder(directory: path)
            gguf = nil
        case .gguf:
            let model = try GGUFModel(path: path)
            (config, source, gguf) = (model.config, model, model.file)
        case .file:
            throw bad("\(path): expected a Hugging Face checkpoint folder or a .gguf file, found another file")
        }
    }

    public convenience init(directory: String) throws { try self.init(path: directory) }

    /// Tensors the model has asked for so far, by shape or by loading: the loader's own record of what is
    /// used, so that whatever the file holds beyond it is reported as unexpected.
    private var claimed = Set<String>()
    private let claimLock = NSLock()

    private func claim(_ names: some Sequence<String>) {
        claimLock.lock()
        defer { claimLock.unlock() }
        claimed.formUnion(names)
    }

    public func load<F: Real>(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<F>) throws {
        claim([name])
        try source.load(name, shape: shape, into: dst)
    }

    /// Names in the checkpoint that no load or shape check has asked for (ignored suffixes aside).
    public func unclaimedTensors() -> [String] {
        claimLock.lock()
        defer { claimLock.unlock() }
        return source.tensorNames.filter { name in
            !claimed.contains(name) && !Checkpoint.ignoredTensorSuffixes.contains { name.hasSuffix($0) }
        }.sorted()
    }

    /// Claims the whole model's tensor names (a rank loads only its part, and reads only the shards that hold
    /// it, but the file is the whole model's), then refuses the checkpoint if it holds tensors the model did not
    /// ask for.
    public func checkNoUnexpectedTensors() throws {
        claim(ParamLayout.allNames(config))
        let unexpected = unclaimedTensors()
        if let first = unexpected.first {
            throw bad("\(source.file(holding: first)): unexpected tensor \(shown(first)) (\(unexpected.count) not used by a \(config.modelType) model of this config)")
        }
    }

    /// Every tensor a stage of this config would hold has the config's shape, checked from the headers before
    /// anything is allocated for them: a config.json that claims widths its tensors do not have is bad input
    /// naming the file, not an allocation of the claimed size.
    public func checkShapes(_ specs: [ParamSpec]) throws {
        claim(specs.map(\.name))
        for s in specs {
            let have = try source.tensorInfo(s.name).shape
            guard have == s.shape else {
                throw bad("\(source.file(holding: s.name)): tensor \(shown(s.name)) has wrong shape; expected \(s.shape), got \(have)")
            }
        }
    }

    /// The storage dtype of the checkpoint's weights (that of the first layer's q_proj).
    public func storageDType() -> DType {
        if let i = try? source.tensorInfo("model.layers.0.self_attn.q_proj.weight"), let d = DType(rawValue: i.dtype) { return d }
        return .f32
    }
}

/// A Hugging Face folder's safetensors: model.safetensors, or shards listed in model.safetensors.index.json.
/// Shards are opened (and their headers validated) on first use, so a pipeline rank maps only the files
/// that hold its tensors.
public final class SafeTensorsFolder: TensorSource, @unchecked Sendable {
    public let directory: String
    /// tensor name → shard file name (relative to the directory)
    public let weightMap: [String: String]
    /// The index file when the folder is sharded, nil for a single model.safetensors.
    public let indexPath: String?
    private var openFiles: [String: SafeTensorsFile] = [:]
    private let lock = NSLock()

    public init(directory: String) throws {
        self.directory = directory
        let single = directory + "/model.safetensors"
        let index = directory + "/model.safetensors.index.json"
        if FileManager.default.fileExists(atPath: index) {
            indexPath = index
            guard let data = FileManager.default.contents(atPath: index),
                let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let map = obj["weight_map"] as? [String: Any]
            else { throw bad("\(index): expected a JSON object with a weight_map") }
            var m: [String: String] = [:]
            for (k, v) in map {
                // A plain name (no folder, no control characters: it becomes part of a path in messages).
                guard let f = v as? String, !f.isEmpty, !f.contains("/"), shown(f) == f else {
                    throw bad("\(index): weight_map[\(shown(k))] must be a file name in the folder, got \(shown(v))")
                }
                m[k] = f
            }
            weightMap = m
        } else if FileManager.default.fileExists(atPath: single) {
            indexPath = nil
            let file = try SafeTensorsFile(path: single)
            openFiles["model.safetensors"] = file
            weightMap = Dictionary(uniqueKeysWithValues: file.tensors.keys.map { ($0, "model.safetensors") })
        } else {
            throw bad("\(directory): no model.safetensors or model.safetensors.index.json")
        }
    }

    public var tensorNames: [String] { Array(weightMap.keys) }

    /// The index lists the names of a sharded folder, so it is the file a name comes from.
    public func file(holding name: String) -> String { indexPath ?? directory + "/model.safetensors" }

    /// A shard, opened on first use; a shard that does not open is blamed on the index that names it too.
    func file(_ name: String, for tensor: String) throws -> SafeTensorsFile {
        lock.lock()
        defer { lock.unlock() }
        if let f = openFiles[name] { return f }
        do {
            let f = try SafeTensorsFile(path: directory + "/" + name)
            openFiles[name] = f
            return f
        } catch GradMapError.badInput(let m) where indexPath != nil {
            throw bad("\(m) (the shard model.safetensors.index.json names for tensor \(tensor))")
        }
    }

    /// A missing tensor names the file(s) searched: model.safetensors, or the index (when its weight_map lacks
    /// the tensor) or the shard it names together with the index.
    public func info(_ name: String) throws -> (SafeTensorsFile, TensorInfo) {
        guard let fileName = weightMap[name] else {
            guard let indexPath else { throw bad("\(directory)/model.safetensors: missing tensor \(shown(name))") }
            let shards = Set(weightMap.values).count
            throw bad("\(indexPath): missing tensor \(shown(name)) (not in its weight_map, which lists \(weightMap.count) tensors in \(shards) shards)")
        }
        let f = try file(fileName, for: name)
        guard let info = f.tensors[name] else {
            throw bad("\(f.path): missing tensor \(shown(name)) (listed for it in model.safetensors.index.json)")
        }
        return (f, info)
    }

    public func tensorInfo(_ name: String) throws -> (shape: [Int], dtype: String) {
        let (_, i) = try info(name)
        return (i.shape, i.dtype.rawValue)
    }

    public func load<F: Real>(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<F>) throws {
        let (f, info) = try info(name)
        guard info.shape == shape else {
            throw bad("\(f.path): tensor \(shown(name)) has wrong shape; expected \(shape), got \(info.shape)")
        }
        guard info.dtype.isFloat else {
            throw bad("\(f.path): tensor \(shown(name)) has dtype \(info.dtype.rawValue); expected F32, F16 or BF16")
        }
        widen(f.data(info), dtype: info.dtype, count: info.count, into: dst)
        f.release(info)
    }

    public func mappedBF16(_ name: String, shape: [Int]) throws -> (bits: UnsafePointer<UInt16>, owner: AnyObject)? {
        let (f, info) = try info(name)
        guard info.shape == shape else {
            throw bad("\(f.path): tensor \(shown(name)) has wrong shape; expected \(shape), got \(info.shape)")
        }
        let data = f.data(info)
        guard info.dtype == .bf16, Int(bitPattern: data) % 2 == 0 else { return nil }
        return (data.assumingMemoryBound(to: UInt16.self), f)
    }
}
