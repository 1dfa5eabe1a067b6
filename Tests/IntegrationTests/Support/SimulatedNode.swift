import Foundation

/// A Kubernetes node as the broker sees it: a kubelet pods directory in a temp dir, written
/// exactly as the kubelet writes it (projected volumes by the AtomicWriter sequence: files in
/// a timestamped directory, `..data` swapped by rename, visible names linking into it), and
/// pods as real cgroups named as each kubelet cgroup driver names them, for real processes
/// to join. `remove()` deletes every cgroup it made.
final class SimulatedNode: @unchecked Sendable {
    enum Driver { case systemd, cgroupfs }

    struct Pod {
        var uid: String
        /// The cgroup directory (under the cgroup mount) its processes join.
        var cgroup: String
        var directory: String
    }

    let podsDirectory: String
    let sandbox: CgroupSandbox
    private var writes = 0
    private var mounts: [String] = []

    init(directory: String) throws {
        podsDirectory = "\(directory)/pods"
        try FileManager.default.createDirectory(atPath: podsDirectory, withIntermediateDirectories: true)
        sandbox = try CgroupSandbox()
    }

    /// A new pod: its directory and a container cgroup.
    func addPod(uid: String = UUID().uuidString.lowercased(), driver: Driver = .systemd) throws -> Pod {
        let directory = "\(podsDirectory)/\(uid)"
        try FileManager.default.createDirectory(atPath: "\(directory)/volumes", withIntermediateDirectories: true)
        let container = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let cgroup: String
        switch driver {
        case .systemd:
            let underscored = uid.replacingOccurrences(of: "-", with: "_")
            cgroup = try sandbox.directory("kubepods-burstable-pod\(underscored).slice/cri-containerd-\(container).scope")
        case .cgroupfs:
            cgroup = try sandbox.directory("kubepods/burstable/pod\(uid)/\(container)")
        }
        return Pod(uid: uid, cgroup: cgroup, directory: directory)
    }

    /// Writes `files` into projected volume `volume` of `pod` with the AtomicWriter sequence.
    func project(_ files: [String: String], into pod: Pod, volume: String) throws {
        try atomicWrite(files, to: "\(pod.directory)/volumes/kubernetes.io~projected/\(volume)")
    }

    /// The kubelet's order for a projected volume: the directory, then a tmpfs mounted on
    /// it, then the AtomicWriter's files inside. The mount is undone by `remove()`.
    func projectOnTmpfs(_ files: [String: String], into pod: Pod, volume: String) throws {
        let directory = "\(pod.directory)/volumes/kubernetes.io~projected/\(volume)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        usleep(50_000)  // let a watcher see the empty directory first, as it would on a node
        let result = try runCommandBlocking("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", directory])
        guard result.status == 0 else { throw HarnessError("mount tmpfs on \(directory): \(result.stderr)") }
        mounts.append(directory)
        try atomicWrite(files, to: directory)
    }

    /// Plain files in one of the pod's own writable volumes (an emptyDir): never to be trusted.
    func writeEmptyDir(_ files: [String: String], into pod: Pod, volume: String) throws {
        let directory = "\(pod.directory)/volumes/kubernetes.io~empty-dir/\(volume)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: "\(directory)/\(name)", atomically: false, encoding: .utf8) }
    }

    /// The kubelet removing a deleted pod's directory.
    func deletePod(_ pod: Pod) throws {
        try FileManager.default.removeItem(atPath: pod.directory)
    }

    func remove() {
        for mount in mounts.reversed() { _ = try? runCommandBlocking("/bin/umount", ["-l", mount]) }
        mounts.removeAll()
        sandbox.remove()
    }

    /// kubelet's AtomicWriter: a new timestamped directory, `..data_tmp` → it, renamed over
    /// `..data`, visible names created once as links into `..data`, the old directory removed.
    private func atomicWrite(_ files: [String: String], to directory: String) throws {
        let manager = FileManager.default
        try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        writes += 1
        let stamp = "..2026_12_06_10_00_00.\(String(format: "%09d", writes))"
        let previous = try? manager.destinationOfSymbolicLink(atPath: "\(directory)/..data")
        try manager.createDirectory(atPath: "\(directory)/\(stamp)", withIntermediateDirectories: false)
        for (name, text) in files { try text.write(toFile: "\(directory)/\(stamp)/\(name)", atomically: false, encoding: .utf8) }
        try? manager.removeItem(atPath: "\(directory)/..data_tmp")
        guard symlink(stamp, "\(directory)/..data_tmp") == 0, rename("\(directory)/..data_tmp", "\(directory)/..data") == 0 else {
            throw HarnessError("cannot swap ..data in \(directory): \(String(cString: strerror(errno)))")
        }
        for name in files.keys where (try? manager.destinationOfSymbolicLink(atPath: "\(directory)/\(name)")) == nil {
            guard symlink("..data/\(name)", "\(directory)/\(name)") == 0 else { throw HarnessError("cannot link \(name)") }
        }
        if let previous, previous != stamp { try? manager.removeItem(atPath: "\(directory)/\(previous)") }
    }
}
