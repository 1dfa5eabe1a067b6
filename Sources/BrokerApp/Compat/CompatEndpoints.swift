import BrokerServer
import Foundation
import TokenBrokerProtocol
import TokenCache
import TokenExchange

/// The Azure App Service and IMDS managed-identity protocols and the AWS container
/// credentials protocol, answered from the broker's cache so unmodified SDKs get the
/// same tokens socket callers get.
///
/// Each protocol keeps its anti-SSRF header (`X-IDENTITY-HEADER` equal to the
/// secret, `Metadata: true`): a request forged through some local HTTP client
/// cannot set headers, so it gets an error and no token. Only requests addressed to a
/// loopback host in origin form are answered (`LoopbackRequest`: DNS rebinding). Nothing
/// is ever forwarded: an unknown path is a 404.
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

    init(broker: Broker, settings: CompatSettings, defaultIdentity: LiveValue<String?>, identityHeader: String) {
        self.broker = broker
        self.appServicePath = settings.appServicePath
        self.defaultIdentity = defaultIdentity
        self.identityHeader = Array(identityHeader.utf8)
    }

    func respond(to request: HTTPServiceRequest, from peer: PeerCredentials) async -> HTTPServiceResponse {
        // Before anything else: a request not addressed to this host learns nothing.
        if let refusal = LoopbackRequest.refusal(request) {
            return Flavor.imds.error(400, "bad_request", refusal)
        }
        let path = request.path.count > 1 && request.path.hasSuffix("/") ? String(request.path.dropLast()) : request.path
        if path == Self.awsPath || path.hasPrefix(Self.awsPath + "/") {
            let identity = path == Self.awsPath ? nil : String(path.dropFirst(Self.awsPath.count + 1))
            let (response, outcome) = await awsCredentials(request, identity: identity, peer: peer)
            broker.countRequest("aws_credentials", outcome)
            return response
        }
        let flavor: Flavor
        switch path {
        case Self.imdsPath: flavor = .imds
        case appServicePath: flavor = .appService
        default:
            return Flavor.imds.error(404, "not_found", "no such endpoint; this broker serves \(Self.imdsPath), \(appServicePath) and \(Self.awsPath)")
        }
        let response = await answer(request, flavor: flavor, peer: peer)
        broker.countRequest(flavor.metricName, response.outcome)
        return response.http
    }

    private func answer(_ request: HTTPServiceRequest, flavor: Flavor, peer: PeerCredentials) async -> (http: HTTPServiceResponse, outcome: String) {
        func refuse(_ status: Int, _ code: String, _ message: String) -> (HTTPServiceResponse, String) {
            (flavor.error(status, code, message), code)
        }
        guard request.method == "GET" else {
            return refuse(405, "bad_request", "method \(request.method) is not supported; use GET")
        }
        switch flavor {
        case .imds:
            guard request.headerValues("Metadata").contains(where: { $0.lowercased() == "true" }) else {
                return refuse(400, "invalid_request", "Required metadata header not specified")
            }
        case .appService:
            // Checked before anything else, so the answer says nothing to a caller without it.
            guard request.headerValues("X-IDENTITY-HEADER").count == 1, Self.constantTimeEqual(Array(request.headerValues("X-IDENTITY-HEADER")[0].utf8), identityHeader) else {
                return refuse(401, "unauthorized", "X-IDENTITY-HEADER is missing or wrong")
            }
        }
        var single: [String: String] = [:]
        for name in ["api-version", "resource", "client_id", "object_id", "principal_id", "mi_res_id", "msi_res_id"] {
            let values = request.queryValues(name)
            guard values.count <= 1 else { return refuse(400, "invalid_request", "query parameter '\(name)' is given more than once") }
            single[name] = values.first
        }
        guard let version = single["api-version"], !version.isEmpty else {
            return refuse(400, "invalid_request", "Required query variable 'api-version' is missing")
        }
        guard flavor.acceptedVersions.contains(version) else {
            return refuse(400, "invalid_request", "api-version '\(version.prefix(32))' is not supported; use \(flavor.acceptedVersions.sorted().joined(separator: " or "))")
        }
        guard let resource = single["resource"], !resource.isEmpty else {
            return refuse(400, "invalid_request", "Required query variable 'resource' is missing")
        }
        let selectors = [
            single["client_id"].map(Selector.clientId),
            (single["object_id"] ?? single["principal_id"]).map(Selector.objectId),
            (single["mi_res_id"] ?? single["msi_res_id"]).map(Selector.resourceId),
        ].compactMap { $0 }
        guard selectors.count <= 1 else {
            return refuse(400, "invalid_request", "name the identity with only one of client_id, object_id or mi_res_id")
        }
        var identity: String?
        if let selector = selectors.first {
            guard let name = broker.identityName(matching: selector) else {
                return refuse(400, "invalid_request", "Identity not found")
            }
            identity = name
        }
        var result = await broker.compatToken(for: BrokerRequest(op: "token", resource: resource, identity: identity), from: peer)
        if case .failure(let error) = result, error.code == WireErrorCode.identityRequired.rawValue, identity == nil, let defaultIdentity = defaultIdentity.current {
            identity = defaultIdentity
            result = await broker.compatToken(for: BrokerRequest(op: "token", resource: resource, identity: defaultIdentity), from: peer)
        }
        switch result {
        case .success(let cached):
            return (flavor.token(cached, resource: resource, clientId: broker.clientId(of: cached.key.identity)), "ok")
        case .failure(var error):
            if error.code == WireErrorCode.identityRequired.rawValue {
                // The socket's advice ("name one with 'identity'") means nothing to an SDK.
                error.message = error.message.replacingOccurrences(of: "name one with 'identity'", with: "pass client_id (AZURE_CLIENT_ID for most SDKs) or set compat.defaultIdentity")
            }
            return (flavor.error(error), error.code)
        }
    }

    /// The AWS SDKs' container credentials protocol: `Authorization` carries the secret
    /// (`AWS_CONTAINER_AUTHORIZATION_TOKEN`), the answer is the role's credentials.
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
        var name = identity
        if name == nil {
            let candidates = broker.identityNames(allowedTo: peer, exchangeKind: "aws-sts")
            guard candidates.count == 1 else {
                return candidates.isEmpty
                    ? refuse(403, "forbidden", "no AWS identity is available to this caller")
                    : refuse(400, "identity_required", "several AWS identities are available to you (\(candidates.joined(separator: ", "))); use \(Self.awsPath)/NAME")
            }
            name = candidates[0]
        }
        switch await broker.compatToken(for: BrokerRequest(op: "token", identity: name), from: peer) {
        case .failure(let error):
            var response = refuse(Flavor.status(for: error.code), error.code, error.message).0
            if let retryAfter = error.retryAfter { response.headers.append((name: "Retry-After", value: String(retryAfter))) }
            return (response, error.code)
        case .success(let cached):
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

/// The two protocols' differences: versions, token fields and error shapes.
enum Flavor {
    case appService
    case imds

    var metricName: String { self == .imds ? "imds" : "app_service" }

    var acceptedVersions: Set<String> { self == .imds ? ["2018-02-01", "2019-08-01"] : ["2019-08-01"] }

    /// A token, with every number as a string as the real services send it.
    func token(_ cached: CachedToken, resource: String, clientId: String?) -> HTTPServiceResponse {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("access_token", cached.token.value)
        writer.field("client_id", clientId)
        if self == .imds {
            writer.field("refresh_token", "")
            writer.field("expires_in", String(max(0, cached.expiresIn.components.seconds)))
        }
        writer.field("expires_on", String(Int64(cached.token.expiresAt.timeIntervalSince1970)))
        writer.field("not_before", String(Int64(cached.token.issuedAt.timeIntervalSince1970)))
        writer.field("resource", resource)
        writer.field("token_type", cached.token.tokenType)
        writer.endObject()
        return HTTPServiceResponse(status: 200, body: writer.text)
    }

    /// The HTTP status a broker error gets on the compatibility endpoints.
    static func status(for code: String) -> Int {
        ManagedIdentityError.status(for: code)
    }

    /// A broker error in this protocol's shape and status.
    func error(_ error: WireError) -> HTTPServiceResponse {
        var response = self.error(Self.status(for: error.code), error.code, error.message)
        if let retryAfter = error.retryAfter { response.headers.append((name: "Retry-After", value: String(retryAfter))) }
        return response
    }

    /// `{"error","error_description"}` for IMDS; `{"statusCode","message","error"}` for App Service.
    func error(_ status: Int, _ code: String, _ message: String) -> HTTPServiceResponse {
        HTTPServiceResponse(status: status, body: ManagedIdentityError.body(self == .imds ? .imds : .appService, status: status, code: code, message: message))
    }
}
