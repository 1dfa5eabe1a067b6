import BrokerServer
import FoundationEssentials
import Glibc
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// The Azure App Service (2019-08-01 and 2017-09-01) and IMDS managed-identity protocols
/// and the AWS container credentials protocol, answered from the broker's cache so
/// unmodified SDKs get the same tokens socket callers get.
///
/// Each protocol keeps its anti-SSRF header (`X-IDENTITY-HEADER` or, for 2017-09-01,
/// `secret` equal to the secret; `Metadata: true`): a request forged through some local
/// HTTP client cannot set headers, so it gets an error and no token. Only requests
/// addressed to this host in origin form are answered (`LoopbackRequest`: DNS rebinding).
/// Nothing is ever forwarded: an unknown path is a 404.
final class CompatEndpoints: HTTPService {
    /// The IMDS token path (under `AZURE_POD_IDENTITY_AUTHORITY_HOST`).
    static let imdsPath = "/metadata/identity/oauth2/token"
    /// The AWS container credentials path (`AWS_CONTAINER_CREDENTIALS_FULL_URI`), optionally
    /// followed by `/IDENTITY`.
    static let awsPath = "/aws/credentials"

    /// How a request names its identity.
    enum Selector: Equatable {
        case clientId(String)
        case objectId(String)
        case resourceId(String)
    }

    private let broker: Broker
    private let appServicePath: String
    /// `compat.defaultIdentity`, as the last reload left it.
    private let defaultIdentity: LiveValue<String?>
    private let identityHeader: [UInt8]
    /// The IMDS address when `compat.tcp` is bound to it (a pod's or namespace's own
    /// interface): requests naming it in `Host` are addressed to this host too.
    private let imdsHost: String?

    init(broker: Broker, settings: CompatSettings, defaultIdentity: LiveValue<String?>, identityHeader: String) {
        self.broker = broker
        self.appServicePath = settings.appServicePath
        self.defaultIdentity = defaultIdentity
        self.identityHeader = Array(identityHeader.utf8)
        self.imdsHost = settings.tcp.flatMap { $0.host == CompatSettings.imdsAddress ? $0.host : nil }
    }

    func respond(to request: HTTPServiceRequest, from peer: PeerCredentials) async -> HTTPServiceResponse {
        // Before anything else: a request not addressed to this host learns nothing.
        if let refusal = LoopbackRequest.refusal(request, alsoAccepting: imdsHost) {
            return Flavor.imds.error(400, "bad_request", refusal)
        }
        if request.malformedEscape {
            return Flavor.imds.error(400, "bad_request", "the request target has a malformed %-escape")
        }
        let path = request.path.count > 1 && request.path.hasSuffix("/") ? String(request.path.dropLast()) : request.path
        if path == Self.awsPath || path.hasPrefix(Self.awsPath + "/") {
            let identity = path == Self.awsPath ? nil : String(path.dropFirst(Self.awsPath.count + 1))
            let (response, outcome) = await awsCredentials(request, identity: identity, peer: peer)
            broker.countRequest("aws_credentials", outcome)
            return response
        }
        let isIMDS: Bool
        switch path {
        case Self.imdsPath: isIMDS = true
        case appServicePath: isIMDS = false
        default:
            return Flavor.imds.error(404, "not_found", "no such endpoint; this broker serves \(Self.imdsPath), \(appServicePath) and \(Self.awsPath)")
        }
        let response = await answer(request, imds: isIMDS, peer: peer)
        broker.countRequest(isIMDS ? "imds" : "app_service", response.outcome)
        return response.http
    }

    /// The protocol a request speaks, from its route, version and secret; or its refusal.
    private func flavor(of request: HTTPServiceRequest, imds: Bool, version: String?) -> FlavorDecision {
        if imds {
            // Also what azure-identity's header-less probe gets: a 400 tells it an endpoint is there.
            guard request.headerValues("Metadata").contains(where: { $0.lowercased() == "true" }) else {
                return .refuse((Flavor.imds.error(400, "invalid_request", "Required metadata header not specified"), "invalid_request"))
            }
            guard let version, ManagedIdentityVersions.imdsAccepts(version) else {
                return .refuse((HTTPServiceResponse(status: 400, body: ManagedIdentityVersions.imdsVersionErrorBody()), "invalid_request"))
            }
            return .speak(.imds)
        }
        // The version first: it decides which header carries the secret, so a 2017-09-01
        // client is not told its X-IDENTITY-HEADER is wrong.
        guard let version, !version.isEmpty else {
            return .refuse((Flavor.appService.error(400, "invalid_request", "Required query variable 'api-version' is missing"), "invalid_request"))
        }
        guard let variant = ManagedIdentityVersions.appService(version) else {
            let message =
                "api-version '\(version.prefix(32))' is not supported; use 2019-08-01 (IDENTITY_ENDPOINT, X-IDENTITY-HEADER) or 2017-09-01 (MSI_ENDPOINT, secret)"
            return .refuse((Flavor.appService.error(400, "invalid_request", message), "invalid_request"))
        }
        let flavor: Flavor = variant == .current ? .appService : .appService2017
        let given = request.headerValues(variant.secretHeader)
        guard given.count == 1, Self.constantTimeEqual(Array(given[0].utf8), identityHeader) else {
            return .refuse((flavor.error(401, "unauthorized", "\(variant.secretHeader) is missing or wrong"), "unauthorized"))
        }
        return .speak(flavor)
    }

    private enum FlavorDecision {
        case speak(Flavor)
        /// The answer and the outcome counted for it.
        case refuse((HTTPServiceResponse, String))
    }

    private func answer(_ request: HTTPServiceRequest, imds: Bool, peer: PeerCredentials) async -> (http: HTTPServiceResponse, outcome: String) {
        guard request.method == "GET" else {
            return ((imds ? Flavor.imds : .appService).error(405, "bad_request", "method \(request.method) is not supported; use GET"), "bad_request")
        }
        let versions = request.queryValues("api-version")
        guard versions.count <= 1 else {
            return (
                (imds ? Flavor.imds : .appService).error(400, "invalid_request", "query parameter 'api-version' is given more than once"),
                "invalid_request"
            )
        }
        let flavor: Flavor
        switch self.flavor(of: request, imds: imds, version: versions.first) {
        case .refuse(let refusal): return refusal
        case .speak(let chosen): flavor = chosen
        }
        func refuse(_ status: Int, _ code: String, _ message: String) -> (HTTPServiceResponse, String) {
            (flavor.error(status, code, message), code)
        }
        var single: [String: String] = [:]
        for name in ["resource", "client_id", "clientid", "object_id", "principal_id", "mi_res_id", "msi_res_id"] {
            let values = request.queryValues(name)
            guard values.count <= 1 else { return refuse(400, "invalid_request", "query parameter '\(name)' is given more than once") }
            single[name] = values.first
        }
        guard let resource = single["resource"], !resource.isEmpty else {
            return refuse(400, "invalid_request", "Required query variable 'resource' is missing")
        }
        // `clientid`: the 2017-09-01 protocol's (and Azure ML's) spelling of `client_id`.
        let selectors = [
            single["client_id"].map(Selector.clientId), single["clientid"].map(Selector.clientId),
            (single["object_id"] ?? single["principal_id"]).map(Selector.objectId),
            (single["mi_res_id"] ?? single["msi_res_id"]).map(Selector.resourceId),
        ].compactMap { $0 }
        guard selectors.count <= 1 else {
            return refuse(400, "invalid_request", "name the identity with only one of client_id (clientid), object_id or mi_res_id")
        }
        var identity: String?
        if let selector = selectors.first {
            guard let name = broker.identityName(matching: selector) else {
                return refuse(400, "invalid_request", "Identity not found")
            }
            identity = name
        }
        let request = BrokerRequest(op: BrokerOperation.token.rawValue, resource: resource, identity: identity)
        switch await broker.compatToken(for: request, from: peer, route: .managedIdentity(defaultIdentity: defaultIdentity.current)) {
        case .success(let cached):
            return (flavor.token(cached, resource: resource, clientId: broker.clientId(of: cached.key.identity)), "ok")
        case .failure(let error):
            return (flavor.error(error), error.code)
        }
    }

    /// The AWS SDKs' container credentials protocol: `Authorization` carries the secret
    /// (`AWS_CONTAINER_AUTHORIZATION_TOKEN`), the answer is the role's credentials. Without
    /// a name, the broker chooses among the caller's identities that give AWS credentials.
    private func awsCredentials(_ request: HTTPServiceRequest, identity: String?, peer: PeerCredentials) async -> (HTTPServiceResponse, String) {
        func refuse(_ status: Int, _ code: String, _ message: String) -> (HTTPServiceResponse, String) {
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("code", code)
            writer.field("message", message)
            writer.endObject()
            return (HTTPServiceResponse(status: status, body: writer.text), code)
        }
        guard request.method == "GET" else { return refuse(405, "bad_request", "method \(request.method) is not supported; use GET") }
        let authorization = request.headerValues("Authorization")
        guard authorization.count == 1, Self.constantTimeEqual(Array(authorization[0].utf8), identityHeader) else {
            return refuse(401, "unauthorized", "Authorization is missing or wrong (AWS_CONTAINER_AUTHORIZATION_TOKEN)")
        }
        let request = BrokerRequest(op: BrokerOperation.token.rawValue, identity: identity)
        switch await broker.compatToken(for: request, from: peer, route: .awsContainer(path: Self.awsPath)) {
        case .failure(let error):
            var response = refuse(Flavor.status(for: error.code), error.code, error.message).0
            if let retryAfter = error.retryAfter { response.headers.append((name: "Retry-After", value: String(retryAfter))) }
            return (response, error.code)
        case .success(let cached):
            // A pod's token in node mode is an access token whatever was asked.
            guard let aws = cached.token.awsCredentials else {
                return refuse(400, "bad_request", "identity '\(cached.key.identity)' gives access tokens, not AWS credentials")
            }
            var writer = JSONWriter()
            writer.beginObject()
            writer.field("AccessKeyId", aws.accessKeyId)
            writer.field("SecretAccessKey", aws.secretAccessKey)
            writer.field("Token", aws.sessionToken)
            writer.field("Expiration", Timestamp.iso8601(aws.expiration))
            writer.field("AccountId", aws.accountId)
            writer.endObject()
            return (HTTPServiceResponse(status: 200, body: writer.text), "ok")
        }
    }

    /// Compares without an early exit, so timing does not reveal how much of a guess was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        ConstantTime.equal(a, b)
    }
}
