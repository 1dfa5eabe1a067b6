import Foundation
import Logging
import SystemdSupport

// Logs the calls SystemdSupportTests gives on stdin (JSON) through JournalLogHandler, then prints
// where its log call is (what CODE_FILE/CODE_LINE/CODE_FUNC should say). The test runs it in a
// mount namespace whose /run/systemd/journal/socket is the test's own reader.

struct Call: Decodable {
    let label: String
    let handlerLevel: Logger.Level
    let level: Logger.Level
    let message: String
    let handlerMetadata: [String: String]
    let metadata: [String: String]
}

func write(_ call: Call) -> [String: String] {
    var handler = JournalLogHandler(label: call.label)
    handler.logLevel = call.handlerLevel
    handler.metadata = call.handlerMetadata.mapValues { .string($0) }
    let logger = Logger(label: call.label) { _ in handler }
    logger.log(level: call.level, "\(call.message)", metadata: call.metadata.mapValues { .string($0) })
    return ["file": #fileID, "function": #function, "line": String(#line - 1)]
}

let calls = try JSONDecoder().decode([Call].self, from: FileHandle.standardInput.readDataToEndOfFile())
var site: [String: String] = [:]
for call in calls { site = write(call) }
FileHandle.standardOutput.write(try JSONEncoder().encode(site))
