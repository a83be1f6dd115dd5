// `gradmap-dist inspect`: what a checkpoint holds.
import ArgumentParser
import Foundation
import GradMapCore

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Architecture, layer count, parameter count and bytes per layer.")

    @OptionGroup var model: ModelOptions
    @Flag(name: .long, help: "Print one JSON object on stdout.")
    var json = false

    func run() throws {
        let ckpt = try model.checkpoint()
        let summary = ModelSummary(config: ckpt.config, storage: ckpt.storageDType())
        print(json ? summary.json.render(indent: 2) : summary.text)
    }
}
