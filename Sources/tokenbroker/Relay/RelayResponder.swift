import BrokerClient
import Glibc
import TokenBrokerProtocol

/// The relay's answer to one request: the daemon's compatibility-endpoint rules (the same
/// anti-SSRF headers, parameters, answers and status codes), with the token coming from the
/// broker socket. The broker sees the relay's process, so it attests the relay's pod.
///
/// Routes (for requests whose `Host` is a loopback address): App Service `/msi/token`, IMDS `/metadata/identity/oauth2/token`, AWS
/// `/aws/credentials[/NAME]`, and `/healthz` (200 only while the broker answers `ping`).
/// Everything else is 404; nothing is forwarded anywhere.
final class RelayResponder: Sendable {
    static let appServicePath = "/msi/token"
    static let imdsPath = "/metadata/identity/oauth2/token"
    static let awsPath = "/aws/credentials"
    static let healthPath = "/healthz"

    /// The `X-IDENTITY-HEADER` / AWS `Authorization` secret.
    private let identityHeader: [UInt8]
    /// Sent as `tenantId` on every token request, when set.
    private let tenantId: String?
    /// Sent as `volume` on every token request, when set.
    private let volume: String?
    /// How long a token request waits for a broker that refuses connections (being replaced).
    private let brokerWait: Duration

    init(identityHeader: String, tenantId: String?, volume: String?, brokerWait: Duration) {
        self.identityHeader = Array(identityHeader.utf8)
        self.tenantId = tenantId
        self.volume = volume
        self.brokerWait = brokerWait
    }

    func respond(to request: RelayHTTPRequest, link: RelayBrokerLink) -> RelayHTTPResponse {
        // Before anything else, as on the daemon's endpoints: a request not addressed to this
        // host (DNS rebinding: a page whose name now resolves to 127.0.0.1) learns nothing.
        // The head parser already refused targets that are not in origin form.
        let hosts = request.headerValues("Host")
        guard hosts.count == 1, LoopbackHost.isLoopback(hostHeader: hosts[0]) else {
            return RelayFlavor.imds.error(400, "bad_request", "Host must name a loopback address (localhost, 127.0.0.1 or [::1])")
        }
        let path = request.path.count > 1 && request.path.hasSuffix("/") ? String(request.path.dropLast()) : request.path
        switch path {
        case Self.healthPath: return health(request, link: link)
        case Self.imdsPath: return answer(request, flavor: .imds, link: link)
        case Self.appServicePath: return answer(request, flavor: .appService, link: link)
        case Self.awsPath: return awsCredentials(request, identity: nil, link: link)
        case _ where path.hasPrefix(Self.awsPath + "/"):
            return awsCredentials(request, identity: String(path.dropFirst(Self.awsPath.count + 1)), link: link)
        default:
            return RelayFlavor.imds.error(
                404, "not_found",
                "no such endpoint; this relay serves \(Self.imdsPath), \(Self.appServicePath), \(Self.awsPath) and \(Self.healthPath)")
        }
    }

    private func health(_ request: RelayHTTPRequest, link: RelayBrokerLink) -> RelayHTTPResponse {
        guard request.method == "GET" else { return RelayFlavor.imds.error(405, "bad_request", "method \(request.method) is not supported; use GET") }
        // No patience: the probe reports the broker as it is now.
        switch call(BrokerRequest(op: "ping", id: .number(1)), link: link, patience: .zero) {
        case .success(let response) where response.ok: return RelayHTTPResponse(status: 200, body: #"{"ok":true}"#)
        case .success(let response): return Self.unhealthy(response.error?.message ?? "the broker refused ping")
        case .failure(let error): return Self.unhealthy(error.message)
        }
    }

    private static func unhealthy(_ message: String) -> RelayHTTPResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("ok", false)
        writer.key("error")
        writer.beginObject()
        writer.field("code", RelayFlavor.brokerUnavailable)
        writer.field("message", message)
        writer.endObject()
        writer.endObject()
        return RelayHTTPResponse(status: 503, body: writer.text)
    }

    private func answer(_ request: RelayHTTPRequest, flavor route: RelayFlavor, link: RelayBrokerLink) -> RelayHTTPResponse {
        guard request.method == "GET" else { return route.error(405, "bad_request", "method \(request.method) is not supported; use GET") }
        let versions = request.queryValues("api-version")
        guard versions.count <= 1 else { return route.error(400, "invalid_request", "query parameter 'api-version' is given more than once") }
        let flavor: RelayFlavor
        switch self.flavor(of: request, route: route, version: versions.first) {
        case .refuse(let response): return response
        case .speak(let chosen): flavor = chosen
        }
        let resource: String
        let clientId: String?
        switch query(of: request, flavor: flavor) {
        case .refuse(let response): return response
        case .ask(let asked, let named): (resource, clientId) = (asked, named)
        }

        // The identities `status` lists for this caller, asked at most once per request.
        var listedIdentities: [IdentityStatus]?
        func listed() -> [IdentityStatus] {
            if listedIdentities == nil {
                listedIdentities = call(BrokerRequest(op: "status", id: .number(2)), link: link).success?.status?.identities ?? []
            }
            return listedIdentities!
        }
        var token = BrokerRequest(op: "token", id: .number(1), resource: resource, clientId: clientId, tenantId: tenantId, volume: volume)
        var response: BrokerResponse
        switch call(token, link: link) {
        case .failure(let error): return flavor.error(error)
        case .success(let answer): response = answer
        }
        // A broker with configured identities, several of them this caller's: name the one
        // whose client id was asked for, as the daemon's own endpoints do.
        if response.error?.code == WireErrorCode.identityRequired.rawValue, let clientId,
            let name = listed().first(where: { $0.clientId?.lowercased() == clientId.lowercased() })?.name
        {
            token.identity = name
            switch call(token, link: link) {
            case .failure(let error): return flavor.error(error)
            case .success(let answer): response = answer
            }
        }
        guard response.ok, response.token != nil else {
            guard let error = response.error else { return flavor.error(500, "internal", "the broker's answer has no token") }
            return flavor.error(Self.advisingSDKs(error))
        }
        // The answer's client_id, and a check that a broker which ignores `clientId` (one with
        // configured identities) did not serve another app's token: the identity's client id,
        // as `status` lists it for this caller.
        // Node mode answers with the client id it exchanged for; configured identities are looked up.
        let servedClientId = response.clientId ?? listed().first { $0.name == response.identity }?.clientId
        if let clientId, let servedClientId, servedClientId.lowercased() != clientId.lowercased() {
            return flavor.error(400, "invalid_request", "Identity not found")
        }
        return flavor.token(response, resource: resource, clientId: servedClientId ?? clientId, now: Int64(time(nil)))
    }

    /// `error` with the socket's advice for `identity_required` ("name one with 'identity'"),
    /// which means nothing to an SDK, put in its terms.
    private static func advisingSDKs(_ error: WireError) -> WireError {
        let message = Array(error.message.utf8)
        let advice = Array("name one with 'identity'".utf8)
        guard error.code == WireErrorCode.identityRequired.rawValue, let start = offset(of: advice, in: message) else { return error }
        var advised = error
        advised.message = String(
            decoding: message[..<start] + "pass client_id (AZURE_CLIENT_ID for most SDKs)".utf8 + message[(start + advice.count)...], as: UTF8.self)
        return advised
    }

    private enum QueryDecision {
        case ask(resource: String, clientId: String?)
        case refuse(RelayHTTPResponse)
    }

    /// The resource a managed-identity request asks for and the client id it names, each given
    /// at most once; identity selectors the node's broker cannot honour are refused.
    private func query(of request: RelayHTTPRequest, flavor: RelayFlavor) -> QueryDecision {
        var single: [String: String] = [:]
        for name in ["resource", "client_id", "clientid", "object_id", "principal_id", "mi_res_id", "msi_res_id"] {
            let values = request.queryValues(name)
            guard values.count <= 1 else { return .refuse(flavor.error(400, "invalid_request", "query parameter '\(name)' is given more than once")) }
            single[name] = values.first
        }
        guard let resource = single["resource"], !resource.isEmpty else {
            return .refuse(flavor.error(400, "invalid_request", "Required query variable 'resource' is missing"))
        }
        if let other = ["object_id", "principal_id", "mi_res_id", "msi_res_id"].first(where: { single[$0] != nil }) {
            return .refuse(
                flavor.error(
                    400, "invalid_request",
                    "\(other) is not supported here: the node's broker selects the identity by client id (pass client_id, AZURE_CLIENT_ID for most SDKs)"
                ))
        }
        let clientIds = [single["client_id"], single["clientid"]].compactMap { $0 }
        guard clientIds.count <= 1 else {
            return .refuse(flavor.error(400, "invalid_request", "name the identity with only one of client_id or clientid"))
        }
        return .ask(resource: resource, clientId: clientIds.first)
    }

    private enum FlavorDecision {
        case speak(RelayFlavor)
        case refuse(RelayHTTPResponse)
    }

    /// The protocol a request speaks, from its route, version and secret, as the daemon's
    /// endpoints decide it (the version first: it says which header carries the secret).
    private func flavor(of request: RelayHTTPRequest, route: RelayFlavor, version: String?) -> FlavorDecision {
        if route == .imds {
            // Also what azure-identity's header-less probe gets: a 400 tells it an endpoint is there.
            guard request.headerValues("Metadata").contains(where: { $0.lowercased() == "true" }) else {
                return .refuse(route.error(400, "invalid_request", "Required metadata header not specified"))
            }
            guard let version, ManagedIdentityVersions.imdsAccepts(version) else {
                return .refuse(RelayHTTPResponse(status: 400, body: ManagedIdentityVersions.imdsVersionErrorBody()))
            }
            return .speak(.imds)
        }
        guard let version, !version.isEmpty else {
            return .refuse(route.error(400, "invalid_request", "Required query variable 'api-version' is missing"))
        }
        guard let variant = ManagedIdentityVersions.appService(version) else {
            return .refuse(
                route.error(
                    400, "invalid_request",
                    "api-version '\(version.prefix(32))' is not supported; use 2019-08-01 (IDENTITY_ENDPOINT, X-IDENTITY-HEADER) or 2017-09-01 (MSI_ENDPOINT, secret)"
                ))
        }
        let flavor: RelayFlavor = variant == .current ? .appService : .appService2017
        let given = request.headerValues(variant.secretHeader)
        guard given.count == 1, ConstantTime.equal(Array(given[0].utf8), identityHeader) else {
            return .refuse(flavor.error(401, "unauthorized", "\(variant.secretHeader) is missing or wrong"))
        }
        return .speak(flavor)
    }

    /// The AWS SDKs' container-credentials protocol: `Authorization` carries the secret
    /// (`AWS_CONTAINER_AUTHORIZATION_TOKEN`), the answer is the role's credentials.
    private func awsCredentials(_ request: RelayHTTPRequest, identity: String?, link: RelayBrokerLink) -> RelayHTTPResponse {
        guard request.method == "GET" else { return RelayFlavor.awsError(405, "bad_request", "method \(request.method) is not supported; use GET") }
        let authorization = request.headerValues("Authorization")
        guard authorization.count == 1, ConstantTime.equal(Array(authorization[0].utf8), identityHeader) else {
            return RelayFlavor.awsError(401, "unauthorized", "Authorization is missing or wrong (AWS_CONTAINER_AUTHORIZATION_TOKEN)")
        }
        var name = identity
        if name == nil {
            // The caller's AWS identities, as the daemon's endpoint picks among them. When status
            // lists no identity at all (node mode), the broker chooses, e.g. by the pod's AWS_ROLE_ARN.
            let listed = call(BrokerRequest(op: "status", id: .number(2)), link: link).success?.status?.identities ?? []
            let candidates = listed.filter { $0.exchange == "aws-sts" }.map(\.name).sorted()
            if candidates.count > 1 {
                return RelayFlavor.awsError(
                    400, "identity_required",
                    "several AWS identities are available to you (\(candidates.joined(separator: ", "))); use \(Self.awsPath)/NAME")
            }
            if candidates.isEmpty, !listed.isEmpty { return RelayFlavor.awsError(403, "forbidden", "no AWS identity is available to this caller") }
            name = candidates.first
        }
        switch call(BrokerRequest(op: "token", id: .number(1), identity: name, tenantId: tenantId, volume: volume), link: link) {
        case .failure(let error):
            return RelayFlavor.awsError(RelayFlavor.status(for: error.code), error.code, error.message, retryAfter: error.retryAfter)
        case .success(let response):
            if let credentials = response.credentials { return RelayFlavor.awsCredentials(credentials) }
            if let error = response.error {
                return RelayFlavor.awsError(RelayFlavor.status(for: error.code), error.code, error.message, retryAfter: error.retryAfter)
            }
            return name == nil
                ? RelayFlavor.awsError(403, "forbidden", "no AWS identity is available to this caller")
                : RelayFlavor.awsError(400, "bad_request", "identity '\(response.identity ?? name ?? "")' gives access tokens, not AWS credentials")
        }
    }

    /// One round trip; a broker that cannot be reached becomes a retryable error.
    private func call(_ request: BrokerRequest, link: RelayBrokerLink, patience: Duration? = nil) -> Result<BrokerResponse, WireError> {
        do {
            return .success(try link.roundTrip(request, patience: patience ?? brokerWait))
        } catch {
            switch error {
            case .unreachable(let reason):
                return .failure(
                    WireError(code: RelayFlavor.brokerUnavailable, message: "the node's token broker cannot be reached: \(reason)", retryable: true))
            case .timedOut:
                return .failure(
                    WireError(code: RelayFlavor.brokerUnavailable, message: "the node's token broker did not answer in time", retryable: true))
            case .closed:
                return .failure(
                    WireError(
                        code: RelayFlavor.brokerUnavailable,
                        message: "the node's token broker closed the connection without answering (it may be restarting)", retryable: true))
            case .protocolError(let reason):
                return .failure(WireError(code: "internal", message: reason, retryable: true))
            }
        }
    }
}

extension Result {
    fileprivate var success: Success? {
        if case .success(let value) = self { value } else { nil }
    }
}
