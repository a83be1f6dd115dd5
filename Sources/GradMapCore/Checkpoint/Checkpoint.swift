// A Hugging Face checkpoint folder: config.json plus model.safetensors or shards listed in
// model.safetensors.index.json. Shards are opened (and their headers validated) on first use, so a
// pipeline rank maps only the files that hold its tensors. Loading is strict: each tensor is asked for by
// name and shape, and `unexpectedTensors` reports whatever a full model would leave unused.
import Foundation

public final class Checkpoint: @unchecked Sendable {
    public let directory: String
    public let config: ModelConfig
    /// tensor name → shard file name (relative to the directory)
    public let weightMap: [String: String]
    private var openFiles: [String: SafeTensorsFile] = [:]
    private let lock = NSLock()

    public static let ignoredTensorSuffixes = ["rotary_emb.inv_freq"]

    public init(directory: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) else {
            throw bad("\(directory): model folder not found")
        }
        guard isDir.boolValue else { throw bad("\(directory): expected a Hugging Face checkpoint folder, found a file") }
        self.directory = directory
        config = try ModelConfig.load(path: directory + "/config.json")
        let single = directory + "/model.safetensors"
        let index = directory + "/model.safetensors.index.json"
        if FileManager.default.fileExists(atPath: index) {
            guard let data = FileManager.default.contents(atPath: index),
                let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                let map = obj["weight_map"] as? [String: Any]
            else { throw bad("\(index): expected a JSON object with a weight_map") }
            var m: [String: String] = [:]
            for (k, v) in map {
                guard let f = v as? String, !f.contains("/") else { throw bad("\(index): weight_map[\(k)] must be a file name") }
                m[k] = f
            }
            weightMap = m
        } else if FileManager.default.fileExists(atPath: single) {
            let file = try SafeTensorsFile(path: single)
            openFiles["model.safetensors"] = file
            weightMap = Dictionary(uniqueKeysWithValues: file.tensors.keys.map { ($0, "model.safetensors") })
        } else {
            throw bad("\(directory): no model.safetensors or model.safetensors.index.json")
        }
    }

    func file(_ name: String) throws -> SafeTensorsFile {
        lock.lock()
        defer { lock.unlock() }
        if let f = openFiles[name] { return f }
        let f = try SafeTensorsFile(path: directory + "/" + name)
        openFiles[name] = f
        return f
    }

    public func info(_ name: String) throws -> (SafeTensorsFile, TensorInfo) {
        guard let fileName = weightMap[name] else {
            throw bad("\(directory): missing tensor \(name)")
        }
        let f = try file(fileName)
        guard let info = f.tensors[name] else {
            throw bad("\(f.path): missing tensor \(name) (listed in model.safetensors.index.json)")
        }
        return (f, info)
    }

    /// Reads tensor `name`, which must have exactly `shape` and a float dtype, widened into dst.
    public func load<F: Real>(_ name: String, shape: [Int], into dst: UnsafeMutablePointer<F>) throws {
        let (f, info) = try info(name)
        guard info.shape == shape else {
            throw bad("\(f.path): tensor \(name) has wrong shape; expected \(shape), got \(info.shape)")
        }
        guard info.dtype.isFloat else {
            throw bad("\(f.path): tensor \(name) has dtype \(info.dtype.rawValue); expected F32, F16 or BF16")
        }
        widen(f.data(info), dtype: info.dtype, count: info.count, into: dst)
        f.release(info)
    }

    /// Names in the checkpoint that a model with these parameter names would not use.
    public func unexpectedTensors(expected: Set<String>) -> [String] {
        weightMap.keys.filter { name in
            !expected.contains(name) && !Checkpoint.ignoredTensorSuffixes.contains { name.hasSuffix($0) }
        }.sorted()
    }

    /// The storage dtype of the checkpoint's weights (that of the first layer's q_proj, else any tensor).
    public func storageDType() -> DType {
        if let (_, i) = try? info("model.layers.0.self_attn.q_proj.weight") { return i.dtype }
        return .f32
    }
}
