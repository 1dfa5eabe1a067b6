import Glibc

extension SinkReader {
    /// The named identity, or the only one giving the kind of token the format needs
    /// (AWS credentials for `aws-credentials`, or `json`/`env` without a scope; access tokens otherwise).
    static func resolveIdentity(
        _ node: Node?, format: SinkSettings.Format, scopeGiven: Bool, at path: String, parent: Node, identities: [IdentityConfiguration],
        reader: inout NodeReader
    ) -> IdentityConfiguration? {
        if let name = reader.string(node, at: "\(path).identity") {
            if let identity = identities.first(where: { $0.name == name }) { return identity }
            let known = identities.map(\.name)
            reader.report(
                "\(path).identity", "no identity '\(name)' is defined\(known.isEmpty ? "" : "; identities: \(known.joined(separator: ", "))")", node)
            return nil
        }
        if NodeReader.present(node) != nil { return nil }  // present but not a string: reported
        let wantsAWS = format == .awsCredentials || (format != .token && format != .header && !scopeGiven)
        let kind = wantsAWS ? "AWS credentials" : "access tokens"
        let candidates = identities.filter { ($0.exchange.implicitScope != nil) == wantsAWS }
        switch candidates.count {
        case 1:
            return candidates[0]
        case 0:
            reader.report("\(path).identity", "is required: no identity gives \(kind) for format \(format.rawValue)", parent)
        default:
            reader.report(
                "\(path).identity", "is required: several identities give \(kind) (\(candidates.map(\.name).joined(separator: ", ")))", parent)
        }
        return nil
    }

    /// An absolute file path that keeps `SinkPathSafety`'s rules (a directory that does not
    /// exist yet is allowed here: it is reported in `status` until it does).
    static func readPath(_ node: Node?, at path: String, parent: Node, reader: inout NodeReader) -> String? {
        guard let text = reader.requiredString(node, at: path, parent: parent) else { return nil }
        guard text.hasPrefix("/") else {
            reader.report(path, "must be an absolute path, got '\(text)'", node)
            return nil
        }
        let last = text.split(separator: "/").last ?? ""
        guard !text.hasSuffix("/"), last != ".", last != "..", !text.utf8.contains(0) else {
            reader.report(path, "must name a file, got '\(text)'", node)
            return nil
        }
        if let problem = SinkPathSafety.problem(text, alsoAllowed: SinkPathSafety.checkConfigOwners), problem.code != .directoryMissing {
            reader.report(path, problem.message, node)
            return nil
        }
        return text
    }

    /// `{ command: [...], timeoutSeconds }` or `{ signal: NAME, pidFile: PATH }`.
    static func readRotate(_ node: Node, at path: String, reader: inout NodeReader) -> SinkSettings.RotateAction? {
        guard let fields = reader.mapping(node, at: path, keys: ["command", "timeoutSeconds", "signal", "pidFile"]) else { return nil }
        let hasCommand = NodeReader.present(fields["command"]) != nil
        let hasSignal = NodeReader.present(fields["signal"]) != nil || NodeReader.present(fields["pidFile"]) != nil
        switch (hasCommand, hasSignal) {
        case (true, true):
            reader.report(path, "give either command or signal with pidFile, not both", node)
            return nil
        case (false, false):
            reader.report(path, "needs command: [PATH, ARG…] or signal: HUP with pidFile: PATH", node)
            return nil
        case (true, false):
            guard let list = reader.sequence(fields["command"], at: "\(path).command") else { return nil }
            var command: [String] = []
            for (index, item) in list.enumerated() {
                guard let word = reader.string(item, at: "\(path).command[\(index)]") else { return nil }
                command.append(word)
            }
            guard let executable = command.first else {
                reader.report("\(path).command", "is empty; name an executable (an absolute path, then its arguments)", fields["command"])
                return nil
            }
            guard executable.hasPrefix("/") else {
                reader.report(
                    "\(path).command", "'\(executable)' is not an absolute path; the command runs without a shell or PATH lookup", fields["command"])
                return nil
            }
            let timeout = reader.int(fields["timeoutSeconds"], at: "\(path).timeoutSeconds", in: 1...3600) ?? 30
            return .command(command, timeoutSeconds: timeout)
        case (false, true):
            if fields["timeoutSeconds"] != nil { reader.report("\(path).timeoutSeconds", "applies to command only", fields["timeoutSeconds"]) }
            let name = reader.requiredString(fields["signal"], at: "\(path).signal", parent: node)
            let pidFile = reader.requiredString(fields["pidFile"], at: "\(path).pidFile", parent: node)
            guard let name, let pidFile else { return nil }
            let bare = name.uppercased().hasPrefix("SIG") ? String(name.uppercased().dropFirst(3)) : name.uppercased()
            guard signals[bare] != nil else {
                reader.report("\(path).signal", "must be one of \(signals.keys.sorted().joined(separator: ", ")), got '\(name)'", fields["signal"])
                return nil
            }
            guard pidFile.hasPrefix("/") else {
                reader.report("\(path).pidFile", "must be an absolute path, got '\(pidFile)'", fields["pidFile"])
                return nil
            }
            return .signal(name: bare, pidFile: pidFile)
        }
    }
}
