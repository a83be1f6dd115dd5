// pruning_report.svg: the job at a glance, drawn from its PruningResult alone. Four panels, one above the
// other, the first two on the same layer axis: the layers (removed, numbered in decision order; kept;
// compensated), every decision's scores as ranks within the decision (raw scores span orders of magnitude:
// layer 0's would flatten the rest on a linear axis, and some metrics' scores are negative, which a log axis
// cannot show), the perplexity before pruning, after and after compensation with 95 % intervals on a log
// axis, and the time per phase. Plain SVG 1.1 without scripts or external files; a test renders it.
import Foundation
import GradMapSupport

public enum ReportSVG {
    public static let width = 980.0
    /// The label column on the left and the value column on the right; the layer axis lies between.
    static let labelWidth = 100.0, valueWidth = 200.0
    static var plotWidth: Double { width - labelWidth - valueWidth }
    /// The layer strip's place: fixed, so that a reader (and the render test) finds it.
    public static let stripTop = 82.0, stripHeight = 30.0
    static let rowHeight = 18.0
    /// The first decision's row of scores: below the strip, its labels and the panel's title.
    public static let scoresTop = stripTop + stripHeight + 18 + 26 + 24
    public static let removedColor = "#d62728", keptColor = "#e3e3e3", compensatedColor = "#2ca02c"

    /// The centre of layer `l`'s cell in the strip, of `layers` cells.
    public static func stripCell(_ l: Int, layers: Int) -> (x: Double, y: Double) {
        let w = plotWidth / Double(max(layers, 1))
        return (labelWidth + (Double(l) + 0.5) * w, stripTop + stripHeight / 2)
    }

    /// The top left corner of layer `l`'s cell in the row of the decision at `index` (0: the first).
    public static func scoreCell(_ l: Int, decision index: Int, layers: Int) -> (x: Double, y: Double) {
        (labelWidth + Double(l) * plotWidth / Double(max(layers, 1)), scoresTop + Double(index) * rowHeight)
    }

    public static func svg(_ r: PruningResult) -> String {
        let layers = r.decisions.first?.scores.count ?? 0
        var c = Canvas()
        let removedAs = "\(r.decisions.count) of \(layers) layers removed"
        c.text(r.metric == "given" ? "given layers: \(removedAs) from \(r.model)" : "\(r.metric): \(removedAs) from \(r.model)",
               x: 12, y: 24, size: 17, weight: "bold")
        let command = r.command.count > 150 ? String(r.command.prefix(149)) + "…" : r.command
        c.text(command, x: 12, y: 44, size: 11, fill: "#666")
        layerStrip(&c, r, layers: layers)
        var y = scoreRanks(&c, r, layers: layers)
        y = perplexities(&c, r, top: y + 26)
        y = phaseTimes(&c, r, top: y + 26)
        let height = (y + 16).rounded()
        let head = """
            <svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="\(Int(width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">
            <rect width="\(Int(width))" height="\(Int(height))" fill="white"/>
            """
        return ([head] + c.parts + ["</svg>"]).joined(separator: "\n") + "\n"
    }

    /// Layer strip: one cell per original layer, at stripTop.
    static func layerStrip(_ c: inout Canvas, _ r: PruningResult, layers: Int) {
        let order = Dictionary(r.decisions.map { ($0.removed, $0.step) }, uniquingKeysWith: { a, _ in a })
        let j = r.compensation?.layer
        var x = labelWidth
        c.text("Layers", x: 12, y: stripTop - 14, size: 14, weight: "bold")
        for (color, label) in [(removedColor, "removed (number: decision order)"), (keptColor, "kept"),
                               (compensatedColor, "kept, compensated (j*)")] {
            c.rect(x: x, y: stripTop - 25, w: 12, h: 12, fill: color)
            c.text(label, x: x + 17, y: stripTop - 15)
            x += 28 + Double(label.count) * 6.5
        }
        c.text("layer", x: labelWidth - 8, y: stripTop + stripHeight + 14, anchor: "end", fill: "#666")
        let w = plotWidth / Double(max(layers, 1))
        for l in 0..<layers {
            let cx = stripCell(l, layers: layers).x, x0 = cx - w / 2
            let (fill, mark, ink): (String, String, String) =
                if let step = order[l] { (removedColor, "\(step)", "white") }
                else if l == j { (compensatedColor, "j*", "white") }
                else { (keptColor, "", "#333") }
            c.rect(x: x0, y: stripTop, w: w, h: stripHeight, fill: fill, stroke: "white")
            if !mark.isEmpty && w >= 12 {
                c.text(mark, x: cx, y: stripTop + stripHeight / 2 + 5, size: w >= 20 ? 13 : 10, anchor: "middle", fill: ink, weight: "bold")
            }
            if l % labelStep(cellWidth: w) == 0 {
                c.text("\(l)", x: cx, y: stripTop + stripHeight + 14, size: 10, anchor: "middle", fill: "#444")
            }
        }
        c.text("\(r.decisions.count) removed, \(layers - r.decisions.count) kept", x: width - valueWidth + 12, y: stripTop + 14)
        if let j { c.text("compensated at layer \(j)", x: width - valueWidth + 12, y: stripTop + 29, fill: "#1a7a1a") }
    }

    /// Layer labels every 1, 2, 5, 10, … cells, so that they do not overlap.
    static func labelStep(cellWidth w: Double) -> Int {
        [1, 2, 5, 10, 20, 50].first { Double($0) * w >= 16 } ?? 100
    }

    /// One row per decision from scoresTop, a cell per layer coloured by its score's rank among the layers
    /// scored then; the bottom of what it drew.
    static func scoreRanks(_ c: inout Canvas, _ r: PruningResult, layers: Int) -> Double {
        let top = scoresTop - 24
        c.text("Scores: rank within each decision", x: 12, y: top, size: 14, weight: "bold")
        let scored = r.decisions.contains { $0.scores.contains { $0.isFinite } }
        guard scored else {
            c.text("the layers were given (--layers): no scores", x: labelWidth, y: top + 22, fill: "#666")
            return top + 28
        }
        c.text("1 = lowest score (removed first), darkest; ✕ the layer removed; empty: removed before", x: 300, y: top, fill: "#555")
        c.text("chosen score (next lowest)", x: width - valueWidth + 12, y: top + 18, size: 11, fill: "#555")
        let w = plotWidth / Double(max(layers, 1))
        var y = scoresTop
        for (index, d) in r.decisions.enumerated() {
            let ranked = (0..<layers).filter { d.scores[$0].isFinite }.sorted { (d.scores[$0], $0) < (d.scores[$1], $1) }
            let rank = Dictionary(uniqueKeysWithValues: ranked.enumerated().map { ($1, $0) })
            c.text("decision \(d.step)", x: labelWidth - 8, y: y + rowHeight - 5, size: 11, anchor: "end")
            for l in 0..<layers {
                let x0 = scoreCell(l, decision: index, layers: layers).x
                guard let k = rank[l] else {
                    c.rect(x: x0, y: y, w: w, h: rowHeight, fill: "#fafafa", stroke: "white")
                    continue
                }
                let t = ranked.count > 1 ? Double(k) / Double(ranked.count - 1) : 0
                c.rect(x: x0, y: y, w: w, h: rowHeight, fill: ramp(t), stroke: "white")
                if l == d.removed {
                    c.rect(x: x0 + 1, y: y + 1, w: w - 2, h: rowHeight - 2, fill: "none", stroke: removedColor, strokeWidth: 2)
                }
                let ink = t < 0.45 ? "white" : "#08306b"
                if l == d.removed && w >= 10 {
                    c.text("✕", x: x0 + w / 2, y: y + rowHeight - 5, size: 11, anchor: "middle", fill: ink, weight: "bold")
                } else if w >= 16 {
                    c.text("\(k + 1)", x: x0 + w / 2, y: y + rowHeight - 5, size: 9, anchor: "middle", fill: ink)
                }
            }
            let next = ranked.first { $0 != d.removed }.map { String(format: " (%.4g)", d.scores[$0]) } ?? ""
            let chosen = d.verified.isEmpty ? String(format: "%.4g", d.score) + next : String(format: "loss %.4f, verified", d.score)
            c.text("layer \(d.removed): \(chosen)", x: width - valueWidth + 12, y: y + rowHeight - 5, size: 11)
            y += rowHeight
        }
        return y
    }

    /// Rank 0 (lowest score) dark blue to the highest rank pale blue.
    static func ramp(_ t: Double) -> String {
        let dark = (8.0, 48.0, 107.0), pale = (222.0, 235.0, 247.0)
        func mix(_ a: Double, _ b: Double) -> Int { Int((a + (b - a) * t).rounded()) }
        return String(format: "#%02x%02x%02x", mix(dark.0, pale.0), mix(dark.1, pale.1), mix(dark.2, pale.2))
    }

    /// Held-out perplexity per stage with its interval (a point and whiskers), calibration perplexity as a ring.
    static func perplexities(_ c: inout Canvas, _ r: PruningResult, top: Double) -> Double {
        struct Row { let label: String; let calib: Double; var heldOut: (ppl: Double, lo: Double, hi: Double)? }
        var rows = [Row(label: "original", calib: exp(r.calibLossOriginal)), Row(label: "pruned", calib: exp(r.calibLossPruned))]
        if let l = r.calibLossCompensated { rows.append(Row(label: "compensated", calib: exp(l))) }
        if let h = r.heldOut {
            for (label, ppl) in h.perplexities {
                let (lo, hi) = meanInterval(h.windowLosses[label]!).expInterval
                if let k = rows.firstIndex(where: { $0.label == label }) { rows[k].heldOut = (ppl, lo, hi) }
            }
        }
        c.text("Perplexity", x: 12, y: top, size: 14, weight: "bold")
        let about = r.heldOut.map { "held-out ● with its 95 % interval (\($0.windows.count) windows of \($0.seqLen) tokens); calibration ○" }
            ?? "calibration ○ (no held-out text: --eval-text gives held-out perplexity with intervals)"
        c.text(about, x: 100, y: top, fill: "#555")
        let values = rows.flatMap { row in [row.calib] + (row.heldOut.map { [$0.ppl, $0.lo, $0.hi] } ?? []) }.filter { $0.isFinite && $0 > 0 }
        var lo = log((values.min() ?? 1) * 0.9), hi = log((values.max() ?? 10) * 1.1)
        if hi - lo < 0.1 { lo -= 0.05; hi += 0.05 }
        func x(_ v: Double) -> Double { labelWidth + (log(v) - lo) / (hi - lo) * plotWidth }
        var y = top + 16
        let axisTop = y
        for row in rows {
            let cy = y + 12
            c.text(row.label, x: labelWidth - 8, y: cy + 4, anchor: "end")
            c.line(x1: labelWidth, y1: cy, x2: labelWidth + plotWidth, y2: cy, stroke: "#eeeeee")
            if let h = row.heldOut {
                if h.lo.isFinite && h.hi.isFinite {
                    c.line(x1: x(h.lo), y1: cy, x2: x(h.hi), y2: cy, stroke: "#08306b", width: 2)
                    for v in [h.lo, h.hi] { c.line(x1: x(v), y1: cy - 6, x2: x(v), y2: cy + 6, stroke: "#08306b", width: 2) }
                }
                c.circle(cx: x(h.ppl), cy: cy, r: 5, fill: "#08306b", stroke: "#08306b")
                let interval = h.lo.isFinite ? String(format: " [%.2f, %.2f]", h.lo, h.hi) : " (one window: no interval)"
                c.text(String(format: "%.2f", h.ppl) + interval, x: width - valueWidth + 12, y: cy + 4, weight: "bold")
            }
            if row.calib.isFinite {
                c.circle(cx: x(row.calib), cy: cy, r: 5, fill: "none", stroke: "#d95f02", width: 2)
                if row.heldOut == nil { c.text(String(format: "calibration %.2f", row.calib), x: width - valueWidth + 12, y: cy + 4) }
            }
            y += 24
        }
        for v in logTicks(exp(lo), exp(hi)) {
            c.line(x1: x(v), y1: axisTop, x2: x(v), y2: y + 2, stroke: "#cccccc")
            c.text(String(format: "%.3g", v), x: x(v), y: y + 14, size: 10, anchor: "middle", fill: "#444")
        }
        c.text("perplexity (log scale)", x: width - valueWidth + 12, y: y + 14, size: 10, fill: "#666")
        y += 18
        if let e = r.heldOut {
            var ratios: [String] = []
            for (b, a) in [("pruned", "original"), ("compensated", "pruned")] {
                guard let lb = e.windowLosses[b], let la = e.windowLosses[a] else { continue }
                let d = pairedInterval(la, lb)
                let bounds = d.lo.isFinite ? String(format: " [%.3f, %.3f]", d.expInterval.0, d.expInterval.1) : ""
                ratios.append("\(b) / \(a) " + String(format: "× %.3f", exp(d.mean)) + bounds)
            }
            if !ratios.isEmpty {
                y += 16
                c.text(ratios.joined(separator: ";   ") + "   (paired, same windows)", x: labelWidth, y: y)
            }
        }
        return y
    }

    /// Ticks at 1, 2, 5 × 10^k inside [lo, hi] (with 1.5, 3 and 7 too when that leaves fewer than three).
    static func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
        func ticks(_ mantissas: [Double]) -> [Double] {
            let e0 = Int(floor(log10(lo))), e1 = Int(ceil(log10(hi)))
            return (e0...e1).flatMap { e in mantissas.map { $0 * pow(10, Double(e)) } }.filter { $0 >= lo && $0 <= hi }
        }
        let coarse = ticks([1, 2, 5])
        return coarse.count >= 3 ? coarse : ticks([1, 1.5, 2, 3, 5, 7])
    }

    /// One bar of the job's seconds, a segment per phase.
    static func phaseTimes(_ c: inout Canvas, _ r: PruningResult, top: Double) -> Double {
        var phases = [("load", r.loadSeconds, "#8c8c8c"), ("scoring", r.scoringSeconds, "#1f77b4"),
                      ("compensation", r.compensationSeconds, compensatedColor), ("evaluation", r.evaluationSeconds, "#ff7f0e"),
                      ("writing", r.writingSeconds, "#9467bd")]
        let named = phases.reduce(0) { $0 + $1.1 }
        let total = max(r.totalSeconds, named)
        // Calibration losses, the ranks' statistics, the report: what no phase above counts.
        phases.append(("other", max(0, total - named), "#d0d0d0"))
        c.text("Time", x: 12, y: top, size: 14, weight: "bold")
        c.text(String(format: "%.1f s in all", total), x: 60, y: top, fill: "#555")
        let barWidth = width - labelWidth - 24
        var x = labelWidth
        let y = top + 12
        for (name, s, color) in phases where s > 0 && total > 0 {
            let w = s / total * barWidth
            c.rect(x: x, y: y, w: w, h: 26, fill: color, stroke: "white")
            let label = String(format: "%@ %.0f s", name, s)
            if w >= Double(label.count) * 6.5 + 8 {
                c.text(label, x: x + w / 2, y: y + 17, size: 11, anchor: "middle", fill: name == "other" ? "#333" : "white")
            }
            x += w
        }
        var lx = labelWidth
        for (name, s, color) in phases {
            c.rect(x: lx, y: y + 38, w: 11, h: 11, fill: color)
            let label = String(format: "%@ %.1f s", name == "other" ? "other (calibration losses, statistics)" : name, s)
            c.text(label, x: lx + 15, y: y + 48, size: 11)
            lx += 30 + Double(label.count) * 6.2
        }
        return y + 52
    }
}

/// The SVG elements drawn so far, one a line.
struct Canvas {
    var parts: [String] = []

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    mutating func rect(x: Double, y: Double, w: Double, h: Double, fill: String, stroke: String? = nil, strokeWidth: Double = 1) {
        let edge = stroke.map { " stroke=\"\($0)\" stroke-width=\"\(Canvas.f(strokeWidth))\"" } ?? ""
        parts.append("<rect x=\"\(Canvas.f(x))\" y=\"\(Canvas.f(y))\" width=\"\(Canvas.f(w))\" height=\"\(Canvas.f(h))\" fill=\"\(fill)\"\(edge)/>")
    }

    mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: String, width: Double = 1) {
        parts.append("<line x1=\"\(Canvas.f(x1))\" y1=\"\(Canvas.f(y1))\" x2=\"\(Canvas.f(x2))\" y2=\"\(Canvas.f(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(Canvas.f(width))\"/>")
    }

    mutating func circle(cx: Double, cy: Double, r: Double, fill: String, stroke: String, width: Double = 1) {
        parts.append("<circle cx=\"\(Canvas.f(cx))\" cy=\"\(Canvas.f(cy))\" r=\"\(Canvas.f(r))\" fill=\"\(fill)\" stroke=\"\(stroke)\" stroke-width=\"\(Canvas.f(width))\"/>")
    }

    mutating func text(
        _ s: String, x: Double, y: Double, size: Double = 12, anchor: String = "start", fill: String = "#222", weight: String? = nil
    ) {
        let bold = weight.map { " font-weight=\"\($0)\"" } ?? ""
        parts.append("<text x=\"\(Canvas.f(x))\" y=\"\(Canvas.f(y))\" font-size=\"\(Canvas.f(size))\" text-anchor=\"\(anchor)\" fill=\"\(fill)\"\(bold)>\(Canvas.escape(s))</text>")
    }

    /// Text as XML character data: markup characters escaped, and the control characters XML 1.0 forbids dropped.
    static func escape(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case _ where u.value < 0x20 && u != "\t": continue
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
