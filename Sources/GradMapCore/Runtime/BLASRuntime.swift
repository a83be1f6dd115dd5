// Putting OpenBLAS and oneDNN's OpenMP on the right kernel, thread count and wait policy before any work.
// Debian's OpenBLAS 0.3.21 does not recognise recent CPUs and falls back to a generic sgemm about 4x slower;
// OPENBLAS_CORETYPE fixes that but is read only when the library loads. libgomp (oneDNN's threads) likewise
// reads OMP_WAIT_POLICY only at load, before main runs. So the process re-executes itself with both set
// (before MPI_Init, so mpirun never sees a second process: execv keeps the pid). Threads: cores / ranks on
// this node, unless told; OpenBLAS, oneDNN and the Parallel loops all get that count.
import CBLAS
import CDNNL
import Foundation

public enum BLASRuntime {
    static let reexecMarker = "GRADMAP_REEXEC"

    /// The OpenBLAS core type for this CPU, from /proc/cpuinfo flags; nil when OpenBLAS's own choice is fine.
    public static func detectCoreType(cpuinfo: String) -> String? {
        guard let line = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(separator: " ").map(String.init))
        if ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"].allSatisfy(flags.contains) { return "SkylakeX" }
        if ["avx2", "fma"].allSatisfy(flags.contains) { return "Haswell" }
        return nil
    }

    /// Re-executes the process with OPENBLAS_CORETYPE and OMP_WAIT_POLICY set when they are unset (and this
    /// CPU needs a core type). Returns normally when no re-exec is needed (or possible).
    ///
    /// OMP_WAIT_POLICY=passive: libgomp's default lets a thread that finished its share of a product spin for
    /// up to ~300k iterations before it sleeps. Between products those spinning threads compete for the
    /// rank's cores with the Dispatch workers of the Parallel loops, and with other ranks when a node is
    /// oversubscribed (the tests run 2-4 ranks on 2 cores); passive threads sleep at once. A product here is
    /// 0.1-100 ms, so the futex wake-up per product (~10 µs) costs little (docs/benchmarks.md).
    public static func ensureLibraryEnvironment() {
        let env = ProcessInfo.processInfo.environment
        guard env[reexecMarker] == nil else { return }
        var changed = false
        if env["OPENBLAS_CORETYPE"] == nil,
            let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let core = detectCoreType(cpuinfo: info)
        {
            setenv("OPENBLAS_CORETYPE", core, 1)
            changed = true
        }
        if env["OMP_WAIT_POLICY"] == nil {
            setenv("OMP_WAIT_POLICY", "passive", 1)
            changed = true
        }
        guard changed else { return }
        setenv(reexecMarker, "1", 1)
        fflush(nil)
        // The executable's own path, not /proc/self/exe: exec names the process after the file it runs, and
        // tools (pgrep, ps, job monitors) should see gradmap-dist, not "exe".
        let own = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/proc/self/exe"
        execv(own, CommandLine.unsafeArgv)
        execv("/proc/self/exe", CommandLine.unsafeArgv)  // the file was replaced since it started
        // exec failed: carry on with the libraries' defaults rather than fail.
    }

    /// Ranks of this job on this node, from the MPI launcher's environment (1 outside mpirun).
    public static func localRanks() -> Int {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"] {
            if let v = env[key], let n = Int(v), n > 0 { return n }
        }
        return 1
    }

    /// CPUs this process may run on (its affinity mask).
    public static func allowedCPUs() -> Int {
        // /proc/self/status carries the mask as hex words ("Cpus_allowed:\t00000000,00000003").
        if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") })
        {
            let hex = line.dropFirst("Cpus_allowed:".count).filter { $0.isHexDigit }
            let bits = hex.reduce(0) { $0 + (Int(String($1), radix: 16) ?? 0).nonzeroBitCount }
            if bits > 0 { return bits }
        }
        return max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// Product threads per rank: GRADMAP_BLAS_THREADS or OPENBLAS_NUM_THREADS when set, else
    /// min(allowed CPUs, online cores / local ranks).
    public static func defaultThreads() -> Int {
        let env = ProcessInfo.processInfo.environment
        for key in ["GRADMAP_BLAS_THREADS", "OPENBLAS_NUM_THREADS"] {
            if let v = env[key], let n = Int(v), n > 0 { return n }
        }
        let online = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return max(1, min(allowedCPUs(), online / localRanks()))
    }

    public private(set) nonisolated(unsafe) static var threads = 1

    public static func configureThreads(_ n: Int? = nil) {
        threads = n ?? defaultThreads()
        openblas_set_num_threads(Int32(threads))
        omp_set_num_threads(Int32(threads))
        Parallel.workers = threads
    }

    /// Runs body with OpenBLAS single-threaded (for BLAS calls made from several threads at once).
    public static func singleThreaded<T>(_ body: () throws -> T) rethrows -> T {
        guard threads > 1 else { return try body() }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(threads)) }
        return try body()
    }

    public static var coreName: String { String(cString: openblas_get_corename()) }
}
