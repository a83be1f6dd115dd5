// `gradmap-dist eval`: mean next-token loss and perplexity over token windows.
import ArgumentParser
import GradMapJob
import GradMapRuntime

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval", abstract: "Loss and perplexity of a model over windows of a token file.")

    @OptionGroup var windows: WindowOptions

    func run() throws {
        let result = try WindowJob.evaluate(windows.config(), world: try Communicator.world())
        guard Communicator.worldRank == 0 else { return }
        print(windows.json ? result.json.render() : result.text)
    }
}
