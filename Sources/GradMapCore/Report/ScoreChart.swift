// pruning_report.svg: every layer's score at every decision (one line per decision), the removed layers
// marked where they were removed, and the compensated layer j* shown. Plain SVG, no dependencies.
import Foundation

public enum ScoreChart {
    public static func svg(_ r: PruningResult, layers: Int, title: String) -> String {
        let width = 900.0, height = 480.0
        let left = 70.0, right = 20.0, top = 50.0, bottom = 60.0
        let plotW = width - left - right, plotH = height - top - bottom
        let finite = r.decisions.flatMap { $0.scores }.filter { $0.isFinite }
        var lo = finite.min() ?? 0, hi = finite.max() ?? 1
        if hi - lo < 1e-12 { hi = lo + 1; lo -= 0 }
        let pad = (hi - lo) * 0.05
        lo -= pad; hi += pad
        func x(_ l: Int) -> Double { left + (layers > 1 ? Double(l) / Double(layers - 1) : 0.5) * plotW }
        func y(_ v: Double) -> Double { top + (1 - (v - lo) / (hi - lo)) * plotH }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = ["<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">"]
        out.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>")
        out.append("<text x=\"\(f(left))\" y=\"22\" font-size=\"15\">\(escape(title))</text>")
        out.append("<text x=\"\(f(left))\" y=\"40\" fill=\"#555\">score of every layer at each decision (lower = removed first); ✕ removed at that decision\(r.compensation?.layer != nil ? "; ◆ compensated layer j*" : "")</text>")
        // Axes and grid.
        out.append("<line x1=\"\(f(left))\" y1=\"\(f(top + plotH))\" x2=\"\(f(left + plotW))\" y2=\"\(f(top + plotH))\" stroke=\"black\"/>")
        out.append("<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotH))\" stroke=\"black\"/>")
        for k in 0...4 {
            let v = lo + (hi - lo) * Double(k) / 4
            out.append("<line x1=\"\(f(left))\" y1=\"\(f(y(v)))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y(v)))\" stroke=\"#eee\"/>")
            out.append("<text x=\"\(f(left - 6))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">\(String(format: "%.3g", v))</text>")
        }
        let step = max(1, layers / 15)
        for l in stride(from: 0, to: layers, by: step) {
            out.append("<text x=\"\(f(x(l)))\" y=\"\(f(top + plotH + 16))\" text-anchor=\"middle\">\(l)</text>")
        }
        out.append("<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 20))\" text-anchor=\"middle\">layer (original index)</text>")
        let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
        for (k, d) in r.decisions.enumerated() {
            let color = colors[k % colors.count]
            var path = ""
            var pen = false
            for l in 0..<layers {
                let v = d.scores[l]
                guard v.isFinite else { pen = false; continue }
                path += (pen ? " L" : " M") + "\(f(x(l))),\(f(y(v)))"
                pen = true
            }
            if !path.isEmpty { out.append("<path d=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" opacity=\"0.85\"/>") }
            let v = d.scores[d.removed]
            let py = v.isFinite ? y(v) : top + plotH
            out.append("<text x=\"\(f(x(d.removed)))\" y=\"\(f(py + 5))\" text-anchor=\"middle\" fill=\"\(color)\" font-size=\"16\">✕</text>")
            out.append("<text x=\"\(f(left + plotW - 150))\" y=\"\(f(top + 14 + 14 * Double(k)))\" fill=\"\(color)\">decision \(d.step): layer \(d.removed)</text>")
        }
        if let j = r.compensation?.layer {
            out.append("<text x=\"\(f(x(j)))\" y=\"\(f(top + plotH - 4))\" text-anchor=\"middle\" fill=\"black\" font-size=\"16\">◆</text>")
            out.append("<text x=\"\(f(x(j)))\" y=\"\(f(top + plotH - 20))\" text-anchor=\"middle\">j* = \(j)</text>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
