import Foundation
import GradMapFormats
import GradMapRuntime
import GradMapSupport
// The parameters a stage holds, in one allocation (and their gradients in a second of the same layout), laid
// out from the config. Names and shapes are Hugging Face's; views give each layer's tensors as pointers.

/// Pointers to one layer's tensors inside a parameter (or gradient) allocation.
struct LayerView<F: Real> {
    var ln1, wq, wk, wv, wo, ln2, wg, wu, wd: UnsafeMutablePointer<F>
    var bq, bk, bv, bo, bg, bu, bd: UnsafeMutablePointer<F>?
}

/// How a stage holds its decoder layers' weights.
public enum WeightFormat: String, Sendable, CaseIterable {
    /// Every weight widened to the engine's scalar once, at load (4 bytes per parameter).
    case f32
    /// Layer weights kept as BF16 (2 bytes per parameter: memory-mapped from a BF16 checkpoint, else rounded once
    /// at load) and widened one layer at a time, into a one-layer window, when that layer runs. The embedding,
    /// final norm and lm_head stay widened.
    case bf16
}

public final class ParameterSet<F: Real>: @unchecked Sendable {
    public let config: ModelConfig
    public let part: StagePart
    public let specs: [ParamSpec]
    public let weights: WeightFormat
    /// f32: every tensor at its spec offset. bf16: the non-layer tensors, then a one-layer window (see valueOffset).
    public let values: Buffer<F>
    /// Gradients in the full layout (spec offsets); allocated only when a backward pass is wanted.
    public private(set) var grads: Buffer<F>?
    private let index: [String: Int]
    /// Per spec: where its values are in `values` (layer tensors in bf16: the offset inside the window).
    private let valueOffset: [Int]
    private let specOffsets: [Int]
    private let windowBase: Int
    private var windowLayer: Int? = nil
    /// bf16: per spec, the BF16 bits of a layer tensor (nil for non-layer tensors); `owned` holds those not mapped.
    private var packed: [UnsafePointer<UInt16>?]
    private var owned: [Int: Buffer<UInt16>] = [:]
    private var sources: [AnyObject] = []
    private let lock = NSLock()

    /// Full-layout element count (what f32 holds, and the gradients' size).
    public let count: Int

    public init(config: ModelConfig, part: StagePart, weights: WeightFormat = .f32) {
        self.config = config
        self.part = part
        self.weights = weights
        specs = ParamLayout.specs(config, part: part)
        count = specs.last.map { $0.offset + $0.count } ?? 0
        index = Dictionary(uniqueKeysWithValues: specs.enumerated().map { ($1.name, $0) })
        packed = [UnsafePointer<UInt16>?](repeating: nil, count: specs.count)
        specOffsets = specs.map(\.offset)
        switch weights {
        case .f32:
            valueOffset = specs.map(\.offset)
            windowBase = count
            values = Buffer(count: count)
        case .bf16:
            // layer → offset of its first tensor in the full layout
            var starts: [Int: Int] = [:]
            for s in specs { if let l = s.layer, starts[l] == nil { starts[l] = s.offset } }
            var offsets: [Int] = []
            var compact = 0
            for s in specs where s.layer == nil { compact += s.count }
            windowBase = compact
            compact = 0
            for s in specs {
                if let l = s.layer {
                    offsets.append(windowBase + s.offset - starts[l]!)
                } else {
                    offsets.append(compact)
                    compact += s.count
                }
            }
            valueOffset = offsets
            let layerFloats = ParamLayout.layerTensors(config).reduce(0) { $0 + $1.1.reduce(1, *) }
            values = Buffer(count: windowBase + (part.layers.isEmpty ? 0 : layerFloats))
        }
    }

    /// Bytes of weights this set holds: its widened values, plus in bf16 two bytes per layer parameter (owned, or
    /// memory-mapped pages of the checkpoint).
    public var weightBytes: Int {
        let layerParams = specs.reduce(0) { $0 + ($1.layer == nil ? 0 : $1.count) }
        return values.count * MemoryLayout<F>.size + (weights == .bf16 ? 2 * layerParams : 0)
    }

    public func spec(_ name: String) -> ParamSpec? { index[name].map { specs[$0] } }

    /// A tensor's values. In bf16 a layer tensor is widened into the one-layer window first, so the pointer is
    /// good until another layer is used; write changes back with `store`.
    public func value(_ name: String) -> UnsafeMutablePointer<F> { pointer(index[name]!) }
    public func grad(_ name: String) -> UnsafeMutablePointer<F> { grads!.pointer + specs[index[name]!].offset }

    public func value(_ spec: ParamSpec) -> UnsafeMutablePointer<F> { pointer(index[spec.name]!) }

    private func pointer(_ i: Int) -> UnsafeMutablePointer<F> {
        if weights == .bf16, let l = specs[i].layer { materialize(l) }
        return values.pointer + valueOffset[i]
    }

    /// Replaces a tensor's values (in bf16 a layer tensor is rounded to BF16, as it is held).
    public func store(_ name: String, from src: UnsafePointer<F>) {
        let i = index[name]!, s = specs[i]
        guard weights == .bf16, let l = s.layer else {
            (values.pointer + valueOffset[i]).update(from: src, count: s.count)
            return
        }
        lock.lock()
        defer { lock.unlock() }
        let dst = owned[i] ?? Buffer<UInt16>(count: s.count, zero: 0)
        for e in 0..<s.count { dst[e] = floatToBF16(Float(src[e])) }
        owned[i] = dst
        packed[i] = UnsafePointer(dst.pointer)
        if windowLayer == l { windowLayer = nil }
    }

    public func enableGradients() {
        if grads == nil { grads = Buffer(count: count) }
    }

    /// Fills every tensor from the checkpoint, asking for each by name and shape. In bf16, a layer tensor
    /// stored as BF16 in a safetensors file is used in place (memory-mapped); any other is rounded once.
    public func load(from ckpt: Checkpoint) throws {
        for (i, s) in specs.enumerated() {
            guard weights == .bf16, s.layer != nil else {
                try ckpt.load(s.name, shape: s.shape, into: values.pointer + valueOffset[i])
                continue
            }
            if let mapped = try ckpt.source.mappedBF16(s.name, shape: s.shape) {
                packed[i] = mapped.bits
                sources.append(mapped.owner)
                continue
            }
            let wide = Buffer<Float>(count: s.count)
            try ckpt.load(s.name, shape: s.shape, into: wide.pointer)
            let dst = Buffer<UInt16>(count: s.count, zero: 0)
            for e in 0..<s.count { dst[e] = floatToBF16(wide[e]) }
            owned[i] = dst
            packed[i] = UnsafePointer(dst.pointer)
        }
        windowLayer = nil
    }

    /// bf16: widens layer l's tensors into the window unless they are already there.
    private func materialize(_ l: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard windowLayer != l else { return }
        let lo = index["model.layers.\(l).input_layernorm.weight"]!
        var i = lo
        while i < specs.count && specs[i].layer == l {
            let src = packed[i]!, dst = values.pointer + valueOffset[i], n = specs[i].count
            Parallel.chunks(n, size: 1 << 16) { _, r in for e in r { dst[e] = F(bf16ToFloat(src[e])) } }
            i += 1
        }
        windowLayer = l
    }

    /// Pointers to layer l's weights (in bf16: widened into the window, valid until another layer is used).
    func layerWeights(_ l: Int) -> LayerView<F> {
        if weights == .bf16 { materialize(l) }
        return layerView(l, base: values.pointer, offsets: valueOffset)
    }

    /// Pointers to layer l's gradients.
    func layerGrads(_ l: Int) -> LayerView<F> { layerView(l, base: grads!.pointer, offsets: specOffsets) }

    private func layerView(_ l: Int, base: UnsafeMutablePointer<F>, offsets: [Int]) -> LayerView<F> {
        func p(_ local: String) -> UnsafeMutablePointer<F> { base + offsets[index["model.layers.\(l).\(local)"]!] }
        func o(_ local: String) -> UnsafeMutablePointer<F>? {
            index["model.layers.\(l).\(local)"].map { base + offsets[$0] }
        }
        return LayerView(
            ln1: p("input_layernorm.weight"), wq: p("self_attn.q_proj.weight"), wk: p("self_attn.k_proj.weight"),
            wv: p("self_attn.v_proj.weight"), wo: p("self_attn.o_proj.weight"),
            ln2: p("post_attention_layernorm.weight"), wg: p("mlp.gate_proj.weight"), wu: p("mlp.up_proj.weight"),
            wd: p("mlp.down_proj.weight"),
            bq: o("self_attn.q_proj.bias"), bk: o("self_attn.k_proj.bias"), bv: o("self_attn.v_proj.bias"),
            bo: o("self_attn.o_proj.bias"), bg: o("mlp.gate_proj.bias"), bu: o("mlp.up_proj.bias"),
            bd: o("mlp.down_proj.bias"))
    }
}
