// Errors that reach the user. Bad input (a file, tensor, flag or value that is not what was expected)
// is a one-line message and exit code 2; anything else is an internal failure, exit code 1.
import Foundation

public enum GradMapError: Error, CustomStringConvertible, Sendable {
    /// The user's input is wrong: message names the file or tensor and what was expected.
    case badInput(String)
    /// A setting of a job is unusable. `field` names it as the configuration does (`seqLen`, `calibWindows`):
    /// the core knows no flags; a front end names the field its own way (the CLI by its flag).
    case badValue(field: ConfigField, value: String?, detail: String)
    /// A failure of the machine or the library (MPI, LAPACK, I/O after validation).
    case runtime(String)

    public var description: String {
        switch self {
        case .badInput(let m), .runtime(let m): return m
        case .badValue(let field, let value, let detail): return GradMapError.line(field.rawValue, value, detail)
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .badInput, .badValue: return 2
        case .runtime: return 1
        }
    }

    /// One line for any error: a GradMapError's message, or a Foundation/POSIX failure with the file it
    /// concerns first (as every message here names its file).
    public static func line(_ error: Error) -> String {
        if let e = error as? GradMapError { return e.description }
        let ns = error as NSError
        let path = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
        return (path.map { $0 + ": " } ?? "") + reason(error)
    }

    /// What went wrong, in one line without the file: the POSIX error under a Foundation one (Foundation's own
    /// text is often just "The operation could not be completed"), else Foundation's description.
    public static func reason(_ error: Error) -> String {
        let ns = error as NSError
        let underlying = ns.userInfo[NSUnderlyingErrorKey] ?? error
        if let posix = underlying as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
        if let posix = underlying as? NSError, posix.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(posix.code))) }
        return ns.localizedDescription.replacingOccurrences(of: "\n", with: " ")
    }

    /// "name value: detail", the line of a bad setting under any naming of its field.
    public static func line(_ name: String, _ value: String?, _ detail: String) -> String {
        name + (value.map { " " + $0 } ?? "") + ": " + detail
    }

    /// The exit code of any error: a GradMapError's, 1 for everything else (the machine, not the input).
    public static func exitCode(_ error: Error) -> Int32 { (error as? GradMapError)?.exitCode ?? 1 }
}

/// An error the ranks of a job agreed on (Communicator.agree): the lowest failing rank reports it, one line
/// for the whole job, and every rank ends with its exit code.
public struct JobFailure: Error, @unchecked Sendable {
    /// The job's exit code: the reporting rank's.
    public let code: Int32
    /// The error to print: on the reporting rank only, nil on every other.
    public let error: Error?
    public let reporter: Int
    /// Every rank found an error: the job's input is wrong, not one rank's view of it.
    public let everyRank: Bool

    package init(code: Int32, error: Error?, reporter: Int, everyRank: Bool) {
        self.code = code; self.error = error; self.reporter = reporter; self.everyRank = everyRank
    }
}

@inline(__always)
package func bad(_ message: String) -> GradMapError { .badInput(message) }

/// A bad value of a job's setting (see GradMapError.badValue).
@inline(__always)
package func bad(_ field: ConfigField, _ value: Any?, _ detail: String) -> GradMapError {
    .badValue(field: field, value: value.map { "\($0)" }, detail: detail)
}

/// Every setting a job takes, as the configurations (PruneConfig, WindowJobConfig, PlanConfig, ...) name
/// them. Errors name a field; each front end maps every field to what its user typed (the CLI: a flag).
public enum ConfigField: String, Sendable, CaseIterable {
    case model, weights, balance, matmul, activations, stages, ranks
    case calibration, heldOut, seqLen, calibWindows, evalWindows, validationWindows, maxWindows, microBatch
    case remove, layers, without, metric, protectFirst, protectLast, verifyTop, seed, gradientNorm, compensateAt, ridge
    case out, ggufDown, resume, text, addBOS, calibTokens, gflops
}
