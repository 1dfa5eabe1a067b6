/// How the socket server listens and what it tolerates.
public struct BrokerServerConfiguration: Sendable {
    /// A listening socket inherited from the service manager (socket activation);
    /// when set, it is served instead of binding `socketPath`, and never unlinked.
    public var inheritedDescriptor: Int32? = nil
    /// Where the socket is bound (default `/run/tokenbroker/broker.sock`).
    public var socketPath: String = "/run/tokenbroker/broker.sock"
    /// Listen on TCP at this address instead of the Unix socket (the loopback
    /// compatibility listener; port 0 picks a free port, see `BrokerServer.localPort`).
    public var tcpAddress: TCPAddress? = nil
    /// Permission bits of the socket file (default `0o660`: owner and group).
    public var socketMode: UInt32 = 0o660
    /// Group owning the socket file; nil keeps the daemon's group.
    public var socketGroup: UInt32? = nil
    /// Most open connections at once; beyond it new connections are closed at once (default 1024).
    public var maxConnections: Int = 1024
    /// Most open connections of one uid at once; beyond it that uid's new connections are
    /// closed at accept, so one user cannot take every slot (default 128).
    public var maxConnectionsPerUID: Int = 128
    /// A connection that sends nothing for this long is closed (default 60 s).
    public var idleTimeout: Duration = .seconds(60)
    /// A request line or HTTP head that is still incomplete after this long closes the
    /// connection, so a slow sender holds nothing for long (default 10 s).
    public var requestReadTimeout: Duration = .seconds(10)
    /// Longest request line or HTTP head (default 64 KiB).
    public var maxRequestBytes: Int = 64 * 1024
    /// How long a graceful shutdown waits for requests in flight (default 10 s).
    public var drainTimeout: Duration = .seconds(10)
    /// Variables read from each Unix caller's `/proc/PID/environ` at accept (with the
    /// process pinned, like its executable), into `PeerCredentials.environment`. Default
    /// none: nothing is read.
    public var attestedEnvironment: [String] = []
    /// Threads serving a Unix socket, each with its own event loop (default 1). A TCP
    /// listener is served by the NIO event loop group `TCPBrokerServer` is given.
    public var eventLoopThreads: Int = 1

    /// The defaults.
    public init() {}
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
