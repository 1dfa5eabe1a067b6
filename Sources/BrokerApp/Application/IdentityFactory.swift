import AssertionSources
import ExecPlugins
import FoundationEssentials
import Glibc
import Logging
import TokenExchange
import UpstreamHTTP

/// Turns an identity's configuration into its live parts: where its assertion comes
/// from and where it is traded.
enum IdentityFactory {
    struct Parts {
        var source: any ManagedAssertionSource
        var exchanger: any TokenExchanger
    }

    /// Throws only for what the configuration reader already checked (an AWS session
    /// name that this identity's name makes invalid).
    static func make(_ identity: IdentityConfiguration, transport: AsyncHTTPTransport, logger: Logger) throws -> Parts {
        let logger = logger.with("token.identity", identity.name)
        let now: @Sendable () -> Date = { Date() }
        return Parts(
            source: source(identity, transport: transport, now: now, logger: logger),
            exchanger: try exchanger(identity.exchange, name: identity.name, transport: transport, now: now, logger: logger))
    }

    private static func source(
        _ identity: IdentityConfiguration, transport: AsyncHTTPTransport, now: @escaping @Sendable () -> Date, logger: Logger
    ) -> any ManagedAssertionSource {
        switch identity.source {
        case .file(let path):
            return FileAssertionSource(path: path, now: now, logger: logger)
        case .exec(let settings, let audience):
            let fetcher = ExecAssertionFetcher(configuration: plugin(settings), audience: audience, name: identity.name, now: now, logger: logger)
            return FetchedAssertionSource(origin: "exec:\(settings.command[0])", now: now, logger: logger) { () async throws(TokenExchangeError) in
                try await fetcher.fetchWithExpiry()
            }
        case .githubActions(let audience, let url, let token):
            let fetcher = HTTPAssertionFetcher.githubActions(requestURL: url, requestToken: token, audience: audience, transport: transport, now: now)
            return FetchedAssertionSource(origin: fetcher.origin, now: now, logger: logger) { () async throws(TokenExchangeError) in
                (try await fetcher.fetch(), nil)
            }
        case .gcpMetadata(let audience, let baseURL):
            let fetcher = HTTPAssertionFetcher.gcpMetadata(baseURL: baseURL, audience: audience, transport: transport, now: now)
            return FetchedAssertionSource(origin: fetcher.origin, now: now, logger: logger) { () async throws(TokenExchangeError) in
                (try await fetcher.fetch(), nil)
            }
        }
    }

    /// Where an assertion is traded; `name` names it in logs and AWS session names.
    static func exchanger(
        _ exchange: ExchangeConfiguration, name: String, transport: AsyncHTTPTransport, now: @escaping @Sendable () -> Date = { Date() },
        logger: Logger
    ) throws -> any TokenExchanger {
        switch exchange {
        case .entra(let entra): EntraExchanger(configuration: entra, transport: transport, now: now)
        case .rfc8693(let sts): RFC8693Exchanger(configuration: sts, transport: transport, now: now) { logger.warning("\($0)") }
        case .awsSts(let aws): try AWSSTSExchanger(configuration: aws, identity: name, transport: transport, now: now)
        case .exec(let settings): ExecExchanger(configuration: plugin(settings), name: name, now: now, logger: logger)
        case .none: AssertionPassthrough()
        }
    }

    private static func plugin(_ settings: ExecSettings) -> ExecPluginConfiguration {
        ExecPluginConfiguration(command: settings.command, environment: settings.environment, timeout: .seconds(settings.timeoutSeconds))
    }
}
