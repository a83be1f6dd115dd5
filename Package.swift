// swift-tools-version:6.0
// gradmap-dist: layer pruning of LLaMA-family models, a Swift engine over Open MPI, oneDNN and OpenBLAS.
import PackageDescription

let package = Package(
    name: "gradmap-dist",
    products: [
        .executable(name: "gradmap-dist", targets: ["gradmap-dist"]),
        .library(name: "GradMapCore", targets: ["GradMapCore"]),
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
        .target(
            name: "GradMapCore", dependencies: ["CMPI", "CBLAS", "CDNNL", "CKernels"],
            swiftSettings: [.unsafeFlags(["-Ounchecked", "-cross-module-optimization"], .when(configuration: .release))]),
        .executableTarget(
            name: "gradmap-dist",
            dependencies: ["GradMapCore", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        // The parsers' fuzz harness: a seeded mutation loop over every input format (launch/fuzz runs it).
        .executableTarget(name: "gradmap-fuzz", dependencies: ["GradMapCore"]),
        .testTarget(name: "GradMapCoreTests", dependencies: ["GradMapCore"]),
    ],
    swiftLanguageModes: [.v6]
)
