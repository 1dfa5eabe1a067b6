public import BrokerServer
import Glibc

/// `compat:` — the Azure App Service and IMDS compatible HTTP endpoints, for
/// programs that cannot speak the socket (unmodified SDKs, `az`). Off unless a
/// listener is configured (or inherited as socket-activation name `compat`).
public struct CompatSettings: Sendable, Equatable {
    /// `tcp`: a loopback address such as `127.0.0.1:8181` (port 0 picks a free one), or
    /// `169.254.169.254:80` in a namespace where that address is on a local interface.
    public var tcp: TCPAddress? = nil
    /// `unix`: a second Unix socket serving the same endpoints, with peer credentials.
    public var unixSocket: String? = nil
    /// `identityHeaderFile`: the App Service `X-IDENTITY-HEADER` secret; created with
    /// a random value at first start when absent.
    public var identityHeaderFile = "/var/lib/tokenbroker/identity-header"
    /// `appServicePath`: the App Service endpoint's path (`IDENTITY_ENDPOINT`).
    public var appServicePath = "/msi/token"
    /// `defaultIdentity`: served when a request names no identity and the caller may
    /// use several.
    public var defaultIdentity: String? = nil

    /// The IMDS address, which `tcp` may also name: for clients with it hard-coded, served
    /// on a pod's or network namespace's own interface (docs/kubernetes.md).
    public static let imdsAddress = "169.254.169.254"

    /// Whether a listener is configured.
    public var isEnabled: Bool { tcp != nil || unixSocket != nil }

    /// No listeners.
    public init() {}
}

/// `aliases:` of an identity: the other ids the compatibility endpoints may be asked by.
public struct IdentityAliases: Sendable, Equatable {
    /// `objectId`: matched against `object_id`/`principal_id`.
    public var objectId: String? = nil
    /// `resourceId`: matched against `mi_res_id`/`msi_res_id` (an ARM resource id).
    public var resourceId: String? = nil

    /// No aliases.
    public init(objectId: String? = nil, resourceId: String? = nil) {
        self.objectId = objectId
        self.resourceId = resourceId
    }
}

extension ConfigurationLoader {
    static func readCompat(_ node: Node?, into compat: inout CompatSettings, reader: inout NodeReader) {
        guard let fields = reader.mapping(node, at: "compat", keys: ["tcp", "unix", "identityHeaderFile", "appServicePath", "defaultIdentity"]) else {
            return
        }
        if let text = reader.string(fields["tcp"], at: "compat.tcp") {
            if let address = loopbackAddress(text) {
                compat.tcp = address
            } else {
                reader.report(
                    "compat.tcp",
                    "must be a loopback address and port such as 127.0.0.1:8181 or [::1]:8181 (or \(CompatSettings.imdsAddress):80 inside a pod or network namespace), got '\(text)'; the endpoints are never served beyond this host",
                    fields["tcp"])
            }
        }
        if let path = reader.string(fields["unix"], at: "compat.unix") {
            if !path.hasPrefix("/") {
                reader.report("compat.unix", "must be an absolute path", fields["unix"])
            } else if checkSocketPath(path, at: "compat.unix", node: fields["unix"], reader: &reader) {
                compat.unixSocket = path
            }
        }
        if let path = reader.string(fields["identityHeaderFile"], at: "compat.identityHeaderFile") {
            if path.hasPrefix("/") {
                compat.identityHeaderFile = path
            } else {
                reader.report("compat.identityHeaderFile", "must be an absolute path", fields["identityHeaderFile"])
            }
        }
        if let path = reader.string(fields["appServicePath"], at: "compat.appServicePath") {
            if path.hasPrefix("/"), !path.contains("?"), path != CompatEndpoints.imdsPath {
                compat.appServicePath = path
            } else {
                reader.report("compat.appServicePath", "must be a path such as /msi/token (not the IMDS path)", fields["appServicePath"])
            }
        }
        compat.defaultIdentity = reader.string(fields["defaultIdentity"], at: "compat.defaultIdentity")
    }

    /// Checks that need the identities (`defaultIdentity` names one), and an existing
    /// `identityHeaderFile` holds what start-up will accept.
    static func validateCompat(_ configuration: BrokerConfiguration, compatNode: Node?, reader: inout NodeReader) {
        if let name = configuration.compat.defaultIdentity, !configuration.identities.contains(where: { $0.name == name }) {
            reader.report("compat.defaultIdentity", "no identity named '\(name)'", compatNode?.mapping?["defaultIdentity"])
        }
        // Only when this process may read it: check-config run by another user than the
        // daemon's must not fail on the daemon's private file.
        let header = configuration.compat.identityHeaderFile
        guard access(header, R_OK) == 0 else { return }
        do {
            _ = try IdentityHeaderSecret.read(header)
        } catch {
            for issue in error.issues { reader.report(issue.path, "\(header): \(issue.message)", compatNode?.mapping?["identityHeaderFile"]) }
        }
    }

    /// `127.0.0.1:8181`, `[::1]:8181`: a literal loopback IP and a port.
    static func loopbackAddress(_ text: String) -> TCPAddress? {
        let host: Substring, port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[close...].hasPrefix("]:") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard let number = Int(port), (0...65_535).contains(number) else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, String(host), &v4) == 1 {
            // 127.0.0.0/8 (the first byte in network order), or the IMDS address: a
            // link-local address the kernel lets us bind only where it is on a local
            // interface, so never the VM's real IMDS, which is reached through a route.
            guard withUnsafeBytes(of: &v4, { $0[0] }) == 127 || host == CompatSettings.imdsAddress else { return nil }
            return TCPAddress(host: String(host), port: number)
        }
        return host == "::1" ? TCPAddress(host: "::1", port: number) : nil
    }
}

extension IdentityReader {
    static func readAliases(_ node: Node?, at path: String, reader: inout NodeReader) -> IdentityAliases {
        guard let fields = reader.mapping(node, at: path, keys: ["objectId", "resourceId"]) else { return IdentityAliases() }
        return IdentityAliases(
            objectId: reader.string(fields["objectId"], at: "\(path).objectId"),
            resourceId: reader.string(fields["resourceId"], at: "\(path).resourceId"))
    }
}
