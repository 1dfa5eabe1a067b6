import Synchronization

/// A setting a reload may change while readers on other threads use it: the runtime
/// holds it, the part that reads it gets the same box.
final class LiveValue<Value: Sendable>: Sendable {
    private let value: Mutex<Value>

    /// A box holding `initial`.
    init(_ initial: Value) {
        value = Mutex(initial)
    }

    /// The value now.
    var current: Value {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}
