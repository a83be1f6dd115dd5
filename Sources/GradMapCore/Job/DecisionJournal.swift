// The journal of a pruning job's completed decisions, so that a crashed or preempted job continues where it
// stopped (`prune --resume`). It lives in the job's `.DIR.partial` folder as JSON lines: a header with the
// fingerprints of the model, the token windows and the options that decide, then one line per decision
// (layer, score, every layer's score, verified losses, seconds), each appended and synced to disk by rank 0
// as the decision completes. Scores and losses are stored as the hex bits of their Double (JSON readers do not
// all round-trip the last digit), so that a resumed job reports exactly what the first run measured. A line cut short by a crash is ignored. Decisions do not depend on the number of
// ranks or stages, so a resumed job may run on another layout.
import Foundation
import GradMapFormats
import GradMapPruning
import GradMapSupport

public struct JobFingerprint: Sendable, Equatable {
    /// Tensor names, shapes and dtypes, the config, and each file's size with its first and last MiB.
    public let model: String
    /// The calibration and validation windows' token ids.
    public let windows: String
    /// Every setting that changes a decision or the written tensors, spelled out (so a mismatch can be shown).
    public let options: String

    var json: JSONValue { .object([("model", .string(model)), ("windows", .string(windows)), ("options", .string(options))]) }
}

public enum DecisionJournal {
    public static let fileName = "decisions.jsonl"

    public static func path(in folder: PartialFolder) -> String { folder.path + "/" + fileName }

    /// The fingerprint of a job (the same on every rank).
    static func fingerprint(_ job: PruneJob) throws -> JobFingerprint {
        let ckpt = job.checkpoint
        var model = Fingerprint()
        for name in ckpt.source.tensorNames.sorted() {
            let info = try ckpt.source.tensorInfo(name)
            model.add(name)
            model.add(info.dtype)
            for d in info.shape { model.add(Int64(d)) }
        }
        model.add((try? JSONSerialization.data(withJSONObject: ckpt.config.raw, options: [.sortedKeys])).map { String(decoding: $0, as: UTF8.self) } ?? "")
        let files = Set(ckpt.source.tensorNames.map { ckpt.source.file(holding: $0) }).sorted()
        for file in files { try addEnds(of: file, to: &model) }
        var windows = Fingerprint()
        let t = job.data.seqLen
        for list in [job.calibration, job.validation] {
            windows.add(Int64(list.count))
            var ids = [UInt32](repeating: 0, count: list.count * t)
            ids.withUnsafeMutableBufferPointer { job.data.gather(list[...], into: $0.baseAddress!) }
            ids.withUnsafeBytes { windows.add($0) }
        }
        let c = job.config, o = c.decisions
        let options = [
            "metric=\(o.metric.rawValue)", "remove=\(o.remove)", "layers=\(o.layers.map { $0.map(String.init).joined(separator: ",") } ?? "-")",
            "verify-top=\(o.verifyTop)", "protect=\(o.protectFirst),\(o.protectLast)", "seed=\(o.seed)", "iterative=\(o.iterative)",
            "gradient-norm=\(o.gradientNorm.rawValue)", "micro-batch=\(o.microBatch)", "seq-len=\(c.engine.seqLen)",
            "matmul=\(c.engine.matmul.rawValue)", "weights=\(c.engine.weights.rawValue)",
            "compensate-at=\(o.compensateAt.map { "\($0)" } ?? "none")", "ridge=\(o.ridge)",
        ].joined(separator: " ")
        return JobFingerprint(model: model.hex, windows: windows.hex, options: options)
    }

    /// Adds a file's size and its first and last MiB (its header, and the tail of its data).
    static func addEnds(of path: String, to f: inout Fingerprint) throws {
        guard let h = FileHandle(forReadingAtPath: path) else { throw GradMapError.runtime("\(path): cannot read") }
        defer { try? h.close() }
        let size = try h.seekToEnd()
        f.add(size)
        let span: UInt64 = 1 << 20
        try h.seek(toOffset: 0)
        (try h.read(upToCount: Int(min(span, size))) ?? Data()).withUnsafeBytes { f.add($0) }
        if size > span {
            try h.seek(toOffset: size - span)
            (try h.read(upToCount: Int(span)) ?? Data()).withUnsafeBytes { f.add($0) }
        }
    }

    /// Starts a journal (rank 0), replacing any.
    static func start(_ path: String, _ fp: JobFingerprint) throws {
        let header = JSONValue.object([("journal", .int(1)), ("fingerprint", fp.json)]).render() + "\n"
        try namingFile(path) { try Data(header.utf8).write(to: URL(fileURLWithPath: path)) }
        try sync(path)
    }

    /// Appends one completed decision and syncs it to disk (rank 0).
    static func append(_ path: String, _ d: Decision) throws {
        func bits(_ x: Double) -> JSONValue { .string(String(x.bitPattern, radix: 16)) }
        let line = JSONValue.object([
            ("step", .int(d.step)), ("removed", .int(d.removed)), ("score", bits(d.score)),
            ("scores", .array(d.scores.map(bits))),
            ("verified", .array(d.verified.map { .array([.int($0.0), bits($0.1)]) })), ("seconds", .double(d.seconds)),
        ]).render() + "\n"
        try namingFile(path) {
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            defer { try? h.close() }
            try h.seekToEnd()
            try h.write(contentsOf: Data(line.utf8))
            try h.synchronize()
        }
    }

    static func sync(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw GradMapError.runtime("\(path): cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw GradMapError.runtime("\(path): cannot sync (\(String(cString: strerror(errno))))") }
    }

    /// The decisions a journal holds, checked against this job's fingerprint: a mismatch is bad input naming
    /// what differs. `layers` is the model's layer count.
    static func read(_ path: String, expecting fp: JobFingerprint, layers: Int) throws -> [Decision] {
        guard FileManager.default.fileExists(atPath: path) else {
            throw bad(.resume, nil, "no journal at \(path): nothing to resume (the job never started, or it finished)")
        }
        let text = try namingFile(path, "cannot read") { try String(contentsOfFile: path, encoding: .utf8) }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() } else if lines.count > 1 { lines.removeLast() }  // cut short by a crash
        func object(_ line: String) -> [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
        guard let header = lines.first.flatMap(object), let f = header["fingerprint"] as? [String: Any],
              let model = f["model"] as? String, let windows = f["windows"] as? String, let options = f["options"] as? String
        else { throw bad(.resume, nil, "\(path): not a decision journal (no fingerprint header)") }
        if model != fp.model {
            throw bad(.resume, nil, "\(path) was made from another model (fingerprint \(model), this one \(fp.model))")
        }
        if windows != fp.windows {
            throw bad(.resume, nil, "\(path) was made on other token windows (fingerprint \(windows), these \(fp.windows))")
        }
        if options != fp.options {
            throw bad(.resume, nil, "\(path) was made with other options: \(options); now: \(fp.options)")
        }
        var decisions: [Decision] = []
        for (k, line) in lines.dropFirst().enumerated() {
            guard let o = object(line), o["step"] as? Int == k + 1, let removed = o["removed"] as? Int, removed >= 0, removed < layers,
                  let scores = o["scores"] as? [Any], scores.count == layers, let verified = o["verified"] as? [[Any]],
                  let seconds = (o["seconds"] as? NSNumber)?.doubleValue
            else { throw bad(.resume, nil, "\(path): line \(k + 2) is not decision \(k + 1)") }
            func number(_ x: Any?) throws -> Double {
                guard let hex = x as? String, let b = UInt64(hex, radix: 16) else {
                    throw bad(.resume, nil, "\(path): line \(k + 2) holds a value that is not a Double's bits")
                }
                return Double(bitPattern: b)
            }
            decisions.append(Decision(
                step: k + 1, removed: removed, score: try number(o["score"]), scores: try scores.map(number),
                verified: try verified.map { (($0.first as? Int) ?? -1, try number($0.last)) }, seconds: seconds))
        }
        return decisions
    }
}
