// The report a person reads: pruning_report.svg well-formed and drawn by rsvg-convert (librsvg2-bin: CI
// installs it, and its absence fails these tests) with its layers where the picture says they are, and
// the progress lines' time left as arithmetic on a plan of the passes a job has still to run.
import Foundation
import XCTest

#if canImport(FoundationXML)
import FoundationXML
#endif

@testable import GradMapCompensation
@testable import GradMapEngine
@testable import GradMapFormats
@testable import GradMapJob
@testable import GradMapPruning
@testable import GradMapReport
@testable import GradMapSupport

final class ReportTests: XCTestCase {
    // MARK: time left

    func testTimeLeftIsDecisionsThenPassesAtTheMeasuredRate() {
        var rate = ForwardRate(layerFlops: 10, headFlops: 20, seqLen: 2)
        // Nothing measured: the passes cost nothing yet, the decisions their pace.
        XCTAssertEqual(secondsLeft(decisions: 3, secondsPerDecision: 1.5, passes: [PlannedPass(windows: 8, layers: 2)], rate: rate), 4.5)
        // 4 windows × 2 tokens × (3 layers × 10 + 20) = 400 FLOPs in 2 s; then 8 × 2 × (2 × 10 + 20) = 640 FLOPs.
        rate.measured(PlannedPass(windows: 4, layers: 3), seconds: 2)
        XCTAssertEqual(rate.flops, 400)
        let left = secondsLeft(decisions: 3, secondsPerDecision: 1.5, passes: [PlannedPass(windows: 8, layers: 2)], rate: rate)
        XCTAssertEqual(left, 4.5 + 640 * 2 / 400, accuracy: 1e-12)  // sums of a few exact binary fractions
        // Two measurements pool their seconds and FLOPs (a slow first pass does not decide the rate alone).
        rate.measured(PlannedPass(windows: 1, layers: 0), seconds: 0.5)  // 2 × 20 = 40 FLOPs
        XCTAssertEqual(secondsLeft(decisions: 0, secondsPerDecision: 9, passes: [PlannedPass(windows: 1, layers: 0)], rate: rate),
                       40 * 2.5 / 440, accuracy: 1e-12)
    }

    /// The issue's case: a one-shot `bi` job after its only pass has no decision work left, but its pruned loss,
    /// both held-out evaluations and the auto compensation's passes (SmolLM2's shape: 30 layers, 8 removed).
    func testOneShotMetricAfterItsPassStillHasCompensationAndEvaluationLeft() {
        let plan = PrunePlan(layers: 30, remove: 8, calibrationWindows: 32, validationWindows: 4, heldOutWindows: 128, compensation: .auto)
        let removed: Set<Int> = [14, 17, 13, 12, 15, 16, 25, 26]
        let calib = PlannedPass(windows: 32, layers: 22), original = PlannedPass(windows: 32, layers: 30)
        let eval = PlannedPass(windows: 128, layers: 22), validation = PlannedPass(windows: 4, layers: 22)
        // Two runs of removed layers (12–17, 25–26): candidates ≤ 3 shifts + 2 layers after them, × 3 ridge factors.
        XCTAssertEqual(Compensation.autoCandidateBound(removed: removed, layers: 30, kept: 22), 5)
        // The sums: layers 0–11 once, then 12–29 of the original (18) and the 10 kept of them, no lm_head; the
        // validation sweep: the pruned model, then each of the 15 solutions over at most those 10 kept layers.
        let sums = PlannedPass(windows: 32, layers: 12 + 18 + 10, head: false)
        let solution = PlannedPass(windows: 4, layers: 10)
        let compensation = [sums, validation] + [PlannedPass](repeating: solution, count: 5 * 3)
        XCTAssertEqual(plan.passes(from: .prunedLoss, removed: removed), [calib, eval] + compensation + [calib, eval])
        XCTAssertEqual(plan.passes(from: .compensation, removed: removed), compensation + [calib, eval])
        XCTAssertEqual(plan.passes(from: .compensatedEval, removed: removed), [eval])
        // A measured 32-window pass over all 30 layers at 19 s prices the rest.
        var rope = RopeConfig()
        rope.theta = 100000
        let c = ModelConfig(
            modelType: "llama", vocabSize: 49152, hidden: 576, intermediate: 1536, layers: 30, heads: 9, kvHeads: 3, headDim: 64,
            rmsEps: 1e-5, tieEmbeddings: true, qkvBias: false, attentionOutputBias: false, mlpBias: false, rope: rope)
        var rate = ForwardRate(config: c, seqLen: 256)
        rate.measured(original, seconds: 19)
        let rest = plan.passes(from: .prunedLoss, removed: removed)
        let want = rest.map { rate.flops($0) }.reduce(0, +) * 19 / rate.flops(original)
        XCTAssertEqual(secondsLeft(decisions: 0, secondsPerDecision: 0, passes: rest, rate: rate), want, accuracy: 1e-9 * want)
        // A pass over 22 of 30 layers costs less than the full one, more than 22/30 of it (the lm_head stays).
        XCTAssertLessThan(rate.flops(calib), rate.flops(original))
        XCTAssertGreaterThan(rate.flops(calib), rate.flops(original) * 22 / 30)
    }

    func testPlanWithoutCompensationOrHeldOutIsThePrunedLossAlone() {
        let plan = PrunePlan(layers: 8, remove: 3, calibrationWindows: 8, validationWindows: 1, heldOutWindows: nil, compensation: nil)
        XCTAssertEqual(plan.passes(from: .prunedLoss, removed: [2]), [PlannedPass(windows: 8, layers: 5)])
        XCTAssertEqual(plan.passes(from: .prunedEval, removed: [2, 3, 5]), [])
        // A given layer or the largest shift: the sums alone, no validation passes; then the compensated loss.
        var shift = plan
        shift.compensation = .shift
        XCTAssertEqual(shift.passes(from: .compensation, removed: [2, 3, 5]),
                       [PlannedPass(windows: 8, layers: 2 + 6 + 3, head: false), PlannedPass(windows: 8, layers: 5)])
    }

    // MARK: the picture

    /// A real prune of an 8-layer model (shift compensation, so that a layer is compensated, and held-out
    /// windows, so that every panel is drawn): the written SVG is well-formed, renders at its stated size, and
    /// shows each layer in its colour where the strip puts it; the first decision's removed layer is its
    /// darkest score cell and its highest-scored layer the palest.
    func testTheWrittenReportRendersWithEveryLayerInItsPlace() throws {
        let model = try makeModel(layers: 8, tied: false, dtype: .f32)
        let out = temporaryDirectory("report") + "/pruned"
        let r = try runProcess(binaryPath, [
            "prune", "--model", model, "--tokens", model + "/tokens.bin", "--seq-len", "16", "--calib-windows", "8",
            "--remove", "3", "--compensate-at", "shift", "--eval-tokens", model + "/tokens.bin", "--eval-windows", "4",
            "--out", out, "--json",
        ])
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try lastJSON(r)
        let removed = o["removed"] as! [Int]
        let j = (o["compensation"] as! [String: Any])["layer"] as! Int
        let svg = try String(contentsOfFile: out + "/pruning_report.svg", encoding: .utf8)
        let png = try render(svg)
        XCTAssertEqual(png.width, Int(ReportSVG.width))
        for l in 0..<8 {
            let (x, y) = ReportSVG.stripCell(l, layers: 8)
            let want = removed.contains(l) ? ReportSVG.removedColor : l == j ? ReportSVG.compensatedColor : ReportSVG.keptColor
            // Sampled left of the cell's centre, off its decision number.
            assertColour(png.pixel(Int(x) - 20, Int(y)), want, "layer \(l)")
        }
        // Ranks among every scored layer, the protected first and last too.
        let scores = (o["scores"] as! [[Any]])[0].map { ($0 as? NSNumber)?.doubleValue ?? .nan }
        let lowest = (0..<8).min { scores[$0] < scores[$1] }!, highest = (0..<8).max { scores[$0] < scores[$1] }!
        for (l, want) in [(lowest, ReportSVG.ramp(0)), (highest, ReportSVG.ramp(1))] {
            let (x, y) = ReportSVG.scoreCell(l, decision: 0, layers: 8)
            assertColour(png.pixel(Int(x) + 6, Int(y) + 9), want, "decision 1, layer \(l)")
        }
        let (x, y) = ReportSVG.scoreCell(removed[0], decision: 0, layers: 8)
        assertColour(png.pixel(Int(x) + 1, Int(y) + 9), ReportSVG.removedColor, "decision 1's removed layer outlined")
        // The phases the picture stacks are parts of the job's time, none counted twice.
        let seconds = o["seconds"] as! [String: NSNumber]
        XCTAssertEqual(Set(seconds.keys), ["load", "scoring", "compensation", "evaluation", "writing"])
        let named = seconds.values.map(\.doubleValue).reduce(0, +)
        // Each phase is timed inside the total, from its own clock: they sum to at most it (1 ms for the
        // rounding of the printed numbers).
        XCTAssertLessThanOrEqual(named, (o["total_seconds"] as! NSNumber).doubleValue + 1e-3)
        XCTAssertTrue(seconds.values.allSatisfy { $0.doubleValue >= 0 }, "\(seconds)")
    }

    /// Results no real job above makes: given layers (no scores), no held-out text, one held-out window (no
    /// interval), a deep model (cells too narrow for numbers), and a command line with markup and a control
    /// character. Each is well-formed and renders without a warning.
    func testUnusualResultsRender() throws {
        func result(layers: Int, removed: [Int], scored: Bool) -> PruningResult {
            var r = PruningResult(metric: scored ? "fisher" : "given", command: "prune --text a<b&c.txt\u{1}", seqLen: 16, seed: 0,
                                  matmul: .f32, calibrationWindows: [0, 1], validationWindows: [])
            r.model = "model<1>"
            var kept = Set(0..<layers)
            for (k, l) in removed.enumerated() {
                // Negative scores and a layer 0 orders of magnitude above the rest: ranks show them alike.
                let scores = (0..<layers).map { kept.contains($0) && scored ? ($0 == 0 ? 1e6 : Double($0 % 7) - 3) : .nan }
                r.decisions.append(Decision(step: k + 1, removed: l, score: scores[l], scores: scores, verified: [], seconds: 1))
                kept.remove(l)
            }
            r.calibLossOriginal = 2.0
            r.calibLossPruned = 2.5
            r.scoringSeconds = 3
            r.totalSeconds = 5
            return r
        }
        var oneWindow = result(layers: 8, removed: [3, 4], scored: true)
        oneWindow.heldOut = HeldOutResult(windows: [0], seqLen: 16)
        oneWindow.heldOut!.record("original", windowMeans([2.1]))
        oneWindow.heldOut!.record("pruned", windowMeans([2.6]))
        for (name, r) in [("given", result(layers: 8, removed: [2, 5], scored: false)),
                          ("no held-out", result(layers: 8, removed: [3], scored: true)), ("one window", oneWindow),
                          ("80 layers", result(layers: 80, removed: Array(30..<50), scored: true))] {
            let svg = ReportSVG.svg(r)
            XCTAssertTrue(svg.contains("a&lt;b&amp;c.txt") && !svg.contains("\u{1}"), name)
            let png = try render(svg)
            XCTAssertEqual(png.width, Int(ReportSVG.width), name)
            let layers = r.decisions[0].scores.count
            let (x, y) = ReportSVG.stripCell(r.decisions[0].removed, layers: layers)
            assertColour(png.pixel(Int(x), Int(y) + 10), ReportSVG.removedColor, name)
        }
    }

    /// The check itself: a broken SVG (cut short, or not SVG at all) fails it.
    func testABrokenPictureFailsTheCheck() throws {
        let svg = ReportSVG.svg(PruningResultSample.make())
        XCTAssertNoThrow(try render(svg))
        XCTAssertThrowsError(try render(String(svg.prefix(svg.count / 2))), "cut in half")
        XCTAssertThrowsError(try render(svg.replacingOccurrences(of: "<rect", with: "<rect <")), "malformed tag")
        XCTAssertThrowsError(try render("<html><body>not a picture</body></html>\n"), "not SVG")
    }

    // MARK: helpers

    /// The render check: `svg` is well-formed XML whose root is an <svg> with a width and height, rsvg-convert
    /// draws it with exit 0 and nothing on stderr (a warning fails too), into a PNG of that width and height
    /// that is not blank (some pixels differ from the white background). Returns the decoded picture.
    func render(_ svg: String, file: StaticString = #filePath, line: UInt = #line) throws -> PNGImage {
        let root = RootElement()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = root
        guard parser.parse() else {
            throw GradMapError.runtime("not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")")
        }
        guard root.name == "svg", let w = root.attributes["width"].flatMap(Int.init), let h = root.attributes["height"].flatMap(Int.init) else {
            throw GradMapError.runtime("root <\(root.name)> is not an <svg> with an integer width and height")
        }
        let dir = temporaryDirectory("render")
        try svg.write(toFile: dir + "/report.svg", atomically: true, encoding: .utf8)
        let r = try runProcess(try rsvgConvert(), ["--format", "png", "--output", dir + "/report.png", dir + "/report.svg"])
        guard r.status == 0, r.stderr.isEmpty else { throw GradMapError.runtime("rsvg-convert: exit \(r.status): \(r.stderr)") }
        let png = try PNGImage(Data(contentsOf: URL(fileURLWithPath: dir + "/report.png")))
        guard png.width == w, png.height == h else { throw GradMapError.runtime("PNG \(png.width)×\(png.height), SVG \(w)×\(h)") }
        let white = png.pixel(0, 0)
        let inked = (0..<(png.width * png.height)).filter { png.pixel($0 % png.width, $0 / png.width) != white }.count
        guard inked > png.width * png.height / 50 else { throw GradMapError.runtime("blank picture: \(inked) pixels drawn") }
        return png
    }

    /// rsvg-convert on PATH; missing is a failure, not a skip (CI installs librsvg2-bin).
    func rsvgConvert() throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/rsvg-convert") {
            return "\(dir)/rsvg-convert"
        }
        throw GradMapError.runtime("rsvg-convert not found on PATH: apt-get install librsvg2-bin")
    }

    /// A pixel within 12 of `hex` in every channel: antialiasing at the cells' white borders and the renderer's
    /// rounding move colours by a few units, while the report's colours differ from each other by ≥ 40.
    func assertColour(_ p: [UInt8], _ hex: String, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let v = Int(hex.dropFirst(), radix: 16)!
        let want = [(v >> 16) & 255, (v >> 8) & 255, v & 255]
        let near = zip(p.prefix(3), want).allSatisfy { abs(Int($0) - $1) <= 12 }
        XCTAssertTrue(near, "\(label): pixel \(p), want \(hex)", file: file, line: line)
    }
}

/// A small result with every panel: the broken-picture test's starting point.
enum PruningResultSample {
    static func make() -> PruningResult {
        var r = PruningResult(metric: "bi", command: "prune", seqLen: 16, seed: 0, matmul: .f32, calibrationWindows: [0], validationWindows: [])
        r.model = "sample"
        let scores = [5.0, 0.2, 0.1, 0.3, 4.0]
        r.decisions = [Decision(step: 1, removed: 2, score: 0.1, scores: scores, verified: [], seconds: 1)]
        r.calibLossOriginal = 2
        r.calibLossPruned = 2.2
        r.heldOut = HeldOutResult(windows: [0, 1, 2], seqLen: 16)
        r.heldOut!.record("original", windowMeans([1.9, 2.0, 2.1]))
        r.heldOut!.record("pruned", windowMeans([2.2, 2.3, 2.4]))
        r.scoringSeconds = 1
        r.totalSeconds = 2
        return r
    }
}

/// A held-out pass's result with these per-window mean losses (16-token windows: 15 predictions each).
func windowMeans(_ means: [Double]) -> LossResult {
    LossResult(windows: means.count, seqLen: 16, nll: means.reduce(0, +) * 15, windowNLL: means.map { $0 * 15 })
}

/// The root element's name and attributes.
final class RootElement: NSObject, XMLParserDelegate {
    var name = ""
    var attributes: [String: String] = [:]

    func parser(_ parser: XMLParser, didStartElement element: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        guard name.isEmpty else { return }
        name = element
        self.attributes = attributes
    }
}

/// An 8-bit RGB or RGBA PNG decoded: its chunks read, the IDAT stream inflated by the system's zlib (loaded
/// at run time: the test target links no C library) and every row's filter undone.
struct PNGImage {
    let width: Int
    let height: Int
    let channels: Int
    /// Row-major, `channels` bytes a pixel.
    let pixels: [UInt8]

    func pixel(_ x: Int, _ y: Int) -> [UInt8] {
        let i = (y * width + x) * channels
        return Array(pixels[i..<(i + channels)])
    }

    init(_ data: Data) throws {
        let b = [UInt8](data)
        guard b.count > 33, b.prefix(8) == [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] else { throw GradMapError.runtime("not a PNG") }
        func u32(_ i: Int) -> Int { Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3]) }
        var at = 8, idat: [UInt8] = [], header: [UInt8] = []
        while at + 12 <= b.count {
            let n = u32(at), type = String(decoding: b[(at + 4)..<(at + 8)], as: UTF8.self)
            guard at + 12 + n <= b.count else { throw GradMapError.runtime("PNG chunk \(type) runs past the end") }
            let body = b[(at + 8)..<(at + 8 + n)]
            if type == "IHDR" { header = Array(body) }
            if type == "IDAT" { idat += body }
            at += 12 + n
        }
        guard header.count == 13 else { throw GradMapError.runtime("PNG without IHDR") }
        width = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
        height = Int(header[4]) << 24 | Int(header[5]) << 16 | Int(header[6]) << 8 | Int(header[7])
        guard header[8] == 8, header[12] == 0, header[9] == 2 || header[9] == 6 else {
            throw GradMapError.runtime("PNG bit depth \(header[8]), colour type \(header[9]), interlace \(header[12]): not 8-bit RGB(A)")
        }
        channels = header[9] == 6 ? 4 : 3
        let stride = width * channels
        let raw = try PNGImage.inflate(idat, size: height * (1 + stride))
        var px = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (1 + stride)], row = y * (1 + stride) + 1
            for i in 0..<stride {
                let a = i >= channels ? Int(px[y * stride + i - channels]) : 0
                let up = y > 0 ? Int(px[(y - 1) * stride + i]) : 0
                let c = y > 0 && i >= channels ? Int(px[(y - 1) * stride + i - channels]) : 0
                let predictor: Int
                switch filter {
                case 0: predictor = 0
                case 1: predictor = a
                case 2: predictor = up
                case 3: predictor = (a + up) / 2
                case 4:
                    let p = a + up - c, pa = abs(p - a), pb = abs(p - up), pc = abs(p - c)
                    predictor = pa <= pb && pa <= pc ? a : pb <= pc ? up : c
                default: throw GradMapError.runtime("PNG row \(y): filter \(filter)")
                }
                px[y * stride + i] = UInt8(truncatingIfNeeded: Int(raw[row + i]) + predictor)
            }
        }
        pixels = px
    }

    /// zlib's uncompress(), which must fill exactly `size` bytes.
    static func inflate(_ z: [UInt8], size: Int) throws -> [UInt8] {
        typealias Uncompress = @convention(c) (UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt>?, UnsafePointer<UInt8>?, UInt) -> Int32
        guard let lib = dlopen("libz.so.1", RTLD_NOW), let sym = dlsym(lib, "uncompress") else {
            throw GradMapError.runtime("libz.so.1 not loadable")
        }
        let uncompress = unsafeBitCast(sym, to: Uncompress.self)
        var out = [UInt8](repeating: 0, count: size)
        var n = UInt(size)
        let status = out.withUnsafeMutableBufferPointer { o in z.withUnsafeBufferPointer { uncompress(o.baseAddress, &n, $0.baseAddress, UInt($0.count)) } }
        guard status == 0, n == UInt(size) else { throw GradMapError.runtime("PNG data: zlib status \(status), \(n) of \(size) bytes") }
        return out
    }
}
