// What each format's input is and which parser calls the CLI makes on it. A mutated input is written to a real
// file (inside its checkpoint folder where the format needs one), the calls run in this process, and each call's
// outcome is classified: success, or a one-line .badInput that names the file; anything else is a finding.
import Foundation
import GradMapData
import GradMapEngine
import GradMapFormats
import GradMapSupport
import GradMapTokenizer

/// A seed: the bytes that get mutated, and the files that sit beside them unchanged (config.json, shards).
struct Seed {
    /// Seed name (file stem, or folder name for an index seed); regression files start with it.
    let name: String
    let bytes: [UInt8]
    let companions: [(name: String, bytes: [UInt8])]
    /// Header fields of a GGUF seed, for structure-aware mutation.
    let ggufFields: [GGUFField]?
}

enum Format: String, CaseIterable {
    case safetensors, index, gguf, config, tokenizer, tokens

    /// The name the mutated input gets in its work folder.
    var inputName: String {
        switch self {
        case .safetensors: return "model.safetensors"
        case .index: return "model.safetensors.index.json"
        case .gguf: return "input.gguf"
        case .config: return "config.json"
        case .tokenizer: return "tokenizer.json"
        case .tokens: return "tokens.bin"
        }
    }

    /// Extension of regression files (so that each can be handed to the CLI as it is).
    var regressionExtension: String {
        switch self {
        case .safetensors: return "safetensors"
        case .index: return "index.json"
        case .gguf: return "gguf"
        case .config, .tokenizer: return "json"
        case .tokens: return "bin"
        }
    }

    /// Seeds under corpus/<format>: files for most formats, one checkpoint folder per seed for the index.
    func seeds(corpus: String) throws -> [Seed] {
        let dir = corpus + "/" + rawValue
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: dir) else {
            throw GradMapError.badInput("--corpus: \(dir) not found (expected a folder of \(rawValue) seeds)")
        }
        func read(_ path: String) throws -> [UInt8] {
            guard let d = fm.contents(atPath: path) else { throw GradMapError.badInput("\(path): cannot read") }
            return [UInt8](d)
        }
        var seeds: [Seed] = []
        for name in names.sorted() {
            let path = dir + "/" + name
            switch self {
            case .index:
                let files = try fm.contentsOfDirectory(atPath: path).sorted()
                guard files.contains(inputName) else { continue }
                let companions = try files.filter { $0 != inputName }.map { ($0, try read(path + "/" + $0)) }
                seeds.append(Seed(name: name, bytes: try read(path + "/" + inputName), companions: companions, ggufFields: nil))
            case .safetensors:
                guard name.hasSuffix(".safetensors") else { continue }
                let config = try read(dir + "/config.json")
                seeds.append(Seed(name: stem(name), bytes: try read(path), companions: [("config.json", config)], ggufFields: nil))
            case .gguf:
                guard name.hasSuffix(".gguf") else { continue }
                let bytes = try read(path)
                seeds.append(Seed(name: stem(name), bytes: bytes, companions: [], ggufFields: ggufFields(bytes)))
            case .config, .tokenizer:
                guard name.hasSuffix(".json") else { continue }
                seeds.append(Seed(name: stem(name), bytes: try read(path), companions: [], ggufFields: nil))
            case .tokens:
                guard name.hasSuffix(".bin") else { continue }
                seeds.append(Seed(name: stem(name), bytes: try read(path), companions: [], ggufFields: nil))
            }
        }
        guard !seeds.isEmpty else { throw GradMapError.badInput("--corpus: \(dir) holds no \(rawValue) seeds") }
        return seeds
    }

    /// One mutation of a seed's bytes (structure-aware about half the time where the format has one).
    func mutate(_ seed: Seed, other: Seed, _ m: inout Mutator) -> [UInt8] {
        var b = seed.bytes
        // Stacked mutations reach states one step cannot (a count raised and the data cut short).
        for _ in 0..<(1 + m.rng.below(3)) {
            var structured: [UInt8]? = nil
            if m.rng.chance(0.5) {
                switch self {
                case .safetensors: structured = m.safetensorsMutation(b)
                case .index, .config, .tokenizer: structured = m.jsonMutation(b)
                case .gguf: structured = m.ggufMutation(b, fields: seed.ggufFields ?? [])
                case .tokens: structured = m.tokensMutation(b)
                }
            }
            b = structured ?? m.byteMutation(b, splice: other.bytes)
        }
        return b
    }

    /// The parser calls of the CLI on an input at `path` (in `dir`), each run and classified on its own.
    var probes: [(String, (_ path: String, _ dir: String) throws -> Void)] {
        switch self {
        case .safetensors, .index:
            return [("checkpoint", { _, dir in try loadCheckpoint(dir) }), ("tensors", { _, dir in try loadEveryTensor(dir) })]
        case .gguf:
            return [("checkpoint", { path, _ in try loadCheckpoint(path) }), ("tokenizer", { path, _ in try ggufTokenizer(path) })]
        case .config:
            return [("config", { path, _ in
                let c = try ModelConfig.load(path: path)
                let s = ModelSummary(config: c, storage: .bf16)
                _ = s.text
                _ = s.json.render()
            })]
        case .tokenizer:
            return [("tokenizer", { path, _ in try useTokenizer(try Tokenizer(model: path)) })]
        case .tokens:
            return [("tokens", { path, _ in
                let w = try TokenWindows(path: path, seqLen: 8, vocabSize: 96)
                let list = try w.firstWindows(nil, field: .maxWindows)
                _ = try w.spreadWindows(1, field: .calibWindows)
                var dst = [UInt32](repeating: 0, count: list.count * 8)
                dst.withUnsafeMutableBufferPointer { w.gather(list[...], into: $0.baseAddress!) }
            })]
        }
    }
}

func stem(_ name: String) -> String { (name as NSString).deletingPathExtension }

/// As eval/convert: the config, every tensor the model asks for by name and shape, nothing unexpected.
func loadCheckpoint(_ path: String) throws {
    let ckpt = try Checkpoint(path: path)
    let c = ckpt.config
    for spec in ParamLayout.specs(c, part: .whole(c)) {
        // Sized from the file's own shape when it differs (load refuses it before writing): a config of huge
        // widths must not make the harness allocate what the file does not hold.
        let stored = try ckpt.source.tensorInfo(spec.name).shape
        var buffer = [Float](repeating: 0, count: stored == spec.shape ? spec.count : 1)
        try buffer.withUnsafeMutableBufferPointer { try ckpt.load(spec.name, shape: spec.shape, into: $0.baseAddress!) }
        _ = try ckpt.source.mappedBF16(spec.name, shape: spec.shape)
    }
    try ckpt.checkNoUnexpectedTensors()
}

/// Every tensor the folder lists, at the shape it declares (non-float dtypes must be refused, not read).
func loadEveryTensor(_ dir: String) throws {
    let folder = try SafeTensorsFolder(directory: dir)
    for name in folder.tensorNames.sorted() {
        let (shape, _) = try folder.tensorInfo(name)
        var buffer = [Float](repeating: 0, count: shape.reduce(1, *))
        do {
            try buffer.withUnsafeMutableBufferPointer { try folder.load(name, shape: shape, into: $0.baseAddress!) }
        } catch GradMapError.badInput(let m) where m.contains("expected F32, F16 or BF16") {
            continue
        }
    }
}

/// As convert --tokenizer-only and tokenize: the tokenizer.json rebuilt from the metadata, then used.
func ggufTokenizer(_ path: String) throws {
    let file = try GGUFFile(path: path)
    let json = try file.tokenizerJSON()
    _ = try file.tokenizerConfigJSON()
    _ = try JSONSerialization.data(withJSONObject: json)
    try useTokenizer(try Tokenizer(json: json, source: path))
}

/// Text that reaches every tokenizer stage: added tokens, digits, spaces and newlines, non-ASCII, a long word.
let sampleText = "Hello world, it's 2024!\n  The naïve café <|im_end|> costs 3.14159 €; 日本語 🙂 <s> [WORD] "
    + String(repeating: "ab", count: 40) + "\r\n\tend"

func useTokenizer(_ t: Tokenizer) throws {
    let ids = t.encode(sampleText, addBOS: true)
    _ = t.decode(ids)
    _ = t.decode(ids, skipSpecialTokens: true)
    _ = t.decode([0, 1, 2, UInt32(t.vocabSize), UInt32.max])
    for id in ids.prefix(8) { _ = t.token(id) }
}

/// How one input fared.
enum Outcome {
    case ok
    case badInput(String)
    case finding(String)
}

/// Runs every probe on the input: a finding when a call throws anything but a one-line bad-input error (.badInput
/// or .badValue) naming the file.
func classify(_ format: Format, path: String, dir: String) -> [Outcome] {
    let name = (path as NSString).lastPathComponent
    return format.probes.map { probe, run in
        do {
            try run(path, dir)
            return .ok
        } catch let e as GradMapError where e.exitCode == 2 {
            let m = e.description
            if m.contains("\n") { return .finding("\(probe): bad-input message is more than one line: \(m.debugDescription)") }
            if !m.contains(name) { return .finding("\(probe): bad-input message does not name \(name): \(m)") }
            return .badInput(m)
        } catch {
            return .finding("\(probe): not a bad-input error: \(error)")
        }
    }
}
