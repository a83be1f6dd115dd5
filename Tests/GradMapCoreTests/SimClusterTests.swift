// Jobs across nodes: `mpirun -np 8` over 4 nodes × 2 slots simulated by launch/sim-cluster (network, UTS
// and mount namespaces per node, veth links into a bridge; Open MPI uses shared memory within a node and
// TCP between nodes, as on a real cluster). One cluster serves every test of the class. Needs root: as root
// a cluster that cannot be made is a failure, never a skip (CI runs as root).
//
// The job: the real SmolLM2 GGUF, fisher (a gradient metric: one forward and backward per decision), K = 2,
// 4 windows of 64 tokens, compensation at the largest shift, 4 stages × 2 replicas, so a replica's layers
// span two nodes (stage 1 → 2 crosses node1 → node2) and the replicas' sums cross node1 ↔ node3.
import Foundation
import XCTest

@testable import GradMapFormats
@testable import GradMapSupport

final class SimClusterTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let simCluster = root + "/launch/sim-cluster"
    static let state = NSTemporaryDirectory() + "gradmap-test-sim-cluster-\(UUID().uuidString)"
    nonisolated(unsafe) static var upError: String? = "not started"

    override class func setUp() {
        super.setUp()
        guard getuid() == 0 else { upError = nil; return }
        do {
            let r = try runProcess(simCluster, ["up", "4"], env: ["GRADMAP_SIM_CLUSTER_DIR": state], timeout: 60)
            upError = r.status == 0 ? nil : "sim-cluster up 4: exit \(r.status): \(r.stderr)"
        } catch { upError = "sim-cluster up 4: \(error)" }
    }

    override class func tearDown() {
        _ = try? runProcess(simCluster, ["down"], env: ["GRADMAP_SIM_CLUSTER_DIR": state], timeout: 60)
        super.tearDown()
    }

    func requireCluster() throws {
        guard getuid() == 0 else { throw XCTSkip("the simulated cluster needs root (network namespaces); CI runs it") }
        if let e = Self.upError { XCTFail(e); throw MissingPrerequisite(description: e) }
        try requireReleaseBinary()
    }

    func sim(_ args: [String], timeout: Double = 60) throws -> String {
        let r = try runProcess(Self.simCluster, args, env: ["GRADMAP_SIM_CLUSTER_DIR": Self.state], timeout: timeout)
        guard r.status == 0 else { throw GradMapError.runtime("sim-cluster \(args): exit \(r.status): \(r.stderr)") }
        return r.stdout
    }

    /// Bytes each node has sent and received on its link so far.
    func linkBytes() throws -> [String: (sent: Int, received: Int)] {
        var bytes: [String: (sent: Int, received: Int)] = [:]
        for line in try sim(["bytes"]).split(separator: "\n") {
            let f = line.split(separator: " ")
            bytes[String(f[0])] = (Int(f[1])!, Int(f[2])!)
        }
        return bytes
    }

    /// `launch/run -np 8` on the cluster's hostfile, from the head, one BLAS thread per rank (as the
    /// single-process reference). Ranks yield when idle: the 4 nodes share this machine's cores.
    func clusterJob(_ command: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.simCluster)
        p.arguments = ["exec", "head", Self.root + "/launch/run", "-np", "8", "--hostfile", Self.state + "/hostfile",
                       "--bin", releaseBinaryPath, "--", "--mca", "mpi_yield_when_idle", "1", ";"] + command
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
        env["GRADMAP_SIM_CLUSTER_DIR"] = Self.state
        env["GRADMAP_BLAS_THREADS"] = "1"
        p.environment = env
        return p
    }

    /// Runs a cluster job to its end; returns its exit status, stdout and stderr, and its seconds.
    func runOnCluster(_ command: [String], timeout: Double = 600) throws -> (ProcessResult, Double) {
        let p = try clusterJob(command)
        let start = Date()
        let r = try runProcess(p.executableURL!.path, p.arguments!, env: p.environment!, timeout: timeout)
        return (r, Date().timeIntervalSince(start))
    }

    /// A cluster `prune --json`; returns the JSON and the job's seconds.
    func clusterPrune(_ args: [String], out: String) throws -> ([String: Any], Double) {
        let (r, seconds) = try runOnCluster(["prune"] + args + ["--out", out, "--json"])
        guard r.status == 0 else { throw GradMapError.runtime("cluster prune: exit \(r.status): \(r.stderr)") }
        let line = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let o = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw GradMapError.runtime("no JSON: \(r.stdout)")
        }
        return (o, seconds)
    }

    /// The nodes' network namespaces (`net:[inode]`), from the cluster's state.
    func nodeNamespaces() throws -> [String: String] {
        var ns: [String: String] = [:]
        for line in try String(contentsOfFile: Self.state + "/nodes", encoding: .utf8).split(separator: "\n") {
            let f = line.split(separator: " ")
            ns[String(f[0])] = String(f[2])
        }
        return ns
    }

    /// The gradmap-dist ranks running on a node: (pid, rank).
    func ranks(on node: String) throws -> [(pid: Int32, rank: Int)] {
        let ns = try nodeNamespaces()[node]!
        var found: [(pid: Int32, rank: Int)] = []
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc") {
            guard let pid = Int32(entry),
                  (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/ns/net")) == ns,
                  let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
                  comm.hasPrefix("gradmap-dist"),
                  let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
            for v in environ.split(separator: 0) where v.starts(with: Array("OMPI_COMM_WORLD_RANK=".utf8)) {
                found.append((pid, Int(String(decoding: v.dropFirst(21), as: UTF8.self))!))
            }
        }
        return found
    }

    /// Starts a cluster prune, waits until rank 0 reports its first decision (the second is then running),
    /// does `fault`, and returns the exit status, the output and the seconds from the fault to the end. A
    /// job still running `deadline` s after the fault is killed (its group) and reported as a hang.
    func pruneWithFault(_ args: [String], out: String, deadline: Double, _ fault: () throws -> Void) throws -> (Int32, String, Double) {
        let p = try clusterJob(["prune"] + args + ["--out", out])
        let log = temporaryDirectory("simfault") + "/log"
        XCTAssertTrue(FileManager.default.createFile(atPath: log, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        let read = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        while p.isRunning && !read().contains("decision 1/") { usleep(100_000) }
        guard p.isRunning else { throw GradMapError.runtime("the job ended before its first decision: \(read())") }
        try fault()
        let faulted = Date()
        while p.isRunning && Date().timeIntervalSince(faulted) < deadline { usleep(100_000) }
        let seconds = Date().timeIntervalSince(faulted)
        if p.isRunning {
            p.terminate()
            p.waitUntilExit()
            _ = try sim(["reap"])
            XCTFail("still running \(Int(deadline)) s after the fault: a hang. Output: \(read())")
        }
        p.waitUntilExit()
        try handle.close()
        return (p.terminationStatus, read(), seconds)
    }

    /// No checkpoint, and of the partial folder at most the decision journal that `prune --resume` continues
    /// from (a job that fails before its first decision leaves none).
    func assertNothingWritten(_ out: String, _ label: String) {
        let partial = PartialFolder(out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(label): \(out) left")
        if FileManager.default.fileExists(atPath: partial.path) {
            let left = (try? FileManager.default.contentsOfDirectory(atPath: partial.path)) ?? []
            XCTAssertEqual(left, [PartialFolder.journalName], "\(label): \(partial.path) holds more than the journal")
        }
    }

    /// Decisions and written tensors of the 4-node job equal a single process's within the compensation's
    /// bound (README "What is the same for any split"); bytes cross the simulated links; the same job with
    /// every link limited to 1 Gbit/s; then a corrupt shard that only node 2's ranks read.
    func testPruneOnFourNodesAsOneProcess() throws {
        try requireCluster()
        let tokens = try calibrationTokens()
        let args = ["--model", RealModelTests.gguf, "--tokens", tokens, "--seq-len", "64", "--calib-windows", "4",
                    "--remove", "2", "--metric", "fisher", "--compensate-at", "shift"]
        let single = Date()
        let (ref, refOut) = try prune(1, stages: 1, args)
        let singleSeconds = Date().timeIntervalSince(single)
        let dir = temporaryDirectory("simcluster")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: refOut) }

        let before = try linkBytes()
        let (o, seconds) = try clusterPrune(args + ["--stages", "4"], out: dir + "/p")
        let after = try linkBytes()
        try assertSameCompensated(o, dir + "/p", ref, refOut, lossBound: 1e-9, tensorBound: 1e-6, exactLosses: true, "4 nodes")
        // Each decision's forward sends the hidden states of a replica's 2 windows × 64 tokens (float32, H = 576)
        // from stage 1 on node1 (node3) to stage 2 on node2 (node4), and its backward their gradients back.
        let boundary = 2 * 4 * 2 * 64 * 576
        for (sender, receiver) in [("node1", "node2"), ("node2", "node1"), ("node3", "node4"), ("node4", "node3")] {
            let sent = after[sender]!.sent - before[sender]!.sent
            XCTAssertGreaterThanOrEqual(sent, boundary, "\(sender) → \(receiver): bytes on its link")
        }
        let moved = after.keys.sorted().map { "\($0) sent \(after[$0]!.sent - before[$0]!.sent) received \(after[$0]!.received - before[$0]!.received)" }
        print("sim-cluster prune: link bytes: \(moved.joined(separator: ", "))")

        for node in ["node1", "node2", "node3", "node4"] { _ = try sim(["link", node, "rate", "1gbit"]) }
        let limited = try clusterPrune(args + ["--stages", "4"], out: dir + "/limited")
        for node in ["node1", "node2", "node3", "node4"] { _ = try sim(["link", node, "unlimited"]) }
        try assertSameCompensated(limited.0, dir + "/limited", ref, refOut, lossBound: 1e-9, tensorBound: 1e-6, exactLosses: true, "1 Gbit/s")
        try? FileManager.default.removeItem(atPath: dir + "/limited")
        print(String(format: "sim-cluster prune: 1 process %.1f s, 4 nodes %.1f s, 4 nodes at 1 Gbit/s %.1f s", singleSeconds, seconds, limited.1))

        // The 4-stage job wrote one shard per stage. Read with 8 stages balanced by memory, node 2's ranks (2 and
        // 3) hold layers 9-23: the shard holding layers 10-17 is read by them alone (checked from the plan).
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/p/model.safetensors.index.json"))) as! [String: Any]
        let weightMap = index["weight_map"] as! [String: String]
        let shard = weightMap["model.layers.10.mlp.down_proj.weight"]!
        let shardLayers = Set(weightMap.filter { $0.value == shard }.keys.map { name -> Int in
            XCTAssertTrue(name.hasPrefix("model.layers."), "\(shard) holds \(name)")
            return Int(name.split(separator: ".")[2])!
        })
        let plan = try runProcess(releaseBinaryPath, ["inspect", "--model", dir + "/p", "--ranks", "8", "--stages", "8",
                                                     "--balance", "memory", "--seq-len", "64", "--json"])
        let ranks = (try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as! [String: Any])["plan"] as! [[String: Any]]
        let readers = ranks.filter { !Set($0["layers"] as! [Int]).isDisjoint(with: shardLayers) }.map { $0["rank"] as! Int }
        XCTAssertEqual(Set(readers), [2, 3], "the ranks reading \(shard) (node2 holds ranks 2 and 3)")

        let corrupt = dir + "/corrupt"
        try FileManager.default.createDirectory(atPath: corrupt, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: dir + "/p") where name != shard {
            try FileManager.default.createSymbolicLink(atPath: corrupt + "/" + name, withDestinationPath: dir + "/p/" + name)
        }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/p/" + shard))
        bytes[8] = UInt8(ascii: "#")   // the JSON header's opening brace
        try bytes.write(to: URL(fileURLWithPath: corrupt + "/" + shard))
        let (bad, _) = try runOnCluster(["prune", "--model", corrupt, "--tokens", tokens, "--seq-len", "64", "--calib-windows", "4",
                                         "--remove", "2", "--metric", "fisher", "--stages", "8", "--balance", "memory",
                                         "--out", dir + "/bad"])
        XCTAssertEqual(bad.status, 2, "corrupt shard: \(bad.stderr)")
        XCTAssertTrue(bad.stderr.contains(corrupt + "/" + shard), "corrupt shard: the message names the file: \(bad.stderr)")
        assertNothingWritten(dir + "/bad", "corrupt shard")
    }

    /// A rank on node 3 killed in the middle of the second decision ends the job within 10 s, with a
    /// message naming the rank and the node, and nothing written.
    func testKilledRankOnNode3EndsTheJob() throws {
        try requireCluster()
        let tokens = try calibrationTokens()
        let out = temporaryDirectory("simkill") + "/p"
        var victim = -1
        let (status, output, seconds) = try pruneWithFault(
            ["--model", RealModelTests.gguf, "--tokens", tokens, "--seq-len", "64", "--calib-windows", "16", "--remove", "2",
             "--metric", "fisher", "--no-compensate", "--stages", "4"], out: out, deadline: 10) {
            let onNode3 = try ranks(on: "node3")
            XCTAssertEqual(onNode3.map(\.rank).sorted(), [4, 5], "ranks on node3")
            victim = onNode3[0].rank
            kill(onNode3[0].pid, SIGKILL)
        }
        print(String(format: "sim-cluster: rank %d on node3 killed; the job ended %.1f s later with exit %d", victim, seconds, status))
        XCTAssertNotEqual(status, 0, output)
        XCTAssertTrue(output.contains("rank \(victim)") && output.contains("node3"), "the message names rank \(victim) and node3: \(output)")
        assertNothingWritten(out, "killed rank")
        _ = try sim(["reap"])
    }

    /// Node 2's link taken down in the middle of a decision ends the job (non-zero) within 60 s with the
    /// defaults of launch/run (the runtime's TCP keepalive), rather than hanging.
    func testDownedLinkOfNode2EndsTheJob() throws {
        try requireCluster()
        let tokens = try calibrationTokens()
        let out = temporaryDirectory("simlink") + "/p"
        let (status, output, seconds) = try pruneWithFault(
            ["--model", RealModelTests.gguf, "--tokens", tokens, "--seq-len", "64", "--calib-windows", "16", "--remove", "2",
             "--metric", "fisher", "--no-compensate", "--stages", "4"], out: out, deadline: 60) {
            _ = try sim(["link", "node2", "down"])
        }
        _ = try sim(["link", "node2", "up"])
        let left = try sim(["reap"]).trimmingCharacters(in: .whitespacesAndNewlines)
        print(String(format: "sim-cluster: node2's link down; the job ended %.1f s later with exit %d (%@ processes left on the nodes, reaped)", seconds, status, left))
        XCTAssertNotEqual(status, 0, output)
        assertNothingWritten(out, "downed link")
    }
}
