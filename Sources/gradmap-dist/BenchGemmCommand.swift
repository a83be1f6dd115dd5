// `gradmap-dist bench-gemm`: this machine's matrix-product throughput at given shapes, with the library,
// kernel and thread count the engine runs with (oneDNN); the denominator of every efficiency ratio in
// docs/benchmarks.md. `--compare` puts oneDNN f32 and bf16, OpenBLAS sgemm and (on AMX machines) the
// hand-written AMX kernel side by side, with the implementation oneDNN picked.
import ArgumentParser
import Foundation
import GradMapKernels
import GradMapRuntime
import GradMapSupport

extension GemmBenchmark.Library: ExpressibleByArgument {}

struct BenchGemmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-gemm", abstract: "Measure matrix-product GFLOP/s at M×N×K shapes (row-major, B transposed).")

    @Option(name: .long, help: "Comma-separated shapes MxNxK, e.g. 256x576x576,256x1536x576.")
    var shapes: String

    @Option(name: .long, help: "Minimum seconds per shape.")
    var seconds: Double = 1.0

    @Option(name: .long, help: "Product forms: nt (C = A·Bᵀ, a linear's forward), nn (dX = dY·W), tn (dW += dYᵀ·X).")
    var forms: String = "nt"

    @Option(name: .long, help: "f32 or bf16 (BF16 inputs, FP32 accumulation).")
    var matmul: MatmulPrecision = .f32

    @Option(name: .long, help: "dnnl (oneDNN, what the engine runs), openblas (cblas_sgemm, f32 only) or amx (the hand-written AMX kernel, bf16 only, AMX CPUs only).")
    var library: GemmBenchmark.Library = .dnnl

    @Flag(name: .long, help: "Per shape and form: oneDNN f32 and bf16, OpenBLAS sgemm and (with AMX) the AMX kernel, side by side.")
    var compare = false

    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false

    func validate() throws {
        if matmul == .wgradBF16 {
            throw ValidationError("--matmul: f32 or bf16 (one product has one precision)")
        }
        if !compare {
            do { try matmul.checkAvailable() } catch { throw ValidationError(GradMapDist.line(error)) }
            if library == .openblas && matmul != .f32 { throw ValidationError("--library openblas: f32 only") }
            if library == .amx {
                if matmul != .bf16 { throw ValidationError("--library amx: bf16 only") }
                if !GemmBenchmark.amxAvailable { throw ValidationError("--library amx: this CPU (or kernel) offers no AMX-BF16 tiles") }
            }
        }
        for f in forms.split(separator: ",") where GemmBenchmark.Form(rawValue: String(f)) == nil {
            throw ValidationError("--forms: '\(f)' is not one of nt, nn, tn")
        }
    }

    func run() throws {
        let shapeList = try shapes.split(separator: ",").map { item in
            let dims = item.split(separator: "x").compactMap { Int($0) }
            guard dims.count == 3, dims.allSatisfy({ $0 > 0 }) else {
                throw GradMapError.badInput("--shapes: '\(item)' is not MxNxK with positive integers")
            }
            return (String(item), dims)
        }
        let formList = forms.split(separator: ",").map { GemmBenchmark.Form(rawValue: String($0))! }
        // (library, precision) pairs to run per shape.
        var runs: [(GemmBenchmark.Library, MatmulPrecision)] = [(library, matmul)]
        if compare {
            runs = [(.dnnl, .f32)]
            if MatmulPrecision.bf16Available { runs.append((.dnnl, .bf16)) }
            runs.append((.openblas, .f32))
            if GemmBenchmark.amxAvailable { runs.append((.amx, .bf16)) }
        }
        var results: [JSONValue] = []
        if !json && compare {
            print("form shape            " + runs.map { "\($0.0.rawValue) \($0.1.rawValue)".padding(toLength: 14, withPad: " ", startingAt: 0) }.joined()
                  + "oneDNN f32 / bf16 implementation")
        }
        for form in formList {
            for (item, dims) in shapeList {
                var rates: [String] = []
                for (lib, precision) in runs {
                    let r = GemmBenchmark.measure(
                        m: dims[0], n: dims[1], k: dims[2], minSeconds: seconds, form: form, precision: precision, library: lib)
                    let impl = lib == .dnnl
                        ? GemmBenchmark.implementation(m: dims[0], n: dims[1], k: dims[2], form: form, precision: precision) : lib.rawValue
                    results.append(.object([
                        ("m", .int(dims[0])), ("n", .int(dims[1])), ("k", .int(dims[2])), ("form", .string(form.rawValue)),
                        ("matmul", .string(precision.rawValue)), ("library", .string(lib.rawValue)), ("impl", .string(impl)),
                        ("gflops", .double(r.gflops)), ("calls", .int(r.calls)),
                    ]))
                    rates.append(String(format: "%-14.1f", r.gflops))
                    if !json && !compare {
                        print(String(format: "%@ %@ %@ %@  %.1f GFLOP/s  (%d calls, %@)", lib.rawValue, precision.rawValue, form.rawValue, item, r.gflops, r.calls, impl))
                    }
                }
                if !json && compare {
                    let impls = [MatmulPrecision.f32, .bf16].filter { $0 == .f32 || MatmulPrecision.bf16Available }.map {
                        GemmBenchmark.implementation(m: dims[0], n: dims[1], k: dims[2], form: form, precision: $0)
                    }
                    print(form.rawValue + "   " + item.padding(toLength: 17, withPad: " ", startingAt: 0) + rates.joined() + impls.joined(separator: " / "))
                }
            }
        }
        if json {
            print(JSONValue.object([
                ("blas_core", .string(BLASRuntime.coreName)), ("blas_threads", .int(BLASRuntime.threads)),
                ("shapes", .array(results)),
            ]).render())
        } else {
            print("\(BLASRuntime.threads) threads; OpenBLAS core \(BLASRuntime.coreName)")
        }
    }
}
