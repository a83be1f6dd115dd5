// Wall-clock seconds, as every job and pass reports them.
import Foundation

/// Seconds since `start`.
public func elapsed(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
