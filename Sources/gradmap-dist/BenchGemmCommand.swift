// `gradmap-dist bench-gemm`: this machine's cblas_sgemm throughput at given shapes, with the same OpenBLAS
// kernel and thread count the engine runs with; the denominator of every efficiency ratio in docs/benchmarks.md.
import ArgumentParser
import Foundation
import GradMapCore

struct BenchGemmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-gemm", abstract: "Measure cblas_sgemm GFLOP/s at M×N×K shapes (row-major, B transposed).")

    @Option(name: .long, help: "Comma-separated shapes MxNxK, e.g. 256x576x576,256x1536x576.")
    var shapes: String

    @Option(name: .long, help: "Minimum seconds per shape.")
    var seconds: Double = 1.0

    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false

    func run() throws {
        var results: [JSONValue] = []
        for item in shapes.split(separator: ",") {
            let dims = item.split(separator: "x").compactMap { Int($0) }
            guard dims.count == 3, dims.allSatisfy({ $0 > 0 }) else {
                throw GradMapError.badInput("--shapes: '\(item)' is not MxNxK with positive integers")
            }
            let r = GemmBenchmark.measure(m: dims[0], n: dims[1], k: dims[2], minSeconds: seconds)
            results.append(.object([
                ("m", .int(dims[0])), ("n", .int(dims[1])), ("k", .int(dims[2])),
                ("gflops", .double(r.gflops)), ("calls", .int(r.calls)),
            ]))
            if !json { print(String(format: "sgemm %@  %.1f GFLOP/s  (%d calls)", String(item), r.gflops, r.calls)) }
        }
        if json {
            print(JSONValue.object([
                ("blas_core", .string(BLASRuntime.coreName)), ("blas_threads", .int(BLASRuntime.threads)),
                ("shapes", .array(results)),
            ]).render())
        } else {
            print("OpenBLAS core \(BLASRuntime.coreName), \(BLASRuntime.threads) threads")
        }
    }
}
