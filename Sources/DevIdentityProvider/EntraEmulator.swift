import FoundationEssentials
import Glibc
import Logging
import NIOHTTP1
import Synchronization

/// A strict emulator of Entra ID's v2 token endpoint for client credentials with a federated
/// client assertion, an RFC 8693 token exchange endpoint (`/sts/token`, see
/// `EntraEmulator+TokenExchange.swift`), and the test controls (`/_dev/stats`, `/_dev/faults`,
/// `/_dev/latency`) that apply to both.
final class EntraEmulator: Sendable {
    /// One federated identity credential of the app registration.
    struct FederatedCredential: Sendable, Equatable {
        var issuer: String
        var subject: String
        var audience: String
    }

    let authorityHost: String
    /// The dev issuer, the only one whose tokens the endpoints trust.
    let issuerURL: String
    let configuration: DevIdentityProviderConfiguration
    let credentials: [FederatedCredential]
    let key: SigningKey
    let keyCache: OIDCKeyCache
    let logger: Logger
    let now: @Sendable () -> Date
    /// The app's service principal, the `oid`/`sub` of its tokens.
    let servicePrincipalId = UUID().uuidString.lowercased()
    let state: Mutex<EntraEmulatorState>

    init(
        authorityHost: String, issuerURL: String, configuration: DevIdentityProviderConfiguration,
        key: SigningKey, keyCache: OIDCKeyCache, logger: Logger, now: @escaping @Sendable () -> Date = Date.init
    ) {
        self.authorityHost = authorityHost
        self.issuerURL = issuerURL
        self.configuration = configuration
        self.credentials = ([configuration.serviceAccountSubject] + configuration.extraSubjects).map {
            FederatedCredential(issuer: issuerURL, subject: $0, audience: DevIssuer.federationAudience)
        }
        self.key = key
        self.keyCache = keyCache
        self.logger = logger
        self.now = now
        self.state = Mutex(EntraEmulatorState(latency: configuration.latency))
    }

    /// Routes a request.
    func handle(_ request: DevHTTPRequest) async -> DevHTTPResponse {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        switch (request.method, segments) {
        case (.POST, let s) where s.count == 4 && s.dropFirst().elementsEqual(["oauth2", "v2.0", "token"]):
            return await tokenEndpoint(request, tenant: s[0])
        case (.GET, let s) where s.count == 4 && s.dropFirst().elementsEqual(["v2.0", ".well-known", "openid-configuration"]):
            return .json(discoveryDocument(tenant: s[0]))
        case (.GET, let s) where s.count == 4 && s.dropFirst().elementsEqual(["discovery", "v2.0", "keys"]):
            return .json(key.jwks)
        case (.POST, ["sts", "token"]):
            return await stsTokenEndpoint(request)
        case (.GET, ["sts", "keys"]):
            return .json(key.jwks)
        case (.GET, ["sts", ".well-known", "openid-configuration"]):
            return .json(stsDiscoveryDocument)
        case (.GET, ["_dev", "stats"]):
            return .json(state.withLock { $0.stats })
        case (.DELETE, ["_dev", "stats"]):
            state.withLock { $0.stats = EntraStats() }
            return .json(EntraStats())
        case (.POST, ["_dev", "faults"]):
            guard let plan = try? JSONDecoder().decode(FaultPlan.self, from: Data(request.body)),
                (100...599).contains(plan.status), (plan.count ?? 1) >= 0
            else { return .badRequest("body must be {\"status\": 100...599, \"count\"?: n, \"retryAfterSeconds\"?: n, \"body\"?: text}") }
            state.withLock {
                $0.fault = plan
                $0.faultRemaining = plan.count ?? 1
            }
            logger.info("fault planned", metadata: ["fault.status": "\(plan.status)", "fault.count": "\(plan.count ?? 1)"])
            return .json(plan)
        case (.DELETE, ["_dev", "faults"]):
            state.withLock {
                $0.fault = nil
                $0.faultRemaining = 0
            }
            return .json([String: String]())
        case (.POST, ["_dev", "latency"]):
            guard let body = try? JSONDecoder().decode(LatencyRequest.self, from: Data(request.body)), body.milliseconds >= 0 else {
                return .badRequest("body must be {\"milliseconds\": n} with n >= 0")
            }
            state.withLock { $0.latency = .milliseconds(body.milliseconds) }
            return .json(body)
        default:
            return .notFound(request)
        }
    }

    /// `POST /{tenant}/oauth2/v2.0/token`: latency, planned faults, then Entra's checks.
    private func tokenEndpoint(_ request: DevHTTPRequest, tenant: String) async -> DevHTTPResponse {
        let form = FormFields(request.body)
        var record = RequestRecord(
            endpoint: "entra", scope: form["scope"], clientId: form["client_id"], fields: form.names, grantType: form["grant_type"],
            clientAssertionType: form["client_assertion_type"])
        if let assertion = form["client_assertion"] {
            record.assertionSha256 = Self.sha256Hex(assertion)
        }
        let traceId = UUID().uuidString.lowercased()
        // Entra echoes a caller's client-request-id as the correlation id.
        let correlationId =
            request.headers.first(name: "client-request-id")
            .flatMap { UUID(uuidString: $0)?.uuidString.lowercased() } ?? UUID().uuidString.lowercased()
        var metadata: Logger.Metadata = [
            "entra.trace_id": "\(traceId)", "entra.scope": "\(record.scope ?? "-")",
            "assertion.sha256": "\(record.assertionSha256.map { String($0.prefix(12)) } ?? "-")",
        ]
        var response = await answer(
            record, traceId: traceId, correlationId: correlationId, faultMessage: "token request failed by planned fault", metadata: metadata
        ) { record in
            do throws(EntraError) {
                let issued = try await exchange(form, tenant: tenant, record: &record)
                logger.info("token issued", metadata: metadata.merging(["token.expires_in": "\(issued.expiresIn)"]) { $1 })
                return .json(issued)
            } catch {
                record.errorCode = error.code
                metadata["entra.error_code"] = "\(error.code)"
                metadata["assertion.sub"] = "\(record.assertionSubject ?? "-")"
                metadata["assertion.iss"] = "\(record.assertionIssuer ?? "-")"
                logger.info("token request rejected", metadata: metadata)
                return error.response(traceId: traceId, correlationId: correlationId, now: now())
            }
        }
        response.headers.replaceOrAdd(name: "x-ms-request-id", value: traceId)
        if let clientRequestId = request.headers.first(name: "client-request-id") {
            response.headers.replaceOrAdd(name: "client-request-id", value: clientRequestId)
        }
        return response
    }

    /// What both token endpoints do around their own checks: the configured latency, then the
    /// next planned fault if one remains (logged as `faultMessage`) or else `checks`; the
    /// request is counted in the stats with the status it got either way.
    func answer(
        _ record: RequestRecord, traceId: String, correlationId: String, faultMessage: Logger.Message, metadata: Logger.Metadata,
        checks: (inout RequestRecord) async -> DevHTTPResponse
    ) async -> DevHTTPResponse {
        let latency = state.withLock { $0.latency }
        if latency > .zero { try? await Task.sleep(for: latency) }
        var record = record
        let response: DevHTTPResponse
        if let fault = state.withLock({ $0.takeFault() }) {
            response = fault.response(traceId: traceId, correlationId: correlationId, now: now())
            logger.info(faultMessage, metadata: metadata.merging(["http.status": "\(fault.status)"]) { $1 })
        } else {
            response = await checks(&record)
        }
        record.status = Int(response.status.code)
        state.withLock { [record] in $0.stats.record(record) }
        return response
    }

    private func discoveryDocument(tenant: String) -> [String: String] {
        [
            "issuer": "\(authorityHost)/\(tenant)/v2.0",
            "token_endpoint": "\(authorityHost)/\(tenant)/oauth2/v2.0/token",
            "jwks_uri": "\(authorityHost)/\(tenant)/discovery/v2.0/keys",
        ]
    }
}
