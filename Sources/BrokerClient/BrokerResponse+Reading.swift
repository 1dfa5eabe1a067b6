import PlainJSON
import TokenBrokerProtocol

// Hand-written instead of `JSONDecoder`: the CLI runs in every pod as `tokenbroker relay`, and
// FoundationEssentials' coders alone took it from 6 MiB to 13 MiB stripped (docs/benchmarks.md,
// sixth round). The rules are the synthesized `Decodable` ones the CLI used before: required
// fields present with their type, optional ones absent, `null` or of their type, unknown
// fields ignored.

/// The field of the broker's answer that is missing or has the wrong type (`status.ready`).
struct AnswerShapeError: Error {
    var field: String
}

/// One JSON object of the answer, read field by field with Codable's types.
private struct Fields {
    let object: [String: Any]
    let path: String

    init(_ value: Any?, path: String) throws(AnswerShapeError) {
        guard let object = value as? [String: Any] else { throw AnswerShapeError(field: path.isEmpty ? "(the answer)" : path) }
        self.object = object
        self.path = path
    }

    private func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The value of `key` converted by `convert`; nil when absent or `null`.
    private func optional<T>(_ key: String, _ convert: (Any) -> T?) throws(AnswerShapeError) -> T? {
        guard let value = object[key], !(value is JSONNull) else { return nil }
        guard let converted = convert(value) else { throw AnswerShapeError(field: name(key)) }
        return converted
    }

    private func required<T>(_ key: String, _ convert: (Any) -> T?) throws(AnswerShapeError) -> T {
        guard let value = try optional(key, convert) else { throw AnswerShapeError(field: name(key)) }
        return value
    }

    private static func integer(_ value: Any) -> Int64? { JSONNumber.double(value).flatMap { Int64(exactly: $0) } }

    func string(_ key: String) throws(AnswerShapeError) -> String { try required(key) { $0 as? String } }
    func string(ifPresent key: String) throws(AnswerShapeError) -> String? { try optional(key) { $0 as? String } }
    func bool(_ key: String) throws(AnswerShapeError) -> Bool { try required(key) { $0 as? Bool } }
    func int64(ifPresent key: String) throws(AnswerShapeError) -> Int64? { try optional(key, Self.integer) }
    func int(_ key: String) throws(AnswerShapeError) -> Int { try required(key) { Self.integer($0).flatMap { Int(exactly: $0) } } }
    func int(ifPresent key: String) throws(AnswerShapeError) -> Int? { try optional(key) { Self.integer($0).flatMap { Int(exactly: $0) } } }

    func strings(_ key: String) throws(AnswerShapeError) -> [String] {
        try required(key) { value in
            guard let array = value as? [Any] else { return nil }
            let strings = array.compactMap { $0 as? String }
            return strings.count == array.count ? strings : nil
        }
    }

    func ints(_ key: String) throws(AnswerShapeError) -> [Int] {
        try required(key) { value in
            guard let array = value as? [Any] else { return nil }
            let ints = array.compactMap { Self.integer($0).flatMap { Int(exactly: $0) } }
            return ints.count == array.count ? ints : nil
        }
    }

    func object(ifPresent key: String) throws(AnswerShapeError) -> Fields? {
        guard let value = object[key], !(value is JSONNull) else { return nil }
        return try Fields(value, path: name(key))
    }

    /// The objects of array `key` (nil when absent or `null`, unless `required`).
    func objects(_ key: String, required: Bool = true) throws(AnswerShapeError) -> [Fields]? {
        guard let value = object[key], !(value is JSONNull) else {
            if required { throw AnswerShapeError(field: name(key)) }
            return nil
        }
        guard let array = value as? [Any] else { throw AnswerShapeError(field: name(key)) }
        var result: [Fields] = []
        for (index, element) in array.enumerated() { result.append(try Fields(element, path: "\(name(key))[\(index)]")) }
        return result
    }
}

extension BrokerResponse {
    /// Reads a response from the JSON value of one answer line.
    init(reading value: Any) throws(AnswerShapeError) {
        let fields = try Fields(value, path: "")
        let id: RequestID?
        if let number = try? fields.int64(ifPresent: "id") {
            id = .number(number)
        } else {
            id = try fields.string(ifPresent: "id").map(RequestID.string)
        }
        self.init(
            id: id, ok: try fields.bool("ok"), token: try fields.string(ifPresent: "token"), tokenType: try fields.string(ifPresent: "tokenType"),
            expiresOn: try fields.int64(ifPresent: "expiresOn"), expiresIn: try fields.int64(ifPresent: "expiresIn"),
            identity: try fields.string(ifPresent: "identity"), scope: try fields.string(ifPresent: "scope"),
            credentials: try fields.object(ifPresent: "credentials").map(AWSCredentialsObject.init(reading:)),
            status: try fields.object(ifPresent: "status").map(BrokerStatus.init(reading:)),
            error: try fields.object(ifPresent: "error").map(WireError.init(reading:)),
            serviceAccount: try fields.string(ifPresent: "serviceAccount"), clientId: try fields.string(ifPresent: "clientId"))
    }
}

extension AWSCredentialsObject {
    fileprivate init(reading fields: Fields) throws(AnswerShapeError) {
        self.init(
            accessKeyId: try fields.string("accessKeyId"), secretAccessKey: try fields.string("secretAccessKey"),
            sessionToken: try fields.string("sessionToken"), expiration: try fields.string("expiration"),
            accountId: try fields.string(ifPresent: "accountId"))
    }
}

extension WireError {
    fileprivate init(reading fields: Fields) throws(AnswerShapeError) {
        var upstream: UpstreamErrorDetails?
        if let details = try fields.object(ifPresent: "upstream") {
            upstream = UpstreamErrorDetails(
                status: try details.int("status"), codes: try details.ints("codes"), error: try details.string(ifPresent: "error"),
                traceId: try details.string(ifPresent: "traceId"), correlationId: try details.string(ifPresent: "correlationId"))
        }
        self.init(
            code: try fields.string("code"), message: try fields.string("message"), retryable: try fields.bool("retryable"),
            retryAfter: try fields.int(ifPresent: "retryAfter"), upstream: upstream)
    }
}

extension BrokerStatus {
    fileprivate init(reading fields: Fields) throws(AnswerShapeError) {
        var identities: [IdentityStatus] = []
        for identity in try fields.objects("identities") ?? [] {
            identities.append(
                IdentityStatus(
                    name: try identity.string("name"), exchange: try identity.string("exchange"), source: try identity.string("source"),
                    clientId: try identity.string(ifPresent: "clientId"), cachedScopes: try identity.strings("cachedScopes"),
                    lastError: try identity.object(ifPresent: "lastError").map(WireError.init(reading:))))
        }
        var sinks: [SinkStatus]?
        if let listed = try fields.objects("sinks", required: false) {
            sinks = []
            for sink in listed {
                sinks?.append(
                    SinkStatus(
                        path: try sink.string("path"), identity: try sink.string("identity"), scope: try sink.string("scope"),
                        format: try sink.string("format"), lastWrite: try sink.int64(ifPresent: "lastWrite"),
                        expiresOn: try sink.int64(ifPresent: "expiresOn"),
                        lastError: try sink.object(ifPresent: "lastError").map(WireError.init(reading:))))
            }
        }
        let compat = try fields.object(ifPresent: "compat").map { compat throws(AnswerShapeError) in
            CompatStatus(
                identityEndpoint: try compat.string(ifPresent: "identityEndpoint"),
                imdsAuthorityHost: try compat.string(ifPresent: "imdsAuthorityHost"),
                socket: try compat.string(ifPresent: "socket"), identityHeader: try compat.string(ifPresent: "identityHeader"))
        }
        let pod = try fields.object(ifPresent: "pod").map { pod throws(AnswerShapeError) in
            PodStatus(
                uid: try pod.string("uid"), tokens: try pod.strings("tokens"), serviceAccounts: try pod.strings("serviceAccounts"),
                exchange: try pod.string(ifPresent: "exchange"))
        }
        self.init(version: try fields.int("version"), ready: try fields.bool("ready"), identities: identities, compat: compat, pod: pod, sinks: sinks)
    }
}
