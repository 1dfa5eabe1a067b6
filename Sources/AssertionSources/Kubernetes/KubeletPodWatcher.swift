import DetachedThread
public import FoundationEssentials
import Glibc
public import Logging
public import ServiceLifecycle
import Synchronization
import TokenExchange

/// Keeps a `PodTokenRegistry` current from the kubelet's pods directory
/// (`/var/lib/kubelet/pods/POD_UID/volumes/kubernetes.io~projected/VOLUME/…`).
///
/// Only `kubernetes.io~projected` volumes are read: the kubelet writes them and pods see
/// them read-only. `empty-dir`, `configmap`, `secret`, `csi` and host paths are never
/// looked at, so a pod that writes a forged token into its own writable volume gets nothing.
///
/// On a thread of its own, blocked in `poll(2)` on inotify (the pods directory, each pod's
/// directory down to each projected volume), on `/proc/self/mountinfo` (the kubelet mounts
/// each projected volume as a tmpfs after creating its directory: a watch added before the
/// mount sees nothing written into it, so every mount change rescans and re-watches) and on
/// a slow resync timer as a safety net. An event rescans only the pod it concerns. Nothing
/// polls per pod.
public final class KubeletPodWatcher: Service, Sendable {
    let podsDirectory: String
    let audience: String
    let verifier: any ServiceAccountTokenVerifier
    let registry: PodTokenRegistry
    let resync: Duration
    let now: @Sendable () -> Date
    let logger: Logger

    /// A watcher of `podsDirectory` for tokens with `audience` that `verifier` finds signed by
    /// the cluster; nothing runs until `run()`.
    public init(
        podsDirectory: String, audience: String, verifier: any ServiceAccountTokenVerifier, registry: PodTokenRegistry,
        resync: Duration = .seconds(60), now: @escaping @Sendable () -> Date = Date.init, logger: Logger
    ) {
        self.podsDirectory = podsDirectory
        self.audience = audience
        self.verifier = verifier
        self.registry = registry
        self.resync = resync
        self.now = now
        self.logger = logger
    }

    /// Watches until graceful shutdown or cancellation.
    public func run() async throws {
        guard let stop = StopSignal() else { throw CancellationError() }
        let finished = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let done = Atomic<Bool>(false)
        DetachedThread.start { [self] in
            PodDirectoryScan(watcher: self, stop: stop).run()
            done.store(true, ordering: .releasing)
            finished.withLock { $0.take() }?.resume()
        }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { continuation in
                    let over = finished.withLock { waiter -> Bool in
                        if done.load(ordering: .acquiring) { return true }
                        waiter = continuation
                        return false
                    }
                    if over { continuation.resume() }
                }
            } onGracefulShutdown: {
                stop.fire()
            }
        } onCancel: {
            stop.fire()
        }
    }
}

/// The watcher thread's state: inotify watches and which pod each belongs to.
private final class PodDirectoryScan {
    let watcher: KubeletPodWatcher
    let stop: StopSignal
    var inotify: CInt = -1
    var mountinfo: CInt = -1
    /// What each watch descriptor watches: nil for the pods directory, else a pod UID.
    var watches: [CInt: String?] = [:]
    var warnedMissing = false
    /// Mount points below the pods directory at the last look at the mount table.
    var mountPoints = Set<String>()

    static let mask = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF)

    init(watcher: KubeletPodWatcher, stop: StopSignal) {
        self.watcher = watcher
        self.stop = stop
    }

    deinit {
        if inotify >= 0 { close(inotify) }
        if mountinfo >= 0 { close(mountinfo) }
    }

    func run() {
        inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        mountinfo = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)
        _ = mountedPodsChanged(readMountinfo())
        scanAll()
        let timeout = Int32(clamping: watcher.resync.components.seconds * 1000)
        while true {
            var fds = [
                pollfd(fd: stop.readFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: inotify, events: Int16(POLLIN), revents: 0),
                pollfd(fd: mountinfo, events: Int16(POLLPRI), revents: 0),
            ]
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0, errno == EINTR { continue }
            if fds[0].revents != 0 { return }
            if ready <= 0 {
                scanAll()  // the safety net: nothing happened for a while
                continue
            }
            var dirty = Set<String>()
            var all = false
            // Coalesce a burst (the AtomicWriter's create, symlink, rename, remove).
            repeat {
                if fds[1].revents != 0 { all = drainEvents(into: &dirty) || all }
                if fds[2].revents != 0 {
                    // Only the pods whose mounts came or went (a tmpfs per projected volume).
                    if let pods = mountedPodsChanged(readMountinfo()) { dirty.formUnion(pods) } else { all = true }
                }
                fds[1].revents = 0
                fds[2].revents = 0
            } while poll(&fds, nfds_t(fds.count), 5) > 0 && fds[0].revents == 0
            if all { scanAll() } else { for uid in dirty { scan(pod: uid) } }
        }
    }

    /// Reads queued events; true when everything must be rescanned (lost events).
    private func drainEvents(into dirty: inout Set<String>) -> Bool {
        var rescanAll = false
        var touched = Set<String>()
        InotifyEvents.drain(inotify) { event, name in
            if event.mask & UInt32(IN_Q_OVERFLOW) != 0 { return rescanAll = true }
            guard let owner = watches[event.wd] else { return }
            if event.mask & UInt32(IN_IGNORED) != 0 { watches[event.wd] = nil }
            switch owner {
            case nil:  // the pods directory: a pod came or went
                if let uid = Self.podUID(name) { touched.insert(uid) }
                if event.mask & UInt32(IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED) != 0 { rescanAll = true }
            case let uid?:
                touched.insert(uid)
            }
        }
        dirty.formUnion(touched)
        return rescanAll
    }

    /// The mount table, read to the end (which re-arms `POLLPRI`); nil if unreadable.
    private func readMountinfo() -> String? {
        guard mountinfo >= 0 else { return nil }
        lseek(mountinfo, 0, SEEK_SET)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(mountinfo, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The pods whose mount points (below the pods directory) differ from the last look;
    /// nil when the table could not be read (then every pod is rescanned). A mount change
    /// elsewhere on the node costs a parse, not a rescan of 250 pods.
    private func mountedPodsChanged(_ table: String?) -> Set<String>? {
        guard let table else { return nil }
        let prefix = watcher.podsDirectory.hasSuffix("/") ? watcher.podsDirectory : watcher.podsDirectory + "/"
        var current = Set<String>()
        for line in table.split(separator: "\n") {
            // id parent major:minor root MOUNT-POINT options …; spaces in paths are \040.
            let fields = line.split(separator: " ", maxSplits: 5)
            if fields.count > 4, fields[4].hasPrefix(prefix) { current.insert(String(fields[4])) }
        }
        let changed = current.symmetricDifference(mountPoints)
        mountPoints = current
        return Set(changed.compactMap { point in point.dropFirst(prefix.count).split(separator: "/").first.flatMap { Self.podUID(String($0)) } })
    }

    func scanAll() {
        let root = open(watcher.podsDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else {
            if !warnedMissing {
                watcher.logger.warning(
                    "cannot read the pods directory; no pod tokens until it appears",
                    metadata: ["kubernetes.pods_directory": "\(watcher.podsDirectory)", "error.message": "\(String(cString: strerror(errno)))"])
                warnedMissing = true
            }
            for uid in watcher.registry.podUIDs { watcher.registry.remove(pod: uid) }
            return
        }
        defer { close(root) }
        warnedMissing = false
        addWatch(root, owner: nil)
        let present = Set(ProjectedVolume.entries(of: root).compactMap(Self.podUID))
        for uid in watcher.registry.podUIDs where !present.contains(uid) { watcher.registry.remove(pod: uid) }
        for uid in present { scan(pod: uid, root: root) }
    }

    func scan(pod uid: String) {
        let root = open(watcher.podsDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard root >= 0 else { return scanAll() }
        defer { close(root) }
        scan(pod: uid, root: root)
    }

    /// Re-reads pod `uid`'s projected volumes and re-adds its watches (a watch added before
    /// the volume's tmpfs was mounted watches the directory underneath it).
    private func scan(pod uid: String, root: CInt) {
        let pod = openat(root, uid, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard pod >= 0 else {
            if watcher.registry.tokens(ofPod: uid) != nil {
                watcher.registry.remove(pod: uid)
                watcher.logger.info("pod gone", metadata: ["kubernetes.pod_uid": "\(uid)"])
            }
            return
        }
        defer { close(pod) }
        addWatch(pod, owner: uid)
        var tokens: [PodToken] = []
        let loadedAt = watcher.now()
        // Tokens accepted before are not verified again at every rescan.
        let before = watcher.registry.tokens(ofPod: uid)
        let known = Set(before?.map(\.assertion.jwt) ?? [])
        if let volumes = openDirectory(pod, "volumes", owner: uid) {
            defer { close(volumes) }
            if let projected = openDirectory(volumes, "kubernetes.io~projected", owner: uid) {
                defer { close(projected) }
                for name in ProjectedVolume.entries(of: projected) {
                    guard let volume = openDirectory(projected, name, owner: uid) else { continue }
                    defer { close(volume) }
                    for file in ProjectedVolume.files(in: volume) ?? [] {
                        if let token = PodToken(
                            text: file.text, podUID: uid, volume: name, file: file.name, audience: watcher.audience, loadedAt: loadedAt,
                            verifier: watcher.verifier, known: known)
                        {
                            tokens.append(token)
                        }
                    }
                }
            }
        }
        watcher.registry.update(pod: uid, tokens: tokens)
        if before?.map(\.assertion.jwt) != tokens.map(\.assertion.jwt) {
            watcher.logger.debug(
                "pod tokens",
                metadata: [
                    "kubernetes.pod_uid": "\(uid)", "kubernetes.tokens": "\(tokens.map { "\($0.location) \($0.account)" }.joined(separator: ", "))",
                ])
        }
    }

    private func openDirectory(_ parent: CInt, _ name: String, owner: String) -> CInt? {
        let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        addWatch(fd, owner: owner)
        return fd
    }

    /// Watches the directory open at `fd` (the very inode, through its /proc/self/fd name).
    private func addWatch(_ fd: CInt, owner: String?) {
        guard inotify >= 0 else { return }
        let wd = inotify_add_watch(inotify, "/proc/self/fd/\(fd)", Self.mask)
        if wd >= 0 { watches[wd] = .some(owner) }
    }

    /// A pod directory's name as the kubelet writes it: a UID, 8-4-4-4-12 lowercase hex.
    static func podUID(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        guard bytes.count == 36 else { return nil }
        for (index, byte) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard byte == UInt8(ascii: "-") else { return nil }
            } else {
                guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte) else {
                    return nil
                }
            }
        }
        return name
    }
}
