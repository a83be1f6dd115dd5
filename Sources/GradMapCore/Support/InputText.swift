// How text read from an input file appears in an error message: on one line whatever it holds, so that a tensor
// name, key or value with a newline in it cannot split the message (the CLI prints exactly one line on stderr).
import Foundation

/// A string from a file with its control characters escaped (\n, \t, \u{1B}); printable text as it is.
package func shown(_ s: String) -> String {
    guard s.unicodeScalars.contains(where: { $0.properties.generalCategory == .control || $0 == "\u{2028}" || $0 == "\u{2029}" })
    else { return s }
    var out = ""
    for c in s.unicodeScalars {
        switch c {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if c.properties.generalCategory == .control || c == "\u{2028}" || c == "\u{2029}" {
                out += "\\u{" + String(c.value, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(c)
            }
        }
    }
    return out
}

/// A parsed JSON value (or any value) on one line: strings as above, lists and objects as compact JSON, cut
/// after 200 characters (a whole vocabulary is not a useful "got ...").
package func shown(_ v: Any?) -> String {
    guard let v, !(v is NSNull) else { return "null" }
    var text: String
    if let s = v as? String {
        text = s
    } else if v is [Any] || v is [String: Any],
              let data = try? JSONSerialization.data(withJSONObject: v, options: [.fragmentsAllowed, .sortedKeys]) {
        text = String(decoding: data, as: UTF8.self)
    } else {
        text = "\(v)"
    }
    if text.count > 200 { text = String(text.prefix(200)) + "…" }
    return shown(text)
}
