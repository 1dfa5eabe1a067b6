import TokenExchange

/// Reads `kubernetes:` (node mode).
enum KubernetesReader {
    static let keys: Set<String> = [
        "podsDirectory", "audience", "callerEnvironment", "tenantId", "authorityHost", "serviceAccounts", "forgetAfterSeconds",
        "serviceAccountKeys",
    ]

    static func read(_ node: Node, reader: inout NodeReader) -> KubernetesSettings? {
        // `kubernetes: {}` turns node mode on with every default.
        guard let fields = node.mapping?.isEmpty == true ? [:] : reader.mapping(node, at: "kubernetes", keys: keys) else { return nil }
        var settings = KubernetesSettings()
        if let directory = reader.string(fields["podsDirectory"], at: "kubernetes.podsDirectory") {
            guard directory.hasPrefix("/") else {
                reader.report("kubernetes.podsDirectory", "must be an absolute path, e.g. /var/lib/kubelet/pods", fields["podsDirectory"])
                return nil
            }
            settings.podsDirectory = directory
        }
        // Without the cluster's keys a pod's files could claim any service account.
        guard let keysNode = NodeReader.present(fields["serviceAccountKeys"]) else {
            reader.report(
                "kubernetes.serviceAccountKeys",
                "required: where the cluster's service-account keys are, { apiServer: in-cluster } or a JWKS file (kubectl get --raw /openid/v1/jwks); a pod's token counts only signed by one of them",
                node)
            return nil
        }
        guard let keys = readKeySource(keysNode, reader: &reader) else { return nil }
        settings.serviceAccountKeys = keys
        if let audience = reader.string(fields["audience"], at: "kubernetes.audience") { settings.audience = audience }
        if let environment = reader.bool(fields["callerEnvironment"], at: "kubernetes.callerEnvironment") { settings.callerEnvironment = environment }
        if let seconds = reader.int(fields["forgetAfterSeconds"], at: "kubernetes.forgetAfterSeconds", in: 0...86_400) {
            settings.forgetAfterSeconds = seconds
        }
        let authority = reader.string(fields["authorityHost"], at: "kubernetes.authorityHost") ?? settings.authorityHost
        let tenant = reader.string(fields["tenantId"], at: "kubernetes.tenantId")
        // The same checks as an identity's Entra exchange (a placeholder client id stands in).
        do {
            _ = try EntraConfiguration(tenantId: tenant ?? "common", clientId: "00000000-0000-0000-0000-000000000000", authorityHost: authority)
            settings.authorityHost = authority
            settings.tenantId = tenant
        } catch {
            let field = error.message.hasPrefix("authorityHost") ? "authorityHost" : "tenantId"
            reader.report("kubernetes.\(field)", error.message, fields[field] ?? node)
            return nil
        }
        guard let rules = readRules(fields["serviceAccounts"], reader: &reader) else { return nil }
        settings.serviceAccounts = rules
        return settings
    }

    /// `serviceAccountKeys`: a JWKS file's absolute path, or `{ apiServer, caFile, tokenFile }`.
    private static func readKeySource(_ node: Node, reader: inout NodeReader) -> ServiceAccountKeySource? {
        let path = "kubernetes.serviceAccountKeys"
        guard node.mapping != nil else {
            guard let file = reader.string(node, at: path) else { return nil }
            guard file.hasPrefix("/") else {
                reader.report(
                    path, "must be an absolute path, e.g. /etc/tokenbroker/service-account-keys/jwks.json, or { apiServer: in-cluster }", node)
                return nil
            }
            return .file(file)
        }
        guard let fields = reader.mapping(node, at: path, keys: ["apiServer", "caFile", "tokenFile"]),
            let server = reader.requiredString(fields["apiServer"], at: "\(path).apiServer", parent: node)
        else { return nil }
        var settings = APIServerKeySettings(url: nil)
        if server != "in-cluster" {
            var url = server
            while url.hasSuffix("/") { url.removeLast() }
            guard url.hasPrefix("https://"), url.count > 8, !url.dropFirst(8).contains(where: { $0 == "/" || $0 == "?" || $0 == "#" }) else {
                reader.report("\(path).apiServer", "must be in-cluster or the API server's https://HOST[:PORT], without a path", fields["apiServer"])
                return nil
            }
            settings.url = url
        }
        for (key, field) in [("caFile", \APIServerKeySettings.caFile), ("tokenFile", \APIServerKeySettings.tokenFile)] {
            guard let file = reader.string(fields[key], at: "\(path).\(key)") else { continue }
            guard file.hasPrefix("/") else {
                reader.report("\(path).\(key)", "must be an absolute path", fields[key])
                return nil
            }
            settings[keyPath: field] = file
        }
        return .apiServer(settings)
    }

    private static func readRules(_ node: Node?, reader: inout NodeReader) -> [ServiceAccountRule]? {
        guard let list = reader.sequence(node, at: "kubernetes.serviceAccounts") else { return NodeReader.present(node) == nil ? [] : nil }
        var rules: [ServiceAccountRule] = []
        var valid = true
        for (index, item) in list.enumerated() {
            let path = "kubernetes.serviceAccounts[\(index)]"
            guard let fields = reader.mapping(item, at: path, keys: ["namespace", "name", "exchange"]),
                let namespace = reader.requiredString(fields["namespace"], at: "\(path).namespace", parent: item),
                let name = reader.requiredString(fields["name"], at: "\(path).name", parent: item),
                let exchange = IdentityReader.readExchange(fields["exchange"], at: "\(path).exchange", parent: item, reader: &reader)
            else {
                valid = false
                continue
            }
            if case .none = exchange {
                reader.report("\(path).exchange", "none would hand a pod's own service-account token back; name a token service", item)
                valid = false
                continue
            }
            rules.append(ServiceAccountRule(namespace: namespace, name: name, exchange: exchange))
        }
        return valid ? rules : nil
    }
}
