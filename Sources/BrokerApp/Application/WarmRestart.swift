import Logging
import ServiceLifecycle
import Synchronization
import SystemdSupport
import TokenCache

/// Keeps the token cache across restarts in systemd's file-descriptor store (docs/operations.md):
/// restores what the previous process stored before serving, stores the cache after changes
/// (at most once per `interval`, changes in between coalesced) and once more at shutdown, after
/// the listeners drained. Without a service manager (`NOTIFY_SOCKET` unset) nothing is stored.
/// Logs counts, never tokens.
final class WarmRestart: Service, Sendable {
    /// The shortest time between two stores while running (default 10 s).
    static let defaultInterval: Duration = .seconds(10)

    private let runtime: BrokerRuntime
    private let interval: Duration
    private let logger: Logger
    private let storing: Bool
    /// The cache's `changeCount` when it was last stored (or restored: nothing new yet).
    private let storedAt: Mutex<UInt64>

    init(runtime: BrokerRuntime, interval: Duration = WarmRestart.defaultInterval, logger: Logger) {
        self.runtime = runtime
        self.interval = interval
        self.logger = logger
        self.storing = FileDescriptorStore.isAvailable
        self.storedAt = Mutex(runtime.cache.changeCount)
    }

    /// The identities' fingerprints for the configuration applied now: configured ones by
    /// name, and in node mode the pods' (their names carry their own digest).
    private func fingerprints() -> @Sendable (String) -> [UInt8]? {
        let (identities, nodeMode) = runtime.appliedConfiguration.withLock { ($0.identities, $0.kubernetes != nil) }
        let table = Dictionary(identities.map { ($0.name, IdentityFingerprint.of($0)) }, uniquingKeysWith: { first, _ in first })
        return { name in
            if let digest = table[name] { return digest }
            return nodeMode && PodIdentities.isPodKey(name) ? IdentityFingerprint.ofPodKey(name) : nil
        }
    }

    /// Puts back the tokens of the memfd the store passed (closing it), or says why not.
    func restore(from descriptor: Int32?) {
        guard let descriptor else {
            // Worth saying under systemd (was the store configured?); without it, a cold start is the rule.
            logger.log(
                level: storing ? .info : .debug, "warm restart: no stored token cache; starting cold", metadata: ["restart.will_store": "\(storing)"])
            return
        }
        do {
            let bytes = try FileDescriptorStore.read(descriptor: descriptor)
            let snapshot = try CacheSnapshot(decoding: bytes)
            let fingerprint = fingerprints()
            // Pods' identities are registered when a pod first asks: their tokens wait for it.
            let summary = runtime.cache.restore(
                snapshot, fingerprint: fingerprint, deferring: { PodIdentities.isPodKey($0) && fingerprint($0) != nil })
            logger.info(
                "warm restart: restored \(summary.restored) of \(snapshot.entries.count) cached tokens",
                metadata: [
                    "restart.restored": "\(summary.restored)", "restart.expired": "\(summary.expired)",
                    "restart.identity_changed": "\(summary.identityChanged)", "restart.unknown_identity": "\(summary.unknownIdentity)",
                    "restart.kept_for_pods": "\(summary.deferred)",
                    "restart.bytes": "\(bytes.count)",
                ])
        } catch let error as SystemdSupportError {
            refuse(code: error.code.rawValue, error.message)
        } catch let error as CacheSnapshotError {
            refuse(code: error.code.rawValue, error.message)
        } catch {
            refuse(code: "internal", "\(error)")
        }
    }

    /// A stored cache that cannot be trusted is dropped from the store too, so no later start meets it.
    private func refuse(code: String, _ message: String) {
        logger.warning("warm restart: refused the stored token cache (\(code): \(message)); starting cold", metadata: ["restart.refused": "\(code)"])
        FileDescriptorStore.remove(name: FileDescriptorStore.tokenCacheName)
    }

    func run() async throws {
        guard storing else {
            try? await gracefulShutdown()
            return
        }
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: self.interval)
                self.store(always: false)
            }
        }
        // Services stop in reverse order: the listeners have drained by now.
        store(always: true)
    }

    /// Stores the cache when it changed since the last store (or `always`).
    private func store(always: Bool) {
        let changes = runtime.cache.changeCount
        guard always || storedAt.withLock({ $0 }) != changes else { return }
        let snapshot = runtime.cache.snapshot(fingerprint: fingerprints())
        do {
            let bytes = snapshot.encoded()
            try FileDescriptorStore.store(bytes, name: FileDescriptorStore.tokenCacheName)
            storedAt.withLock { $0 = changes }
            logger.log(
                level: always ? .info : .debug, "warm restart: stored \(snapshot.entries.count) cached tokens",
                metadata: [
                    "restart.tokens": "\(snapshot.entries.count)", "restart.bytes": "\(bytes.count)",
                ])
        } catch {
            logger.warning("warm restart: could not store the token cache (\(error)); the next start is cold")
        }
    }
}
