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

    @Option(name: .long, help: "Product forms: nt (C = A·Bᵀ, a linear's forward), nn (dX = dY·W), tn (dW += dYᵀ·X).")
    var forms: String = "nt"

    @Option(name: .long, help: "f32 (cblas_sgemm) or bf16 (AMX, BF16 inputs, FP32 accumulation).")
    var matmul: MatmulPrecision = .f32

    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false

    func validate() throws {
        if matmul == .wgradBF16 {
            throw ValidationError("--matmul: f32 or bf16 (one product has one precision)")
        }
        try checkMatmulAvailable(matmul)
        for f in forms.split(separator: ",") where GemmBenchmark.Form(rawValue: String(f)) == nil {
            throw ValidationError("--forms: '\(f)' is not one of nt, nn, tn")
        }
    }

    func run() throws {
        var results: [JSONValue] = []
        let shapeList = try shapes.split(separator: ",").map { item in
            let dims = item.split(separator: "x").compactMap { Int($0) }
            guard dims.count == 3, dims.allSatisfy({ $0 > 0 }) else {
                throw GradMapError.badInput("--shapes: '\(item)' is not MxNxK with positive integers")
            }
            return (String(item), dims)
        }
        let formList = forms.split(separator: ",").map { GemmBenchmark.Form(rawValue: String($0))! }
        for form in formList {
            for (item, dims) in shapeList {
                let r = GemmBenchmark.measure(
                    m: dims[0], n: dims[1], k: dims[2], minSeconds: seconds, form: form, precision: matmul)
                results.append(.object([
                    ("m", .int(dims[0])), ("n", .int(dims[1])), ("k", .int(dims[2])), ("form", .string(form.rawValue)),
                    ("matmul", .string(matmul.rawValue)), ("gflops", .double(r.gflops)), ("calls", .int(r.calls)),
                ]))
                if !json {
                    print(String(format: "%@ %@ %@  %.1f GFLOP/s  (%d calls)", matmul.rawValue, form.rawValue, item, r.gflops, r.calls))
                }
            }
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
