import Foundation
import Testing
import UpstreamHTTP

/// `SSL_CERT_FILE` naming the system bundle is not parsed a second time (start-up cost):
/// only the very file NIOSSL trusts counts, not a copy of it.
@Suite struct SystemBundleTests {
    static let system = "/etc/ssl/certs/ca-certificates.crt"

    @Test func theSystemBundleAndALinkToItAreRecognised() throws {
        try #require(FileManager.default.fileExists(atPath: Self.system))
        #expect(CABundle.isSystemBundle(Self.system))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tb-sysbundle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let link = directory.appendingPathComponent("link.pem").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Self.system)
        #expect(CABundle.isSystemBundle(link))
    }

    @Test func aCopyAnotherFileOrAMissingPathIsNot() throws {
        try #require(FileManager.default.fileExists(atPath: Self.system))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tb-sysbundle-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("copy.pem").path
        try FileManager.default.copyItem(atPath: Self.system, toPath: copy)
        #expect(!CABundle.isSystemBundle(copy))
        #expect(!CABundle.isSystemBundle(directory.path))
        #expect(!CABundle.isSystemBundle(directory.appendingPathComponent("missing.pem").path))
    }
}
