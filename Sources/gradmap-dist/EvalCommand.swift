// `gradmap-dist eval`: mean next-token loss and perplexity over token windows.
import ArgumentParser
import Foundation
import GradMapCore

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Loss and perplexity of a model over windows of a token file.")

    @OptionGroup var model: ModelOptions
    @OptionGroup var matmul: MatmulOptions
    @OptionGroup var windows: WindowOptions
    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false
    @Flag(name: .long, help: "Add per-rank timings, bytes sent and peak memory (\"ranks\") to the JSON.")
    var rankStats = false

    func run() throws {
        let world = try Communicator.world()
        let (ckpt, data, list) = try world.agree { try windows.setUp(world, model: model) }
        let pipeline = try windows.pipeline(world, ckpt, windows: list.count, training: false, model: model, matmul: matmul.matmul)
        try world.barrier()
        let start = DispatchTime.now()
        let r = try pipeline.run(data: data, windows: list, microBatch: windows.microBatch, pass: pipeline.pass())
        let seconds = elapsed(since: start)
        let ranks = rankStats ? try pipeline.gatherRankStats() : []
        guard world.rank == 0 else { return }
        let ppl = exp(r.loss)
        if json {
            var fields: [(String, JSONValue)] = [
                ("windows", .int(r.windows)), ("tokens", .int(r.windows * r.seqLen)), ("loss", .double(r.loss)),
                ("ppl", .double(ppl)), ("seconds", .double(seconds)),
            ]
            if rankStats { fields.append(("ranks", .array(ranks))) }
            print(JSONValue.object(fields).render())
        } else {
            print(String(format: "windows %d  tokens %d  loss %.6f  ppl %.4f  %.2f s (%.0f tokens/s)",
                         r.windows, r.windows * r.seqLen, r.loss, ppl, seconds, Double(r.windows * r.seqLen) / seconds))
        }
    }
}
