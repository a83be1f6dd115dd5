// swift-tools-version:6.0
// gradmap-dist: layer pruning of LLaMA-family models, a Swift engine over Open MPI and OpenBLAS.
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
        // BF16 matrix products on Intel AMX (`--matmul bf16`), chosen at run time.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        .target(
            name: "GradMapCore", dependencies: ["CMPI", "CBLAS", "CKernels"],
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
