import Synchronization

/// An open connection as `ConnectionRegistry` sees it, whatever serves it; both calls may
/// come from any thread.
protocol TrackedConnection: AnyObject, Sendable {
    /// The server is shutting down: answer what is in flight (and what arrives in a
    /// moment), then close.
    func drain()
    /// Close now.
    func forceClose()
}

/// Every connection from the moment it is accepted (before it is set up) until it
/// closes, so that shutdown waits for all of them: a process that exits with an accepted
/// but unanswered connection makes the kernel reset it.
final class ConnectionRegistry: Sendable {
    private let state = Mutex<(open: [ObjectIdentifier: any TrackedConnection], settingUp: Set<ObjectIdentifier>, draining: Bool)>(([:], [], false))
    /// Open connections per peer uid.
    private let perUID = Mutex(ConnectionQuota<UInt32>())
    /// Open connections per pod UID (callers in a Kubernetes pod).
    private let perPod = Mutex(ConnectionQuota<String>())

    /// Counts `uid`'s connection until `release(uid:)`; false (and nothing counted) when the
    /// uid already has `limit` connections.
    func claim(uid: UInt32, limit: Int) -> Bool { perUID.withLock { $0.claim(uid, limit: limit) } }

    func release(uid: UInt32) { perUID.withLock { $0.release(uid) } }

    /// Open connections of `uid`.
    func count(uid: UInt32) -> Int { perUID.withLock { $0.count(uid) } }

    /// Counts pod `uid`'s connection until `release(pod:)`; false (and nothing counted) when
    /// the pod already has `limit` connections.
    func claim(pod uid: String, limit: Int) -> Bool { perPod.withLock { $0.claim(uid, limit: limit) } }

    func release(pod uid: String) { perPod.withLock { $0.release(uid) } }

    /// A connection was accepted; it counts as setting up until `settled`. `id` names it
    /// in the calls below. False (and nothing tracked) when `limit` connections are open:
    /// the check and the count are one step, so loops accepting at once cannot overshoot.
    @discardableResult
    func track(_ connection: any TrackedConnection, id: ObjectIdentifier, limit: Int = .max) -> Bool {
        state.withLock {
            guard $0.open.count < limit else { return false }
            $0.open[id] = connection
            $0.settingUp.insert(id)
            return true
        }
    }

    /// The connection is set up and served.
    func settled(id: ObjectIdentifier) {
        _ = state.withLock { $0.settingUp.remove(id) }
    }

    /// The connection closed.
    func untrack(id: ObjectIdentifier) {
        state.withLock {
            $0.open.removeValue(forKey: id)
            $0.settingUp.remove(id)
        }
    }

    /// Connections accepted but not yet set up.
    var initializing: Int { state.withLock { $0.settingUp.count } }

    var count: Int { state.withLock { $0.open.count } }
    var isDraining: Bool { state.withLock { $0.draining } }

    func drainAll() {
        let connections = state.withLock { state in
            state.draining = true
            return Array(state.open.values)
        }
        for connection in connections { connection.drain() }
    }

    func closeAll() {
        for connection in state.withLock({ Array($0.open.values) }) { connection.forceClose() }
    }
}

/// Open connections counted per key (a peer uid, a pod UID), each up to a limit.
struct ConnectionQuota<Key: Hashable> {
    private var counts: [Key: Int] = [:]

    /// Counts one more for `key`; false (and nothing counted) when it has `limit` already.
    mutating func claim(_ key: Key, limit: Int) -> Bool {
        guard counts[key, default: 0] < limit else { return false }
        counts[key, default: 0] += 1
        return true
    }

    mutating func release(_ key: Key) {
        let left = counts[key, default: 1] - 1
        counts[key] = left > 0 ? left : nil
    }

    func count(_ key: Key) -> Int { counts[key, default: 0] }
}
