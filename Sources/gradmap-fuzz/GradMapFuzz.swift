// gradmap-fuzz: a seeded mutation loop over the parsers of every input format (safetensors header, sharded index,
// GGUF, config.json, tokenizer.json, token files). Each mutated input is written to a file under --out and run
// through the parser calls the CLI makes; a finding (an error that is not one-line bad input naming the file, or
// an input slower than --time-limit) is kept under --regressions. A crash ends the process with the input still in
// --out/current-<format>/<seed>/ and its regression name in --out/current-<format>.keep (launch/fuzz keeps it);
// a hang is caught by a watchdog thread.
//
//   gradmap-fuzz --format safetensors|index|gguf|config|tokenizer|tokens|all [--corpus Tests/Fuzz/corpus]
//                [--seconds 60] [--runs N] [--seed 1] [--out DIR] [--regressions Tests/Fuzz/regressions]
//                [--time-limit 1] [--hang-limit 10]
//   gradmap-fuzz --replay Tests/Fuzz/regressions [--corpus ...] [--out DIR]    (every file, by its folder's format)
import Foundation
import GradMapSupport

struct Options {
    var formats: [Format] = Format.allCases
    var corpus = "Tests/Fuzz/corpus"
    var seconds = 60.0
    var runs: Int? = nil
    var seed: UInt64 = 1
    var out = NSTemporaryDirectory() + "gradmap-fuzz"
    var regressions = "Tests/Fuzz/regressions"
    /// An input taking longer than this is a finding (slow); one taking longer than hangLimit ends the run.
    var timeLimit = 1.0
    var hangLimit = 10.0
    var replay: [String] = []

    static let usage = "usage: gradmap-fuzz --format safetensors|index|gguf|config|tokenizer|tokens|all [--corpus DIR] [--seconds S] [--runs N] [--seed N] [--out DIR] [--regressions DIR] [--time-limit S] [--hang-limit S] | --replay PATH..."

    init(_ args: [String]) throws {
        var i = 0
        func value(_ flag: String) throws -> String {
            i += 1
            guard i < args.count else { throw GradMapError.badInput("\(flag): needs a value") }
            return args[i]
        }
        func number(_ flag: String) throws -> Double {
            let s = try value(flag)
            guard let d = Double(s), d > 0 else { throw GradMapError.badInput("\(flag): expected a positive number, got \(s)") }
            return d
        }
        while i < args.count {
            let flag = args[i]
            switch flag {
            case "--format":
                let s = try value(flag)
                if s == "all" { formats = Format.allCases; break }
                formats = try s.split(separator: ",").map { name in
                    guard let f = Format(rawValue: String(name)) else {
                        throw GradMapError.badInput("--format: unknown format \(name); expected \(Format.allCases.map(\.rawValue).joined(separator: ", ")) or all")
                    }
                    return f
                }
            case "--corpus": corpus = try value(flag)
            case "--seconds": seconds = try number(flag)
            case "--runs": runs = Int(try number(flag))
            case "--seed":
                let s = try value(flag)
                guard let n = UInt64(s) else { throw GradMapError.badInput("--seed: expected a non-negative integer, got \(s)") }
                seed = n
            case "--out": out = try value(flag)
            case "--regressions": regressions = try value(flag)
            case "--time-limit": timeLimit = try number(flag)
            case "--hang-limit": hangLimit = try number(flag)
            case "--replay":
                while i + 1 < args.count && !args[i + 1].hasPrefix("--") { i += 1; replay.append(args[i]) }
                guard !replay.isEmpty else { throw GradMapError.badInput("--replay: needs a file or folder") }
            case "--help", "-h":
                say(Options.usage)
                exit(0)
            default:
                throw GradMapError.badInput("\(flag): unknown flag; \(Options.usage)")
            }
            i += 1
        }
    }
}

/// What the watchdog sees of the attempt in progress.
final class Attempt: @unchecked Sendable {
    private let lock = NSLock()
    private var start: UInt64 = 0
    private var input = ""
    private var keep = ""

    func begin(input: String, keep: String) {
        lock.lock(); defer { lock.unlock() }
        start = DispatchTime.now().uptimeNanoseconds
        self.input = input
        self.keep = keep
    }

    func end() { lock.lock(); defer { lock.unlock() }; start = 0 }

    /// (seconds running, input, where a hang keeps it), nil when idle.
    func current() -> (Double, String, String)? {
        lock.lock(); defer { lock.unlock() }
        guard start != 0 else { return nil }
        return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, input, keep)
    }
}

/// Copies a finding's input to the regressions folder (made on demand).
func keepRegression(_ input: String, as dest: String) {
    let fm = FileManager.default
    try? fm.createDirectory(atPath: (dest as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    if !fm.fileExists(atPath: dest) { try? fm.copyItem(atPath: input, toPath: dest) }
}

/// One line on stdout, unbuffered (a crash right after must not lose it).
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

/// FNV-1a, 64-bit, as 12 hex digits: a short stable name for an input.
func shortHash(_ b: [UInt8]) -> String {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for x in b { h = (h ^ UInt64(x)) &* 0x100_0000_01b3 }
    return String(String(h, radix: 16).prefix(12))
}

/// Writes a file without the fsync that Data.write does on Linux (thousands of inputs a second; a crash leaves
/// the bytes in the page cache, which is all launch/fuzz needs).
func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    guard let f = fopen(path, "wb") else { throw GradMapError.runtime("\(path): cannot write (\(String(cString: strerror(errno))))") }
    defer { fclose(f) }
    guard bytes.withUnsafeBytes({ fwrite($0.baseAddress, 1, $0.count, f) }) == bytes.count else {
        throw GradMapError.runtime("\(path): short write")
    }
}

/// The work folders of one format: current-<format>/<seed>/ holds the seed's companions (written once) and the
/// current input made from that seed.
struct WorkFolder {
    let root: String
    let format: Format
    /// The folder of the input last written.
    private(set) var dir: String
    private var prepared: Set<String> = []

    init(out: String, format: Format) throws {
        root = out + "/current-" + format.rawValue
        self.format = format
        dir = root
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    var inputPath: String { dir + "/" + format.inputName }

    /// Where launch/fuzz finds the input and its regression name after a crash: "input<TAB>regression".
    var crashNote: String { root + ".keep" }

    mutating func write(_ bytes: [UInt8], seed: Seed, keepAs: String) throws {
        dir = root + "/" + seed.name
        if !prepared.contains(seed.name) {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for c in seed.companions { try writeFile(dir + "/" + c.name, c.bytes) }
            prepared.insert(seed.name)
        }
        try writeFile(inputPath, bytes)
        try writeFile(crashNote, Array((inputPath + "\t" + keepAs + "\n").utf8))
    }
}

/// Counts of a run: inputs, how they fared, and the seconds spent inside the parsers (the inputs/s printed).
struct Tally {
    var inputs = 0, ok = 0, badInput = 0, findings = 0
    var seconds = 0.0
}

/// Runs one input through its format's probes; prints and keeps a finding. Returns what happened, in a line.
@discardableResult
func attempt(
    _ bytes: [UInt8], seed: Seed, work: inout WorkFolder, keepAs: String, options: Options, watchdog: Attempt, tally: inout Tally
) throws -> String {
    try work.write(bytes, seed: seed, keepAs: keepAs)
    watchdog.begin(input: work.inputPath, keep: keepAs)
    let start = DispatchTime.now().uptimeNanoseconds
    let outcomes = classify(work.format, path: work.inputPath, dir: work.dir)
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    watchdog.end()
    tally.inputs += 1
    tally.seconds += seconds
    var problems = outcomes.compactMap { o -> String? in if case .finding(let m) = o { return m } else { return nil } }
    if seconds > options.timeLimit { problems.append(String(format: "slow: %.2f s, limit %.2f s", seconds, options.timeLimit)) }
    if problems.isEmpty {
        let messages = outcomes.compactMap { o -> String? in if case .badInput(let m) = o { return m } else { return nil } }
        if messages.isEmpty { tally.ok += 1 } else { tally.badInput += 1 }
        return messages.isEmpty ? "ok" : "bad input: " + messages.joined(separator: " | ")
    }
    tally.findings += 1
    if !keepAs.isEmpty { keepRegression(work.inputPath, as: keepAs) }
    say("fuzz: FINDING \(work.format.rawValue) \(keepAs.isEmpty ? work.inputPath : keepAs): \(problems.joined(separator: "; "))")
    return "FINDING: " + problems.joined(separator: "; ")
}

@main
struct GradMapFuzz {
    static func main() {
        do {
            let options = try Options(Array(CommandLine.arguments.dropFirst()))
            let watchdog = Attempt()
            let hangLimit = options.hangLimit
            let thread = Thread {
                while true {
                    Thread.sleep(forTimeInterval: 0.1)
                    guard let (seconds, input, keep) = watchdog.current(), seconds > hangLimit else { continue }
                    if !keep.isEmpty { keepRegression(input, as: keep) }
                    say("fuzz: FINDING hang: \(input) still running after \(hangLimit) s\(keep.isEmpty ? "" : "; kept as \(keep)")")
                    exit(3)
                }
            }
            thread.start()
            let failed = options.replay.isEmpty ? try fuzz(options, watchdog) : try replay(options, watchdog)
            exit(failed ? 1 : 0)
        } catch {
            FileHandle.standardError.write(Data("gradmap-fuzz: \(error)\n".utf8))
            exit(2)
        }
    }

    /// The mutation loop: formats in turn, each for an equal share of --seconds (or --runs inputs each).
    static func fuzz(_ options: Options, _ watchdog: Attempt) throws -> Bool {
        var total = Tally()
        let share = options.seconds / Double(options.formats.count)
        for (k, format) in options.formats.enumerated() {
            let seeds = try format.seeds(corpus: options.corpus)
            var work = try WorkFolder(out: options.out, format: format)
            var mutator = Mutator(rng: FuzzRNG(state: options.seed &* 0x1000 &+ UInt64(k)))
            var tally = Tally()
            let start = DispatchTime.now().uptimeNanoseconds
            // Every seed as it is first: a seed that fails is a broken corpus, not a finding.
            for seed in seeds {
                try attempt(seed.bytes, seed: seed, work: &work, keepAs: "", options: options, watchdog: watchdog, tally: &tally)
            }
            while true {
                if let runs = options.runs { if tally.inputs >= runs { break } }
                else if Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 >= share { break }
                let seed = mutator.rng.pick(seeds)
                let bytes = format.mutate(seed, other: mutator.rng.pick(seeds), &mutator)
                let keep = "\(options.regressions)/\(format.rawValue)/\(seed.name)-\(shortHash(bytes)).\(format.regressionExtension)"
                try attempt(bytes, seed: seed, work: &work, keepAs: keep, options: options, watchdog: watchdog, tally: &tally)
            }
            say(String(format: "fuzz: %@: %d inputs (%d ok, %d bad input), %d findings, %.0f inputs/s",
                         format.rawValue, tally.inputs, tally.ok, tally.badInput, tally.findings,
                         Double(tally.inputs) / max(tally.seconds, 1e-9)))
            total.inputs += tally.inputs
            total.findings += tally.findings
        }
        say("fuzz: \(total.inputs) inputs, \(total.findings) findings")
        return total.findings > 0
    }

    /// Every regression file (a folder's files take the format of the folder they are in) through the probes.
    static func replay(_ options: Options, _ watchdog: Attempt) throws -> Bool {
        var files: [(String, Format)] = []
        let fm = FileManager.default
        for root in options.replay {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: root, isDirectory: &isDir) else { throw GradMapError.badInput("--replay: \(root) not found") }
            let list = isDir.boolValue ? (fm.subpaths(atPath: root) ?? []).sorted().map { root + "/" + $0 } : [root]
            for path in list {
                var d: ObjCBool = false
                guard fm.fileExists(atPath: path, isDirectory: &d), !d.boolValue else { continue }
                let folder = ((path as NSString).deletingLastPathComponent as NSString).lastPathComponent
                guard let format = Format(rawValue: folder) else {
                    throw GradMapError.badInput("\(path): expected to be in a folder named for its format (\(Format.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                files.append((path, format))
            }
        }
        var tally = Tally()
        var seedsByFormat: [Format: [Seed]] = [:]
        for (path, format) in files {
            let seeds = try seedsByFormat[format] ?? format.seeds(corpus: options.corpus)
            seedsByFormat[format] = seeds
            // The seed whose companions the input was made with: the regression's name starts with it.
            let name = (path as NSString).lastPathComponent
            let seed = seeds.first { name.hasPrefix($0.name + "-") } ?? seeds[0]
            var work = try WorkFolder(out: options.out, format: format)
            guard let bytes = fm.contents(atPath: path) else { throw GradMapError.badInput("\(path): cannot read") }
            let start = DispatchTime.now().uptimeNanoseconds
            let result = try attempt([UInt8](bytes), seed: seed, work: &work, keepAs: "", options: options, watchdog: watchdog, tally: &tally)
            let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            // One line per file: format, file, milliseconds, outcome (FuzzRegressionTests reads these).
            say(String(format: "replay %@ %@ %.1f ms: %@", format.rawValue, path, ms, result))
        }
        say("fuzz: replayed \(tally.inputs) inputs, \(tally.findings) findings")
        return tally.findings > 0
    }
}
