import Testing

@testable import BrokerServer

/// Cgroup paths as real hosts write them in /proc/PID/cgroup, and what the broker
/// derives from them for `cgroup`, `systemdUnit` and `podUID` rules.
@Suite("Cgroup paths")
struct CgroupPathTests {
    @Test(
        "the unified hierarchy is used, else systemd's v1 hierarchy on hybrid hosts",
        arguments: [
            ("0::/system.slice/nginx.service\n", "/system.slice/nginx.service"),
            // Hybrid (systemd 24x on cgroup v1 + unified): 0:: is often just '/'.
            ("12:memory:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n0::/\n", "/system.slice/cron.service"),
            (
                "12:memory:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n0::/system.slice/cron.service\n",
                "/system.slice/cron.service"
            ),
            // This sandbox: every hierarchy '/', but a memory cgroup: '/' (the unified line).
            ("9:name=systemd:/\n4:memory:/process_api/5763b7660a18\n0::/\n", "/"),
            // Pure v1 without systemd (cgroupfs kubelet): the first line.
            (
                "11:memory:/kubepods/burstable/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789ab/4f1e\n3:cpu,cpuacct:/kubepods/burstable/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789ab/4f1e\n",
                "/kubepods/burstable/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789ab/4f1e"
            ),
            // A path with a colon stays whole.
            ("0::/system.slice/odd:name.service\n", "/system.slice/odd:name.service"),
        ])
    func selectsTheHierarchy(text: String, expected: String) {
        #expect(CgroupPath.select(fromProcFile: text) == expected)
    }

    @Test("garbage yields no path")
    func garbage() {
        #expect(CgroupPath.select(fromProcFile: "") == nil)
        #expect(CgroupPath.select(fromProcFile: "nonsense\n0:relative\n") == nil)
    }

    @Test(
        "systemd units are derived as systemd does: slices skipped, then a unit",
        arguments: [
            ("/system.slice/nginx.service", "nginx.service", nil),
            ("/system.slice/docker-0123abcd.scope", "docker-0123abcd.scope", nil),
            ("/system.slice/app.service/worker", "app.service", nil),
            ("/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service", nil),
            ("/user.slice/user-1000.slice/session-3.scope", "session-3.scope", nil),
            ("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", "user@1000.service", "foo.service"),
            ("/user.slice/user-1000.slice/user@1000.service/init.scope", "user@1000.service", "init.scope"),
            ("/user.slice/user-1000.slice/user@1000.service", "user@1000.service", nil),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice/cri-containerd-4f1e.scope",
                "cri-containerd-4f1e.scope", nil
            ),
            ("/init.scope", "init.scope", nil),
        ] as [(String, String?, String?)])
    func systemdUnits(path: String, unit: String?, userUnit: String?) {
        let derived = CgroupPath.systemdUnits(in: path)
        #expect(derived.unit == unit)
        #expect(derived.userUnit == userUnit)
    }

    @Test(
        "no unit unless only slices precede it",
        arguments: [
            "/", "/system.slice", "/tbit-x/system.slice/foo.service", "/docker/0123abcd",
            "/kubepods/burstable/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789ab/4f1e",
            "/system.slice/.service", "/system.slice/foo.slice.d",
        ])
    func noUnit(path: String) {
        #expect(CgroupPath.systemdUnits(in: path).unit == nil)
    }

    @Test("a user's manager cannot pose as a system unit")
    func userUnitsAreQualified() {
        let peer = PeerCredentials(pid: 1, uid: 1000, gid: 1000, cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/nginx.service")
        #expect(peer.systemdUnit == "user@1000.service")
        #expect(peer.systemdUserUnit == "nginx.service")
    }

    @Test(
        "pod UIDs from both kubelet cgroup drivers, dashes or underscores, normalised",
        arguments: [
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice/cri-containerd-4f1e.scope",
                "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"
            ),
            ("/kubepods.slice/kubepods-pod9F0C9C36_6A7E_4B1F_9D2E_0123456789AB.slice/crio-4f1e.scope", "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"),
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice",
                "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"
            ),
            ("/kubepods/burstable/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789ab/4f1e0123", "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"),
            ("/kubepods/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789ab/4f1e0123", "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"),
            // kind: the kubelet's cgroup root is itself a slice.
            (
                "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice/cri-containerd-1.scope",
                "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"
            ),
            // Seen from inside another cgroup namespace.
            (
                "/../../kubepods-burstable-pod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice/cri-containerd-4f1e.scope",
                "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"
            ),
            // A static (mirror) pod: 32 hex digits.
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0123456789abcdef0123456789abcdef.slice/cri-containerd-1.scope",
                "0123456789abcdef0123456789abcdef"
            ),
        ])
    func podUIDs(path: String, uid: String) {
        #expect(CgroupPath.podUID(in: path) == uid)
    }

    @Test(
        "no pod UID outside the kubelet's tree or below a unit or container",
        arguments: [
            "/system.slice/nginx.service",
            // A user's manager may create cgroups with any name below itself.
            "/user.slice/user-1000.slice/user@1000.service/app.slice/kubepods-pod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice",
            // A delegated service likewise.
            "/system.slice/containerd.service/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789ab",
            // Not a UID: wrong length, mixed separators, not hex, not after '-'.
            "/kubepods/burstable/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789a",
            "/kubepods/burstable/pod9f0c9c36-6a7e_4b1f-9d2e-0123456789ab",
            "/kubepods/burstable/pod9f0c9c36-6a7e-4b1f-9d2e-0123456789zz",
            "/kubepods.slice/kubepods-ipod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice",
        ])
    func noPodUID(path: String) {
        #expect(CgroupPath.podUID(in: path) == nil)
    }

    @Test("a container's own sub-cgroup cannot replace its pod UID")
    func outermostPodWins() {
        let path =
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod11111111_2222_3333_4444_555555555555.slice/cri-containerd-1.scope/kubepods-pod9f0c9c36_6a7e_4b1f_9d2e_0123456789ab.slice"
        #expect(CgroupPath.podUID(in: path) == "11111111-2222-3333-4444-555555555555")
    }

    @Test("pod UIDs in rules normalise like attested ones")
    func normalisedPodUIDs() {
        #expect(PeerCredentials.normalisedPodUID("9F0C9C36_6A7E_4B1F_9D2E_0123456789AB") == "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab")
        #expect(PeerCredentials.normalisedPodUID("9f0c9c36-6a7e-4b1f-9d2e-0123456789ab") == "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab")
        #expect(PeerCredentials.normalisedPodUID("pod9f0c9c36-6a7e-4b1f-9d2e-0123456789ab") == nil)
        #expect(PeerCredentials.normalisedPodUID("") == nil)
    }
}
