/// What a process's cgroup says about it: which line of `/proc/PID/cgroup` to use,
/// the systemd unit, and the Kubernetes pod UID. Pure string work, no I/O.
enum CgroupPath {
    /// The path to attest from the text of `/proc/PID/cgroup`.
    ///
    /// Lines are `ID:CONTROLLERS:PATH`. The unified hierarchy (`0::PATH`) is the one
    /// systemd and the kubelet manage on cgroup v2 hosts; on hybrid hosts it is often
    /// just `/`, and systemd's own v1 hierarchy (`N:name=systemd:PATH`) carries the
    /// same tree. Other v1 controllers are used only when neither line exists.
    static func select(fromProcFile text: String) -> String? {
        var unified: String?
        var systemd: String?
        var first: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3, fields[2].hasPrefix("/") else { continue }
            let path = String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                unified = path
            } else if fields[1] == "name=systemd" {
                systemd = path
            }
            if first == nil { first = path }
        }
        if let unified, unified != "/" { return unified }
        if let systemd, systemd != "/" { return systemd }
        return unified ?? systemd ?? first
    }

    /// The systemd unit a cgroup path belongs to, as systemd derives it: slices are
    /// skipped, and the first other component must be a unit name. Under a user manager
    /// (`user@UID.service`) the same rule applied to the rest gives the user unit.
    ///
    /// Only slices may come before the unit: a directory anyone could create below a
    /// unit (delegated subtrees) can never make a path look like another unit.
    static func systemdUnits(in path: String) -> (unit: String?, userUnit: String?) {
        var components = path.split(separator: "/")[...]
        guard let unit = firstUnit(&components) else { return (nil, nil) }
        guard unit.hasPrefix("user@"), unit.hasSuffix(".service") else { return (unit, nil) }
        return (unit, firstUnit(&components))
    }

    /// Kinds of units that hold processes.
    static let unitSuffixes = [".service", ".scope", ".socket", ".mount", ".swap"]

    /// Whether `name` looks like a unit that can hold processes (`foo.service`).
    static func isUnitName(_ name: Substring) -> Bool {
        !name.hasPrefix(".") && !name.contains("/") && unitSuffixes.contains { name.hasSuffix($0) && name.count > $0.count }
    }

    /// Skips leading slices and returns the next component if it is a unit name.
    private static func firstUnit(_ components: inout ArraySlice<Substring>) -> String? {
        while let next = components.first, next.hasSuffix(".slice") { components.removeFirst() }
        guard let candidate = components.first, isUnitName(candidate) else { return nil }
        components.removeFirst()
        return String(candidate)
    }

    /// The pod UID of a path in the kubelet's tree, normalised to lowercase with dashes.
    /// Both kubelet cgroup drivers are understood: systemd
    /// (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_…_….slice/…`)
    /// and cgroupfs (`/kubepods/burstable/pod1234abcd-…-…/…`).
    ///
    /// The pod component must be reached through slices and the cgroupfs layout's fixed
    /// names only (`..` too, as a cgroup namespace shows paths outside it). Below a unit
    /// or a container, anyone allowed to create cgroups (a delegated service, a user's
    /// manager, a container with cgroup write access) could name a directory
    /// `pod<other-uid>`; such a component is never reached.
    static func podUID(in path: String) -> String? {
        for component in path.split(separator: "/") {
            let isSlice = component.hasSuffix(".slice")
            if let uid = podUID(inComponent: isSlice ? component.dropLast(".slice".count) : component) { return uid }
            guard isSlice || kubeletTreeNames.contains(component) else { return nil }
        }
        return nil
    }

    /// Components of the kubelet's cgroupfs tree that can precede a pod's.
    private static let kubeletTreeNames: Set<Substring> = ["kubepods", "burstable", "besteffort", "kubelet", ".."]

    /// `pod<uid>` at the start of `name` or after a `-` (`kubepods-besteffort-pod…`).
    private static func podUID(inComponent name: Substring) -> String? {
        var searchStart = name.startIndex
        while let range = name[searchStart...].firstRange(of: "pod") {
            if range.lowerBound == name.startIndex || name[name.index(before: range.lowerBound)] == "-",
                let uid = normalisedUID(name[range.upperBound...])
            {
                return uid
            }
            searchStart = range.upperBound
        }
        return nil
    }

    /// `8-4-4-4-12` hex digits separated by `-` or `_` (one kind throughout), or the 32
    /// hex digits of a static pod's hash; lowercase with dashes.
    static func normalisedUID(_ text: Substring) -> String? {
        let bytes = Array(text.utf8)
        func isHex(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
                || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
        }
        if bytes.count == 32, bytes.allSatisfy(isHex) { return text.lowercased() }
        guard bytes.count == 36 else { return nil }
        let separator = bytes[8]
        guard separator == UInt8(ascii: "-") || separator == UInt8(ascii: "_") else { return nil }
        for (index, byte) in bytes.enumerated() {
            if [8, 13, 18, 23].contains(index) {
                guard byte == separator else { return nil }
            } else if !isHex(byte) {
                return nil
            }
        }
        return String(decoding: bytes.map { $0 == separator ? UInt8(ascii: "-") : $0 }, as: UTF8.self).lowercased()
    }
}
