import FoundationEssentials
import Glibc
import TokenExchange

/// A digest of what makes an identity's tokens what they are: its source and its exchange
/// with every parameter (tenant, client id, authority, endpoint, role, plugin command…), not
/// its allow rules or prefetch list. A token from a warm restart is restored only into an
/// identity whose digest is unchanged. Fields are written out one by one, dictionaries
/// sorted: `String(reflecting:)` would show only a type's redacting `description`, and a
/// dictionary's order changes from process to process.
enum IdentityFingerprint {
    static func of(_ identity: IdentityConfiguration) -> [UInt8] {
        let material = (["v1", identity.name] + fields(identity.source) + fields(identity.exchange)).joined(separator: "\u{0}")
        return SHA256Digest.hash(material.utf8)
    }

    /// Node mode's cache identities (`k8s:NS/NAME/DIGEST`) carry a digest of their issuer,
    /// subject, audience and exchange in the name itself (`PodIdentities.cacheIdentity`).
    static func ofPodKey(_ name: String) -> [UInt8] {
        SHA256Digest.hash("v1\u{0}pod\u{0}\(name)".utf8)
    }

    static func fields(_ source: AssertionSourceConfiguration) -> [String] {
        switch source {
        case .file(let path): ["source=file", path]
        case .exec(let settings, let audience): ["source=exec", audience ?? "-"] + fields(settings)
        case .githubActions(let audience, let requestURL, _):
            // Not the request token: the runner's credential, not a setting of the identity.
            ["source=githubActions", audience ?? "-", requestURL]
        case .gcpMetadata(let audience, let baseURL): ["source=gcpMetadata", audience, baseURL]
        }
    }

    static func fields(_ exchange: ExchangeConfiguration) -> [String] {
        switch exchange {
        case .entra(let entra): ["exchange=entra", entra.tenantId, entra.clientId, entra.authorityHost]
        case .rfc8693(let sts):
            [
                "exchange=rfc8693", sts.tokenEndpoint, sts.audience ?? "-", sts.resource ?? "-", sts.subjectTokenType, sts.requestedTokenType ?? "-",
                sts.clientId ?? "-", sts.clientSecret.map { "secret:" + hex(SHA256Digest.hash($0.utf8)) } ?? "-",
            ]
        case .awsSts(let aws): ["exchange=awsSts", aws.roleArn, aws.sessionName, String(aws.durationSeconds), aws.region, aws.endpoint]
        case .exec(let settings): ["exchange=exec"] + fields(settings)
        case .none: ["exchange=none"]
        }
    }

    static func fields(_ settings: ExecSettings) -> [String] {
        ["command=" + settings.command.joined(separator: "\u{1}"), "timeout=\(settings.timeoutSeconds)"]
            + settings.environment.sorted { $0.key < $1.key }.map { "env=\($0.key)=\($0.value)" }
    }

    private static func hex(_ digest: some Sequence<UInt8>) -> String { digest.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined() }
}
