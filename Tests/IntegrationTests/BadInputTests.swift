import Foundation
import Testing

/// Bad input gets a specific error, and the broker keeps serving everyone else.
@Suite("Bad input on the socket")
struct BadInputTests {
    @Test("malformed JSON gets bad_request and the connection stays usable")
    func malformedJSON() async throws {
        try await Scenario.run { scenario in
            let connection = try UnixSocketConnection(path: scenario.broker.socketPath)
            try connection.send("{\"op\":\"token\",\n")
            let error = try connection.readJSONLine()
            #expect(error.errorCode == "bad_request")
            #expect(error.errorMessage.contains("not valid JSON"))
            try connection.send(#"{"op":"ping","id":2}"# + "\n")
            let next = try connection.readJSONLine()
            #expect(next.ok && next["id"] as? Int == 2)
            try connection.send(#"{"op":"frobnicate"}"# + "\n")
            #expect(try connection.readJSONLine().errorCode == "unknown_op")
            try connection.send(#"{"op":"token"}"# + "\n")
            #expect(try connection.readJSONLine().errorCode == "bad_request")
            try connection.send(#"{"op":"token","scope":"x","identity":"nobody-has-this"}"# + "\n")
            #expect(try connection.readJSONLine().errorCode == "unknown_identity")
            try connection.send(#"{"op":"token","scope":7}"# + "\n")
            let typed = try connection.readJSONLine()
            #expect(typed.errorCode == "bad_request" && typed.errorMessage.contains("scope"))
        }
    }

    @Test("a 1 MiB line gets too_large and a close; the next client is served")
    func oversizedLine() async throws {
        try await Scenario.run { scenario in
            let connection = try UnixSocketConnection(path: scenario.broker.socketPath)
            let huge = "{\"op\":\"token\",\"scope\":\"" + String(repeating: "a", count: 1 << 20) + "\"}\n"
            // The broker may close before reading everything; a failed write is fine.
            try? connection.send(huge)
            let answer = try connection.readJSONLine()
            #expect(answer.errorCode == "too_large")
            #expect(try connection.readLine() == nil, "the connection is closed")
            #expect(try scenario.broker.request(#"{"op":"ping"}"#).ok)
        }
    }

    @Test("HTTP garbage gets a 400 with bad_request; the next client is served")
    func httpGarbage() async throws {
        try await Scenario.run { scenario in
            let connection = try UnixSocketConnection(path: scenario.broker.socketPath)
            try connection.send("GET /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
            let reply = try connection.readToEnd()
            #expect(reply.hasPrefix("HTTP/1.1 400"), "\(reply.prefix(200))")
            #expect(reply.contains("\"bad_request\""))

            let binary = try UnixSocketConnection(path: scenario.broker.socketPath)
            try binary.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x0a])
            binary.shutdownWrite()
            let binaryReply = try binary.readToEnd()
            #expect(binaryReply.contains("\"bad_request\""), "\(binaryReply.prefix(200))")

            let curl = try runCommand("/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", scenario.broker.socketPath, "http://localhost/nope"])
            #expect(curl.stdout == "404")
            #expect(try scenario.broker.request(#"{"op":"ping"}"#).ok)
        }
    }

    @Test("the CLI's exit codes tell usage, broker and reachability errors apart")
    func cliExitCodes() async throws {
        let missing = try runCommand(TestEnvironment.cliPath, ["get", "--socket", "/tmp/tbit-no-such/broker.sock", "--scope", "x"])
        #expect(missing.status == 69)
        #expect(missing.stderr.contains("cannot connect"))
        let usage = try runCommand(TestEnvironment.cliPath, ["get"])
        #expect(usage.status == 64)
        try await Scenario.run { scenario in
            let denied = try runCommand(TestEnvironment.cliPath, ["get", "--socket", scenario.broker.socketPath, "--scope", "x", "--identity", "ghost"])
            #expect(denied.status == 1)
            #expect(denied.stderr.contains("unknown_identity: no identity named 'ghost'"))
            let header = try runCommand(TestEnvironment.cliPath, ["get", "--socket", scenario.broker.socketPath, "--scope", Scenario.scope, "--output", "header"])
            #expect(header.status == 0 && header.stdout.hasPrefix("Authorization: Bearer ey"))
        }
    }
}
