import NIOHTTP1
import TokenBrokerProtocol

extension HTTPServiceRequest {
    init(_ head: HTTPHead) {
        let target = HTTPRequestTarget(head.target)
        self.init(method: head.method, path: target.path, query: target.query, headers: head.headers, target: head.target)
        malformedEscape = target.malformedEscape
    }
}

/// Where an HTTP request goes.
enum HTTPRoute {
    case broker(BrokerRequest)
    case readiness
    case metrics
    case reply(HTTPResponseStatus, BrokerResponse)

    init(_ head: HTTPHead) {
        guard head.method == "GET" || head.method == "HEAD" else {
            self = .reply(
                .methodNotAllowed, .failure(id: nil, WireError(code: .badRequest, message: "method \(head.method) is not supported; use GET")))
            return
        }
        let target = HTTPRequestTarget(head.target)
        switch target.path {
        case "/v1/token":
            if target.malformedEscape {
                self = .reply(.badRequest, .failure(id: nil, WireError(code: .badRequest, message: "the request target has a malformed %-escape")))
                return
            }
            let parameters = ["scope", "resource", "identity", "minValiditySeconds", "clientId", "tenantId", "volume"]
            if let twice = target.repeated(among: parameters) {
                self = .reply(
                    .badRequest, .failure(id: nil, WireError(code: .badRequest, message: "query parameter '\(twice)' is given more than once")))
                return
            }
            var minValidity: Int?
            if let text = target.first("minValiditySeconds") {
                guard let value = Int(text), value >= 0 else {
                    self = .reply(
                        .badRequest,
                        .failure(
                            id: nil, WireError(code: .badRequest, message: "query parameter 'minValiditySeconds' must be a non-negative integer")))
                    return
                }
                minValidity = value
            }
            self = .broker(
                BrokerRequest(
                    op: BrokerOperation.token.rawValue, scope: target.first("scope"), resource: target.first("resource"),
                    identity: target.first("identity"),
                    minValiditySeconds: minValidity, clientId: target.first("clientId"), tenantId: target.first("tenantId"),
                    volume: target.first("volume")))
        case "/v1/status":
            self = .broker(BrokerRequest(op: BrokerOperation.status.rawValue))
        case "/healthz":
            self = .broker(BrokerRequest(op: BrokerOperation.ping.rawValue))
        case "/readyz":
            self = .readiness
        case "/metrics":
            self = .metrics
        default:
            self = .reply(
                .notFound,
                .failure(
                    id: nil, WireError(code: .notFound, message: "no such path; try /v1/token?scope=…, /v1/status, /healthz, /readyz or /metrics")))
        }
    }
}
