import TokenBrokerProtocol

/// The workload-identity variables the webhook injects, and `TOKENBROKER_SOCKET`:
/// present together, and each shaped as the SDKs and the broker expect.
struct EnvironmentCheck: DoctorCheck {
    static let workloadVariables = ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"]

    func run(_ context: DoctorContext) -> [DoctorFinding] { Self.evaluate(context.environment) }

    /// The findings for an environment (pure).
    static func evaluate(_ environment: [String: String]) -> [DoctorFinding] {
        let value = { (name: String) in environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        var findings: [DoctorFinding] = []
        let present = workloadVariables.filter { value($0) != nil }
        for name in workloadVariables {
            let id = "env.\(name)"
            guard let text = value(name) else {
                findings.append(
                    present.isEmpty
                        ? .skip(id, "not set (no workload-identity variables: the broker is configured by file, or the webhook did not run)")
                        : .fail(
                            id, "not set, while \(present.joined(separator: ", ")) \(present.count == 1 ? "is" : "are")",
                            fix:
                                "label the pod azure.workload.identity/use: \"true\" and annotate its service account with azure.workload.identity/client-id, or set \(name)"
                        ))
                continue
            }
            findings.append(evaluate(name, text))
        }
        findings.append(authorityHost(value("AZURE_AUTHORITY_HOST")))
        findings.append(socket(value(WireProtocol.socketEnvironmentVariable)))
        return findings
    }

    private static func evaluate(_ name: String, _ text: String) -> DoctorFinding {
        let id = "env.\(name)"
        switch name {
        case "AZURE_CLIENT_ID":
            return isGUID(text)
                ? .pass(id, "\(text) (a GUID)")
                : .fail(
                    id, "'\(text.prefix(80))' is not a GUID",
                    fix: "set the application (client) id of the Entra app or managed identity, e.g. 00000000-0000-0000-0000-000000000000")
        case "AZURE_TENANT_ID":
            return isGUID(text) || isDomainName(text)
                ? .pass(id, "\(text) (\(isGUID(text) ? "a GUID" : "a domain name"))")
                : .fail(
                    id, "'\(text.prefix(80))' is neither a GUID nor a domain name",
                    fix: "set the directory (tenant) id, a GUID from the Entra admin center")
        default:
            return text.hasPrefix("/")
                ? .pass(id, text)
                : .fail(
                    id, "'\(text.prefix(200))' is not an absolute path",
                    fix: "point it at the projected token file, e.g. /var/run/secrets/azure/tokens/azure-identity-token")
        }
    }

    private static func authorityHost(_ text: String?) -> DoctorFinding {
        let id = "env.AZURE_AUTHORITY_HOST"
        guard let text else { return .pass(id, "not set: \(DoctorDefaults.authorityHost) (the public cloud)") }
        guard let url = HTTPSURL(text) else {
            return .fail(
                id, "'\(text.prefix(200))' is not an https URL",
                fix: "use https://login.microsoftonline.com/ (or login.microsoftonline.us, login.chinacloudapi.cn for sovereign clouds)")
        }
        guard url.path.isEmpty || url.path == "/" else {
            return .fail(
                id, "'\(text)' has a path (\(url.path)); the tenant is added from AZURE_TENANT_ID",
                fix: "set only the scheme and host, e.g. https://login.microsoftonline.com/")
        }
        return .pass(id, text)
    }

    private static func socket(_ text: String?) -> DoctorFinding {
        let id = "env.\(WireProtocol.socketEnvironmentVariable)"
        guard let text else { return .pass(id, "not set: clients use \(WireProtocol.defaultSocketPath)") }
        guard text.hasPrefix("/") else {
            return .fail(
                id, "'\(text.prefix(200))' is not an absolute path",
                fix: "set the absolute path of the broker's socket, e.g. \(WireProtocol.defaultSocketPath)")
        }
        guard text.utf8.count < 108 else {
            return .fail(
                id, "the path is \(text.utf8.count) bytes; a Unix socket path has at most 107", fix: "mount the socket's directory at a shorter path")
        }
        return .pass(id, text)
    }

    /// 8-4-4-4-12 hexadecimal digits.
    static func isGUID(_ text: String) -> Bool {
        let groups = text.split(separator: "-", omittingEmptySubsequences: false)
        return groups.map(\.count) == [8, 4, 4, 4, 12] && groups.allSatisfy { $0.allSatisfy(\.isHexDigit) }
    }

    static func isDomainName(_ text: String) -> Bool {
        let labels = text.split(separator: ".", omittingEmptySubsequences: false)
        return labels.count >= 2 && text.count <= 253
            && labels.allSatisfy { label in
                !label.isEmpty && label.count <= 63 && label.first != "-" && label.last != "-"
                    && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
            }
    }
}

/// Defaults of the doctor's options.
enum DoctorDefaults {
    static let authorityHost = "https://login.microsoftonline.com/"
    static let audience = "api://AzureADTokenExchange"
}

/// The scheme, host, port and path of an `https://` URL, parsed strictly.
struct HTTPSURL {
    var host: String
    var port: Int
    var path: String

    init?(_ text: String) {
        guard text.hasPrefix("https://") else { return nil }
        let rest = text.dropFirst("https://".count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        path = String(rest.dropFirst(authority.count))
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let port = Int(authority[authority.index(after: colon)...]), (1...65535).contains(port) else { return nil }
            host = String(authority[..<colon])
            self.port = port
        } else {
            host = String(authority)
            port = 443
        }
        guard !host.isEmpty else { return nil }
    }
}
