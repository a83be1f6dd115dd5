// Buffers of the forward and backward passes, allocated once per stage for micro-batches of up to B windows
// of T tokens (N = B·T rows). Each decoder layer keeps its input h_l per in-flight micro-batch ("slot");
// its internals are either kept too (store: fastest backward) or shared by all layers and recomputed from
// h_l during the backward (recompute: memory of one layer instead of all).
import GradMapFormats
import GradMapRuntime
import GradMapSupport

/// Everything a decoder layer computes between its input and its output, for one micro-batch.
package final class LayerInternals<F: Real>: @unchecked Sendable {
    let ln1: Buffer<F>    // [N, H]   RMSNorm_1(h)
    let rstd1: Buffer<F>  // [N]
    let q: Buffer<F>      // [N, nh·hd]  after RoPE
    let k: Buffer<F>      // [N, nkv·hd] after RoPE
    let v: Buffer<F>      // [N, nkv·hd]
    let att: Buffer<F>    // [N, nh·hd]  attention output before o_proj
    let lse: Buffer<F>    // [B, nh, T]  row log-sum-exp of the scores
    package let u: Buffer<F>      // [N, H]   h + o_proj(att)
    let ln2: Buffer<F>    // [N, H]   RMSNorm_2(u)
    let rstd2: Buffer<F>  // [N]
    let gate: Buffer<F>   // [N, I]   gate_proj, before SiLU
    let up: Buffer<F>     // [N, I]
    let act: Buffer<F>    // [N, I]   silu(gate) ⊙ up

    init(_ c: ModelConfig, b: Int, t: Int) {
        let n = b * t
        ln1 = Buffer(count: n * c.hidden); rstd1 = Buffer(count: n)
        q = Buffer(count: n * c.qDim); k = Buffer(count: n * c.kvDim); v = Buffer(count: n * c.kvDim)
        att = Buffer(count: n * c.qDim); lse = Buffer(count: b * c.heads * t)
        u = Buffer(count: n * c.hidden); ln2 = Buffer(count: n * c.hidden); rstd2 = Buffer(count: n)
        gate = Buffer(count: n * c.intermediate); up = Buffer(count: n * c.intermediate)
        act = Buffer(count: n * c.intermediate)
    }

    static func floats(_ c: ModelConfig, b: Int, t: Int) -> Int {
        let n = b * t
        return n * (3 * c.hidden + 2 * c.qDim + 2 * c.kvDim + 3 * c.intermediate + 2) + b * c.heads * t
    }
}

/// Scratch of the backward pass, shared by all layers of a stage.
final class BackwardScratch<F: Real>: @unchecked Sendable {
    let dln: Buffer<F>    // [N, H]   gradient at a norm's output
    let dact: Buffer<F>   // [N, I]
    let dgate: Buffer<F>  // [N, I]
    let dup: Buffer<F>    // [N, I]
    let datt: Buffer<F>   // [N, nh·hd]
    let dq: Buffer<F>     // [N, nh·hd]
    let dk: Buffer<F>     // [N, nkv·hd]
    let dv: Buffer<F>     // [N, nkv·hd]

    init(_ c: ModelConfig, b: Int, t: Int) {
        let n = b * t
        dln = Buffer(count: n * c.hidden)
        dact = Buffer(count: n * c.intermediate); dgate = Buffer(count: n * c.intermediate)
        dup = Buffer(count: n * c.intermediate)
        datt = Buffer(count: n * c.qDim); dq = Buffer(count: n * c.qDim)
        dk = Buffer(count: n * c.kvDim); dv = Buffer(count: n * c.kvDim)
    }

    static func floats(_ c: ModelConfig, b: Int, t: Int) -> Int {
        b * t * (c.hidden + 3 * c.intermediate + 2 * c.qDim + 2 * c.kvDim)
    }
}

/// Final norm and logits of the last stage; logits are made one window at a time ([T, V]).
final class HeadScratch<F: Real>: @unchecked Sendable {
    let lnf: Buffer<F>     // [N, H]
    let rstdf: Buffer<F>   // [N]
    let dlnf: Buffer<F>    // [N, H]
    let logits: Buffer<F>  // [T, V]
    let rowLoss: Buffer<Double>  // [T] NLL per position

    init(_ c: ModelConfig, b: Int, t: Int) {
        rowLoss = Buffer(count: t)
        lnf = Buffer(count: b * t * c.hidden); rstdf = Buffer(count: b * t)
        dlnf = Buffer(count: b * t * c.hidden); logits = Buffer(count: t * c.vocabSize)
    }
}

public enum ActivationPolicy: String, Sendable, CaseIterable {
    /// Keep every layer's internals from the forward for the backward.
    case store
    /// Keep only each layer's input; recompute its internals in the backward.
    case recompute
}
