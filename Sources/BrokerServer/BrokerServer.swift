import Glibc
public import Logging
public import NIOCore
public import ServiceLifecycle

/// A listener of the broker, whatever its transport: `run()` starts listening (binding its
/// address, or serving the socket inherited from the service manager), serves until
/// graceful shutdown, then drains: the listener closes, requests in flight finish,
/// connections close. Listening inside `run()` means the process already handles SIGTERM
/// by then. `UnixBrokerServer` serves a Unix socket on the broker's own event loops,
/// `TCPBrokerServer` a loopback TCP listener on SwiftNIO; `BrokerServers.make` picks one.
public protocol BrokerServer: Service, Sendable {
    /// Listens, serves until graceful shutdown or cancellation, then drains (`Service.run`,
    /// named here so callers need only this module).
    func run() async throws
    /// Returns once the server accepts connections; throws if listening failed.
    func waitUntilListening() async throws
    /// Number of open connections.
    var openConnections: Int { get }
    /// The threads that serve this listener's callers (none before it listens): the
    /// watchdog pings only while each of them runs a task it is given.
    var servingLoops: LoopProbe { get }
    /// The TCP port listened on (useful after binding port 0); nil for a Unix socket.
    var localPort: Int? { get }
}

/// The one place that decides which transport serves a listener configuration.
public enum BrokerServers {
    /// A `UnixBrokerServer` for `.unix` (it takes no NIO loop: `group` is not asked for), a
    /// `TCPBrokerServer` on `group()` for `.tcp` — and for a `.unix` listener whose inherited
    /// socket turns out to be TCP: an inherited socket's family is known only at run time,
    /// by asking the socket. With a `service`, every connection speaks HTTP/1.1 and every
    /// request goes to it.
    public static func make(
        _ listener: ListenerConfiguration, responder: any BrokerResponder, metrics: (any MetricsExposition)? = nil,
        service: (any HTTPService)? = nil, group: () -> any EventLoopGroup, logger: Logger
    ) -> any BrokerServer {
        switch listener {
        case .unix(let unix):
            if let descriptor = unix.inheritedDescriptor, !isUnixSocket(descriptor) {
                let tcp = TCPServerConfiguration(inheritedDescriptor: descriptor, limits: unix.limits)
                return TCPBrokerServer(configuration: tcp, responder: responder, metrics: metrics, service: service, group: group(), logger: logger)
            }
            return UnixBrokerServer(configuration: unix, responder: responder, metrics: metrics, service: service, logger: logger)
        case .tcp(let tcp):
            return TCPBrokerServer(configuration: tcp, responder: responder, metrics: metrics, service: service, group: group(), logger: logger)
        }
    }

    /// Whether `descriptor` is a Unix socket (anything else goes to NIO, which says what is wrong).
    static func isUnixSocket(_ descriptor: CInt) -> Bool {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return named == 0 && address.ss_family == sa_family_t(AF_UNIX)
    }
}
