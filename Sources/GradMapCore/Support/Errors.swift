// Errors that reach the user. Bad input (a file, tensor, flag or value that is not what was expected)
// is a one-line message and exit code 2; anything else is an internal failure, exit code 1.

public enum GradMapError: Error, CustomStringConvertible, Sendable {
    /// The user's input is wrong: message names the file, tensor or flag and what was expected.
    case badInput(String)
    /// A failure of the machine or the library (MPI, LAPACK, I/O after validation).
    case runtime(String)

    public var description: String {
        switch self {
        case .badInput(let m), .runtime(let m): return m
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .badInput: return 2
        case .runtime: return 1
        }
    }
}

@inline(__always)
func bad(_ message: String) -> GradMapError { .badInput(message) }
