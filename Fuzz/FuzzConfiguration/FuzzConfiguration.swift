import BrokerApp
import TokenExchange

// Fuzzes configuration parsing: YAML text → `BrokerConfiguration` or a
// `ConfigurationError`, through the same public entry point `tokenbrokerd` and
// `check-config` use for a file's contents. The loader touches nothing that depends
// on the input except user and group look-ups by name (`getpwnam`/`getgrnam`,
// read-only). Inputs of odd length also get a zero-config environment, so that the
// merge of file identities with `default` from AZURE_* is fuzzed too.
//
// Invariants: loading never traps; a failure has at least one issue, each with a
// message; a success holds only what validation promises (absolute paths, valid
// identity names, no duplicate identities, values in their documented ranges).

private enum Environment {
    static let zeroConfig = [
        "AZURE_CLIENT_ID": "0f8c3e1a-5b7d-4a2e-9c61-3d2b1e4f5a6b",
        "AZURE_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
    ]
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfiguration(_ start: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let yaml = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    let environment = count % 2 == 1 ? Environment.zeroConfig : [:]
    do {
        check(try ConfigurationLoader.load(yaml: yaml, origin: "/etc/tokenbroker/config.yaml", environment: environment))
    } catch {
        precondition(!error.issues.isEmpty, "a configuration error without issues")
        precondition(error.issues.allSatisfy { !$0.message.isEmpty }, "an issue without a message")
        precondition(error.issues.allSatisfy { ($0.line ?? 1) >= 1 }, "an issue line below 1")
        _ = error.description
    }
    return 0
}

private func check(_ configuration: BrokerConfiguration) {
    precondition(configuration.socket.path.hasPrefix("/"), "socket.path not absolute")
    precondition(configuration.socket.mode <= 0o777, "socket.mode beyond permission bits")
    precondition((1...1_000_000).contains(configuration.limits.maxConnections), "limits.maxConnections out of range")
    precondition((1...86_400).contains(configuration.limits.idleTimeoutSeconds), "limits.idleTimeoutSeconds out of range")
    precondition((1...100_000).contains(configuration.cache.maxScopesPerIdentity), "cache.maxScopesPerIdentity out of range")
    precondition((1...600).contains(configuration.upstream.timeoutSeconds), "upstream.timeoutSeconds out of range")
    precondition(LogLevelName.parse(configuration.log.level) != nil, "log.level not a level")
    precondition(Set(configuration.identities.map(\.name)).count == configuration.identities.count, "duplicate identity")
    for identity in configuration.identities {
        precondition((1...64).contains(identity.name.count), "identity name length")
        // `if case`, not `switch`: other kinds of source and exchange are added over time.
        if case .file(let path) = identity.source { precondition(path.hasPrefix("/"), "source.file not absolute") }
        if case .entra(let entra) = identity.exchange {
            precondition(entra.authorityHost.lowercased().hasPrefix("https://"), "authority not https")
            precondition(!entra.tenantId.isEmpty && !entra.clientId.isEmpty, "empty tenant or client")
            _ = entra.tokenEndpoint
        }
    }
}
