import DevIdentityProvider
import Foundation
import Testing

/// The projected-volume layout must be byte-for-byte what kubelet produces, because the
/// broker's file watcher is tested against it.
@Suite struct AtomicWriterLayout {
    private func withDirectory(_ body: (String) throws -> Void) throws {
        let directory = try ProviderFixture.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try body(directory + "/volume")
    }

    private func link(_ path: String) -> String? {
        try? FileManager.default.destinationOfSymbolicLink(atPath: path)
    }

    @Test func firstWriteCreatesDataLinkTimestampDirAndUserVisibleLinks() throws {
        try withDirectory { dir in
            try AtomicWriter.write(files: ["token": Array("one".utf8), "ca.crt": Array("ca".utf8)], to: dir)

            #expect(link(dir + "/token") == "..data/token")
            #expect(link(dir + "/ca.crt") == "..data/ca.crt")
            let data = try #require(link(dir + "/..data"))
            #expect(data.range(of: #"^\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d{9}$"#, options: .regularExpression) != nil)
            #expect(try String(contentsOfFile: dir + "/token", encoding: .utf8) == "one")
            #expect(try String(contentsOfFile: dir + "/\(data)/ca.crt", encoding: .utf8) == "ca")
            #expect(!FileManager.default.fileExists(atPath: dir + "/..data_tmp"))
            let entries = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
            #expect(entries == ["..data", data, "ca.crt", "token"].sorted())
            let mode = try FileManager.default.attributesOfItem(atPath: dir + "/\(data)/token")[.posixPermissions] as? Int
            #expect(mode == 0o644)
        }
    }

    @Test func updateSwapsDataAndRemovesTheOldDirectory() throws {
        try withDirectory { dir in
            try AtomicWriter.write(files: ["token": Array("one".utf8)], to: dir)
            let first = try #require(link(dir + "/..data"))
            try AtomicWriter.write(files: ["token": Array("two".utf8)], to: dir)
            let second = try #require(link(dir + "/..data"))

            #expect(first != second)
            #expect(!FileManager.default.fileExists(atPath: dir + "/" + first))
            #expect(link(dir + "/token") == "..data/token")
            #expect(try String(contentsOfFile: dir + "/token", encoding: .utf8) == "two")
            let entries = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
            #expect(entries == ["..data", second, "token"].sorted())
        }
    }

    @Test func unchangedPayloadIsNotRewritten() throws {
        try withDirectory { dir in
            try AtomicWriter.write(files: ["token": Array("same".utf8)], to: dir)
            let first = link(dir + "/..data")
            try AtomicWriter.write(files: ["token": Array("same".utf8)], to: dir)
            #expect(link(dir + "/..data") == first)
        }
    }

    @Test func filesThatDisappearLoseTheirLinks() throws {
        try withDirectory { dir in
            try AtomicWriter.write(files: ["token": Array("1".utf8), "old": Array("x".utf8)], to: dir)
            try AtomicWriter.write(files: ["token": Array("2".utf8)], to: dir)
            #expect(link(dir + "/old") == nil)
            #expect(link(dir + "/token") == "..data/token")
        }
    }

    @Test func nestedPathsLinkTheirFirstComponent() throws {
        try withDirectory { dir in
            try AtomicWriter.write(files: ["sub/token": Array("n".utf8)], to: dir)
            #expect(link(dir + "/sub") == "..data/sub")
            #expect(try String(contentsOfFile: dir + "/sub/token", encoding: .utf8) == "n")
        }
    }

    @Test(arguments: ["", "/abs", "../escape", "a/../b", "..hidden", "a//b"])
    func rejectsUnsafePaths(_ path: String) throws {
        try withDirectory { dir in
            #expect(throws: AtomicWriter.Failure.self) {
                try AtomicWriter.write(files: [path: [1]], to: dir)
            }
        }
    }
}
