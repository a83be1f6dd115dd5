// Sums over calibration windows that come out as the same bits for any split of the job. Each rank adds what
// it computed for a window into that window's own slot (its position in the window list); the world sum of
// the table then adds exact zeros to every slot but the one rank's value; totals are taken over the slots in
// window order. Replicas, micro-batch grouping and stage placement thus change where a window's terms are
// computed, never the order in which they are added.
import GradMapRuntime

package struct WindowSums {
    let rows: Int
    let windows: Int
    /// [rows × windows]
    private var table: [Double]

    package init(rows: Int, windows: Int) {
        self.rows = rows
        self.windows = windows
        table = [Double](repeating: 0, count: rows * windows)
    }

    package mutating func add(_ value: Double, row: Int, slot: Int) { table[row * windows + slot] += value }

    /// Per-row totals over the world, windows added in order; identical on every rank.
    package func totals(over world: Communicator) throws -> [Double] {
        try reduced(over: world).totals
    }

    /// The world's table, [rows × windows] (every window's value, as one rank computed it), and the per-row
    /// totals over it, windows added in order; identical on every rank.
    package func reduced(over world: Communicator) throws -> (table: [Double], totals: [Double]) {
        let all = try world.allReduceSum(table)
        let totals = (0..<rows).map { r in
            var total = 0.0
            for w in 0..<windows { total += all[r * windows + w] }
            return total
        }
        return (all, totals)
    }
}
