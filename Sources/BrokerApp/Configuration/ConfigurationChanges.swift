/// The settings that differ between two configurations, named by key as in the file
/// (`limits.maxConnections`), for a reload to say which ones it applied and which wait
/// for a restart. `identities` and `sinks` are compared by `BrokerRuntime.apply`, not here.
enum ConfigurationChanges {
    /// Keys whose values differ, in file order.
    static func changedKeys(from old: BrokerConfiguration, to new: BrokerConfiguration) -> [String] {
        var keys: [String] = []
        func compare<T: Equatable>(_ key: String, _ value: (BrokerConfiguration) -> T) {
            if value(old) != value(new) { keys.append(key) }
        }
        compare("socket.path") { $0.socket.path }
        compare("socket.mode") { $0.socket.mode }
        compare("socket.group") { $0.socket.group }
        compare("limits.maxConnections") { $0.limits.maxConnections }
        compare("limits.maxConnectionsPerUID") { $0.limits.maxConnectionsPerUID }
        compare("limits.maxConnectionsPerPod") { $0.limits.maxConnectionsPerPod }
        compare("limits.idleTimeoutSeconds") { $0.limits.idleTimeoutSeconds }
        compare("limits.requestsPerSecondPerUID") { $0.limits.requestsPerSecondPerUID }
        compare("limits.requestBurstPerUID") { $0.limits.requestBurstPerUID }
        compare("limits.eventLoopThreads") { $0.limits.eventLoopThreads }
        compare("cache.maxScopesPerIdentity") { $0.cache.maxScopesPerIdentity }
        compare("cache.minValiditySeconds") { $0.cache.minValiditySeconds }
        compare("cache.minRefreshIntervalSeconds") { $0.cache.minRefreshIntervalSeconds }
        compare("cache.maxConcurrentExchanges") { $0.cache.maxConcurrentExchanges }
        compare("upstream.caFile") { $0.upstream.caFile }
        compare("upstream.timeoutSeconds") { $0.upstream.timeoutSeconds }
        compare("upstream.allowInsecureLoopback") { $0.upstream.allowInsecureLoopback }
        compare("log.level") { $0.log.level }
        compare("readiness.mode") { $0.readiness.mode }
        compare("readiness.timeoutSeconds") { $0.readiness.timeoutSeconds }
        compare("compat.tcp") { $0.compat.tcp }
        compare("compat.unix") { $0.compat.unixSocket }
        compare("compat.identityHeaderFile") { $0.compat.identityHeaderFile }
        compare("compat.appServicePath") { $0.compat.appServicePath }
        compare("compat.defaultIdentity") { $0.compat.defaultIdentity }
        compare("kubernetes") { $0.kubernetes }
        return keys
    }
}
