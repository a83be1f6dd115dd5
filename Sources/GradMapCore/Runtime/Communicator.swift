// A thin Swift layer over Open MPI: every call's return code is checked in one place and turned into a thrown
// error carrying MPI_Error_string. Outside an MPI launcher no MPI is initialised and the communicator is a
// world of size 1 whose collectives are identities, so single-process runs need no mpirun.
import CMPI
import Foundation
import GradMapSupport

public protocol MPIScalar { static var mpiType: MPI_Datatype { get } }
extension Float: MPIScalar { public static var mpiType: MPI_Datatype { gm_float() } }
extension Double: MPIScalar { public static var mpiType: MPI_Datatype { gm_double() } }
extension UInt8: MPIScalar { public static var mpiType: MPI_Datatype { gm_byte() } }
extension Int64: MPIScalar { public static var mpiType: MPI_Datatype { gm_int64() } }

public final class Communicator: @unchecked Sendable {
    /// nil for the solo world (no MPI).
    let comm: MPI_Comm?
    public let rank: Int
    public let size: Int

    /// Largest element count passed to one MPI call (counts are C ints); longer buffers go in pieces.
    public nonisolated(unsafe) static var maxChunk = Int(Int32.max)
    /// Largest piece of one all-reduce: Open MPI's non-blocking all-reduce allocates a scratch buffer as large
    /// as the piece, so pieces of 2^24 elements (64 MiB of Float) bound that scratch instead of doubling the
    /// gradients' memory. Pieces run one after another; at 64 MiB each the per-call latency is negligible.
    public static let allReduceChunk = 1 << 24

    public static let solo = Communicator(comm: nil, rank: 0, size: 1)

    init(comm: MPI_Comm?, rank: Int, size: Int) {
        self.comm = comm
        self.rank = rank
        self.size = size
    }

    public nonisolated(unsafe) private(set) static var mpiStarted = false
    /// This process's rank in the world (0 outside MPI), for error messages.
    public nonisolated(unsafe) private(set) static var worldRank = 0

    /// True when this process was started by an MPI launcher (mpirun, srun with PMIx, ...).
    public static var launchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"].contains { env[$0] != nil }
    }

    /// The world: MPI_COMM_WORLD under a launcher (MPI initialised here, errors returned, not fatal), else solo.
    public static func world() throws -> Communicator {
        guard launchedByMPI else { return solo }
        if !mpiStarted {
            try check(MPI_Init(nil, nil), "MPI_Init")
            mpiStarted = true
            try check(MPI_Comm_set_errhandler(gm_comm_world(), gm_errors_return()), "MPI_Comm_set_errhandler")
        }
        var r: Int32 = 0, s: Int32 = 0
        try check(MPI_Comm_rank(gm_comm_world(), &r), "MPI_Comm_rank")
        try check(MPI_Comm_size(gm_comm_world(), &s), "MPI_Comm_size")
        worldRank = Int(r)
        // Tests lower the chunk size to exercise the splitting of long buffers.
        if let v = ProcessInfo.processInfo.environment["GRADMAP_MPI_MAX_CHUNK"], let n = Int(v), n > 0 { maxChunk = n }
        return Communicator(comm: gm_comm_world(), rank: Int(r), size: Int(s))
    }

    public static func finalize() {
        if mpiStarted { MPI_Finalize(); mpiStarted = false }
    }

    /// Ends the whole job from any rank (used on errors, so no rank is left waiting).
    public static func abort(code: Int32) -> Never {
        if mpiStarted { MPI_Abort(gm_comm_world(), code) }
        exit(code)
    }

    /// Ends this rank after a JobFailure, which every rank of the job has: the barrier lets the reporting rank
    /// print before any rank exits (mpirun stops the job at the first non-zero exit, SIGTERM to the ranks still
    /// finalizing, which then add no line), and no MPI_Abort is needed.
    public static func endJob(code: Int32) -> Never {
        Interrupt.silence()
        if mpiStarted, let world = try? world() {
            try? world.barrier()
            finalize()
        }
        exit(code)
    }

    static func check(_ code: Int32, _ what: String) throws {
        guard code != gm_success() else { return }
        var buf = [CChar](repeating: 0, count: Int(gm_max_error_string()) + 1)
        var len: Int32 = 0
        MPI_Error_string(code, &buf, &len)
        let message = String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw GradMapError.runtime("\(what) failed: \(message) (code \(code))")
    }

    /// Splits into sub-communicators: ranks with equal color share one, ordered by key.
    public func split(color: Int, key: Int) throws -> Communicator {
        guard let comm else { return .solo }
        var out: MPI_Comm? = nil
        try Communicator.check(MPI_Comm_split(comm, Int32(color), Int32(key), &out), "MPI_Comm_split")
        var r: Int32 = 0, s: Int32 = 0
        try Communicator.check(MPI_Comm_rank(out, &r), "MPI_Comm_rank")
        try Communicator.check(MPI_Comm_size(out, &s), "MPI_Comm_size")
        try Communicator.check(MPI_Comm_set_errhandler(out, gm_errors_return()), "MPI_Comm_set_errhandler")
        return Communicator(comm: out, rank: Int(r), size: Int(s))
    }

    /// Calls body(offset, count) over pieces of at most maxChunk (and `limit`) elements.
    func chunked(_ count: Int, limit: Int = .max, _ body: (Int, Int32) throws -> Void) rethrows {
        var start = 0
        repeat {
            let n = min(Communicator.maxChunk, limit, count - start)
            try body(start, Int32(n))
            start += n
        } while start < count
    }

    // MARK: point to point

    /// Blocking receive, waited for politely (see Request.wait).
    public func recv<T: MPIScalar>(_ buf: UnsafeMutablePointer<T>, count: Int, from src: Int, tag: Int) throws {
        try irecv(buf, count: count, from: src, tag: tag).wait()
    }

    /// Pending non-blocking operations; `wait` completes all of them.
    public final class Request: @unchecked Sendable {
        var handles: [MPI_Request?] = []
        let what: String
        /// The storage a pending send reads from (or a receive writes to), held until the transfer completes:
        /// MPI reads a large message straight out of the sender's memory while the request is pending (vader's
        /// single-copy CMA, or rendezvous fragments), so that memory must outlive the request, not just the
        /// caller's last use of it.
        var storage: AnyObject?
        init(_ what: String, storage: AnyObject?) {
            self.what = what
            self.storage = storage
        }

        /// Lets MPI move pending transfers along without blocking (a large message goes by rendezvous and
        /// only advances while its sender is inside MPI): returns true when all have completed.
        @discardableResult
        public func test() throws -> Bool {
            var all = true
            for i in handles.indices where handles[i] != nil {
                var done: Int32 = 0
                try Communicator.check(MPI_Test(&handles[i], &done, gm_status_ignore()), "MPI_Test (\(what))")
                if done == 0 { all = false }
            }
            return all
        }

        /// Completes every operation. A rank that waits sleeps between polls (20 µs, growing to 1 ms) instead
        /// of spinning in MPI_Wait: with more ranks than cores, a spinning rank takes the core its neighbour
        /// needs to produce the very message it waits for.
        public func wait() throws {
            for i in handles.indices where handles[i] != nil {
                try Communicator.politeWait(&handles[i], what)
            }
            handles.removeAll()
            storage = nil
        }
    }

    /// Non-blocking send of count elements at buf, which lie inside `storage`: the request keeps `storage`
    /// alive until it has completed.
    public func isend<T: MPIScalar>(
        _ buf: UnsafePointer<T>, count: Int, to dest: Int, tag: Int, storage: AnyObject
    ) throws -> Request {
        guard let comm else { throw GradMapError.runtime("isend on a world of size 1") }
        let req = Request("send to rank \(dest)", storage: storage)
        try chunked(count) { off, n in
            var h: MPI_Request? = nil
            try Communicator.check(MPI_Isend(buf + off, n, T.mpiType, Int32(dest), Int32(tag), comm, &h), "MPI_Isend to rank \(dest)")
            req.handles.append(h)
        }
        return req
    }

    public func irecv<T: MPIScalar>(_ buf: UnsafeMutablePointer<T>, count: Int, from src: Int, tag: Int) throws -> Request {
        guard let comm else { throw GradMapError.runtime("irecv on a world of size 1") }
        let req = Request("receive from rank \(src)", storage: nil)
        try chunked(count) { off, n in
            var h: MPI_Request? = nil
            try Communicator.check(MPI_Irecv(buf + off, n, T.mpiType, Int32(src), Int32(tag), comm, &h), "MPI_Irecv from rank \(src)")
            req.handles.append(h)
        }
        return req
    }

    /// Waits for a request by polling it. Oversubscribed, the poller sleeps between polls (20 µs doubling to
    /// 1 ms) so that computing ranks get the cores; with a core per rank it polls without sleeping, since
    /// transfers progress only while a rank is inside MPI and the core is idle anyway.
    static func politeWait(_ handle: inout MPI_Request?, _ what: String) throws {
        var done: Int32 = 0
        var pause: UInt32 = 20
        while true {
            try check(MPI_Test(&handle, &done, gm_status_ignore()), "MPI_Test (\(what))")
            if done != 0 { return }
            if !oversubscribed { continue }
            usleep(pause)
            pause = min(pause * 2, 1000)
        }
    }

    // MARK: collectives

    /// More ranks on this node than cores (Open MPI's local size against the online CPUs): then waiting ranks
    /// must sleep between polls so the ranks that compute get the cores.
    public static let oversubscribed: Bool = {
        let local = Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1
        return local > max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }()

    /// In-place sum over all ranks. With a core per rank, the blocking MPI_Allreduce (it polls, and moves
    /// large pieces at memory speed); oversubscribed, non-blocking and waited for politely, as a sleeping
    /// rank's progress only happens when it polls.
    public func allReduceSum<T: MPIScalar>(_ buf: UnsafeMutablePointer<T>, count: Int) throws {
        guard let comm, size > 1 else { return }
        try chunked(count, limit: Communicator.allReduceChunk) { off, n in
            if !Communicator.oversubscribed {
                try Communicator.check(MPI_Allreduce(gm_in_place(), buf + off, n, T.mpiType, gm_op_sum(), comm), "MPI_Allreduce")
                return
            }
            var h: MPI_Request? = nil
            try Communicator.check(MPI_Iallreduce(gm_in_place(), buf + off, n, T.mpiType, gm_op_sum(), comm, &h), "MPI_Iallreduce")
            try Communicator.politeWait(&h, "all-reduce")
        }
    }

    public func allReduceSum(_ values: [Double]) throws -> [Double] {
        var v = values
        try v.withUnsafeMutableBufferPointer { try allReduceSum($0.baseAddress!, count: $0.count) }
        return v
    }

    /// In-place sum onto `root` (other ranks' buffers are left as they were).
    public func reduceSum<T: MPIScalar>(_ buf: UnsafeMutablePointer<T>, count: Int, root: Int) throws {
        guard let comm, size > 1 else { return }
        try chunked(count) { off, n in
            let code = rank == root
                ? MPI_Reduce(gm_in_place(), buf + off, n, T.mpiType, gm_op_sum(), Int32(root), comm)
                : MPI_Reduce(buf + off, nil, n, T.mpiType, gm_op_sum(), Int32(root), comm)
            try Communicator.check(code, "MPI_Reduce")
        }
    }

    public func broadcast<T: MPIScalar>(_ buf: UnsafeMutablePointer<T>, count: Int, root: Int) throws {
        guard let comm, size > 1 else { return }
        try chunked(count) { off, n in
            try Communicator.check(MPI_Bcast(buf + off, n, T.mpiType, Int32(root), comm), "MPI_Bcast")
        }
    }

    /// Every rank's `values` on `root` (others get []), concatenated in rank order.
    public func gather(_ values: [Double], root: Int) throws -> [Double] {
        guard let comm, size > 1 else { return values }
        var out = [Double](repeating: 0, count: rank == root ? values.count * size : 1)
        try values.withUnsafeBufferPointer { src in
            try out.withUnsafeMutableBufferPointer { dst in
                try Communicator.check(
                    MPI_Gather(src.baseAddress, Int32(values.count), gm_double(), dst.baseAddress,
                               Int32(values.count), gm_double(), Int32(root), comm), "MPI_Gather")
            }
        }
        return rank == root ? out : []
    }

    /// Runs `body` on every rank and agrees on the outcome. When it throws on any rank, it throws JobFailure on
    /// every rank, carrying the lowest failing rank's error (its exit code for all): that rank reports it, one
    /// line for the job instead of one per rank. Every rank must call it at the same point, and `body` must not
    /// communicate (a rank that failed would not join): it is for checks, set-up and writes between the
    /// collectives.
    public func agree<T>(_ body: () throws -> T) throws -> T {
        let outcome = Result { try body() }
        // codes[r]: rank r's exit code, 0 when it succeeded; summed, every rank sees every rank's.
        var codes = [Double](repeating: 0, count: size)
        if case .failure(let error) = outcome { codes[rank] = Double(GradMapError.exitCode(error)) }
        codes = try allReduceSum(codes)
        guard let first = codes.firstIndex(where: { $0 != 0 }) else { return try outcome.get() }
        var error: Error? = nil
        if first == rank, case .failure(let mine) = outcome { error = mine }
        throw JobFailure(code: Int32(codes[first]), error: error, reporter: first, everyRank: !codes.contains(0))
    }

    public func barrier() throws {
        guard let comm, size > 1 else { return }
        var h: MPI_Request? = nil
        try Communicator.check(MPI_Ibarrier(comm, &h), "MPI_Ibarrier")
        try Communicator.politeWait(&h, "barrier")
    }
}
