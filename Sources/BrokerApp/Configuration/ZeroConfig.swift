import TokenExchange

/// The Azure Workload Identity webhook's environment as a configuration: when
/// `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and `AZURE_FEDERATED_TOKEN_FILE` are set,
/// identity `default` exists without a file (unless the file defines `default`).
enum ZeroConfig {
    static let identityName = "default"

    static func apply(environment: [String: String], to configuration: inout BrokerConfiguration, reader: inout NodeReader) {
        let names = ["AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"]
        let present = names.filter { !(environment[$0] ?? "").isEmpty }
        guard !present.isEmpty else { return }
        guard present.count == names.count else {
            let missing = names.filter { !present.contains($0) }
            reader.report(
                "env",
                "\(present.joined(separator: ", ")) set but \(missing.joined(separator: ", ")) missing; the zero-config identity needs all three")
            return
        }
        guard !configuration.identities.contains(where: { $0.name == identityName }) else { return }
        let file = environment["AZURE_FEDERATED_TOKEN_FILE"]!
        guard file.hasPrefix("/") else {
            reader.report("env.AZURE_FEDERATED_TOKEN_FILE", "must be an absolute path, got '\(file)'")
            return
        }
        do {
            let entra = try EntraConfiguration(
                tenantId: environment["AZURE_TENANT_ID"]!,
                clientId: environment["AZURE_CLIENT_ID"]!,
                authorityHost: environment["AZURE_AUTHORITY_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? EntraConfiguration.publicCloudAuthorityHost)
            configuration.identities.append(IdentityConfiguration(name: identityName, source: .file(path: file), exchange: .entra(entra)))
        } catch {
            reader.report("env", "\(error.message) (from AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_AUTHORITY_HOST)")
        }
    }
}
