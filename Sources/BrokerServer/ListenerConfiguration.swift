/// Where and how one listener of the broker listens: each transport's server takes only
/// its own configuration. `BrokerServers.make` picks the server (an inherited socket
/// configured as Unix may turn out to be TCP).
public enum ListenerConfiguration: Sendable {
    /// A Unix socket, served on the broker's own event loops (`UnixBrokerServer`).
    case unix(UnixServerConfiguration)
    /// A loopback TCP listener, served by SwiftNIO (`TCPBrokerServer`).
    case tcp(TCPServerConfiguration)
}

/// What every listener tolerates, whatever its transport.
public struct ConnectionLimits: Sendable {
    /// Most open connections at once; beyond it new connections are closed at once (default 1024).
    public var maxConnections: Int = 1024
    /// Most open connections of one uid at once; beyond it that uid's new connections are
    /// closed at accept, so one user cannot take every slot (default 128).
    public var maxConnectionsPerUID: Int = 128
    /// Most open connections of one Kubernetes pod (its cgroup's pod UID) on the Unix socket:
    /// pods' relays usually share one uid, so the uid's limit cannot keep one pod from
    /// taking every slot (default 128).
    public var maxConnectionsPerPod: Int = 128
    /// A connection that sends nothing for this long is closed (default 60 s).
    public var idleTimeout: Duration = .seconds(60)
    /// A request line or HTTP head that is still incomplete after this long closes the
    /// connection, so a slow sender holds nothing for long (default 10 s).
    public var requestReadTimeout: Duration = .seconds(10)
    /// Longest request line or HTTP head (default 64 KiB).
    public var maxRequestBytes: Int = 64 * 1024
    /// How long a graceful shutdown waits for requests in flight (default 10 s).
    public var drainTimeout: Duration = .seconds(10)

    /// The defaults.
    public init() {}
}

/// How a Unix-socket listener listens (`UnixBrokerServer`).
public struct UnixServerConfiguration: Sendable {
    /// A listening socket inherited from the service manager (socket activation);
    /// when set, it is served instead of binding `socketPath`, and never unlinked.
    public var inheritedDescriptor: Int32? = nil
    /// Where the socket is bound (default `/run/tokenbroker/broker.sock`).
    public var socketPath: String = "/run/tokenbroker/broker.sock"
    /// Permission bits of the socket file (default `0o660`: owner and group).
    public var socketMode: UInt32 = 0o660
    /// Group owning the socket file; nil keeps the daemon's group.
    public var socketGroup: UInt32? = nil
    /// Variables read from each caller's `/proc/PID/environ` at accept (with the process
    /// pinned, like its executable), into `PeerCredentials.environment`. Default none:
    /// nothing is read.
    public var attestedEnvironment: [String] = []
    /// Threads serving the socket, each with its own event loop (default 1).
    public var eventLoopThreads: Int = 1
    /// Connection limits and timeouts.
    public var limits = ConnectionLimits()

    /// The defaults.
    public init() {}
}

/// How a loopback TCP listener listens (`TCPBrokerServer`, on the NIO event loop group it
/// is given).
public struct TCPServerConfiguration: Sendable {
    /// Where to listen (port 0 picks a free port, see `BrokerServer.localPort`); unused
    /// when `inheritedDescriptor` is set.
    public var address: TCPAddress?
    /// A listening TCP socket inherited from the service manager, served instead of
    /// binding `address`.
    public var inheritedDescriptor: Int32?
    /// Connection limits and timeouts.
    public var limits: ConnectionLimits

    /// Listens on `address`, or serves `inheritedDescriptor`.
    public init(address: TCPAddress? = nil, inheritedDescriptor: Int32? = nil, limits: ConnectionLimits = ConnectionLimits()) {
        self.address = address
        self.inheritedDescriptor = inheritedDescriptor
        self.limits = limits
    }
}

/// A TCP listening address.
public struct TCPAddress: Sendable, Equatable, CustomStringConvertible {
    /// A literal IP address (`127.0.0.1`, `::1`).
    public var host: String
    /// The port; 0 picks a free one.
    public var port: Int

    /// Creates an address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
