import Foundation
import Glibc
import Logging
import Testing
import TokenExchange

@testable import AssertionSources

/// A service-account token as the API server makes one for a pod.
func makePodJWT(
    podUID: String, namespace: String = "team-a", account: String = "api", audience: String = "api://AzureADTokenExchange",
    subject: String? = nil, expiresAt: Date = Date().addingTimeInterval(3600)
) -> String {
    let claims: [String: Any] = [
        "iss": "https://oidc.example.test", "sub": subject ?? "system:serviceaccount:\(namespace):\(account)", "aud": [audience],
        "exp": Int(expiresAt.timeIntervalSince1970), "iat": Int(Date().timeIntervalSince1970),
        "kubernetes.io": ["namespace": namespace, "pod": ["name": "p", "uid": podUID], "serviceaccount": ["name": account, "uid": "u"]],
    ]
    let header = Base64URL.encode(Data(#"{"alg":"RS256","typ":"JWT"}"#.utf8))
    let payload = Base64URL.encode(try! JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
    return "\(header).\(payload).c2lnbmF0dXJl"
}

@Suite("Projected volumes: only the AtomicWriter's layout is read")
struct ProjectedVolumeTests {
    private func files(_ directory: String) -> [AssertionSources.ProjectedVolume.File]? {
        let fd = open(directory, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        return AssertionSources.ProjectedVolume.files(in: fd)
    }

    @Test("the kubelet's layout is read: visible names through ..data")
    func atomicWriterLayout() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try ProjectedVolume(directory: directory.path).publish(["token": "a", "namespace": "n"])
        #expect(files(directory.path) == [.init(name: "namespace", text: "n"), .init(name: "token", text: "a")])
    }

    @Test("a name that links anywhere but ..data/NAME, a ..data that leaves the volume, a FIFO and an oversized file are not read")
    func everythingElseIsRefused() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        try "secret".write(toFile: directory.file("outside"), atomically: false, encoding: .utf8)
        let volume = directory.file("volume")
        try ProjectedVolume(directory: volume).publish(["token": "ok"])
        symlink("../outside", "\(volume)/escape")  // a visible name pointing out
        symlink("..data/../../outside", "\(volume)/sneaky")  // through ..data, then out
        let stamp = "\(volume)/" + (try FileManager.default.destinationOfSymbolicLink(atPath: "\(volume)/..data"))
        mkfifo("\(stamp)/fifo", 0o644)
        symlink("..data/fifo", "\(volume)/fifo")
        try String(repeating: "x", count: 70_000).write(toFile: "\(stamp)/big", atomically: false, encoding: .utf8)
        symlink("..data/big", "\(volume)/big")
        symlink("/etc", "\(stamp)/dir")  // a directory link inside the timestamped dir
        symlink("..data/dir", "\(volume)/dir")
        #expect(files(volume) == [.init(name: "token", text: "ok")])

        let other = directory.file("other")
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        // ..data out of the volume
        symlink("../volume/" + (try FileManager.default.destinationOfSymbolicLink(atPath: "\(volume)/..data")), "\(other)/..data")
        symlink("..data/token", "\(other)/token")
        #expect(files(other) == nil)
        let plain = directory.file("plain")
        try FileManager.default.createDirectory(atPath: plain, withIntermediateDirectories: true)
        try "x".write(toFile: "\(plain)/token", atomically: false, encoding: .utf8)
        #expect(files(plain) == nil, "a directory the AtomicWriter did not write is not a projected volume")
    }
}

@Suite("Pod tokens")
struct PodTokenTests {
    static let pod = "9f0c9c36-6a7e-4b1f-9d2e-0123456789ab"
    static let other = "11111111-2222-3333-4444-555555555555"

    /// Signatures as the test says (checking them is `ServiceAccountKeys`' business);
    /// counts the tokens it is asked about.
    final class Signatures: ServiceAccountTokenVerifier, @unchecked Sendable {
        let valid: Bool
        var asked = 0
        init(valid: Bool) { self.valid = valid }
        func isSignedByCluster(_ assertion: Assertion) -> Bool {
            asked += 1
            return valid
        }
    }

    private func token(_ text: String, pod: String = Self.pod, signatures: Signatures = Signatures(valid: true), known: Set<String> = []) -> PodToken?
    {
        PodToken(
            text: text, podUID: pod, volume: "v", file: "token", audience: "api://AzureADTokenExchange", loadedAt: Date(), verifier: signatures,
            known: known)
    }

    @Test("a token counts only signed by the cluster; one accepted before is not checked again")
    func signature() {
        let jwt = makePodJWT(podUID: Self.pod)
        let forged = Signatures(valid: false)
        #expect(token(jwt, signatures: forged) == nil, "claims alone are a pod's word")
        #expect(forged.asked == 1)
        let signed = Signatures(valid: true)
        #expect(token(jwt, signatures: signed) != nil)
        #expect(token(jwt, signatures: signed, known: [jwt]) != nil)
        #expect(signed.asked == 1, "a known token is not verified at every rescan")
        #expect(token(makePodJWT(podUID: Self.other), signatures: signed) == nil && signed.asked == 1, "claims are checked first")
    }

    @Test("a token counts for the pod it is bound to, with the audience, when its subject names its account")
    func validation() {
        let good = token(makePodJWT(podUID: Self.pod) + "\n")
        #expect(good?.account == ServiceAccount(namespace: "team-a", name: "api"))
        #expect(good?.subject.subject == "system:serviceaccount:team-a:api")
        #expect(token(makePodJWT(podUID: Self.other)) == nil, "bound to another pod")
        #expect(token(makePodJWT(podUID: Self.pod, audience: "https://kubernetes.default.svc")) == nil, "the API server's audience")
        #expect(token(makePodJWT(podUID: Self.pod, subject: "system:serviceaccount:team-b:web")) == nil, "a subject that is not its account")
        #expect(token("not a jwt") == nil)
        #expect(token(makeJWT(subject: "system:serviceaccount:team-a:api")) == nil, "no kubernetes.io claim")
    }

    @Test("the registry gives the assertion that expires last among a subject's pods, and forgets a pod entirely")
    func registry() throws {
        let registry = PodTokenRegistry()
        let soon = try #require(token(makePodJWT(podUID: Self.pod, expiresAt: Date().addingTimeInterval(600))))
        let later = try #require(
            token(makePodJWT(podUID: Self.other, expiresAt: Date().addingTimeInterval(3000)), pod: Self.other))
        registry.update(pod: Self.pod, tokens: [soon])
        registry.update(pod: Self.other, tokens: [later])
        #expect(registry.freshestAssertion(for: soon.subject)?.jwt == later.assertion.jwt)
        registry.remove(pod: Self.other)
        #expect(registry.freshestAssertion(for: soon.subject)?.jwt == soon.assertion.jwt)
        #expect(registry.tokens(ofPod: Self.other) == nil)
        registry.remove(pod: Self.pod)
        #expect(!registry.hasPods(for: soon.subject))
        #expect(registry.counts == (0, 0))
    }
}
