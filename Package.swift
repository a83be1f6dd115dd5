// swift-tools-version:6.0
// gradmap-dist: layer pruning of LLaMA-family models, a Swift engine over Open MPI, oneDNN and OpenBLAS.
import PackageDescription

/// One of the engine's modules: Sources/GradMapCore/FOLDER, its Swift dependencies listed (every module it imports),
/// built with -Ounchecked and cross-module optimisation in release.
func module(_ name: String, _ folder: String, _ dependencies: [Target.Dependency]) -> Target {
    .target(
        name: name, dependencies: dependencies, path: "Sources/GradMapCore/" + folder,
        swiftSettings: [.unsafeFlags(["-Ounchecked", "-cross-module-optimization"], .when(configuration: .release))])
}

let modules = [
    "GradMapSupport", "GradMapRuntime", "GradMapKernels", "GradMapFormats", "GradMapTokenizer", "GradMapData",
    "GradMapEngine", "GradMapDistributed", "GradMapPruning", "GradMapCompensation", "GradMapReport", "GradMapWriter",
    "GradMapJob",
]

let package = Package(
    name: "gradmap-dist",
    products: [
        .executable(name: "gradmap-dist", targets: ["gradmap-dist"]),
        .library(name: "GradMapCore", targets: modules),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Open MPI, found through pkg-config; the shim exposes its handle macros as functions.
        .systemLibrary(
            name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        // OpenBLAS (cblas) and LAPACKE; Debian ships LAPACKE as its own library.
        .systemLibrary(
            name: "CBLAS", path: "Sources/CBLAS",
            providers: [.apt(["libopenblas-dev", "liblapacke-dev"])]),
        // oneDNN, the matrix products of every linear and lm_head layer (f32 and BF16 inputs); no pkg-config
        // file on Debian. libgomp is its thread runtime, linked to set the thread count.
        .systemLibrary(
            name: "CDNNL", path: "Sources/CDNNL",
            providers: [.apt(["libdnnl-dev"])]),
        // The hand-written AMX BF16 kernel (kept for comparison with oneDNN: `bench-gemm --library amx`) and
        // the BF16 rounding every BF16 product's inputs go through.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // The engine's Swift modules, one per folder of Sources/GradMapCore, each depending only on the ones
        // below it (no cycles; README, Layout): loader (Formats, Tokenizer, Data) -> engine (Kernels, Engine)
        // -> schedule (Distributed) -> metric (Pruning) -> compensation (Compensation) -> writer (Writer) and
        // the report, with the jobs (Job) on top. Support and Runtime are under everything.
        // Buffers, errors naming the field or flag, JSON values, fingerprints, SplitMix64, wall-clock seconds.
        module("GradMapSupport", "Support", []),
        // The process around the engine: BLAS/oneDNN set-up and threads, the Real scalar types with their BLAS
        // products, the MPI communicator, signals (Interrupt).
        module("GradMapRuntime", "Runtime", ["GradMapSupport", "CMPI", "CBLAS", "CDNNL"]),
        // Paired forward/backward kernels with explicit shapes, the oneDNN and AMX products, the GEMM benchmark.
        module("GradMapKernels", "Kernels", ["GradMapRuntime", "GradMapSupport", "CDNNL", "CKernels"]),
        // The loader: what a model path is, config, safetensors, sharded folders, GGUF and its quant decoders, the
        // Hugging Face config schema, the checkpoint's tensor layout, the build-in-`.partial` folder, GGUF -> folder.
        module("GradMapFormats", "Checkpoint", ["GradMapRuntime", "GradMapSupport"]),
        // tokenizer.json (and a GGUF's tokenizer): BPE, pre-tokenizer regexes, normalizers, decoders.
        module("GradMapTokenizer", "Tokenizer", ["GradMapFormats", "GradMapSupport"]),
        // Token windows, from a token file or tokenized text.
        module("GradMapData", "Data", ["GradMapTokenizer", "GradMapFormats", "GradMapSupport"]),
        // The model on one rank: parameters, activations, a pipeline stage, the Pass a stage runs, the summary.
        module("GradMapEngine", "Model", ["GradMapKernels", "GradMapFormats", "GradMapRuntime", "GradMapSupport"]),
        // The schedule: placement of stages and replicas, the 1F1B pipeline, the candidate sweep, per-window sums,
        // gradient norms gathered over ranks, the memory plan.
        module("GradMapDistributed", "Distributed", [
            "GradMapEngine", "GradMapData", "GradMapKernels", "GradMapFormats", "GradMapRuntime", "GradMapSupport"]),
        // The metrics (Metrics/, one strategy per metric) and the pruner taking the decisions.
        module("GradMapPruning", "Pruning", [
            "GradMapDistributed", "GradMapEngine", "GradMapData", "GradMapFormats", "GradMapRuntime", "GradMapSupport"]),
        // The compensation of the removed layers (fit, fold) and its shared passes.
        module("GradMapCompensation", "Compensation", [
            "GradMapPruning", "GradMapDistributed", "GradMapEngine", "GradMapData", "GradMapKernels", "GradMapFormats",
            "GradMapRuntime", "GradMapSupport", "CBLAS"]),
        // The pruning report (JSON), its picture and the mean intervals.
        module("GradMapReport", "Report", [
            "GradMapCompensation", "GradMapPruning", "GradMapEngine", "GradMapKernels", "GradMapSupport"]),
        // The pruned model's writers (Hugging Face folder, GGUF): every rank's tensors, gathered over the world.
        module("GradMapWriter", "Writer", ["GradMapDistributed", "GradMapFormats", "GradMapRuntime", "GradMapSupport"]),
        // Each command's job: its configuration, defaults and validation; the prune job with its journal and
        // time-left plan; eval, grad-stats, inspect and tokenize.
        module("GradMapJob", "Job", [
            "GradMapWriter", "GradMapReport", "GradMapCompensation", "GradMapPruning", "GradMapDistributed",
            "GradMapEngine", "GradMapData", "GradMapTokenizer", "GradMapFormats", "GradMapKernels", "GradMapRuntime",
            "GradMapSupport"]),
        .executableTarget(
            name: "gradmap-dist",
            dependencies: [
                "GradMapJob", "GradMapWriter", "GradMapPruning", "GradMapDistributed", "GradMapEngine", "GradMapFormats",
                "GradMapKernels", "GradMapRuntime", "GradMapSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // The parsers' fuzz harness: a seeded mutation loop over every input format (launch/fuzz runs it).
        .executableTarget(
            name: "gradmap-fuzz",
            dependencies: ["GradMapEngine", "GradMapData", "GradMapTokenizer", "GradMapFormats", "GradMapSupport"]),
        // Every module, each imported by the test files that use it (@testable in debug).
        .testTarget(name: "GradMapCoreTests", dependencies: modules.map { .target(name: $0) } + ["CKernels"]),
    ],
    swiftLanguageModes: [.v6]
)
