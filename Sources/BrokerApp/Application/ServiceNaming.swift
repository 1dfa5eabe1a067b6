import ServiceLifecycle

extension ServiceGroupConfiguration.ServiceConfiguration {
    /// `service`, named by its qualified type name in ServiceLifecycle's log metadata.
    ///
    /// The default name is `"\(service)"`: for a type without `CustomStringConvertible` that
    /// walks the value with `Mirror`, and every first cast scans the binary's conformance
    /// records — ~2 ms of start-up for the broker's dozen services. A class printed
    /// its qualified type name anyway, so the logs read the same.
    static func named(_ service: any Service) -> Self {
        .init(service: service, serviceName: _typeName(type(of: service), qualified: true))
    }
}
