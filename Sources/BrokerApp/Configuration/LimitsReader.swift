/// Reads `limits:`.
enum LimitsReader {
    static let keys: Set<String> = [
        "maxConnections", "maxConnectionsPerUID", "maxConnectionsPerPod", "idleTimeoutSeconds", "requestsPerSecondPerUID", "requestBurstPerUID",
        "eventLoopThreads",
    ]

    static func read(_ fields: [String: Node], into limits: inout BrokerConfiguration.LimitSettings, reader: inout NodeReader) {
        reader.int(fields["maxConnections"], at: "limits.maxConnections", in: 1...1_000_000).map { limits.maxConnections = $0 }
        reader.int(fields["maxConnectionsPerUID"], at: "limits.maxConnectionsPerUID", in: 1...1_000_000).map { limits.maxConnectionsPerUID = $0 }
        reader.int(fields["maxConnectionsPerPod"], at: "limits.maxConnectionsPerPod", in: 1...1_000_000).map { limits.maxConnectionsPerPod = $0 }
        reader.int(fields["idleTimeoutSeconds"], at: "limits.idleTimeoutSeconds", in: 1...86_400).map { limits.idleTimeoutSeconds = $0 }
        reader.int(fields["requestsPerSecondPerUID"], at: "limits.requestsPerSecondPerUID", in: 0...10_000_000).map {
            limits.requestsPerSecondPerUID = $0
        }
        reader.int(fields["requestBurstPerUID"], at: "limits.requestBurstPerUID", in: 1...10_000_000).map { limits.requestBurstPerUID = $0 }
        reader.int(fields["eventLoopThreads"], at: "limits.eventLoopThreads", in: 1...256).map { limits.eventLoopThreads = $0 }
    }
}
